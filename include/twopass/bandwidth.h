/* Memory-bandwidth loops for the benchmarks: the fastest this machine streams floats, measured with
 * the same vector width as the kernels. AVX2 (compiled only in src/avx2/). */
#ifndef TWOPASS_BANDWIDTH_H
#define TWOPASS_BANDWIDTH_H

#include <stddef.h>

#if defined(TWOPASS_HAVE_X86_KERNELS)
/* return sum x (reads n floats) */
float twopass_bw_read__avx2(size_t n, const float* x);
/* y = x with ordinary stores (reads n, writes n; out of cache a store first reads its line) */
void twopass_bw_copy__avx2(size_t n, const float* x, float* y);
/* y = x with non-temporal stores (no read of the written lines) */
void twopass_bw_copy_nt__avx2(size_t n, const float* x, float* y);
/* x *= s in place (reads n, writes n) */
void twopass_bw_scale__avx2(size_t n, float* x, float s);
#else /* no x86 kernels: the loops do nothing (twopass.kernels refuses to call them anyway) */
static inline float twopass_bw_read__avx2(size_t n, const float* x) { (void)n, (void)x; return 0.0f; }
static inline void twopass_bw_copy__avx2(size_t n, const float* x, float* y) { (void)n, (void)x, (void)y; }
static inline void twopass_bw_copy_nt__avx2(size_t n, const float* x, float* y) { (void)n, (void)x, (void)y; }
static inline void twopass_bw_scale__avx2(size_t n, float* x, float s) { (void)n, (void)x, (void)s; }
#endif

#endif /* TWOPASS_BANDWIDTH_H */
