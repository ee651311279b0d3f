"""The AVX-512F kernels, run through SIMDe on any AVX2 machine (tests/emulated_avx512.py).

The AVX-512F code cannot run natively on CPUs without AVX-512 (and qemu-user cannot emulate it),
so these tests compile src/avx512f/*_kernels_avx512f.c unchanged against SIMDe and check their
logic: masks and tails, tile boundaries, accumulators, NaN/inf handling, results near the underflow, no
access outside the arrays. If gcc or the SIMDe headers are missing the tests skip, or fail when
TWOPASS_REQUIRE_EMULATION=1 (CI sets it).

Tolerance: relative error |y - ref| / max(ref, tiny) <= 1e-6 against a float64 reference, except
that an output may be 0 where ref < 2^-125 (the kernels flush results below 2^-126 times their
scale to 0, as tests/conftest.py's FLUSH32 allows; nonzero outputs must still be accurate).

VSCALEFPS is not SIMDe 0.7.4's: it computes a * exp2f(floor(b)), which loses every product whose power
of two is not a normal float, so the shim has its own, from the SDM (test_emulated_scalef_is_the_hardwares).
"""
import decimal
import fractions
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.special

try:
    import emulated_avx512 as emx
except ImportError:  # tests/ imported as a package, or another rootdir layout
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import emulated_avx512 as emx
from conftest import check_vscale_flushes_like_ftz, out_past  # noqa: E402 (tests/ is on sys.path by now)

# Outputs this many bytes past the input modulo 4096 take vscale_impl's loads-ahead loop (common.h).
ALIASING_DISTANCES = (16, 64, 128)

F32 = np.float32
TINY = float(np.finfo(np.float32).tiny)
DENORM_MIN = 2.0 ** -149
FLUSH = 2.0 ** -125  # outputs below this may be flushed to 0 (tests/conftest.py FLUSH32)
LN2 = float(np.log(2.0))
LOG2E_F32 = F32(float.fromhex("0x1.715476p+0"))
EXP_SHIFT_LIMIT = F32(2.0 ** 16)  # TWOPASS_EXP_SHIFT_LIMIT (common.h)
RTOL = 1e-6
ALGORITHMS = emx.ALGORITHMS
REQUIRE = os.environ.get("TWOPASS_REQUIRE_EMULATION") == "1"


def _kernel_list(dt="f32"):
    """(name, op, isa, unroll) of every variant of a dtype (f32, f64, f16) listed in
    include/twopass/kernels.h (the lists TWOPASS_F32_*_KERNELS, TWOPASS_F64_*_KERNELS ...), with the
    sub-lists they name (TWOPASS_F32_AVX2_DEFAULTS(R, V) ...) expanded in place."""
    text = (emx.ROOT / "include" / "twopass" / "kernels.h").read_text()

    def body(name):  # the continuation lines of #define name(...)
        m = re.search(r"#define %s\([RVN, ]*\)((?:.*\\\n)*.*)" % name, text)
        assert m, f"{name} is not defined in kernels.h"
        return re.sub(r"\b(TWOPASS_\w+)\([RVN, ]*\)", lambda ref: body(ref.group(1)), m.group(1))

    out = []
    for isa_list in ("AVX512F", "AVX2"):
        for m in re.finditer(r"\b([RVN])\((\w+), (avx512f|avx2), (\d+)(?:, (\d+))?\)",
                             body(f"TWOPASS_{dt.upper()}_{isa_list}_KERNELS")):
            kind, op, isa, unroll, acc = m.groups()
            name = (f"twopass_{dt}_{op}__{isa}_u{unroll}_acc{acc}" if kind == "R"
                    else f"twopass_{dt}_{op}__{isa}_u{unroll}" + ("_nt" if kind == "N" else ""))
            out.append((name, op, isa, int(unroll)))
    return out


KERNELS = _kernel_list()
KERNELS_F64 = _kernel_list("f64")
KERNELS_F16 = _kernel_list("f16")
AVX512_KERNELS = [k for k in KERNELS if k[2] == "avx512f"]
# Kernels over one contiguous slice (the *_columns ones are tested through their driver below, the
# short-rows ones in test_short_rows_kernel)
AVX512_ROW_KERNELS = [k for k in AVX512_KERNELS if k[1] in emx.ROW_OPS]


def kernels_of(*ops, isas=("avx512f", "avx2")):
    """pytest params of the listed variants of some ops; the AVX2 twins run natively as a control."""
    return [pytest.param(k, id=k[0]) for k in KERNELS if k[1] in ops and k[2] in isas]


def _load():
    """(library, None) or (None, why it cannot run here)."""
    try:
        return emx.load(), None
    except emx.EmulationUnavailable as exc:
        return None, str(exc)


@pytest.fixture(scope="module")
def emu():
    lib, why = _load()
    if lib is None:
        pytest.skip(f"AVX-512 emulation unavailable: {why}"
                    + (" (TWOPASS_REQUIRE_EMULATION=1: test_emulation_available fails)" if REQUIRE else ""))
    return lib


def test_emulation_available():
    """Skips where gcc or SIMDe is missing, but fails when TWOPASS_REQUIRE_EMULATION=1 (CI).
    A failing build (tools present) is an error in every test, never a skip."""
    lib, why = _load()
    if lib is None:
        if REQUIRE:
            pytest.fail(f"TWOPASS_REQUIRE_EMULATION=1 but the AVX-512 emulation cannot run: {why}",
                        pytrace=False)
        pytest.skip(f"AVX-512 emulation unavailable: {why}")


# ---------------------------------------------------------------------------------------------
# References

def ref_softmax(x):
    """Softmax in float64 (rows on the last axis), for finite x."""
    x64 = np.asarray(x, np.float64)
    e = np.exp(x64 - x64.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def rel_err(y, ref):
    """max |y - ref| / max(ref, tiny), an output flushed to 0 where ref < FLUSH counting as exact;
    NaN if y has a NaN (so `<= tol` fails)."""
    y64 = np.asarray(y, np.float64)
    ref = np.asarray(ref, np.float64)
    err = np.abs(y64 - ref) / np.maximum(np.abs(ref), TINY)
    err[(y64 == 0) & (np.abs(ref) < FLUSH)] = 0.0
    return float(np.max(err, initial=0.0))


def exp_shift(mx):
    """TWOPASS_EXP_SPLIT (common.h): max = shift + exponent * ln2, in float32 arithmetic."""
    mx = F32(mx)
    if abs(mx) <= EXP_SHIFT_LIMIT:
        return F32(0.0), F32(np.rint(mx * LOG2E_F32))
    return mx, F32(0.0)


def logsumexp(x):
    x64 = np.asarray(x, np.float64)
    m = x64.max()
    return m + np.log(np.exp(x64 - m).sum())


def random_f32(rng, n, lo=-100.0, hi=100.0):
    return rng.uniform(lo, hi, n).astype(F32)


def bits(a):
    return np.asarray(a, F32).view(np.uint32)


# ---------------------------------------------------------------------------------------------
# The build

def test_registry_matches_kernels_h(emu):
    assert len(KERNELS) > 20 and len(KERNELS_F64) > 20 and len(KERNELS_F16) > 20
    registered = {(k.name, k.op, k.unroll) for k in emu.registry}
    listed = {(name, op, unroll) for name, op, _, unroll in KERNELS + KERNELS_F64 + KERNELS_F16}
    assert registered == listed
    for dtype, kernels in ((np.float32, KERNELS), (np.float64, KERNELS_F64), (np.float16, KERNELS_F16)):
        names = emu.table_names(dtype=dtype)
        assert all("__avx512f_" in v for v in names.values()), names
        first = {}
        for name, op, isa, _ in kernels:
            if isa == "avx512f" and not name.endswith("_nt"):
                first.setdefault(op, name)
        assert names == first  # the dispatcher's default is the first listed variant of each op


def test_library_has_no_avx512_instructions(emu):
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump not found")
    asm = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(emu.path)], stdout=subprocess.PIPE,
                         text=True, check=True).stdout
    hits = [ln for ln in asm.splitlines() if re.search(r"%zmm|%k[0-7]\b|\{1to", ln)]
    assert not hits, "AVX-512 instructions in the emulated build:\n" + "\n".join(hits[:10])


# ---------------------------------------------------------------------------------------------
# softmax through the (emulated) avx512f table

LENGTHS = list(range(1, 301)) + [383, 384, 385, 511, 512, 513, 4095, 4096, 4097, 4111, 4112, 4113,
                                 8191, 8192, 8193, 12289, 100000]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_softmax_random_lengths(emu, algorithm):
    rng = np.random.default_rng(1)
    data = random_f32(rng, max(LENGTHS))
    worst = (0.0, None)
    for n in LENGTHS:
        x = data[-n:].copy()  # a different slice end for each n
        y = emu.softmax(x, algorithm)
        err = rel_err(y, ref_softmax(x))
        if not err <= worst[0]:
            worst = (err, n)
        assert err <= RTOL, f"n={n}: relative error {err:.3g}"
    print(f"{algorithm}: worst relative error {worst[0]:.3g} at n={worst[1]}")


