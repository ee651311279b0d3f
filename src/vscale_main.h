/* The main loop of the elementwise passes, for the per-ISA kernel headers: included by each after
 * its VEC, VLEN, ELEM, LOAD, STORE, STREAM and apply_mode (one copy for both ISAs). */
#ifndef TWOPASS_VSCALE_MAIN_H
#define TWOPASS_VSCALE_MAIN_H

/* vscale_impl's main loop over the whole iterations of n; returns the elements done. AHEAD (a
 * constant): x is loaded an iteration ahead of the stores, for y just past x modulo 4096 (common.h). */
TWOPASS_INLINE size_t vscale_main(size_t n, const ELEM* x, ELEM* y, VEC vshift, VEC vexponent, VEC vscale,
                                  const size_t U, const int MODE, const int NT, const int AHEAD)
{
    const size_t NV = U / VLEN, iterations = n / U;
    if (iterations == 0) {
        return 0;
    }
    VEC v[TWOPASS_MAX_VECTORS];
    if (AHEAD) {
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) v[j] = LOAD(x + j * VLEN);
    }
    for (size_t i = 0; i < iterations; i++, x += U, y += U) {
        if (MODE == TWOPASS_MODE_EXP) {
            TWOPASS_PREFETCH_ITERATION(x, U * sizeof(ELEM));
        }
        VEC r[TWOPASS_MAX_VECTORS];
        if (AHEAD) {
            TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) r[j] = v[j];
            if (i + 1 < iterations) {
                TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) v[j] = LOAD(x + U + j * VLEN);
            }
        } else {
            TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) r[j] = LOAD(x + j * VLEN);
        }
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) {
            const VEC out = apply_mode(r[j], vshift, vexponent, vscale, MODE);
            if (NT) {
                STREAM(y + j * VLEN, out);
            } else {
                STORE(y + j * VLEN, out);
            }
        }
    }
    return iterations * U;
}

#endif /* TWOPASS_VSCALE_MAIN_H */
