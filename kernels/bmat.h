/* bmat.h - weight matrices held as packed bf16 for inference, and y = x W^T + b on them
 * (internal). A weight W [rows = out, cols = in] is stored once in gemm_bf16's B layout
 * (n = rows, k = cols: panels of 16 output rows, the k-pairs of a row interleaved as VNNI
 * pairs), so a product reads half the bytes of an f32 matrix and no f32 copy is kept.
 *
 *     ftq_bmat w;                                  // rows, cols, b filled by the owner
 *     ftq_bmat_pack_f32(&w, src, cols, 1);         // bf16 = round-to-nearest-even of src
 *     void *scratch = malloc(ftq_bmat_scratch_bytes(&w, T));
 *     ftq_bmat_mul(y, x, &w, bias, T, scratch);    // y [T, rows], x [T, cols]
 *
 * The product: the activations are rounded to bf16 (round to nearest even), every output is
 * bias + one fp32 sum of exact bf16 x bf16 products (gemm_bf16.h). For T < FTQ_BMAT_GEMV_T
 * rows a GEMV streams the weights once (AVX512-BF16 `vdpbf16ps`, one accumulator per output,
 * the k-pairs in increasing order: bit-identical to the scalar reference); more rows go
 * through ftq_gemm_bf16 (AMX tiles where present). Each output is computed by one thread,
 * so results never depend on the thread count; they may differ in the last bits between a
 * GEMV-sized and a GEMM-sized call on the AMX path (its pair order is its own). */
#ifndef FTQ_KERNELS_BMAT_H
#define FTQ_KERNELS_BMAT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/gemm_bf16.h"

#define FTQ_BMAT_GEMV_T 4 /* calls with fewer rows take the GEMV */

typedef struct {
    int rows, cols;  /* [out, in] */
    uint16_t *b;     /* ftq_bmat_elems(rows, cols) bf16 values, gemm_bf16's B layout */
} ftq_bmat;

static inline size_t ftq_bmat_elems(int rows, int cols) { return ftq_bf16_b_elems(rows, cols); }
/* Bytes of weight data a product streams. */
static inline size_t ftq_bmat_bytes(const ftq_bmat *m) { return 2 * ftq_bmat_elems(m->rows, m->cols); }

/* m->b = bf16 of W[o][i] = src[o * so + i * si] (round to nearest even). */
void ftq_bmat_pack_f32(ftq_bmat *m, const float *src, size_t so, size_t si);
/* m->b = the bf16 values W[o][i] stored at element o * so + i * si of src (2-byte elements,
 * any alignment): copied exactly, never widened. */
void ftq_bmat_pack_bf16(ftq_bmat *m, const void *src, size_t so, size_t si);
/* bf16 value of W[o][i] (as f32), and a whole row out[cols] = W[o][:] (embedding lookups). */
float ftq_bmat_at(const ftq_bmat *m, int o, int i);
void ftq_bmat_row(const ftq_bmat *m, int o, float *out);

/* Scratch bytes ftq_bmat_mul needs for T rows (the bf16 activations). */
size_t ftq_bmat_scratch_bytes(const ftq_bmat *m, int T);
/* y[T, rows] = x[T, cols] W^T (+ bias[rows] if not NULL), on the best path of this CPU (after
 * FTQ_CPU_MASK). scratch: ftq_bmat_scratch_bytes(m, T) bytes, or NULL (then one malloc per
 * call). y must not alias x or scratch. Call from outside an OpenMP parallel region.
 * FTQ_OK, or FTQ_ENOMEM (only with scratch == NULL). */
int ftq_bmat_mul(float *y, const float *x, const ftq_bmat *m, const float *bias, int T, void *scratch);
/* The same on a chosen path (an unavailable path runs the scalar reference). */
int ftq_bmat_mul_path(ftq_bf16_path path, float *y, const float *x, const ftq_bmat *m, const float *bias, int T,
                      void *scratch);

#endif
