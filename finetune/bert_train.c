/* bert_train.c - BERT sequence-classifier training: the backward pass of the encoder
 * (model/bert.c's forward in reverse), the training loop (full / frozen / head-only on a
 * feature cache) and saving a BertForSequenceClassification directory.
 * Invariant: gradients are laid out exactly like the parameter buffer and only ever added
 * to; activation gradients live in the workspace's backward scratch. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "finetune/trainer_internal.h"
#include "include/ftq_bert_train.h"
#include "kernels/attention_enc.h"
#include "kernels/kernels.h"
#include "model/bert_internal.h"

size_t ftq_bert_num_params(const ftq_bert *m) { return m->n_params; }
float *ftq_bert_params(ftq_bert *m) { return m->params; }

const char *ftq_bert_tensor_info(const ftq_bert *m, int i, size_t *off, size_t *numel)
{
    if (i < 0 || i >= m->n_tensors)
        return NULL;
    *off = m->tensors[i].off;
    *numel = m->tensors[i].numel;
    return m->tensors[i].name;
}

/* ---- the classifier head ------------------------------------------------------------ */

int ftq_bert_add_head(ftq_bert *m, int n_labels, ftq_pool pool, uint64_t seed)
{
    ftq_bert_config *c = &m->cfg;
    if (n_labels < 1 || n_labels > (1 << 16))
        return ftq_set_error(FTQ_EINVAL, "classifier with %d labels", n_labels);
    if (pool == FTQ_POOL_POOLER && !c->has_pooler)
        return ftq_set_error(FTQ_EINVAL, "pooling 'pooler' on a model without a pooler (use mean or cls)");
    if (pool == FTQ_POOL_MAX)
        return ftq_set_error(FTQ_EINVAL, "max pooling is not offered for classification (use pooler, mean or cls)");
    int keep = m->n_tensors; /* drop an existing head: it is always the last two tensors */
    if (c->num_labels)
        keep -= 2;
    size_t off = keep ? m->tensors[keep - 1].off + ((m->tensors[keep - 1].numel + 15) & ~(size_t)15) : 0;
    size_t C = (size_t)c->hidden, nw = (size_t)n_labels * C, total = off + ((nw + 15) & ~(size_t)15) +
                                                                          (((size_t)n_labels + 15) & ~(size_t)15);
    float *p = aligned_alloc(64, (total * sizeof(float) + 63) & ~(size_t)63);
    if (!p)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    memcpy(p, m->params, off * sizeof(float));
    free(m->params);
    m->params = p;
    m->n_params = total;
    m->n_tensors = keep;
    c->num_labels = n_labels;
    c->pool = pool;
    static const char *const names[2] = {"classifier.weight", "classifier.bias"};
    for (int k = 0; k < 2; k++) {
        ftq_bert_tensor *t = &m->tensors[m->n_tensors++];
        memset(t, 0, sizeof *t);
        snprintf(t->name, sizeof t->name, "%s", names[k]);
        t->ndim = 2 - k;
        t->shape[0] = n_labels;
        t->shape[1] = k ? 0 : (int64_t)C;
        t->numel = k ? (size_t)n_labels : nw;
        t->off = k ? off + ((nw + 15) & ~(size_t)15) : off;
        t->layer = -1;
        t->field = k ? offsetof(ftq_bert_views, cls_b) : offsetof(ftq_bert_views, cls_w);
    }
    ftq_bert_bind(m, m->params, &m->w, m->w.L);
    ftq_rng r;
    ftq_rng_seed(&r, seed);
    for (size_t i = 0; i < nw; i++)
        m->w.cls_w[i] = 0.02f * ftq_rng_normal(&r);
    memset(m->w.cls_b, 0, sizeof(float) * (size_t)n_labels);
    return FTQ_OK;
}

/* ---- backward ------------------------------------------------------------------------ */

enum { S_DX, S_DY, S_DR, S_DQ, S_DK, S_DV, S_DATT, S_DF, S_N };

