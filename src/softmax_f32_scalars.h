/* The float32 scalars of the drivers (softmax_template.h): arithmetic type, limits and constants.
 * Shared by the float32 drivers and the float16 ones, which compute in float32. */
#define TP_T float
#define TP_F64 0
#define TP_EXPONENT_LIMIT TWOPASS_EXTEXP_EXPONENT_LIMIT
#define TP_SHIFT_LIMIT TWOPASS_EXP_SHIFT_LIMIT
#define TP_MAX FLT_MAX
#define TP_MIN FLT_MIN
#define TP_FABS fabsf
