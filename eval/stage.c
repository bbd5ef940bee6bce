/* stage.c - measure one model directory for the before/after report: perplexity on the
 * evaluation tokens (if the model has an LM head), dev accuracy and macro-F1 (if it has a
 * classification head), file size, throughput and peak memory. Encoders: eval/stage_bert.c. */
#include "include/ftq.h"
#include "include/ftq_report.h"
#include "model/model.h"
#include "eval/stage_internal.h"
#include "include/ftq_bert.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

ftq_stage_eval_params ftq_stage_eval_default_params(void)
{
    ftq_stage_eval_params p;
    memset(&p, 0, sizeof p);
    p.ppl = ftq_ppl_default_params();
    p.ppl.n_ctx = 256;
    return p;
}

static int eval_dev(const ftq_model *m, const ftq_tokenizer *tok, const ftq_stage_eval_params *p,
                    ftq_stage_metrics *out)
{
    const int nl = ftq_model_num_labels(m), V = ftq_model_get_config(m)->max_position;
    size_t n = ftq_dataset_size(p->dev);
    if (p->dev_limit > 0 && (size_t)p->dev_limit < n)
        n = (size_t)p->dev_limit;
    int max_len = p->max_len > 0 && (V <= 0 || p->max_len < V) ? p->max_len : V;
    int32_t *gold = malloc(sizeof(int32_t) * (n ? n : 1)), *pred = malloc(sizeof(int32_t) * (n ? n : 1));
    float *logits = malloc(sizeof(float) * (size_t)nl);
    ftq_session *s = NULL;
    int rc = gold && pred && logits ? ftq_session_new(m, max_len, &s) : ftq_set_error(FTQ_ENOMEM, "out of memory");
    double t0 = ftq_time_sec();
    for (size_t i = 0; i < n && rc == FTQ_OK; i++) {
        const char *text = ftq_dataset_text(p->dev, i);
        int32_t *ids = NULL;
        size_t k = 0;
        rc = ftq_tokenizer_encode(tok, text, strlen(text), 1, &ids, &k);
        if (rc == FTQ_OK && k == 0)
            rc = ftq_set_error(FTQ_EINVAL, "%s:%zu: the text has no tokens", ftq_dataset_source(p->dev),
                               ftq_dataset_line(p->dev, i));
        if (rc == FTQ_OK)
            rc = ftq_model_classify(m, s, ids, (int)(k < (size_t)max_len ? k : (size_t)max_len), logits);
        free(ids);
        gold[i] = ftq_dataset_label(p->dev, i);
        pred[i] = rc == FTQ_OK ? ftq_argmax(logits, nl) : 0;
        if (rc == FTQ_OK && gold[i] >= nl)
            rc = ftq_set_error(FTQ_EINVAL, "%s:%zu: label %d is outside the model's %d labels",
                               ftq_dataset_source(p->dev), ftq_dataset_line(p->dev, i), gold[i], nl);
    }
    double secs = ftq_time_sec() - t0;
    if (rc == FTQ_OK) {
        ftq_cls_metrics cm;
        rc = ftq_cls_metrics_compute(gold, pred, n, nl, &cm);
        if (rc == FTQ_OK) {
            out->accuracy = cm.accuracy;
            out->macro_f1 = cm.macro_f1;
            out->dev_examples = cm.n;
            out->classify_per_second = secs > 0 ? (double)n / secs : 0;
            ftq_cls_metrics_free(&cm);
        }
    }
    ftq_session_free(s);
    free(logits);
    free(gold);
    free(pred);
    return rc;
}

int ftq_stage_evaluate(const char *dir, const ftq_stage_eval_params *p, ftq_stage_metrics *out)
{
    char name[32];
    memcpy(name, out->name, sizeof name);
    memset(out, 0, sizeof *out);
    memcpy(out->name, name, sizeof name);
    out->ppl = out->ppl_stderr = out->accuracy = out->macro_f1 = out->kl = out->top1_agree = NAN;
    if (ftq_bert_is_encoder_dir(dir)) {
        int rc = ftq_stage_evaluate_bert(dir, p, out);
        return rc != FTQ_OK ? ftq_wrap_error(rc, "evaluating '%s'", dir) : rc;
    }
    ftq_model *m = NULL, *ref = NULL;
    ftq_tokenizer *tok = NULL;
    int rc = ftq_model_load(dir, &m);
    if (rc == FTQ_OK)
        rc = ftq_tokenizer_load(dir, &tok);
    if (rc == FTQ_OK && p->ref_dir)
        rc = ftq_model_load(p->ref_dir, &ref);
    if (rc == FTQ_OK && m->lm_head.data && p->eval_tokens) {
        ftq_ppl_params pp = p->ppl;
        pp.ref = ref;
        ftq_ppl_result r;
        rc = ftq_perplexity(m, p->eval_tokens, p->n_eval_tokens, &pp, &r);
        if (rc == FTQ_OK) {
            out->ppl = r.ppl;
            out->ppl_stderr = r.ppl_stderr;
            out->tokens_per_second = r.tokens_per_second;
            out->tokens_scored = r.tokens_scored;
            if (ref) {
                out->kl = r.kl;
                out->top1_agree = r.top1_agree;
            }
        }
    }
    if (rc == FTQ_OK && p->dev && ftq_model_num_labels(m) > 0)
        rc = eval_dev(m, tok, p, out);
    if (rc == FTQ_OK) {
        out->file_bytes = (double)ftq_checkpoint_total_bytes(ftq_model_get_checkpoint(m));
        out->peak_rss_bytes = (double)ftq_peak_rss_bytes();
    }
    if (rc != FTQ_OK)
        ftq_wrap_error(rc, "evaluating '%s'", dir);
    ftq_tokenizer_free(tok);
    ftq_model_free(ref);
    ftq_model_free(m);
    return rc;
}
