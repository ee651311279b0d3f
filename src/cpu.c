/* CPU feature detection: CPUID for what the CPU has, then OSXSAVE and XGETBV for what the OS
 * saves on a context switch (CPUID alone is wrong under some hypervisors). Baseline x86-64 code. */
#include <string.h>
#include "twopass/softmax.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static unsigned long long read_xcr0(void)
{
    unsigned int eax, edx;
    /* xgetbv with ecx = 0, written as bytes so the file needs no -mxsave. */
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

void twopass_detect_cpu(struct twopass_cpu_features* f)
{
    unsigned int eax, ebx, ecx, edx, max_leaf;
    memset(f, 0, sizeof(*f));
    max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf >= 1) { /* leaf 0: the vendor string in EBX, EDX, ECX */
        __cpuid(0, eax, ebx, ecx, edx);
        f->intel = ebx == 0x756e6547u && edx == 0x49656e69u && ecx == 0x6c65746eu; /* "Genu" "ineI" "ntel" */
    }
    if (max_leaf < 1 || !__get_cpuid(1, &eax, &ebx, &ecx, &edx)) {
        return;
    }
    f->sse2 = (edx >> 26) & 1;
    f->sse4_1 = (ecx >> 19) & 1;
    f->fma = (ecx >> 12) & 1;
    f->avx = (ecx >> 28) & 1;
    f->f16c = (ecx >> 29) & 1;
    const int osxsave = (ecx >> 27) & 1;
    if (osxsave) {
        const unsigned long long xcr0 = read_xcr0();
        f->os_ymm = (xcr0 & 0x06) == 0x06;
        f->os_zmm = (xcr0 & 0xE6) == 0xE6;
    }
    if (max_leaf >= 7) {
        __cpuid_count(7, 0, eax, ebx, ecx, edx);
        f->avx2 = (ebx >> 5) & 1;
        f->avx512f = (ebx >> 16) & 1;
        f->avx512dq = (ebx >> 17) & 1;
        f->avx512bw = (ebx >> 30) & 1;
        f->avx512vl = (ebx >> 31) & 1;
    }
}

#else /* not x86: no kernels */

void twopass_detect_cpu(struct twopass_cpu_features* f) { memset(f, 0, sizeof(*f)); }

#endif

enum twopass_level twopass_best_level(const struct twopass_cpu_features* f)
{
    /* F16C (float16 loads and stores) came before AVX2 on every x86 CPU: part of the avx2 level */
    const int avx2 = f->avx && f->avx2 && f->fma && f->f16c && f->os_ymm;
    if (avx2 && f->avx512f && f->os_zmm) {
        return TWOPASS_LEVEL_AVX512F;
    }
    if (avx2) {
        return TWOPASS_LEVEL_AVX2;
    }
    return TWOPASS_LEVEL_PYTHON;
}
