/* quantize_arch_decoder.c - which weights of a Llama-family or GPT-2-family decoder
 * (ftq_model) ftq_quantize_model quantizes: every block's q, k, v, o, gate, up, down (GPT-2's
 * Conv1D weights transposed to [out, in], c_attn's q | k | v stacked back into one matrix),
 * embeddings and the output layer or classifier score head per the policies; a tied output
 * layer stored differently from the embedding becomes its own lm_head. */
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "quant/awq.h"
#include "quant/quantize_calib.h"
#include "quant/quantize_internal.h"
#include "quant/quantize_kplan.h"

/* One model tensor into the job of its checkpoint name: GPT-2's q, k and v (the column
 * blocks of c_attn) arrive one after another and are stacked as rows. */
static int take(ftq_qjobs *js, const ftq_model *m, const ftq_tensor *t, const ftq_quant_params *qp, int transposed)
{
    if (!t->data)
        return FTQ_OK;
    int rows = (int)t->shape[0], cols = (int)t->shape[1];
    ftq_qjob *last = js->n ? &js->j[js->n - 1] : NULL;
    if (last && strcmp(last->name, t->name) == 0) {
        float *w = malloc(sizeof(float) * (size_t)(last->rows + rows) * (size_t)cols);
        if (!w)
            return ftq_set_error(FTQ_ENOMEM, "out of memory");
        memcpy(w, last->w, sizeof(float) * (size_t)last->rows * cols);
        memcpy(w + (size_t)last->rows * cols, t->data, sizeof(float) * (size_t)rows * cols);
        free(last->owned);
        last->owned = w;
        last->w = w;
        last->rows += rows;
        return FTQ_OK;
    }
    ftq_qjob *j = ftq_qjobs_add(js);
    if (!j)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    j->name = t->name;
    j->src = ftq_checkpoint_find(m->ck, t->name);
    j->w = t->data;
    j->rows = rows;
    j->cols = cols;
    j->quantize = 1;
    j->qp = *qp;
    j->transposed = transposed;
    j->layer = -1;
    j->sensitivity = -1;
    j->out_err = -1;
    return FTQ_OK;
}

/* The calibration statistics of block l's input `kind` (0 q/k/v, 1 o, 2 gate/up, 3 down)
 * onto the job just taken. */
static void attach(ftq_qjobs *js, const ftq_model *m, const ftq_act_stats *st, const ftq_quantize_params *p, int l,
                   int kind)
{
    if (!js->n)
        return;
    ftq_qjob *j = &js->j[js->n - 1];
    const ftq_model_config *c = &m->cfg;
    const size_t C = (size_t)c->hidden_size, Q = (size_t)c->n_heads * c->head_dim, F = (size_t)c->intermediate_size;
    const size_t dim = kind == 1 ? Q : kind == 3 ? F : C;
    const double *imp[] = {st->attn_in, st->o_in, st->mlp_in, st->down_in};
    const float *gram[] = {st->attn_gram, st->o_gram, st->mlp_gram, st->down_gram};
    j->layer = l;
    if (!imp[kind] || (size_t)j->cols != dim)
        return;
    j->imp = imp[kind] + (size_t)l * dim;
    j->gram = gram[kind] ? gram[kind] + (size_t)l * dim * dim : NULL;
    j->ntok = st->tokens;
    j->gptq = p->method == FTQ_QMETHOD_GPTQ;
    j->awq = p->awq;
    j->act_order = p->act_order;
    j->damp = p->damp;
}

static int same_quant(int qa, const ftq_quant_params *a, int qb, const ftq_quant_params *b)
{
    return qa == qb && (!qa || (a->scheme == b->scheme && a->group == b->group && a->search == b->search));
}

/* Every weight the parameters select, in model order. *split: a tied head gets its own
 * lm_head (its quantization differs from the embedding's). */
