/* Shared definitions of the twopass kernels: compiler helpers and the constants of exp.
 *
 * The constants are facts from Dukhan and Ablavatski, "The Two-Pass Softmax Algorithm" (2020):
 * exp(x) = 2^n * e^t with n = round(x * log2(e)) and t = x - n * ln2 (|t| <= ln2/2), the reduction
 * done in two FMA steps with ln2 = LN2_HI - LN2_LO (Cody-Waite), and e^t approximated by a
 * degree-5 minimax polynomial on [-ln2/2, ln2/2] (at most about 2 ULP over the float range).
 */
#ifndef TWOPASS_COMMON_H
#define TWOPASS_COMMON_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)
#define TWOPASS_INLINE static inline __attribute__((always_inline))
#else
#define TWOPASS_INLINE static inline
#endif

/* Unrolled loops over the vectors and accumulators of one iteration; the bounds are constants
 * once a kernel variant is instantiated, so the compiler turns arrays of vectors into registers. */
#define TWOPASS_UNROLL _Pragma("GCC unroll 32")
/* The short-rows kernels unroll their rows' vectors too (1.05-1.15x on rows of 64-128 floats). The
 * emulated AVX-512 test build defines it empty: the same arithmetic, compiled 2-3x faster through
 * SIMDe (tests/emulated_avx512.py). */
#ifndef TWOPASS_SHORT_ROWS_UNROLL
#define TWOPASS_SHORT_ROWS_UNROLL TWOPASS_UNROLL
#endif

/* Most accumulators any variant may use (these bound the arrays of the kernel templates). */
#define TWOPASS_MAX_ACC 8
/* Most vectors any reduction variant may process per main-loop iteration. */
#define TWOPASS_MAX_VECTORS 16
/* Bound on the unroll U of the elementwise and columns variants (the columns kernels take any width;
 * their U only names them). */
#define TWOPASS_MAX_COLUMNS 256

/* The exp passes prefetch their input twopass_prefetch_ahead bytes ahead of the main loop, a line at
 * a time, one main-loop iteration's worth (a prefetch never faults, past the end included). Out of
 * cache their exp work fills the out-of-order window, which then reaches too few lines ahead to keep
 * the memory busy. The distance depends on the CPU (twopass_tune_for_cpu, dispatch.c):
 * - 8 KiB, except on Intel. Zen 3, 6.4e7 float32 on AVX2: pass 1 alone 1.24x on 1 thread and 1.22x
 *   on 2, the whole two-pass softmax 1.28x and 1.09x; 16 KiB ahead gained no more.
 * - 2 KiB on Intel. On the Xeon of family 6 model 167, 4 KiB or more made the DRAM speed of a pass
 *   swing with its loop's shape (avx512f pass 1 at 6.4e7: u128 0.25-0.29, u64 0.35, u192 0.48 ns per
 *   element with 8 KiB; 0.21-0.25 for all three with 2 KiB or none; the read loop 0.25), and made the
 *   non-temporal passes 1.5x slower (pass 2 alone: avx512f 0.50 against 0.32, avx2 0.49 against
 *   0.32; the non-temporal copy 0.30): prefetches that far ahead wait on DRAM in the fill buffers that
 *   the streamed stores need too. */
#define TWOPASS_PREFETCH_AHEAD 8192
#define TWOPASS_PREFETCH_AHEAD_INTEL 2048
extern size_t twopass_prefetch_ahead;
#define TWOPASS_PREFETCH_ITERATION(p, bytes)                                                       \
    TWOPASS_UNROLL for (size_t pf_ = 0; pf_ < (bytes); pf_ += 64)                                  \
        __builtin_prefetch((const void*)((uintptr_t)(p) + twopass_prefetch_ahead + pf_), 0, 3)

/* 4K aliasing: a load waits for an earlier store whose address is the same modulo 4096 until that
 * store's full address is known to differ, and a streamed store leaves late. An elementwise pass
 * whose y lies 1-128 bytes past x modulo 4096 meets it on every vector, loading x where it has just
 * stored y: on Zen 3 out of cache, two-pass took 0.74-0.75 ns per element at 16-32 bytes and
 * recompute 0.89-0.94, against 0.55 and 0.71 at 0 or 1024 (benchmarks.aliasing). Such passes load x
 * one iteration ahead of their stores instead (vscale_impl); at other distances that costs about
 * 5%, so they keep the plain loop there. Fresh results are placed away from the window
 * (output_cache.h). */
#define TWOPASS_ALIAS_WINDOW 128
static inline int twopass_stores_alias_next_loads(const void* x, const void* y)
{
    const uintptr_t d = ((uintptr_t)y - (uintptr_t)x) & 4095;
    return d != 0 && d <= TWOPASS_ALIAS_WINDOW;
}

