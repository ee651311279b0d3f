/* kernel_cycles: ns per element and cycles per 8-float vector of every float32 AVX2 row kernel on
 * an L1-resident buffer (compute-bound: what the exp cores cost). A standalone program, not part of
 * the package build; it compiles the kernels from source with the package's flags.
 *
 *   gcc -O3 -fno-math-errno -mavx2 -mfma -Iinclude benchmarks/kernel_cycles.c -o /tmp/kernel_cycles \
 *       -lm && /tmp/kernel_cycles [n] [range]
 *
 * n: elements (default 2048: 8 KiB in, 8 KiB out); range: inputs uniform in [-range, range]
 * (default 100, as the sweep). OUT_PAST=d in the environment places the output d bytes past the
 * input modulo 4096 (4K aliasing, include/twopass/common.h; default: 2048). The kernels run with
 * MXCSR.FTZ, as the package's drivers run them; NO_FTZ set in the environment (to any value) runs
 * them without, to compare. The core clock is measured with a chain of dependent integer adds (one
 * per cycle), so cycles are core cycles whatever the TSC rate. Each figure is the median of 15
 * samples of about 2 ms each; variants listed first in kernels.h (the dispatcher's) are marked with
 * '*'.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "../src/avx2/f32_kernels_avx2.c"

/* The exp passes' prefetch distance, which the package sets per CPU at import (dispatch.c): here
 * 8 KiB, or $PREFETCH_AHEAD bytes. In L1 it makes no difference. */
