/* quant.h - int8 / int4 weight quantization (internal): the scheme traits table, the
 * row-major quantized tensor that mirrors the file layout (docs/quant-format.md), the
 * deterministic scalar quantizers (round-to-nearest and error-minimizing search),
 * dequantization, error measures, packing into the kernel layout of kernels/qlinear.h, and
 * the scalar reference matmul every kernel path is tested against.
 *
 *     ftq_quant_params p = ftq_quant_default_params();   // q8, groups of 32, f16 scales
 *     p.scheme = FTQ_QSCHEME_Q4A; p.group = 128; p.search = 1;
 *     ftq_qtensor q;                              // row-major, as in the file
 *     int rc = ftq_qtensor_quantize(&q, w, out_dim, in_dim, &p);
 *     if (rc != FTQ_OK)
 *         return ftq_wrap_error(rc, "cannot quantize '%s'", name);
 *     ftq_qmat m;                                 // kernel layout
 *     rc = ftq_qmat_pack(&m, &q, 0);
 *     ftq_qtensor_free(&q);
 *     ...
 *     ftq_qmat_mul(y, x, &m, bias, T, scratch);   // kernels/qlinear.h
 *     ftq_qmat_free(&m);
 *
 * Value of a weight: d * (c - z), c the stored code, z the zero code, d its group's scale:
 *   q8   c = q  in [-127, 127] (I8), z = 0; plain d = max|x| / 127
 *   q4   c in [0, 15] (nibble), z = 8, so q = c - 8 in [-8, 7]; plain d = max|x| / 7
 *   q4a  c in [0, 15], z in [0, 15] per group; [lo, hi] = [min(x, 0), max(x, 0)],
 *        plain d = (hi - lo) / 15, z = round(-lo / d)
 *   q4m  ggml's Q4_1: value d * c + m, c in [0, 15], an f16 minimum m per group (z = 0);
 *        m = min(x) rounded down to f16, d = (max(x) - m) / 15 rounded up; no search. Rows
 *        need the tensor API (ftq_quantize_row refuses q4m; ftq_dequantize_row has no m)
 * Codes are c = clamp(nearbyint(x * (1 / d)) + z) (ties to even, the default rounding mode).
 * A group whose scale would be 0 or below FLT_MIN stores d = 0 and the zero code, so no
 * division by zero happens and it dequantizes to exact zeros. With f16_scales the scale is
 * rounded to f16 *before* the codes are chosen: q4 and q4a round its magnitude up so c * d
 * still covers the group; q8 takes the nearest f16 (ggml's Q8_0 scale: half the rounding
 * error, and max|x| / d stays below 127.07, so the largest element still rounds to 127 and
 * nothing is clipped; below the normal f16 range it rounds up too). The file
 * then holds exactly the scale the codes were made for, and memory (f32) and disk (F16)
 * agree bit for bit. With plain rounding every element is then within |d| / 2 of its value
 * (d the stored scale), up to float rounding.
 *
 * Why these choices (details in docs/quant-format.md):
 *   - q4 uses max|x| / 7, not ggml's signed max / -8: it guarantees the half-step bound on
 *     every element, and the -8 code stays reachable: the search tries both signs of d over
 *     max|x| / (7 + delta), delta in [-1, 1], which includes +-max|x| / 8.
 *   - q4a stores an integer u8 zero code (as GPTQ / AWQ / ONNX MatMulNBits do) rather than an
 *     f16 minimum: 0 stays exactly representable, and the kernel's zero-point correction
 *     z * sum(qx) is exact int32 arithmetic; the range is widened to contain 0 so z fits.
 *
 * Thread-safety: every function is reentrant; the tensor functions use OpenMP over rows
 * and must not be called from inside a parallel region.
 */
#ifndef FTQ_QUANT_QUANT_H
#define FTQ_QUANT_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/qlinear.h"

#define FTQ_QGROUP_ROW 0 /* one scale per row (q8 only) */

/* ---- schemes -------------------------------------------------------------------------- */

typedef struct {
    const char *name;   /* file spelling: "q8", "q4", "q4a" */
    int bits;           /* 8 or 4 */
    int cmin, cmax;     /* stored code range */
    int zero;           /* fixed zero code, or -1 when stored per group (q4a) */
    float qmax;         /* plain scale = max|x| / qmax (symmetric) or (hi - lo) / qmax */
    float delta_step;   /* search grid: divisor qmax + (i - delta_n) * delta_step, */
    int delta_n;        /*   i = 0 .. 2 delta_n */
    int search_signs;   /* 2: the search tries d < 0 too (q4: reach -8 from either side) */
    int f16_nearest;    /* 1: an f16 scale is the nearest f16 (q8, as ggml's Q8_0), 0: rounded up */
} ftq_qscheme_traits;

