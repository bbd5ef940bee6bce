/* stage_internal.h - ftq_stage_evaluate's per-architecture parts (eval/stage.c dispatches):
 * the same metrics struct, already reset (NaN for what does not apply). */
#ifndef FTQ_EVAL_STAGE_INTERNAL_H
#define FTQ_EVAL_STAGE_INTERNAL_H

#include "include/ftq_report.h"

/* A BERT encoder directory: no perplexity; dev accuracy / macro-F1 if a classifier;
 * forward tokens/s over the dev texts. */
int ftq_stage_evaluate_bert(const char *dir, const ftq_stage_eval_params *p, ftq_stage_metrics *out);

#endif
