/* prune_arch_bert.c - pruning a BERT encoder: the weights are picked from the encoder's
 * tensor table by role (model/bert.c): every block's linear weights, the pooler and the
 * classifier with include_head, the embeddings with include_embeddings. Wanda runs block by
 * block: the statistics of block l's inputs (the hidden state for query / key / value, the
 * attention output, the post-LN hidden state for the intermediate layer, the GELU output for
 * the output layer) come from the model with blocks < l already pruned, over the real tokens
 * of calibration windows. The file keeps its names, layouts and dtypes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/bert_internal.h"
#include "quant/bert_calib.h"
#include "quant/prune_internal.h"

static int selected(const ftq_bert_tensor *t, const ftq_prune_params *p)
{
    return t->role == FTQ_BERT_ROLE_LINEAR || (t->role == FTQ_BERT_ROLE_HEAD && p->include_head) ||
           (t->role == FTQ_BERT_ROLE_EMBED && p->include_embeddings);
}

static int prune_one(ftq_bert *m, const ftq_bert_tensor *t, const ftq_prune_params *p, const float *norm)
{
    float *w = m->params + t->off;
    int64_t rows = t->shape[0], cols = t->ndim > 1 ? t->shape[1] : 1;
    int rc;
    if (p->method == FTQ_PRUNE_NM)
        rc = ftq_prune_nm(w, rows, cols, p->n, p->m);
    else if (p->method == FTQ_PRUNE_WANDA)
        rc = ftq_prune_wanda(w, rows, cols, norm, p->sparsity, p->n, p->m);
    else
        rc = ftq_prune_magnitude(w, rows, cols, p->sparsity, p->scope == FTQ_PRUNE_TENSOR ? FTQ_PRUNE_TENSOR : FTQ_PRUNE_ROW);
    return rc != FTQ_OK ? ftq_wrap_error(rc, "tensor '%s'", t->name) : FTQ_OK;
}

static int wanda(ftq_bert *m, const ftq_prune_params *p, int64_t *calib_tokens)
{
    const ftq_bert_config *c = &m->cfg;
    const int C = c->hidden, F = c->ffn;
    const ftq_bert_calib cal = {p->calib, p->n_calib, p->calib_ctx, p->calib_bos};
    double *sum[FTQ_BERT_IN_NONE] = {calloc((size_t)C, sizeof(double)), calloc((size_t)C, sizeof(double)),
                                     calloc((size_t)C, sizeof(double)), calloc((size_t)F, sizeof(double))};
    float *norm = malloc(sizeof(float) * (size_t)(F > C ? F : C));
    int rc = !sum[0] || !sum[1] || !sum[2] || !sum[3] || !norm ? ftq_set_error(FTQ_ENOMEM, "out of memory") : FTQ_OK;
    for (int l = 0; l < c->n_layers && rc == FTQ_OK; l++) {
        int64_t tokens = 0;
        rc = ftq_bert_block_input_sums(m, &cal, l, "prune with wanda", sum, &tokens);
        *calib_tokens = tokens;
        for (int i = 0; i < m->n_tensors && rc == FTQ_OK; i++) {
            const ftq_bert_tensor *t = &m->tensors[i];
            if (t->layer != l || t->role != FTQ_BERT_ROLE_LINEAR)
                continue;
            const double *s = sum[t->input];
            for (int64_t j = 0; j < t->shape[1]; j++)
                norm[j] = (float)sqrt(s[j] / (double)(tokens > 0 ? tokens : 1));
            rc = prune_one(m, t, p, norm);
        }
    }
    for (int k = 0; k < FTQ_BERT_IN_NONE; k++)
        free(sum[k]);
    free(norm);
    return rc;
}

/* model.safetensors in dir: the checkpoint's tensors, the pruned ones from the model's
 * buffer converted back to their file dtype (exact zeros stay zeros). */
static int write_pruned(const ftq_bert *m, const char *in_dir, const char *dir, const ftq_prune_params *p,
                        ftq_prune_report *r)
{
    ftq_checkpoint *ck = NULL;
    int rc = ftq_checkpoint_open(in_dir, &ck);
    if (rc != FTQ_OK)
        return rc;
    size_t nt = ftq_checkpoint_count(ck);
    ftq_tensor *outs = calloc(nt ? nt : 1, sizeof *outs);
    void **bufs = calloc(nt ? nt : 1, sizeof *bufs);
    r->tensors = calloc(nt ? nt : 1, sizeof *r->tensors);
    if (!outs || !bufs || !r->tensors)
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
    for (size_t i = 0; i < nt && rc == FTQ_OK; i++) {
        const ftq_tensor *ft = ftq_checkpoint_tensor(ck, i);
        const ftq_dtype_traits *tr = ftq_dtype_info(ft->dtype);
        outs[i] = *ft;
        outs[i].owned = 0;
        int64_t n = ftq_tensor_numel(ft);
        const ftq_bert_tensor *t = NULL;
        for (int k = 0; k < m->n_tensors && !t; k++)
            if (strcmp(m->tensors[k].name, ft->name) == 0)
                t = &m->tensors[k];
        if (!tr->is_float || !tr->to_f32)
            continue; /* embeddings.position_ids */
        r->model_numel += n;
        if (!t || !selected(t, p)) {
            rc = ftq_prune_count_untouched(ft, r);
            continue;
        }
        rc = ftq_prune_emit(ft, m->params + t->off, n, r, &bufs[i]);
        outs[i].data = bufs[i];
    }
    if (rc == FTQ_OK)
        rc = ftq_prune_write_weights(ck, dir, outs, nt);
    for (size_t i = 0; bufs && i < nt; i++)
        free(bufs[i]);
    free(bufs);
    free(outs);
    ftq_checkpoint_close(ck);
    return rc;
}

static int prune_bert(const char *in_dir, const char *dir, const ftq_prune_params *p, ftq_prune_report *r)
{
    ftq_bert *m = NULL;
    int rc = ftq_bert_load(in_dir, &m);
    if (rc != FTQ_OK)
        return rc;
    if (ftq_bert_quantized_count(m) > 0) {
        ftq_bert_free(m);
        return ftq_set_error(FTQ_EUNSUPPORTED, "cannot prune '%s': it is quantized (prune before quantizing, or "
                                               "dequantize it first)", in_dir);
    }
    if (p->method == FTQ_PRUNE_WANDA) {
        rc = wanda(m, p, &r->calib_tokens);
    } else if (p->method == FTQ_PRUNE_MAGNITUDE && p->scope == FTQ_PRUNE_GLOBAL) {
        ftq_prune_span *sp = malloc(sizeof *sp * (size_t)m->n_tensors);
        size_t n = 0;
        for (int i = 0; sp && i < m->n_tensors; i++)
            if (selected(&m->tensors[i], p))
                sp[n++] = (ftq_prune_span){m->params + m->tensors[i].off, (int64_t)m->tensors[i].numel};
        rc = sp ? ftq_prune_global(sp, n, p->sparsity) : ftq_set_error(FTQ_ENOMEM, "out of memory");
        free(sp);
    } else {
        for (int i = 0; i < m->n_tensors && rc == FTQ_OK; i++)
            if (selected(&m->tensors[i], p))
                rc = prune_one(m, &m->tensors[i], p, NULL);
    }
    if (rc == FTQ_OK)
        rc = write_pruned(m, in_dir, dir, p, r);
    ftq_bert_free(m);
    return rc;
}

const ftq_prune_arch ftq_prune_arch_bert = {"bert", ftq_bert_is_encoder_dir, prune_bert};
