/* float16 softmax passes for AVX-512F: the templates of kernels_avx512f.h on vectors of 16 halves,
 * widened to 16 floats on load (vcvtph2ps, exact) and rounded back to the nearest half on store
 * (vcvtps2ph, ties to even, as NumPy's astype); every step between is float32 arithmetic with the
 * float32 exp of f32_exp_avx512f.h, and no float32 copy of the array is ever made (reload's stored
 * exps are float32: the driver's row apart). Both conversions are AVX-512F instructions. Compiled
 * with -mavx512f -mf16c; nothing here runs unless the dispatcher found AVX-512F and OS support for
 * ZMM state. TWOPASS_F16_AVX512F_KERNELS in kernels.h lists the
 * instances.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "twopass/kernels.h"
#include "f32_arith_avx512f.h"

#define ELEM uint16_t

#define F16_ROUNDING (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

TWOPASS_INLINE __m512 f16x16_load(const uint16_t* p)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)p));
}

/* GCC 12 warns that the memcpy below may copy 17 to 32 halves when the short-rows kernels inline it
 * (-Wstringop-overflow, -Wstringop-overread, -Warray-bounds): a false positive, since count < VLEN
 * on that path (whole vectors return before it). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Warray-bounds"
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#pragma GCC diagnostic ignored "-Wstringop-overread"
/* The first `count` halves at p, +0 in the other lanes; reads nothing past them (a 16-bit masked
 * load would need AVX-512BW, so the tail goes through a vector on the stack). */
TWOPASS_INLINE __m512 f16x16_load_part(const uint16_t* p, size_t count)
{
    if (count >= 16) {
        return f16x16_load(p); /* the kernels' one-vector loops pass whole vectors too */
    }
    uint16_t lanes[16] = {0};
    memcpy(lanes, p, count * sizeof(uint16_t));
    return f16x16_load(lanes);
}

TWOPASS_INLINE void f16x16_store(uint16_t* p, __m512 v)
{
    _mm256_storeu_si256((__m256i*)p, _mm512_cvtps_ph(v, F16_ROUNDING));
}

TWOPASS_INLINE void f16x16_store_part(uint16_t* p, size_t count, __m512 v)
{
    if (count >= 16) {
        f16x16_store(p, v);
        return;
    }
    uint16_t lanes[16];
    f16x16_store(lanes, v);
    memcpy(p, lanes, count * sizeof(uint16_t));
}
#pragma GCC diagnostic pop

#define LOAD(p) f16x16_load(p)
#define LOAD_PART(p, mask, count) ((void)(mask), f16x16_load_part(p, count))
#define STORE(p, v) f16x16_store(p, v)
#define STORE_PART(p, mask, count, v) ((void)(mask), f16x16_store_part(p, count, v))
#define STREAM(p, v) _mm256_stream_si256((__m256i*)(p), _mm512_cvtps_ph(v, F16_ROUNDING))

#include "kernels_avx512f.h"

#define TP_T float
#define TP_E uint16_t
#define TP_RNAME TWOPASS_F16_RNAME
#define TP_VNAME TWOPASS_F16_VNAME
#define TP_NNAME TWOPASS_F16_NNAME
#include "../instantiate.h"
TWOPASS_F16_AVX512F_KERNELS(DEFINE_R, DEFINE_V, DEFINE_N)
