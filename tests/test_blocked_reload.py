"""blocked_reload: three-pass reload with its max pass folded into the exp pass, block by block
(src/softmax_template.h). On the kernels its results are three_pass_reload's bit for bit (the
blocks' exponents differ from the slice's by powers of two, which scale exactly); it falls back to
reload itself in place, and for slices with NaN, +inf, values beyond the shift limit or only -inf.
The kernels count the slices that ran its own passes, so each case also says which path ran."""
import numpy as np
import pytest

import twopass
from twopass import kernels

from conftest import max_relative_error, reference_softmax

KERNEL_LEVELS = twopass.available_levels()[1:]
DTYPES = [np.float32, np.float64, np.float16]
BLOCK = 1024  # TWOPASS_SUM_BLOCK
# around one and two blocks, the chunks of the threads (TWOPASS_CHUNK_MIN = 4 blocks), and past the
# 512 block exponents kept on the stack
LENGTHS = [1025, 1031, 2047, 2048, 2049, 4095, 4096, 4097, 3 * 4096 + 17, 40_000, 512 * BLOCK + 1, 600_000]


def blocked_slices():
    return kernels.thread_stats()["blocked_slices"]


def run(x, algorithm, **kwargs):
    return twopass.softmax(x, axis=-1, algorithm=algorithm, **kwargs)


def bits(y):
    return y.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[y.itemsize])


def longdouble_softmax(x):
    x = x.astype(np.longdouble)
    with np.errstate(all="ignore"):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return (e / e.sum(axis=-1, keepdims=True)).astype(np.float64)


