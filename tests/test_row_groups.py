"""Short rows in three-pass reload and two-pass run in groups, pass by pass (softmax_template.h,
reload_group with the levels' softmax_short_rows kernels, whose sum changes order at the unroll: 64 and
128 floats; two_pass_group, whose rows without an exact sum run one by one):
the same bits as row by row (kernels.set_row_group_bytes(0)), on every kernel level and dtype, with
special rows between ordinary ones, subnormal-range outputs, in place, and on one and two threads;
only rows of at most 512 bytes and one sum block are grouped (kernels.thread_stats()["grouped_jobs"]).
Strided rows through the C API: tests/test_cython_api.py."""
import numpy as np
import pytest

import twopass
from twopass import _dispatch, kernels

KERNEL_LEVELS = twopass.available_levels()[1:]
ROW_GROUP_ROW_BYTES = kernels.ROW_GROUP_ROW_BYTES  # longer rows run one by one
PARALLEL_MIN = kernels.PARALLEL_MIN  # smaller jobs run on one thread


def rows_with_specials(rows, n, dtype, seed, spread=30.0):
    """Uniform [-spread, spread] rows, with a NaN row, a +inf row, an all -inf row, a row beyond the
    extended-exponent shift (or float16's range), one far below it, a constant row and rows holding
    a single -inf."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-spread, spread, (rows, n))
    x[1, n // 2] = np.nan
    x[4, 0] = np.inf
    x[6] = -np.inf
    x[9] *= 1e30
    x[10] = 7.0
    x[12:rows:17, -1] = -np.inf
    if dtype != np.float16:  # every exponent below the extended range: two-pass falls back (halves cannot)
        x[11] -= 1e6 if dtype == np.float32 else 1e12
    with np.errstate(over="ignore"):  # float16: the row beyond its range becomes +-inf
        return x.astype(dtype)


def bits(a):
    return a.view(f"u{a.dtype.itemsize}")


def grouped_jobs():
    return kernels.thread_stats()["grouped_jobs"]


def row_by_row(x, algorithm="three_pass_reload", **kwargs):
    try:
        kernels.set_row_group_bytes(0)
        return twopass.softmax(x, axis=-1, algorithm=algorithm, **kwargs)
    finally:
        kernels.set_row_group_bytes()


def test_row_group_switch_resets():
    default = kernels.row_group_bytes()
    assert default == kernels.ROW_GROUP_BYTES
    try:
        kernels.set_row_group_bytes(0)
        assert kernels.row_group_bytes() == 0
    finally:
        kernels.set_row_group_bytes()
    assert kernels.row_group_bytes() == default


@pytest.mark.parametrize("level_name", KERNEL_LEVELS)
@pytest.mark.parametrize("dtype, n", [(dtype, n) for dtype in (np.float32, np.float64, np.float16)
                                      for n in (1, 3, 8, 16, 37, 64, 65, 100, 127, 128, 129, 200, 256)
                                      if n * np.dtype(dtype).itemsize <= ROW_GROUP_ROW_BYTES])
@pytest.mark.parametrize("spread", [30.0, 120.0])  # 120: outputs down to e^-240, flushed below 2^-126
@pytest.mark.parametrize("algorithm", ["three_pass_reload", "two_pass"])
def test_groups_give_the_bits_of_row_by_row(level_name, dtype, n, spread, algorithm):
    rows = max(203, PARALLEL_MIN // n + 7)  # enough for two threads to run
    x = rows_with_specials(rows, n, dtype, seed=n, spread=spread)
    auto_runs = _dispatch.auto_algorithm(level_name, n, np.dtype(dtype).itemsize, x.size)
    with twopass.use_isa(level_name):
        before = grouped_jobs()
        expected = row_by_row(x, algorithm, threads=1)
        assert grouped_jobs() == before
        for threads in (1, 2):
            teams = kernels.thread_stats()["teams"]
            got = twopass.softmax(x, axis=-1, algorithm=algorithm, threads=threads)
            assert kernels.thread_stats()["teams"] - teams == threads - 1  # two threads share the groups
            assert np.array_equal(bits(got), bits(expected)), (threads, np.argwhere(bits(got) != bits(expected))[:5])
            auto = twopass.softmax(x, axis=-1, threads=threads)
            assert np.array_equal(bits(auto), bits(expected)) or auto_runs != algorithm
        assert grouped_jobs() - before == (0 if n == 1 else 4)  # single elements: softmax_slice's exact 1
        inplace = x.copy()
        twopass.softmax(inplace, axis=-1, algorithm=algorithm, out=inplace, threads=2)
        assert np.array_equal(bits(inplace), bits(expected))
    # and the rows are right: against the reference, row by row
    assert np.isnan(expected[1]).all() and np.isnan(expected[4]).all() and np.isnan(expected[6]).all()
    with np.errstate(all="ignore"):
        x64 = x.astype(np.float64)
        e = np.exp(x64 - x64.max(axis=1, keepdims=True))
        ref = e / e.sum(axis=1, keepdims=True)
    finite = np.isfinite(ref).all(axis=1)
    tol = {np.float32: 1e-5, np.float64: 1e-13, np.float16: 2e-3}[dtype]
    # float16 results below 2^-14 are float16 subnormals (spacing 2^-24); float32 and float64 ones
    # below 2^-125 and 2^-1021 may be flushed to 0
    atol = 2.0**-23 if dtype == np.float16 else 0.0
    floor = {np.float32: 2.0**-125, np.float64: 2.0**-1021, np.float16: 0.0}[dtype]
    got, want = expected[finite].astype(np.float64), ref[finite]
    assert np.all((np.abs(got - want) <= tol * want + atol) | ((want < floor) & (np.abs(got) <= floor)))


@pytest.mark.parametrize("level_name", KERNEL_LEVELS)
def test_only_short_rows_of_one_sum_block_are_grouped(level_name):
    with twopass.use_isa(level_name):
        longest = ROW_GROUP_ROW_BYTES // 4  # float32 elements
        for n, grouped in ((longest, True), (longest + 1, False), (1000, False)):
            x = np.random.default_rng(n).uniform(-30, 30, (300, n)).astype(np.float32)
            before = grouped_jobs()
            twopass.softmax(x, axis=-1, algorithm="three_pass_reload", threads=1)
            assert (grouped_jobs() > before) == grouped, n
            for algorithm in ("two_pass", "three_pass_recompute", "online", "blocked_reload"):
                before = grouped_jobs()
                twopass.softmax(x, axis=-1, algorithm=algorithm, threads=1)
                # blocked_reload's rows of one sum block are reload's, groups included
                expected = grouped and algorithm in ("two_pass", "blocked_reload")
                assert (grouped_jobs() > before) == expected, (n, algorithm)
        x = np.random.default_rng(0).uniform(-30, 30, (300, 64)).astype(np.float32)
        try:
            kernels.set_sum_block(16)  # rows of 4 blocks: the slice path, blocked sums
            for algorithm in ("three_pass_reload", "two_pass"):
                before = grouped_jobs()
                blocked = twopass.softmax(x, axis=-1, algorithm=algorithm, threads=1)
                assert grouped_jobs() == before
                assert np.array_equal(bits(blocked), bits(row_by_row(x, algorithm, threads=1)))
        finally:
            kernels.set_sum_block(0)


@pytest.mark.parametrize("level_name", KERNEL_LEVELS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_short_rows_kernel_sums_in_the_order_of_its_level(level_name, dtype):
    """softmax_short_rows keeps the bits of row by row only with the unroll and accumulators of the
    level's raddstoreexpminusmax (kernels.h lists them by hand)."""
    names = kernels.kernel_names(twopass.LEVELS.index(level_name), dtype)
    variants = {v["name"]: v for v in kernels.registry(dtype)}
    short, store = variants[names["softmax_short_rows"]], variants[names["raddstoreexpminusmax"]]
    assert (short["unroll"], short["accumulators"]) == (store["unroll"], store["accumulators"])
