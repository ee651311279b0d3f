"""The kernels never touch memory outside their arrays: inputs and outputs placed right before (and
right after) a PROT_NONE page, inputs on read-only pages, memory-mapped read-only files.

Canaries (tests/test_kernels.py) catch stray writes next to an array; a guard page also catches
stray reads (a masked tail that loads a whole vector, a prefetch past the end) and writes, as a
segmentation fault. So the probing runs in a subprocess: a crash fails the test instead of killing
pytest, and the subprocess checks every result against a float64 reference (longdouble for the
float64 kernels) before it exits 0. float32 and float64 both.
"""
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import twopass

KERNEL_LEVELS = list(twopass.available_levels()[1:])
ALGORITHMS = list(twopass.ALGORITHMS)
# every tail of every tile (vectors of 8 and 16 floats, iterations up to 192), then around 4096
TAILS = list(range(1, 71)) + [4095, 4096, 4097, 4096 + 63, 4096 + 64, 8191, 8192, 8193]
ROWS = (1, 3)
# end_y64: x before the upper guard page, y 64 bytes past x modulo 4096, where the elementwise
# passes load x an iteration ahead of their stores (4K aliasing, include/twopass/common.h)
PLACEMENTS = ("end", "start", "in_place_end", "in_place_start", "end_y64")

COMMON = r'''
import ctypes, mmap, sys
import numpy as np
import twopass
from twopass import kernels

PAGE = mmap.PAGESIZE
PROT_NONE, PROT_READ, PROT_WRITE = 0, 1, 2
libc = ctypes.CDLL(None, use_errno=True)
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.mprotect.restype = ctypes.c_int


def mprotect(address, size, prot):
    if libc.mprotect(address, size, prot) != 0:
        raise OSError(ctypes.get_errno(), "mprotect failed")


class Guarded:
    """`pages` read-write pages between two PROT_NONE pages: [NONE][RW x pages][NONE]."""

    def __init__(self, pages):
        self.pages = pages
        self.map = mmap.mmap(-1, (pages + 2) * PAGE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        self.bytes = np.frombuffer(self.map, dtype=np.uint8)
        self.base = self.bytes.ctypes.data
        assert self.base % PAGE == 0
        mprotect(self.base, PAGE, PROT_NONE)
        mprotect(self.base + (pages + 1) * PAGE, PAGE, PROT_NONE)

    def floats(self, count, where, dtype=np.float32, back=0):
        """`count` float32 (or dtype) ending at the last byte before the upper guard page ("end"),
        or `back` bytes before it, or starting at the first byte after the lower one ("start")."""
        lo, hi = PAGE, (self.pages + 1) * PAGE - back
        size = count * np.dtype(dtype).itemsize
        assert size <= hi - lo
        view = self.bytes[hi - size: hi] if where == "end" else self.bytes[lo: lo + size]
        return view.view(dtype)

    def read_only(self, on):
        mprotect(self.base + PAGE, self.pages * PAGE, PROT_READ if on else PROT_READ | PROT_WRITE)


def reference(x):
    x = x.astype(np.longdouble if x.dtype == np.float64 else np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def check(y, ref, what):
    f64 = np.asarray(y).dtype == np.float64
    tiny, flush, rtol = (2.0**-1022, 2.0**-1021, 1e-14) if f64 else (2.0**-126, 2.0**-125, 1e-6)
    y = np.asarray(y, ref.dtype)
    err = np.abs(y - ref) / np.maximum(ref, tiny)
    err[(y == 0) & (ref < flush)] = 0  # the kernels flush outputs below 2^-125 (2^-1021)
    assert np.all(np.isfinite(y)) and float(err.max()) <= rtol, (what, float(err.max()))
'''

