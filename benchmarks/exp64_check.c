/* exp64_check: accuracy and speed of the float64 exp cores (src/avx2/f64_exp_avx2.h,
 * src/avx512f/f64_exp_avx512f.h). A standalone program, not part of the package build.
 *
 * Build and run from the repository root. AVX-512F on a CPU without it, through SIMDe (Debian's
 * libsimde-dev) and the test shim tests/avx512_emulation/immintrin.h, as tests/emulated_avx512.py does:
 *
 *   gcc -O2 -mavx2 -mfma -Wno-psabi -Iinclude -Itests/avx512_emulation benchmarks/exp64_check.c \
 *       -o /tmp/exp64_check -lquadmath -lm && /tmp/exp64_check
 *
 * On a CPU with AVX-512F, natively: -mavx2 -mfma -mavx512f and no -Itests/avx512_emulation.
 * Without either, the AVX-512F core is skipped. Options:
 *   --samples N          samples per form for the AVX2 core (default 1e8)
 *   --samples-avx512 N   the same for the AVX-512F core (default: as --samples)
 *   --seed S             sample generator seed (default 1)
 *   --no-bench | --bench-only
 * Exit status 1 if any core is more than 2 ULP off on any form, or a special value is wrong.
 *
 * Forms checked, each against a long double reference (x87 80-bit, 11 bits beyond double; the
 * reductions of the references are done in __float128, and a subset is checked against expq):
 *   exp      y = exp(x) over [-745.2, 709.8]: uniform, near 0, all magnitudes of x, subnormal
 *            results, the overflow and underflow thresholds, the 2^-1022 boundary, and x near
 *            (k + 1/2) ln2 and k ln2 (where n changes and where t ~ 0)
 *   extexp   (m, e) with exp(x) = m * 2^e: the same x plus |x| up to 2^40; the error is that of m
 *            against exp(x - e ln2); e must be an integer and m in [0.7, 1.42]
 *   shifted  exp(x - shift) * 2^-exponent with (shift, exponent) split from a max M as softmax.c
 *            does, x = M - d, d in [0, 760]; a 0 is accepted where the exact value is below 2^-1021
 *            (the cores flush p * 2^d for d < -1022: AVX2 explicitly, AVX-512F by MXCSR.FTZ, set here
 *            around its calls as the drivers set it)
 * The error is |y - ref| / ulp(ref), ulp(ref) the spacing of doubles at ref (2^-1074 below 2^-1022;
 * an infinite y counts as 2^1024).
 *
 * The timings (AVX2, and AVX-512F only when native) run the cores over 2048 doubles (16 KiB, in L1)
 * repeatedly, single thread, the float32 cores (f32_exp_avx2.h) in the same loops for comparison.
 */
#define _GNU_SOURCE
#include <immintrin.h>
#include <float.h>
#include <math.h>
#include <quadmath.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(TWOPASS_TEST_EMULATED_IMMINTRIN_H)
#define EXP64_AVX512 "avx512f (SIMDe)"
/* _mm512_scalef_pd is the test shim's (tests/avx512_emulation/immintrin.h), which follows the SDM. */
#elif defined(__AVX512F__)
#define EXP64_AVX512 "avx512f"
#define EXP64_AVX512_NATIVE 1
#endif

#include "../src/avx2/f64_exp_avx2.h"
#include "../src/avx2/f32_exp_avx2.h"
#ifdef EXP64_AVX512
#include "../src/avx512f/f64_exp_avx512f.h"
#endif

/* ------------------------------------------------------------------------------------------- */
/* Random samples */

static uint64_t rng_state;

static uint64_t rng_next(void) /* splitmix64 */
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform(double lo, double hi) /* [lo, hi) */
{
    return lo + (hi - lo) * ((double)(rng_next() >> 11) * 0x1.0p-53);
}

static double random_sign(double v)
{
    return (rng_next() & 1) ? -v : v;
}

#define DOMAIN_LO -745.2
#define DOMAIN_HI 709.8