int ftq_bert_loss_grad(ftq_bert *m, ftq_bert_ws *ws, const int32_t *labels, float *grads, int first_layer,
                       double *loss)
{
    const ftq_bert_config *c = &m->cfg;
    if (!ws->train)
        return ftq_set_error(FTQ_EINVAL, "bert backward: the workspace was not made for training");
    if (!c->num_labels)
        return ftq_set_error(FTQ_EINVAL, "bert backward: the model has no classifier head");
    int B = ws->B, T = ws->T, C = c->hidden, F = c->ffn, H = c->n_heads, NL = c->num_labels, N = B * T;
    int L = c->n_layers;
    for (int b = 0; b < B; b++)
        if (labels[b] < 0 || labels[b] >= NL)
            return ftq_set_error(FTQ_EINVAL, "bert backward: label %ld of row %d is not in 0..%d", (long)labels[b], b,
                                 NL - 1);
    size_t nc = ws->nc, nf = ws->nf;
    if (!ws->bwd && !(ws->bwd = malloc(sizeof(float) * ((S_N - 1) * nc + nf + 4 * (size_t)ws->max_rows * C))))
        return ftq_set_error(FTQ_ENOMEM, "out of memory for the bert backward pass");
    float *sc[S_N];
    for (int i = 0; i < S_DF; i++)
        sc[i] = ws->bwd + (size_t)i * nc;
    sc[S_DF] = ws->bwd + (size_t)S_DF * nc;
    float *dfeat = sc[S_DF] + nf, *dpre = dfeat + (size_t)ws->max_rows * C, *dlog = dpre + (size_t)ws->max_rows * C;

    ftq_bert_layer *gl = malloc(sizeof *gl * (size_t)L);
    if (!gl)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    ftq_bert_views g;
    ftq_bert_bind(m, grads, &g, gl);
    int solo = ftq_sgemm_stage_begin(N);
    const ftq_bert_views *w = &m->w;

    /* classifier: logits = feat W^T + b; mean cross-entropy */
    int rc = ftq_bert_classify(m, ws, ws->logits);
    if (rc) {
        ftq_sgemm_stage_end(solo);
        free(gl);
        return rc;
    }
    double tot = 0;
    for (int b = 0; b < B; b++) {
        const float *z = ws->logits + (size_t)b * NL;
        double mx = z[0], s = 0;
        for (int i = 1; i < NL; i++)
            mx = z[i] > mx ? z[i] : mx;
        for (int i = 0; i < NL; i++)
            s += exp((double)z[i] - mx);
        tot += mx + log(s) - z[labels[b]];
        for (int i = 0; i < NL; i++)
            dlog[(size_t)b * NL + i] = (float)((exp((double)z[i] - mx) / s - (i == labels[b])) / B);
    }
    *loss = tot / B;
    ftq_linear_backward(dfeat, g.cls_w, g.cls_b, dlog, ws->feat, w->cls_w, B, C, NL, 0);
    if (first_layer > L) {
        ftq_sgemm_stage_end(solo);
        free(gl);
        return FTQ_OK;
    }

    /* pooling -> dY, the gradient of the last hidden state */
    float *dy = sc[S_DY];
    memset(dy, 0, sizeof(float) * (size_t)N * C);
    for (int b = 0; b < B; b++) {
        float *d0 = dy + (size_t)b * T * C;
        const float *df = dfeat + (size_t)b * C;
        if (c->pool == FTQ_POOL_MEAN) {
            for (int t = 0; t < ws->lens[b]; t++)
                for (int d = 0; d < C; d++)
                    d0[(size_t)t * C + d] = df[d] / ws->lens[b];
        } else if (c->pool == FTQ_POOL_CLS) {
            memcpy(d0, df, sizeof(float) * (size_t)C);
        } else {
            const float *pz = ws->feat + (size_t)b * C; /* tanh output */
            for (int d = 0; d < C; d++)
                dpre[(size_t)b * C + d] = df[d] * (1.0f - pz[d] * pz[d]);
        }
    }
    if (c->pool == FTQ_POOL_POOLER) {
        float *dcls = dfeat; /* reuse: dfeat is no longer needed */
        ftq_linear_backward(dcls, g.pool_w, g.pool_b, dpre, ws->cls_in, w->pool_w, B, C, C, 0);
        for (int b = 0; b < B; b++)
            memcpy(dy + (size_t)b * T * C, dcls + (size_t)b * C, sizeof(float) * (size_t)C);
    }

    size_t pr = (size_t)ws->max_rows * H * ws->max_T * ws->max_T;
    int stop = first_layer < 0 ? 0 : first_layer;
    for (int l = L - 1; l >= stop; l--) {
        const ftq_bert_layer *W = &w->L[l];
        ftq_bert_layer *G = &gl[l];
        size_t s = (size_t)l;
        const float *x = ftq_bert_x(ws, l), *q = ws->q + s * nc, *k = ws->k + s * nc, *v = ws->v + s * nc;
        const float *att = ws->att + s * nc, *r1 = ws->r1 + s * nc, *h1 = ws->h1 + s * nc, *r2 = ws->r2 + s * nc;
        const float *f = ws->f + s * nf, *gg = ws->g + s * nf;
        const float *m1 = ws->ln1_mean + s * (nc / C), *s1 = ws->ln1_rstd + s * (nc / C);
        const float *m2 = ws->ln2_mean + s * (nc / C), *s2 = ws->ln2_rstd + s * (nc / C);
        float *dr = sc[S_DR], *dx = sc[S_DX], *dff = sc[S_DF];
        /* y = LN2(r2) */
        memset(dr, 0, sizeof(float) * (size_t)N * C);
        ftq_layernorm_backward(dr, G->ln2_w, G->ln2_b, dy, r2, W->ln2_w, m2, s2, N, C);
        /* r2 = gelu(f) W2^T + b2 + h1 */
        ftq_linear_backward(dff, G->w2, G->b2, dr, gg, W->w2, N, F, C, 0);
        ftq_gelu_erf_backward(dff, f, dff, (size_t)N * F);
        memcpy(dx, dr, sizeof(float) * (size_t)N * C); /* dh1: residual */
        ftq_linear_backward(dx, G->w1, G->b1, dff, h1, W->w1, N, C, F, 1);
        /* h1 = LN1(r1) */
        memset(dr, 0, sizeof(float) * (size_t)N * C);
        ftq_layernorm_backward(dr, G->ln1_w, G->ln1_b, dx, r1, W->ln1_w, m1, s1, N, C);
        /* r1 = att Wo^T + bo + x */
        ftq_linear_backward(sc[S_DATT], G->wo, G->bo, dr, att, W->wo, N, C, C, 0);
        ftq_attention_enc_backward(sc[S_DQ], sc[S_DK], sc[S_DV], sc[S_DATT], ws->probs + s * pr, q, k, v, C, ws->lens,
                                   B, T, H, c->head_dim);
        memcpy(dy, dr, sizeof(float) * (size_t)N * C); /* dx: residual, becomes the next dY */
        ftq_linear_backward(dy, G->wq, G->bq, sc[S_DQ], x, W->wq, N, C, C, 1);
        ftq_linear_backward(dy, G->wk, G->bk, sc[S_DK], x, W->wk, N, C, C, 1);
        ftq_linear_backward(dy, G->wv, G->bv, sc[S_DV], x, W->wv, N, C, C, 1);
    }
    if (first_layer <= 0) { /* embeddings: x0 = LN(wte[id] + wpe[t] + wtt[type]) */
        float *de = sc[S_DX];
        memset(de, 0, sizeof(float) * (size_t)N * C);
        ftq_layernorm_backward(de, g.eln_w, g.eln_b, dy, ws->emb, w->eln_w, ws->emb_mean, ws->emb_rstd, N, C);
        ftq_embedding_backward(g.wte, g.wpe, de, ws->ids, B, T, C);
        for (int i = 0; i < N; i++) {
            float *dt = g.wtt + (size_t)ws->types[i] * C;
            const float *src = de + (size_t)i * C;
            for (int d = 0; d < C; d++)
                dt[d] += src[d];
        }
    }
    ftq_sgemm_stage_end(solo);
    free(gl);
    return FTQ_OK;
}

