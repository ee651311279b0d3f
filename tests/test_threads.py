"""threads=, set_num_threads and the OpenMP drivers.

- every function gives bitwise the same result for 1, 2, 3 and 5 threads, on every level, for
  lengths that cut into one, a few and many chunks (TWOPASS_CHUNK_MIN = 4096), one long slice and
  many rows, and special values;
- the threads really run: the drivers' team counter (kernels.thread_stats) grows by teams of the
  requested size, and does not for threads=1, for jobs under PARALLEL_MIN, under
  set_num_threads(1), threadpoolctl's threadpool_limits(1) or OMP_NUM_THREADS=1;
- a child forked after a team ran (libgomp cannot start another there) runs on one thread and
  gives the same answer instead of hanging;
- bad thread counts raise TypeError / ValueError before anything is written.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import twopass
from twopass import kernels

from conftest import reference_softmax, max_relative_error

THREAD_COUNTS = (1, 2, 3, 5)
KERNEL_LEVELS = [lv for lv in twopass.available_levels() if lv != "python"]
ALGORITHMS = list(twopass.ALGORITHMS)
# one chunk, a partial second chunk, many chunks, the most chunks (256 of them) with a ragged end
LENGTHS = (4096, 4097, 70_001, 1_234_567)


def data(shape, seed=0, scale=30.0):
    x = np.random.default_rng(seed).normal(0.0, scale, shape).astype(np.float32)
    return x


def all_functions(x, threads, algorithm):
    """Every entry point on x (1-D or 2-D, reduced over the last axis) with a thread count."""
    m, e = twopass.extsum(x, axis=-1, threads=threads)
    return [
        twopass.softmax(x, axis=-1, algorithm=algorithm, threads=threads),
        twopass.log_softmax(x, axis=-1, algorithm=algorithm, threads=threads),
        np.asarray(twopass.logsumexp(x, axis=-1, threads=threads)),
        np.asarray(m), np.asarray(e),
        twopass.softmax_from_extsum(x, (m, e), axis=-1, threads=threads),
    ]


def assert_same_for_every_thread_count(x, algorithm):
    results = {t: all_functions(x, t, algorithm) for t in THREAD_COUNTS}
    for t in THREAD_COUNTS[1:]:
        for i, (a, b) in enumerate(zip(results[1], results[t])):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert np.array_equal(a, b, equal_nan=True), f"output {i} differs between 1 and {t} threads"
    return results[1]


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("level", KERNEL_LEVELS)
def test_one_slice_bitwise_the_same_for_any_thread_count(level, n, algorithm):
    x = data(n, seed=n)
    with twopass.use_isa(level):
        y = assert_same_for_every_thread_count(x, algorithm)[0]
    assert max_relative_error(y, reference_softmax(x)) < 2e-6


@pytest.mark.parametrize("shape", [(3, 70_001), (7, 9000), (64, 1000), (40, 20_000)])
@pytest.mark.parametrize("level", KERNEL_LEVELS)
def test_rows_bitwise_the_same_for_any_thread_count(level, shape, algorithm):
    """Few long rows (each cut into chunks) and many rows (shared out whole) alike."""
    x = data(shape, seed=shape[0])
    with twopass.use_isa(level):
        y = assert_same_for_every_thread_count(x, algorithm)[0]
    assert max_relative_error(y, reference_softmax(x)) < 2e-6


@pytest.mark.parametrize("level", KERNEL_LEVELS)
def test_special_values_in_a_chunk_of_a_long_slice(level):
    """NaN, +inf and -inf in one chunk of a parallel slice decide the whole slice, as on one thread."""
    for value in (np.nan, np.inf, -np.inf):
        x = data(200_000, seed=3)
        x[150_123] = value
        with twopass.use_isa(level):
            for algorithm in ALGORITHMS:
                results = assert_same_for_every_thread_count(x, algorithm)
            with np.errstate(all="ignore"):
                expected = reference_softmax(x)
            nan = np.isnan(expected)
            assert np.array_equal(np.isnan(results[0]), nan)
            assert max_relative_error(results[0][~nan], expected[~nan]) < 2e-6


@pytest.mark.parametrize("level", KERNEL_LEVELS)
@pytest.mark.parametrize("order", ["C", "F"])
def test_columns_bitwise_the_same_for_any_thread_count(level, order):
    """softmax over a non-contiguous axis (the columns kernels): blocks of columns per thread."""
    x = np.asfortranarray(data((300, 2000))) if order == "F" else data((300, 2000))
    axis = 1 if order == "F" else 0
    with twopass.use_isa(level):
        ys = [twopass.softmax(x, axis=axis, threads=t) for t in THREAD_COUNTS]
    for y in ys[1:]:
        assert np.array_equal(ys[0], y)
    assert max_relative_error(ys[0], reference_softmax(x, axis=axis)) < 2e-6


def teams_during(call):
    before = kernels.thread_stats()
    call()
    after = kernels.thread_stats()
    return after["teams"] - before["teams"], after["team_threads"] - before["team_threads"]


@pytest.mark.parametrize("level", KERNEL_LEVELS)
def test_threads_run_in_teams_of_the_requested_size(level):
    x = data(1_000_000)
    with twopass.use_isa(level):
        teams, threads = teams_during(lambda: twopass.softmax(x, threads=2, algorithm="two_pass"))
        assert teams == 2 and threads == 4  # pass 1 and pass 2, two threads each
        teams, threads = teams_during(lambda: twopass.softmax(x, threads=3, algorithm="three_pass_reload"))
        assert teams == 3 and threads == 9  # max, sum and store, scale
        assert teams_during(lambda: twopass.softmax(x, threads=1)) == (0, 0)
        small = data(kernels.PARALLEL_MIN - 1)
        assert teams_during(lambda: twopass.softmax(small, threads=2)) == (0, 0)
        rows = data((64, 1000))  # many short rows: one team shares them out
        assert teams_during(lambda: twopass.logsumexp(rows, axis=-1, threads=2)) == (1, 2)


def test_default_threads_follow_set_num_threads_and_threadpoolctl():
    x = data(1_000_000)
    default = twopass.get_num_threads()
    assert default == min(len(os.sched_getaffinity(0)), threadpool_info_threads())
    try:
        twopass.set_num_threads(1)
        assert twopass.get_num_threads() == 1
        assert teams_during(lambda: twopass.softmax(x)) == (0, 0)
        twopass.set_num_threads(2)
        assert twopass.get_num_threads() == min(2, threadpool_info_threads())
        if twopass.get_num_threads() == 2:
            assert teams_during(lambda: twopass.softmax(x, algorithm="two_pass")) == (2, 4)
        with threadpool_limits(limits=1, user_api="openmp"):
            assert twopass.get_num_threads() == 1
            assert teams_during(lambda: twopass.softmax(x)) == (0, 0)
            # an explicit count is used as given
            assert teams_during(lambda: twopass.softmax(x, threads=2, algorithm="two_pass")) == (2, 4)
    finally:
        twopass.set_num_threads(len(os.sched_getaffinity(0)))
    assert twopass.get_num_threads() == default


def threadpool_info_threads():
    """The OpenMP limit threadpoolctl reports for the libgomp twopass loads."""
    gomp = [lib for lib in threadpool_info() if lib["user_api"] == "openmp"]
    assert gomp, f"threadpoolctl sees no OpenMP library: {threadpool_info()}"
    return gomp[0]["num_threads"]


def run_python(code, env=None, timeout=120):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_omp_num_threads_caps_the_default():
    res = run_python("import twopass; print(twopass.get_num_threads())", env={"OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "1"


def test_a_child_forked_after_a_team_runs_on_one_thread():
    """libgomp cannot start a team in a child forked after the parent ran one: it would wait forever.
    The child must answer, on one thread, with the parent's bits."""
    code = """
        import os, sys
        import numpy as np
        import twopass
        from twopass import kernels
        x = np.random.default_rng(0).normal(0, 10, 1_000_000).astype(np.float32)
        y = twopass.softmax(x, threads=2, algorithm="two_pass")
        assert kernels.thread_stats()["teams"] > 0
        pid = os.fork()
        if pid == 0:
            before = kernels.thread_stats()["teams"]
            z = twopass.softmax(x, threads=2, algorithm="two_pass")
            ok = (np.array_equal(y, z) and twopass.get_num_threads() == 1
                  and kernels.thread_stats()["teams"] == before)
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
    """
    res = run_python(code, timeout=60)
    assert res.returncode == 0, (res.returncode, res.stderr)


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-2, ValueError), (1.5, TypeError),
                                        ("2", TypeError), (True, TypeError)])