/* One argument for the plain exp, of kind c (0..15). */
static double sample_exp(unsigned c)
{
    const long double ln2 = 0.693147180559945309417232121458176568L;
    switch (c) {
    case 7: return uniform(-40.0, 40.0);
    case 8: return random_sign(exp2(uniform(-60.0, 0.0)));                 /* near 0 */
    case 9: {                                                               /* every magnitude */
        const double x = random_sign(exp2(uniform(-1074.0, 9.47)));
        return x < DOMAIN_LO || x > DOMAIN_HI ? uniform(-1.0, 1.0) : x;
    }
    case 10: return uniform(DOMAIN_LO, -708.39);                           /* subnormal results */
    case 11: return uniform(709.0, DOMAIN_HI);                             /* overflow threshold */
    case 12: return uniform(DOMAIN_LO, -744.0);                            /* underflow to 0 */
    case 13: return uniform(-708.6, -708.2);                               /* 2^-1022 */
    case 14: {                                                              /* n changes: (k + 1/2) ln2 */
        const double k = floor(uniform(-1075.0, 1024.0));
        return (double)((k + 0.5L) * ln2) * (1.0 + uniform(-0x1.0p-40, 0x1.0p-40));
    }
    case 15: {                                                              /* t ~ 0: k ln2 */
        const double k = floor(uniform(-1075.0, 1025.0));
        return (double)(k * ln2) * (1.0 + uniform(-0x1.0p-45, 0x1.0p-45));
    }
    default: return uniform(DOMAIN_LO, DOMAIN_HI);                         /* 0..6: uniform */
    }
}

/* One argument for the extended exponent, of kind c (0..15). */
static double sample_extexp(unsigned c)
{
    const long double ln2 = 0.693147180559945309417232121458176568L;
    switch (c) {
    case 8: case 9: case 10: case 11: return random_sign(exp2(uniform(-30.0, 40.0)));
    case 12: case 13: return uniform(-0x1.0p40, 0x1.0p40);
    case 14: {                                                              /* (k + 1/2) ln2, large k */
        const double k = floor(uniform(-0x1.7p40, 0x1.7p40));
        return (double)((k + 0.5L) * ln2) + uniform(-0x1.0p-11, 0x1.0p-11);
    }
    case 15: return uniform(-0x1.0p20, 0x1.0p20);
    default: return sample_exp((unsigned)(rng_next() & 15));                /* 0..7: as exp */
    }
}

/* (x, shift, exponent) for exp(x - shift) * 2^-exponent: a max M, split as softmax.c splits it. */
static void sample_shifted(unsigned c, double* x, double* shift, double* exponent)
{
    double m;
    switch (c & 3) {
    case 0: m = uniform(-800.0, 800.0); break;
    case 1: m = uniform(-1e6, 1e6); break;
    case 2: m = random_sign(exp2(uniform(0.0, 40.0))); break;              /* both sides of 2^37 */
    default: m = uniform(-40.0, 40.0); break;
    }
    const unsigned k = (unsigned)(rng_next() % 10);
    *x = k == 0 ? m : m - (k < 3 ? uniform(0.0, 40.0) : uniform(0.0, 760.0));
    if (fabs(m) <= TWOPASS_F64_EXP_SHIFT_LIMIT) {
        *shift = 0.0, *exponent = nearbyint(m * TWOPASS_F64_LOG2E);
    } else {
        *shift = m, *exponent = 0.0;
    }
}

/* ------------------------------------------------------------------------------------------- */
/* References and errors */

/* exp(x - s - e ln2) in long double. The argument is reduced in __float128 (exact for the cases that
 * matter: |e| < 2^42, x - s exact) to r = t - k ln2 with |r| <= ln2/2: a long double t itself would
 * carry an absolute error of up to |t| 2^-64, 0.3 double ULP of exp(t) at |t| ~ 700. */
static long double ref_scaled(double x, double s, double e)
{
    const __float128 t = ((__float128)x - (__float128)s) - (__float128)e * M_LN2q;
    if (t < -20000) return 0.0L;
    if (t > 20000) return INFINITY;
    const __float128 k = roundq(t / M_LN2q);
    return ldexpl(expl((long double)(t - k * M_LN2q)), (int)k);
}

static double ulp_error(double y, long double ref)
{
    if (isnan(ref)) return isnan(y) ? 0.0 : INFINITY;
    if (isnan(y)) return INFINITY;
    const long double top = 0x1.0p1024L;
    if (isinf(y) && ref >= top - 0x1.0p970L) return 0.0; /* rounds to +inf */
    const long double yy = isinf(y) ? (y > 0 ? top : -top) : (long double)y;
    const long double r = ref < (long double)DBL_MAX ? ref : (long double)DBL_MAX;
    const long double ulp = r < 0x1.0p-1022L ? 0x1.0p-1074L : ldexpl(1.0L, ilogbl(r) - 52);
    return (double)(fabsl(yy - ref) / ulp);
}