PROBE = COMMON + r'''
level, algorithm = sys.argv[1], sys.argv[2]
tails = [int(t) for t in sys.argv[3].split(",")]
rows_list = [int(r) for r in sys.argv[4].split(",")]
placements = sys.argv[5].split(",")
dtype = np.dtype(sys.argv[6])
rows_kernel = kernels.softmax_f64_rows if dtype == np.float64 else kernels.softmax_f32_rows
level_index = twopass.LEVELS.index(level)
kernel_algorithm = twopass._api._KERNEL_ALGORITHM.get(algorithm)
most = max(tails) * max(rows_list) * dtype.itemsize
pages = -(-most // PAGE) + 1  # a page to spare for end_y64
xs, ys = Guarded(pages), Guarded(pages)
rng = np.random.default_rng(0)
checked = 0
SENTINEL = dtype.type(-7.5e33)
for n in tails:
    for rows in rows_list:
        data = rng.uniform(-50, 50, (rows, n)).astype(dtype)
        data[:, rng.integers(0, n)] = 60.0  # a clear max somewhere, sometimes in the tail
        ref = reference(data)
        for placement in placements:
            where = "start" if placement.endswith("start") else "end"
            in_place = placement.startswith("in_place")
            calls = []
            if kernel_algorithm is not None:
                calls.append("kernels")
            calls.append("softmax")
            for how in calls:
                xs.read_only(False)
                x = xs.floats(rows * n, where, dtype).reshape(rows, n)
                x[...] = data
                back = PAGE - 64 if placement == "end_y64" else 0
                y = x if in_place else ys.floats(rows * n, where, dtype, back).reshape(rows, n)
                if not in_place:
                    y[...] = SENTINEL
                    xs.read_only(True)  # any write to the input faults
                    x = x.view()
                    x.flags.writeable = False
                what = (level, algorithm, how, n, rows, placement)
                if how == "kernels":
                    rows_kernel(x, y, kernel_algorithm, level_index)
                else:
                    with twopass.use_isa(level):
                        result = twopass.softmax(x if rows > 1 else x[0], axis=-1,
                                                 out=y if rows > 1 else y[0], algorithm=algorithm)
                    assert np.shares_memory(result, y), what
                check(y, ref, what)
                if not in_place:
                    assert np.array_equal(x, data), what  # the input is untouched
                checked += 1
xs.read_only(False)
print(f"checked {checked} cases")
'''

COLUMNS = COMMON + r'''
level = sys.argv[1]
dtype = np.dtype(sys.argv[2])
dt = "f64" if dtype == np.float64 else "f32"
softmax_columns, log_softmax_columns = (getattr(kernels, f"softmax_{dt}_columns"),
                                        getattr(kernels, f"log_softmax_{dt}_columns"))
level_index = twopass.LEVELS.index(level)
widths = list(range(1, 41)) + [63, 64, 65, 255, 256, 257, 300]
rows_list = (1, 3, 65)
pages = -(-max(widths) * max(rows_list) * dtype.itemsize // PAGE)
xs, ys = Guarded(pages), Guarded(pages)
rng = np.random.default_rng(1)
checked = 0
for cols in widths:
    for rows in rows_list:
        data = rng.uniform(-50, 50, (rows, cols)).astype(dtype)
        ref = np.ascontiguousarray(reference(np.ascontiguousarray(data.T)).T)
        for where in ("end", "start"):
            for in_place in (False, True):
                xs.read_only(False)
                x = xs.floats(rows * cols, where, dtype).reshape(1, rows, cols)
                x[...] = data
                y = x if in_place else ys.floats(rows * cols, where, dtype).reshape(1, rows, cols)
                if not in_place:
                    xs.read_only(True)  # any write to the input faults
                    x = x.view()
                    x.flags.writeable = False
                softmax_columns(x, y, level_index)
                check(y[0], ref, (level, cols, rows, where, in_place))
                checked += 1
                xs.read_only(False)
                x = xs.floats(rows * cols, where, dtype).reshape(1, rows, cols)
                x[...] = data
                y = x if in_place else ys.floats(rows * cols, where, dtype).reshape(1, rows, cols)
                if not in_place:
                    xs.read_only(True)
                    x = x.view()
                    x.flags.writeable = False
                log_softmax_columns(x, y, level_index)
                # x - logsumexp, within a few ulps of |x| and |logsumexp| (<= ~60 here)
                assert np.all(np.abs(y[0] - np.log(ref)) <= (1e-12 if dt == "f64" else 1e-5)), (
                    "log", level, cols, rows, where, in_place)
                checked += 1
xs.read_only(False)
print(f"checked {checked} cases")
'''

MEMMAP = COMMON + r'''
import os
path = sys.argv[1]
checked = 0
for count in (PAGE // 4, 3 * PAGE // 4, 1000, 4096 * 3 + 5):
    data = np.random.default_rng(count).uniform(-30, 30, count).astype(np.float32)
    data.tofile(path)
    # the page after the mapping of a page-multiple file is not mapped: reading past it would fault
    x = np.memmap(path, dtype=np.float32, mode="r", shape=(count,))
    assert not x.flags.writeable
    shapes = [(count,)] + ([(4, count // 4)] if count % 4 == 0 else [])
    for level in twopass.available_levels():
        with twopass.use_isa(level):
            for algorithm in twopass.ALGORITHMS:
                for shape in shapes:
                    xv = x.reshape(shape)
                    for axis in (-1, 0, None):
                        y = twopass.softmax(xv, axis=axis, algorithm=algorithm)
                        d = data.reshape(shape).astype(np.float64)
                        if axis is None:
                            ref = reference(d.ravel()).reshape(shape)
                        else:
                            ref = np.moveaxis(reference(np.moveaxis(d, axis, -1)), -1, axis)
                        check(y, ref, (count, level, algorithm, shape, axis))
                        out = np.empty(shape, np.float32)
                        assert twopass.softmax(xv, axis=axis, out=out, algorithm=algorithm) is out
                        assert np.array_equal(out, y), (count, level, algorithm, shape, axis)
                        checked += 1
    del x, xv
    os.remove(path)
print(f"checked {checked} cases")
'''


