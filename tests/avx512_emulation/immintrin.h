/* Test-only stand-in for <immintrin.h>: runs the AVX-512F kernels on a CPU without AVX-512.
 *
 * tests/emulated_avx512.py compiles src/avx512f/*_kernels_avx512f.c with -mavx2 -mfma -mf16c (never
 * -mavx512f) and this directory first on the include path, so the kernel's `#include <immintrin.h>`
 * lands here. We include the compiler's real header (AVX2/FMA run natively), then SIMDe's AVX-512
 * header with SIMDE_ENABLE_NATIVE_ALIASES, which #defines every _mm512_* name it implements to its
 * portable simde_mm512_* version. Nothing from SIMDe is copied here; it is only #included.
 *
 * SIMDe 0.7.4 (Debian bookworm's libsimde-dev) lacks thirteen intrinsics the kernels use (six for
 * float32, five for the float64 kernels, the two float16 conversions), and its _mm512_scalef_ps and
 * _pd differ from the hardware where the kernels need them; these fifteen are
 * written below from their documented semantics (Intel Intrinsics Guide, and GCC's avx512fintrin.h
 * for the reduction order of the _mm512_reduce_* sequences, which are not single instructions).
 * If a newer SIMDe provides them, ours take precedence (we #undef and redefine), so behaviour does
 * not change with the SIMDe version. Any other _mm512_* intrinsic SIMDe lacks resolves to GCC's own
 * AVX-512 function and fails to compile ("target specific option mismatch"): never silently native.
 */
#ifndef TWOPASS_TEST_EMULATED_IMMINTRIN_H
#define TWOPASS_TEST_EMULATED_IMMINTRIN_H

#if defined(__AVX512F__)
#error "the AVX-512 emulation must be compiled without -mavx512f (SIMDe would pass through to hardware)"
#endif

#include_next <immintrin.h>

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>

/* _cvtu32_mask16: the low 16 bits of a as a mask (KMOVW). */
static inline simde__mmask16 twopass_emu_cvtu32_mask16(unsigned int a)
{
    return (simde__mmask16)(a & 0xFFFFu);
}

/* _mm512_maskz_loadu_ps: lanes whose mask bit is set are loaded, the others are +0.0. Masked-off
 * lanes are never read (hardware suppresses their faults), so a read past the end of an array is
 * only possible through an unmasked load, which the guard-page test catches. */
static inline simde__m512 twopass_emu_mm512_maskz_loadu_ps(simde__mmask16 k, const void* p)
{
    float lanes[16];
    const float* src = (const float*)p;
    for (int i = 0; i < 16; i++) {
        lanes[i] = 0.0f;
        if ((k >> i) & 1) {
            memcpy(&lanes[i], src + i, sizeof(float));
        }
    }
    return simde_mm512_loadu_ps(lanes);
}

/* _mm512_mask_storeu_ps: only lanes whose mask bit is set are written. */
static inline void twopass_emu_mm512_mask_storeu_ps(void* p, simde__mmask16 k, simde__m512 a)
{
    float lanes[16];
    float* dst = (float*)p;
    simde_mm512_storeu_ps(lanes, a);
    for (int i = 0; i < 16; i++) {
        if ((k >> i) & 1) {
            memcpy(dst + i, &lanes[i], sizeof(float));
        }
    }
}

/* MAXPS on one lane: the second operand unless the first is greater (so a NaN in either operand
 * gives the second operand, and max(-0, +0) gives +0). */
static inline float twopass_emu_maxps_lane(float a, float b)
{
    return a > b ? a : b;
}

/* _mm512_reduce_max_ps / _mm512_reduce_add_ps in GCC's order: upper 256 op lower 256, then upper
 * 128 op lower 128, then lanes {0,1,2,3} op {2,3,0,1}, then (max) lanes op {1,0,1,0} and lane 0,
 * or (add) lane 0 + lane 1. The order decides the rounding of the sum and which NaN max returns. */
