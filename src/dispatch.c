/* The registry of every compiled kernel variant and the kernel table of each ISA level, built from
 * the lists in kernels.h (one list per dtype: the first variant listed for an op and ISA is the
 * default). One source for every dtype: dispatch_template.h, included once per dtype.
 * Baseline x86-64 code: it only takes the kernels' addresses, it never runs them. */
#include <string.h>
#include "twopass/common.h"
#include "twopass/softmax.h"

#define TWOPASS_LEVEL_OF_avx512f TWOPASS_LEVEL_AVX512F
#define TWOPASS_LEVEL_OF_avx2 TWOPASS_LEVEL_AVX2
#define TWOPASS_STR(x) #x
#define TWOPASS_XSTR(x) TWOPASS_STR(x)

size_t twopass_prefetch_ahead = TWOPASS_PREFETCH_AHEAD;

void twopass_tune_for_cpu(const struct twopass_cpu_features* features)
{
    twopass_prefetch_ahead = features->intel ? TWOPASS_PREFETCH_AHEAD_INTEL : TWOPASS_PREFETCH_AHEAD; /* common.h */
}

#define TD_DT f32
#define TD_DTU F32
#include "dispatch_template.h"
#undef TD_DT
#undef TD_DTU

#define TD_DT f64
#define TD_DTU F64
#include "dispatch_template.h"
#undef TD_DT
#undef TD_DTU

#define TD_DT f16
#define TD_DTU F16
#include "dispatch_template.h"
#undef TD_DT
#undef TD_DTU