/* ---- training ------------------------------------------------------------------------ */

ftq_bert_train_params ftq_bert_train_default_params(void)
{
    ftq_bert_train_params p = {FTQ_BERT_FULL, 3, 1, 32, 64, 5e-5, 0.0, 1.0, 0.0, 42};
    return p;
}

/* Tokenized examples: example i is tok[off[i] .. off[i+1]) with its token types. */
typedef struct {
    size_t n, *off;
    int32_t *tok, *type;
} bert_examples;

static void examples_free(bert_examples *e)
{
    free(e->off);
    free(e->tok);
    free(e->type);
}

static int examples_build(const ftq_tokenizer *tk, const char *const *a, const char *const *b, size_t n, int max_len,
                          bert_examples *e, size_t *truncated)
{
    memset(e, 0, sizeof *e);
    size_t cap = n * 16 + 16, used = 0;
    e->n = n;
    e->off = malloc(sizeof *e->off * (n + 1));
    e->tok = malloc(sizeof *e->tok * cap);
    e->type = malloc(sizeof *e->type * cap);
    if (!e->off || !e->tok || !e->type)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    *truncated = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t *ids = NULL, *ty = NULL;
        size_t k = 0;
        int tr = 0;
        int rc = ftq_bert_tokenize(tk, a[i], b ? b[i] : NULL, max_len, &ids, &ty, &k, &tr);
        if (rc)
            return ftq_wrap_error(rc, "text %zu", i + 1);
        if (used + k > cap) {
            while (used + k > cap)
                cap *= 2;
            int32_t *t1 = realloc(e->tok, sizeof *t1 * cap), *t2 = t1 ? realloc(e->type, sizeof *t2 * cap) : NULL;
            if (t1)
                e->tok = t1;
            if (t2)
                e->type = t2;
            if (!t1 || !t2) {
                free(ids);
                free(ty);
                return ftq_set_error(FTQ_ENOMEM, "out of memory");
            }
        }
        e->off[i] = used;
        memcpy(e->tok + used, ids, sizeof *ids * k);
        memcpy(e->type + used, ty, sizeof *ty * k);
        used += k;
        *truncated += (size_t)tr;
        free(ids);
        free(ty);
    }
    e->off[n] = used;
    return FTQ_OK;
}