/* Traits of `s`; NULL if out of range. */
const ftq_qscheme_traits *ftq_qscheme_info(ftq_qscheme s);
/* Parse "q8" / "q4" / "q4a". FTQ_OK or FTQ_ENOTFOUND (no message set). */
int ftq_qscheme_from_name(const char *name, ftq_qscheme *out);

/* ---- parameters ----------------------------------------------------------------------- */

typedef struct {
    ftq_qscheme scheme;
    int group;      /* 32, 64, 128, or FTQ_QGROUP_ROW (q8 only) */
    int search;     /* 1: per group, the scale (and zero code) with the least squared error
                       among the plain one and a fixed candidate grid; never worse than 0 */
    int f16_scales; /* 1: scales rounded to f16 first (what files store) */
} ftq_quant_params;

/* q8, groups of 32, no search, f16 scales. */
ftq_quant_params ftq_quant_default_params(void);
/* FTQ_OK or FTQ_EINVAL with a message naming the bad field. */
int ftq_quant_params_check(const ftq_quant_params *p);

/* The f16 value (as f32) that a scale d is stored as: the nearest f16 of at least |d| in
 * magnitude, with d's sign. +-Inf when |d| > 65504 (callers refuse it). */
float ftq_qscale_f16(float d);
/* The same for q8: the nearest f16 (ties to even) when that is a normal f16 (>= 2^-14),
 * else ftq_qscale_f16(d) (a subnormal's relative step is too coarse: it could clip the
 * group). +-Inf when |d| >= 65520 (callers refuse it). */
float ftq_qscale_f16_nearest(float d);

/* ---- one row -------------------------------------------------------------------------- */

/* Bytes of codes for n elements: n (q8) or ceil(n / 2) (q4, q4a: element 2i in the low
 * nibble of byte i, 2i + 1 in the high nibble; an odd row's last high nibble is 0). */
size_t ftq_qrow_bytes(ftq_qscheme s, int n);
/* Groups in a row of n: ceil(n / group), or 1 per row. */
int ftq_qrow_groups(int group, int n);

static inline int ftq_q4_get(const uint8_t *row, int k)
{
    return (row[k >> 1] >> ((k & 1) * 4)) & 15;
}
static inline void ftq_q4_set(uint8_t *row, int k, int c)
{
    int sh = (k & 1) * 4;
    row[k >> 1] = (uint8_t)((row[k >> 1] & ~(15 << sh)) | ((c & 15) << sh));
}
/* q5 (rows a multiple of 32): per group of 32, 16 bytes of low nibbles as q4 (element 2i low,
 * 2i + 1 high) and then 4 bytes of fifth bits (element i: bit i % 8 of byte i / 8). */
static inline int ftq_q5_get(const uint8_t *row, int k)
{
    const uint8_t *b = row + (size_t)(k >> 5) * 20;
    int i = k & 31;
    return ((b[i >> 1] >> ((i & 1) * 4)) & 15) | ((b[16 + (i >> 3)] >> (i & 7)) & 1) << 4;
}
static inline void ftq_q5_set(uint8_t *row, int k, int c)
{
    uint8_t *b = row + (size_t)(k >> 5) * 20;
    int i = k & 31;
    ftq_q4_set(b, i, c & 15);
    b[16 + (i >> 3)] = (uint8_t)((b[16 + (i >> 3)] & ~(1 << (i & 7))) | ((c >> 4) & 1) << (i & 7));
}
/* Code k of a row of q8 (signed), q4 / q4a (nibble) or q5, and its store. */
static inline int ftq_qcode_get(ftq_qscheme s, const uint8_t *row, int k)
{
    return s == FTQ_QSCHEME_Q8 ? (int)(int8_t)row[k] : s == FTQ_QSCHEME_Q5 ? ftq_q5_get(row, k) : ftq_q4_get(row, k);
}
static inline void ftq_qcode_set(ftq_qscheme s, uint8_t *row, int k, int c)
{
    if (s == FTQ_QSCHEME_Q8)
        row[k] = (uint8_t)(int8_t)c;
    else if (s == FTQ_QSCHEME_Q5)
        ftq_q5_set(row, k, c);
    else
        ftq_q4_set(row, k, c);
}

/* Quantize n floats: codes to qs (ftq_qrow_bytes), ftq_qrow_groups scales to scales, and
 * (q4a) as many zero codes to zeros (NULL otherwise). Deterministic: the same input gives
 * the same bytes on every machine and thread count.
 * Returns FTQ_OK; FTQ_EINVAL (bad params); FTQ_ENUMERIC for a NaN / Inf element (message
 * "non-finite value nan at index 17", *bad = 17) or a scale above the f16 range (*bad = the
 * group's first index). bad may be NULL. */
