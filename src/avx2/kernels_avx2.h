/* The AVX2 + FMA templates of every pass, for one dtype: included by f32_kernels_avx2.c,
 * f64_kernels_avx2.c and f16_kernels_avx2.c, which define the arithmetic type T (and T_MAX), the
 * vector type VEC of VLEN lanes, MASK (__m256i) and ALL_LANES (an all-ones lane mask), V(op) (the
 * _mm256_<op>_ps or _pd intrinsic), EXP(name) (the dtype's core from f32_exp_avx2.h or
 * f64_exp_avx2.h) with its per-exponent constants EXP_CONSTANTS, its EXP_LOG2E, EXP_LN2 and
 * EXTEXP_LIMIT (two-pass's exponent range, common.h), and the horizontal
 * HMAX and HSUM; and, when the elements in memory are not of type T (float16), the element type ELEM
 * and its vector accesses LOAD, LOAD_PART, STORE, STORE_PART and STREAM (below: their meaning).
 * Reload's stored exps are of type T whatever ELEM is (float16 keeps them in float32, so its result
 * is rounded once): LOAD_T, STORE_T and their _PART.
 *
 * Each pass is one template (an always-inline function whose unroll U and accumulator count ACC are
 * constants once instantiated). Main loop: U elements (U/VLEN vectors) per iteration, vector j
 * feeding accumulator j % ACC; then whole vectors; then one masked vector for the last n % VLEN
 * elements (maskload/maskstore never touch memory past the end).
 */
#ifndef ELEM
#define ELEM T
/* One vector of VLEN elements at p; the first `count` of them (the lanes set in mask), 0 in the
 * other lanes, touching no memory past them; stores of all lanes or of the first `count`; a
 * non-temporal store to an address aligned to VLEN elements. */
#define LOAD(p) V(loadu)(p)
#define LOAD_PART(p, mask, count) V(maskload)(p, mask)
#define STORE(p, v) V(storeu)(p, v)
#define STORE_PART(p, mask, count, v) V(maskstore)(p, mask, v)
#define STREAM(p, v) V(stream)(p, v)
#endif
#define LOAD_T(p) V(loadu)(p)
#define LOAD_T_PART(p, mask) V(maskload)(p, mask)
#define STORE_T(p, v) V(storeu)(p, v)
#define STORE_T_PART(p, mask, v) V(maskstore)(p, mask, v)
#include "../result_bounds.h"

/* The first `count` elements at x (the lanes of mask), `fill` in the others; nothing read past them. */
TWOPASS_INLINE VEC load_tail(const ELEM* x, __m256i mask, size_t count, VEC fill)
{
    (void)count;
    return V(blendv)(fill, LOAD_PART(x, mask, count), V(castsi256)(mask));
}

/* max x, NaN if any x is NaN. VMAXPS returns its second operand where either is NaN, so a NaN that
 * reached an accumulator is lost to the next number there: the lanes that have seen only numbers are
 * tracked apart (one ordered-compare per pair of vectors, ANDed into a lane mask per accumulator). */
TWOPASS_INLINE T rmax_impl(size_t n, const ELEM* x, const size_t U, const size_t ACC)
{
    const size_t NV = U / VLEN;
    VEC vmax[TWOPASS_MAX_ACC], numbers[TWOPASS_MAX_ACC];
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) {
        vmax[k] = V(set1)(-INFINITY), numbers[k] = V(castsi256)(ALL_LANES);
    }
    for (; n >= U; n -= U, x += U) {
        VEC v[TWOPASS_MAX_VECTORS];
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) v[j] = LOAD(x + j * VLEN);
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) vmax[j % ACC] = V(max)(vmax[j % ACC], v[j]);
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j += 2) {
            const size_t k = j / 2 % ACC;
            numbers[k] = V(and)(numbers[k], V(cmp)(v[j], v[j + 1 < NV ? j + 1 : j], _CMP_ORD_Q));
        }
    }
    for (; n >= VLEN; n -= VLEN, x += VLEN) {
        const VEC v = LOAD(x);
        vmax[0] = V(max)(vmax[0], v);
        numbers[0] = V(and)(numbers[0], V(cmp)(v, v, _CMP_ORD_Q));
    }
    if (n != 0) {
        const VEC v = load_tail(x, EXP(tail_mask)(n), n, V(set1)(-INFINITY));
        vmax[0] = V(max)(vmax[0], v);
        numbers[0] = V(and)(numbers[0], V(cmp)(v, v, _CMP_ORD_Q));
    }
    TWOPASS_UNROLL for (size_t k = 1; k < ACC; k++) {
        vmax[0] = V(max)(vmax[0], vmax[k]);
        numbers[0] = V(and)(numbers[0], numbers[k]);
    }
    return V(movemask)(numbers[0]) == (1 << VLEN) - 1 ? HMAX(vmax[0]) : (T)NAN;
}

