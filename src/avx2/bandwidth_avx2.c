/* Memory-bandwidth loops (benchmarks only): 4 vectors per iteration, 4 accumulators for the sum.
 * Compiled with -mavx2 -mfma; called only when the CPU has AVX2. */
#include <stdint.h>
#include <immintrin.h>
#include "twopass/bandwidth.h"

float twopass_bw_read__avx2(size_t n, const float* x)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + i));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(x + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_loadu_ps(x + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_loadu_ps(x + i + 24));
    }
    float lanes[8], sum = 0.0f;
    _mm256_storeu_ps(lanes, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (int k = 0; k < 8; k++) sum += lanes[k];
    for (; i < n; i++) sum += x[i];
    return sum;
}

void twopass_bw_copy__avx2(size_t n, const float* x, float* y)
{
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        _mm256_storeu_ps(y + i, _mm256_loadu_ps(x + i));
        _mm256_storeu_ps(y + i + 8, _mm256_loadu_ps(x + i + 8));
        _mm256_storeu_ps(y + i + 16, _mm256_loadu_ps(x + i + 16));
        _mm256_storeu_ps(y + i + 24, _mm256_loadu_ps(x + i + 24));
    }
    for (; i < n; i++) y[i] = x[i];
}

void twopass_bw_copy_nt__avx2(size_t n, const float* x, float* y)
{
    size_t i = 0;
    for (; i < n && ((uintptr_t)(y + i) & 31) != 0; i++) y[i] = x[i]; /* align the stores */
    for (; i + 32 <= n; i += 32) {
        _mm256_stream_ps(y + i, _mm256_loadu_ps(x + i));
        _mm256_stream_ps(y + i + 8, _mm256_loadu_ps(x + i + 8));
        _mm256_stream_ps(y + i + 16, _mm256_loadu_ps(x + i + 16));
        _mm256_stream_ps(y + i + 24, _mm256_loadu_ps(x + i + 24));
    }
    _mm_sfence();
    for (; i < n; i++) y[i] = x[i];
}

void twopass_bw_scale__avx2(size_t n, float* x, float s)
{
    const __m256 vs = _mm256_set1_ps(s);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vs));
        _mm256_storeu_ps(x + i + 8, _mm256_mul_ps(_mm256_loadu_ps(x + i + 8), vs));
        _mm256_storeu_ps(x + i + 16, _mm256_mul_ps(_mm256_loadu_ps(x + i + 16), vs));
        _mm256_storeu_ps(x + i + 24, _mm256_mul_ps(_mm256_loadu_ps(x + i + 24), vs));
    }
    for (; i < n; i++) x[i] *= s;
}
