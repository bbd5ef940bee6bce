/* quantize_calib.h - calibration for ftq_quantize_model on decoders (quant/quantize_calib.c):
 * the activation statistics of every block's linear inputs, and the mixed-precision plan. */
#ifndef FTQ_QUANT_QUANTIZE_CALIB_H
#define FTQ_QUANT_QUANTIZE_CALIB_H

#include "model/model.h"
#include "quant/quantize_internal.h"

/* One forward pass of m over the calibration windows of p (calib, n_calib, calib_ctx,
 * calib_bos): st gets the sums of x_j^2 of every block's four linear inputs and, with
 * want_gram, their sums of x x^T; with p->awq, their sums of |x_j|; st->tokens counts the tokens. Free with
 * ftq_qcalib_stats_free. FTQ_EINVAL (too few tokens, bad context), FTQ_ENOMEM. */
int ftq_qcalib_collect(ftq_model *m, const ftq_quantize_params *p, int want_gram, ftq_act_stats *st);
void ftq_qcalib_stats_free(ftq_act_stats *st);

/* Mixed precision to p->target_bits over the jobs of block linear layers (layer >= 0, imp
 * set): each one's sensitivity (mean KL from m on the first 256 tokens of the last calibration window with only that
 * layer int4 by the importance search), then int8 (q8 g32) for the largest sensitivity per
 * extra bit while the average stays within the budget. Sets j->sensitivity and j->qp. */
int ftq_qcalib_plan(ftq_model *m, const ftq_quantize_params *p, ftq_qjobs *js);

#endif