/* Two-pass's sum with an extended exponent: accumulators hold sum = acc * 2^e per lane, e one integral
 * exponent per lane shared by its ACC accumulators, and each x is added as exp(x) 2^-e by the exp of
 * exp_shifted with shift 0 (EXP(exp_times_pow2), its constants made when e changes): pass 2 then
 * computes each exp(x) 2^-E with the same steps. No rescaling while x <= (e + 64) ln2: the terms stay
 * below 2^66 and the sums of fewer than 2^62 of them finite. A larger x (rare: the first vector, or a
 * max that grows by 64 binades) first raises e to round(x log2e) and rescales the accumulators:
 * acc <- acc 2^(e - e'). e starts at the floor EXTEXP_FLOOR = -EXTEXP_LIMIT - 256: a lane whose
 * elements all lie below (floor + 64) ln2 keeps it, and its terms, 0 below 2^-126 (n < floor - 126),
 * lie 256 binades or more below any sum the drivers use (they take a slice whose largest exponent is
 * at least -EXTEXP_LIMIT, common.h). A block of nothing but such elements (or -inf) sums to 0, which
 * the drivers merge as an empty block (softmax_template.h). Above the floor e never exceeds the
 * largest n seen (+1 from the rounding), so no term that the old rescale-every-step update kept
 * (n - max >= -126) is lost.
 * Special values: -inf gives 0 (the exp's clamp). NaN keeps its term NaN and never raises e (an
 * ordered compare; as max's second operand it may also hide a larger x of its lane from the check,
 * whose term, added on the old e, is lost in the NaN sum anyway). +inf raises e to +inf: in float32
 * its constants make the lane's terms NaN, in float64 the lane's other terms 0 and its own NaN. */
#define EXTEXP_HEADROOM 64
#define EXTEXP_FLOOR (-EXTEXP_LIMIT - 256)
/* The largest x added on e without a raise: (e + 64) ln2. */
TWOPASS_INLINE VEC extexp_limit(VEC e)
{
    return V(mul)(V(add)(e, V(set1)(EXTEXP_HEADROOM)), V(set1)(EXP_LN2));
}
/* The rare step: lanes whose x exceed their limit raise e to max(e, round(x log2e)) (max keeps e
 * where the rounding is NaN) and rescale their accumulators, with the limit and constants that
 * follow from it. */
