"""twopass.dask on a real dask.distributed LocalCluster (2 worker processes, 1 thread each), against
SciPy in float64 and against twopass itself: every float, integer and bool dtype, reduced axes in
one chunk (the kernels per block) and split across chunks (two-pass across blocks), axis None /
int / negative / tuple, keepdims, NaN / +-inf / all -inf / huge slices, empty arrays, and the
structure of the graph (no task sees more than one block of x; each block feeds two tasks).
"""
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import scipy.special as sp
from dask.core import get_dependencies
from dask.distributed import Client, LocalCluster

import twopass
import twopass.dask as tpd

KINDS = ("softmax", "log_softmax", "logsumexp")
AXES = (None, 0, 1, -1, (0, 2), (2, 1))
# (6, 20, 9) in one chunk; axes 1 and 2 whole, axis 0 split; every axis split; only axis 1 split
CHUNKINGS = ((6, 20, 9), (3, 20, 9), (3, 7, 5), (6, 5, 9))
# error bounds, relative (softmax) or of the value's magnitude (log_softmax, logsumexp): float32 is
# twopass's documented kernel bound (1e-6, ~8 ULP; measured 4.2 ULP on the column kernels, 2 in
# the split plan), float16 two of its ULP (computed in float32 or float64, rounded once), float64
# four ULP
TOL = {np.dtype(np.float16): 2 * 2.0**-10, np.dtype(np.float32): 1e-6, np.dtype(np.float64): 4 * 2.0**-52}


def two_worker_cluster():
    return LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")


def wait_for_two_workers(client, cluster, timeout=300):
    """Both workers up, or a failure that shows the cluster's logs (why one is missing)."""
    try:
        client.wait_for_workers(2, timeout=timeout)
    except TimeoutError as error:  # distributed's WorkerStartTimeoutError
        pytest.fail(f"{error}; the cluster's logs: {cluster.get_logs()}")


@pytest.fixture(scope="module")
def client():
    with two_worker_cluster() as cluster, Client(cluster) as c:
        wait_for_two_workers(c, cluster)
        yield c


