"""The float64 exp cores (src/avx2/f64_exp_avx2.h, src/avx512f/f64_exp_avx512f.h; the float64 passes
will use them): benchmarks/exp64_check.c compiled here and run on a dense sample of every form (plain
exp, extended exponent, shifted) and the special values, against a long double reference, on AVX2
natively and AVX-512F through SIMDe. It exits non-zero if any core is more than 2 ULP off.
The full check (1e8 samples per form, results in benchmarks/RESULTS.md) is the same program."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import twopass

ROOT = Path(__file__).resolve().parent.parent
REQUIRE = os.environ.get("TWOPASS_REQUIRE_EMULATION") == "1"


def simde_available():
    res = subprocess.run(["gcc", "-E", "-x", "c", "-", "-o", os.devnull], input="#include <simde/x86/avx512.h>\n",
                         capture_output=True, text=True)
    return res.returncode == 0


@pytest.fixture(scope="module")
def checker(tmp_path_factory):
    if "avx2" not in twopass.available_levels():
        pytest.skip("the AVX2 core needs a CPU with AVX2 and FMA")
    if shutil.which("gcc") is None or not simde_available():
        if REQUIRE:
            pytest.fail("gcc with SIMDe headers (libsimde-dev) is required (TWOPASS_REQUIRE_EMULATION=1)")
        pytest.skip("needs gcc and SIMDe headers (libsimde-dev)")
    exe = tmp_path_factory.mktemp("exp64") / "exp64_check"
    build = ["gcc", "-O2", "-mavx2", "-mfma", "-Wno-psabi", f"-I{ROOT / 'include'}",
             f"-I{ROOT / 'tests' / 'avx512_emulation'}", str(ROOT / "benchmarks" / "exp64_check.c"),
             "-o", str(exe), "-lquadmath", "-lm"]
    res = subprocess.run(build, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return exe


def test_float64_exp_cores_within_2_ulp(checker):
    res = subprocess.run([str(checker), "--samples", "1000000", "--samples-avx512", "200000", "--no-bench"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "OK: every core within 2 ULP" in res.stdout
    rows = re.findall(r"^\s*(avx2|avx512f \(SIMDe\))\s+(exp|extexp|shifted)\s+\d+\s+([0-9.]+)", res.stdout, re.M)
    assert len(rows) == 6, res.stdout  # both ISAs, all three forms were checked
    assert max(float(r[2]) for r in rows) <= 2.0