struct stats {
    const char* isa;
    const char* form;
    double max_err, arg, arg2, arg3, sum_err;
    unsigned long long count, over_half, over_one, flushed;
};

static void record(struct stats* s, double err, double x, double a2, double a3)
{
    s->count++;
    s->sum_err += err;
    s->over_half += err > 0.5;
    s->over_one += err > 1.0;
    if (err > s->max_err || (isnan(err) && !isnan(s->max_err))) {
        s->max_err = err, s->arg = x, s->arg2 = a2, s->arg3 = a3;
    }
}

/* ------------------------------------------------------------------------------------------- */
/* The cores on arrays (n a multiple of 8) */

static void avx2_exp(size_t n, const double* x, double* y)
{
    for (size_t i = 0; i < n; i += 4) _mm256_storeu_pd(y + i, f64x4_exp(_mm256_loadu_pd(x + i)));
}

static void avx2_extexp(size_t n, const double* x, double* m, double* e)
{
    for (size_t i = 0; i < n; i += 4) {
        __m256d vn;
        _mm256_storeu_pd(m + i, f64x4_extexp(_mm256_loadu_pd(x + i), &vn));
        _mm256_storeu_pd(e + i, vn);
    }
}

static void avx2_shifted(size_t n, const double* x, const double* s, const double* e, double* y)
{
    for (size_t i = 0; i < n; i += 4) {
        _mm256_storeu_pd(y + i, f64x4_exp_shifted(_mm256_loadu_pd(x + i), _mm256_loadu_pd(s + i),
                                                  _mm256_loadu_pd(e + i)));
    }
}

static void avx2_mul_exp2(size_t n, const double* v, const double* d, double* y)
{
    for (size_t i = 0; i < n; i += 4) {
        _mm256_storeu_pd(y + i, f64x4_mul_exp2(_mm256_loadu_pd(v + i), _mm256_loadu_pd(d + i)));
    }
}

/* 1 if f64x4_tail_mask(rem) selects exactly the first rem lanes, for every rem in 1..3 */
static int avx2_tail_mask_ok(void)
{
    for (size_t rem = 1; rem < 4; rem++) {
        long long lanes[4];
        _mm256_storeu_si256((__m256i*)lanes, f64x4_tail_mask(rem));
        for (size_t i = 0; i < 4; i++) {
            if (lanes[i] != (i < rem ? -1 : 0)) return 0;
        }
    }
    return 1;
}

#ifdef EXP64_AVX512
static void avx512_exp(size_t n, const double* x, double* y)
{
    for (size_t i = 0; i < n; i += 8) _mm512_storeu_pd(y + i, f64x8_exp(_mm512_loadu_pd(x + i)));
}

static void avx512_extexp(size_t n, const double* x, double* m, double* e)
{
    for (size_t i = 0; i < n; i += 8) {
        __m512d vn;
        _mm512_storeu_pd(m + i, f64x8_extexp(_mm512_loadu_pd(x + i), &vn));
        _mm512_storeu_pd(e + i, vn);
    }
}

/* The AVX-512F mul_exp2 leaves results below 2^-1022 to MXCSR.FTZ, which every caller of the kernels
 * sets (softmax.c): so do its two checks here. */
static void avx512_shifted(size_t n, const double* x, const double* s, const double* e, double* y)
{
    const unsigned int csr = _mm_getcsr();
    _mm_setcsr(csr | _MM_FLUSH_ZERO_ON);
    for (size_t i = 0; i < n; i += 8) {
        _mm512_storeu_pd(y + i, f64x8_exp_shifted(_mm512_loadu_pd(x + i), _mm512_loadu_pd(s + i),
                                                  _mm512_loadu_pd(e + i)));
    }
    _mm_setcsr(csr);
}

