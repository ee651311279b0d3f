/* Instantiation of the kernel templates, shared by the per-ISA kernel files.
 *
 * Included at the end of a file that defines VLEN, the arithmetic type TP_T (float or double), the
 * element type TP_E (TP_T itself unless the elements are float16's uint16_t), the name makers
 * TP_RNAME, TP_VNAME and TP_NNAME (TWOPASS_F32_RNAME ... from kernels.h) and the templates
 * rmax_impl, raddextexp_impl, raddonline_impl, raddexpminusmax_impl, vscale_impl and the
 * *_columns_impl, and MASK and ALL_LANES (a lane mask's type, all lanes); that file then expands
 * its ISA's list from kernels.h with DEFINE_R, DEFINE_V and DEFINE_N, giving one function per
 * listed variant.
 */
#ifndef TWOPASS_INSTANTIATE_H
#define TWOPASS_INSTANTIATE_H

#ifndef TP_E
#define TP_E TP_T
#endif

#define DEFINE_rmax_R(isa, U, ACC)                                                                 \
    TP_T TP_RNAME(rmax, isa, U, ACC)(size_t n, const TP_E* x) { return rmax_impl(n, x, U, ACC); }
#define DEFINE_raddextexp_R(isa, U, ACC)                                                           \
    void TP_RNAME(raddextexp, isa, U, ACC)(size_t n, const TP_E* x, TP_T sum[2])          \
    { raddextexp_impl(n, x, sum, U, ACC); }
#define DEFINE_raddonline_R(isa, U, ACC)                                                           \
    void TP_RNAME(raddonline, isa, U, ACC)(size_t n, const TP_E* x, TP_T result[2])        \
    { raddonline_impl(n, x, result, U, ACC); }
/* exp(x - shift) * 2^-exponent (times a scale), the caller's split of exp(x - max) (kernels.h), by the
 * instance of the template for the split's case. TWOPASS_EXP_SPLIT's usual shift = 0 is passed as
 * the constant +0, so the compiler drops x - shift (x - (+0) is x; a shift of -0 also takes this
 * instance, and x - (-0) differs only at x = -0, where exp(-0) = exp(+0)); there the exponent is
 * folded into the scale where the exp core can (FOLD_EXPONENT: AVX-512F float32 and float16 define
 * it; the AVX2 float32 exp carries the exponent in its magic constant's bias for free, and the
 * float64 ones multiply by the scale separately, so they do not fold). One operation fewer per
 * vector each: 14, 13, 12 in reload's pass 2 on AVX-512F. The same bits as the general instance,
 * which runs for |max| beyond the shift limit (tests/test_kernels.py checks the three against each
 * other). */
#ifdef FOLD_EXPONENT
#define EXP_FOLDS 1
#else
#define EXP_FOLDS 0
#define FOLD_EXPONENT(exponent, scale, folded) ((void)(exponent), (void)(scale), (void)(folded), 0)
#endif
enum exp_instance { EXP_GENERAL, EXP_SHIFT_0, EXP_FOLDED };
/* The instance for a split (and scale); EXP_FOLDED sets *folded = scale * 2^-exponent. */
TWOPASS_INLINE enum exp_instance exp_instance(TP_T shift, TP_T exponent, TP_T scale, TP_T* folded)
{
    if (shift != 0) return EXP_GENERAL;
    return FOLD_EXPONENT(exponent, scale, folded) ? EXP_FOLDED : EXP_SHIFT_0;
}
TWOPASS_INLINE TP_T raddexpminusmax_split(size_t n, const TP_E* x, TP_T* w, TP_T* max, TP_T shift,
                                          TP_T exponent, const size_t U, const size_t ACC, const int STORE_W,
                                          const int TRACK_MAX)
{
    TP_T folded;
    switch (exp_instance(shift, exponent, 1, &folded)) {
    case EXP_GENERAL: return raddexpminusmax_impl(n, x, w, max, shift, exponent, 1, U, ACC, STORE_W, TRACK_MAX);
    case EXP_FOLDED: return raddexpminusmax_impl(n, x, w, max, 0, 0, folded, U, ACC, STORE_W, TRACK_MAX);
    default: return raddexpminusmax_impl(n, x, w, max, 0, exponent, 1, U, ACC, STORE_W, TRACK_MAX);
    }
}
TWOPASS_INLINE void vscaleexpminusmax_split(size_t n, const TP_E* x, TP_E* y, TP_T shift, TP_T exponent,
                                            TP_T scale, const size_t U, const int NT)
{
    TP_T folded;
    switch (exp_instance(shift, exponent, scale, &folded)) {
    case EXP_GENERAL: vscale_impl(n, x, y, shift, exponent, scale, U, TWOPASS_MODE_EXP, NT); break;
    case EXP_FOLDED: vscale_impl(n, x, y, 0, 0, folded, U, TWOPASS_MODE_EXP, NT); break;
    default: vscale_impl(n, x, y, 0, exponent, scale, U, TWOPASS_MODE_EXP, NT); break;
    }
}

