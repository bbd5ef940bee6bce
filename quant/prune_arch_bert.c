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
#include "quant/prune_internal.h"

enum { WANDA_ROWS = 8 }; /* calibration windows per forward pass */

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

/* sum[j] += x[i][j]^2 over n rows of d features. */
static void add_squares(double *sum, const float *x, size_t n, int d)
{
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < d; j++)
            sum[j] += (double)x[i * (size_t)d + j] * x[i * (size_t)d + j];
}

static int wanda(ftq_bert *m, const ftq_prune_params *p, int64_t *calib_tokens)
{
    const ftq_bert_config *c = &m->cfg;
    const int C = c->hidden, F = c->ffn;
    int ctx = p->calib_ctx < c->max_position ? p->calib_ctx : c->max_position;
    int bos = p->calib_bos >= 0, per = ctx - bos;
    if (ctx < 2 || per < 1)
        return ftq_set_error(FTQ_EINVAL, "cannot prune: calibration context %d must be in [2, %d]", p->calib_ctx,
                             c->max_position);
    size_t n_win = p->n_calib / (size_t)per;
    if (n_win == 0)
        return ftq_set_error(FTQ_EINVAL, "cannot prune with wanda: %zu calibration tokens are fewer than one window "
                             "of %d", p->n_calib, per);
    double *sum[FTQ_BERT_IN_NONE] = {calloc((size_t)C, sizeof(double)), calloc((size_t)C, sizeof(double)),
                                     calloc((size_t)C, sizeof(double)), calloc((size_t)F, sizeof(double))};
    float *norm = malloc(sizeof(float) * (size_t)(F > C ? F : C));
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)WANDA_ROWS * ctx);
    int lens[WANDA_ROWS];
    ftq_bert_ws *ws = NULL;
    int rc = !sum[0] || !sum[1] || !sum[2] || !sum[3] || !norm || !ids ? ftq_set_error(FTQ_ENOMEM, "out of memory")
                                                                        : ftq_bert_ws_new(m, WANDA_ROWS, ctx, 0, &ws);
    for (int b = 0; b < WANDA_ROWS; b++)
        lens[b] = ctx;
    for (int l = 0; l < c->n_layers && rc == FTQ_OK; l++) {
        int64_t tokens = 0;
        memset(sum[FTQ_BERT_IN_X], 0, sizeof(double) * (size_t)C);
        memset(sum[FTQ_BERT_IN_ATT], 0, sizeof(double) * (size_t)C);
        memset(sum[FTQ_BERT_IN_H1], 0, sizeof(double) * (size_t)C);
        memset(sum[FTQ_BERT_IN_G], 0, sizeof(double) * (size_t)F);
        for (size_t w0 = 0; w0 < n_win && rc == FTQ_OK; w0 += WANDA_ROWS) {
            int nb = n_win - w0 < WANDA_ROWS ? (int)(n_win - w0) : WANDA_ROWS;
            for (int b = 0; b < nb; b++) {
                int32_t *row = ids + (size_t)b * ctx;
                if (bos)
                    row[0] = p->calib_bos;
                memcpy(row + bos, p->calib + (w0 + (size_t)b) * per, sizeof(int32_t) * (size_t)per);
            }
            rc = ftq_bert_forward_layers(m, ws, ids, NULL, lens, nb, ctx, l + 1);
            if (rc != FTQ_OK)
                break;
            size_t n = (size_t)nb * ctx; /* every token is real: windows are full */
            add_squares(sum[FTQ_BERT_IN_X], ftq_bert_x(ws, l), n, C);
            add_squares(sum[FTQ_BERT_IN_ATT], ws->att, n, C);
            add_squares(sum[FTQ_BERT_IN_H1], ws->h1, n, C);
            add_squares(sum[FTQ_BERT_IN_G], ws->g, n, F);
            tokens += (int64_t)n;
        }
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
    ftq_bert_ws_free(ws);
    for (int k = 0; k < FTQ_BERT_IN_NONE; k++)
        free(sum[k]);
    free(norm);
    free(ids);
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