static void avx512_mul_exp2(size_t n, const double* v, const double* d, double* y)
{
    const unsigned int csr = _mm_getcsr();
    _mm_setcsr(csr | _MM_FLUSH_ZERO_ON);
    for (size_t i = 0; i < n; i += 8) {
        _mm512_storeu_pd(y + i, f64x8_mul_exp2(_mm512_loadu_pd(v + i), _mm512_loadu_pd(d + i)));
    }
    _mm_setcsr(csr);
}

static int avx512_tail_mask_ok(void)
{
    for (size_t rem = 1; rem < 8; rem++) {
        if ((unsigned)f64x8_tail_mask(rem) != (1u << rem) - 1u) return 0;
    }
    return 1;
}
#endif

struct core {
    const char* isa;
    void (*exp)(size_t, const double*, double*);
    void (*extexp)(size_t, const double*, double*, double*);
    void (*shifted)(size_t, const double*, const double*, const double*, double*);
    void (*mul_exp2)(size_t, const double*, const double*, double*);
    int (*tail_mask_ok)(void);
};

/* ------------------------------------------------------------------------------------------- */
/* Accuracy over random samples */

#define BATCH 4096

static void check_core(const struct core* k, unsigned long long samples, uint64_t seed, struct stats st[3])
{
    static double x[BATCH], s[BATCH], e[BATCH], y[BATCH], m[BATCH], n[BATCH];
    for (int f = 0; f < 3; f++) {
        memset(&st[f], 0, sizeof st[f]);
        st[f].isa = k->isa;
        st[f].form = f == 0 ? "exp" : f == 1 ? "extexp" : "shifted";
    }
    rng_state = seed;
    for (unsigned long long done = 0; done < samples; done += BATCH) {
        const size_t b = samples - done < BATCH ? ((size_t)(samples - done) + 7) / 8 * 8 : BATCH;
        /* exp */
        for (size_t i = 0; i < b; i++) x[i] = sample_exp((unsigned)(done + i) & 15);
        k->exp(b, x, y);
        for (size_t i = 0; i < b; i++) record(&st[0], ulp_error(y[i], expl((long double)x[i])), x[i], 0, 0);
        /* extexp */
        for (size_t i = 0; i < b; i++) x[i] = sample_extexp((unsigned)(done + i) & 15);
        k->extexp(b, x, m, n);
        for (size_t i = 0; i < b; i++) {
            double err = ulp_error(m[i], ref_scaled(x[i], 0.0, n[i]));
            if (!(n[i] == nearbyint(n[i]) && m[i] >= 0.7 && m[i] <= 1.42)) err = INFINITY;
            record(&st[1], err, x[i], n[i], 0);
        }
        /* shifted */
        for (size_t i = 0; i < b; i++) sample_shifted((unsigned)(done + i), &x[i], &s[i], &e[i]);
        k->shifted(b, x, s, e, y);
        for (size_t i = 0; i < b; i++) {
            const long double ref = ref_scaled(x[i], s[i], e[i]);
            if (y[i] == 0.0 && ref < 0x1.0p-1021L) {
                st[2].flushed++;
                record(&st[2], 0.0, x[i], s[i], e[i]);
            } else {
                record(&st[2], ulp_error(y[i], ref), x[i], s[i], e[i]);
            }
        }
    }
}

/* The long double reference against __float128 expq on a subset: its error in double ULPs. */
static double check_reference(unsigned long long samples)
{
    double worst = 0.0;
    rng_state = 12345;
    for (unsigned long long i = 0; i < samples; i++) {
        const double x = sample_exp((unsigned)i & 15);
        const __float128 q = expq((__float128)x);
        const long double l = expl((long double)x);
        const __float128 ulp = q < 0x1.0p-1022Q ? 0x1.0p-1074Q : ldexpq(1.0Q, ilogbq(q) - 52);
        const double err = (double)(fabsq((__float128)l - q) / ulp);
        if (err > worst) worst = err;
    }
    return worst;
}

/* ------------------------------------------------------------------------------------------- */
/* Special values */

static int special_failures;

static int same(double a, double b)
{
    return (isnan(a) && isnan(b)) || (a == b && signbit(a) == signbit(b));
}

static void expect(const char* isa, const char* what, double x, double got, double want)
{
    if (!same(got, want)) {
        printf("  FAIL %s %s(%a): got %a, want %a\n", isa, what, x, got, want);
        special_failures++;
    }
}

