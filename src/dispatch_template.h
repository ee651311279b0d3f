/* The registry and per-level tables of one dtype, included once per dtype by dispatch.c with
 *   TD_DT, TD_DTU   the dtype's name in lower and upper case (f32 and F32, ...)
 * from which the names below come:
 *   TD_KERNELS   the dtype's list from kernels.h (TWOPASS_F32_KERNELS ...)
 *   TD_OPS       its op list (TWOPASS_F32_OPS ...)
 *   TD_RNAME, TD_VNAME, TD_NNAME   its name makers
 *   TD(a, b)     a name of this dtype: TD(twopass, kernels_for) -> twopass_f32_kernels_for
 *   TD_TABLE     its table type (struct twopass_f32_kernels ...), TD_FN(op) its op's function type
 */
#define TD_PASTE(a, b, c) TD_PASTE_(a, b, c) /* a##b##c after expanding a, b and c */
#define TD_PASTE_(a, b, c) a##b##c
#define TD_KERNELS TD_PASTE(TWOPASS_, TD_DTU, _KERNELS)
#define TD_OPS TD_PASTE(TWOPASS_, TD_DTU, _OPS)
#define TD_RNAME TD_PASTE(TWOPASS_, TD_DTU, _RNAME)
#define TD_VNAME TD_PASTE(TWOPASS_, TD_DTU, _VNAME)
#define TD_NNAME TD_PASTE(TWOPASS_, TD_DTU, _NNAME)
#define TD(a, b) TD_PASTE(a, TD_PASTE(_, TD_DT, _), b)
#define TD_TABLE struct TD(twopass, kernels)
#define TD_FN(op) TD(twopass, op##_fn)

#define TD_REGISTER_R(op, isa, u, acc)                                                             \
    {TWOPASS_XSTR(TD_RNAME(op, isa, u, acc)), TWOPASS_F32_OP_##op, TWOPASS_LEVEL_OF_##isa, u, acc, 0, \
     (void (*)(void))TD_RNAME(op, isa, u, acc)},
#define TD_REGISTER_V(op, isa, u)                                                                  \
    {TWOPASS_XSTR(TD_VNAME(op, isa, u)), TWOPASS_F32_OP_##op, TWOPASS_LEVEL_OF_##isa, u, 0, 0,      \
     (void (*)(void))TD_VNAME(op, isa, u)},
#define TD_REGISTER_N(op, isa, u)                                                                  \
    {TWOPASS_XSTR(TD_NNAME(op, isa, u)), TWOPASS_F32_OP_##op, TWOPASS_LEVEL_OF_##isa, u, 0, 1,      \
     (void (*)(void))TD_NNAME(op, isa, u)},

#if defined(TWOPASS_HAVE_X86_KERNELS)
static const struct twopass_kernel_info TD(registry, ) [] = {
    TD_KERNELS(TD_REGISTER_R, TD_REGISTER_V, TD_REGISTER_N)};
static const size_t TD(registry_count, ) = sizeof(TD(registry, )) / sizeof(TD(registry, )[0]);
#else
static const struct twopass_kernel_info TD(registry, ) [1];
static const size_t TD(registry_count, ) = 0;
#endif
#undef TD_REGISTER_R
#undef TD_REGISTER_V
#undef TD_REGISTER_N

const struct twopass_kernel_info* TD(twopass, kernel_registry)(size_t* count)
{
    *count = TD(registry_count, );
    return TD(registry, );
}

int TD(twopass, kernels_with)(TD_TABLE* t, const struct twopass_kernel_info* v)
{
    switch (v->op) {
#define TD_SET_OP(op)                                                                              \
    case TWOPASS_F32_OP_##op:                                                                      \
        t->op = (TD_FN(op)*)v->fn;                                                                 \
        break;
        TD_OPS(TD_SET_OP)
#undef TD_SET_OP
    default:
        return -1;
    }
    t->names[v->op] = v->name;
    return 0;
}

static TD_TABLE TD(tables, )[TWOPASS_LEVEL_COUNT], TD(streaming_tables, )[TWOPASS_LEVEL_COUNT];
static int TD(tables_built, );

/* Fill each level's table with the first listed variant of each op, and its streaming table with
 * the same but the first listed non-temporal variant where an op has one. twopass.kernels asks for
 * the tables once at import, under the GIL, so this runs before any nogil caller; the tables are
 * read-only afterwards. */
static void TD(build_tables, )(void)
{
    for (size_t i = TD(registry_count, ); i-- > 0;) { /* backwards, so the first listed wins */
        const struct twopass_kernel_info* r = &TD(registry, )[i];
        if (!r->streaming) {
            TD(twopass, kernels_with)(&TD(tables, )[r->level], r);
        }
    }
    for (int level = 0; level < TWOPASS_LEVEL_COUNT; level++) {
        TD(streaming_tables, )[level] = TD(tables, )[level];
        TD(tables, )[level].streaming = TD(streaming_tables, )[level].streaming = &TD(streaming_tables, )[level];
    }
    for (size_t i = TD(registry_count, ); i-- > 0;) {
        const struct twopass_kernel_info* r = &TD(registry, )[i];
        if (r->streaming) {
            TD(twopass, kernels_with)(&TD(streaming_tables, )[r->level], r);
        }
    }
    TD(tables_built, ) = 1;
}

const TD_TABLE* TD(twopass, kernels_for)(enum twopass_level level)
{
    if (!TD(tables_built, )) {
        TD(build_tables, )();
    }
    if (level <= TWOPASS_LEVEL_PYTHON || level >= TWOPASS_LEVEL_COUNT) {
        return NULL;
    }
    return TD(tables, )[level].rmax != NULL ? &TD(tables, )[level] : NULL;
}

#undef TD_PASTE
#undef TD_PASTE_
#undef TD_KERNELS
#undef TD_OPS
#undef TD_RNAME
#undef TD_VNAME
#undef TD_NNAME
#undef TD
#undef TD_TABLE
#undef TD_FN