static inline float twopass_emu_mm512_reduce_max_ps(simde__m512 a)
{
    float v[16], h[8], q[4], r[4];
    simde_mm512_storeu_ps(v, a);
    for (int i = 0; i < 8; i++) h[i] = twopass_emu_maxps_lane(v[8 + i], v[i]);
    for (int i = 0; i < 4; i++) q[i] = twopass_emu_maxps_lane(h[4 + i], h[i]);
    for (int i = 0; i < 4; i++) r[i] = twopass_emu_maxps_lane(q[i], q[i ^ 2]);
    return twopass_emu_maxps_lane(r[0], r[1]);
}

static inline float twopass_emu_mm512_reduce_add_ps(simde__m512 a)
{
    float v[16], h[8], q[4], r[2];
    simde_mm512_storeu_ps(v, a);
    for (int i = 0; i < 8; i++) h[i] = v[8 + i] + v[i];
    for (int i = 0; i < 4; i++) q[i] = h[4 + i] + h[i];
    for (int i = 0; i < 2; i++) r[i] = q[i] + q[i + 2];
    return r[0] + r[1];
}

/* _mm512_stream_ps (VMOVNTPS): a store of 16 floats that bypasses the caches; the address must be
 * 64-byte aligned, or the instruction faults (#GP), so a misaligned one aborts here too. The cache
 * hint has no observable effect on the values stored. */
static inline void twopass_emu_mm512_stream_ps(void* p, simde__m512 a)
{
    if (((uintptr_t)p & 63) != 0) {
        __builtin_trap();
    }
    simde_mm512_storeu_ps(p, a);
}

#undef _mm512_stream_ps
#define _mm512_stream_ps(p, a) twopass_emu_mm512_stream_ps(p, a)

/* _mm512_scalef_ps and _pd (VSCALEFPS/PD): a * 2^floor(b), rounded once, with the special cases of
 * the Intel SDM's table (checked on an AVX-512 CPU), at MXCSR.DAZ = 0. SIMDe 0.7.4 computes
 * a * exp2(floor(b)) instead, which loses every product whose power of two is not a normal number,
 * such as 2^26 * 2^-131 (float32 kernels with the max's exponent folded into the polynomial,
 * instantiate.h) or 1000 * 2^-1030 (a float64 sum's mantissa), and flushes subnormal a and negative
 * subnormal b. One lane, in double: a_snan says whether a was a signalling NaN of its own type. The
 * float32 caller rounds the result to float once more, which is its only rounding wherever that
 * result is not 0: a float times 2^k is exact in double down to 2^-1051. scalbn, like the hardware,
 * gives 0 for a result below the smallest normal under MXCSR.FTZ. */
static inline double twopass_emu_scalef_lane(double a, int a_snan, double b)
{
    if (a != a) {                         /* QNaN(a); a quiet NaN with b = +-inf gives +inf, +0 */
        return a_snan ? a + 0.0 : b == INFINITY ? INFINITY : b == -INFINITY ? 0.0 : a;
    }
    if (b != b) return b + 0.0;           /* QNaN(b) */
    if (a == INFINITY || a == -INFINITY) return b == -INFINITY ? -NAN : a; /* -NAN: QNaN indefinite */
    if (a == 0.0) return b == INFINITY ? -NAN : a;
    if (b == INFINITY || b == -INFINITY) return b > 0 ? copysign(INFINITY, a) : copysign(0.0, a);
    const double k = floor(b);
    return scalbn(a, k < -2200.0 ? -2200 : k > 2200.0 ? 2200 : (int)k); /* beyond: 0 or inf */
}