static void check_specials(const struct core* k)
{
    static const double xs[] = {NAN, INFINITY, -INFINITY, 0.0, -0.0, 0x1.0p-1074, -0x1.0p-1074, 1.0,
                                710.0, 709.78271289338397, 709.78271289338409, -746.0, -745.2,
                                -745.13321910194122, -745.13321910194110, -708.39641853226410,
                                1e300, -1e300, DBL_MAX, -DBL_MAX, 0x1.0p40, -0x1.0p40, -0x1.0p41};
    enum { N = sizeof xs / sizeof xs[0], P = (N + 7) / 8 * 8 };
    double x[P], y[P], m[P], e[P], s[P], ex[P];
    for (int i = 0; i < P; i++) x[i] = i < N ? xs[i] : 0.0;
    k->exp(P, x, y);
    k->extexp(P, x, m, e);
    for (int i = 0; i < N; i++) {
        const long double ref = expl((long double)x[i]);
        /* exp: exact cases, else the correctly rounded value (both directions of 0/inf included) */
        const double want = isnan(x[i]) ? NAN : (double)ref;
        if (isnan(x[i]) || isinf(x[i]) || fabs(x[i]) > 745.2 || x[i] == 0.0) {
            expect(k->isa, "exp", x[i], y[i], want);
        } else if (ulp_error(y[i], ref) > 1.0) {
            printf("  FAIL %s exp(%a) = %a, reference %La\n", k->isa, x[i], y[i], ref);
            special_failures++;
        }
    }
    /* extexp: NaN -> NaN m; +inf -> NaN m (float32 convention); -inf -> clamped: m finite, e ~ -1.59e12 */
    expect(k->isa, "extexp.m", NAN, m[0], NAN);
    expect(k->isa, "extexp.m", INFINITY, m[1], NAN);
    if (!(m[2] >= 0.7 && m[2] <= 1.42 && e[2] == nearbyint(TWOPASS_F64_EXTEXP_X_MIN * TWOPASS_F64_LOG2E))) {
        printf("  FAIL %s extexp(-inf) = (%a, %a)\n", k->isa, m[2], e[2]);
        special_failures++;
    }
    expect(k->isa, "extexp.m", 0.0, m[3], 1.0);
    expect(k->isa, "extexp.e", 0.0, e[3], 0.0);
    /* shifted: NaN -> NaN, -inf -> +0, x = shift -> 2^-exponent exactly */
    for (int i = 0; i < P; i++) x[i] = 0.0, s[i] = 0.0, ex[i] = 0.0;
    x[0] = NAN, x[1] = -INFINITY, x[2] = 5.0, s[2] = 5.0, ex[2] = -3.0, x[3] = 1e300, s[3] = 1e300;
    x[4] = -1e300, s[4] = 0.0, ex[4] = -1000.0;
    k->shifted(P, x, s, ex, y);
    expect(k->isa, "shifted", x[0], y[0], NAN);
    expect(k->isa, "shifted", x[1], y[1], 0.0);
    expect(k->isa, "shifted", x[2], y[2], 8.0);
    expect(k->isa, "shifted", x[3], y[3], 1.0);
    expect(k->isa, "shifted", x[4], y[4], 0.0);
    /* mul_exp2: v * 2^d for d <= 0, 0 below 2^-1022, NaN v stays NaN */
    static const double v[8] = {1.5, 1.5, 1.5, 1.0, NAN, NAN, 0.0, 0.75};
    static const double d[8] = {0.0, -1022.0, -1023.0, -INFINITY, 0.0, -2000.0, -5.0, -1074.0};
    static const double want[8] = {1.5, 0x1.8p-1022, 0.0, 0.0, NAN, NAN, 0.0, 0.0};
    k->mul_exp2(8, v, d, y);
    for (int i = 0; i < 8; i++) expect(k->isa, "mul_exp2", d[i], y[i], want[i]);
    if (!k->tail_mask_ok()) {
        printf("  FAIL %s tail_mask\n", k->isa);
        special_failures++;
    }
}

/* ------------------------------------------------------------------------------------------- */
/* Throughput */

#define BENCH_N 2048

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static volatile double bench_sink;

/* ns per element of fn over BENCH_N elements: the best of 25 runs of enough repetitions for ~20 ms
 * each (the best, as other work on the machine only ever adds time). */