TWOPASS_INLINE void extexp_raise(VEC xmax, VEC* acc, const size_t ACC, VEC* e, VEC* limit, EXP_CONSTANTS* c)
{
    const VEC over = V(cmp)(xmax, *limit, _CMP_GT_OQ);
    if (V(movemask)(over) != 0) {
        const VEC n = V(round)(V(mul)(xmax, V(set1)(EXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const VEC e_new = V(blendv)(*e, V(max)(n, *e), over);
        TWOPASS_UNROLL for (size_t a = 0; a < ACC; a++) acc[a] = EXP(mul_exp2)(acc[a], V(sub)(*e, e_new));
        *e = e_new;
        *limit = extexp_limit(e_new);
        *c = EXP(exp_constants)(e_new);
    }
}
TWOPASS_INLINE void raddextexp_impl(size_t n, const ELEM* x, T* sum, const size_t U, const size_t ACC)
{
    const size_t NV = U / VLEN;
    VEC acc[TWOPASS_MAX_ACC];
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) acc[k] = V(setzero)();
    VEC e = V(set1)(EXTEXP_FLOOR);
    VEC limit = extexp_limit(e);
    EXP_CONSTANTS c = EXP(exp_constants)(e);
    for (; n >= U; n -= U, x += U) {
        TWOPASS_PREFETCH_ITERATION(x, U * sizeof(ELEM));
        VEC v[TWOPASS_MAX_VECTORS];
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) v[j] = LOAD(x + j * VLEN);
        VEC xmax = v[0];
        TWOPASS_UNROLL for (size_t j = 1; j < NV; j++) xmax = V(max)(xmax, v[j]);
        extexp_raise(xmax, acc, ACC, &e, &limit, &c);
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) acc[j % ACC] = V(add)(acc[j % ACC], EXP(exp_times_pow2)(v[j], c));
    }
    for (; n != 0;) {
        /* one vector at a time; the last one masked: its other lanes read -inf, which does not raise e,
         * and add 0 */
        const __m256i mask = n >= VLEN ? ALL_LANES : EXP(tail_mask)(n);
        const size_t step = n >= VLEN ? VLEN : n;
        const VEC v = load_tail(x, mask, step, V(set1)(-INFINITY));
        extexp_raise(v, acc, ACC, &e, &limit, &c);
        acc[0] = V(add)(acc[0], V(and)(EXP(exp_times_pow2)(v, c), V(castsi256)(mask)));
        n -= step, x += step;
    }
    /* Reduce the accumulators, then the lanes, to sum[0] * 2^sum[1] with sum[1] the largest e. sum[0]
     * is at least the largest term (about 2^-1 at least: e is at most the largest n + 1; 0 or less
     * for a block whose lanes all stayed at the floor) and below 2^75, not normalised: the drivers
     * merge blocks in double (a frexp per block here cost 3-4% of an in-cache pass). A NaN or
     * infinite total is returned as it is. */
    const T emax = HMAX(e);
    VEC total = V(setzero)();
    TWOPASS_UNROLL for (size_t a = 0; a < ACC; a++) total = V(add)(total, EXP(mul_exp2)(acc[a], V(sub)(e, V(set1)(emax))));
    sum[0] = HSUM(total);
    sum[1] = emax;
}

/* Online normaliser (Milakov and Gimelshein 2018), per lane and accumulator: a running max m and
 * d = sum exp(x - m); a larger max m' rescales d:  d <- d exp(m - m') + sum_j exp(x_j - m').
 * m starts at -T_MAX, so m - m' and x - m' are never inf - inf (an -inf x gives 0); NaN or +inf
 * make d NaN. result = (max, sum exp(x - max)). */
TWOPASS_INLINE void raddonline_impl(size_t n, const ELEM* x, T* result, const size_t U, const size_t ACC)
{
    const size_t NV = U / VLEN;
    const VEC zero = V(setzero)();
    VEC m[TWOPASS_MAX_ACC], d[TWOPASS_MAX_ACC];
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) {
        m[k] = V(set1)(-T_MAX);
        d[k] = zero;
    }
    for (; n >= U; n -= U, x += U) {
        TWOPASS_PREFETCH_ITERATION(x, U * sizeof(ELEM));
        VEC v[TWOPASS_MAX_VECTORS], mn[TWOPASS_MAX_ACC];
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) v[j] = LOAD(x + j * VLEN);
        TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) mn[k] = m[k];
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) mn[j % ACC] = V(max)(mn[j % ACC], v[j]);
        TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) d[k] = V(mul)(d[k], EXP(exp_shifted)(m[k], mn[k], zero));
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) {
            d[j % ACC] = V(add)(d[j % ACC], EXP(exp_shifted)(v[j], mn[j % ACC], zero));
        }
        TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) m[k] = mn[k];
    }
    for (; n != 0;) {
        /* one vector at a time; lanes past the end read as -inf, which changes neither m nor d */
        const __m256i mask = n >= VLEN ? ALL_LANES : EXP(tail_mask)(n);
        const size_t step = n >= VLEN ? VLEN : n;
        const VEC v = load_tail(x, mask, step, V(set1)(-INFINITY));
        const VEC mn = V(max)(m[0], v);
        d[0] = V(add)(V(mul)(d[0], EXP(exp_shifted)(m[0], mn, zero)), EXP(exp_shifted)(v, mn, zero));
        m[0] = mn;
        n -= step, x += step;
    }
    VEC mmax = m[0];
    TWOPASS_UNROLL for (size_t k = 1; k < ACC; k++) mmax = V(max)(mmax, m[k]);
    const T max = HMAX(mmax);
    VEC total = zero;
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) {
        total = V(add)(total, V(mul)(d[k], EXP(exp_shifted)(m[k], V(set1)(max), zero)));
    }
    result[0] = max;
    result[1] = HSUM(total);
}