def run_python(script, *args):
    result = subprocess.run([sys.executable, "-X", "faulthandler", "-c", script, *map(str, args)],
                            capture_output=True, text=True, timeout=600, cwd=os.path.dirname(__file__))
    if result.returncode < 0:
        pytest.fail(f"the probe died of {signal.Signals(-result.returncode).name} "
                    f"(an access outside the arrays)\n{result.stderr[-4000:]}")
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def test_mprotect_guard_really_faults():
    # the setup works: touching the guard page kills the probe with SIGSEGV
    script = COMMON + textwrap.dedent('''
        g = Guarded(1)
        x = g.floats(4, "end")
        x[...] = 1.0
        print(float(np.frombuffer(g.map, dtype=np.float32, count=1, offset=2 * PAGE)[0]))
    ''')
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGSEGV, (result.returncode, result.stderr[-2000:])
    script = COMMON + textwrap.dedent('''
        g = Guarded(1)
        g.read_only(True)
        g.floats(4, "start")[0] = 1.0
    ''')
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGSEGV, (result.returncode, result.stderr[-2000:])


@pytest.mark.skipif(not KERNEL_LEVELS, reason="no kernel level on this CPU")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("level", KERNEL_LEVELS)
def test_arrays_next_to_guard_pages(level, algorithm, dtype):
    stdout = run_python(PROBE, level, algorithm, ",".join(map(str, TAILS)), ",".join(map(str, ROWS)),
                        ",".join(PLACEMENTS), dtype)
    per_case = 1 if algorithm == "auto" else 2  # twopass.softmax, and softmax_f32_rows directly
    assert f"checked {len(TAILS) * len(ROWS) * len(PLACEMENTS) * per_case} cases" in stdout, stdout


@pytest.mark.skipif(not KERNEL_LEVELS, reason="no kernel level on this CPU")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("level", KERNEL_LEVELS)
def test_columns_next_to_guard_pages(level, dtype):
    """The columns kernels (softmax and log_softmax over a non-contiguous axis): every width of the last, partial
    vector and of the 256-column blocks, against the guard pages."""
    stdout = run_python(COLUMNS, level, dtype)
    assert f"checked {47 * 3 * 2 * 2 * 2} cases" in stdout, stdout  # softmax and log_softmax


def test_read_only_memory_mapped_input(tmp_path):
    stdout = run_python(MEMMAP, tmp_path / "x.f32")
    shapes_per_count = [2, 2, 2, 1]  # page-multiple counts (and 1000) also run as (4, count // 4)
    expected = sum(shapes_per_count) * 3 * len(twopass.available_levels()) * len(ALGORITHMS)
    assert f"checked {expected} cases" in stdout, stdout


@pytest.mark.parametrize("level", twopass.available_levels())
def test_read_only_inputs_in_process(level):
    # read-only arrays (a flag, not a protection) through every path: fast, copying, float16
    rng = np.random.default_rng(5)
    for x in (rng.uniform(-20, 20, 1001).astype(np.float32), rng.uniform(-20, 20, (7, 33)).astype(np.float32),
              rng.uniform(-5, 5, 257).astype(np.float16), rng.uniform(-20, 20, (7, 33))):
        x.flags.writeable = False
        with twopass.use_isa(level):
            for algorithm in ALGORITHMS:
                for axis in (-1, 0, None):
                    y = twopass.softmax(x, axis=axis, algorithm=algorithm)
                    x64 = x.astype(np.float64)
                    with np.errstate(all="ignore"):
                        e = np.exp(x64 - x64.max(axis=axis, keepdims=True))
                        ref = e / e.sum(axis=axis, keepdims=True)
                    if x.dtype == np.float16:  # float16 rounding; subnormals below 2^-14
                        np.testing.assert_allclose(y, ref, rtol=1e-3, atol=2.0**-24)
                    elif x.dtype == np.float64:
                        np.testing.assert_allclose(y, ref, rtol=1e-14, atol=2.0**-1021)
                    else:
                        np.testing.assert_allclose(y, ref, rtol=1e-6, atol=2.0**-125)