int ftq_quantize_row(const ftq_quant_params *p, const float *x, int n, uint8_t *qs, float *scales,
                     uint8_t *zeros, int *bad);
/* out[i] = d * (c - z) for the n elements of a row (scalar). */
void ftq_dequantize_row(ftq_qscheme s, int group, const uint8_t *qs, const float *scales,
                        const uint8_t *zeros, int n, float *out);

/* ---- tensors -------------------------------------------------------------------------- */

/* A quantized [rows, cols] matrix, row-major, laid out as the file stores it. */
typedef struct {
    ftq_qscheme scheme;
    int rows, cols;
    int group;        /* as requested: 32 / 64 / 128 / FTQ_QGROUP_ROW */
    int gsize;        /* elements per scale (cols for per-row) */
    int ngroups;      /* scales per row */
    size_t row_bytes; /* ftq_qrow_bytes(scheme, cols) */
    uint8_t *qs;      /* [rows][row_bytes] */
    float *scales;    /* [rows][ngroups] */
    uint8_t *zeros;   /* [rows][ngroups] for q4a, else NULL */
    float *mins;      /* [rows][ngroups] group minimums for q4m (value d * c + m), else NULL */
    void *mem;        /* owning allocation */
} ftq_qtensor;

/* Allocate a tensor's buffers (contents undefined) for the layout above: what a file reader
 * fills. FTQ_EINVAL (bad scheme / group / shape) or FTQ_ENOMEM; *q is zeroed on failure. */
int ftq_qtensor_alloc(ftq_qtensor *q, ftq_qscheme scheme, int rows, int cols, int group);

/* Quantize w [rows, cols] (OpenMP over rows). On failure *q is zeroed and the message
 * names the row and column ("non-finite value inf at row 3, column 17"); the caller adds
 * the tensor name with ftq_wrap_error. FTQ_EINVAL, FTQ_ENUMERIC or FTQ_ENOMEM. */
int ftq_qtensor_quantize(ftq_qtensor *q, const float *w, int rows, int cols,
                         const ftq_quant_params *p);
/* out [cols] = row r, every scheme (q4m included). */
void ftq_qtensor_dequantize_row(const ftq_qtensor *q, int r, float *out);
/* out [rows, cols] (OpenMP over rows). */
void ftq_qtensor_dequantize(const ftq_qtensor *q, float *out);
void ftq_qtensor_free(ftq_qtensor *q);
/* Bytes the tensor takes in a file: codes + F16 scales + U8 zero codes. */
size_t ftq_qtensor_file_bytes(const ftq_qtensor *q);

/* ---- errors --------------------------------------------------------------------------- */

typedef struct {
    double rmse;      /* sqrt(mean((ref - got)^2)) */
    double max_abs;   /* max |ref - got| */
    double rel_rmse;  /* rmse / sqrt(mean(ref^2)) (0 if ref is all zero) */
    size_t max_index; /* where max_abs occurs (first) */
} ftq_qerror;

/* Error of got against ref over n floats (double accumulation). */
void ftq_qerror_compute(const float *ref, const float *got, size_t n, ftq_qerror *e);
/* Error of q against the original w (dequantizes row by row). FTQ_ENOMEM possible. */
int ftq_qtensor_error(const ftq_qtensor *q, const float *w, ftq_qerror *e);

/* ---- kernel layout -------------------------------------------------------------------- */

/* Repack q into the panel layout (allocates *m; ab = activation block, 0 for 32, must
 * divide the group). Codes and scales are copied exactly. FTQ_EINVAL / FTQ_ENOMEM. */
int ftq_qmat_pack(ftq_qmat *m, const ftq_qtensor *q, int ab);
/* Quantize and pack in one call (the row-major tensor is freed). */
int ftq_qmat_quantize(ftq_qmat *m, const float *w, int rows, int cols, const ftq_quant_params *p,
                      int ab);
/* out [rows, cols] = the weights m holds (scalar; to check packing). */
void ftq_qmat_dequantize(const ftq_qmat *m, float *out);


/* Scalar reference of ftq_qmat_mul computed from the row-major tensor with the same
 * activation quantization (block ab, 0 for 32) and the same per-output float sequence, so
 * every kernel path must match it exactly. FTQ_EINVAL / FTQ_ENOMEM. */
int ftq_qtensor_matmul_ref(float *y, const float *x, const ftq_qtensor *w, int ab,
                           const float *bias, int T);

#endif