/* Reload keeps its exps in the arithmetic type (raddstoreexpminusmax, vscale): in the output itself
 * where the elements are of that type; float16's apart, in float32 rows of whole vectors (the lanes
 * past n hold exps that never reach the output). */
enum { STORED_APART = sizeof(TP_E) != sizeof(TP_T) };
TWOPASS_INLINE void stored_store(TP_T* w, size_t n, size_t j, VEC e)
{
    if (STORED_APART) {
        STORE_T(w + j * VLEN, e);
    } else {
        column_store((TP_E*)(void*)w, n, j, e);
    }
}
TWOPASS_INLINE VEC stored_load(const TP_T* w, size_t n, size_t j)
{
    return STORED_APART ? LOAD_T(w + j * VLEN) : column_load((const TP_E*)(const void*)w, n, j);
}
/* y = w * scale: reload's pass 3, from its stored exps w (of type T) to the elements, rounded once.
 * One multiply: its products below the smallest normal (a subnormal result costs a pass twice its
 * time on Zen 3, more on Intel) are flushed to 0 by MXCSR.FTZ, which every caller of the kernels
 * sets (softmax.c). Zeroing the inputs below T_MIN / scale first, as before FTZ was set everywhere,
 * cost a division per call and two operations per vector: reload on 1e4 floats ran 1.06x faster
 * without on avx512f, 1.10x on avx2 (Intel Xeon). */
TWOPASS_INLINE void vscale_stored_impl(size_t n, const TP_T* w, TP_E* y, TP_T scale, const size_t U)
{
    const size_t NV = U / VLEN;
    const VEC vscale = V(set1)(scale);
    for (; n >= U; n -= U, w += U, y += U) {
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) STORE(y + j * VLEN, V(mul)(LOAD_T(w + j * VLEN), vscale));
    }
    for (; n != 0;) {
        const MASK mask = n >= VLEN ? ALL_LANES : EXP(tail_mask)(n);
        const size_t step = n >= VLEN ? VLEN : n;
        STORE_PART(y, mask, step, V(mul)(LOAD_T_PART(w, mask), vscale));
        n -= step, w += step, y += step;
    }
}

/* Row r's stored exps in a group: its NV vectors in `stored`, or output row r itself. */
TWOPASS_INLINE TP_T* stored_row(TP_T* stored, TP_E* y, ptrdiff_t y_stride, size_t r, size_t NV)
{
    return STORED_APART ? stored + r * NV * VLEN : (TP_T*)(void*)(y + (ptrdiff_t)r * y_stride);
}

/* The passes of softmax_short_rows on one row of n elements in NV = ceil(n / VLEN) vectors (NV a
 * constant; short_row_max, add_row_lanes and sum_lanes come from the ISA's header), each with the
 * arithmetic of the pass it stands for in its order. short_row_exps: w = e = exp(x - shift) *
 * 2^-exponent * scale, returns the sum of e as raddexpminusmax_impl at (U, ACC) does, whose main loop
 * takes the first n / U * U / VLEN vectors (vector j of each iteration into accumulator j % ACC) and
 * its one-vector loop the others (into accumulator 0, the last one masked). */
