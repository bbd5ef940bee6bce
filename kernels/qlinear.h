/* qlinear.h - quantized weight matrices in the kernel layout, on-the-fly int8 activations,
 * and y = x W^T + b on them (internal). Every path (scalar, AVX2, AVX-VNNI, AVX-512 VNNI)
 * performs the same integer sums and the same float operations in the same order for each
 * output, so all paths, thread counts and T-blockings give bit-identical results.
 *
 *     ftq_qmat w;                          // filled by ftq_qmat_pack (kernels/quant.h)
 *     void *scratch = malloc(ftq_qmat_scratch_bytes(&w, T));
 *     ftq_qmat_mul(y, x, &w, bias, T, scratch);     // y [T, w.rows], x [T, w.cols]
 *
 * Schemes. A weight is value = d * (c - z) for an integer code c and zero code z:
 *   FTQ_QSCHEME_Q8   int8 symmetric   q = c - z in [-127, 127]   (z = 0 on disk, 128 here)
 *   FTQ_QSCHEME_Q4   int4 symmetric   c in [0, 15], z = 8        (q = c - 8 in [-8, 7])
 *   FTQ_QSCHEME_Q4A  int4 asymmetric  c in [0, 15], z in [0, 15] per group
 *   FTQ_QSCHEME_Q4M  int4 with a min  c in [0, 15], value = d * c + m, m an f32 per group
 *                                     (ggml's Q4_1: kept exactly from a Q4_1 GGUF)
 * with one f32 scale d per group of `group` consecutive input elements of a row.
 *
 * Kernel layout (this header): rows are cut into panels of FTQ_QPANEL = 16 output rows and
 * the input dimension is zero-padded to kpad (a multiple of the activation block `ab`).
 * A panel's codes are a run of 64-byte chunks, one zmm register (or two ymm) each; byte
 * 4 * lane + i of a chunk belongs to output row 16 * panel + lane:
 *   Q8       chunk j holds k = 4j .. 4j+3        byte = q + 128 (u8, so vpdpbusd can take
 *            the weight as its unsigned operand; the 128 * sum(x) bias is removed per block)
 *   Q4, Q4A  chunk j holds k = 8j .. 8j+7        byte = c(8j + i) | c(8j + 4 + i) << 4: the low
 *            nibbles of a chunk are one 4-k step and the high nibbles the next, so one
 *            AND and one shift unpack a whole register
 * Lanes multiply four consecutive codes by four consecutive activations (one broadcast
 * dword): no horizontal reduction anywhere, one output per lane.
 * Scales d[panel][group][16] (f32) and, for Q4A, zero codes zp[panel][group][16] (u8).
 * Padding holds the zero code (padded rows also scale 0); padded inputs meet zero
 * activations, so padding never contributes.
 *
 * Activations are quantized per row and block of `ab` (32, 64 or 128) input elements:
 * dx = max|x| / 127, qx = nearbyint(x * (1 / dx)) in [-127, 127], and sx = sum(qx). A block
 * with max|x| < FTQ_QACT_AMAX_MIN quantizes to zero; a block holding a NaN or an Inf gets
 * dx = NaN, so that row's outputs are NaN (as the f32 matmul would give NaN or Inf).
 *
 * Per output o and row t: acc = 0; for each activation block b of group g:
 *     isum = sum_k (c[o][k] - z) * qx[t][k]                (exact int32)
 *     acc  = fmaf((float)isum, d[o][g] * dx[t][b], acc)   (one rounding for the product)
 * Q4M (z = 0) adds the group minimum's term right after each block's product, as ggml's
 * Q4_1 x Q8_1 does (sx the block's sum of qx):
 *     acc  = fmaf((float)sx, m[o][g] * dx[t][b], acc)
 * y[t][o] = acc (+ bias[o]). The integer part cannot overflow: |isum| <= 128 * 255 * 127.
 */
#ifndef FTQ_KERNELS_QLINEAR_H
#define FTQ_KERNELS_QLINEAR_H

#include <stddef.h>
#include <stdint.h>

#include "ftq_core.h"

#include "kernels/qmat.h" /* the schemes, the kernel layout's types, ftq_qact */

