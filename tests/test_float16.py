"""float16 on every level: the float16 kernels (F16C conversion on load and store, float32
arithmetic between) on avx2/avx512f, the NumPy fallback (in float32) on python.

What must hold:
- each float16 kernel gives exactly the float32 kernel's result on the same values widened to
  float32, rounded once to float16 (ties to even, NumPy's astype); reductions the same float; no
  write outside the output, whatever the length or the alignment;
- softmax within one float16 ULP of the float64 result rounded to float16 on every algorithm, axis
  and layout (three_pass_reload too: it keeps its exps in float32 and rounds once), NaN and +-inf
  as SciPy; logsumexp, extsum and softmax_from_extsum too;
- log_softmax within one float16 ULP plus the float32 arithmetic's error: a few float32 ULP of the
  magnitudes it subtracts, max(|x - max|, |log sum exp(x - max)|) (the float32 bound; it matters
  where x is close to logsumexp and the result, near 0, has far finer float16 steps);
- no float32 copy of the array: the kernels read and write the float16 data themselves (only
  three_pass_reload keeps one row's exps in float32, so that it rounds once).
"""
import threading
import tracemalloc

import numpy as np
import pytest
import scipy.special

import twopass
from twopass import kernels

F16 = np.float16
KERNEL_LEVELS = twopass.available_levels()[1:]


def ulps(a, b):
    """Distance in float16 ULPs between float16 arrays (0 where both are NaN, huge where one is)."""
    a, b = np.asarray(a, F16), np.asarray(b, F16)

    def ordered(v):  # the float16 bit patterns as integers in the order of their values
        u = v.view(np.uint16).astype(np.int64)
        return np.where(u & 0x8000, 0x8000 - u, u)

    d = np.abs(ordered(a) - ordered(b))
    both_nan = np.isnan(a) & np.isnan(b)
    d[both_nan] = 0
    d[np.isnan(a) != np.isnan(b)] = 1 << 20
    return d


def reference(fn, x, axis):
    with np.errstate(all="ignore"):
        return fn(np.asarray(x, np.float64), axis=axis).astype(F16)


def check_log_softmax(y, x, axis, bound_ulps=1):
    """y within bound_ulps float16 ULP of the float64 log_softmax plus 8 float32 ULP of the
    magnitudes subtracted; non-finite values exactly as SciPy."""
    x64 = np.asarray(x, np.float64)
    with np.errstate(all="ignore"):
        ref = scipy.special.log_softmax(x64, axis=axis)
        shifted = x64 - np.max(x64, axis=axis, keepdims=True)
        scale = np.maximum(np.maximum(np.abs(shifted), np.abs(ref - shifted)), 1.0)
    finite = np.isfinite(ref.astype(F16))  # beyond 65504 in magnitude: -inf in float16
    np.testing.assert_array_equal(np.asarray(y, F16)[~finite], ref.astype(F16)[~finite])
    ref16 = ref[finite].astype(F16)
    step = np.spacing(np.abs(ref16)).astype(np.float64)
    err = np.abs(np.asarray(y, np.float64)[finite] - ref[finite])
    bound = bound_ulps * step + 8 * 2.0**-24 * scale[finite]
    assert np.all(err <= bound), f"worst {float(np.max(err / bound)):.2f} x the bound"


def test_checks_can_fail():
    x = np.array([[0.0, 1.0, 2.0]], F16)
    good = scipy.special.log_softmax(x.astype(np.float64), axis=1).astype(F16)
    check_log_softmax(good, x, 1)
    with pytest.raises(AssertionError):
        check_log_softmax(good + np.array([0, 0, 0.01], F16), x, 1)
    one = np.array([1.0, np.nan, 0.0, -0.0], F16)
    assert ulps(one, one).max() == 0
    assert ulps(np.array([1.0], F16), np.array([1.0 + 2**-10], F16))[0] == 1
    assert ulps(np.array([2**-24], F16), np.array([-(2**-24)], F16))[0] == 2  # across zero
    assert ulps(np.array([np.nan], F16), np.array([0.0], F16))[0] > 1000


@pytest.mark.parametrize("level_name", KERNEL_LEVELS)
def test_float16_runs_on_its_kernels(level_name):
    with twopass.use_isa(level_name):
        names = twopass.runtime_info()["kernels"]["float16"]
        assert set(names.values()) and all(v.startswith("twopass_f16_") and f"__{level_name}_" in v
                                           for v in names.values())
        before = kernels.call_counts()[level_name]
        twopass.softmax(np.ones((3, 50), F16), axis=1)
        twopass.softmax(np.ones((3, 50), F16), axis=0)
        twopass.logsumexp(np.ones((3, 50), F16), axis=1)
        assert kernels.call_counts()[level_name] == before + 3