def rows_with_steps(n, dtype, rng):
    """Rows whose blocks sit far apart: uniform, a row whose first half lies 150 below the rest (its
    blocks' exponents differ by ~216 binades: flushed, as reload flushes them), a row rising block
    by block, a row with whole blocks of -inf, and one with a single finite element."""
    x = rng.uniform(-40, 40, (5, n))
    x[1, : n // 2] -= 150
    x[2] += np.arange(n) // BLOCK * 3.0
    x[3, BLOCK // 2: BLOCK // 2 + 2 * BLOCK] = -np.inf
    x[3, -min(n, BLOCK):] = -np.inf
    x[4] = -np.inf
    x[4, n // 3] = 2.5
    if dtype == np.float16:
        x = np.clip(x, -60000, 60000)
    return x.astype(dtype)


@pytest.mark.parametrize("level_name", KERNEL_LEVELS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_reload_bits_at_every_length(level_name, dtype):
    rng = np.random.default_rng(11)
    with twopass.use_isa(level_name):
        for n in LENGTHS:
            x = rows_with_steps(n, dtype, rng)
            expected = run(x, "three_pass_reload", threads=1)
            before = blocked_slices()
            for threads in (1, 2):
                got = run(x, "blocked_reload", threads=threads)
                np.testing.assert_array_equal(bits(got), bits(expected), err_msg=f"n={n} threads={threads}")
            assert blocked_slices() - before == 2 * x.shape[0], n  # its own passes ran, every row
            ref = reference_softmax(x) if dtype != np.float64 else longdouble_softmax(x)
            tolerance = {np.float16: 2e-3, np.float32: 1e-6, np.float64: 1e-14}[dtype]
            assert max_relative_error(got, ref, floor=np.finfo(dtype).tiny,
                                      flush=float(np.finfo(dtype).tiny) * 2) <= tolerance, n


@pytest.mark.parametrize("level_name", KERNEL_LEVELS)
def test_rows_of_one_block_run_reload(level_name):
    """Rows of at most one sum block are three_pass_reload's (the short-row groups included)."""
    x = np.random.default_rng(2).uniform(-30, 30, (300, BLOCK)).astype(np.float32)
    with twopass.use_isa(level_name):
        before = blocked_slices()
        for n in (2, 64, 1000, BLOCK):
            np.testing.assert_array_equal(run(x[:, :n], "blocked_reload"), run(x[:, :n], "three_pass_reload"))
        assert blocked_slices() == before


@pytest.mark.parametrize("level_name", KERNEL_LEVELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values_fall_back_to_reload(level_name, dtype):
    """NaN, +inf, a value beyond the shift limit (2^16 for float32, 2^37 for float64) or a block whose
    max lies below minus the limit, in the first block or a later one, and rows of -inf alone: reload's results (SciPy's NaN, and the huge
    values exact), with x untouched, and none of blocked reload's passes counted."""
    rng = np.random.default_rng(4)
    n = 5 * BLOCK + 3
    huge = 1e5 if dtype == np.float32 else 1e12
    cases = {}
    for where in (0, 4 * BLOCK + 1):
        for name, value in (("nan", np.nan), ("inf", np.inf), ("huge", huge)):
            row = rng.uniform(-20, 20, n)
            row[where] = value
            cases[f"{name}@{where}"] = row
        row = rng.uniform(-20, 20, n)  # a whole block beyond the limit below: its max is too
        start = where // BLOCK * BLOCK
        row[start: start + BLOCK] -= huge
        cases[f"-huge block@{start}"] = row
    cases["all -inf"] = np.full(n, -np.inf)
    big = rng.uniform(-20, 20, n) + huge  # every block beyond the limit
    cases["all huge"] = big
    x = np.array(list(cases.values()), dtype)
    kept = x.copy()
    with twopass.use_isa(level_name):
        expected = run(x, "three_pass_reload", threads=1)
        before = blocked_slices()
        got = run(x, "blocked_reload", threads=2)
        assert blocked_slices() == before
    np.testing.assert_array_equal(bits(got), bits(expected))
    np.testing.assert_array_equal(bits(x), bits(kept))
    names = list(cases)
    for i, name in enumerate(names):
        if name.startswith(("nan", "inf", "all -inf")):
            assert np.isnan(got[i]).all(), name
        else:  # the huge values are computed as SciPy's exp(x - max)
            assert max_relative_error(got[i], reference_softmax(x[i].astype(np.float64))) <= 1e-6, name


@pytest.mark.parametrize("level_name", KERNEL_LEVELS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_in_place(level_name, dtype):
    """out=x: reload's bits. float32 and float64 store their exps in y, here x itself, so pass 1 would
    overwrite x before a later block could send the slice to reload: they run reload; float16 keeps its
    exps apart and runs its own passes."""
    x = np.random.default_rng(6).uniform(-50, 50, (3, 3 * BLOCK + 5)).astype(dtype)
    with twopass.use_isa(level_name):
        expected = run(x, "three_pass_reload")
        before = blocked_slices()
        assert run(x, "blocked_reload", out=x) is x
        ran = blocked_slices() - before
    np.testing.assert_array_equal(bits(x), bits(expected))
    assert ran == (3 if dtype == np.float16 else 0)


@pytest.mark.parametrize("level_name", KERNEL_LEVELS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_log_softmax_is_two_pass(level_name, dtype):
    """log_softmax and logsumexp take blocked_reload as two_pass (its logsumexp is the one-read
    extended sum): the same bits."""
    x = np.random.default_rng(8).uniform(-50, 50, (3, 5000)).astype(dtype)
    with twopass.use_isa(level_name):
        np.testing.assert_array_equal(twopass.log_softmax(x, axis=-1, algorithm="blocked_reload"),
                                      twopass.log_softmax(x, axis=-1, algorithm="two_pass"))


def test_fallback_level():
    """The NumPy fallback's blocked_reload (tiles of 16384 elements, each with its own max) against
    float64 and SciPy's special values: NaN, +inf and -inf alone give NaN; tiles of -inf alone give 0."""
    rng = np.random.default_rng(10)
    n = 3 * 16384 + 100
    x = rng.uniform(-80, 80, (6, n))
    x[1, :16384] -= 400  # a whole tile far below the rest
    x[2, 16384: 2 * 16384] = -np.inf
    x[3, 40000] = np.nan
    x[4, 5] = np.inf
    x[5] = -np.inf
    with twopass.use_isa("python"):
        for dtype in (np.float32, np.float64):
            y = run(x.astype(dtype), "blocked_reload")
            assert max_relative_error(y[:3], reference_softmax(x[:3].astype(dtype))) <= 1e-6
            assert (y[2, 16384: 2 * 16384] == 0).all()
            assert np.isnan(y[3:]).all()