/* Allocate a zero-filled matrix (codes = zero code, scales 0). group is 32, 64 or 128 (a
 * multiple of ab) or 0 for one scale per row (Q8 only); ab is 32, 64 or 128, or 0 for
 * FTQ_QACT_BLOCK. Returns FTQ_OK, FTQ_EINVAL (message names the bad value) or FTQ_ENOMEM.
 * ftq_qmat_pack (kernels/quant.h) fills it from a quantized tensor. */
int ftq_qmat_alloc(ftq_qmat *m, ftq_qscheme scheme, int rows, int cols, int group, int ab);
/* A deep copy of src into *dst (its own allocation). FTQ_OK or FTQ_ENOMEM. */
int ftq_qmat_clone(ftq_qmat *dst, const ftq_qmat *src);
/* Free the allocation and zero *m (NULL and zeroed matrices are fine). */
void ftq_qmat_free(ftq_qmat *m);
/* Bytes of weight data the kernels stream per product (codes + scales + zero codes). */
size_t ftq_qmat_bytes(const ftq_qmat *m);
/* out [cols] = row r (0 <= r < rows) of the weights, d * (c - z) in f32: the values every
 * dequantization gives (ftq_qmat_dequantize, ftq_dequantize_row). What an embedding lookup
 * in a quantized table reads. */
void ftq_qmat_dequantize_row(const ftq_qmat *m, int r, float *out);

/* ---- activations ---------------------------------------------------------------------- */

/* The same with AVX2 when the CPU has it (what every SIMD matmul path uses). */
void ftq_qact_quantize_row(const float *x, int n, int kpad, int ab, int8_t *qs, float *d,
                           int32_t *s);

/* ---- matmul --------------------------------------------------------------------------- */

typedef enum {
    FTQ_QPATH_AUTO = 0,
    FTQ_QPATH_SCALAR,
    FTQ_QPATH_AVX2,       /* vpmaddubsw + vpmaddwd */
    FTQ_QPATH_AVXVNNI,    /* 256-bit vpdpbusd */
    FTQ_QPATH_AVX512VNNI, /* 512-bit vpdpbusd */
    FTQ_QPATH_AMXINT8,    /* AVX-512 VNNI, with AMX tiles (tdpbsud) for Q8 with 32-element
                             activation blocks on every full group of 16 rows (T >= 16);
                             the same int32 block sums, so bit-identical results */
    FTQ_QPATH_COUNT
} ftq_qpath;

/* 1 if `path` can run on this CPU (after FTQ_CPU_MASK); AUTO and SCALAR always can. */
int ftq_qpath_supported(ftq_qpath path);
/* The path AUTO picks: the widest supported one. */
ftq_qpath ftq_qpath_best(void);
/* "scalar", "avx2", "avxvnni", "avx512vnni", "amx-int8" ("auto" for AUTO, "?" if out of range). */
const char *ftq_qpath_name(ftq_qpath path);

/* Scratch bytes ftq_qmat_mul needs for T rows (the quantized activations). */
size_t ftq_qmat_scratch_bytes(const ftq_qmat *w, int T);

/* y[T, w->rows] = x[T, w->cols] W^T (+ bias[w->rows] if not NULL). scratch holds
 * ftq_qmat_scratch_bytes(w, T) bytes (any alignment), or is NULL: then a stack buffer is
 * used when it is large enough (generation-sized products) and otherwise one malloc per
 * call. y must not alias x or scratch. OpenMP over panels and row chunks (disjoint writes);
 * do not call from inside a parallel region. Thread-safe for distinct y and scratch.
 * Returns FTQ_OK, or FTQ_ENOMEM (only possible with scratch == NULL). */
int ftq_qmat_mul(float *y, const float *x, const ftq_qmat *w, const float *bias, int T,
                 void *scratch);
/* The same on a chosen path. FTQ_EUNSUPPORTED (with a message) if this CPU lacks it. */
int ftq_qmat_mul_path(ftq_qpath path, float *y, const float *x, const ftq_qmat *w,
                      const float *bias, int T, void *scratch);

#endif
