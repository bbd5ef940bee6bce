/* quantize_kplan.h - K-quant super-blocks in ftq_quantize_model (--kquant,
 * quant/quantize_kplan.c): which layers take q4k, and the mixed-precision plan over
 * several schemes per layer. */
#ifndef FTQ_QUANT_QUANTIZE_KPLAN_H
#define FTQ_QUANT_QUANTIZE_KPLAN_H

#include "quant/quantize_internal.h"

/* Bits per weight of a row of cols stored with q (codes, f16 scales, u8 zero codes): what
 * the mixed-precision plans (here and quant/quantize_calib.c) count. */
double ftq_qcalib_bits(const ftq_quant_params *q, int cols);

/* With p->kquant: every block linear job (layer >= 0) of int4 (q4 / q4a) whose width is a
 * multiple of 256 becomes q4k. Others are left as they are. */
void ftq_qkplan_assign(const ftq_quantize_params *p, ftq_qjobs *js);

/* The mixed-precision plan over {q4k, q5, q6k, q8} (q4k layers) or {base, q5, q8} (others) for the
 * jobs with a measured sensitivity and imp, within p->target_bits given the current
 * total_bits over total_w weights (all at their base scheme). Sets j->qp. FTQ_ENOMEM, or a
 * quantizer's error naming the tensor. */
int ftq_qkplan_greedy(const ftq_quantize_params *p, ftq_qjobs *js, double total_bits, double total_w);


#endif
