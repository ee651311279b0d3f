/* The float16 drivers: src/softmax_template.h on binary16 elements (uint16_t) with float32
 * arithmetic. The float16 kernels convert on load and store (F16C), so the drivers are float32's
 * with 2-byte elements: the same scalars, limits and algorithms. Every |x| of a half is at most
 * 65504, within the extended-exponent range. Baseline x86-64 code. */
#define _GNU_SOURCE /* M_LN2 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include "twopass/common.h"
#include "twopass/softmax.h"

#include "softmax_f32_scalars.h"
#define TP_E uint16_t
/* NaN halves: exponent bits all ones and a non-zero fraction */
#define TP_E_ISNAN(e) (((e) & 0x7FFFu) > 0x7C00u)
/* finite halves: exponent bits not all ones; 1.0, +0.0 and a quiet NaN as bits */
#define TP_E_ISFINITE(e) (((e) & 0x7C00u) != 0x7C00u)
#define TP_E_ONE ((uint16_t)0x3C00u)
#define TP_E_ZERO ((uint16_t)0x0000u)
#define TP_E_NAN ((uint16_t)0x7E00u)
#define TP_STORED_APART 1 /* three-pass reload's exps in float32: one rounding to float16 */
#define TP_KERNELS struct twopass_f16_kernels
#define TP_PUB(name, suffix) twopass_##name##_f16##suffix
#include "softmax_template.h"