TWOPASS_INLINE TP_T short_row_exps(size_t n, const TP_E* x, TP_T* w, TP_T shift, TP_T exponent, TP_T scale,
                                   const size_t NV, const size_t U, const size_t ACC)
{
    /* the main loop's vectors: none when NV < U / VLEN, since then n < U */
    const size_t NV_UNROLL = U / VLEN, main_loop_vectors = NV >= NV_UNROLL ? n / U * NV_UNROLL : 0;
    const VEC vshift = V(set1)(shift), vexponent = V(set1)(exponent), vscale = V(set1)(scale);
    VEC acc[TWOPASS_MAX_ACC];
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) acc[k] = V(setzero)();
    TWOPASS_PREFETCH_ITERATION(x, NV * VLEN * sizeof(TP_E)); /* as the main loop does */
    TWOPASS_SHORT_ROWS_UNROLL for (size_t j = 0; j < NV; j++) {
        const VEC e = EXP(exp_shifted_scaled)(column_load(x, n, j), vshift, vexponent, vscale);
        stored_store(w, n, j, e);
        if (j < main_loop_vectors) {
            acc[j % NV_UNROLL % ACC] = V(add)(acc[j % NV_UNROLL % ACC], e);
        } else {
            acc[0] = add_row_lanes(acc[0], e, n, j);
        }
    }
    TWOPASS_UNROLL for (size_t k = 1; k < ACC; k++) acc[0] = V(add)(acc[0], acc[k]);
    return sum_lanes(acc[0]);
}
/* y = w * scale (vscale_stored_impl). */
TWOPASS_INLINE void short_row_scale(size_t n, const TP_T* w, TP_E* y, TP_T scale, const size_t NV)
{
    const VEC vscale = V(set1)(scale);
    TWOPASS_SHORT_ROWS_UNROLL for (size_t j = 0; j < NV; j++) {
        column_store(y, n, j, V(mul)(stored_load(w, n, j), vscale));
    }
}

/* softmax_short_rows: softmax by three-pass reload of `rows` rows of n elements, at most
 * TWOPASS_SHORT_ROWS_BYTES and TWOPASS_SHORT_ROWS_MAX_VECTORS vectors (rows x_stride and y_stride
 * elements apart), a pass at a time over up to TWOPASS_SHORT_ROWS_GROUP rows: the max of every row,
 * then every row's exps and sum, then every row's scaling. Row after row, each row waits on its own
 * chain (max, reduced; exps, summed; 1/sum; the scaling); here the chains of the group's rows
 * overlap, the group's rows stay in L1 between the passes, and each row is straight-line code for its
 * count of vectors NV (no call, loop or tail logic per pass). The passes do the arithmetic of rmax,
 * raddstoreexpminusmax at (U, ACC) and vscale in their order, so with U and ACC those of the level's
 * raddstoreexpminusmax the results are the bits of the rows one by one (tests/test_row_groups.py,
 * tests/test_avx512_emulated.py). float16 keeps the group's exps in `stored`, NV vectors a row. */