/* Rows order[r0 .. r0+B) padded to their longest. Returns T. */
static int gather(const bert_examples *e, const uint32_t *order, size_t r0, int B, int32_t *ids, int32_t *types,
                  int *lens, int64_t *tokens)
{
    int T = 1;
    for (int b = 0; b < B; b++) {
        size_t i = order[r0 + (size_t)b];
        lens[b] = (int)(e->off[i + 1] - e->off[i]);
        T = lens[b] > T ? lens[b] : T;
        *tokens += lens[b];
    }
    for (int b = 0; b < B; b++) {
        size_t i = order[r0 + (size_t)b];
        memset(ids + (size_t)b * T, 0, sizeof *ids * (size_t)T);
        memset(types + (size_t)b * T, 0, sizeof *types * (size_t)T);
        memcpy(ids + (size_t)b * T, e->tok + e->off[i], sizeof *ids * (size_t)lens[b]);
        memcpy(types + (size_t)b * T, e->type + e->off[i], sizeof *types * (size_t)lens[b]);
    }
    return T;
}

/* Offset of the first trained float: the layout is embeddings, blocks, pooler, classifier. */
static size_t trainable_from(const ftq_bert *m, int first_layer)
{
    char name[160];
    if (first_layer <= 0)
        return 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const ftq_bert_tensor *t = &m->tensors[i];
        if (first_layer > m->cfg.n_layers) {
            if (strcmp(t->name, "classifier.weight") == 0)
                return t->off;
        } else if (first_layer == m->cfg.n_layers) {
            snprintf(name, sizeof name, "%spooler.dense.weight", m->cfg.prefix);
            if (strcmp(t->name, name) == 0 || strcmp(t->name, "classifier.weight") == 0)
                return t->off;
        } else if (t->layer == first_layer) {
            return t->off;
        }
    }
    return m->n_params;
}

static int train_head_cached(ftq_bert *m, const ftq_tokenizer *tk, const char *const *texts,
                             const char *const *texts2, const int32_t *labels, size_t n,
                             const ftq_bert_train_params *p, ftq_bert_progress_fn fn, void *user,
                             ftq_bert_train_report *rep);

