/* ftq_report.h - before/after measurements of a model at each stage of the main job
 * (base -> fine-tuned -> pruned -> int8 -> int4) and the SVG chart of them.
 *
 *     ftq_stage_metrics m;
 *     ftq_stage_eval_params ep = ftq_stage_eval_default_params();
 *     ep.eval_tokens = ids; ep.n_eval_tokens = n; ep.dev = dev_dataset;
 *     ftq_stage_evaluate("out/int4", &ep, &m);
 *     ftq_report_svg("out/report.svg", "stories260K on SST-2", stages, n_stages, loss, n_loss);
 */
#ifndef FTQ_REPORT_H
#define FTQ_REPORT_H

#include "ftq_data.h"
#include "ftq_eval.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    char name[32];            /* "base", "finetuned", "pruned", "int8", "int4" */
    double ppl, ppl_stderr;   /* NaN when the model cannot score text (no LM head) */
    double accuracy, macro_f1; /* NaN without a classification head or dev set */
    double file_bytes;        /* checkpoint size */
    double peak_rss_bytes;    /* of the process that evaluated it (0 if unknown) */
    double tokens_per_second; /* perplexity throughput (prompt processing) */
    double classify_per_second; /* dev examples classified per second */
    double kl, top1_agree;    /* against the reference model, if one was given (NaN otherwise) */
    int64_t dev_examples, tokens_scored;
} ftq_stage_metrics;

typedef struct {
    const int32_t *eval_tokens; /* the evaluation text, tokenized once (no BOS) */
    size_t n_eval_tokens;
    ftq_ppl_params ppl;         /* protocol, n_ctx, n_chunks, add_bos, bos_id (ref unused) */
    const char *ref_dir;        /* NULL, or a model to compare next-token distributions with */
    const ftq_dataset *dev;     /* NULL, or labeled rows for accuracy / macro-F1 */
    int64_t dev_limit;          /* 0 = all rows */
    int max_len;                /* classify: truncate rows to this many tokens (0 = positions) */
    int dev_speed_only;         /* encoders: run the dev texts for speed, score no labels (the
                                   pretrained model's head, if any, is not the fine-tuned task's) */
} ftq_stage_eval_params;

ftq_stage_eval_params ftq_stage_eval_default_params(void);

/* Load the model in dir and measure it. The dev labels are the dataset's label ids, which
 * must be the model's (the trainer writes id2label in the same order). */
int ftq_stage_evaluate(const char *dir, const ftq_stage_eval_params *p, ftq_stage_metrics *m);

/* Write an SVG chart: one bar panel per metric (perplexity, dev accuracy, file size,
 * tokens/s) over the stages, and the training loss curve (loss may be NULL). Atomic. */
int ftq_report_svg(const char *path, const char *title, const ftq_stage_metrics *stages, int n_stages,
                   const double *loss, int n_loss);

#ifdef __cplusplus
}
#endif

#endif
