"""Only the per-ISA kernels may contain AVX or AVX-512 instructions: everything that runs before or
around dispatch (module init, CPU detection, drivers, the Cython layer) must be baseline x86-64, or
importing twopass would crash older CPUs. Checked on the installed extension's disassembly."""
import re
import shutil
import subprocess

import pytest

from twopass import _dispatch

# VEX/EVEX instructions start with "v" (vmovss, vaddps, ...); AVX-512 also uses k registers.
WIDE = re.compile(r"^\s*[0-9a-f]+:\s+(v[a-z0-9]+)\b|%[yz]mm\d|%k[0-7]\b")
FUNCTION = re.compile(r"^[0-9a-f]+ <(.+)>:$")


def functions_with_wide_instructions(path):
    listing = subprocess.run(["objdump", "-d", "--no-show-raw-insn", path], capture_output=True,
                             text=True, check=True).stdout
    found, current = {}, None
    for line in listing.splitlines():
        header = FUNCTION.match(line)
        if header:
            current = header.group(1)
        elif current and WIDE.search(line):
            found[current] = found.get(current, 0) + 1
    return found


def test_only_kernels_use_avx():
    if shutil.which("objdump") is None:
        pytest.fail("objdump (binutils) is needed to check the extension's instructions")
    kernels = {variant["name"] for variant in _dispatch._kernels.registry()}
    wide = functions_with_wide_instructions(_dispatch._kernels.__file__)
    # per-ISA code is named <what>__<isa>[_<tile>] (kernels, and the benchmarks' bandwidth loops)
    baseline = {name for name in wide if not re.search(r"__(avx2|avx512f)(_|$)", name)}
    assert not baseline, sorted(baseline)
    # and the check itself sees the kernels' wide instructions
    assert {name for name in kernels if "__avx2_" in name} <= set(wide)