/* Sum of e = exp(x - shift) * 2^-exponent * scale, optionally storing each e to w (STORE_W is a
 * constant; w of type T) and finding max x on the way (TRACK_MAX, a constant: *max; a NaN x may be
 * missing from it, but makes the sum NaN). The kernels pass scale 1, or 2^-exponent folded into it
 * (instantiate.h). */
TWOPASS_INLINE T raddexpminusmax_impl(size_t n, const ELEM* x, T* w, T* max, T shift, T exponent, T scale,
                                      const size_t U, const size_t ACC, const int STORE_W, const int TRACK_MAX)
{
    const size_t NV = U / VLEN;
    const VEC vshift = V(set1)(shift), vexponent = V(set1)(exponent), vscale = V(set1)(scale);
    VEC acc[TWOPASS_MAX_ACC], vmax = V(set1)(-INFINITY);
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) acc[k] = V(setzero)();
    for (; n >= U; n -= U, x += U, w += STORE_W ? U : 0) {
        TWOPASS_PREFETCH_ITERATION(x, U * sizeof(ELEM));
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) {
            const VEC xv = LOAD(x + j * VLEN);
            if (TRACK_MAX) vmax = V(max)(vmax, xv);
            const VEC v = EXP(exp_shifted_scaled)(xv, vshift, vexponent, vscale);
            if (STORE_W) STORE_T(w + j * VLEN, v);
            acc[j % ACC] = V(add)(acc[j % ACC], v);
        }
    }
    for (; n != 0;) {
        const __m256i mask = n >= VLEN ? ALL_LANES : EXP(tail_mask)(n);
        const size_t step = n >= VLEN ? VLEN : n;
        const VEC xv = LOAD_PART(x, mask, step);
        if (TRACK_MAX) vmax = V(max)(vmax, V(blendv)(V(set1)(-INFINITY), xv, V(castsi256)(mask)));
        VEC v = EXP(exp_shifted_scaled)(xv, vshift, vexponent, vscale);
        if (STORE_W) STORE_T_PART(w, mask, v);
        v = V(and)(v, V(castsi256)(mask)); /* lanes past the end add 0 */
        acc[0] = V(add)(acc[0], v);
        n -= step, x += step, w += STORE_W ? step : 0;
    }
    if (TRACK_MAX) *max = HMAX(vmax);
    TWOPASS_UNROLL for (size_t k = 1; k < ACC; k++) acc[0] = V(add)(acc[0], acc[k]);
    return HSUM(acc[0]);
}

TWOPASS_INLINE VEC apply_mode(VEC v, VEC vshift, VEC vexponent, VEC vscale, const int MODE)
{
    if (MODE == TWOPASS_MODE_SUB) return at_most_zero(V(sub)(V(sub)(v, vshift), vexponent));
    return at_most_one(EXP(exp_shifted_scaled)(v, vshift, vexponent, vscale));
}

#include "../vscale_main.h"

/* The elementwise passes on x (MODE is a constant, common.h): y = min(1, exp(x - shift) *
 * 2^-exponent * scale) (TWOPASS_MODE_EXP; two-pass's exp(x) * scale * 2^-exponent with shift 0),
 * y = min(0, (x - shift) - exponent) (TWOPASS_MODE_SUB).
 * NT (a constant): non-temporal stores, for outputs too large for the caches. They skip the read
 * of each line before it is written (write-allocate) and keep the input in cache; they need
 * addresses aligned to a whole vector (VLEN elements), so the elements before y's first such
 * boundary and the tail use masked ordinary stores. An sfence orders the streamed stores before anything that follows. */
