/* gemm_bf16.h - matrix products with bf16 inputs and fp32 accumulation and output (internal).
 *
 * One product shape, C[m, n] = init + sum_k A[m, k] * B[n, k] ("A times B transposed"), on
 * operands packed once in the layout every path reads:
 *   A: row-major [mp][kp] bf16, zero-padded (mp = m rounded up to 32, kp = k rounded up to 32)
 *   B: panels of 16 columns, each [kp/2][16][2]: the k-pair (2r, 2r+1) of column j at
 *      b[panel][r][j][0..1] (the VNNI pairs AMX's TDPBF16PS wants as its B tile; the
 *      AVX512-BF16 path reads the same rows); n is padded to 32 with zero columns.
 * The three products of a linear layer y = x W^T are then (packing from f32 with strides):
 *   forward  Y = X W^T: A = X,    B[n=o][k=i] = W[o][i]
 *   dX = dY W:          A = dY,   B[n=i][k=o] = W[o][i]
 *   dW = dY^T X:        A[o][t] = dY[t][o],   B[n=i][k=t] = X[t][i]
 *
 * Every output element is one fp32 sum of the exact bf16 x bf16 products, started from
 * zero; the result is then init + sum (init: C itself when accumulating, else the bias or
 * 0). The reference and AVX512-BF16 add the k-pairs in increasing order, each pair as odd
 * product then even product (VDPBF16PS's order, measured), so they agree bit for bit. AMX's
 * TDPBF16PS rounds each pair's sum before adding it and adds the 16 pairs of a tile row in
 * an order of its own (measured on Sapphire Rapids; not documented), so it agrees with the
 * reference within fp32 summation error. One thread computes each 32 x 32 block, so results
 * do not depend on the thread count on any path.
 * Call from outside any OpenMP parallel region (the products run their own). */
#ifndef FTQ_KERNELS_GEMM_BF16_H
#define FTQ_KERNELS_GEMM_BF16_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    FTQ_BF16_AUTO = 0,   /* the fastest path this CPU has (after FTQ_CPU_MASK) */
    FTQ_BF16_SCALAR = 1, /* the reference */
    FTQ_BF16_AVX512 = 2, /* avx512f + avx512bw + avx512bf16 */
    FTQ_BF16_AMX = 3,    /* amx-tile + amx-bf16, tile state granted by the OS */
} ftq_bf16_path;

const char *ftq_bf16_path_name(ftq_bf16_path p);
/* 1 if `p` can run here (AUTO and SCALAR always can). */
int ftq_bf16_path_available(ftq_bf16_path p);
/* What AUTO resolves to. */
ftq_bf16_path ftq_bf16_best_path(void);

/* Padded sizes and the element counts (uint16_t) of the packed operands. */
static inline int ftq_bf16_pad32(int x) { return (x + 31) & ~31; }
static inline size_t ftq_bf16_a_elems(int m, int k) { return (size_t)ftq_bf16_pad32(m) * (size_t)ftq_bf16_pad32(k); }
static inline size_t ftq_bf16_b_elems(int n, int k) { return (size_t)ftq_bf16_pad32(n) * (size_t)ftq_bf16_pad32(k); }

/* Pack A[i][kk] = bf16(src[i * sm + kk * sk]) (round to nearest even) for i < m, kk < k;
 * zeros in the padding. dst holds ftq_bf16_a_elems(m, k) elements. */
void ftq_bf16_pack_a(uint16_t *dst, const float *src, int m, int k, size_t sm, size_t sk);
/* Pack B[j][kk] = bf16(src[j * sn + kk * sk]) for j < n, kk < k into the panel layout;
 * dst holds ftq_bf16_b_elems(n, k) elements. */
void ftq_bf16_pack_b(uint16_t *dst, const float *src, int n, int k, size_t sn, size_t sk);

/* c[i * ldc + j] = init + sum_kk A[i][kk] B[j][kk] for i < m, j < n, where init is
 * c[i * ldc + j] if accumulate, else bias[j] (bias may be NULL: 0). a and b are packed for
 * (m, k) and (n, k). `path` AUTO picks the best; an unavailable path runs the reference. */
void ftq_gemm_bf16(ftq_bf16_path path, float *c, size_t ldc, const uint16_t *a, const uint16_t *b, int m,
                   int n, int k, const float *bias, int accumulate);

/* The same product written transposed: c[j * ldc + i] = init + sum_kk A[i][kk] B[j][kk]
 * (init: c[j * ldc + i] if accumulate, else 0), each element summed exactly as by
 * ftq_gemm_bf16. dW = dY^T X as (X^T dY)^T then packs the transposed operand from X
 * instead of dY, the cheaper one when the layer has more outputs than inputs. */
void ftq_gemm_bf16_tc(ftq_bf16_path path, float *c, size_t ldc, const uint16_t *a, const uint16_t *b, int m,
                      int n, int k, int accumulate);

/* bf16 values of a packed operand back to f32 (tests): A[i][kk] and B[j][kk]. */
float ftq_bf16_packed_a_at(const uint16_t *a, int k, int i, int kk);
float ftq_bf16_packed_b_at(const uint16_t *b, int k, int j, int kk);

#endif