def reference(kind, x, axis, keepdims=False):
    """SciPy in float64 (exact integers, no wrap-around of unsigned x - max)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        x64 = x.astype(np.float64)
        if kind == "logsumexp":
            return sp.logsumexp(x64, axis=axis, keepdims=keepdims)
        return getattr(sp, kind)(x64, axis=axis)


def assert_close(kind, y, ref, x, axis, dtype):
    """softmax: relative error <= TOL + 4 eps64 |log y| (SciPy's own float64 exp(x - max) has the
    second term; outputs below the dtype's smallest normal: absolute, the kernels flush them);
    log_softmax: <= TOL max(|x|, |logsumexp|, 1); logsumexp: <= TOL max(|value|, 1).
    Non-finite references must be matched exactly (NaN where NaN)."""
    y = np.asarray(y)
    assert y.dtype == dtype, (kind, y.dtype, dtype)
    assert y.shape == ref.shape
    eps = TOL[np.dtype(dtype)]
    with np.errstate(all="ignore"):
        y64 = y.astype(np.float64)
        if kind == "softmax":
            # plus the conditioning of exp: x - logsumexp carries float64 rounding of its size
            bound = ref * (eps + 4 * 2.0**-52 * np.abs(np.log(np.where(ref > 0, ref, 1.0)))) + np.finfo(dtype).tiny
        elif kind == "log_softmax":
            lse = reference("logsumexp", x, axis, keepdims=True) if x.ndim else x.astype(np.float64)
            bound = eps * np.maximum(np.maximum(np.abs(x.astype(np.float64)), np.abs(lse)), 1.0)
        else:
            bound = eps * np.maximum(np.abs(ref), 1.0)
        representable = np.abs(ref) <= np.finfo(dtype).max  # else the result dtype overflows
        finite = np.isfinite(ref) & representable
        err = np.where(finite, np.abs(y64 - ref), 0.0)
        bound = np.where(finite, bound, np.inf)
    assert np.array_equal(np.isnan(y64), np.isnan(ref)), (kind, y, ref)
    assert np.array_equal(y64[~np.isfinite(ref)], ref[~np.isfinite(ref)], equal_nan=True), (kind, y, ref)
    worst = np.unravel_index(np.argmax(err - bound), err.shape) if err.size else ()
    assert np.all(err <= bound), (kind, dtype, worst, y64[worst] if err.size else None,
                                  ref[worst] if err.size else None)


def split(arr, axis):
    """True if the reduced axes of this dask array are split across chunks."""
    axes = range(arr.ndim) if axis is None else (axis,) if isinstance(axis, int) else axis
    return any(arr.numblocks[a] > 1 for a in axes)


def run_all(x, cases):
    """Build every (kind, chunks, axis, keepdims) case, compute them together, check each."""
    built, refs = [], []
    for kind, chunks, axis, keepdims in cases:
        dx = da.from_array(x, chunks=chunks)
        if kind == "logsumexp":
            y = tpd.logsumexp(dx, axis=axis, keepdims=keepdims)
            dtype = np.dtype(np.float64) if x.dtype.kind in "biu" else x.dtype
        else:
            y = getattr(tpd, kind)(dx, axis=axis)
            dtype = getattr(twopass, kind)(x[:1, :1, :1]).dtype  # twopass's (and SciPy's) rule
        assert y.dtype == dtype
        # the plan follows the chunking: two-pass across blocks exactly when a reduced axis is split
        assert any("twopass-extsum" in name for name in y.dask.layers) == split(dx, axis), (chunks, axis)
        built.append(y)
        refs.append((kind, reference(kind, x, axis, keepdims), axis, dtype))
    for y, (kind, ref, axis, dtype) in zip(dask.compute(*built), refs):
        assert_close(kind, y, ref, x, axis, dtype)


def all_cases(chunkings=CHUNKINGS, axes=AXES):
    for kind in KINDS:
        for chunks in chunkings:
            for axis in axes:
                for keepdims in ((False, True) if kind == "logsumexp" else (False,)):
                    yield kind, chunks, axis, keepdims


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_floats_every_axis_and_chunking(client, dtype):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((6, 20, 9)) * 4).astype(dtype)
    x[0, 0, 0] = 30  # one dominant element
    run_all(x, list(all_cases()))


def test_all_axes_in_any_order_and_no_axis(client):
    """axis=(-1, 0, 1) (all of them, unordered, negative) and axis=() (every element its own slice)."""
    x = (np.random.default_rng(8).standard_normal((6, 20, 9)) * 4).astype(np.float32)
    run_all(x, list(all_cases(((6, 20, 9), (3, 7, 5)), ((-1, 0, 1), ()))))


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint64])
def test_integers(client, dtype):
    """Result dtypes as np.exp promotes (int8 -> float16, int16 -> float32, wider -> float64; SciPy's
    for signed types), logsumexp float64; values as SciPy on the exact float64 values."""
    x = np.random.default_rng(2).integers(0 if np.dtype(dtype).kind == "u" else -9, 10, (6, 20, 9)).astype(dtype)
    run_all(x, list(all_cases(((6, 20, 9), (3, 7, 5)), (None, 1, (0, 2)))))
    if np.dtype(dtype).kind == "i":
        for kind in ("softmax", "log_softmax"):
            assert getattr(tpd, kind)(da.from_array(x), axis=1).dtype == getattr(sp, kind)(x, axis=1).dtype


def test_bool(client):
    """bool: logsumexp gives float64 (as SciPy); softmax and log_softmax raise TypeError (as SciPy
    and twopass: NumPy has no boolean subtract)."""
    x = np.random.default_rng(3).integers(0, 2, (6, 20, 9)).astype(bool)
    run_all(x, [c for c in all_cases(((6, 20, 9), (3, 7, 5)), (None, 1, (0, 2))) if c[0] == "logsumexp"])
    for kind in ("softmax", "log_softmax"):
        with pytest.raises(TypeError):
            getattr(tpd, kind)(da.from_array(x, chunks=(2, 7, 4)), axis=1)


INF, NAN = np.inf, np.nan
SPECIAL_ROWS = [
    [1, 2, 3, 4, 5, 6, 7, 8],
    [NAN, 1, 2, 3, 4, 5, 6, 7],
    [1, 2, 3, 4, 5, 6, 7, INF],
    [-INF] * 8,
    [-INF, 1, 2, -INF, -INF, -INF, 3, -INF],
    [-INF, -INF, -INF, -INF, -INF, -INF, -INF, 0],
    [INF, INF, 1, 2, 3, 4, 5, 6],
    [-INF, INF, 1, 2, 3, 4, 5, 6],
    [1, 2, 3, INF, NAN, 5, -INF, 7],
    [0, 0, 0, 0, 0, 0, 0, 0],
    [-60000, -60000, 60000, -60000, 0, 60000, 0, 0],  # float16 range
]
HUGE_ROWS = [
    # around extsum's exact range (|logsumexp| < 2^17 ln 2 ~ 90852): pieces on both sides
    [1e5, 1e5, 1e5, 1e5 - 1, 0, -1e5, 9.0851e4, 9.0853e4],
    [-1e5, -1e5, -1e5, -1e5 - 1, -2e5, -1e5, -9.0851e4, -9.0853e4],
    [9.0849e4, 9.0851e4, 9.0852e4, 9.0853e4, 9.0854e4, 9.0855e4, 9.0856e4, 9.0857e4],
    [-9.0849e4, -9.0851e4, -9.0852e4, -9.0853e4, -9.0854e4, -9.0855e4, -9.0856e4, -9.0857e4],
    [0, 0, 1e5, 1e5, -1e5, -1e5, 50, -50],
    # far beyond: ties at the max must still give 1/k (a float64 logsumexp cannot hold log 3 at 3e38)
    [3e38, 3e38, 3e38, -3e38, 1, 2, 3e38, 0],
    [-3e38] * 8,
    [1e16, 1e16, 1e16, 1e16, 0, 1, 2, 3],
    [1e10, 1e10, 1e10, 0, 0, 0, -1e10, 5],
    [1e7, 1e7, 1e7, 1e7, 1e7, 1e7, 1e7, 1e7 - 4],
]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_special_slices(client, dtype):
    """NaN, +-inf, all -inf and huge slices, the special values in different blocks of a slice.
    Split plans against SciPy (NaN exactly where SciPy and twopass.softmax have NaN); the
    blockwise plan is twopass itself: bitwise equal to it."""
    rows = SPECIAL_ROWS + (HUGE_ROWS if dtype != np.float16 else [])
    with np.errstate(over="ignore"):
        x = np.array(rows, dtype)
    built, checks = [], []
    for chunks in ((len(rows), 8), (4, 1), (3, 2), (5, 3)):
        dx = da.from_array(x, chunks=chunks)
        for kind in KINDS:
            for axis in (1, -1) if chunks[1] == 8 else (1,):
                built.append(getattr(tpd, kind)(dx, axis=axis))
                checks.append((kind, chunks, axis))
        built.append(tpd.softmax(dx.T, axis=0))  # the same slices along the other axis
        checks.append(("softmax-T", chunks, 1))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for y, (kind, chunks, axis) in zip(dask.compute(*built), checks):
            own = getattr(twopass, kind.split("-")[0])(x, axis=axis)
            if kind == "softmax-T":
                y = y.T
            # NaN exactly where twopass has NaN (and SciPy: checked in assert_close)
            assert np.array_equal(np.isnan(y), np.isnan(own)), (kind, chunks, y, own)
            if chunks[1] == 8:
                np.testing.assert_array_equal(y, own)
            else:
                k = kind.split("-")[0]
                assert_close(k, y, reference(k, x, axis), x, axis, own.dtype)


def test_special_slices_every_piece(client):
    """One special value at each position of a slice split in pieces of 2: every block layout."""
    built, xs = [], []
    for value in (NAN, INF, -INF):
        for pos in range(6):
            x = np.arange(6, dtype=np.float32).reshape(1, 6) / 2
            x[0, pos] = value
            xs.append(x)
            dx = da.from_array(x, chunks=(1, 2))
            built += [tpd.softmax(dx, axis=1), tpd.log_softmax(dx, axis=1), tpd.logsumexp(dx, axis=1)]
    results = dask.compute(*built)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, x in enumerate(xs):
            for kind, y in zip(KINDS, results[3 * i: 3 * i + 3]):
                own = getattr(twopass, kind)(x, axis=1)
                assert np.array_equal(np.isnan(y), np.isnan(own)), (kind, x, y, own)
                assert_close(kind, y, reference(kind, x, 1), x, 1, own.dtype)


def test_keepdims_return_sign_empty_and_0d(client):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 12)).astype(np.float32)
    x[1] = -np.inf
    x[2, 3] = np.nan
    dx = da.from_array(x, chunks=(2, 5))
    value, sign = tpd.logsumexp(dx, axis=1, keepdims=True, return_sign=True)
    ref_value, ref_sign = twopass.logsumexp(x, axis=1, keepdims=True, return_sign=True)
    value, sign = dask.compute(value, sign)
    assert value.shape == (5, 1) and sign.dtype == ref_sign.dtype
    np.testing.assert_array_equal(sign, ref_sign)  # 1, 0 for all -inf (twopass's choice), NaN
    np.testing.assert_allclose(value, ref_value, rtol=4e-7, atol=4e-7)
    # empty arrays: empty slices give -inf; an empty array of non-empty slices an empty result
    empty_slices = da.from_array(np.zeros((3, 0), np.float32), chunks=(2, 0))
    np.testing.assert_array_equal(tpd.logsumexp(empty_slices, axis=1).compute(), [-np.inf] * 3)
    assert tpd.logsumexp(empty_slices, axis=1, return_sign=True)[1].compute().tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="zero-size array"):
        tpd.softmax(empty_slices, axis=1)
    with pytest.raises(ValueError, match="zero-size array"):
        tpd.log_softmax(empty_slices)
    no_rows = da.from_array(np.zeros((0, 10), np.float64), chunks=(0, 4))
    for kind in ("softmax", "log_softmax"):
        y = getattr(tpd, kind)(no_rows, axis=1)
        assert y.shape == (0, 10) and y.compute().shape == (0, 10)
    assert tpd.logsumexp(no_rows, axis=1).compute().shape == (0,)
    # 0-d
    scalar = da.from_array(np.float32(3.0))
    assert tpd.softmax(scalar).compute() == 1.0 and tpd.softmax(scalar).dtype == np.float32
    assert tpd.logsumexp(scalar).compute() == np.float32(3.0)
    # plain NumPy input is wrapped with da.asarray
    np.testing.assert_allclose(tpd.softmax(x[3:], axis=1).compute(), twopass.softmax(x[3:], axis=1), rtol=1e-6)


def test_complex_rechunks(client):
    """complex has no extended-exponent sum: split reduced axes are rechunked, SciPy's results."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 10)) + 1j * rng.standard_normal((4, 10))
    dx = da.from_array(x, chunks=(2, 3))
    for kind in KINDS:
        y = getattr(tpd, kind)(dx, axis=1)
        assert any("rechunk" in name for name in y.dask.layers)
        ref = sp.logsumexp(x, axis=1) if kind == "logsumexp" else getattr(sp, kind)(x, axis=1)
        np.testing.assert_allclose(y.compute(), ref, rtol=1e-13)


def test_bad_arguments():
    dx = da.ones((4, 6), chunks=2, dtype=np.float32)
    with pytest.raises(np.exceptions.AxisError):
        tpd.softmax(dx, axis=2)
    with pytest.raises(ValueError):
        tpd.log_softmax(dx, axis=(1, 1))
    with pytest.raises(TypeError):
        tpd.softmax(dx, axis=1.0)
    with pytest.raises(TypeError):
        tpd.softmax(da.from_array(np.array(["a", "b"])))
    with pytest.raises(NotImplementedError):
        tpd.logsumexp(dx, b=dx)


def test_distinct_inputs_distinct_keys(client):
    """Two arrays of the same shape and chunks must not share output keys."""
    a = da.from_array(np.arange(12.0).reshape(3, 4), chunks=2)
    b = da.from_array(-np.arange(12.0).reshape(3, 4), chunks=2)
    for kind in KINDS:
        ya, yb = dask.compute(getattr(tpd, kind)(a, axis=1), getattr(tpd, kind)(b, axis=1))
        np.testing.assert_allclose(ya, reference(kind, np.arange(12.0).reshape(3, 4), 1), rtol=1e-14)
        np.testing.assert_allclose(yb, reference(kind, -np.arange(12.0).reshape(3, 4), 1), rtol=1e-14)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("axis", [1, (0, 1)])
def test_graph_reads_each_block_twice_and_never_gathers(kind, axis):
    """Split reduced axis: every task depends on at most one block of x, each block feeds exactly
    one pass-1 and (softmax, log_softmax) one pass-2 task, the merge tree takes at most
    split_every partial sums per task, and the output keeps x's chunks (no rechunk)."""
    x = da.random.default_rng(0).standard_normal((8, 1000), chunks=(4, 100), dtype=np.float32)
    split_every = 4
    y = getattr(tpd, kind)(x, axis=axis, split_every=split_every)
    graph = dict(y.__dask_graph__())
    blocks = {k for k in graph if k[0] == x.name}
    assert len(blocks) == 20
    feeds = Counter()
    for key, task in graph.items():
        deps = get_dependencies(graph, key)
        assert len(deps & blocks) <= 1, key
        feeds.update(deps & blocks)
        if "twopass-extsum-partial" in key[0] or "twopass-extsum-aggregate" in key[0]:
            assert 1 <= len(deps) <= split_every, (key, deps)
    assert set(feeds.values()) == {1 if kind == "logsumexp" else 2}
    assert not any("rechunk" in name for name in y.dask.layers)
    if kind != "logsumexp":
        assert y.chunks == x.chunks
    # the partial sums are small: one per slice per block, float64 triples
    parts = tpd._extsum_reduction(x, (1,), split_every)
    assert parts.shape == (8, 1) and parts.chunks == ((4, 4), (1,))
    # tree depth: axis 1 has 10 blocks, split_every 4: 10 -> 3 -> 1 (one partial layer, then the
    # aggregate); both axes (2 x 10 blocks) take 2 per axis per task: 10 -> 5 -> 3 -> 2 -> 1
    assert sum("twopass-extsum-partial" in name for name in y.dask.layers) == (1 if axis == 1 else 3)


def test_blockwise_plan_is_one_task_per_block():
    x = da.random.default_rng(0).standard_normal((8, 1000), chunks=(2, 1000), dtype=np.float32)
    for kind in KINDS:
        y = getattr(tpd, kind)(x, axis=1)
        graph = dict(y.__dask_graph__())
        assert len(graph) == 2 * 4  # the generator's blocks and one twopass call each
        assert not any("twopass-extsum" in name for name in y.dask.layers)


def test_runs_on_every_worker():
    """The split plan runs on both worker processes, and agrees with twopass on one machine. On a
    fresh cluster of its own: under ASan in CI the module's cluster twice had a worker missing for
    minutes by this test, after the others had run on it (the wait now shows the logs if so)."""
    from dask.distributed import get_task_stream
    x = np.random.default_rng(6).standard_normal((16, 40000)).astype(np.float32)
    dx = da.from_array(x, chunks=(4, 5000))
    with two_worker_cluster() as cluster, Client(cluster) as client:
        wait_for_two_workers(client, cluster)
        with get_task_stream(client) as stream:
            y = tpd.softmax(dx, axis=1, split_every=3).compute()
        assert len({task["worker"] for task in stream.data}) == 2
    np.testing.assert_allclose(y, twopass.softmax(x, axis=1), rtol=5e-7, atol=1e-37)


def readme_xarray_snippet():
    """The README's xarray example: the python block after "Labelled data with xarray"."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    return readme.split("Labelled data with xarray", 1)[1].split("```python", 1)[1].split("```", 1)[0]


def test_xarray_example(client, capsys):
    """The README's xarray snippet runs as written, and its functions give SciPy's values."""
    pytest.importorskip("xarray")
    namespace = {}
    exec(readme_xarray_snippet(), namespace)
    out = capsys.readouterr().out.split("\n")
    assert abs(float(out[0]) - 1) < 1e-5 and out[1] == "('time', 'lat')"
    softmax, logsumexp, data = namespace["softmax"], namespace["logsumexp"], namespace["logits"]
    values = data.values.astype(np.float64)
    p = softmax(data, "vocab")
    assert p.dims == data.dims and p.chunks == data.chunks
    np.testing.assert_allclose(p.values, sp.softmax(values, axis=-1), rtol=1e-6)
    q = softmax(data, "time")  # a core dim that is not last (apply_ufunc moves it; the wrapper back)
    assert q.dims == data.dims
    np.testing.assert_allclose(q.values, sp.softmax(values, axis=0), rtol=1e-6)
    np.testing.assert_allclose(logsumexp(data, "lat").values, sp.logsumexp(values, axis=1), rtol=1e-6)
    np.testing.assert_allclose(softmax(data.compute(), "vocab").values, sp.softmax(values, axis=-1), rtol=1e-6)


def test_import_twopass_does_not_import_dask():
    code = "import sys, twopass; assert 'dask' not in sys.modules, 'twopass imported dask'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_clear_import_error_without_dask():
    code = ("import sys; sys.modules['dask'] = None; sys.modules['dask.array'] = None\n"
            "try:\n    import twopass.dask\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert "twopass.dask needs dask" in out and "pip install" in out