@pytest.mark.parametrize("algorithm", ["two_pass", "three_pass_reload", "three_pass_recompute", "blocked_reload"])
def test_pairs_of_equal_values_give_halves(emu, algorithm):
    """tests/test_softmax.py's check on AVX-512F: rows of two equal floats (20,000 values in [-80, 80])
    give 1/2 within one float32 ULP, which needs the exps of the sum and of the outputs to be the same."""
    values = np.random.default_rng(3).uniform(-80, 80, 20000).astype(F32)
    x = np.stack([values, values], 1)
    y = emu.softmax_rows(x, np.empty_like(x), algorithm)
    worst = float(np.abs(y.astype(np.float64) - 0.5).max() / 0.5)
    assert worst <= 1.2e-7, worst


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("variant", [k[0] for k in AVX512_KERNELS])
def test_softmax_with_each_variant(emu, algorithm, variant):
    """Every registered variant (not only the defaults) swapped into the table."""
    rng = np.random.default_rng(2)
    unroll = emu.kernel(variant).unroll
    lengths = sorted(set(range(1, 2 * unroll + 2, 7)) | {unroll - 1, unroll, unroll + 1, 2 * unroll + 1,
                                                          4096 + unroll + 3})
    for n in lengths:
        x = random_f32(rng, n)
        y = emu.softmax(x, algorithm, variants=[variant])
        err = rel_err(y, ref_softmax(x))
        assert err <= RTOL, f"n={n}: relative error {err:.3g}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_blocked_reload_gives_reload_bits(emu, dtype):
    """blocked_reload on the emulated avx512f table: three_pass_reload's bits (tests/test_blocked_reload.py
    on the native levels), on rows of several spans whose maxima sit far apart, with whole blocks of
    -inf; its own passes ran (the library's count) where a row has more than one span, on one thread
    and two."""
    rng = np.random.default_rng(12)
    for n in (2048, 2049, 4097, 12289, 100_000, 600_000):
        x = rng.uniform(-40, 40, (3, n))
        x[1, : n // 2] -= 150
        x[2, 1000: 3000] = -np.inf
        x = x.astype(dtype)
        expected = emu.softmax_rows(x, np.empty_like(x), "three_pass_reload")
        before = emu.blocked_slices()
        for threads in (1, 2):
            got = emu.softmax_rows(x, np.empty_like(x), "blocked_reload", threads=threads)
            np.testing.assert_array_equal(got.view(f"u{x.itemsize}"), expected.view(f"u{x.itemsize}"),
                                          err_msg=f"n={n} threads={threads}")
        assert emu.blocked_slices() - before == (6 if n > 2048 else 0), n  # one span: reload itself


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_rows_with_strides_and_in_place(emu, algorithm):
    rng = np.random.default_rng(3)
    for n in (1, 15, 16, 17, 129, 300):
        buf = random_f32(rng, 7 * (n + 9)).reshape(7, n + 9)
        x = buf[:, 3:3 + n]  # row stride n + 9 floats
        out = np.full((7, n + 5), F32(-7.0))
        y = emu.softmax_rows(x, out[:, 2:2 + n], algorithm)
        assert rel_err(y, ref_softmax(x)) <= RTOL
        assert np.all(out[:, :2] == -7) and np.all(out[:, 2 + n:] == -7)
        expected = y.copy()
        emu.softmax_rows(x, x, algorithm)  # in place
        np.testing.assert_array_equal(bits(x), bits(expected))


# ---------------------------------------------------------------------------------------------
# Special values, against scipy.special.softmax

EDGE_LENGTHS = [1, 2, 3, 15, 16, 17, 64, 100, 127, 128, 129, 191, 300, 4097]


def scipy_softmax(x):
    special = pytest.importorskip("scipy.special")
    with np.errstate(all="ignore"):
        return special.softmax(np.asarray(x, np.float64))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_nan_and_inf_rows(emu, algorithm):
    rng = np.random.default_rng(4)
    for n in EDGE_LENGTHS:
        rows = []
        for pos in sorted({0, n // 2, n - 1}):
            for special in (np.nan, np.inf):
                x = random_f32(rng, n)
                x[pos] = special
                rows.append((f"{special} at {pos}", x))
            x = random_f32(rng, n)
            x[pos] = np.inf
            x[(pos + 1) % n] = -np.inf
            rows.append((f"inf at {pos}, -inf next", x))
        rows.append(("all -inf", np.full(n, -np.inf, F32)))
        rows.append(("all +inf", np.full(n, np.inf, F32)))
        rows.append(("all nan", np.full(n, np.nan, F32)))
        for what, x in rows:
            expected = scipy_softmax(x)
            assert np.isnan(expected).all(), what  # SciPy's answer for all of these
            y = emu.softmax(x, algorithm)
            assert np.isnan(y).all(), f"n={n}, {what}: {y[:20]}"


def nan_then_small_lane_mates(n):
    """NaN at 0; every later element of SIMD lane 0 (index % 16 == 0) at -100, the others 0: the
    NaN's lane ends with an exponent 144 below the largest, far under the 2^-126 flush bound."""
    x = np.zeros(n, F32)
    x[::16] = -100
    x[0] = np.nan
    return x


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_nan_survives_a_flushed_lane(emu, algorithm):
    for n in (17, 32, 100, 129, 300, 4097):
        y = emu.softmax(nan_then_small_lane_mates(n), algorithm)
        assert np.isnan(y).all(), f"n={n}: {np.count_nonzero(~np.isnan(y))} outputs not NaN, e.g. {y[1]}"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_minus_inf_mixed_with_finite(emu, algorithm):
    rng = np.random.default_rng(5)
    for n in EDGE_LENGTHS:
        for fraction in (0.1, 0.5, 0.95):
            x = random_f32(rng, n)
            minf = rng.random(n) < fraction
            minf[rng.integers(n)] = False  # at least one finite
            x[minf] = -np.inf
            y = emu.softmax(x, algorithm)
            expected = scipy_softmax(x)
            assert np.all(y[minf] == 0) and np.all(expected[minf] == 0), f"n={n}"
            assert rel_err(y[~minf], ref_softmax(x[~minf])) <= RTOL, f"n={n}"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_huge_magnitudes(emu, algorithm):
    """+-1e30 and +-FLT_MAX: finite results, as in float64 (the shift = max path of exp_shift)."""
    rng = np.random.default_rng(6)
    big = F32(1e30)
    fmax = np.finfo(F32).max
    below = np.nextafter(big, F32(0))
    for n in EDGE_LENGTHS:
        rows = [np.full(n, big), np.full(n, -big), np.full(n, fmax), np.full(n, -fmax),
                rng.choice(np.array([big, -big, 0, below], F32), n),
                rng.choice(np.array([-big, np.nextafter(-big, F32(0)), -fmax], F32), n),
                rng.choice(np.array([fmax, -fmax, 1, -1e30], F32), n),
                (big + rng.integers(-3, 4, n) * F32(7.6e22)).astype(F32),
                random_f32(rng, n, -1e30, 1e30)]
        for i, x in enumerate(rows):
            x = np.asarray(x, F32)
            y = emu.softmax(x, algorithm)
            ref = ref_softmax(x)
            assert np.all(np.isfinite(y)), f"n={n}, row {i}"
            np.testing.assert_allclose(y, scipy_softmax(x), rtol=RTOL, atol=FLUSH)
            assert rel_err(y, ref) <= RTOL, f"n={n}, row {i}"


def _check_tiny(y, ref, what):
    """Each output is 0 with ref < FLUSH, or within 1e-6 relative plus 2^-149 (its rounding in
    the subnormal range); nothing at or above FLUSH is lost."""
    y64 = y.astype(np.float64)
    flushed = y64 == 0
    assert np.all(y64 >= 0), what
    assert np.all(ref[flushed] < FLUSH), f"{what}: flushed at ref = {ref[flushed].max():.3g}"
    err = np.abs(y64 - ref)[~flushed]
    bound = RTOL * ref[~flushed] + 2 * DENORM_MIN
    assert np.all(err <= bound), f"{what}: error {np.max(err / bound):.2f} * bound"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_tiny_outputs_flushed_or_accurate(emu, algorithm):
    x = np.array([0, -90, -100], F32)
    y = emu.softmax(x, algorithm)
    _check_tiny(y, ref_softmax(x), "[0, -90, -100]")
    np.testing.assert_allclose(y, scipy_softmax(x), rtol=RTOL, atol=FLUSH)
    # A sweep from normal outputs through the flush threshold and the subnormal range to 0, with
    # the tiny elements in the main loop, the whole-vector loop and the tail, and several offsets
    # (exp_shift's exponent path and, at 5e6, its shift path).
    sweep = np.linspace(80.0, 108.0, 701)
    for n_extra in (0, 5, 130):
        for offset in (0.0, 1000.0, -1000.0, 5e6):
            base = np.concatenate([[0.0], -sweep, np.full(n_extra, -200.0)])
            x = (base + offset).astype(F32)
            y = emu.softmax(x, algorithm)
            _check_tiny(y, ref_softmax(x), f"offset {offset}, {n_extra} more")


# ---------------------------------------------------------------------------------------------
# No writes outside the arrays (sentinels), no reads outside them (guard pages)

PAD = 48
Y_SENTINEL = np.uint32(0x7FC0DEAD)  # a NaN with a payload: any store over it is visible
X_SENTINEL = np.uint32(0x7FC0BEEF)  # read past the end, it would turn a result into NaN


def _framed(values):
    buf = np.full(len(values) + 2 * PAD, X_SENTINEL, np.uint32).view(F32)
    buf[PAD:PAD + len(values)] = values
    return buf


def _check_frame(buf, n, sentinel, what):
    b = bits(buf)
    assert np.all(b[:PAD] == sentinel), f"{what}: written before the start"
    assert np.all(b[PAD + n:] == sentinel), f"{what}: written past the end, at +{np.flatnonzero(b[PAD + n:] != sentinel)}"


TAILS = range(1, 41)


@pytest.mark.parametrize("variant", [k[0] for k in AVX512_ROW_KERNELS])
def test_canary_kernels(emu, variant):
    k = emu.kernel(variant)
    rng = np.random.default_rng(8)
    for n in sorted(set(TAILS) | {k.unroll + t for t in range(0, 41)}):
        values = random_f32(rng, n, -20, 20)
        xbuf = _framed(values)
        x_before = bits(xbuf).copy()
        ybuf = np.full(n + 2 * PAD, Y_SENTINEL, np.uint32).view(F32)
        x, y = xbuf[PAD:PAD + n], ybuf[PAD:PAD + n]
        shift, exponent = exp_shift(values.max())
        what = f"{variant} n={n}"
        args = {"rmax": (), "raddextexp": (), "raddexpminusmax": (shift, exponent),
                "raddstoreexpminusmax": (y, shift, exponent), "vscaleextexp": (y, 1.0, exponent),
                "vscaleexpminusmax": (y, shift, exponent, 0.5), "vscale": (y, 0.5),
                "vsubc": (y, 1.5, 1e-6), "raddonline": ()}[k.op]
        returned = k(x, *args)  # a float, a (mantissa, exponent) or (max, sum) pair, or None
        result = [] if returned is None else list(np.atleast_1d(returned))
        if k.op not in ("rmax", "raddextexp", "raddexpminusmax", "raddonline"):
            result += list(y)
        np.testing.assert_array_equal(bits(xbuf), x_before, err_msg=f"{what}: x was written")
        if k.op in ("rmax", "raddextexp", "raddexpminusmax", "raddonline"):
            assert np.all(bits(ybuf) == Y_SENTINEL)
        else:
            _check_frame(ybuf, n, Y_SENTINEL, what)
        assert np.all(np.isfinite(result)), f"{what}: a result is not finite (a sentinel was read?)"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_canary_algorithms(emu, algorithm):
    rng = np.random.default_rng(9)
    for n in list(TAILS) + [4096 + t for t in TAILS]:
        values = random_f32(rng, n)
        xbuf = _framed(values)
        x_before = bits(xbuf).copy()
        ybuf = np.full(n + 2 * PAD, Y_SENTINEL, np.uint32).view(F32)
        emu.softmax_rows(xbuf[PAD:PAD + n].reshape(1, n), ybuf[PAD:PAD + n].reshape(1, n), algorithm)
        np.testing.assert_array_equal(bits(xbuf), x_before, err_msg=f"n={n}: x was written")
        _check_frame(ybuf, n, Y_SENTINEL, f"{algorithm} n={n}")
        assert rel_err(ybuf[PAD:PAD + n], ref_softmax(values)) <= RTOL, f"n={n}"
        # in place, inside the frame
        emu.softmax_rows(xbuf[PAD:PAD + n].reshape(1, n), xbuf[PAD:PAD + n].reshape(1, n), algorithm)
        _check_frame(xbuf, n, X_SENTINEL, f"{algorithm} in place n={n}")
        np.testing.assert_array_equal(bits(xbuf[PAD:PAD + n]), bits(ybuf[PAD:PAD + n]))


def test_guard_pages(emu):
    """Every variant and algorithm with its arrays flush against PROT_NONE pages (subprocess)."""
    proc = subprocess.run([sys.executable, str(Path(emx.__file__)), "--guard-pages"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    last = proc.stdout.strip().splitlines()[-1:] or ["(no output)"]
    assert proc.returncode == 0, (f"exit status {proc.returncode} during: {last[0]}\n"
                                  f"{proc.stderr[-2000:]}")
    assert last[0].startswith("ok")


# ---------------------------------------------------------------------------------------------
# Each kernel variant against NumPy, n = 1 .. 2 * unroll + 1 (AVX2 twins as a native control)

OFFSETS = (0.0, 5000.0, -5000.0)


def _lengths(unroll):
    return range(1, 2 * unroll + 2)


@pytest.mark.parametrize("spec", kernels_of("rmax"))
def test_kernel_rmax(emu, spec):
    k = emu.kernel(spec[0])
    rng = np.random.default_rng(10)
    data = random_f32(rng, 2 * k.unroll + 1, -1e6, 1e6)
    for n in _lengths(k.unroll):
        x = data[:n]
        assert k(x) == x.max(), f"n={n}"
        x = np.full(n, -np.inf, F32)
        x[n - 1] = -3.0  # the max in the last (tail) lane
        assert k(x) == -3.0, f"n={n}"
        for i in range(n):  # a NaN anywhere makes the max NaN (test_kernels.py: why)
            x = data[:n].copy()
            x[i] = np.nan
            assert np.isnan(k(x)), f"n={n}, NaN at {i}"
    assert k(np.full(5, -np.inf, F32)) == -np.inf


@pytest.mark.parametrize("spec", kernels_of("raddextexp"))
def test_kernel_raddextexp(emu, spec):
    k = emu.kernel(spec[0])
    rng = np.random.default_rng(11)
    for offset in OFFSETS:
        data = random_f32(rng, 2 * k.unroll + 1) + F32(offset)
        for n in _lengths(k.unroll):
            x = data[:n]
            mantissa, exponent = k(x)
            lse = logsumexp(x)  # log of the exact sum; compared in the log domain (no overflow)
            assert np.isfinite(mantissa) and mantissa > 0, (
                f"n={n}, offset={offset}: sum = {mantissa} * 2^{exponent}, expected about "
                f"{np.exp(lse - LN2 * np.floor(lse / LN2)):.7g} * 2^{np.floor(lse / LN2):.0f}")
            assert exponent == np.floor(exponent)
            err = abs(np.expm1(np.log(mantissa) + exponent * LN2 - lse))
            assert err <= RTOL, f"n={n}, offset={offset}: relative error {err:.3g}"


@pytest.mark.parametrize("spec", kernels_of("raddextexp"))
def test_kernel_raddextexp_keeps_nan(emu, spec):
    k = emu.kernel(spec[0])
    kept = [n for n in range(1, 2 * k.unroll + 34) if np.isnan(k(nan_then_small_lane_mates(n))[0])]
    lost = sorted(set(range(1, 2 * k.unroll + 34)) - set(kept))
    assert not lost, f"sum of exp is not NaN for n in {lost[:3]}..{lost[-1]} ({len(lost)} lengths)"


@pytest.mark.parametrize("spec", kernels_of("vscaleextexp"))
def test_kernel_vscaleextexp(emu, spec):
    k = emu.kernel(spec[0])
    rng = np.random.default_rng(12)
    for offset in OFFSETS:
        data = random_f32(rng, 2 * k.unroll + 1) + F32(offset)
        for n in _lengths(k.unroll):
            x = data[:n]
            exponent = F32(np.ceil(logsumexp(x) / LN2))
            scale = F32(1.37)
            y = np.empty(n, F32)
            k(x, y, scale, exponent)
            ref = np.minimum(np.exp(x.astype(np.float64) - float(exponent) * LN2) * float(scale), 1.0)  # at most 1
            assert rel_err(y, ref) <= RTOL, f"n={n}, offset={offset}"
            z = x.copy()
            k(z, z, scale, exponent)  # in place
            np.testing.assert_array_equal(bits(z), bits(y))
            for distance in ALIASING_DISTANCES:  # the loads-ahead loop
                z = out_past(x, distance)
                k(x, z, scale, exponent)
                np.testing.assert_array_equal(bits(z), bits(y), err_msg=f"n={n}, {distance} bytes past x")


@pytest.mark.parametrize("spec", kernels_of("raddexpminusmax", "raddstoreexpminusmax", "vscaleexpminusmax"))
def test_kernel_exp_minus_max(emu, spec):
    k = emu.kernel(spec[0])
    rng = np.random.default_rng(13)
    for offset in OFFSETS + (3e6,):
        data = random_f32(rng, 2 * k.unroll + 1) + F32(offset)
        for n in _lengths(k.unroll):
            x = data[:n]
            shift, exponent = exp_shift(x.max())
            e = np.exp(x.astype(np.float64) - float(shift) - float(exponent) * LN2)
            what = f"n={n}, offset={offset}"
            y = np.full(n, np.nan, F32)
            if k.op == "raddexpminusmax":
                s = k(x, shift, exponent)
                assert abs(s / e.sum() - 1) <= RTOL, what
            elif k.op == "raddstoreexpminusmax":
                s = k(x, y, shift, exponent)
                assert abs(s / e.sum() - 1) <= RTOL, what
                assert rel_err(y, e) <= RTOL, what
            else:
                k(x, y, shift, exponent, F32(0.37))
                assert rel_err(y, np.minimum(e * float(F32(0.37)), 1.0)) <= RTOL, what
            if k.op != "raddexpminusmax":
                z = x.copy()
                k(z, z, shift, exponent, *([F32(0.37)] if k.op == "vscaleexpminusmax" else []))
                np.testing.assert_array_equal(bits(z), bits(y), err_msg=what + " (in place)")
            if k.op == "vscaleexpminusmax":
                for distance in ALIASING_DISTANCES:  # the loads-ahead loop
                    z = out_past(x, distance)
                    k(x, z, shift, exponent, F32(0.37))
                    np.testing.assert_array_equal(bits(z), bits(y), err_msg=f"{what}, {distance} bytes past x")


STORE_KERNELS = [pytest.param(k, id=k[0]) for k in KERNELS + KERNELS_F64 + KERNELS_F16
                 if k[1] == "raddstoreexpminusmax"]


@pytest.mark.parametrize("spec", STORE_KERNELS)
def test_kernel_store_finds_the_max_on_the_way(emu, spec):
    """raddstoreexpminusmax's max output (blocked reload's pass 1), every dtype: max x over every
    tail length (all-negative rows: the masked lanes past the end must not count), the max in any
    position, -inf alone; the sum and stored exps the bits of the call without; NaN makes the sum NaN."""
    k = emu.kernel(spec[0])
    rng = np.random.default_rng(21)
    for n in list(range(1, 2 * k.unroll + 2)) + [4 * k.unroll + 3]:
        for low, high in ((-100.0, 100.0), (-90.0, -10.0)):
            x = rng.uniform(low, high, n).astype(k.dtype)
            x[rng.integers(n)] = high
            exponent = float(np.rint(float(x.max()) * LOG2E_F32))
            w, w_plain = np.zeros(n, k.y_dtype), np.zeros(n, k.y_dtype)
            total, top = k(x, w, 0.0, exponent, True)
            plain = k(x, w_plain, 0.0, exponent)
            assert top == float(x.max()), f"n={n}: {top} != {x.max()}"
            assert total == plain or (math.isnan(total) and math.isnan(plain)), f"n={n}"
            np.testing.assert_array_equal(w.view(np.uint8), w_plain.view(np.uint8), err_msg=f"n={n}")
        w = np.zeros(n, k.y_dtype)
        assert k(np.full(n, -np.inf, k.dtype), w, 0.0, 0.0, True) == (0.0, -np.inf)
        x = rng.uniform(-100, 100, n).astype(k.dtype)
        x[rng.integers(n)] = np.nan
        assert math.isnan(k(x, w, 0.0, 0.0, True)[0]), f"n={n}: a NaN x must make the sum NaN"


@pytest.mark.parametrize("spec", kernels_of("vsubc"))
def test_kernel_vsubc(emu, spec):
    k = emu.kernel(spec[0])
    rng = np.random.default_rng(15)
    data = random_f32(rng, 2 * k.unroll + 1, -1e3, 1e3)
    for n in _lengths(k.unroll):
        x = data[:n]
        y = np.empty(n, F32)
        k(x, y, F32(900.0), F32(2.0**-20))  # log_softmax's bound, at most 0: the x above 900 clamp
        np.testing.assert_array_equal(bits(y), bits(np.minimum((x - F32(900.0)) - F32(2.0**-20), F32(0))),
                                      err_msg=f"n={n}")
        for distance in ALIASING_DISTANCES:  # the loads-ahead loop
            z = out_past(x, distance)
            k(x, z, F32(900.0), F32(2.0**-20))
            np.testing.assert_array_equal(bits(z), bits(y), err_msg=f"n={n}, {distance} bytes past x")


@pytest.mark.parametrize("spec", kernels_of("vscale"))
def test_kernel_vscale(emu, spec):
    k = emu.kernel(spec[0])
    rng = np.random.default_rng(14)
    data = random_f32(rng, 2 * k.unroll + 1, -1e3, 1e3)
    for n in _lengths(k.unroll):
        x = data[:n]
        y = np.empty(n, F32)
        k(x, y, F32(0.3))
        np.testing.assert_array_equal(bits(y), bits(x * F32(0.3)), err_msg=f"n={n}")
    check_vscale_flushes_like_ftz(k, F32, _lengths(k.unroll), k.name)


# ---------------------------------------------------------------------------------------------
# Against the native AVX2 level of the installed package

@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_matches_native_avx2(emu, algorithm):
    twopass = pytest.importorskip("twopass")
    if "avx2" not in twopass.available_levels():
        pytest.skip("the installed twopass has no avx2 level on this machine")
    rng = np.random.default_rng(15)
    lengths = list(range(1, 200)) + [255, 256, 257, 4095, 4096, 4097, 8193, 100000]
    for n in lengths:
        x = random_f32(rng, n)
        with twopass.use_isa("avx2"):
            native = twopass.softmax(x, axis=-1, algorithm=algorithm)
        emulated = emu.softmax(x, algorithm)
        # either side may flush an output below FLUSH to 0 (both exps flush results below 2^-126, but
        # they round differently and the output's scaling then flushes below 2^-126 once more)
        flushed = ((emulated == 0) | (native == 0)) & (np.maximum(emulated, native) < FLUSH)
        emulated_, native_ = np.where(flushed, 0, emulated), np.where(flushed, 0, native)
        assert max(rel_err(emulated_, native_), rel_err(native_, emulated_)) <= RTOL, f"n={n}"
    for x in (np.array([0, -90, -100], F32), np.array([1e30, -1e30, 0, 1e30], F32),
              np.array([1, np.nan, 2] * 7, F32), np.array([-np.inf, 3, np.inf], F32)):
        with twopass.use_isa("avx2"):
            native = twopass.softmax(x, axis=-1, algorithm=algorithm)
        emulated = emu.softmax(x, algorithm)
        np.testing.assert_array_equal(np.isnan(emulated), np.isnan(native))
        np.testing.assert_allclose(emulated, native, rtol=RTOL, atol=FLUSH)


# ---------------------------------------------------------------------------------------------
# The emulated intrinsics themselves, against the hardware semantics (Intel SDM)

def scalef_special(a, b, quiet):
    """VSCALEFPS/PD's special cases (Intel SDM table, checked on an AVX-512 CPU) as (mask, values),
    for arrays a, b of one float dtype; quiet(v) quietens a NaN keeping its payload."""
    dt = a.dtype
    indefinite = -np.array(np.nan, dt)  # QNaN indefinite: sign set, payload 0
    with np.errstate(invalid="ignore"):
        an, bn = np.isnan(a), np.isnan(b)
        a_snan = an & ((a.view(np.uint32 if dt == F32 else np.uint64) >> (22 if dt == F32 else 51)) & 1 == 0)
        cases = [
            (an & a_snan, quiet(a)),
            (an & ~a_snan & (b == np.inf), np.full_like(a, np.inf)),
            (an & ~a_snan & (b == -np.inf), np.zeros_like(a)),
            (an, quiet(a)),
            (bn, quiet(b)),
            (np.isinf(a) & (b == -np.inf), np.full_like(a, indefinite)),
            (np.isinf(a), a),
            ((a == 0) & (b == np.inf), np.full_like(a, indefinite)),
            (a == 0, a),
            (b == np.inf, np.copysign(np.full_like(a, np.inf), a)),
            (b == -np.inf, np.copysign(np.zeros_like(a), a)),
        ]
    mask = np.zeros(a.shape, bool)
    out = np.zeros_like(a)
    for m, v in cases:
        m = m & ~mask
        out[m] = v[m]
        mask |= m
    return mask, out


def scalef_model(a, b):
    """VSCALEFPS with MXCSR at its default (round to nearest, DAZ = FTZ = 0): a * 2^floor(b)
    rounded once; the special cases of scalef_special."""
    a, b = np.broadcast_arrays(np.asarray(a, F32), np.asarray(b, F32))
    with np.errstate(all="ignore"):
        k = np.clip(np.floor(b.astype(np.float64)), -400, 400)  # beyond: 0 or inf for any float a
        k = np.where(np.isnan(k), 0, k).astype(np.int64)
        out = np.ldexp(a.astype(np.float64), k).astype(F32)  # exact in float64, then one rounding
    special, values = scalef_special(a, b, lambda v: (v.view(np.uint32) | np.uint32(0x400000)).view(F32))
    out[special] = values[special]
    return out


def scalef_pd_model(a, b):
    """VSCALEFPD likewise: a * 2^floor(b) as an exact fraction, rounded once to float64 by Python."""
    a, b = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(b, np.float64))
    special, out = scalef_special(a, b, lambda v: (v.view(np.uint64) | np.uint64(1 << 51)).view(np.float64))
    for i in np.flatnonzero(~special):
        k = int(min(max(math.floor(b[i]), -2200), 2200))
        exact = fractions.Fraction(float(a[i])) * fractions.Fraction(2) ** k
        try:
            out[i] = float(exact)
        except OverflowError:
            out[i] = math.copysign(math.inf, a[i])
    return out


def _same(x, y):
    return (bits(x) == bits(y)) | (np.isnan(x) & np.isnan(y))


def test_emulated_scalef_is_the_hardwares(emu):
    """The shim's _mm512_scalef_ps against the SDM bit for bit (MXCSR at its default): a * 2^floor(b)
    rounded once, on the kernels' domain (p in [0.7, 1.42] times a scale of 2^-126 .. 2^126, integral
    b far below -149: the folded exponent of instantiate.h) and around it: subnormal a and b,
    non-integral b, products in the subnormals (ties to even), +-0, +-inf, NaN, and
    2^floor(b) outside the floats, where SIMDe 0.7.4 gave 0, inf or NaN."""
    rng = np.random.default_rng(17)
    tiny = np.finfo(F32).tiny
    a = np.concatenate([rng.uniform(-3, 3, 40), rng.uniform(0.7, 1.42, 20) * 2.0 ** rng.integers(-126, 127, 20),
                        [0.0, -0.0, 1.0, 1.5, 0.75, np.inf, -np.inf, np.nan, tiny * 0.3, -tiny * 0.7,
                         2.0 ** -149, 3e38, -1e-30, float.fromhex("0x1.fffffep1"), 2.0 ** 126]]).astype(F32)
    nans = np.array([0x7FC12345, 0xFFC00001, 0x7FA00002, 0xFF800003], np.uint32).view(F32)  # quiet, signalling
    a = np.concatenate([a, nans])
    b = np.concatenate([np.arange(-300.0, 301.0, 3.0), np.arange(-160.0, -140.0), np.arange(-260.0, -250.0),
                        [126.0, 127.0, 128.0, 129.0, -6.1e6, 4e6, -2.0 ** 22],
                        [-np.inf, np.inf, np.nan, -0.0, 1e-40, -1e-40, 0.5, -0.5, -3.25, -148.5, 1.75, 3e38, -3e38]])
    b = np.concatenate([b.astype(F32), np.array([0x7FC54321, 0xFFA00004], np.uint32).view(F32)])
    aa, bb = (v.ravel() for v in np.meshgrid(a, b))
    got, want = emu.scalef(aa, bb), scalef_model(aa, bb)
    bad = bits(got) != bits(want)  # NaNs too: which operand's payload, quietened
    assert not bad.any(), list(zip(aa[bad][:10], bb[bad][:10], got[bad][:10], want[bad][:10]))
    assert bits(emu.scalef(F32(0), F32(-np.inf)))[0] == 0  # +0 exactly
    assert emu.scalef(F32(1.5), F32(-149))[0] == F32(2.0 ** -148)  # ties to even in the subnormals
    assert emu.scalef(F32(2.0 ** 26), F32(-131))[0] == F32(2.0 ** -105)  # 2^-131 itself is no normal float
    # the SDM's table, as an AVX-512 CPU gave it (a quiet NaN a with b = +-inf is no NaN)
    u = lambda *v: np.array(v, np.uint32).view(F32)
    a_, b_ = u(0x7FC00000, 0x7FC00000, 0xFFC12345, 0x7FA12345, 0xFF800000, 0x80000000, 0x3F800000, 0xC0000000), \
        u(0x7F800000, 0xFF800000, 0x40A00000, 0x7FC54321, 0xFF800000, 0x7F800000, 0xFFC54321, 0xFF800000)
    np.testing.assert_array_equal(bits(emu.scalef(a_, b_)), [0x7F800000, 0x00000000, 0xFFC12345, 0x7FE12345,
                                                            0xFFC00000, 0xFFC00000, 0xFFC54321, 0x80000000])


def test_emulated_scalef_pd_is_the_hardwares(emu):
    """The shim's _mm512_scalef_pd against the SDM bit for bit (MXCSR at its default), on the float64
    kernels' domain (v up to a sum's mantissa, d far below -1022: normal results the explicit flush
    used to zero) and its special cases."""
    rng = np.random.default_rng(19)
    tiny = np.finfo(np.float64).tiny
    snan = np.array([0x7FF4000000000001], np.uint64).view(np.float64)[0]
    a = np.concatenate([rng.uniform(0.7, 1.42, 12), rng.uniform(-3, 3, 6), [1000.0, 6e4, 0.0, -0.0, 1.0, 1.5,
                        np.inf, -np.inf, np.nan, -np.nan, snan, tiny * 0.3, -tiny, 2.0 ** -1074, 1.7e308]])
    b = np.concatenate([np.arange(-1100.0, -1000.0, 3.0), [-1030.0, -1074.0, -1075.0, -1076.0, -2000.0, -5e6,
                        0.0, -1.0, 1.0, 1023.0, 1024.0, 2e6, -0.5, -3.25, 1e-310, -1e-310, np.inf, -np.inf,
                        np.nan, snan]])
    aa, bb = (v.ravel() for v in np.meshgrid(a, b))
    got, want = emu.scalef_pd(aa, bb), scalef_pd_model(aa, bb)
    bad = (got.view(np.uint64) != want.view(np.uint64))
    assert not bad.any(), list(zip(aa[bad][:10], bb[bad][:10], got[bad][:10], want[bad][:10]))
    assert emu.scalef_pd(1000.0, -1030.0)[0] == 1000.0 * 2.0 ** -1030  # a normal result: 2^-1030 is none


def test_simde_roundscale_nearest_even(emu):
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997, -0.4, 2.0 ** 23 + 1, 1e30, -1e30,
                  np.inf, -np.inf, -0.0, 0.0, 12345.5, -12344.5], F32)
    x = np.concatenate([x, np.random.default_rng(18).uniform(-3e6, 3e6, 1000).astype(F32)])
    got = emu.roundscale(x)
    np.testing.assert_array_equal(bits(got), bits(np.rint(x)))
    assert np.isnan(emu.roundscale(F32(np.nan))[0])


def test_simde_max_and_masked_ops(emu):
    a = np.array([np.nan, 1, -0.0, 0.0, -np.inf, 2, np.nan, 5] * 2, F32)
    b = np.array([1, np.nan, 0.0, -0.0, -np.inf, 3, np.nan, -5] * 2, F32)
    want = np.where(a > b, a, b)  # MAXPS: the second operand unless the first is greater
    np.testing.assert_array_equal(bits(emu.max(a, b)), bits(want))
    src = np.arange(100, 116, dtype=F32)
    for mask in (0, 1, 0x7FFF, 0x8000, 0xA5A5, 0xFFFF):
        got_max, got_add = emu.mask_max_add(src, mask, a, b)
        lanes = np.array([(mask >> i) & 1 for i in range(16)], bool)
        np.testing.assert_array_equal(bits(got_max[~lanes]), bits(src[~lanes]))
        np.testing.assert_array_equal(bits(got_add[~lanes]), bits(src[~lanes]))
        np.testing.assert_array_equal(bits(got_max[lanes]), bits(want[lanes]))
        assert np.all(_same(got_add[lanes], (a + b)[lanes]))


def test_reductions(emu):
    v = np.arange(16, dtype=F32) * F32(0.25) - F32(1)
    assert emu.reduce_max_add(v) == (float(v.max()), float(v.sum()))
    v = np.full(16, -np.inf, F32)
    v[11] = -7
    assert emu.reduce_max_add(v)[0] == -7
    v = np.array([1e8, 1, -1e8, 1] + [0] * 12, F32)
    # GCC's order: (upper 8 + lower 8), then (upper 4 + lower 4), then lanes 0+2, 1+3, then 0 + 1
    assert emu.reduce_max_add(v)[1] == float(F32(F32(1e8) + F32(-1e8)) + F32(F32(1) + F32(1)))


# ---------------------------------------------------------------------------------------------
# Columns: softmax over a non-contiguous axis, each lane following one column

@pytest.mark.parametrize("rows, cols", [(1, 1), (5, 7), (3, 16), (300, 9), (17, 33), (256, 255), (257, 256),
                                        (513, 257), (40, 600),
                                        # around pass 1's strips (32 columns) and row groups and blocks
                                        (2, 31), (63, 32), (64, 48), (65, 65), (129, 47)], ids=str)
def test_softmax_columns(emu, rows, cols):
    rng = np.random.default_rng(rows * cols)
    x = random_f32(rng, rows * cols).reshape(rows, cols)
    if rows > 1:
        x[rows // 2, cols // 2] = -np.inf
    if cols > 3:
        x[:, 3] = 1e30  # a column two-pass cannot take: three-pass for it
    pad = 5
    ybuf = np.full((rows, cols + 2 * pad), Y_SENTINEL, np.uint32).view(F32)
    y = ybuf[:, pad:pad + cols]
    emu.softmax_columns(x, y)
    assert np.all(bits(ybuf[:, :pad]) == Y_SENTINEL) and np.all(bits(ybuf[:, pad + cols:]) == Y_SENTINEL)
    ref = ref_softmax(x.T).T
    assert rel_err(y.T, ref.T) <= RTOL
    inplace = x.copy()
    emu.softmax_columns(inplace, inplace)
    np.testing.assert_array_equal(bits(inplace), bits(y))
    # log_softmax down the columns: x - logsumexp, within a few ulps of the magnitudes subtracted
    ybuf = np.full((rows, cols + 2 * pad), Y_SENTINEL, np.uint32).view(F32)
    y = ybuf[:, pad:pad + cols]
    emu.softmax_columns(x, y, log=True)
    assert np.all(bits(ybuf[:, :pad]) == Y_SENTINEL) and np.all(bits(ybuf[:, pad + cols:]) == Y_SENTINEL)
    with np.errstate(all="ignore"):
        ref = scipy.special.log_softmax(x.astype(np.float64), axis=0)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    ok = np.isfinite(ref)
    assert np.all(np.isinf(y[~ok & ~np.isnan(ref)]))
    lse = np.abs(scipy.special.logsumexp(x.astype(np.float64), axis=0, keepdims=True))
    tolerance = 4 * np.finfo(np.float32).eps * np.maximum(np.abs(x.astype(np.float64)), lse) + 1e-6 * np.abs(ref)
    assert np.all(np.abs(y[ok] - ref[ok]) <= tolerance[ok])


@pytest.mark.parametrize("rows, cols", [(1, 1), (1, 9), (5, 7), (300, 9), (17, 33), (65, 65), (129, 47)], ids=str)
def test_logsumexp_columns(emu, rows, cols):
    """logsumexp down the columns (the columns driver's pass 1 alone) on the AVX-512F table: SciPy's
    values, special columns included (NaN, -inf, beyond the extended range), one row exactly x + 0,
    and each column bitwise as alone."""
    rng = np.random.default_rng(rows + cols)
    x = random_f32(rng, rows * cols).reshape(rows, cols)
    if cols > 3:
        x[:, 3] = 1e30
        x[rows // 2, 1] = np.nan
        x[:, 2] = -np.inf
    lse = emu.logsumexp_columns(x)
    with np.errstate(all="ignore"):
        ref = scipy.special.logsumexp(x.astype(np.float64), axis=0)
    np.testing.assert_array_equal(np.isnan(lse), np.isnan(ref))
    ok = ~np.isnan(ref)
    np.testing.assert_allclose(lse[ok], ref[ok], rtol=1e-6)
    if rows == 1:
        np.testing.assert_array_equal(lse, x[0].astype(np.float64) + 0.0)
    for j in range(cols):
        np.testing.assert_array_equal(emu.logsumexp_columns(np.ascontiguousarray(x[:, j:j + 1])), lse[j:j + 1])


# ---------------------------------------------------------------------------------------------
# Threads: the OpenMP drivers on the avx512f table give bitwise the one-thread results

@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_threads_bitwise_the_same(emu, algorithm):
    rng = np.random.default_rng(11)
    for shape in ((1, 70_001), (3, 40_000), (64, 1000)):  # chunks of one slice; rows shared out whole
        x = random_f32(rng, shape[0] * shape[1]).reshape(shape)
        one = emu.softmax_rows(x, np.empty_like(x), algorithm, threads=1)
        assert rel_err(one, ref_softmax(x)) <= RTOL
        for threads in (2, 3):
            np.testing.assert_array_equal(bits(emu.softmax_rows(x, np.empty_like(x), algorithm, threads=threads)),
                                          bits(one))
    x = random_f32(rng, 300 * 700).reshape(300, 700)  # three blocks of columns
    one = emu.softmax_columns(x, np.empty_like(x), threads=1)
    np.testing.assert_array_equal(bits(emu.softmax_columns(x, np.empty_like(x), threads=3)), bits(one))


# ---------------------------------------------------------------------------------------------
# float64: the AVX-512F float64 kernels and the float64 drivers (the same template as float32),
# against longdouble references to 1e-14 relative; the AVX2 float64 twins run natively as a control.

F64 = np.float64
LD = np.longdouble
EPS64 = float(np.finfo(F64).eps)
TINY64 = float(np.finfo(F64).tiny)
FLUSH64 = 2.0**-1021  # outputs below this may be flushed to 0 (power-of-two scales below 2^-1022)
RTOL64 = 1e-14
LOG2E_F64 = float.fromhex("0x1.71547652B82FEp+0")
AVX512_KERNELS_F64 = [k for k in KERNELS_F64 if k[2] == "avx512f"]
AVX512_ROW_KERNELS_F64 = [k for k in AVX512_KERNELS_F64 if k[1] in emx.ROW_OPS]
ROW_KERNELS_F64 = [k for k in KERNELS_F64 if k[1] in emx.ROW_OPS]


def ref_softmax64(x):
    xl = np.asarray(x, F64).astype(LD)
    with np.errstate(all="ignore"):
        e = np.exp(xl - xl.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)


def rel_err64(y, ref):
    y = np.asarray(y, F64).astype(LD)
    ref = np.asarray(ref, LD)
    err = np.abs(y - ref) / np.maximum(np.abs(ref), TINY64)
    err[(y == 0) & (np.abs(ref) < FLUSH64)] = 0.0
    return float(np.max(err, initial=0.0))


def bits64(a):
    return np.asarray(a, F64).view(np.uint64)


# ln2 = LN2_HI + LN2_LO in longdouble, LN2_HI with 28 significant bits: E * LN2_HI is exact in
# longdouble's 64-bit significand for |E| < 2^36, and x - E * LN2_HI exact for x near E ln2.
# (np.log(LD(2)) alone is off by up to 2^-65 relative, 3e-15 absolute once multiplied by E = 7e4.)
LN2_HI_LD = LD(float.fromhex("0x1.62e42fep-1"))
LN2_LO_LD = LD(str(decimal.Decimal("0.69314718055994530941723212145817656807550013436025525412068")
                   - decimal.Decimal(float.fromhex("0x1.62e42fep-1"))))


def exp_scaled(x, exponent):
    """exp(x) * 2^-exponent in longdouble, without rounding x - exponent * ln2 at large |x|."""
    e = LD(exponent)
    return np.exp((np.asarray(x, F64).astype(LD) - e * LN2_HI_LD) - e * LN2_LO_LD)


@pytest.mark.parametrize("spec", [pytest.param(k, id=k[0]) for k in ROW_KERNELS_F64 if k[0].startswith("twopass_f64_vscale_")])
def test_kernel_f64_vscale_never_forms_a_subnormal(emu, spec):
    """float64 vscale (avx512f emulated, avx2 native): x * scale bit for bit, products below the
    smallest normal flushed to zeros of their sign."""
    k = emu.kernel(spec[0])
    check_vscale_flushes_like_ftz(k, F64, _lengths(k.unroll), k.name)


@pytest.mark.parametrize("spec", [pytest.param(k, id=k[0]) for k in ROW_KERNELS_F64])
def test_kernel_f64(emu, spec):
    """Every float64 row variant (avx512f emulated, avx2 native) over 1 .. 2 * unroll + 1 elements
    and three offsets (the extended exponents far from 0), in place too."""
    k = emu.kernel(spec[0])
    rng = np.random.default_rng(len(spec[0]))
    for offset in (0.0, 5e4, -3e9):
        data = rng.uniform(-300, 300, 2 * k.unroll + 1) + offset
        for n in _lengths(k.unroll):
            x = data[:n].copy()
            xl = x.astype(LD)
            m = float(x.max())
            shift, exponent = 0.0, float(np.rint(m * LOG2E_F64))
            what = f"{k.name} n={n} offset={offset}"
            e = exp_scaled(x, exponent)
            y = np.full(n, np.nan)
            if k.op == "rmax":
                assert k(x) == m, what
                continue
            if k.op == "raddextexp":
                mantissa, exp2 = k(x)
                assert exp2 == np.floor(exp2)
                got = np.log(LD(mantissa)) + LD(exp2) * np.log(LD(2))
                lse = LD(m) + np.log(np.exp(xl - LD(m)).sum())
                assert abs(got - lse) <= 1e-14 + 2 * EPS64 * abs(lse), what  # log of the sum: ~1 ULP of lse
                continue
            if k.op == "raddonline":
                max_, sum_ = k(x)
                assert max_ == m and abs(LD(sum_) / np.exp(xl - LD(m)).sum() - 1) <= RTOL64, what
                continue
            if k.op == "raddexpminusmax":
                assert abs(LD(k(x, shift, exponent)) / e.sum() - 1) <= RTOL64, what
                continue
            if k.op == "raddstoreexpminusmax":
                assert abs(LD(k(x, y, shift, exponent)) / e.sum() - 1) <= RTOL64, what
                ref = e
            elif k.op == "vscaleexpminusmax":
                k(x, y, shift, exponent, 0.37)
                ref = np.minimum(e * LD(0.37), 1)  # softmax's bound: at most 1
            elif k.op == "vscaleextexp":
                k(x, y, 1.37, exponent)
                ref = np.minimum(e * LD(1.37), 1)
            elif k.op == "vscale":
                k(x, y, 0.3)
                np.testing.assert_array_equal(bits64(y), bits64(x * 0.3), err_msg=what)
                continue
            elif k.op == "vsubc":
                c_hi = offset + 270.0  # the x above it clamp at 0
                k(x, y, c_hi, 2.0**-40)
                np.testing.assert_array_equal(bits64(y), bits64(np.minimum((x - c_hi) - 2.0**-40, 0)), err_msg=what)
                continue
            else:
                raise AssertionError(f"untested op {k.op}")
            assert rel_err64(y, ref) <= 4 * EPS64, what
            z = x.copy()
            args = {"raddstoreexpminusmax": (shift, exponent), "vscaleexpminusmax": (shift, exponent, 0.37),
                    "vscaleextexp": (1.37, exponent)}[k.op]
            k(z, z, *args)  # in place
            np.testing.assert_array_equal(bits64(z), bits64(y), err_msg=what + " (in place)")


@pytest.mark.parametrize("variant", [k[0] for k in AVX512_ROW_KERNELS_F64])
def test_canary_kernels_f64(emu, variant):
    """Sentinel NaNs around x and y: nothing outside is written, or read (a read would give NaN)."""
    k = emu.kernel(variant)
    rng = np.random.default_rng(8)
    sentinel_x, sentinel_y = np.uint64(0x7FF8DEADBEEF0001), np.uint64(0x7FF8DEADBEEF0002)
    for n in sorted(set(TAILS) | {k.unroll + t for t in range(0, 41)}):
        xbuf = np.full(n + 2 * PAD, sentinel_x, np.uint64).view(F64)
        xbuf[PAD:PAD + n] = rng.uniform(-20, 20, n)
        x_before = bits64(xbuf).copy()
        ybuf = np.full(n + 2 * PAD, sentinel_y, np.uint64).view(F64)
        x, y = xbuf[PAD:PAD + n], ybuf[PAD:PAD + n]
        exponent = float(np.rint(x.max() * LOG2E_F64))
        args = {"rmax": (), "raddextexp": (), "raddexpminusmax": (0.0, exponent),
                "raddstoreexpminusmax": (y, 0.0, exponent), "vscaleextexp": (y, 1.0, exponent),
                "vscaleexpminusmax": (y, 0.0, exponent, 0.5), "vscale": (y, 0.5),
                "vsubc": (y, 1.5, 1e-6), "raddonline": ()}[k.op]
        returned = k(x, *args)
        result = [] if returned is None else list(np.atleast_1d(returned))
        np.testing.assert_array_equal(bits64(xbuf), x_before, err_msg=f"{variant} n={n}: x was written")
        b = bits64(ybuf)
        if k.op in ("rmax", "raddextexp", "raddexpminusmax", "raddonline"):
            assert np.all(b == sentinel_y)
        else:
            assert np.all(b[:PAD] == sentinel_y) and np.all(b[PAD + n:] == sentinel_y), f"{variant} n={n}"
            result += list(y)
        assert np.all(np.isfinite(result)), f"{variant} n={n}: a result is not finite (a sentinel was read?)"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_softmax_f64_random_lengths(emu, algorithm):
    rng = np.random.default_rng(21)
    data = rng.uniform(-300, 300, max(LENGTHS))
    for n in LENGTHS:
        x = data[-n:].copy().reshape(1, n)
        for log in (False, True):
            y = emu.softmax_rows(x, np.empty_like(x), algorithm, log=log)
            if log:
                xl = x.astype(LD)
                ref = (xl - xl.max()) - np.log(np.exp(xl - xl.max()).sum())
                assert np.all(np.abs(y - ref) <= 4 * EPS64 * np.maximum(np.abs(ref), 1)), f"n={n} (log)"
            else:
                assert rel_err64(y, ref_softmax64(x)) <= RTOL64, f"n={n}"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("variant", [k[0] for k in AVX512_ROW_KERNELS_F64])
def test_softmax_f64_with_each_variant(emu, algorithm, variant):
    rng = np.random.default_rng(22)
    unroll = emu.kernel(variant).unroll
    for n in sorted(set(range(1, 2 * unroll + 2, 5)) | {unroll - 1, unroll, unroll + 1, 4096 + unroll + 3}):
        x = rng.uniform(-300, 300, (1, n))
        y = emu.softmax_rows(x, np.empty_like(x), algorithm, variants=[variant])
        assert rel_err64(y, ref_softmax64(x)) <= RTOL64, f"n={n}"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_softmax_f64_special_values_like_scipy(emu, algorithm):
    rng = np.random.default_rng(23)
    big = np.finfo(F64).max
    for n in EDGE_LENGTHS:
        rows = [rng.uniform(-5, 5, n) for _ in range(3)] + [np.full(n, -np.inf), np.full(n, np.inf),
                                                           rng.choice(np.array([big, -big, 0.0, 1e300]), n),
                                                           rng.choice(np.array([2.0**40, -2.0**40, 1.0]), n),
                                                           rng.uniform(-30, 30, n) + 3e11,
                                                           rng.uniform(-800, 0, n)]
        rows[0][n // 2] = np.nan
        rows[1][n - 1] = np.inf
        rows[2][rng.random(n) < 0.5] = -np.inf
        rows[2][0] = 1.0
        for i, x in enumerate(rows):
            x2 = x.reshape(1, n)
            with np.errstate(all="ignore"):
                expected = scipy.special.softmax(x)
                expected_log = scipy.special.log_softmax(x)
            y = emu.softmax_rows(x2, np.empty_like(x2), algorithm)[0]
            np.testing.assert_array_equal(np.isnan(y), np.isnan(expected), err_msg=f"n={n} row {i}")
            ok = ~np.isnan(expected)
            np.testing.assert_allclose(y[ok], expected[ok], rtol=1e-14, atol=FLUSH64, err_msg=f"n={n} row {i}")
            ly = emu.softmax_rows(x2, np.empty_like(x2), algorithm, log=True)[0]
            np.testing.assert_array_equal(np.isnan(ly), np.isnan(expected_log), err_msg=f"n={n} row {i}")
            np.testing.assert_allclose(ly, expected_log, rtol=1e-14, atol=1e-13, err_msg=f"n={n} row {i}")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_canary_algorithms_f64(emu, algorithm):
    rng = np.random.default_rng(24)
    sentinel = np.uint64(0x7FF8DEADBEEF0003)
    for n in list(TAILS) + [4096 + t for t in TAILS]:
        for log in (False, True):
            xbuf = np.full(n + 2 * PAD, sentinel, np.uint64).view(F64)
            xbuf[PAD:PAD + n] = rng.uniform(-300, 300, n)
            ybuf = np.full(n + 2 * PAD, sentinel, np.uint64).view(F64)
            emu.softmax_rows(xbuf[PAD:PAD + n].reshape(1, n), ybuf[PAD:PAD + n].reshape(1, n), algorithm, log=log)
            b = bits64(ybuf)
            assert np.all(b[:PAD] == sentinel) and np.all(b[PAD + n:] == sentinel), f"n={n} log={log}"
            assert np.all(np.isfinite(ybuf[PAD:PAD + n])), f"n={n} log={log}"
            if not log:
                assert rel_err64(ybuf[PAD:PAD + n], ref_softmax64(xbuf[PAD:PAD + n])) <= RTOL64


@pytest.mark.parametrize("rows, cols", [(1, 1), (5, 7), (3, 8), (300, 9), (17, 33), (256, 255), (257, 256),
                                        (513, 257), (40, 600),
                                        (2, 15), (63, 16), (65, 24), (129, 33)], ids=str)
def test_softmax_columns_f64(emu, rows, cols):
    rng = np.random.default_rng(rows * cols + 1)
    x = rng.uniform(-300, 300, (rows, cols))
    if rows > 1:
        x[rows // 2, cols // 2] = -np.inf
    if cols > 3:
        x[:, 3] = 1e300  # a column two-pass cannot take: three-pass for it
    pad = 5
    sentinel = np.uint64(0x7FF8DEADBEEF0004)
    ybuf = np.full((rows, cols + 2 * pad), sentinel, np.uint64).view(F64)
    y = ybuf[:, pad:pad + cols]
    emu.softmax_columns(x, y)
    assert np.all(bits64(ybuf[:, :pad]) == sentinel) and np.all(bits64(ybuf[:, pad + cols:]) == sentinel)
    assert rel_err64(y.T, ref_softmax64(x.T)) <= RTOL64
    inplace = x.copy()
    emu.softmax_columns(inplace, inplace)
    np.testing.assert_array_equal(bits64(inplace), bits64(y))
    ly = emu.softmax_columns(x, np.empty_like(x), log=True)
    with np.errstate(all="ignore"):
        ref = scipy.special.log_softmax(x, axis=0)
    np.testing.assert_array_equal(np.isnan(ly), np.isnan(ref))
    ok = np.isfinite(ref)
    assert np.all(ly[~ok & ~np.isnan(ref)] == -np.inf)
    np.testing.assert_allclose(ly[ok], ref[ok], rtol=1e-14, atol=1e-12)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_threads_bitwise_the_same_f64(emu, algorithm):
    rng = np.random.default_rng(25)
    for shape in ((1, 70_001), (64, 1000)):
        x = rng.uniform(-300, 300, shape)
        one = emu.softmax_rows(x, np.empty_like(x), algorithm, threads=1)
        assert rel_err64(one, ref_softmax64(x)) <= RTOL64
        np.testing.assert_array_equal(bits64(emu.softmax_rows(x, np.empty_like(x), algorithm, threads=3)),
                                      bits64(one))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_matches_native_avx2_f64(emu, algorithm):
    twopass = pytest.importorskip("twopass")
    if "avx2" not in twopass.available_levels():
        pytest.skip("the installed twopass has no avx2 level on this machine")
    with twopass.use_isa("avx2"):
        if not isinstance(twopass.runtime_info()["kernels"]["float64"], dict):
            pytest.skip("the installed twopass runs float64 on the NumPy fallback")
    rng = np.random.default_rng(26)
    for n in list(range(1, 100)) + [255, 256, 257, 4097, 100000]:
        x = rng.uniform(-300, 300, n)
        with twopass.use_isa("avx2"):
            native = twopass.softmax(x, axis=-1, algorithm=algorithm)
        emulated = emu.softmax(x, algorithm, dtype=F64)
        assert max(rel_err64(emulated, native), rel_err64(native, emulated)) <= RTOL64, f"n={n}"


# ---------------------------------------------------------------------------------------------
# float16: the AVX-512F float16 kernels (F16C conversions on load and store, float32 arithmetic)
# against the float32 kernels of the same tile on the same values widened to float32: every pass
# gives the float32 result rounded once to float16 (ties to even, as NumPy's astype), reductions the
# same float; the AVX2 float16 twins run natively as a control.

F16 = np.float16
ROW_KERNELS_F16 = [k for k in KERNELS_F16 if k[1] in emx.ROW_OPS]
F16_SENTINEL = 0x7E5A  # a NaN half with a payload no kernel writes


def _f16_call_args(op, x32):
    exponent = float(np.rint(np.max(x32[np.isfinite(x32)], initial=0.0) * np.log2(np.e)))
    return {"vscaleextexp": (0.7, exponent), "raddexpminusmax": (0.0, exponent),
            "raddstoreexpminusmax": (0.0, exponent), "vscaleexpminusmax": (0.0, exponent, 0.3),
            "vscale": (0.37,), "vsubc": (1.25, 1e-3)}.get(op, ())


@pytest.mark.parametrize("spec", [pytest.param(k, id=k[0]) for k in ROW_KERNELS_F16])
def test_kernel_f16_is_the_f32_kernel_rounded(emu, spec):
    name, op, _, unroll = spec
    k16, k32 = emu.kernel(name), emu.kernel(name.replace("twopass_f16_", "twopass_f32_"))
    rng = np.random.default_rng(unroll)
    pad = 32
    for n in list(range(1, 2 * unroll + 2)) + [4 * unroll + 3, 3001]:
        offset = n % 17 if name.endswith("_nt") else 0  # moves the streamed stores' aligned start
        x16 = (rng.standard_normal(n) * 6).astype(F16)
        if n > 3:
            x16[n // 3], x16[n // 2] = -np.inf, 2.0**-20
        x32 = x16.astype(F32)
        args = _f16_call_args(op, x32)
        if op in ("rmax", "raddextexp", "raddexpminusmax", "raddonline"):
            r16, r32 = k16(x16, *args), k32(x32, *args)
            assert r16 == r32, f"n={n}: {r16} != {r32}"
            continue
        if op == "raddstoreexpminusmax":  # float32 exps (kernels.h): the float32 kernel's own
            wbuf, w32 = np.full(n + 2 * pad, 0x7FC0_5A5A, np.uint32), np.zeros(n, F32)  # NaN sentinels
            w16 = wbuf[pad:pad + n].view(F32)
            assert k16(x16, w16, *args) == k32(x32, w32, *args), f"n={n}"
            np.testing.assert_array_equal(w16.view(np.uint32), w32.view(np.uint32), err_msg=f"n={n}")
            assert np.all(wbuf[:pad] == 0x7FC0_5A5A) and np.all(wbuf[pad + n:] == 0x7FC0_5A5A), \
                f"n={n}: a write outside the stored exps"
            continue
        if op == "vscale":  # from float32 exps, no half among them, rounded once
            x16 = x32 = x32 * F32(1 + 2.0**-13)
        buf = np.full(n + 2 * pad, F16_SENTINEL, np.uint16)
        y16 = buf[pad + offset:pad + offset + n].view(F16)
        y32 = np.zeros(n, F32)
        r16, r32 = k16(x16, y16, *args), k32(x32, y32, *args)
        assert r16 == r32, f"n={n}"
        np.testing.assert_array_equal(y16.view(np.uint16), y32.astype(F16).view(np.uint16), err_msg=f"n={n}")
        assert np.all(buf[:pad + offset] == F16_SENTINEL) and np.all(buf[pad + offset + n:] == F16_SENTINEL), \
            f"n={n}: a write outside the output"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_softmax_f16_is_f32_rounded(emu, algorithm):
    """Rows and columns: the float16 drivers run float32's arithmetic, rounded once at the store
    (three_pass_reload keeps its exps in float32)."""
    rng = np.random.default_rng(27)
    for shape in ((3, 1), (5, 47), (2, 4113), (1, 70_001)):
        x16 = (rng.standard_normal(shape) * 5).astype(F16)
        x16[0, 0] = -np.inf
        for log in (False, True):
            y16 = emu.softmax_rows(x16, np.empty_like(x16), algorithm, log=log)
            y32 = emu.softmax_rows(x16.astype(F32), np.empty(shape, F32), algorithm, log=log).astype(F16)
            np.testing.assert_array_equal(y16.view(np.uint16), y32.view(np.uint16))
            one = emu.softmax_rows(x16, np.empty_like(x16), algorithm, log=log, threads=3)
            np.testing.assert_array_equal(one.view(np.uint16), y16.view(np.uint16))
    x16 = (rng.standard_normal((300, 259)) * 5).astype(F16)
    x16[:, 7] = np.inf  # a column two-pass cannot take: three-pass on a copy
    for log in (False, True):
        y16 = emu.softmax_columns(x16, np.empty_like(x16), log=log)
        y32 = emu.softmax_columns(x16.astype(F32), np.empty(x16.shape, F32), log=log).astype(F16)
        np.testing.assert_array_equal(y16.view(np.uint16), y32.view(np.uint16))


# ---------------------------------------------------------------------------------------------
# Short rows: softmax_short_rows (instantiate.h) on strided rows, avx512f emulated and its AVX2 twins
# natively, every dtype, against the level's own rmax, raddstoreexpminusmax and vscale run row by row
# (the drivers' path for longer rows): the same bits, below, at and above the unroll (the order of
# summation changes there), nothing written outside the rows, and 0 (y untouched) for rows longer than
# TWOPASS_SHORT_ROWS_BYTES or 16 vectors.

SHORT_ROWS_KERNELS = [pytest.param(k, id=k[0]) for k in KERNELS + KERNELS_F64 + KERNELS_F16
                      if k[1] == "softmax_short_rows"]


def _split(mx, dtype):
    """TWOPASS_EXP_SPLIT of float32 (float16 computes in float32) or float64."""
    if dtype != np.float64:
        return exp_shift(mx)
    return (0.0, float(np.rint(mx * LOG2E_F64))) if abs(mx) <= 2.0**37 else (float(mx), 0.0)


@pytest.mark.parametrize("spec", SHORT_ROWS_KERNELS)
def test_short_rows_kernel(emu, spec):
    name, _, isa, unroll = spec
    k = emu.kernel(name)
    dtype, level = k.dtype, (emx.LEVEL_AVX512F if isa == "avx512f" else emx.LEVEL_AVX2)
    passes = emu.table_names(level, dtype=dtype)
    rmax, store, vscale = (emu.kernel(passes[op]) for op in ("rmax", "raddstoreexpminusmax", "vscale"))
    assert store.unroll == unroll and store.accumulators == k.accumulators  # the order it mirrors
    vlen = (64 if isa == "avx512f" else 32) // (8 if dtype == np.float64 else 4)
    longest = min(512 // np.dtype(dtype).itemsize, 16 * vlen)  # TWOPASS_SHORT_ROWS_BYTES, _MAX_VECTORS
    lengths = sorted({*range(1, 2 * vlen + 2), unroll - vlen - 1, unroll - vlen, unroll - 1, unroll,
                      unroll + 1, unroll + vlen + 3, longest - 1, longest, longest + 1})
    rows = 67  # more than one group of TWOPASS_SHORT_ROWS_GROUP = 64
    rng = np.random.default_rng(unroll)
    sentinel = np.array(np.nan, dtype)
    for n in lengths:
        x_stride, y_stride = n + 3, n + 5
        x = np.full(rows * x_stride, sentinel)
        grid = rng.uniform(-40, 40, (rows, n))
        grid[1, n // 2], grid[4, 0], grid[6], grid[9], grid[10] = np.nan, np.inf, -np.inf, grid[9] * 1e30, 7.0
        grid[12::17, -1] = -np.inf
        with np.errstate(over="ignore"):
            x.reshape(rows, x_stride)[:, :n] = grid.astype(dtype)
        x_before = x.copy()
        y = np.full(rows * y_stride, sentinel)
        done = k(x, y, rows, n, x_stride, y_stride)
        assert np.array_equal(x.view(np.uint8), x_before.view(np.uint8)), f"{name} n={n}: x was written"
        if n > longest:
            assert done == 0 and np.all(np.isnan(y)), f"{name} n={n}: longer rows are declined"
            continue
        assert done == 1
        got = y.reshape(rows, y_stride)
        assert np.all(np.isnan(got[:, n:])), f"{name} n={n}: written outside the rows"
        for r in range(rows):
            row = x[r * x_stride:r * x_stride + n].copy()
            want, stored = np.empty_like(row), np.empty(n, store.y_dtype)  # float16's exps in float32
            shift, exponent = _split(rmax(row), dtype)
            total = store(row, stored, shift, exponent)
            vscale(stored, want, (F64 if dtype == np.float64 else F32)(1.0 / total))
            assert np.array_equal(got[r, :n].view(f"u{want.itemsize}"), want.view(f"u{want.itemsize}")), (
                f"{name} n={n} row {r}: {got[r, :n]} against {want}")