static double time_ns(void (*fn)(void))
{
    unsigned reps = 1;
    for (;;) {
        const double t0 = now();
        for (unsigned r = 0; r < reps; r++) fn();
        if (now() - t0 > 0.02) break;
        reps *= 2;
    }
    double best = INFINITY;
    for (int run = 0; run < 25; run++) {
        const double t0 = now();
        for (unsigned r = 0; r < reps; r++) fn();
        const double t = (now() - t0) / reps / BENCH_N * 1e9;
        if (t < best) best = t;
    }
    return best;
}

static double bx[BENCH_N] __attribute__((aligned(64))), by[BENCH_N] __attribute__((aligned(64)));
static float fx[BENCH_N] __attribute__((aligned(64))), fy[BENCH_N] __attribute__((aligned(64)));

/* y = exp(x), 4 vectors per iteration */
static void bench_f64_exp(void)
{
    for (size_t i = 0; i < BENCH_N; i += 16) {
        TWOPASS_UNROLL for (size_t j = 0; j < 16; j += 4) {
            _mm256_store_pd(by + i + j, f64x4_exp(_mm256_load_pd(bx + i + j)));
        }
    }
}

/* sum of exp(x - shift) * 2^-exponent (three-pass, pass 2), 4 vectors and 4 accumulators */
static void bench_f64_raddexpminusmax(void)
{
    const __m256d vs = _mm256_setzero_pd(), ve = _mm256_set1_pd(14.0);
    __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
    for (size_t i = 0; i < BENCH_N; i += 16) {
        TWOPASS_UNROLL for (size_t j = 0; j < 4; j++) {
            acc[j] = _mm256_add_pd(acc[j], f64x4_exp_shifted(_mm256_load_pd(bx + i + 4 * j), vs, ve));
        }
    }
    double out[4];
    _mm256_storeu_pd(out, _mm256_add_pd(_mm256_add_pd(acc[0], acc[1]), _mm256_add_pd(acc[2], acc[3])));
    bench_sink = out[0] + out[1] + out[2] + out[3];
}

/* y = exp(x) * scale * 2^-exponent from (p, n) (two-pass, pass 2), 4 vectors per iteration */
static void bench_f64_vscaleextexp(void)
{
    const __m256d vscale = _mm256_set1_pd(0.75), ve = _mm256_set1_pd(14.0);
    for (size_t i = 0; i < BENCH_N; i += 16) {
        TWOPASS_UNROLL for (size_t j = 0; j < 16; j += 4) {
            __m256d n;
            const __m256d p = f64x4_extexp(_mm256_load_pd(bx + i + j), &n);
            _mm256_store_pd(by + i + j, f64x4_mul_exp2(_mm256_mul_pd(p, vscale), _mm256_sub_pd(n, ve)));
        }
    }
}

/* (p, n) sums (two-pass, pass 1): NV vectors per iteration into ACC accumulators, as raddextexp_impl */
#define DEFINE_RADDEXTEXP(NAME, T, W, VT, LOAD, EXTEXP, MAX, SUB, ADD, MULEXP2, SETZERO, SET1, STOREU, NV, ACC) \
    static void NAME(void)                                                                              \
    {                                                                                                   \
        VT acc_p[ACC], acc_n[ACC];                                                                      \
        for (size_t k = 0; k < ACC; k++) acc_p[k] = SETZERO(), acc_n[k] = SET1(-INFINITY);              \
        for (size_t i = 0; i < BENCH_N; i += NV * W) {                                                  \
            VT p[NV], pn[NV], e[ACC];                                                                   \
            TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) p[j] = EXTEXP(LOAD(T##x + i + j * W), &pn[j]);     \
            TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) e[k] = acc_n[k];                            \
            TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) e[j % ACC] = MAX(e[j % ACC], pn[j]);         \
            TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) acc_p[k] = MULEXP2(acc_p[k], SUB(acc_n[k], e[k])); \
            TWOPASS_UNROLL for (size_t j = 0; j < NV; j++)                                              \
                acc_p[j % ACC] = ADD(acc_p[j % ACC], MULEXP2(p[j], SUB(pn[j], e[j % ACC])));            \
            TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) acc_n[k] = e[k];                            \
        }                                                                                               \
        double s = 0.0;                                                                                 \
        for (size_t k = 0; k < ACC; k++) {                                                              \
            float tmp[16];                                                                              \
            STOREU((void*)tmp, acc_p[k]);                                                               \
            s += tmp[0];                                                                                \
        }                                                                                               \
        bench_sink = s;                                                                                 \
    }

