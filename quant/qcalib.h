/* qcalib.h - calibrated weight quantizers (internal): the importance-weighted scale search
 * (llama.cpp's imatrix idea) and GPTQ's column-by-column error compensation, both writing
 * the ordinary row-major ftq_qtensor of kernels/quant.h (q8 / q4 / q4a with per-group f16
 * scales), so the kernels, the file format and the GGUF export need no change.
 *
 *     ftq_qtensor q;
 *     int rc = ftq_qtensor_quantize_weighted(&q, w, rows, cols, &qp, imp);   // imp[cols]
 *     ftq_gptq_params gp = ftq_gptq_default_params();
 *     rc = ftq_qtensor_quantize_gptq(&q, w, rows, cols, &qp, gram, ntok, &gp); // gram[cols][cols]
 *
 * The error both minimize: sum over calibration tokens x of |(W - Q) x|^2 = tr(E G E^T),
 * E = W - Q, G = sum x x^T. The weighted search keeps only G's diagonal (imp_j = sum x_j^2)
 * and chooses each group's scale; GPTQ uses all of G and also moves the codes.
 * Thread-safety: reentrant; OpenMP over rows inside (do not call from a parallel region).
 */
#ifndef FTQ_QUANT_QCALIB_H
#define FTQ_QUANT_QCALIB_H

#include <stdint.h>

#include "kernels/quant.h"

/* Quantize w [rows, cols] with, per group, the scale (and zero code) minimizing
 * sum_j u_j (x_j - d (c_j - z))^2, u_j = imp_j * sqrt(sigma2 + x_j^2) (llama.cpp's weighting
 * of the importance, sigma2 the row's mean square), among the plain scale, a grid of
 * divisors around qmax and a weighted least-squares refit of every candidate's codes. The
 * plain result is kept unless a candidate is strictly better, so with imp all equal it is
 * never worse than round-to-nearest in the weighted error. p->search is ignored (always
 * searches). imp [cols], >= 0. Same errors as ftq_qtensor_quantize. */
int ftq_qtensor_quantize_weighted(ftq_qtensor *q, const float *w, int rows, int cols, const ftq_quant_params *p,
                                  const double *imp);

typedef struct {
    double damp;   /* added to H's diagonal: damp * mean(diag H) (default 0.01) */
    int act_order; /* 1: columns in order of decreasing H_jj, with the group scales chosen
                      up front from the original weights (static groups) */
} ftq_gptq_params;

ftq_gptq_params ftq_gptq_default_params(void);

/* GPTQ (Frantar et al. 2022) on w [rows, cols]: H = 2 gram / ntok (+ damping; a column
 * never activated gets H_jj = 1 and weight 0), U = the upper Cholesky factor of H^-1
 * (LAPACK dpotrf / dpotri / dpotrf from OpenBLAS), then per row, column by column: the
 * group's scale is chosen at the group's first column from the current (compensated)
 * weights with the importance search above (importance diag H), the weight is rounded,
 * and its error e / U_jj is spread over the later columns with row j of U. gram [cols][cols]
 * (sum over ntok tokens of x x^T). FTQ_EINVAL, FTQ_ENUMERIC (non-finite weight, H not
 * positive definite even after damping, a scale beyond f16), FTQ_ENOMEM. */
int ftq_qtensor_quantize_gptq(ftq_qtensor *q, const float *w, int rows, int cols, const ftq_quant_params *p,
                              const float *gram, int64_t ntok, const ftq_gptq_params *gp);

/* tr(E G E^T) / ntok for E = w - dequant(q): the mean squared output error over the
 * calibration tokens (E G by one float sgemm, summed in double). FTQ_ENOMEM possible
 * (*out is then 0). */
int ftq_qtensor_output_error(const ftq_qtensor *q, const float *w, const float *gram, int64_t ntok, double *out);

#endif
