/* kquant.h - K-quant super-block schemes (internal): q6k and q4k, each exactly one GGUF type
 * (ggml's Q6_K and Q4_K), their importance-weighted quantizers, dequantization, packing into
 * the kernel layout and the product kernels (scalar reference, scalar panel path, AVX-512
 * VNNI). kernels/quant.c and kernels/qlinear.c hand every K scheme to these functions.
 *
 * A row of n elements (n a multiple of FTQ_QK = 256) is n / 256 super-blocks. The file keeps
 * ggml's block bytes with the f16 super-block scale d moved to the .qscale part (one f16 per
 * super-block, as every ftq scheme keeps its scales there); .qweight holds the rest:
 *   q6k  ql[128] qh[64] sc[16]            208 bytes  (block_q6_K without its trailing d)
 *        element i: code c in [0, 63] (low 4 bits in ql, high 2 in qh), sub-block i / 16
 *        with an int8 scale sc; value = d * sc * (c - 32)                  6.5625 bits / weight
 *   q4k  dmin(f16) sc[12] qs[128]          142 bytes  (block_q4_K without its leading d)
 *        element i: nibble c in [0, 15], sub-block j = i / 32 with 6-bit scale s_j and 6-bit
 *        min m_j packed in sc[12] as ggml does; value = (d * s_j) * c - (dmin * m_j)  4.5 bits
 * The products d * sc, d * s_j, dmin * m_j and (d * sc) * (c - 32), (d * s_j) * c are exact in
 * f32, so these are the values ggml (and gguf-py) dequantize the same bytes to, bit for bit.
 *
 * Products (kernel layout: see ftq_kq_qmat_alloc). Activations are qlinear.h's int8 blocks of
 * 32 (dx, qx, sx). Per output o and activation block b (super-block s = b / 8):
 *   q6k  sub-blocks j0 = 2 (b % 8), j1 = j0 + 1 (16 inputs each), sx0 = sum qx over the first
 *        16 inputs, sx1 = sx - sx0:
 *          isum = sc[j0] * (sum c qx - 32 sx0) + sc[j1] * (sum c qx - 32 sx1)   (int32)
 *          acc  = fmaf((float)isum, d_s * dx, acc)
 *   q4k  j = b % 8:
 *          isum = s_j * sum c qx;  msum = m_j * sx                              (int32)
 *          acc  = fmaf((float)isum, d_s * dx, acc)
 *          acc  = fmaf((float)msum, -(dmin_s * dx), acc)
 * y = acc (+ bias). Every path performs exactly these operations, so all agree bit for bit.
 */
#ifndef FTQ_KERNELS_KQUANT_H
#define FTQ_KERNELS_KQUANT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/qmat.h"

#define FTQ_QK 256         /* elements per super-block */
#define FTQ_Q6K_BYTES 208  /* .qweight bytes per q6k super-block (ggml's 210 less d) */
#define FTQ_Q4K_BYTES 142  /* .qweight bytes per q4k super-block (ggml's 144 less d) */

static inline int ftq_qscheme_is_k(ftq_qscheme s) { return s == FTQ_QSCHEME_Q6K || s == FTQ_QSCHEME_Q4K; }

/* .qweight bytes of a row of n (a multiple of 256). */
size_t ftq_kq_row_bytes(ftq_qscheme s, int n);

/* Quantize one row x[n] (n a multiple of 256) with importance u[n] (> 0; NULL: the row's own
 * sqrt(mean x^2 + x_j^2), ggml's default weighting): codes to qs (ftq_kq_row_bytes), the f16
 * super-block scales (as f32) to d[n / 256]. Minimizes sum u (x - value)^2 per sub-block over
 * a grid of scales (and mins) with least-squares refits, then the 6/8-bit sub-block scales
 * with their neighbours. Returns 0, or 1 if a scale overflows f16 (*bad = the super-block's
 * first index). x must be finite (the caller checks). Deterministic. */
int ftq_kq_quantize_row(ftq_qscheme s, const float *x, const float *u, int n, uint8_t *qs, float *d, int *bad);
/* out[n] = the values of a row (scalar, ggml's dequantization). */
void ftq_kq_dequantize_row(ftq_qscheme s, const uint8_t *qs, const float *d, int n, float *out);

/* Code of element i of a row (q6k 0..63, q4k 0..15), and the sub-block scale / min. */
int ftq_q6k_code(const uint8_t *row, int i);
int ftq_q6k_scale(const uint8_t *row, int j); /* int8, sub-block j of 16 (row-wide index) */
int ftq_q4k_code(const uint8_t *row, int i);
void ftq_q4k_scale_min(const uint8_t *row, int j, int *sc, int *m); /* sub-block j of 32 */
float ftq_q4k_dmin(const uint8_t *row, int s);                     /* super-block s */

/* Kernel layout of a K matrix (group 256, cols a multiple of 256, ab 32):
 *   qs   q6k: the Q8 layout of qlinear.h with byte = c (0..63); q4k: the Q4 nibble layout
 *   d    [npanels][nsb][2][16] f32: d_s and dmin_s per lane (dmin 0 for q6k)
 *   zp   [npanels][nsb][16][16] u8: q6k sc[0..15] (int8 bits); q4k s[0..7] then m[0..7]
 * FTQ_EINVAL (message) / FTQ_ENOMEM. */
int ftq_kq_qmat_alloc(ftq_qmat *m, ftq_qscheme s, int rows, int cols, int ab);
/* Fill m (allocated by ftq_qmat_alloc) from a row-major K tensor's codes and scales. */
void ftq_kq_qmat_fill(ftq_qmat *m, const uint8_t *qs, size_t row_bytes, const float *d);
void ftq_kq_qmat_dequantize_row(const ftq_qmat *m, int r, float *out);
size_t ftq_kq_qmat_bytes(const ftq_qmat *m);

/* Scalar reference on the row-major bytes: y[T, rows] for x[T, cols]. FTQ_ENOMEM. */
int ftq_kq_matmul_ref(float *y, const float *x, ftq_qscheme s, int rows, int cols, const uint8_t *qs,
                      size_t row_bytes, const float *d, const float *bias, int T);

/* The panel kernels (qlinear.c's run_fn): scalar and AVX-512 VNNI (NULL-safe to call only
 * when ftq_kq_have_avx512 says the build has it). */
void ftq_kq_run_scalar(const ftq_qmat *w, const ftq_qact *a, int p0, int p1, int t0, int t1, float *y,
                       const float *bias);
int ftq_kq_have_avx512(void);
void ftq_kq_run_avx512(const ftq_qmat *w, const ftq_qact *a, int p0, int p1, int t0, int t1, float *y,
                       const float *bias);

#endif