int ftq_bert_train(ftq_bert *m, const ftq_tokenizer *tk, const char *const *texts, const char *const *texts2,
                   const int32_t *labels, size_t n, const ftq_bert_train_params *p, ftq_bert_progress_fn fn,
                   void *user, ftq_bert_train_report *rep)
{
    ftq_bert_train_report dummy;
    if (!rep)
        rep = &dummy;
    memset(rep, 0, sizeof *rep);
    const ftq_bert_config *c = &m->cfg;
    if (!c->num_labels)
        return ftq_set_error(FTQ_EINVAL, "bert training: the model has no classifier head");
    if (n == 0 || p->batch < 1 || p->epochs < 1 || p->max_len < 2 || p->max_len > c->max_position)
        return ftq_set_error(FTQ_EINVAL, "bert training: %zu examples, batch %d, %d epochs, max_len %d (2..%d)", n,
                             p->batch, p->epochs, p->max_len, c->max_position);
    for (size_t i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= c->num_labels)
            return ftq_set_error(FTQ_EINVAL, "bert training: example %zu has label %ld (expected 0..%d)", i + 1,
                                 (long)labels[i], c->num_labels - 1);
    if (p->mode == FTQ_BERT_HEAD)
        return train_head_cached(m, tk, texts, texts2, labels, n, p, fn, user, rep);
    int first = p->mode == FTQ_BERT_FROZEN ? p->n_frozen : 0;
    if (first < 0 || first > c->n_layers)
        return ftq_set_error(FTQ_EINVAL, "bert training: cannot freeze %d of %d blocks", first, c->n_layers);
    double t0 = ftq_time_sec();
    bert_examples ex;
    int rc = examples_build(tk, texts, texts2, n, p->max_len, &ex, &rep->truncated);
    ftq_bert_ws *ws = NULL;
    if (!rc)
        rc = ftq_bert_ws_new(m, p->batch, p->max_len, 1, &ws);
    size_t np = m->n_params, from = trainable_from(m, first);
    float *g = NULL, *mo = NULL, *vo = NULL;
    int32_t *ids = malloc(sizeof *ids * (size_t)p->batch * p->max_len);
    int32_t *types = malloc(sizeof *types * (size_t)p->batch * p->max_len), *lab = malloc(sizeof *lab * (size_t)p->batch);
    int *lens = malloc(sizeof *lens * (size_t)p->batch);
    uint32_t *order = malloc(sizeof *order * n);
    if (!rc && (!(g = calloc(np, sizeof *g)) || !(mo = calloc(np - from + 1, sizeof *mo)) ||
                !(vo = calloc(np - from + 1, sizeof *vo)) || !ids || !types || !lab || !lens || !order))
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory for training %zu parameters", np - from);
    int64_t steps_per_epoch = (int64_t)((n + (size_t)p->batch - 1) / (size_t)p->batch);
    int64_t total = steps_per_epoch * p->epochs, step = 0;
    int64_t warm = (int64_t)ceil(p->warmup_ratio * (double)total);
    ftq_adamw_params ap = {0.9f, 0.999f, 1e-8f, (float)p->weight_decay};
    ftq_rng rng;
    ftq_rng_seed(&rng, p->seed);
    double loss_sum = 0;
    for (int ep = 0; !rc && ep < p->epochs; ep++) {
        for (size_t i = 0; i < n; i++)
            order[i] = (uint32_t)i;
        ftq_shuffle(order, n, &rng);
        for (size_t r0 = 0; !rc && r0 < n; r0 += (size_t)p->batch) {
            int B = n - r0 < (size_t)p->batch ? (int)(n - r0) : p->batch;
            int T = gather(&ex, order, r0, B, ids, types, lens, &rep->tokens);
            for (int b = 0; b < B; b++)
                lab[b] = labels[order[r0 + (size_t)b]];
            double loss = 0;
            memset(g + from, 0, sizeof *g * (np - from));
            rc = ftq_bert_forward(m, ws, ids, types, lens, B, T);
            if (!rc)
                rc = ftq_bert_loss_grad(m, ws, lab, g, first, &loss);
            if (rc)
                break;
            ftq_grad_clip(g + from, np - from, p->max_grad_norm);
            double lr = p->lr * ftq_schedule_factor(FTQ_SCHEDULE_LINEAR, step, warm, total);
            step++;
            ftq_adamw_update(m->params + from, g + from, mo, vo, np - from, (float)lr, &ap, step, 1);
            loss_sum += loss;
            rep->last_loss = loss;
            rep->steps = step;
            if (fn && fn(user, step, total, loss, lr))
                r0 = n; /* stop early */
        }
    }
    rep->mean_loss = rep->steps ? loss_sum / (double)rep->steps : 0;
    rep->seconds = ftq_time_sec() - t0;
    examples_free(&ex);
    ftq_bert_ws_free(ws);
    free(g);
    free(mo);
    free(vo);
    free(ids);
    free(types);
    free(lab);
    free(lens);
    free(order);
    return rc;
}

