/* The bounds of the results, for the per-ISA kernel headers (VEC and V() defined by the arithmetic
 * header before them). */
#ifndef TWOPASS_RESULT_BOUNDS_H
#define TWOPASS_RESULT_BOUNDS_H

/* softmax <= 1 and log_softmax <= 0, as SciPy's, whose max term exp(0) = 1 is exact. The rows passes
 * round their exps apart from the sum's terms (two-pass folds the scale into float32's polynomial;
 * recompute and online compute exp(x - shift) * 2^-exponent * scale), and log_softmax's logsumexp
 * can round below the max, so a result could land an ulp past its bound; these clamp it (min(c, v)
 * is v when v is NaN; float64's two-pass, which multiplies its p by the scale once, would not need
 * it). Reload needs none: its e_i * fl(1/sum) with e_i <= sum rounds to at most 1; nor does the
 * columns' softmax pass 2 (the same with pass 1's p). */
TWOPASS_INLINE VEC at_most_one(VEC v)
{
    return V(min)(V(set1)(1), v);
}

TWOPASS_INLINE VEC at_most_zero(VEC v)
{
    return V(min)(V(setzero)(), v);
}

#endif