#define STORE_PD(p, v) _mm256_storeu_pd((double*)(p), v)
DEFINE_RADDEXTEXP(bench_f64_raddextexp, b, 4, __m256d, _mm256_load_pd, f64x4_extexp, _mm256_max_pd, _mm256_sub_pd,
                  _mm256_add_pd, f64x4_mul_exp2, _mm256_setzero_pd, _mm256_set1_pd, STORE_PD, 8, 2)
/* float32's two-pass sums exp(x) 2^-e per lane by its table exp (raddextexp_impl), here with e fixed */
static void bench_f32_raddextexp(void)
{
    const struct f32x8_exp_constants c = f32x8_exp_constants(_mm256_set1_ps(14.0f));
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (size_t i = 0; i < BENCH_N; i += 32) {
        TWOPASS_UNROLL for (size_t j = 0; j < 4; j++) {
            acc[j % 2] = _mm256_add_ps(acc[j % 2], f32x8_exp_times_pow2(_mm256_load_ps(fx + i + 8 * j), c));
        }
    }
    float out[8];
    _mm256_storeu_ps(out, _mm256_add_ps(acc[0], acc[1]));
    bench_sink = out[0] + out[7];
}

static void bench_f32_raddexpminusmax(void)
{
    const __m256 vs = _mm256_setzero_ps(), ve = _mm256_set1_ps(14.0f);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (size_t i = 0; i < BENCH_N; i += 32) {
        TWOPASS_UNROLL for (size_t j = 0; j < 4; j++) {
            acc[j] = _mm256_add_ps(acc[j], f32x8_exp_shifted(_mm256_load_ps(fx + i + 8 * j), vs, ve));
        }
    }
    float out[8];
    _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    bench_sink = out[0] + out[7];
}

static void bench_f32_vscaleextexp(void)
{
    const __m256 vscale = _mm256_set1_ps(0.75f), ve = _mm256_set1_ps(14.0f);
    for (size_t i = 0; i < BENCH_N; i += 32) {
        TWOPASS_UNROLL for (size_t j = 0; j < 32; j += 8) {
            _mm256_store_ps(fy + i + j, f32x8_exp_shifted_scaled(_mm256_load_ps(fx + i + j), _mm256_setzero_ps(), ve, vscale));
        }
    }
}

#ifdef EXP64_AVX512_NATIVE
static void bench_f64x8_exp(void)
{
    for (size_t i = 0; i < BENCH_N; i += 32) {
        TWOPASS_UNROLL for (size_t j = 0; j < 32; j += 8) {
            _mm512_store_pd(by + i + j, f64x8_exp(_mm512_load_pd(bx + i + j)));
        }
    }
}

static void bench_f64x8_raddexpminusmax(void)
{
    const __m512d vs = _mm512_setzero_pd(), ve = _mm512_set1_pd(14.0);
    __m512d acc[4] = {_mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd()};
    for (size_t i = 0; i < BENCH_N; i += 32) {
        TWOPASS_UNROLL for (size_t j = 0; j < 4; j++) {
            acc[j] = _mm512_add_pd(acc[j], f64x8_exp_shifted(_mm512_load_pd(bx + i + 8 * j), vs, ve));
        }
    }
    bench_sink = _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(acc[0], acc[1]), _mm512_add_pd(acc[2], acc[3])));
}
#endif

