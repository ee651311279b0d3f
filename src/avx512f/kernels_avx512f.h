/* The AVX-512F templates of every pass, for one dtype: included by f32_kernels_avx512f.c,
 * f64_kernels_avx512f.c and f16_kernels_avx512f.c, which define the arithmetic type T (and T_MAX),
 * the vector type VEC of VLEN lanes, MASK (its __mmask type) and ALL_LANES, V(op) (the
 * _mm512_<op>_ps or _pd intrinsic), CMP_MASK (a compare into a MASK) and EXP(name) (the dtype's
 * core from f32_exp_avx512f.h or f64_exp_avx512f.h); and, when the elements in memory are not of
 * type T (float16), the element type ELEM and its vector accesses LOAD, LOAD_PART, STORE, STORE_PART
 * and STREAM (below: their meaning). Reload's stored exps are of type T whatever ELEM is (float16
 * keeps them in float32, so its result is rounded once): LOAD_T, STORE_T and their _PART.
 *
 * Each pass is one template (an always-inline function whose unroll U and accumulator count ACC are
 * constants once instantiated). Main loop: U elements (U/VLEN vectors) per iteration, vector j
 * feeding accumulator j % ACC; then whole vectors; then one masked vector for the last n % VLEN
 * elements (masked loads and stores never touch memory past the end).
 */
#ifndef ELEM
#define ELEM T
/* One vector of VLEN elements at p; the first `count` of them (the lanes set in mask), 0 in the
 * other lanes, touching no memory past them; stores of all lanes or of the first `count`; a
 * non-temporal store to an address aligned to VLEN elements. */
#define LOAD(p) V(loadu)(p)
#define LOAD_PART(p, mask, count) V(maskz_loadu)(mask, p)
#define STORE(p, v) V(storeu)(p, v)
#define STORE_PART(p, mask, count, v) V(mask_storeu)(p, mask, v)
#define STREAM(p, v) V(stream)(p, v)
#endif
#define LOAD_T(p) V(loadu)(p)
#define LOAD_T_PART(p, mask) V(maskz_loadu)(mask, p)
#define STORE_T(p, v) V(storeu)(p, v)
#define STORE_T_PART(p, mask, v) V(mask_storeu)(p, mask, v)
#include "../result_bounds.h"

/* max x, NaN if any x is NaN. VMAXPS returns its second operand where either is NaN, so a NaN that
 * reached an accumulator is lost to the next number there: the lanes that have seen only numbers are
 * tracked apart (one ordered-compare per pair of vectors, ANDed into a mask per accumulator). */
TWOPASS_INLINE T rmax_impl(size_t n, const ELEM* x, const size_t U, const size_t ACC)
{
    const size_t NV = U / VLEN;
    VEC vmax[TWOPASS_MAX_ACC];
    MASK numbers[TWOPASS_MAX_ACC];
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) vmax[k] = V(set1)(-INFINITY), numbers[k] = ALL_LANES;
    for (; n >= U; n -= U, x += U) {
        VEC v[TWOPASS_MAX_VECTORS];
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) v[j] = LOAD(x + j * VLEN);
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) vmax[j % ACC] = V(max)(vmax[j % ACC], v[j]);
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j += 2) {
            const size_t k = j / 2 % ACC;
            numbers[k] &= CMP_MASK(v[j], v[j + 1 < NV ? j + 1 : j], _CMP_ORD_Q);
        }
    }
    for (; n >= VLEN; n -= VLEN, x += VLEN) {
        const VEC v = LOAD(x);
        vmax[0] = V(max)(vmax[0], v);
        numbers[0] &= CMP_MASK(v, v, _CMP_ORD_Q);
    }
    if (n != 0) {
        const MASK mask = EXP(tail_mask)(n);
        const VEC v = LOAD_PART(x, mask, n); /* 0 in the lanes past the end */
        vmax[0] = V(mask_max)(vmax[0], mask, vmax[0], v);
        numbers[0] &= CMP_MASK(v, v, _CMP_ORD_Q);
    }
    TWOPASS_UNROLL for (size_t k = 1; k < ACC; k++) {
        vmax[0] = V(max)(vmax[0], vmax[k]);
        numbers[0] &= numbers[k];
    }
    return numbers[0] == ALL_LANES ? V(reduce_max)(vmax[0]) : (T)NAN;
}