TWOPASS_INLINE void short_rows_group(size_t rows, size_t n, const TP_E* x, ptrdiff_t x_stride, TP_E* y,
                                     ptrdiff_t y_stride, TP_T* stored, const size_t NV, const size_t U,
                                     const size_t ACC)
{
    TP_T shift[TWOPASS_SHORT_ROWS_GROUP], exponent[TWOPASS_SHORT_ROWS_GROUP], scale[TWOPASS_SHORT_ROWS_GROUP];
    for (size_t r = 0; r < rows; r++) {
        TWOPASS_EXP_SPLIT(short_row_max(n, x + (ptrdiff_t)r * x_stride, NV), &shift[r], &exponent[r]);
    }
    for (size_t r = 0; r < rows; r++) {
        const TP_E* xr = x + (ptrdiff_t)r * x_stride;
        TP_T* wr = stored_row(stored, y, y_stride, r, NV);
        TP_T folded, sum;
        /* two instances per count of vectors, not three (each is a large unrolled body): where the
         * exponent can fold, the rare shift-0 rows it cannot fold take the general one, whose x - 0
         * gives the same bits */
        const enum exp_instance instance = exp_instance(shift[r], exponent[r], 1, &folded);
        if (instance == EXP_FOLDED) {
            sum = short_row_exps(n, xr, wr, 0, 0, folded, NV, U, ACC);
        } else if (instance == EXP_SHIFT_0 && !EXP_FOLDS) {
            sum = short_row_exps(n, xr, wr, 0, exponent[r], 1, NV, U, ACC);
        } else {
            sum = short_row_exps(n, xr, wr, shift[r], exponent[r], 1, NV, U, ACC);
        }
        scale[r] = (TP_T)(1.0 / (double)sum);
    }
    for (size_t r = 0; r < rows; r++) {
        short_row_scale(n, stored_row(stored, y, y_stride, r, NV), y + (ptrdiff_t)r * y_stride, scale[r], NV);
    }
}
TWOPASS_INLINE int softmax_short_rows_impl(size_t rows, size_t n, const TP_E* x, ptrdiff_t x_stride, TP_E* y,
                                           ptrdiff_t y_stride, const size_t U, const size_t ACC)
{
    enum { BYTES_NV = TWOPASS_SHORT_ROWS_BYTES / (VLEN * sizeof(TP_E)) };
    enum { MAX_NV = BYTES_NV < TWOPASS_SHORT_ROWS_MAX_VECTORS ? BYTES_NV : TWOPASS_SHORT_ROWS_MAX_VECTORS };
    if (n == 0 || n > MAX_NV * VLEN) return 0;
    /* float16's stored exps: 16 KiB on the stack, which hold the drivers' default groups (4096 bytes
     * of halves) whole; larger groups (twopass_set_row_group_bytes) go in parts that fit */
    enum { STORED_ELEMENTS = 4096 };
    _Static_assert(STORED_ELEMENTS >= MAX_NV * VLEN, "a stored row must fit (part >= 1)");
    TP_T stored[STORED_APART ? STORED_ELEMENTS : 1];
    const size_t row_stored = (n + VLEN - 1) / VLEN * VLEN;
    const size_t part = STORED_APART && STORED_ELEMENTS / row_stored < TWOPASS_SHORT_ROWS_GROUP
                        ? STORED_ELEMENTS / row_stored : TWOPASS_SHORT_ROWS_GROUP;
    for (size_t first = 0; first < rows; first += part) {
        const size_t left = rows - first;
        const size_t count = left < part ? left : part;
        const TP_E* xg = x + (ptrdiff_t)first * x_stride;
        TP_E* yg = y + (ptrdiff_t)first * y_stride;
        switch ((n + VLEN - 1) / VLEN) { /* NV */
#define SHORT_ROWS_CASE(nv)                                                                        \
        case nv:                                                                                   \
            if (nv <= MAX_NV) short_rows_group(count, n, xg, x_stride, yg, y_stride, stored, nv, U, ACC);  \
            break;
        SHORT_ROWS_CASE(1) SHORT_ROWS_CASE(2) SHORT_ROWS_CASE(3) SHORT_ROWS_CASE(4)
        SHORT_ROWS_CASE(5) SHORT_ROWS_CASE(6) SHORT_ROWS_CASE(7) SHORT_ROWS_CASE(8)
        SHORT_ROWS_CASE(9) SHORT_ROWS_CASE(10) SHORT_ROWS_CASE(11) SHORT_ROWS_CASE(12)
        SHORT_ROWS_CASE(13) SHORT_ROWS_CASE(14) SHORT_ROWS_CASE(15) SHORT_ROWS_CASE(16)
#undef SHORT_ROWS_CASE
        }
    }
    return 1;
}
#define DEFINE_softmax_short_rows_R(isa, U, ACC)                                                   \
    int TP_RNAME(softmax_short_rows, isa, U, ACC)(size_t rows, size_t n, const TP_E* x, ptrdiff_t x_stride, \
                                                  TP_E* y, ptrdiff_t y_stride)                      \
    { return softmax_short_rows_impl(rows, n, x, x_stride, y, y_stride, U, ACC); }
#define DEFINE_raddexpminusmax_R(isa, U, ACC)                                                      \
    TP_T TP_RNAME(raddexpminusmax, isa, U, ACC)(size_t n, const TP_E* x, TP_T shift, TP_T exponent) \
    { return raddexpminusmax_split(n, x, NULL, NULL, shift, exponent, U, ACC, 0, 0); }
/* With max, the instances of shift 0 track it in the loop (blocked reload's pass 1, which then needs
 * no rmax); a nonzero shift, which that pass never passes, takes rmax and the instance without. */
#define DEFINE_raddstoreexpminusmax_R(isa, U, ACC)                                                 \
    TP_T TP_RNAME(raddstoreexpminusmax, isa, U, ACC)(size_t n, const TP_E* x, TP_T* w, TP_T shift, \
                                                     TP_T exponent, TP_T* max)                      \
    {                                                                                              \
        if (max == NULL || shift != 0) {                                                           \
            if (max != NULL) *max = rmax_impl(n, x, U, ACC);                                       \
            return raddexpminusmax_split(n, x, w, NULL, shift, exponent, U, ACC, 1, 0);            \
        }                                                                                          \
        return raddexpminusmax_split(n, x, w, max, 0, exponent, U, ACC, 1, 1);                     \
    }
/* The elementwise passes on x, one template (vscale_impl) in two modes, and reload's scaling of its
 * stored exps (vscale_stored_impl); NT: non-temporal stores.
 * vscaleextexp, exp(x) * scale * 2^-exponent, is exp(x - shift) * 2^-exponent * scale with shift 0
 * (x - 0 is x), and where it folds, one operation fewer per vector: the exp that raddextexp sums. */