TWOPASS_INLINE void vscale_impl(size_t n, const ELEM* x, ELEM* y, T shift, T exponent, T scale,
                                const size_t U, const int MODE, const int NT)
{
    if (MODE == TWOPASS_MODE_EXP && scale > 0 && scale < INFINITY) {
        /* scale = m * 2^k with m in [0.5, 1): 2^k joins the exponent, since the exp cores flush their
         * results below 2^-126 (float64 2^-1022), so with m >= 1/2 no product at or above 2^-125
         * (2^-1021) is 0 */
        int k;
        scale = (T)frexp(scale, &k);
        exponent -= (T)k;
    }
    const VEC vshift = V(set1)(shift), vexponent = V(set1)(exponent),
              vscale = V(set1)(scale);
    if (NT) {
        const uintptr_t vector_bytes = VLEN * sizeof(ELEM);
        size_t head = (((uintptr_t)0 - (uintptr_t)y) & (vector_bytes - 1)) / sizeof(ELEM); /* y is ELEM-aligned */
        head = head < n ? head : n;
        if (head != 0) {
            const __m256i mask = EXP(tail_mask)(head);
            STORE_PART(y, mask, head, apply_mode(LOAD_PART(x, mask, head), vshift, vexponent, vscale, MODE));
            n -= head, x += head, y += head;
        }
    }
    const size_t done = twopass_stores_alias_next_loads(x, y)
                            ? vscale_main(n, x, y, vshift, vexponent, vscale, U, MODE, NT, 1)
                            : vscale_main(n, x, y, vshift, vexponent, vscale, U, MODE, NT, 0);
    n -= done, x += done, y += done;
    for (; n != 0;) {
        const __m256i mask = n >= VLEN ? ALL_LANES : EXP(tail_mask)(n);
        const size_t step = n >= VLEN ? VLEN : n;
        const VEC v = apply_mode(LOAD_PART(x, mask, step), vshift, vexponent, vscale, MODE);
        if (NT && n >= VLEN) {
            STREAM(y, v);
        } else {
            STORE_PART(y, mask, step, v);
        }
        n -= step, x += step, y += step;
    }
    if (NT) {
        _mm_sfence();
    }
}

/* ---- Columns: lane j of vector v follows column VLEN v + j, one row at a time (rows ld apart). A
 * block is up to U columns wide (U/VLEN vectors, accumulators in L1), so each row is read as one long
 * contiguous piece: few TLB misses and whole cache lines, however far apart the rows are. ---- */

/* Vector v of row x of a block of `width` columns: whole, or masked if it is the last, partial one
 * (vmaskmov is slow on some CPUs, so only the partial vector uses it). */
TWOPASS_INLINE VEC column_load(const ELEM* x, size_t width, size_t v)
{
    const size_t lanes = width - v * VLEN;
    return lanes >= VLEN ? LOAD(x + v * VLEN) : LOAD_PART(x + v * VLEN, EXP(tail_mask)(lanes), lanes);
}

TWOPASS_INLINE void column_store(ELEM* y, size_t width, size_t v, VEC value)
{
    const size_t lanes = width - v * VLEN;
    if (lanes >= VLEN) {
        STORE(y + v * VLEN, value);
    } else {
        STORE_PART(y + v * VLEN, EXP(tail_mask)(lanes), lanes, value);
    }
}

/* The same for the per-column constants and results of a block, which are of type T. */
TWOPASS_INLINE VEC constants_load(const T* c, size_t width, size_t v)
{
    const size_t lanes = width - v * VLEN;
    return lanes >= VLEN ? V(loadu)(c + v * VLEN) : V(maskload)(c + v * VLEN, EXP(tail_mask)(lanes));
}

TWOPASS_INLINE void constants_store(T* c, size_t width, size_t v, VEC value)
{
    const size_t lanes = width - v * VLEN;
    if (lanes >= VLEN) {
        V(storeu)(c + v * VLEN, value);
    } else {
        V(maskstore)(c + v * VLEN, EXP(tail_mask)(lanes), value);
    }
}

/* Pass 1 down the columns of a block of `rows` rows, streamed row after row across all `width`
 * columns (long contiguous reads, which the prefetchers follow), with per-column state in the output
 * arrays while it runs: mantissa[j] = acc and exponent[j] = e, the column's sum being acc * 2^e, in
 * the lazy-rescaling form of raddextexp_impl: x is added as exp(x) 2^-e while x <= (e + 64) ln2; a
 * larger x (the first rows, or a column max that grows by 64 binades) first raises that lane's e,
 * acc <- acc * 2^(e - e'). Only the lanes over their limit are raised, so a column's sum never depends
 * on its neighbours (nor on where a block of columns starts). G = TWOPASS_COLUMN_ROW_GROUP rows per
 * update: one state load, limit check and store per G terms. The last, partial vector keeps its state
 * in registers. */