size_t twopass_prefetch_ahead = TWOPASS_PREFETCH_AHEAD;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* Core GHz: a chain of 4e8 dependent adds takes 4e8 cycles (4 per iteration hide the loop's own). */
static double core_ghz(void)
{
    double best = 0;
    for (int r = 0; r < 5; r++) {
        unsigned long k = 100000000, a = 0;
        double t0 = now();
        __asm__ volatile("1: add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tdec %1\n\tjnz 1b"
                         : "+r"(a), "+r"(k));
        double ghz = 4e8 / (now() - t0) / 1e9;
        if (ghz > best) best = ghz;
    }
    return best;
}

static size_t N;
static float *X, *Y, *Z, *E, SUM[2];
static volatile float SINK;

static int cmp(const void* a, const void* b)
{
    double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}

typedef void run_fn(void* f);
static double time_kernel(run_fn* run, void* f)
{
    double t0 = now();
    size_t reps = 0;
    while (now() - t0 < 0.002) run(f), reps++;
    double samples[15];
    for (int s = 0; s < 15; s++) {
        t0 = now();
        for (size_t r = 0; r < reps; r++) run(f);
        samples[s] = (now() - t0) / reps;
    }
    qsort(samples, 15, sizeof(double), cmp);
    return samples[7] / N * 1e9;
}

/* One runner per kernel type, with the arguments the softmax drivers pass: shift 0 and EXPONENT =
 * round(max * log2 e); the scales 1 / sum; vscale scales E, the output of raddstoreexpminusmax
 * kept aside (not Y, which the kernels before it overwrite with products that may be subnormal:
 * subnormal inputs cost vscale twice its time on this CPU), into Z. */
static float EXPONENT, SCALE, EXT_SCALE, EXT_EXPONENT;
static void run_rmax(void* f) { SINK = ((twopass_f32_rmax_fn*)f)(N, X); }
static void run_raddextexp(void* f) { ((twopass_f32_raddextexp_fn*)f)(N, X, SUM); }
static void run_vscaleextexp(void* f)
{
    ((twopass_f32_vscaleextexp_fn*)f)(N, X, Y, EXT_SCALE, EXT_EXPONENT);
}
static void run_raddexpminusmax(void* f) { SINK = ((twopass_f32_raddexpminusmax_fn*)f)(N, X, 0, EXPONENT); }
static void run_raddstoreexpminusmax(void* f)
{
    SINK = ((twopass_f32_raddstoreexpminusmax_fn*)f)(N, X, Y, 0, EXPONENT, NULL);
}
static void run_vscaleexpminusmax(void* f)
{
    ((twopass_f32_vscaleexpminusmax_fn*)f)(N, X, Y, 0, EXPONENT, SCALE);
}
static void run_vscale(void* f) { ((twopass_f32_vscale_fn*)f)(N, E, Z, SCALE); }
static void run_vsubc(void* f) { ((twopass_f32_vsubc_fn*)f)(N, X, Y, 1.5f, 0x1p-20f); }
static void run_raddonline(void* f) { ((twopass_f32_raddonline_fn*)f)(N, X, SUM); }
/* the whole softmax of rows of 64 floats (N / 64 of them) */
static void run_softmax_short_rows(void* f)
{
    ((twopass_f32_softmax_short_rows_fn*)f)(N / 64, 64, X, 64, Y, 64);
}

static double GHZ;
static const char* SEEN[64];
static int NSEEN;

static void report(const char* op, const char* name, run_fn* run, void* f)
{
    int first = 1;
    for (int i = 0; i < NSEEN; i++) first &= strcmp(SEEN[i], op) != 0;
    if (first) SEEN[NSEEN++] = op;
    const double ns = time_kernel(run, f);
    printf("%c %-48s %7.3f ns/elem %6.2f cycles/vector\n", first ? '*' : ' ', name, ns, ns * GHZ * 8);
}

#define BENCH_R(op, isa, u, acc) report(#op, #op "_u" #u "_acc" #acc, run_##op, (void*)TWOPASS_F32_RNAME(op, isa, u, acc));
#define BENCH_V(op, isa, u) BENCH_V_##op(op, isa, u)
#define BENCH_N(op, isa, u)
#define BENCH_V_vscaleextexp(op, isa, u) report(#op, #op "_u" #u, run_##op, (void*)TWOPASS_F32_VNAME(op, isa, u));
#define BENCH_V_vscaleexpminusmax BENCH_V_vscaleextexp
#define BENCH_V_vscale BENCH_V_vscaleextexp
#define BENCH_V_vsubc BENCH_V_vscaleextexp
#define BENCH_V_raddextexp_columns(op, isa, u)
#define BENCH_V_vscaleextexp_columns(op, isa, u)
#define BENCH_V_vsubc_columns(op, isa, u)

int main(int argc, char** argv)
{
    N = argc > 1 ? strtoul(argv[1], NULL, 10) : 2048;
    const float range = argc > 2 ? strtof(argv[2], NULL) : 100.0f;
    X = aligned_alloc(64, (N * 4 + 63) / 64 * 64);
    const size_t out_past = getenv("OUT_PAST") ? strtoul(getenv("OUT_PAST"), NULL, 10) % 4096 : 2048;
    float* y_buffer = aligned_alloc(4096, (N * 4 + 2 * 4096 - 1) / 4096 * 4096);
    Y = (float*)((char*)y_buffer + ((uintptr_t)X + out_past) % 4096); /* X is 64-aligned: Y is 4-aligned */
    Z = aligned_alloc(64, (N * 4 + 63) / 64 * 64);
    E = aligned_alloc(64, (N * 4 + 63) / 64 * 64);
    srand(1);
    float m = -INFINITY;
    for (size_t i = 0; i < N; i++) {
        X[i] = range * (2.0f * rand() / (float)RAND_MAX - 1.0f);
        m = X[i] > m ? X[i] : m;
    }
    EXPONENT = rintf(m * TWOPASS_F32_LOG2E);
    SCALE = 1.0f / TWOPASS_F32_RNAME(raddstoreexpminusmax, avx2, 64, 4)(N, X, E, 0, EXPONENT, NULL);
    TWOPASS_F32_RNAME(raddextexp, avx2, 32, 2)(N, X, SUM);
    EXT_SCALE = 1.0f / SUM[0], EXT_EXPONENT = SUM[1];
    if (getenv("PREFETCH_AHEAD")) twopass_prefetch_ahead = strtoul(getenv("PREFETCH_AHEAD"), NULL, 10);
    /* MXCSR.FTZ, as the package's drivers run the kernels (softmax.c): vscale leaves the flush of
     * its products below 2^-126 to it, and the exp passes their last few. */
    if (!getenv("NO_FTZ")) _mm_setcsr(_mm_getcsr() | _MM_FLUSH_ZERO_ON);
    GHZ = core_ghz();
    printf("n = %zu, inputs in [-%g, %g], output %zu bytes past the input mod 4096, core clock %.2f GHz\n", N,
           range, range, out_past, GHZ);
    TWOPASS_F32_AVX2_KERNELS(BENCH_R, BENCH_V, BENCH_N)
    return 0;
}