#define DEFINE_vscaleextexp_E(name, U, NT)                                                         \
    void name(size_t n, const TP_E* x, TP_E* y, TP_T scale, TP_T exponent)                      \
    { vscaleexpminusmax_split(n, x, y, 0, exponent, scale, U, NT); }
#define DEFINE_vscaleexpminusmax_E(name, U, NT)                                                    \
    void name(size_t n, const TP_E* x, TP_E* y, TP_T shift, TP_T exponent, TP_T scale)         \
    { vscaleexpminusmax_split(n, x, y, shift, exponent, scale, U, NT); }
#define DEFINE_vscale_E(name, U, NT)                                                               \
    _Static_assert(!(NT), "no non-temporal vscale");                                               \
    void name(size_t n, const TP_T* w, TP_E* y, TP_T scale) { vscale_stored_impl(n, w, y, scale, U); }
#define DEFINE_vsubc_E(name, U, NT)                                                                \
    void name(size_t n, const TP_E* x, TP_E* y, TP_T c_hi, TP_T c_lo)                           \
    { vscale_impl(n, x, y, c_hi, c_lo, 1, U, TWOPASS_MODE_SUB, NT); }
#define DEFINE_vscaleextexp_V(isa, U) DEFINE_vscaleextexp_E(TP_VNAME(vscaleextexp, isa, U), U, 0)
#define DEFINE_vscaleexpminusmax_V(isa, U)                                                         \
    DEFINE_vscaleexpminusmax_E(TP_VNAME(vscaleexpminusmax, isa, U), U, 0)
#define DEFINE_vscale_V(isa, U) DEFINE_vscale_E(TP_VNAME(vscale, isa, U), U, 0)
#define DEFINE_vsubc_V(isa, U) DEFINE_vsubc_E(TP_VNAME(vsubc, isa, U), U, 0)

#define DEFINE_R(op, isa, U, ACC)                                                                  \
    _Static_assert(U % VLEN == 0 && U / VLEN <= TWOPASS_MAX_VECTORS && ACC >= 1 && ACC <= TWOPASS_MAX_ACC \
                   && ACC <= U / VLEN, /* an accumulator that never gets a vector would stay (0, -inf) */ \
                   "bad tile of " #op);                                                            \
    DEFINE_##op##_R(isa, U, ACC)
#define DEFINE_V(op, isa, U)                                                                       \
    _Static_assert(U % VLEN == 0 && U <= TWOPASS_MAX_COLUMNS, "bad tile of " #op);                  \
    DEFINE_##op##_V(isa, U)
#define DEFINE_N(op, isa, U)                                                                       \
    _Static_assert(U % VLEN == 0 && U <= TWOPASS_MAX_COLUMNS, "bad tile of " #op);                  \
    DEFINE_##op##_E(TP_NNAME(op, isa, U), U, 1)
#define DEFINE_raddextexp_columns_V(isa, U)                                                        \
    void TP_VNAME(raddextexp_columns, isa, U)(size_t rows, size_t width, const TP_E* x,    \
                                                       ptrdiff_t ld, TP_T* mantissa, TP_T* exponent) \
    { raddextexp_columns_impl(rows, width, x, ld, mantissa, exponent, U); }
/* The columns pass 2 (NT: the non-temporal variant, listed with N). */
#define DEFINE_vscaleextexp_columns_E(name, U, NT)                                                 \
    void name(size_t rows, size_t width, const TP_E* x, ptrdiff_t x_ld, TP_E* y, ptrdiff_t y_ld,  \
              const TP_T* scale, const TP_T* exponent)                                             \
    { vscaleextexp_columns_impl(rows, width, x, x_ld, y, y_ld, scale, exponent, U, NT); }
#define DEFINE_vscaleextexp_columns_V(isa, U)                                                      \
    DEFINE_vscaleextexp_columns_E(TP_VNAME(vscaleextexp_columns, isa, U), U, 0)
#define DEFINE_vsubc_columns_E(name, U, NT)                                                        \
    void name(size_t rows, size_t width, const TP_E* x, ptrdiff_t x_ld, TP_E* y, ptrdiff_t y_ld,  \
              const TP_T* c_hi, const TP_T* c_lo)                                                  \
    { vsubc_columns_impl(rows, width, x, x_ld, y, y_ld, c_hi, c_lo, U, NT); }
#define DEFINE_vsubc_columns_V(isa, U) DEFINE_vsubc_columns_E(TP_VNAME(vsubc_columns, isa, U), U, 0)

#endif /* TWOPASS_INSTANTIATE_H */