/* All lanes of one vector (is_double: 8 doubles, else 16 floats; a, b, out point at 64 bytes). */
static inline void twopass_emu_scalef_lanes(int is_double, const void* a, const void* b, void* out)
{
    for (int i = 0; i < (is_double ? 8 : 16); i++) {
        double x, e, r;
        int snan;
        if (is_double) {
            uint64_t bits;
            memcpy(&x, (const char*)a + 8 * i, 8), memcpy(&e, (const char*)b + 8 * i, 8), memcpy(&bits, &x, 8);
            snan = (bits & 0x7FF8000000000000u) == 0x7FF0000000000000u && (bits & 0x0007FFFFFFFFFFFFu) != 0;
            r = twopass_emu_scalef_lane(x, snan, e);
            memcpy((char*)out + 8 * i, &r, 8);
        } else {
            float xf, ef;
            uint32_t bits;
            memcpy(&xf, (const char*)a + 4 * i, 4), memcpy(&ef, (const char*)b + 4 * i, 4), memcpy(&bits, &xf, 4);
            snan = (bits & 0x7FC00000u) == 0x7F800000u && (bits & 0x003FFFFFu) != 0;
            const float rf = (float)twopass_emu_scalef_lane(xf, snan, ef);
            memcpy((char*)out + 4 * i, &rf, 4);
        }
    }
}
static inline simde__m512 twopass_emu_mm512_scalef_ps(simde__m512 a, simde__m512 b)
{
    simde__m512 out;
    twopass_emu_scalef_lanes(0, &a, &b, &out);
    return out;
}
static inline simde__m512d twopass_emu_mm512_scalef_pd(simde__m512d a, simde__m512d b)
{
    simde__m512d out;
    twopass_emu_scalef_lanes(1, &a, &b, &out);
    return out;
}

#undef _mm512_scalef_ps
#define _mm512_scalef_ps(a, b) twopass_emu_mm512_scalef_ps(a, b)
#undef _mm512_scalef_pd
#define _mm512_scalef_pd(a, b) twopass_emu_mm512_scalef_pd(a, b)

/* The float64 counterparts: _mm512_maskz_loadu_pd, _mm512_mask_storeu_pd (8 lanes, the same
 * semantics as the ps versions), and _mm512_reduce_max_pd / _mm512_reduce_add_pd in GCC's order:
 * upper 256 op lower 256, then upper 128 op lower 128, then lane 0 op lane 1 (max: max(q0, q1),
 * which gives q1 when either is NaN; add: q0 + q1). */
static inline simde__m512d twopass_emu_mm512_maskz_loadu_pd(simde__mmask8 k, const void* p)
{
    double lanes[8];
    const double* src = (const double*)p;
    for (int i = 0; i < 8; i++) {
        lanes[i] = 0.0;
        if ((k >> i) & 1) {
            memcpy(&lanes[i], src + i, sizeof(double));
        }
    }
    return simde_mm512_loadu_pd(lanes);
}

static inline void twopass_emu_mm512_mask_storeu_pd(void* p, simde__mmask8 k, simde__m512d a)
{
    double lanes[8];
    double* dst = (double*)p;
    simde_mm512_storeu_pd(lanes, a);
    for (int i = 0; i < 8; i++) {
        if ((k >> i) & 1) {
            memcpy(dst + i, &lanes[i], sizeof(double));
        }
    }
}

/* MAXPD on one lane, as MAXPS. */
static inline double twopass_emu_maxpd_lane(double a, double b)
{
    return a > b ? a : b;
}

static inline double twopass_emu_mm512_reduce_max_pd(simde__m512d a)
{
    double v[8], h[4], q[2];
    simde_mm512_storeu_pd(v, a);
    for (int i = 0; i < 4; i++) h[i] = twopass_emu_maxpd_lane(v[4 + i], v[i]);
    for (int i = 0; i < 2; i++) q[i] = twopass_emu_maxpd_lane(h[2 + i], h[i]);
    return twopass_emu_maxpd_lane(q[0], q[1]);
}