/* ---- head-only: features once, then the classifier on the cache ---------------------- */

typedef struct {
    const ftq_bert *m;
    float *feats;
} feat_ctx;

static int feat_batch(void *user, size_t row0, int B, ftq_bert_ws *ws)
{
    feat_ctx *f = user;
    (void)B;
    return ftq_bert_pool(f->m, ws, f->m->cfg.pool, 0, f->feats + row0 * (size_t)f->m->cfg.hidden);
}

static int train_head_cached(ftq_bert *m, const ftq_tokenizer *tk, const char *const *texts,
                             const char *const *texts2, const int32_t *labels, size_t n,
                             const ftq_bert_train_params *p, ftq_bert_progress_fn fn, void *user,
                             ftq_bert_train_report *rep)
{
    int C = m->cfg.hidden, NL = m->cfg.num_labels;
    double t0 = ftq_time_sec();
    feat_ctx fc = {m, malloc(sizeof(float) * n * (size_t)C)};
    if (!fc.feats)
        return ftq_set_error(FTQ_ENOMEM, "out of memory for %zu feature rows", n);
    int rc = ftq_bert_run_texts(m, tk, texts, texts2, n, p->max_len, 64, feat_batch, &fc, &rep->truncated,
                                &rep->tokens);
    rep->feature_seconds = ftq_time_sec() - t0;
    size_t nw = (size_t)NL * C, np = nw + (size_t)NL;
    float *g = calloc(np, sizeof *g), *mo = calloc(np, sizeof *mo), *vo = calloc(np, sizeof *vo);
    float *pw = malloc(sizeof *pw * np), *x = malloc(sizeof *x * (size_t)p->batch * C);
    float *z = malloc(sizeof *z * (size_t)p->batch * NL);
    uint32_t *order = malloc(sizeof *order * n);
    if (!rc && (!g || !mo || !vo || !pw || !x || !z || !order))
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
    if (!rc) { /* classifier weight and bias as one contiguous vector for AdamW */
        memcpy(pw, m->w.cls_w, sizeof *pw * nw);
        memcpy(pw + nw, m->w.cls_b, sizeof *pw * (size_t)NL);
    }
    int64_t total = (int64_t)((n + (size_t)p->batch - 1) / (size_t)p->batch) * p->epochs, step = 0;
    int64_t warm = (int64_t)ceil(p->warmup_ratio * (double)total);
    ftq_adamw_params ap = {0.9f, 0.999f, 1e-8f, (float)p->weight_decay};
    ftq_rng rng;
    ftq_rng_seed(&rng, p->seed);
    double loss_sum = 0;
    for (int ep = 0; !rc && ep < p->epochs; ep++) {
        for (size_t i = 0; i < n; i++)
            order[i] = (uint32_t)i;
        ftq_shuffle(order, n, &rng);
        for (size_t r0 = 0; r0 < n; r0 += (size_t)p->batch) {
            int B = n - r0 < (size_t)p->batch ? (int)(n - r0) : p->batch;
            for (int b = 0; b < B; b++)
                memcpy(x + (size_t)b * C, fc.feats + (size_t)order[r0 + (size_t)b] * C, sizeof *x * (size_t)C);
            ftq_linear_f32(z, x, pw, pw + nw, B, C, NL);
            double loss = 0;
            for (int b = 0; b < B; b++) { /* z becomes dL/dz */
                float *zb = z + (size_t)b * NL;
                int y = labels[order[r0 + (size_t)b]];
                double mx = zb[0], s = 0;
                for (int i = 1; i < NL; i++)
                    mx = zb[i] > mx ? zb[i] : mx;
                for (int i = 0; i < NL; i++)
                    s += exp((double)zb[i] - mx);
                loss += mx + log(s) - zb[y];
                for (int i = 0; i < NL; i++)
                    zb[i] = (float)((exp((double)zb[i] - mx) / s - (i == y)) / B);
            }
            loss /= B;
            memset(g, 0, sizeof *g * np);
            ftq_linear_backward(NULL, g, g + nw, z, x, pw, B, C, NL, 0);
            ftq_grad_clip(g, np, p->max_grad_norm);
            double lr = p->lr * ftq_schedule_factor(FTQ_SCHEDULE_LINEAR, step, warm, total);
            step++;
            ftq_adamw_update(pw, g, mo, vo, np, (float)lr, &ap, step, 1);
            loss_sum += loss;
            rep->last_loss = loss;
            rep->steps = step;
            if (fn && fn(user, step, total, loss, lr))
                break;
        }
    }
    if (!rc) {
        memcpy(m->w.cls_w, pw, sizeof *pw * nw);
        memcpy(m->w.cls_b, pw + nw, sizeof *pw * (size_t)NL);
    }
    rep->mean_loss = rep->steps ? loss_sum / (double)rep->steps : 0;
    rep->seconds = ftq_time_sec() - t0;
    free(fc.feats);
    free(g);
    free(mo);
    free(vo);
    free(pw);
    free(x);
    free(z);
    free(order);
    return rc;
}