def test_default_tiles_are_float32s():
    """kernels.h builds float16's variant lists from float32's default and streaming lists: the
    tables the dispatcher builds from them must name the same tiles."""
    for level in range(1, len(twopass.available_levels())):
        f16 = kernels.kernel_names(level, "float16")
        f32 = kernels.kernel_names(level, "float32")
        assert f16 == {op: name.replace("twopass_f32_", "twopass_f16_") for op, name in f32.items()}
        s16 = kernels.streaming_kernel_names(level, "float16")
        s32 = kernels.streaming_kernel_names(level, "float32")
        assert s16 == {op: name.replace("twopass_f32_", "twopass_f16_") for op, name in s32.items()}


@pytest.mark.parametrize("level_name", KERNEL_LEVELS)
@pytest.mark.parametrize("axis", [0, 1])
def test_no_float32_copy(level_name, axis):
    """A float32 copy of x would take twice x's bytes; the kernels need (almost) nothing."""
    x = np.random.default_rng(0).normal(0, 3, (2048, 1024)).astype(F16)
    out = np.empty_like(x)
    with twopass.use_isa(level_name):
        for fn in (twopass.softmax, twopass.log_softmax):
            fn(x, axis=axis, out=out)
            tracemalloc.start()
            try:
                fn(x, axis=axis, out=out)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert peak < x.nbytes // 8, f"{fn.__name__}: {peak} bytes allocated for a {x.nbytes}-byte array"
        check_log_softmax(out, x, axis)
        assert ulps(twopass.softmax(x, axis=axis), reference(scipy.special.softmax, x, axis)).max() <= 1


def row_kernel_args(op, x32):
    """Scalars of one call of a row kernel (as run_kernel takes them), from float32 data."""
    finite = x32[np.isfinite(x32)]
    exponent = float(np.rint(finite.max() * np.log2(np.e))) if finite.size else 0.0
    return {"vscaleextexp": (0.7, exponent), "raddexpminusmax": (0.0, exponent),
            "raddstoreexpminusmax": (0.0, exponent), "vscaleexpminusmax": (0.0, exponent, 0.3),
            "vscale": (0.37,), "vsubc": (1.25, 1e-3)}.get(op, ())