TWOPASS_INLINE void columns_add_rows(VEC* acc, VEC* e, const VEC* v, const size_t G)
{
    VEC xmax = v[0];
    TWOPASS_UNROLL for (size_t g = 1; g < G; g++) xmax = V(max)(xmax, v[g]);
    VEC limit = extexp_limit(*e);
    EXP_CONSTANTS c = EXP(exp_constants)(*e);
    extexp_raise(xmax, acc, 1, e, &limit, &c);
    VEC sum = *acc;
    TWOPASS_UNROLL for (size_t g = 0; g < G; g++) sum = V(add)(sum, EXP(exp_times_pow2)(v[g], c));
    *acc = sum;
}

TWOPASS_INLINE void raddextexp_columns_impl(size_t rows, size_t width, const ELEM* x, ptrdiff_t ld,
                                            T* mantissa, T* exponent, const size_t U)
{
    const size_t G = TWOPASS_COLUMN_ROW_GROUP, full = width / VLEN, tail = width % VLEN;
    (void)U;
    for (size_t v = 0; v < full; v++) {
        V(storeu)(mantissa + v * VLEN, V(setzero)());
        V(storeu)(exponent + v * VLEN, V(set1)(EXTEXP_FLOOR));
    }
    VEC tail_acc = V(setzero)(), tail_e = V(set1)(EXTEXP_FLOOR);
    size_t row = 0;
    for (; row + G <= rows; row += G, x += (ptrdiff_t)G * ld) {
        for (size_t v = 0; v < full; v++) {
            VEC xs[TWOPASS_COLUMN_MAX_ROWS];
            TWOPASS_UNROLL for (size_t g = 0; g < G; g++) xs[g] = LOAD(x + g * ld + v * VLEN);
            VEC acc = V(loadu)(mantissa + v * VLEN), e = V(loadu)(exponent + v * VLEN);
            columns_add_rows(&acc, &e, xs, G);
            V(storeu)(mantissa + v * VLEN, acc), V(storeu)(exponent + v * VLEN, e);
        }
        if (tail != 0) {
            /* the lanes past the width read 0: their sums are never stored */
            VEC xs[TWOPASS_COLUMN_MAX_ROWS];
            TWOPASS_UNROLL for (size_t g = 0; g < G; g++) xs[g] = column_load(x + g * ld, width, full);
            columns_add_rows(&tail_acc, &tail_e, xs, G);
        }
    }
    for (; row < rows; row++, x += ld) { /* the last rows % G, one at a time */
        for (size_t v = 0; v < full; v++) {
            VEC acc = V(loadu)(mantissa + v * VLEN), e = V(loadu)(exponent + v * VLEN);
            const VEC xs = LOAD(x + v * VLEN);
            columns_add_rows(&acc, &e, &xs, 1);
            V(storeu)(mantissa + v * VLEN, acc), V(storeu)(exponent + v * VLEN, e);
        }
        if (tail != 0) {
            const VEC xs = column_load(x, width, full);
            columns_add_rows(&tail_acc, &tail_e, &xs, 1);
        }
    }
    if (tail != 0) {
        constants_store(mantissa, width, full, tail_acc);
        constants_store(exponent, width, full, tail_e);
    }
}

/* Pass 2 on whole rows, row after row: y[r, j] = exp(x[r, j]) * a[j] * 2^-b[j] (softmax: exp_shifted
 * with shift 0 and a clamp at 1, as two-pass's pass 2 on rows, so each y follows its column's sum)
 * or min(0, (x[r, j] - a[j]) - b[j]) (LOG). NT (a constant): non-temporal stores as in
 * vscale_impl, each row's elements before y's first vector boundary and its tail through masked
 * ordinary stores. */
TWOPASS_INLINE VEC columns_pass2_op(VEC v, VEC a, VEC b, const int LOG)
{
    return LOG ? at_most_zero(V(sub)(V(sub)(v, a), b)) : at_most_one(EXP(exp_shifted_scaled)(v, V(setzero)(), b, a));
}