/* What an elementwise pass on x computes (the MODE constant of the vscale_impl template). */
#define TWOPASS_MODE_EXP 1 /* y = min(1, exp(x - shift) * 2^-exponent * scale) */
#define TWOPASS_MODE_SUB 2 /* y = min(0, (x - shift) - exponent): a constant given as hi + lo parts */

#define TWOPASS_F32_LOG2E 0x1.715476p+0f
#define TWOPASS_F32_MINUS_LN2_HI -0x1.62E43p-1f
#define TWOPASS_F32_LN2_LO 0x1.05C61p-29f
#define TWOPASS_F32_EXP_C1 0x1.FFFFF6p-1f
#define TWOPASS_F32_EXP_C2 0x1.FFFDC6p-2f
#define TWOPASS_F32_EXP_C3 0x1.555A80p-3f
#define TWOPASS_F32_EXP_C4 0x1.573A1Ap-5f
#define TWOPASS_F32_EXP_C5 0x1.0F9F9Cp-7f
/* e^t ~ 1 + t + C2 t^2 + C3 t^3 on |t| <= ln2/16 (the table exp of f32_exp_avx2.h): minimax relative
 * error with the linear term fixed at 1, then the float coefficients nearest it searched: 2.6e-8. */
#define TWOPASS_F32_EXP8_C2 0x1.000874p-1f
#define TWOPASS_F32_EXP8_C3 0x1.55565Ep-3f
/* Its clamp (f32_exp_avx2.h): x - shift >= (exponent - EXP8_CLAMP) ln2, which rounds to the table's
 * lowest normal power 2^-126 with t ~ -ln2/32, a result below 2^-126. */
#define TWOPASS_F32_EXP8_CLAMP 126.03125f
/* Rounding by the magic number: for v = x * log2e and an integral b with |v + b| < 2^22, the sum
 * 0x1.8p23 + b + v lies in [2^23, 2^24), where floats are the integers, so fma(x, log2e, 0x1.8p23 + b)
 * = 0x1.8p23 + b + n with n = round(x * log2e) (one rounding, ties to even): its low mantissa bits
 * hold n + b and subtracting the constant gives n exactly. Saves a separate multiply and the
 * rounding instruction (VROUNDPS, VRNDSCALEPS: 2 uops each on Intel), in every float32 exp. */
#define TWOPASS_F32_MAGIC 0x1.8p23f

/* Extended exponent. AVX-512F: inputs are clamped below at -2^22, which turns -inf into a finite
 * input whose term vanishes; n = round(x * log2(e)) is computed in float32 by the magic-number
 * rounding fma(x, log2e, 0x1.8p23) - 0x1.8p23 (TWOPASS_F32_MAGIC above: exact for
 * |x * log2(e)| < 2^22, half-integral below that down to the clamp, where terms vanish). AVX2 adds
 * exp(x) 2^-e by its table exp, with an exponent e per lane that no term exceeds by more than 65
 * binades and whose exp clamps x (src/avx2/kernels_avx2.h), so it needs no clamp of its own. On both
 * levels the limit below keeps the 2^17 of the earlier round(float32(x * log2(e))), whose reduced t
 * stayed within the polynomial's interval only while |x * log2(e)| < 2^17 (float32 spacing 2^-6
 * there; the AVX2 clamp's constants are checked up to it, tests/test_kernels.py). The two-pass
 * result is therefore used only when the slice's largest exponent lies within
 * +-TWOPASS_EXTEXP_EXPONENT_LIMIT = 2^17 (|max x| < ~90850): every element within 104 of the max is
 * then reduced accurately, and every element further down (clamped or not) contributes nothing.
 * Slices outside that range (or with NaN or +inf) are computed by the three-pass algorithm, whose
 * exp(x - max) subtracts the max itself when |max| > TWOPASS_EXP_SHIFT_LIMIT = 2^16 (then x - max
 * is exact for every x within 104 of it, by Sterbenz's lemma, and the others give 0). */
#define TWOPASS_F32_EXTEXP_X_MIN -0x1.0p+22f
#define TWOPASS_EXTEXP_EXPONENT_LIMIT 0x1.0p+17
#define TWOPASS_EXP_SHIFT_LIMIT 0x1.0p+16f