@pytest.mark.parametrize("level_name", KERNEL_LEVELS)
def test_each_kernel_is_the_float32_kernel_rounded_once(level_name):
    """Every float16 row variant against its float32 twin: lengths 1 .. 2 tiles + 1 and longer,
    output offsets that move the non-temporal stores' aligned start, sentinels around the output.
    Reload's passes keep their exps in float32 (kernels.h): raddstoreexpminusmax writes the float32
    twin's exps themselves, and vscale reads float32 values no half can hold."""
    rng = np.random.default_rng(1)
    sentinel, pad = 0x7E5A, 24  # a NaN half with a payload no kernel produces
    stored_sentinel = np.array(0x7FC0_5A5A, np.uint32).view(np.float32)  # a float32 NaN, ditto
    variants = [k for k in kernels.registry("float16") if k["level"] == level_name and k["op"] in kernels.ROW_OPS]
    assert variants
    for k in variants:
        twin = k["name"].replace("twopass_f16_", "twopass_f32_")
        assert twin in {v["name"] for v in kernels.registry("float32")}
        lengths = list(range(1, 2 * k["unroll"] + 2)) + [4 * k["unroll"] + 3, 5000]
        for n in lengths:
            offset = n % 17 if k["streaming"] else 0
            x16 = (rng.standard_normal(n) * 6).astype(F16)
            if n > 3:
                x16[n // 3] = -np.inf
                x16[n // 2] = 2.0**-20  # a subnormal half
            x32 = x16.astype(np.float32)
            args = row_kernel_args(k["op"], x32)
            buf = np.full(n + 2 * pad, sentinel, np.uint16)
            y16 = buf[pad + offset: pad + offset + n]
            y32 = np.zeros(n, np.float32)
            stored_buf = np.full(n + 2 * pad, stored_sentinel, np.float32)
            stored = None
            if k["op"] in ("raddstoreexpminusmax", "vscale"):
                stored = stored_buf[pad:pad + n]
            if k["op"] == "vscale":  # float32 values between the halves: read as float32, rounded once
                x32 = x32 * np.float32(1 + 2.0**-13)
                stored[:] = x32
            r16 = kernels.run_kernel(k["name"], x16.view(np.uint16), y16, *args, stored=stored)
            r32 = kernels.run_kernel(twin, x32, y32, *args)
            assert r16 == r32 or (np.isnan(r16).all() and np.isnan(r32).all()), (k["name"], n, r16, r32)
            writes = k["op"] not in ("rmax", "raddextexp", "raddexpminusmax", "raddonline", "raddstoreexpminusmax")
            if writes:
                np.testing.assert_array_equal(y16, y32.astype(F16).view(np.uint16), err_msg=f"{k['name']} n={n}")
                rest = np.concatenate([buf[:pad + offset], buf[pad + offset + n:]])
            else:
                rest = buf
            assert np.all(rest == sentinel), f"{k['name']} n={n}: a write outside the output"
            if k["op"] == "raddstoreexpminusmax":
                np.testing.assert_array_equal(stored.view(np.uint32), y32.view(np.uint32), err_msg=f"{k['name']} n={n}")
            stored_rest = stored_buf if stored is None else np.concatenate([stored_buf[:pad], stored_buf[pad + n:]])
            assert np.all(stored_rest.view(np.uint32) == stored_sentinel.view(np.uint32)), \
                f"{k['name']} n={n}: a write outside the stored exps"


@pytest.mark.parametrize("level_name", KERNEL_LEVELS)
def test_three_pass_reload_rounds_once(level_name):
    """three_pass_reload keeps float16's exps in float32 (kernels.h), so it gives the float32
    reload's result on the widened halves rounded once, bit for bit: short rows in groups (on AVX2
    also the 129-256 halves the group kernel declines), longer rows with their exps on the stack (up
    to 4096) and in the thread's row on the heap (growing; over 2^18 halves, a row of the call's
    own), one row cut across threads, down the columns and in place; and in threads that end (their
    rows freed with them)."""
    rng = np.random.default_rng(11)
    with twopass.use_isa(level_name):
        for shape in ((70, 5), (40, 64), (9, 200), (5, 1000), (2, 4096), (2, 4097), (1, 70_001), (1, 300_001)):
            x = (rng.standard_normal(shape) * 5).astype(F16)
            x[0, 0], x[-1, -1] = -np.inf, 11.0
            want = twopass.softmax(x.astype(np.float32), axis=1, algorithm="three_pass_reload").astype(F16)
            for threads in (1, 2):
                got = twopass.softmax(x, axis=1, algorithm="three_pass_reload", threads=threads)
                np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16), err_msg=f"{shape}")
            inplace = x.copy()
            twopass.softmax(inplace, axis=1, out=inplace, algorithm="three_pass_reload")
            np.testing.assert_array_equal(inplace.view(np.uint16), want.view(np.uint16), err_msg=f"{shape}")
            columns = twopass.softmax(np.ascontiguousarray(x.T), axis=0, algorithm="three_pass_reload")
            np.testing.assert_array_equal(columns.T.view(np.uint16), want.view(np.uint16), err_msg=f"{shape}")
    x = (rng.standard_normal((8, 9000)) * 5).astype(F16)
    want = twopass.softmax(x.astype(np.float32), axis=1, algorithm="three_pass_reload").astype(F16)
    got = [None] * len(x)

    def row(i):
        with twopass.use_isa(level_name):
            got[i] = twopass.softmax(x[i], algorithm="three_pass_reload", threads=1)
    for _ in range(3):  # threads that start, take a row each and end
        threads = [threading.Thread(target=row, args=(i,)) for i in range(len(x))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        np.testing.assert_array_equal(np.stack(got).view(np.uint16), want.view(np.uint16))


SHAPES = [((1, 1), -1), ((3, 1000), -1), ((2, 33_000), 1), ((40, 300), 0), ((7, 5, 9), 1), ((6, 5, 4), (0, 2))]


@pytest.mark.parametrize("shape, axis", SHAPES, ids=str)
@pytest.mark.parametrize("order", ["C", "F", "strided"])
def test_within_one_ulp_of_float64(level, algorithm, shape, axis, order):
    rng = np.random.default_rng(abs(hash((shape, str(axis)))) % 1000)
    x = (rng.standard_normal(shape) * 5).astype(F16)
    if order == "F":
        x = np.asfortranarray(x)
    elif order == "strided":
        x = np.repeat(x, 2, axis=-1)[..., ::2]
    y = twopass.softmax(x, axis=axis, algorithm=algorithm)
    assert y.dtype == F16 and y.shape == x.shape
    assert ulps(y, reference(scipy.special.softmax, x, axis)).max() <= 1
    y = twopass.log_softmax(x, axis=axis, algorithm=algorithm)
    assert y.dtype == F16 and y.shape == x.shape
    check_log_softmax(y, x, axis)


def test_in_place_and_out(level, algorithm):
    x = (np.random.default_rng(3).standard_normal((5, 2000)) * 4).astype(F16)
    expected = twopass.softmax(x, axis=1, algorithm=algorithm)
    out = np.empty_like(x)
    assert twopass.softmax(x, axis=1, out=out, algorithm=algorithm) is out
    np.testing.assert_array_equal(out, expected)
    inplace = x.copy()
    twopass.softmax(inplace, axis=1, out=inplace, algorithm=algorithm)
    np.testing.assert_array_equal(inplace, expected)
    with pytest.raises(TypeError):
        twopass.softmax(x, axis=1, out=np.empty(x.shape, np.float32))


SPECIAL_ROWS = [[1.0, np.nan, 2.0], [1.0, np.inf, 2.0], [np.inf, np.inf, 0.0], [-np.inf, -np.inf, -np.inf],
                [-np.inf, 0.0, 1.0], [65504.0, 65504.0, -65504.0], [-65504.0, -65000.0, -65504.0],
                [2.0**-24, 0.0, -(2.0**-24)]]


def test_special_values_as_scipy(level, algorithm):
    x = np.array([row * 12 for row in SPECIAL_ROWS], F16)  # 36 elements: vector bodies and tails
    with np.errstate(all="ignore"):
        y = twopass.softmax(x, axis=1, algorithm=algorithm)
        check_log_softmax(twopass.log_softmax(x, axis=1, algorithm=algorithm), x, 1)
    assert ulps(y, reference(scipy.special.softmax, x, 1)).max() <= 1
    with np.errstate(all="ignore"):
        lse = twopass.logsumexp(x, axis=1)
        ref = scipy.special.logsumexp(x.astype(np.float64), axis=1).astype(F16)
    assert lse.dtype == F16 and ulps(lse, ref).max() <= 1


def test_logsumexp_extsum_and_softmax_from_extsum(level):
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((9, 5000)) * 8).astype(F16)
    lse = twopass.logsumexp(x, axis=1)
    assert lse.dtype == F16
    assert ulps(lse, scipy.special.logsumexp(x.astype(np.float64), axis=1).astype(F16)).max() <= 1
    pieces = [twopass.extsum(part, axis=1) for part in np.array_split(x, 3, axis=1)]
    merged = twopass.merge_extsum(twopass.merge_extsum(pieces[0], pieces[1]), pieces[2])
    whole = twopass.extsum(x, axis=1)
    np.testing.assert_allclose(np.log(merged[0]) + merged[1] * np.log(2), np.log(whole[0]) + whole[1] * np.log(2),
                               rtol=1e-6)
    y = twopass.softmax_from_extsum(x, merged, axis=1)
    assert y.dtype == F16 and ulps(y, reference(scipy.special.softmax, x, 1)).max() <= 1