TWOPASS_INLINE void columns_pass2_impl(size_t rows, size_t width, const ELEM* x, ptrdiff_t x_ld, ELEM* y,
                                       ptrdiff_t y_ld, const T* a, const T* b, const int LOG, const int NT)
{
    for (size_t r = 0; r < rows; r++, x += x_ld, y += y_ld) {
        size_t c = 0;
        if (NT) {
            const uintptr_t vector_bytes = VLEN * sizeof(ELEM);
            size_t head = (((uintptr_t)0 - (uintptr_t)y) & (vector_bytes - 1)) / sizeof(ELEM); /* y is ELEM-aligned */
            head = head < width ? head : width;
            if (head != 0) {
                const __m256i mask = EXP(tail_mask)(head);
                STORE_PART(y, mask, head, columns_pass2_op(LOAD_PART(x, mask, head), V(maskload)(a, mask),
                                                           V(maskload)(b, mask), LOG));
                c = head;
            }
        }
        for (; c + VLEN <= width; c += VLEN) {
            const VEC v = columns_pass2_op(LOAD(x + c), V(loadu)(a + c), V(loadu)(b + c), LOG);
            if (NT) {
                STREAM(y + c, v);
            } else {
                STORE(y + c, v);
            }
        }
        if (c < width) {
            const size_t lanes = width - c;
            const __m256i mask = EXP(tail_mask)(lanes);
            STORE_PART(y + c, mask, lanes, columns_pass2_op(LOAD_PART(x + c, mask, lanes), V(maskload)(a + c, mask),
                                                            V(maskload)(b + c, mask), LOG));
        }
    }
    if (NT) {
        _mm_sfence();
    }
}

TWOPASS_INLINE void vscaleextexp_columns_impl(size_t rows, size_t width, const ELEM* x, ptrdiff_t x_ld,
                                              ELEM* y, ptrdiff_t y_ld, const T* scale,
                                              const T* exponent, const size_t U, const int NT)
{
    (void)U;
    columns_pass2_impl(rows, width, x, x_ld, y, y_ld, scale, exponent, 0, NT);
}

/* y[r, j] = min(0, (x[r, j] - c_hi[j]) - c_lo[j]): log_softmax down the columns. */
TWOPASS_INLINE void vsubc_columns_impl(size_t rows, size_t width, const ELEM* x, ptrdiff_t x_ld, ELEM* y,
                                       ptrdiff_t y_ld, const T* c_hi, const T* c_lo, const size_t U,
                                       const int NT)
{
    (void)U;
    columns_pass2_impl(rows, width, x, x_ld, y, y_ld, c_hi, c_lo, 1, NT);
}

/* ---- Short rows (softmax_short_rows, instantiate.h): one row of n elements in NV = ceil(n / VLEN)
 * vectors, NV a constant, the last one partial when n % VLEN != 0. ---- */

/* Lanes of vector v of a row of n elements that hold elements: all, or the first n % VLEN (as the
 * AVX-512F column_mask). */
TWOPASS_INLINE __m256i column_mask(size_t n, size_t v)
{
    const size_t lanes = n - v * VLEN;
    return lanes >= VLEN ? ALL_LANES : EXP(tail_mask)(lanes);
}

/* max x, NaN if any x is NaN (as rmax_impl; the max itself does not depend on the order). */
TWOPASS_INLINE T short_row_max(size_t n, const ELEM* x, const size_t NV)
{
    VEC v[TWOPASS_SHORT_ROWS_MAX_VECTORS];
    VEC numbers = V(castsi256)(ALL_LANES);
    TWOPASS_SHORT_ROWS_UNROLL for (size_t j = 0; j < NV; j++) {
        v[j] = column_load(x, n, j);
        numbers = V(and)(numbers, V(cmp)(v[j], v[j], _CMP_ORD_Q));
    }
    /* lanes past n */
    v[NV - 1] = V(blendv)(V(set1)(-INFINITY), v[NV - 1], V(castsi256)(column_mask(n, NV - 1)));
    TWOPASS_SHORT_ROWS_UNROLL for (size_t step = 1; step < NV; step *= 2) {
        TWOPASS_SHORT_ROWS_UNROLL for (size_t j = 0; j + step < NV; j += 2 * step) {
            v[j] = V(max)(v[j], v[j + step]);
        }
    }
    return V(movemask)(numbers) == (1 << VLEN) - 1 ? HMAX(v[0]) : (T)NAN;
}

/* acc + v in the lanes of vector j of a row of n elements, acc in the lanes past n. */
TWOPASS_INLINE VEC add_row_lanes(VEC acc, VEC v, size_t n, size_t j)
{
    return V(add)(acc, V(and)(v, V(castsi256)(column_mask(n, j))));
}
/* The sum of v's lanes. */
TWOPASS_INLINE T sum_lanes(VEC v)
{
    return HSUM(v);
}