/* ---- prediction ------------------------------------------------------------------------ */

typedef struct {
    const ftq_bert *m;
    int32_t *pred;
    float *logits;
} pred_ctx;

static int pred_batch(void *user, size_t row0, int B, ftq_bert_ws *ws)
{
    pred_ctx *pc = user;
    int NL = pc->m->cfg.num_labels;
    int rc = ftq_bert_classify(pc->m, ws, pc->logits);
    for (int b = 0; !rc && b < B; b++) {
        const float *z = pc->logits + (size_t)b * NL;
        int best = 0;
        for (int i = 1; i < NL; i++)
            best = z[i] > z[best] ? i : best;
        pc->pred[row0 + (size_t)b] = best;
    }
    return rc;
}

int ftq_bert_predict(const ftq_bert *m, const ftq_tokenizer *tk, const char *const *texts, const char *const *texts2,
                     size_t n, int max_len, int batch, int32_t *pred)
{
    if (!m->cfg.num_labels)
        return ftq_set_error(FTQ_EINVAL, "bert predict: the model has no classifier head");
    pred_ctx pc = {m, pred, malloc(sizeof(float) * (size_t)(batch > 0 ? batch : 1) * m->cfg.num_labels)};
    if (!pc.logits)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    int rc = ftq_bert_run_texts(m, tk, texts, texts2, n, max_len, batch, pred_batch, &pc, NULL, NULL);
    free(pc.logits);
    return rc;
}

/* ---- saving ---------------------------------------------------------------------------- */

static int copy_file(const char *src, const char *dst)
{
    char *data = NULL;
    size_t n = 0;
    int rc = ftq_read_file_max(src, FTQ_MAX_TOKENIZER_BYTES, &data, &n);
    if (rc)
        return rc;
    FILE *f = fopen(dst, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fflush(f) != 0 || fsync(fileno(f)) != 0) {
        if (f)
            fclose(f);
        free(data);
        return ftq_set_error(FTQ_EIO, "cannot write '%s'", dst);
    }
    free(data);
    return fclose(f) == 0 ? FTQ_OK : ftq_set_error(FTQ_EIO, "cannot write '%s'", dst);
}