@pytest.mark.parametrize("level_name", KERNEL_LEVELS)
def test_threads_bitwise_the_same(level_name):
    rng = np.random.default_rng(5)
    with twopass.use_isa(level_name):
        for shape, axis in (((1, 300_000), 1), ((300, 2000), 1), ((3000, 300), 0)):
            x = (rng.standard_normal(shape) * 5).astype(F16)
            for fn in (twopass.softmax, twopass.log_softmax):
                one = fn(x, axis=axis, threads=1)
                for threads in (2, 3):
                    np.testing.assert_array_equal(fn(x, axis=axis, threads=threads).view(np.uint16),
                                                  one.view(np.uint16))


@pytest.mark.parametrize("level_name", KERNEL_LEVELS)
def test_streaming_stores_same_bits(level_name):
    """Outputs above the streaming threshold go through the _nt kernels: the same halves."""
    x = (np.random.default_rng(6).standard_normal((4, 70_001)) * 5).astype(F16)
    with twopass.use_isa(level_name):
        plain = {fn: fn(x, axis=1, threads=1) for fn in (twopass.softmax, twopass.log_softmax)}
        old = kernels.streaming_threshold()
        kernels.set_streaming_threshold(1)
        try:
            before = kernels.thread_stats()["streaming_jobs"]
            for fn, y in plain.items():
                np.testing.assert_array_equal(fn(x, axis=1, threads=1).view(np.uint16), y.view(np.uint16))
            assert kernels.thread_stats()["streaming_jobs"] >= before + 2
        finally:
            kernels.set_streaming_threshold(old)
