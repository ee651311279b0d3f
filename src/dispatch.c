/* The registry of every compiled kernel variant and the kernel table of each ISA level, built from
 * the lists in kernels.h (one list: the first variant listed for an op and ISA is the default).
 * Baseline x86-64 code: it only takes the kernels' addresses, it never runs them. */
#include <string.h>
#include "twopass/softmax.h"

#define TWOPASS_LEVEL_OF_avx512f TWOPASS_LEVEL_AVX512F
#define TWOPASS_LEVEL_OF_avx2 TWOPASS_LEVEL_AVX2
#define TWOPASS_STR(x) #x
#define TWOPASS_XSTR(x) TWOPASS_STR(x)

#define TWOPASS_REGISTER_R(op, isa, u, acc)                                                        \
    {TWOPASS_XSTR(TWOPASS_F32_RNAME(op, isa, u, acc)), TWOPASS_F32_OP_##op, TWOPASS_LEVEL_OF_##isa, \
     u, acc, 0, (void (*)(void))TWOPASS_F32_RNAME(op, isa, u, acc)},
#define TWOPASS_REGISTER_V(op, isa, u)                                                             \
    {TWOPASS_XSTR(TWOPASS_F32_VNAME(op, isa, u)), TWOPASS_F32_OP_##op, TWOPASS_LEVEL_OF_##isa, u, 0, 0, \
     (void (*)(void))TWOPASS_F32_VNAME(op, isa, u)},
#define TWOPASS_REGISTER_N(op, isa, u)                                                             \
    {TWOPASS_XSTR(TWOPASS_F32_NNAME(op, isa, u)), TWOPASS_F32_OP_##op, TWOPASS_LEVEL_OF_##isa, u, 0, 1, \
     (void (*)(void))TWOPASS_F32_NNAME(op, isa, u)},

#if defined(TWOPASS_HAVE_X86_KERNELS)
static const struct twopass_kernel_info registry[] = {
    TWOPASS_F32_KERNELS(TWOPASS_REGISTER_R, TWOPASS_REGISTER_V, TWOPASS_REGISTER_N)
};
static const size_t registry_count = sizeof(registry) / sizeof(registry[0]);
#else
static const struct twopass_kernel_info registry[1];
static const size_t registry_count = 0;
#endif

const struct twopass_kernel_info* twopass_f32_kernel_registry(size_t* count)
{
    *count = registry_count;
    return registry;
}

int twopass_f32_kernels_with(struct twopass_f32_kernels* t, const struct twopass_kernel_info* v)
{
    switch (v->op) {
#define TWOPASS_SET_OP(op)                                                                         \
    case TWOPASS_F32_OP_##op:                                                                      \
        t->op = (twopass_f32_##op##_fn*)v->fn;                                                     \
        break;
        TWOPASS_F32_OPS(TWOPASS_SET_OP)
#undef TWOPASS_SET_OP
    default:
        return -1;
    }
    t->names[v->op] = v->name;
    return 0;
}

static struct twopass_f32_kernels tables[TWOPASS_LEVEL_COUNT], streaming_tables[TWOPASS_LEVEL_COUNT];
static int tables_built = 0;

/* Fill each level's table with the first listed variant of each op, and its streaming table with
 * the same but the first listed non-temporal variant where an op has one. twopass.kernels calls
 * twopass_f32_kernels_for once at import, under the GIL, so this runs before any nogil caller;
 * the tables are read-only afterwards. */
static void build_tables(void)
{
    for (size_t i = registry_count; i-- > 0;) { /* backwards, so the first listed wins */
        if (!registry[i].streaming) {
            twopass_f32_kernels_with(&tables[registry[i].level], &registry[i]);
        }
        if (registry[i].op == TWOPASS_F32_OP_raddextexp_columns) {
            tables[registry[i].level].columns_width = (size_t)registry[i].unroll;
        }
    }
    for (int level = 0; level < TWOPASS_LEVEL_COUNT; level++) {
        streaming_tables[level] = tables[level];
        tables[level].streaming = streaming_tables[level].streaming = &streaming_tables[level];
    }
    for (size_t i = registry_count; i-- > 0;) {
        if (registry[i].streaming) {
            twopass_f32_kernels_with(&streaming_tables[registry[i].level], &registry[i]);
        }
    }
    tables_built = 1;
}

const struct twopass_f32_kernels* twopass_f32_kernels_for(enum twopass_level level)
{
    if (!tables_built) {
        build_tables();
    }
    if (level <= TWOPASS_LEVEL_PYTHON || level >= TWOPASS_LEVEL_COUNT) {
        return NULL;
    }
    return tables[level].rmax != NULL ? &tables[level] : NULL;
}