int ftq_bert_save_classifier(const ftq_bert *m, const char *src_dir, const char *out_dir, const char *const *labels,
                             int n_labels)
{
    const ftq_bert_config *c = &m->cfg;
    if (!c->num_labels || n_labels != c->num_labels)
        return ftq_set_error(FTQ_EINVAL, "cannot save '%s': %d label names for a %d-label head", out_dir, n_labels,
                             c->num_labels);
    if (ftq_is_dir(out_dir) || ftq_is_file(out_dir))
        return ftq_set_error(FTQ_EINVAL, "cannot save to '%s': it already exists", out_dir);
    size_t tl = strlen(out_dir) + 32;
    char *tmp = malloc(tl), *path = NULL;
    if (!tmp)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    snprintf(tmp, tl, "%s.tmp-%ld", out_dir, (long)getpid());
    int created = 0;
    int rc = ckpt_mkdir_p(tmp, &created);
    cJSON *cfg = NULL;
    char *src = ftq_path_join(src_dir, "config.json");
    if (!rc)
        rc = src ? ckpt_read_json(src, &cfg) : ftq_set_error(FTQ_ENOMEM, "out of memory");
    if (!rc) {
        cJSON *arch = cJSON_CreateArray(), *id2 = cJSON_CreateObject(), *l2i = cJSON_CreateObject();
        cJSON_AddItemToArray(arch, cJSON_CreateString("BertForSequenceClassification"));
        for (int i = 0; i < n_labels; i++) {
            char k[16];
            snprintf(k, sizeof k, "%d", i);
            cJSON_AddItemToObject(id2, k, cJSON_CreateString(labels[i]));
            cJSON_AddItemToObject(l2i, labels[i], cJSON_CreateNumber(i));
        }
        static const char *const pools[] = {"pooler", "mean", "cls", "max"};
        const char *keys[] = {"architectures", "id2label", "label2id", "ftq_pool"};
        cJSON *vals[] = {arch, id2, l2i, cJSON_CreateString(pools[c->pool])};
        for (int k = 0; k < 4; k++) {
            cJSON_DeleteItemFromObjectCaseSensitive(cfg, keys[k]);
            cJSON_AddItemToObject(cfg, keys[k], vals[k]);
        }
        path = ftq_path_join(tmp, "config.json");
        rc = path ? ckpt_write_json(path, cfg) : ftq_set_error(FTQ_ENOMEM, "out of memory");
        free(path);
    }
    ftq_tensor *ts = calloc((size_t)m->n_tensors, sizeof *ts);
    char **names = calloc((size_t)m->n_tensors, sizeof *names);
    if (!rc && (!ts || !names))
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
    size_t plen = strlen(c->prefix);
    for (int i = 0; !rc && i < m->n_tensors; i++) {
        const ftq_bert_tensor *t = &m->tensors[i];
        const char *base = t->name;
        int head = strncmp(base, "classifier.", 11) == 0;
        if (!head)
            base += plen;
        size_t nl = strlen(base) + 8;
        if (!(names[i] = malloc(nl))) {
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
            break;
        }
        snprintf(names[i], nl, "%s%s", head ? "" : "bert.", base);
        ts[i].name = names[i];
        ts[i].dtype = FTQ_DTYPE_F32;
        ts[i].ndim = t->ndim;
        ts[i].shape[0] = t->shape[0];
        ts[i].shape[1] = t->shape[1];
        ts[i].nbytes = t->numel * sizeof(float);
        ts[i].data = m->params + t->off;
    }
    if (!rc) {
        path = ftq_path_join(tmp, "model.safetensors");
        static const char *const meta[] = {"format", "pt", NULL};
        rc = path ? ftq_st_write(path, ts, (size_t)m->n_tensors, meta) : ftq_set_error(FTQ_ENOMEM, "out of memory");
        free(path);
    }
    static const char *const tok_files[] = {"tokenizer.json", "tokenizer_config.json", "vocab.txt",
                                            "special_tokens_map.json"};
    for (int k = 0; !rc && k < 4; k++) {
        char *s = ftq_path_join(src_dir, tok_files[k]), *d = ftq_path_join(tmp, tok_files[k]);
        if (!s || !d)
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        else if (ftq_is_file(s))
            rc = copy_file(s, d);
        free(s);
        free(d);
    }
    if (!rc) {
        ckpt_fsync_dir(tmp);
        if (rename(tmp, out_dir) != 0)
            rc = ftq_set_error(FTQ_EIO, "cannot rename '%s' to '%s'", tmp, out_dir);
    }
    if (rc && created) { /* leave nothing half-written */
        static const char *const all[] = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                                          "vocab.txt", "special_tokens_map.json"};
        for (int k = 0; k < 6; k++) {
            char *p = ftq_path_join(tmp, all[k]);
            if (p)
                unlink(p);
            free(p);
        }
        rmdir(tmp);
    }
    for (int i = 0; names && i < m->n_tensors; i++)
        free(names[i]);
    free(names);
    free(ts);
    cJSON_Delete(cfg);
    free(src);
    free(tmp);
    return rc;
}