static void run_benchmarks(void)
{
    rng_state = 99;
    for (size_t i = 0; i < BENCH_N; i++) bx[i] = uniform(-10.0, 10.0), fx[i] = (float)bx[i];
    printf("\nThroughput, one thread, %d elements (in L1) repeated, best of 25 (ns per element):\n", BENCH_N);
    printf("  %-44s %8s %8s\n", "core", "float64", "float32");
    printf("  %-44s %8.3f %8s\n", "exp(x), whole range, stored (avx2)", time_ns(bench_f64_exp), "-");
    printf("  %-44s %8.3f %8.3f\n", "sum exp(x - shift) 2^-e (raddexpminusmax)", time_ns(bench_f64_raddexpminusmax),
           time_ns(bench_f32_raddexpminusmax));
    printf("  %-44s %8.3f %8.3f\n", "(p, n) sums (raddextexp, 2 accumulators)", time_ns(bench_f64_raddextexp),
           time_ns(bench_f32_raddextexp));
    printf("  %-44s %8.3f %8.3f\n", "p * scale * 2^(n - e), stored (vscaleextexp)", time_ns(bench_f64_vscaleextexp),
           time_ns(bench_f32_vscaleextexp));
#ifdef EXP64_AVX512_NATIVE
    printf("  %-44s %8.3f %8s\n", "exp(x) (avx512f)", time_ns(bench_f64x8_exp), "-");
    printf("  %-44s %8.3f %8s\n", "sum exp(x - shift) 2^-e (avx512f)", time_ns(bench_f64x8_raddexpminusmax), "-");
#endif
}

/* ------------------------------------------------------------------------------------------- */

static void print_row(const struct stats* s, double seconds)
{
    printf("  %-16s %-8s %11llu %9.6f %8.4f %9llu %7llu  x=%a", s->isa, s->form, s->count, s->max_err,
           s->sum_err / (double)s->count, s->over_half, s->over_one, s->arg);
    if (!strcmp(s->form, "extexp")) printf(" (e=%.0f)", s->arg2);
    if (!strcmp(s->form, "shifted")) printf(" shift=%a exponent=%.0f, %llu flushed", s->arg2, s->arg3, s->flushed);
    printf("  [%.0f s]\n", seconds);
}

int main(int argc, char** argv)
{
    unsigned long long samples = 100000000ull, samples512 = 0;
    uint64_t seed = 1;
    int bench = 1, accuracy = 1, use512 = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--samples") && i + 1 < argc) samples = (unsigned long long)strtod(argv[++i], NULL);
        else if (!strcmp(argv[i], "--samples-avx512") && i + 1 < argc)
            samples512 = (unsigned long long)strtod(argv[++i], NULL);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--no-bench")) bench = 0;
        else if (!strcmp(argv[i], "--bench-only")) accuracy = 0;
        else if (!strcmp(argv[i], "--no-avx512")) use512 = 0;
        else {
            fprintf(stderr, "usage: %s [--samples N] [--samples-avx512 N] [--seed S] [--no-avx512] "
                            "[--no-bench | --bench-only]\n", argv[0]);
            return 2;
        }
    }
    if (samples512 == 0) samples512 = samples;
    int failed = 0;
    if (accuracy) {
        struct core cores[2] = {{"avx2", avx2_exp, avx2_extexp, avx2_shifted, avx2_mul_exp2, avx2_tail_mask_ok}};
        int ncores = 1;
#ifdef EXP64_AVX512
        if (use512) cores[ncores++] = (struct core){EXP64_AVX512, avx512_exp, avx512_extexp, avx512_shifted,
                                                   avx512_mul_exp2, avx512_tail_mask_ok};
#else
        (void)use512;
        printf("avx512f core not compiled (neither -mavx512f nor -Itests/avx512_emulation)\n");
#endif
        printf("Reference check: expl against expq on 1e5 samples: max %.2e double ULP\n", check_reference(100000));
        printf("Special values:\n");
        for (int c = 0; c < ncores; c++) check_specials(&cores[c]);
        printf("  %s\n", special_failures ? "FAILED" : "all as expected");
        failed |= special_failures != 0;
        printf("\nMax error in ULPs against the long double reference (seed %llu):\n", (unsigned long long)seed);
        printf("  %-16s %-8s %11s %9s %8s %9s %7s  %s\n", "isa", "form", "samples", "max ULP", "mean",
               ">0.5", ">1", "where the max is");
        for (int c = 0; c < ncores; c++) {
            struct stats st[3];
            const double t0 = now();
            check_core(&cores[c], c == 0 ? samples : samples512, seed, st);
            const double t = now() - t0;
            for (int f = 0; f < 3; f++) {
                print_row(&st[f], t);
                if (!(st[f].max_err <= 2.0)) failed = 1;
            }
        }
        printf("%s\n", failed ? "FAILED: a core is more than 2 ULP off, or a special value is wrong"
                              : "OK: every core within 2 ULP");
    }
    if (bench) run_benchmarks();
    return failed;
}