/* Accumulators hold sum = acc_p * 2^acc_n per lane. Adding terms p_j * 2^n_j:
 *   e = max(acc_n, n_j...);  acc_p = acc_p * 2^(acc_n - e) + sum_j p_j * 2^(n_j - e);  acc_n = e.
 * Scaling by 2^(negative) is exact, or flushes to 0 a term below the smallest normal power of two. */
TWOPASS_INLINE void raddextexp_impl(size_t n, const ELEM* x, T* sum, const size_t U, const size_t ACC)
{
    const size_t NV = U / VLEN;
    VEC acc_p[TWOPASS_MAX_ACC], acc_n[TWOPASS_MAX_ACC];
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) {
        acc_p[k] = V(setzero)();
        acc_n[k] = V(set1)(-INFINITY);
    }
    for (; n >= U; n -= U, x += U) {
        TWOPASS_PREFETCH_ITERATION(x, U * sizeof(ELEM));
        VEC p[TWOPASS_MAX_VECTORS], e[TWOPASS_MAX_ACC], pn[TWOPASS_MAX_VECTORS];
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) p[j] = EXP(extexp)(LOAD(x + j * VLEN), &pn[j]);
        TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) e[k] = acc_n[k];
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) e[j % ACC] = V(max)(e[j % ACC], pn[j]);
        TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) {
            acc_p[k] = EXP(mul_exp2)(acc_p[k], V(sub)(acc_n[k], e[k]));
        }
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) {
            acc_p[j % ACC] = V(add)(acc_p[j % ACC], EXP(mul_exp2)(p[j], V(sub)(pn[j], e[j % ACC])));
        }
        TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) acc_n[k] = e[k];
    }
    for (; n != 0;) {
        /* one vector at a time; the last one masked */
        const MASK mask = n >= VLEN ? ALL_LANES : EXP(tail_mask)(n);
        const size_t step = n >= VLEN ? VLEN : n;
        VEC vn;
        const VEC p = EXP(extexp)(LOAD_PART(x, mask, step), &vn);
        const VEC e = V(mask_max)(acc_n[0], mask, acc_n[0], vn);
        const VEC sum = V(add)(EXP(mul_exp2)(acc_p[0], V(sub)(acc_n[0], e)),
                                         EXP(mul_exp2)(p, V(sub)(vn, e)));
        acc_p[0] = V(mask_mov)(acc_p[0], mask, sum); /* lanes past the end keep (0, -inf) */
        acc_n[0] = e;
        n -= step, x += step;
    }
    /* Reduce the accumulators, then the lanes, to one (mantissa, exponent) pair. Lanes never
     * written hold (0, -inf) and scale to 0; n >= 1 keeps one lane finite. */
    VEC e = acc_n[0];
    TWOPASS_UNROLL for (size_t k = 1; k < ACC; k++) e = V(max)(e, acc_n[k]);
    const T emax = V(reduce_max)(e);
    const VEC vemax = V(set1)(emax);
    VEC total = V(setzero)();
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) {
        total = V(add)(total, EXP(mul_exp2)(acc_p[k], V(sub)(acc_n[k], vemax)));
    }
    sum[0] = V(reduce_add)(total);
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
        const MASK mask = n >= VLEN ? ALL_LANES : EXP(tail_mask)(n);
        const size_t step = n >= VLEN ? VLEN : n;
        const VEC v = V(mask_mov)(V(set1)(-INFINITY), mask, LOAD_PART(x, mask, step));
        const VEC mn = V(max)(m[0], v);
        d[0] = V(add)(V(mul)(d[0], EXP(exp_shifted)(m[0], mn, zero)), EXP(exp_shifted)(v, mn, zero));
        m[0] = mn;
        n -= step, x += step;
    }
    VEC mmax = m[0];
    TWOPASS_UNROLL for (size_t k = 1; k < ACC; k++) mmax = V(max)(mmax, m[k]);
    const T max = V(reduce_max)(mmax);
    VEC total = zero;
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) {
        total = V(add)(total, V(mul)(d[k], EXP(exp_shifted)(m[k], V(set1)(max), zero)));
    }
    result[0] = max;
    result[1] = V(reduce_add)(total);
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
        const MASK mask = n >= VLEN ? ALL_LANES : EXP(tail_mask)(n);
        const size_t step = n >= VLEN ? VLEN : n;
        const VEC xv = LOAD_PART(x, mask, step);
        if (TRACK_MAX) vmax = V(mask_max)(vmax, mask, vmax, xv);
        const VEC v = EXP(exp_shifted_scaled)(xv, vshift, vexponent, vscale);
        if (STORE_W) STORE_T_PART(w, mask, v);
        acc[0] = V(mask_add)(acc[0], mask, acc[0], v);
        n -= step, x += step, w += STORE_W ? step : 0;
    }
    if (TRACK_MAX) *max = V(reduce_max)(vmax);
    TWOPASS_UNROLL for (size_t k = 1; k < ACC; k++) acc[0] = V(add)(acc[0], acc[k]);
    return V(reduce_add)(acc[0]);
}

