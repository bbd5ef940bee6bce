/* stage_bert.c - one pipeline stage of a BERT encoder (ftq_stage_evaluate dispatches here):
 * no perplexity (an encoder has no LM head: NaN, shown as "n/a"); dev accuracy and
 * macro-F1 when the model is a classifier; speed as forward tokens/s over the dev texts
 * (batches of 32, real tokens), measured for every stage, classifier or not; file size
 * and peak memory. Quantized stages run on the int8 / int4 kernels (ftq_bert_load). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/stage_internal.h"
#include "include/ftq.h"
#include "include/ftq_bert.h"
#include "include/ftq_report.h"

typedef struct {
    const ftq_bert *m;
    int32_t *pred;
    float *logits;
    int nl;
} run_ctx;

static int on_batch(void *user, size_t row0, int B, ftq_bert_ws *ws)
{
    run_ctx *r = user;
    if (!r->nl)
        return 0;
    int rc = ftq_bert_classify(r->m, ws, r->logits);
    for (int b = 0; rc == FTQ_OK && b < B; b++)
        r->pred[row0 + (size_t)b] = ftq_argmax(r->logits + (size_t)b * r->nl, r->nl);
    return rc;
}

int ftq_stage_evaluate_bert(const char *dir, const ftq_stage_eval_params *p, ftq_stage_metrics *out)
{
    ftq_bert *m = NULL;
    ftq_tokenizer *tok = NULL;
    ftq_checkpoint *ck = NULL;
    int rc = ftq_bert_load(dir, &m);
    if (rc == FTQ_OK)
        rc = ftq_tokenizer_load(dir, &tok);
    if (rc == FTQ_OK)
        rc = ftq_checkpoint_open(dir, &ck);
    size_t n = p->dev ? ftq_dataset_size(p->dev) : 0;
    if (p->dev_limit > 0 && (size_t)p->dev_limit < n)
        n = (size_t)p->dev_limit;
    const ftq_bert_config *c = rc == FTQ_OK ? ftq_bert_get_config(m) : NULL;
    const char **texts = NULL;
    int32_t *gold = NULL, *pred = NULL;
    float *logits = NULL;
    enum { BATCH = 32 };
    if (rc == FTQ_OK && n > 0) {
        texts = malloc(sizeof *texts * n);
        gold = malloc(sizeof *gold * n);
        pred = calloc(n, sizeof *pred);
        logits = malloc(sizeof *logits * BATCH * (size_t)(c->num_labels > 0 ? c->num_labels : 1));
        if (!texts || !gold || !pred || !logits)
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        for (size_t i = 0; rc == FTQ_OK && i < n; i++) {
            texts[i] = ftq_dataset_text(p->dev, i);
            gold[i] = ftq_dataset_label(p->dev, i);
            if (!p->dev_speed_only && c->num_labels && gold[i] >= c->num_labels)
                rc = ftq_set_error(FTQ_EINVAL, "%s:%zu: label %d is outside the model's %d labels",
                                   ftq_dataset_source(p->dev), ftq_dataset_line(p->dev, i), gold[i], c->num_labels);
        }
    }
    if (rc == FTQ_OK && n > 0) {
        int max_len = p->max_len > 0 && p->max_len < c->max_position ? p->max_len : c->max_position;
        int nl = p->dev_speed_only ? 0 : c->num_labels;
        run_ctx r = {m, pred, logits, nl};
        int64_t tokens = 0;
        double t0 = ftq_time_sec();
        rc = ftq_bert_run_texts(m, tok, texts, NULL, n, max_len, BATCH, on_batch, &r, NULL, &tokens);
        double secs = ftq_time_sec() - t0;
        if (rc == FTQ_OK) {
            out->tokens_per_second = secs > 0 ? (double)tokens / secs : 0;
            out->tokens_scored = tokens;
        }
        if (rc == FTQ_OK && nl) {
            ftq_cls_metrics cm;
            rc = ftq_cls_metrics_compute(gold, pred, n, c->num_labels, &cm);
            if (rc == FTQ_OK) {
                out->accuracy = cm.accuracy;
                out->macro_f1 = cm.macro_f1;
                out->dev_examples = cm.n;
                out->classify_per_second = secs > 0 ? (double)n / secs : 0;
                ftq_cls_metrics_free(&cm);
            }
        }
    }
    if (rc == FTQ_OK) {
        out->file_bytes = (double)ftq_checkpoint_total_bytes(ck);
        out->peak_rss_bytes = (double)ftq_peak_rss_bytes();
    }
    free(texts);
    free(gold);
    free(pred);
    free(logits);
    ftq_checkpoint_close(ck);
    ftq_tokenizer_free(tok);
    ftq_bert_free(m);
    return rc;
}