static inline double twopass_emu_mm512_reduce_add_pd(simde__m512d a)
{
    double v[8], h[4], q[2];
    simde_mm512_storeu_pd(v, a);
    for (int i = 0; i < 4; i++) h[i] = v[4 + i] + v[i];
    for (int i = 0; i < 2; i++) q[i] = h[2 + i] + h[i];
    return q[0] + q[1];
}

#undef _mm512_maskz_loadu_pd
#define _mm512_maskz_loadu_pd(k, p) twopass_emu_mm512_maskz_loadu_pd(k, p)
#undef _mm512_mask_storeu_pd
#define _mm512_mask_storeu_pd(p, k, a) twopass_emu_mm512_mask_storeu_pd(p, k, a)
#undef _mm512_reduce_max_pd
#define _mm512_reduce_max_pd(a) twopass_emu_mm512_reduce_max_pd(a)
#undef _mm512_reduce_add_pd
#define _mm512_reduce_add_pd(a) twopass_emu_mm512_reduce_add_pd(a)
/* _mm512_stream_pd (VMOVNTPD): as _mm512_stream_ps, 8 doubles, 64-byte aligned or a fault. */
static inline void twopass_emu_mm512_stream_pd(void* p, simde__m512d a)
{
    if (((uintptr_t)p & 63) != 0) {
        __builtin_trap();
    }
    simde_mm512_storeu_pd(p, a);
}

#undef _mm512_stream_pd
#define _mm512_stream_pd(p, a) twopass_emu_mm512_stream_pd(p, a)
/* _mm512_cvtph_ps (VCVTPH2PS): 16 halves to 16 floats, exactly; and _mm512_cvtps_ph (VCVTPS2PH):
 * 16 floats to halves, rounded as the immediate says. Each is done as two 8-lane F16C conversions
 * (native here: the emulated files are compiled with -mf16c), which compute the same per lane. The
 * kernels only round to nearest (ties to even) with exceptions suppressed; any other immediate traps,
 * so an untested rounding mode cannot pass unnoticed. */
static inline simde__m512 twopass_emu_mm512_cvtph_ps(__m256i a)
{
    float lanes[16];
    _mm256_storeu_ps(lanes, _mm256_cvtph_ps(_mm256_castsi256_si128(a)));
    _mm256_storeu_ps(lanes + 8, _mm256_cvtph_ps(_mm256_extracti128_si256(a, 1)));
    return simde_mm512_loadu_ps(lanes);
}

static inline __m256i twopass_emu_mm512_cvtps_ph(simde__m512 a, int rounding)
{
    float lanes[16];
    if (rounding != (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)) {
        __builtin_trap();
    }
    simde_mm512_storeu_ps(lanes, a);
    const __m128i lo = _mm256_cvtps_ph(_mm256_loadu_ps(lanes), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m128i hi = _mm256_cvtps_ph(_mm256_loadu_ps(lanes + 8), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm256_set_m128i(hi, lo);
}

#undef _mm512_cvtph_ps
#define _mm512_cvtph_ps(a) twopass_emu_mm512_cvtph_ps(a)
#undef _mm512_cvtps_ph
#define _mm512_cvtps_ph(a, rounding) twopass_emu_mm512_cvtps_ph(a, rounding)
#undef _cvtu32_mask16
#define _cvtu32_mask16(a) twopass_emu_cvtu32_mask16(a)
#undef _mm512_maskz_loadu_ps
#define _mm512_maskz_loadu_ps(k, p) twopass_emu_mm512_maskz_loadu_ps(k, p)
#undef _mm512_mask_storeu_ps
#define _mm512_mask_storeu_ps(p, k, a) twopass_emu_mm512_mask_storeu_ps(p, k, a)
#undef _mm512_reduce_max_ps
#define _mm512_reduce_max_ps(a) twopass_emu_mm512_reduce_max_ps(a)
#undef _mm512_reduce_add_ps
#define _mm512_reduce_add_ps(a) twopass_emu_mm512_reduce_add_ps(a)

#endif /* TWOPASS_TEST_EMULATED_IMMINTRIN_H */