static int select_jobs(const ftq_model *m, const ftq_quantize_params *p, const ftq_act_stats *st, ftq_qjobs *js,
                       int *split)
{
    const ftq_model_config *c = &m->cfg;
    const int conv1d = c->arch == FTQ_ARCH_GPT2; /* block weights stored [in, out] */
    ftq_quant_params lin, emb, head;
    ftq_qpolicy_resolve(p, FTQ_QPOLICY_SAME, &lin);
    int q_emb = ftq_qpolicy_resolve(p, p->embeddings, &emb);
    int q_head = ftq_qpolicy_resolve(p, p->head, &head);
    int rc = FTQ_OK;
    for (int l = 0; l < c->n_layers && rc == FTQ_OK; l++) {
        const ftq_layer_weights *L = &m->layers[l];
        const ftq_tensor *lw[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        static const int kinds[] = {0, 0, 0, 1, 2, 2, 3};
        for (size_t i = 0; i < sizeof lw / sizeof lw[0] && rc == FTQ_OK; i++) {
            rc = take(js, m, lw[i], &lin, conv1d);
            if (rc == FTQ_OK && lw[i]->data)
                attach(js, m, st, p, l, kinds[i]);
        }
    }
    if (rc == FTQ_OK && q_emb)
        rc = take(js, m, &m->tok_emb, &emb, 0);
    if (rc == FTQ_OK && q_emb)
        rc = take(js, m, &m->pos_emb, &emb, 0);
    *split = 0;
    if (rc != FTQ_OK)
        return rc;
    if (c->is_classifier) {
        if (p->head == FTQ_QPOLICY_AUTO)
            q_head = 0; /* a score head is tiny and decides every prediction */
        if (q_head)
            rc = take(js, m, &m->score, &head, 0);
    } else if (!c->tie_word_embeddings) {
        if (q_head)
            rc = take(js, m, &m->lm_head, &head, 0);
    } else if (!same_quant(q_emb, &emb, q_head, &head)) {
        /* tied, but the output layer is stored differently from the lookup table */
        ftq_qjob *j = ftq_qjobs_add(js);
        if (!j)
            return ftq_set_error(FTQ_ENOMEM, "out of memory");
        j->name = "lm_head.weight";
        j->copied_from = m->tok_emb.name;
        j->src = ftq_checkpoint_find(m->ck, m->tok_emb.name);
        j->w = m->tok_emb.data;
        j->rows = (int)m->tok_emb.shape[0];
        j->cols = (int)m->tok_emb.shape[1];
        j->quantize = q_head;
        j->qp = head;
        j->layer = -1;
        j->sensitivity = -1;
        j->out_err = -1;
        *split = 1;
    }
    return rc;
}

/* A job writing the folded values of a norm weight / bias (or a bias AWQ divided). */
static int replaced(ftq_qjobs *js, const ftq_model *m, const ftq_tensor *t)
{
    if (!t->data || !t->name)
        return FTQ_OK;
    const ftq_tensor *src = ftq_checkpoint_find(m->ck, t->name);
    if (!src || ftq_tensor_numel(src) != ftq_tensor_numel(t))
        return ftq_set_error(FTQ_EFORMAT, "cannot write awq scales into '%s': not a tensor of the checkpoint with "
                             "its shape", t->name);
    ftq_qjob *j = ftq_qjobs_add(js);
    if (!j)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    j->name = t->name;
    j->src = src;
    j->w = t->data;
    j->rows = 1;
    j->cols = (int)ftq_tensor_numel(t);
    j->replace = 1;
    return FTQ_OK;
}

/* Every non-linear tensor ftq_awq_apply changed: the norms of a block whose q/k/v or
 * gate/up took scales, v_proj's / up_proj's bias for o / down. */
static int awq_replaced(const ftq_model *m, const double *alphas, ftq_qjobs *js)
{
    int rc = FTQ_OK;
    for (int l = 0; l < m->cfg.n_layers && rc == FTQ_OK; l++) {
        const ftq_layer_weights *L = &m->layers[l];
        const double *a = alphas + (size_t)l * FTQ_AWQ_KINDS;
        if (a[FTQ_AWQ_QKV] > 0)
            rc = replaced(js, m, &L->norm1_w);
        if (rc == FTQ_OK && a[FTQ_AWQ_QKV] > 0)
            rc = replaced(js, m, &L->norm1_b);
        if (rc == FTQ_OK && a[FTQ_AWQ_O] > 0)
            rc = replaced(js, m, &L->bv);
        if (rc == FTQ_OK && a[FTQ_AWQ_MLP] > 0)
            rc = replaced(js, m, &L->norm2_w);
        if (rc == FTQ_OK && a[FTQ_AWQ_MLP] > 0)
            rc = replaced(js, m, &L->norm2_b);
        if (rc == FTQ_OK && a[FTQ_AWQ_DOWN] > 0)
            rc = replaced(js, m, &L->b_up);
    }
    return rc;
}

/* The model and the calibration statistics the jobs point into. */
typedef struct {
    ftq_model *m;
    ftq_act_stats st;
    double *alphas; /* AWQ: [L][4] */
} owner;

static void release(void *o)
{
    owner *ow = o;
    free(ow->alphas);
    ftq_model_free(ow->m);
    ftq_qcalib_stats_free(&ow->st);
    free(ow);
}

static int open_decoder(const char *dir, const ftq_quantize_params *p, ftq_qsource *src, ftq_qjobs *js)
{
    owner *ow = calloc(1, sizeof *ow);
    if (!ow)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    int rc = ftq_model_load(dir, &ow->m);
    if (rc != FTQ_OK) {
        free(ow);
        return rc;
    }
    ftq_model *m = ow->m;
    src->ck = m->ck;
    src->owner = ow;
    src->release = release;
    double t0 = ftq_time_sec();
    if (p->calib) {
        rc = ftq_qcalib_collect(m, p, p->method == FTQ_QMETHOD_GPTQ || p->awq, &ow->st);
        if (rc != FTQ_OK)
            return rc;
        src->calib_tokens = ow->st.tokens;
    }
    if (p->awq) {
        ftq_quant_params lin;
        ftq_qpolicy_resolve(p, FTQ_QPOLICY_SAME, &lin);
        ow->alphas = malloc(sizeof(double) * FTQ_AWQ_KINDS * (size_t)m->cfg.n_layers);
        rc = ow->alphas ? ftq_awq_apply(m, &ow->st, &lin, 1, ow->alphas)
                        : ftq_set_error(FTQ_ENOMEM, "out of memory");
        if (rc != FTQ_OK)
            return rc;
        src->awq_alpha = ow->alphas;
        src->awq_layers = m->cfg.n_layers;
    }
    rc = select_jobs(m, p, &ow->st, js, &src->split);
    if (rc == FTQ_OK && p->awq)
        rc = awq_replaced(m, ow->alphas, js);
    if (rc == FTQ_OK)
        ftq_qkplan_assign(p, js);
    if (rc == FTQ_OK && p->target_bits > 0)
        rc = ftq_qcalib_plan(m, p, js);
    src->calib_seconds = p->calib ? ftq_time_sec() - t0 : 0;
    return rc;
}

const ftq_quant_arch ftq_quant_arch_decoder = {"decoder", NULL, open_decoder};
