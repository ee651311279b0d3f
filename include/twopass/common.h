/* Shared definitions of the twopass kernels: compiler helpers and the constants of exp.
 *
 * The constants are facts from Dukhan and Ablavatski, "The Two-Pass Softmax Algorithm" (2020):
 * exp(x) = 2^n * e^t with n = round(x * log2(e)) and t = x - n * ln2 (|t| <= ln2/2), the reduction
 * done in two FMA steps with ln2 = LN2_HI - LN2_LO (Cody-Waite), and e^t approximated by a
 * degree-5 minimax polynomial on [-ln2/2, ln2/2] (at most about 2 ULP over the float range).
 */
#ifndef TWOPASS_COMMON_H
#define TWOPASS_COMMON_H

#include <stddef.h>

#if defined(__GNUC__) || defined(__clang__)
#define TWOPASS_INLINE static inline __attribute__((always_inline))
#else
#define TWOPASS_INLINE static inline
#endif

/* Unrolled loops over the vectors and accumulators of one iteration; the bounds are constants
 * once a kernel variant is instantiated, so the compiler turns arrays of vectors into registers. */
#define TWOPASS_UNROLL _Pragma("GCC unroll 32")

/* Most accumulators any variant may use (these bound the arrays of the kernel templates). */
#define TWOPASS_MAX_ACC 8
/* Most vectors any reduction variant may process per main-loop iteration. */
#define TWOPASS_MAX_VECTORS 16
/* Widest block of columns (floats) the *_columns kernels take (elementwise unrolls stay below it). */
#define TWOPASS_MAX_COLUMNS 256

/* What an elementwise pass computes (the MODE constant of the vscale template). */
#define TWOPASS_MODE_SCALE 0 /* y = x * scale */
#define TWOPASS_MODE_EXP 1   /* y = exp(x - shift) * 2^-exponent * scale */
#define TWOPASS_MODE_SUB 2   /* y = (x - shift) - exponent: a constant given as hi + lo parts */

#define TWOPASS_F32_LOG2E 0x1.715476p+0f
#define TWOPASS_F32_MINUS_LN2_HI -0x1.62E43p-1f
#define TWOPASS_F32_LN2_LO 0x1.05C61p-29f
#define TWOPASS_F32_EXP_C1 0x1.FFFFF6p-1f
#define TWOPASS_F32_EXP_C2 0x1.FFFDC6p-2f
#define TWOPASS_F32_EXP_C3 0x1.555A80p-3f
#define TWOPASS_F32_EXP_C4 0x1.573A1Ap-5f
#define TWOPASS_F32_EXP_C5 0x1.0F9F9Cp-7f

/* Extended exponent: inputs are clamped below at -2^22, which turns -inf into a finite input whose
 * term vanishes. n = round(x * log2(e)) is computed in float32, so the reduced t stays within the
 * polynomial's interval only while |x * log2(e)| < 2^17 (float32 spacing 2^-6 there). The two-pass
 * result is therefore used only when the slice's largest exponent lies within
 * +-TWOPASS_EXTEXP_EXPONENT_LIMIT = 2^17 (|max x| < ~90850): every element within 104 of the max is
 * then reduced accurately, and every element further down (clamped or not) contributes nothing.
 * Slices outside that range (or with NaN or +inf) are computed by the three-pass algorithm, whose
 * exp(x - max) subtracts the max itself when |max| > TWOPASS_EXP_SHIFT_LIMIT = 2^16 (then x - max
 * is exact for every x within 104 of it, by Sterbenz's lemma, and the others give 0). */
#define TWOPASS_F32_EXTEXP_X_MIN -0x1.0p+22f
#define TWOPASS_EXTEXP_EXPONENT_LIMIT 0x1.0p+17
#define TWOPASS_EXP_SHIFT_LIMIT 0x1.0p+16f

#endif /* TWOPASS_COMMON_H */