def test_bad_thread_counts_are_rejected(bad, error):
    x = data(100_000)
    out = np.full_like(x, 7.0)
    calls = [
        lambda: twopass.softmax(x, out=out, threads=bad),
        lambda: twopass.log_softmax(x, out=out, threads=bad),
        lambda: twopass.softmax(x.astype(np.float64), threads=bad),
        lambda: twopass.logsumexp(x, threads=bad),
        lambda: twopass.extsum(x, threads=bad),
        lambda: twopass.softmax_from_extsum(x, twopass.extsum(x), out=out, threads=bad),
        lambda: twopass.set_num_threads(bad),
    ]
    for level in twopass.available_levels():
        with twopass.use_isa(level):
            for call in calls:
                with pytest.raises(error, match="number of threads"):
                    call()
    assert np.all(out == 7.0)
    assert twopass.get_num_threads() >= 1


@pytest.mark.parametrize("count", [1, 2, 1 << 16, (1 << 16) + 1, 1 << 70])
def test_huge_thread_counts_are_capped(count):
    """Any int >= 1 is a thread count (capped at MAX_THREADS); the answer does not depend on it, on
    the typed layer's fast path (kernel levels) and on twopass._api's (python level) alike."""
    x = data((3, 100_000))
    for level in twopass.available_levels():
        with twopass.use_isa(level):
            y = twopass.softmax(x, axis=-1, threads=count)
            assert np.array_equal(y, twopass.softmax(x, axis=-1, threads=1)), level
            assert np.array_equal(twopass.log_softmax(x, axis=-1, threads=count),
                                  twopass.log_softmax(x, axis=-1, threads=1)), level


def test_numpy_integers_are_thread_counts():
    x = data(100_000)
    assert np.array_equal(twopass.softmax(x, threads=np.int64(2)), twopass.softmax(x, threads=1))


def test_python_level_accepts_threads():
    """The NumPy fallback runs on one thread; threads= is accepted and checked there too."""
    x = data((4, 50_000))
    with twopass.use_isa("python"):
        y = twopass.softmax(x, axis=-1, threads=2)
    assert max_relative_error(y, reference_softmax(x)) < 2e-6