/* float64 exp, in f64_exp_avx2.h and f64_exp_avx512f.h.
 *
 * ln2 = LN2_HI + LN2_LO to 2^-110: LN2_HI = RN(ln2), LN2_LO = RN(ln2 - LN2_HI). With FMA,
 * t = fma(n, -LN2_HI, x) is exact (x and n*LN2_HI are multiples of 2^-54 whenever n != 0 and |t| < 1/2),
 * and the second step leaves an error of |n| * 2^-110 plus one rounding of t: about 2^-70 at the
 * |x| = 2^40 allowed here. LOG2E = RN(log2(e)).
 *
 * e^t ~ 1 + t + t^2 * (C2 + t*(C3 + ... + t*C11)): minimax relative error (Remez, then coefficients
 * rounded to double lowest first and the higher ones refitted) on |t| <= 0.3468, which covers ln2/2 =
 * 0.34657 plus the rounding of x * LOG2E for |x| up to 2^40. Relative error of the polynomial with
 * these double coefficients, exact arithmetic: 2^-57.9 (0.034 ULP).
 *
 * Plain exp: x is clamped to [EXP_X_MIN, EXP_X_MAX] = [-746, 710], beyond which exp(x) rounds to 0
 * (exp(-746) < 2^-1075) or overflows (exp(710) > DBL_MAX); NaN passes through.
 *
 * Extended exponent: inputs are clamped below at EXTEXP_X_MIN = -2^40 (turns -inf into a finite input
 * whose term vanishes: its n ~ -1.59e12). p stays within 1 ULP for |x| up to 2^45 (measured; beyond,
 * the rounding of x * LOG2E pushes t out of the fitted interval: 1.1 ULP at 2^46, 8 ULP at 2^48), so
 * the two-pass result can be trusted while the slice's largest exponent lies within
 * +-F64_EXTEXP_EXPONENT_LIMIT = 2^38 (|max x| < 1.9e11): every element within 745 of the max is then
 * reduced accurately, and the clamped ones (n ~ -2^40.5) lie more than 1075 binades below it. Outside, three-pass subtracts the max itself when
 * |max| > F64_EXP_SHIFT_LIMIT = 2^37 (x - max is exact for x within 745 of it, by Sterbenz's lemma). */
#define TWOPASS_F64_LOG2E 0x1.71547652B82FEp+0
#define TWOPASS_F64_MINUS_LN2_HI -0x1.62E42FEFA39EFp-1
#define TWOPASS_F64_MINUS_LN2_LO -0x1.ABC9E3B39803Fp-56
#define TWOPASS_F64_EXP_C2 0x1.000000000000Ap-1
#define TWOPASS_F64_EXP_C3 0x1.5555555555501p-3
#define TWOPASS_F64_EXP_C4 0x1.55555555505FAp-5
#define TWOPASS_F64_EXP_C5 0x1.111111112561Cp-7
#define TWOPASS_F64_EXP_C6 0x1.6C16C184B9C55p-10
#define TWOPASS_F64_EXP_C7 0x1.A01A013A0EA23p-13
#define TWOPASS_F64_EXP_C8 0x1.A019987D5BF08p-16
#define TWOPASS_F64_EXP_C9 0x1.71DEFBD1E59D6p-19
#define TWOPASS_F64_EXP_C10 0x1.28AEEC1C4C73Fp-22
#define TWOPASS_F64_EXP_C11 0x1.ADCB116BB27B6p-26
#define TWOPASS_F64_EXP_X_MIN -0x1.75p+9
#define TWOPASS_F64_EXP_X_MAX 0x1.63p+9
#define TWOPASS_F64_EXTEXP_X_MIN -0x1.0p+40
#define TWOPASS_F64_EXTEXP_EXPONENT_LIMIT 0x1.0p+38
#define TWOPASS_F64_EXP_SHIFT_LIMIT 0x1.0p+37

/* exp(x - max) = exp(x - shift) * 2^-exponent with max = shift + exponent ln2 (kernels.h). Usually
 * shift = 0 and exponent = round(max log2(e)): exp(x - max) ~ exp(x) 2^-exponent is computed without
 * subtracting at all, every term at most exp(ln2/2) ~ 1.42. For |max| beyond the shift limit, shift
 * = max and exponent = 0: x - max is then exact wherever exp(x - max) is not 0. A NaN or infinite max
 * gives NaN sums, as it should. Shared by the drivers (softmax_template.h) and the short-rows kernels
 * (instantiate.h); TWOPASS_EXP_SPLIT picks the dtype's by the type of max. */
static inline void twopass_f32_exp_split(float max, float* shift, float* exponent)
{
    if (fabsf(max) <= TWOPASS_EXP_SHIFT_LIMIT) {
        *shift = 0, *exponent = nearbyintf(max * TWOPASS_F32_LOG2E);
    } else {
        *shift = max, *exponent = 0;
    }
}
static inline void twopass_f64_exp_split(double max, double* shift, double* exponent)
{
    if (fabs(max) <= TWOPASS_F64_EXP_SHIFT_LIMIT) {
        *shift = 0, *exponent = nearbyint(max * TWOPASS_F64_LOG2E);
    } else {
        *shift = max, *exponent = 0;
    }
}
#define TWOPASS_EXP_SPLIT(max, shift, exponent)                                                    \
    _Generic((max), float: twopass_f32_exp_split, double: twopass_f64_exp_split)(max, shift, exponent)

#endif /* TWOPASS_COMMON_H */
