/* Test-only probes of the emulated intrinsics the AVX-512F kernels rely on, compiled through the
 * same shim as the kernels (tests/avx512_emulation/immintrin.h), so tests can compare each one
 * with the hardware semantics (Intel SDM) on chosen inputs. Each works on n floats, n % 16 == 0
 * except where stated. */
#include <stddef.h>
#include <immintrin.h>

void twopass_emu_probe_scalef(size_t n, const float* a, const float* b, float* out)
{
    for (size_t i = 0; i < n; i += 16) {
        _mm512_storeu_ps(out + i, _mm512_scalef_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i)));
    }
}

/* roundscale with the kernels' immediate: round to nearest even, M = 0, no exceptions. */
void twopass_emu_probe_roundscale(size_t n, const float* a, float* out)
{
    for (size_t i = 0; i < n; i += 16) {
        _mm512_storeu_ps(out + i, _mm512_roundscale_ps(_mm512_loadu_ps(a + i),
                                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
}

void twopass_emu_probe_max(size_t n, const float* a, const float* b, float* out)
{
    for (size_t i = 0; i < n; i += 16) {
        _mm512_storeu_ps(out + i, _mm512_max_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i)));
    }
}

/* out = mask_max(src, k, a, b) and out2 = mask_add(src, k, a, b) for one vector. */
void twopass_emu_probe_mask_ops(const float* src, unsigned int k, const float* a, const float* b, float* out,
                                float* out2)
{
    const __mmask16 m = _cvtu32_mask16(k);
    _mm512_storeu_ps(out, _mm512_mask_max_ps(_mm512_loadu_ps(src), m, _mm512_loadu_ps(a), _mm512_loadu_ps(b)));
    _mm512_storeu_ps(out2, _mm512_mask_add_ps(_mm512_loadu_ps(src), m, _mm512_loadu_ps(a), _mm512_loadu_ps(b)));
}

/* out[0] = reduce_max(a[0:16]), out[1] = reduce_add(a[0:16]). */
void twopass_emu_probe_reduce(const float* a, float* out)
{
    out[0] = _mm512_reduce_max_ps(_mm512_loadu_ps(a));
    out[1] = _mm512_reduce_add_ps(_mm512_loadu_ps(a));
}

/* The float64 scalef: out = _mm512_scalef_pd(a, b), n % 8 == 0. */
void twopass_emu_probe_scalef_pd(size_t n, const double* a, const double* b, double* out)
{
    for (size_t i = 0; i < n; i += 8) {
        _mm512_storeu_pd(out + i, _mm512_scalef_pd(_mm512_loadu_pd(a + i), _mm512_loadu_pd(b + i)));
    }
}
