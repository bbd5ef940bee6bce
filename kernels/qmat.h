/* qmat.h - the types of the quantized kernel layout (internal): the scheme enum, a panel's
 * chunk / scales / zero codes, the matrix (ftq_qmat) and the int8 activations (ftq_qact),
 * plus the scalar activation quantizer every path reproduces (kernels/qact.c). The layout and
 * the products are described in kernels/qlinear.h; scheme implementations outside
 * qlinear.c (kernels/kquant.c) build on this header alone, so they do not depend on the
 * dispatcher that calls them. */
#ifndef FTQ_KERNELS_QMAT_H
#define FTQ_KERNELS_QMAT_H

#include <stddef.h>
#include <stdint.h>

#include "ftq_core.h"

/* Append-only: the scheme names are written to files (docs/quant-format.md). */
typedef enum {
    FTQ_QSCHEME_Q8 = 0,
    FTQ_QSCHEME_Q4,
    FTQ_QSCHEME_Q4A,
    FTQ_QSCHEME_Q4M,
    FTQ_QSCHEME_Q6K, /* K-quant super-blocks (kernels/kquant.h): ggml's Q6_K */
    FTQ_QSCHEME_Q4K, /* and Q4_K */
    FTQ_QSCHEME_Q5,  /* int5 symmetric (ggml's Q5_0); runs on the Q8 kernels (kernels/quant.h) */
    FTQ_QSCHEME_COUNT
} ftq_qscheme;

#define FTQ_QPANEL 16       /* output rows per panel (lanes of a zmm of int32) */
#define FTQ_QCHUNK 64       /* bytes per panel chunk */
#define FTQ_QACT_BLOCK 32   /* default (and smallest) activation block */
#define FTQ_QACT_AMAX_MIN 1e-30f /* blocks below this quantize to zero (1/dx stays finite) */

/* One chunk of a panel: b[lane][i], lane = output row within the panel. Q8 chunk j:
 * b[l][i] = q(16p + l, 4j + i) + 128. Q4 / Q4A chunk j: b[l][i] = c(8j + i) | c(8j + 4 + i) << 4. */
typedef struct {
    uint8_t b[FTQ_QPANEL][4];
} ftq_qchunk;
_Static_assert(sizeof(ftq_qchunk) == FTQ_QCHUNK, "a chunk is one zmm (two ymm) register");

/* The scales of one group of one panel: d[lane], one zmm (two ymm) of f32. */
typedef struct {
    float d[FTQ_QPANEL];
} ftq_qscales;
_Static_assert(sizeof(ftq_qscales) == 64, "a panel's group scales are one zmm register");

/* Zero codes of one group of one panel (Q4A), widened to int32 lanes by the kernels. */
typedef struct {
    uint8_t z[FTQ_QPANEL];
} ftq_qzeros;
_Static_assert(sizeof(ftq_qzeros) == 16, "a panel's group zero codes are one xmm register");

typedef struct {
    ftq_qscheme scheme;
    int rows;           /* output features (out_dim) */
    int cols;           /* input features (in_dim) */
    int group;          /* inputs per weight scale: a multiple of ab, or kpad for per-row */
    int ab;             /* activation block: 32, 64 or 128 */
    int kpad;           /* cols rounded up to a multiple of ab */
    int npanels;        /* ceil(rows / 16) */
    int ngroups;        /* scales per row: ceil(cols / group) (1 for per-row) */
    size_t panel_bytes; /* kpad * 16 (Q8) or kpad * 8 (Q4, Q4A): kpad / 4 or kpad / 8 chunks */
    uint8_t *qs;        /* [npanels][panel_bytes] = ftq_qchunk runs, 64-byte aligned */
    float *d;           /* [npanels][ngroups] ftq_qscales, 64-byte aligned */
    uint8_t *zp;        /* [npanels][ngroups] ftq_qzeros for Q4A, else NULL */
    float *mn;          /* [npanels][ngroups] ftq_qscales of group minimums for Q4M, else NULL */
    void *mem;          /* the one allocation holding qs, d and zp */
    size_t mem_bytes;   /* its size */
} ftq_qmat;

/* ---- activations ---------------------------------------------------------------------- */

typedef struct {
    int T, kpad, ab, nblk; /* nblk = kpad / ab */
    int8_t *qs;            /* [T][kpad], zero beyond the row's n inputs */
    float *d;              /* [T][nblk] block scales dx */
    int32_t *s;            /* [T][nblk] block sums of qs */
} ftq_qact;

/* Quantize one row of n floats into kpad codes (kpad a multiple of ab, n <= kpad), with the
 * rule above. Scalar reference; the SIMD version used by the matmul is bit-identical. */
void ftq_qact_quantize_row_ref(const float *x, int n, int kpad, int ab, int8_t *qs, float *d,
                               int32_t *s);
#endif