/* y = p * scale * 2^(n - exponent), flushed to 0 below the smallest normal power of two. */
TWOPASS_INLINE VEC scaleextexp(VEC x, VEC vscale, VEC vexponent)
{
    VEC vn;
    const VEC p = EXP(extexp)(x, &vn);
    return EXP(mul_exp2)(V(mul)(p, vscale), V(sub)(vn, vexponent));
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
 * NT (a constant): non-temporal stores, for outputs too large for the caches (as on AVX2), from
 * y's first 64-byte boundary; masked ordinary stores before it and for the tail; then an sfence. */
TWOPASS_INLINE void vscale_impl(size_t n, const ELEM* x, ELEM* y, T shift, T exponent, T scale,
                                const size_t U, const int MODE, const int NT)
{
    const VEC vshift = V(set1)(shift), vexponent = V(set1)(exponent), vscale = V(set1)(scale);
    if (NT) {
        const uintptr_t vector_bytes = VLEN * sizeof(ELEM);
        size_t head = (((uintptr_t)0 - (uintptr_t)y) & (vector_bytes - 1)) / sizeof(ELEM); /* y is ELEM-aligned */
        head = head < n ? head : n;
        if (head != 0) {
            const MASK mask = EXP(tail_mask)(head);
            STORE_PART(y, mask, head, apply_mode(LOAD_PART(x, mask, head), vshift, vexponent, vscale, MODE));
            n -= head, x += head, y += head;
        }
    }
    const size_t done = twopass_stores_alias_next_loads(x, y)
                            ? vscale_main(n, x, y, vshift, vexponent, vscale, U, MODE, NT, 1)
                            : vscale_main(n, x, y, vshift, vexponent, vscale, U, MODE, NT, 0);
    n -= done, x += done, y += done;
    for (; n != 0;) {
        const MASK mask = n >= VLEN ? ALL_LANES : EXP(tail_mask)(n);
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

TWOPASS_INLINE MASK column_mask(size_t width, size_t v)
{
    const size_t lanes = width - v * VLEN;
    return lanes >= VLEN ? ALL_LANES : EXP(tail_mask)(lanes);
}

/* Vector v of row x of a block of `width` columns: whole, or masked if it is the last, partial one
 * (0 in the lanes past width). */
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

/* Pass 1 on one strip of NS vectors (NS VLEN columns from x, the first `width` of them wanted): per
 * lane, the extended sum of its column over `rows` rows in registers, G rows per update as in
 * raddextexp:  e = max(acc_n, n_1 .. n_G);  acc_p = acc_p 2^(acc_n - e) + sum_g p_g 2^(n_g - e);
 * acc_n = e. Lanes are independent, so a column's sum does not depend on the strip it falls in;
 * lanes past `width` read 0 and are not stored. Each row read is prefetched `rows` rows ahead: the
 * same strip of the driver's next block of rows. */
TWOPASS_INLINE void columns_strip_sum(size_t rows, size_t width, const ELEM* x, ptrdiff_t ld, T* mantissa,
                                      T* exponent, const size_t NS, const size_t G)
{
    VEC acc_p[TWOPASS_COLUMN_MAX_STRIP], acc_n[TWOPASS_COLUMN_MAX_STRIP];
    MASK mask[TWOPASS_COLUMN_MAX_STRIP];
    TWOPASS_UNROLL for (size_t v = 0; v < NS; v++) {
        acc_p[v] = V(setzero)();
        acc_n[v] = V(set1)(-INFINITY);
        mask[v] = column_mask(width, v);
    }
    const ptrdiff_t ahead = (ptrdiff_t)rows * ld;
    size_t r = 0;
    for (; r + G <= rows; r += G, x += (ptrdiff_t)G * ld) {
        VEC p[TWOPASS_COLUMN_MAX_ROWS][TWOPASS_COLUMN_MAX_STRIP], pn[TWOPASS_COLUMN_MAX_ROWS][TWOPASS_COLUMN_MAX_STRIP];
        TWOPASS_UNROLL for (size_t g = 0; g < G; g++) {
            TWOPASS_UNROLL for (size_t b = 0; b < NS * VLEN * sizeof(ELEM); b += 64) {
                _mm_prefetch((const char*)(x + g * ld + ahead) + b, _MM_HINT_T0);
            }
            TWOPASS_UNROLL for (size_t v = 0; v < NS; v++) {
                p[g][v] = EXP(extexp)(column_load(x + g * ld, width, v), &pn[g][v]);
            }
        }
        TWOPASS_UNROLL for (size_t v = 0; v < NS; v++) {
            VEC e = acc_n[v];
            TWOPASS_UNROLL for (size_t g = 0; g < G; g++) e = V(max)(e, pn[g][v]);
            VEC sum = EXP(mul_exp2)(acc_p[v], V(sub)(acc_n[v], e));
            TWOPASS_UNROLL for (size_t g = 0; g < G; g++) {
                sum = V(add)(sum, EXP(mul_exp2)(p[g][v], V(sub)(pn[g][v], e)));
            }
            acc_p[v] = sum, acc_n[v] = e;
        }
    }
    for (; r < rows; r++, x += ld) { /* the last rows % G, one at a time */
        TWOPASS_UNROLL for (size_t v = 0; v < NS; v++) {
            VEC vn;
            const VEC p = EXP(extexp)(column_load(x, width, v), &vn);
            const VEC e = V(max)(acc_n[v], vn);
            acc_p[v] = V(add)(EXP(mul_exp2)(acc_p[v], V(sub)(acc_n[v], e)), EXP(mul_exp2)(p, V(sub)(vn, e)));
            acc_n[v] = e;
        }
    }
    TWOPASS_UNROLL for (size_t v = 0; v < NS; v++) {
        V(mask_storeu)(mantissa + v * VLEN, mask[v], acc_p[v]);
        V(mask_storeu)(exponent + v * VLEN, mask[v], acc_n[v]);
    }
}

/* Per column j < width: mantissa[j] * 2^exponent[j] = sum_r exp(x[r, j]), by whole strips of
 * TWOPASS_COLUMN_STRIP vectors, then single vectors (the last one masked). */
TWOPASS_INLINE void raddextexp_columns_impl(size_t rows, size_t width, const ELEM* x, ptrdiff_t ld,
                                            T* mantissa, T* exponent, const size_t U)
{
    const size_t S = TWOPASS_COLUMN_STRIP, G = TWOPASS_COLUMN_GROUP;
    (void)U;
    size_t c = 0;
    for (; c + S * VLEN <= width; c += S * VLEN) {
        columns_strip_sum(rows, S * VLEN, x + c, ld, mantissa + c, exponent + c, S, G);
    }
    for (; c < width; c += VLEN) {
        columns_strip_sum(rows, width - c, x + c, ld, mantissa + c, exponent + c, 1, G);
    }
}

/* y[r, j] = exp(x[r, j]) * scale[j] * 2^-exponent[j], at most 1 without a clamp: p * scale rounded
 * once, with the p of pass 1's sum. */
TWOPASS_INLINE void vscaleextexp_columns_impl(size_t rows, size_t width, const ELEM* x, ptrdiff_t x_ld,
                                              ELEM* y, ptrdiff_t y_ld, const T* scale,
                                              const T* exponent, const size_t U, const int NT)
{
    (void)U, (void)NT; /* no non-temporal variant listed on AVX-512F */
    const size_t nv = (width + VLEN - 1) / VLEN;
    for (size_t r = 0; r < rows; r++, x += x_ld, y += y_ld) {
        for (size_t v = 0; v < nv; v++) {
            const MASK mask = column_mask(width, v);
            column_store(y, width, v, scaleextexp(column_load(x, width, v), V(maskz_loadu)(mask, scale + v * VLEN),
                                                  V(maskz_loadu)(mask, exponent + v * VLEN)));
        }
    }
}

/* y[r, j] = min(0, (x[r, j] - c_hi[j]) - c_lo[j]): log_softmax down the columns. */
TWOPASS_INLINE void vsubc_columns_impl(size_t rows, size_t width, const ELEM* x, ptrdiff_t x_ld, ELEM* y,
                                       ptrdiff_t y_ld, const T* c_hi, const T* c_lo, const size_t U,
                                       const int NT)
{
    (void)U, (void)NT; /* no non-temporal variant listed on AVX-512F */
    const size_t nv = (width + VLEN - 1) / VLEN;
    for (size_t r = 0; r < rows; r++, x += x_ld, y += y_ld) {
        for (size_t v = 0; v < nv; v++) {
            const MASK mask = column_mask(width, v);
            const VEC d = V(sub)(column_load(x, width, v), V(maskz_loadu)(mask, c_hi + v * VLEN));
            column_store(y, width, v, at_most_zero(V(sub)(d, V(maskz_loadu)(mask, c_lo + v * VLEN))));
        }
    }
}

/* ---- Short rows (softmax_short_rows, instantiate.h): one row of n elements in NV = ceil(n / VLEN)
 * vectors, NV a constant, the last one partial when n % VLEN != 0. ---- */

/* max x, NaN if any x is NaN (as rmax_impl; the max itself does not depend on the order). */
TWOPASS_INLINE T short_row_max(size_t n, const ELEM* x, const size_t NV)
{
    VEC v[TWOPASS_SHORT_ROWS_MAX_VECTORS];
    MASK numbers = ALL_LANES;
    TWOPASS_SHORT_ROWS_UNROLL for (size_t j = 0; j < NV; j++) {
        v[j] = column_load(x, n, j);
        numbers &= CMP_MASK(v[j], v[j], _CMP_ORD_Q);
    }
    v[NV - 1] = V(mask_mov)(V(set1)(-INFINITY), column_mask(n, NV - 1), v[NV - 1]); /* lanes past n */
    TWOPASS_SHORT_ROWS_UNROLL for (size_t step = 1; step < NV; step *= 2) {
        TWOPASS_SHORT_ROWS_UNROLL for (size_t j = 0; j + step < NV; j += 2 * step) {
            v[j] = V(max)(v[j], v[j + step]);
        }
    }
    return numbers == ALL_LANES ? V(reduce_max)(v[0]) : (T)NAN;
}

/* acc + v in the lanes of vector j of a row of n elements, acc in the lanes past n. */
TWOPASS_INLINE VEC add_row_lanes(VEC acc, VEC v, size_t n, size_t j)
{
    return V(mask_add)(acc, column_mask(n, j), acc, v);
}
/* The sum of v's lanes. */
TWOPASS_INLINE T sum_lanes(VEC v)
{
    return V(reduce_add)(v);
}
