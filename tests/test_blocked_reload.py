"""blocked_reload: three-pass reload with its max pass folded into the exp pass, block by block on
the exponent of the largest max so far, found by the exp kernel on the way (the first span of two sum
blocks finds its max first; src/softmax_template.h). On the kernels its results are
three_pass_reload's bit for bit (the blocks' exponents differ from the slice's by powers of two, which
scale exactly), but for outputs below about 2^-125, which either may flush to 0 (the inputs here stay
clear of that). It runs reload itself for rows of one span, in place (float32, float64), and for
slices with NaN, +inf, a block beyond the shift limit or only -inf. The kernels count the slices that
ran its own passes, so each case also says which path ran."""
import numpy as np
import pytest

import twopass
from twopass import kernels

from conftest import max_relative_error, reference_softmax

KERNEL_LEVELS = twopass.available_levels()[1:]
DTYPES = [np.float32, np.float64, np.float16]
BLOCK = 1024  # TWOPASS_SUM_BLOCK
SPAN = 2 * BLOCK  # the blocks that share one max (TP_BLOCKS_PER_MAX): slices of one span run reload
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
            ran = blocked_slices() - before  # its own passes ran, every row, where there is more than a span
            assert ran == (2 * x.shape[0] if n > SPAN else 0), n
            ref = reference_softmax(x) if dtype != np.float64 else longdouble_softmax(x)
            tolerance = {np.float16: 2e-3, np.float32: 1e-6, np.float64: 1e-14}[dtype]
            assert max_relative_error(got, ref, floor=np.finfo(dtype).tiny,
                                      flush=float(np.finfo(dtype).tiny) * 2) <= tolerance, n


@pytest.mark.parametrize("level_name", KERNEL_LEVELS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_block_far_above_the_max_so_far_is_redone_not_sent_to_reload(level_name, dtype):
    """Blocks whose values lie up to hundreds of binades above the max so far (float64: thousands):
    their first try on the old exponent overflows, and on AVX2, which builds 2^d in the exponent
    field, wraps to +inf, -inf and garbage among its terms, so its sum is NaN. The redo on the
    block's own max replaces it: blocked_reload's own passes run (counted), with reload's bits. Also
    a row rising all along, whose every span raises the exponent."""
    rng = np.random.default_rng(12)
    n = 8 * BLOCK
    reach = 3000.0 if dtype == np.float64 else 400.0  # d of 0 .. 4300 (float64), 0 .. 580 binades
    x = rng.uniform(-5, 5, (3, n))
    x[0, 3 * BLOCK: 4 * BLOCK] += rng.uniform(0, reach, BLOCK)  # the fourth block: on the way
    x[1, 5 * BLOCK:] = rng.uniform(0, reach, 3 * BLOCK)
    x[2] = np.linspace(-reach, reach, n)
    x = x.astype(dtype)
    with twopass.use_isa(level_name):
        expected = run(x, "three_pass_reload", threads=1)
        before = blocked_slices()
        got = run(x, "blocked_reload", threads=1)
        assert blocked_slices() - before == 3  # none went to reload
    np.testing.assert_array_equal(bits(got), bits(expected))


@pytest.mark.parametrize("level_name", KERNEL_LEVELS)
def test_rows_of_one_block_run_reload(level_name):
    """Rows of at most one sum block are three_pass_reload's (the short-row groups included)."""
    x = np.random.default_rng(2).uniform(-30, 30, (300, BLOCK)).astype(np.float32)
    with twopass.use_isa(level_name):
        before = blocked_slices()
        for n in (2, 64, 1000, BLOCK):
            np.testing.assert_array_equal(run(x[:, :n], "blocked_reload"), run(x[:, :n], "three_pass_reload"))
        assert blocked_slices() == before


def special_rows(n, dtype, rng):
    """{name: row} of n elements: NaN, +inf and (float32, float64) a value beyond the shift limit
    (2^16, 2^37) in the first span and the last one, a whole span whose max lies below minus the
    limit, a row of -inf alone and one beyond the limit throughout."""
    huge = {np.float32: 1e5, np.float64: 1e12}.get(dtype)  # halves stay within +-65504 < 2^16
    cases = {}
    for where in (0, n - 1):
        for name, value in (("nan", np.nan), ("inf", np.inf), ("huge", huge)):
            if value is not None:
                row = rng.uniform(-20, 20, n)
                row[where] = value
                cases[f"{name}@{where}"] = row
        if huge is not None:
            row = rng.uniform(-20, 20, n)  # a whole span beyond the limit below: its max is too
            start = where // SPAN * SPAN
            row[start: start + SPAN] -= huge
            cases[f"-huge span@{start}"] = row
    cases["all -inf"] = np.full(n, -np.inf)
    if huge is not None:
        cases["all huge"] = rng.uniform(-20, 20, n) + huge  # every block beyond the limit
    return cases


@pytest.mark.parametrize("level_name", KERNEL_LEVELS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [5 * BLOCK + 3, 40 * BLOCK + 3])
def test_special_values_fall_back_to_reload(level_name, dtype, n):
    """NaN, +inf, a value beyond the shift limit or a span whose max lies below minus it, in the first
    span or the last, and rows of -inf alone: reload's results (SciPy's NaN, and the huge values
    exact), x untouched, none of blocked reload's passes counted; also in place (float16 keeps its exps
    apart, so there pass 1 runs before the fallback). Rows shared out one per thread, and one by one,
    where rows of 40963 are cut into chunks on two threads (the special value in the first or last)."""
    rng = np.random.default_rng(4)
    cases = special_rows(n, dtype, rng)
    x = np.array(list(cases.values())).astype(dtype)
    kept = x.copy()
    with twopass.use_isa(level_name):
        expected = run(x, "three_pass_reload", threads=1)
        before = blocked_slices()
        got = run(x, "blocked_reload", threads=2)  # rows shared out whole
        one_by_one = np.array([run(row, "blocked_reload", threads=2) for row in x])  # long ones in chunks
        assert blocked_slices() == before
        np.testing.assert_array_equal(bits(x), bits(kept))
        in_place = x.copy()
        run(in_place, "blocked_reload", out=in_place, threads=2)
    for result in (got, one_by_one, in_place):
        np.testing.assert_array_equal(bits(result), bits(expected))
    for i, name in enumerate(cases):
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
