/* float16 softmax passes for AVX2 + FMA + F16C: the templates of kernels_avx2.h on vectors of 8
 * halves, widened to 8 floats on load (vcvtph2ps, exact) and rounded back to the nearest half on
 * store (vcvtps2ph, ties to even, as NumPy's astype); every step between is float32 arithmetic with
 * the float32 exp of f32_exp_avx2.h. So nothing is ever copied to a float32 array: each element is
 * read as 2 bytes and written as 2 (reload's stored exps are float32: the driver's row apart).
 * Compiled with -mavx2 -mfma -mf16c; nothing here runs unless the dispatcher found AVX2, FMA, F16C
 * and OS support for YMM state. TWOPASS_F16_AVX2_KERNELS in kernels.h lists the instances.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "twopass/kernels.h"
#include "f32_arith_avx2.h"

#define ELEM uint16_t

#define F16_ROUNDING (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

TWOPASS_INLINE __m256 f16x8_load(const uint16_t* p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p));
}

/* GCC 12 warns that the memcpy below may copy 17 to 32 halves when the short-rows kernels inline it
 * (-Wstringop-overflow, -Wstringop-overread, -Warray-bounds): a false positive, since count < VLEN
 * on that path (whole vectors return before it). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Warray-bounds"
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#pragma GCC diagnostic ignored "-Wstringop-overread"
/* The first `count` halves at p, +0 in the other lanes; reads nothing past them (AVX2 has no 16-bit
 * masked load, so the tail goes through a vector on the stack). */
TWOPASS_INLINE __m256 f16x8_load_part(const uint16_t* p, size_t count)
{
    if (count >= 8) {
        return f16x8_load(p); /* the kernels' one-vector loops pass whole vectors too */
    }
    uint16_t lanes[8] = {0};
    memcpy(lanes, p, count * sizeof(uint16_t));
    return f16x8_load(lanes);
}

TWOPASS_INLINE void f16x8_store(uint16_t* p, __m256 v)
{
    _mm_storeu_si128((__m128i*)p, _mm256_cvtps_ph(v, F16_ROUNDING));
}

TWOPASS_INLINE void f16x8_store_part(uint16_t* p, size_t count, __m256 v)
{
    if (count >= 8) {
        f16x8_store(p, v);
        return;
    }
    uint16_t lanes[8];
    f16x8_store(lanes, v);
    memcpy(p, lanes, count * sizeof(uint16_t));
}
#pragma GCC diagnostic pop

#define LOAD(p) f16x8_load(p)
#define LOAD_PART(p, mask, count) ((void)(mask), f16x8_load_part(p, count))
#define STORE(p, v) f16x8_store(p, v)
#define STORE_PART(p, mask, count, v) ((void)(mask), f16x8_store_part(p, count, v))
#define STREAM(p, v) _mm_stream_si128((__m128i*)(p), _mm256_cvtps_ph(v, F16_ROUNDING))

#include "kernels_avx2.h"

#define TP_T float
#define TP_E uint16_t
#define TP_RNAME TWOPASS_F16_RNAME
#define TP_VNAME TWOPASS_F16_VNAME
#define TP_NNAME TWOPASS_F16_NNAME
#include "../instantiate.h"
TWOPASS_F16_AVX2_KERNELS(DEFINE_R, DEFINE_V, DEFINE_N)
