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
#include "kernels/quant.h"
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

/* ---- backward ------------------------------------------------------------------------ */

/* The backward of a linear on weight w (on its bf16 copies when the model has them, else fp32),
 * or (mode lora on a quantized base: the weight is frozen,
 * gw and gb are NULL) on the quantized q dequantized into the workspace's one scratch
 * matrix: dX = dY W only, never a dequantized copy of the whole model. */
static void lin_bwd(ftq_bert *m, ftq_bert_ws *ws, const ftq_tensor *q, float *dx, float *gw, float *gb,
                    const float *dy, const float *x, const float *w, int N, int in, int out, int acc)
{
    if (q) {
        ftq_qmat_dequantize((const ftq_qmat *)q->data, ws->wdeq);
        ftq_linear_backward(dx, gw, gb, dy, x, ws->wdeq, N, in, out, acc);
        return;
    }
    ftq_bf16_linear_backward(m->bf16, dx, gw, gb, dy, x, w, N, in, out, acc); /* plain fp32 without bf16 copies */
}

enum { S_DX, S_DY, S_DR, S_DQ, S_DK, S_DV, S_DATT, S_DF, S_N };

int ftq_bert_loss_grad(ftq_bert *m, ftq_bert_ws *ws, const int32_t *labels, float *grads, int first_layer,
                       double *loss)
{
    return ftq_bert_loss_grad_scaled(m, ws, labels, grads, first_layer, 1.0f, loss);
}

int ftq_bert_loss_grad_scaled(ftq_bert *m, ftq_bert_ws *ws, const int32_t *labels, float *grads, int first_layer,
                              float scale, double *loss)
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
    if (m->lora) { /* mode lora: the base is frozen; only the adapters and the classifier get gradients */
        float *cw = g.cls_w, *cb = g.cls_b;
        memset(&g, 0, sizeof g);
        memset(gl, 0, sizeof *gl * (size_t)L);
        g.cls_w = cw;
        g.cls_b = cb;
    }
    /* bf16: the products run on OpenMP's threads, so the pass keeps them (see ftq_bert_forward) */
    int solo = m->bf16 ? 0 : ftq_sgemm_stage_begin(N);
    ftq_bf16_set_mark(m->bf16, 1); /* an optimizer step on the trainable weights comes next */
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
            dlog[(size_t)b * NL + i] = (float)((exp((double)z[i] - mx) / s - (i == labels[b])) / B * scale);
    }
    *loss = tot / B;
    ftq_bf16_linear_backward(m->bf16, dfeat, g.cls_w, g.cls_b, dlog, ws->feat, w->cls_w, B, C, NL, 0);
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
        lin_bwd(m, ws, m->q_pool, dcls, g.pool_w, g.pool_b, dpre, ws->cls_in, w->pool_w, B, C, C, 0);
        for (int b = 0; b < B; b++)
            memcpy(dy + (size_t)b * T * C, dcls + (size_t)b * C, sizeof(float) * (size_t)C);
    }

    size_t pr = (size_t)ws->max_rows * H * ws->max_T * ws->max_T;
    int stop = first_layer < 0 ? 0 : first_layer;
    static const ftq_bert_qlayer f32 = {0};
    for (int l = L - 1; l >= stop; l--) {
        const ftq_bert_layer *W = &w->L[l];
        const ftq_bert_qlayer *Q = m->qL ? &m->qL[l] : &f32;
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
        lin_bwd(m, ws, Q->w2, dff, G->w2, G->b2, dr, gg, W->w2, N, F, C, 0);
        ftq_bert_lora_backward(m, l, BERT_LIN_FC2, grads, dff, F, dr, C, gg, F, N);
        ftq_gelu_erf_backward(dff, f, dff, (size_t)N * F);
        memcpy(dx, dr, sizeof(float) * (size_t)N * C); /* dh1: residual */
        lin_bwd(m, ws, Q->w1, dx, G->w1, G->b1, dff, h1, W->w1, N, C, F, 1);
        ftq_bert_lora_backward(m, l, BERT_LIN_FC1, grads, dx, C, dff, F, h1, C, N);
        /* h1 = LN1(r1) */
        memset(dr, 0, sizeof(float) * (size_t)N * C);
        ftq_layernorm_backward(dr, G->ln1_w, G->ln1_b, dx, r1, W->ln1_w, m1, s1, N, C);
        /* r1 = att Wo^T + bo + x */
        lin_bwd(m, ws, Q->wo, sc[S_DATT], G->wo, G->bo, dr, att, W->wo, N, C, C, 0);
        ftq_bert_lora_backward(m, l, BERT_LIN_O, grads, sc[S_DATT], C, dr, C, att, C, N);
        ftq_attention_enc_backward(sc[S_DQ], sc[S_DK], sc[S_DV], sc[S_DATT], ws->probs + s * pr, q, k, v, C, ws->lens,
                                   B, T, H, c->head_dim);
        memcpy(dy, dr, sizeof(float) * (size_t)N * C); /* dx: residual, becomes the next dY */
        lin_bwd(m, ws, Q->wq, dy, G->wq, G->bq, sc[S_DQ], x, W->wq, N, C, C, 1);
        lin_bwd(m, ws, Q->wk, dy, G->wk, G->bk, sc[S_DK], x, W->wk, N, C, C, 1);
        lin_bwd(m, ws, Q->wv, dy, G->wv, G->bv, sc[S_DV], x, W->wv, N, C, C, 1);
        ftq_bert_lora_backward(m, l, BERT_LIN_Q, grads, dy, C, sc[S_DQ], C, x, C, N);
        ftq_bert_lora_backward(m, l, BERT_LIN_K, grads, dy, C, sc[S_DK], C, x, C, N);
        ftq_bert_lora_backward(m, l, BERT_LIN_V, grads, dy, C, sc[S_DV], C, x, C, N);
    }
    if (first_layer <= 0 && !m->lora) { /* embeddings: x0 = LN(wte[id] + wpe[t] + wtt[type]) */
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

/* ---- prediction ------------------------------------------------------------------------ */

typedef struct {
    const ftq_bert *m;
    int32_t *pred;
    float *logits, *all; /* one batch; every row (NULL: not kept) */
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
        if (pc->all)
            memcpy(pc->all + (row0 + (size_t)b) * NL, z, sizeof *z * (size_t)NL);
    }
    return rc;
}

int ftq_bert_predict(const ftq_bert *m, const ftq_tokenizer *tk, const char *const *texts, const char *const *texts2,
                     size_t n, int max_len, int batch, int32_t *pred, float *logits)
{
    if (!m->cfg.num_labels)
        return ftq_set_error(FTQ_EINVAL, "bert predict: the model has no classifier head");
    pred_ctx pc = {m, pred, malloc(sizeof(float) * (size_t)(batch > 0 ? batch : 1) * m->cfg.num_labels), logits};
    if (!pc.logits)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    int rc = ftq_bert_run_texts(m, tk, texts, texts2, n, max_len, batch, pred_batch, &pc, NULL, NULL);
    free(pc.logits);
    return rc;
}

/* ---- saving ---------------------------------------------------------------------------- */

static const char *const tok_files[] = {"tokenizer.json", "tokenizer_config.json", "vocab.txt",
                                        "special_tokens_map.json"};
#define BERT_TOK_FILES 4

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

int ftq_bert_write_classifier(const ftq_bert *m, const char *src_dir, const char *dir, const char *const *labels,
                              int n_labels)
{
    const ftq_bert_config *c = &m->cfg;
    if (!c->num_labels || n_labels != c->num_labels)
        return ftq_set_error(FTQ_EINVAL, "cannot save '%s': %d label names for a %d-label head", dir, n_labels,
                             c->num_labels);
    cJSON *cfg = NULL;
    char *path = NULL, *src = ftq_path_join(src_dir, "config.json");
    int rc = src ? ckpt_read_json(src, &cfg) : ftq_set_error(FTQ_ENOMEM, "out of memory");
    if (!rc) {
        cJSON *arch = cJSON_CreateArray(), *id2 = cJSON_CreateObject(), *l2i = cJSON_CreateObject();
        int ok = arch && id2 && l2i && cJSON_AddItemToArray(arch, cJSON_CreateString("BertForSequenceClassification"));
        for (int i = 0; ok && i < n_labels; i++) {
            char k[16];
            snprintf(k, sizeof k, "%d", i);
            ok = cJSON_AddItemToObject(id2, k, cJSON_CreateString(labels[i])) &&
                 cJSON_AddItemToObject(l2i, labels[i], cJSON_CreateNumber(i));
        }
        static const char *const pools[] = {"pooler", "mean", "cls", "max"};
        const char *keys[] = {"architectures", "id2label", "label2id", "ftq_pool"};
        cJSON *vals[] = {arch, id2, l2i, cJSON_CreateString(pools[c->pool])};
        for (int k = 0; k < 4; k++) {
            cJSON_DeleteItemFromObjectCaseSensitive(cfg, keys[k]);
            if (!vals[k] || !cJSON_AddItemToObject(cfg, keys[k], vals[k])) {
                ok = 0;
                cJSON_Delete(vals[k]);
            }
        }
        path = ftq_path_join(dir, "config.json");
        rc = ok && path ? ckpt_write_json(path, cfg) : ftq_set_error(FTQ_ENOMEM, "out of memory");
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
    if (!rc && !m->lora) { /* a lora model's weights are its adapter (written beside); its base may be quantized */
        path = ftq_path_join(dir, "model.safetensors");
        static const char *const meta[] = {"format", "pt", NULL};
        rc = path ? ftq_st_write(path, ts, (size_t)m->n_tensors, meta) : ftq_set_error(FTQ_ENOMEM, "out of memory");
        free(path);
    }
    for (int k = 0; !rc && k < BERT_TOK_FILES; k++) {
        char *s = ftq_path_join(src_dir, tok_files[k]), *d = ftq_path_join(dir, tok_files[k]);
        if (!s || !d)
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        else if (ftq_is_file(s))
            rc = copy_file(s, d);
        free(s);
        free(d);
    }
    for (int i = 0; names && i < m->n_tensors; i++)
        free(names[i]);
    free(names);
    free(ts);
    cJSON_Delete(cfg);
    free(src);
    return rc;
}

int ftq_bert_save_classifier(const ftq_bert *m, const char *src_dir, const char *out_dir, const char *const *labels,
                             int n_labels)
{
    if (ftq_is_dir(out_dir) || ftq_is_file(out_dir))
        return ftq_set_error(FTQ_EINVAL, "cannot save to '%s': it already exists", out_dir);
    size_t tl = strlen(out_dir) + 32;
    char *tmp = malloc(tl);
    if (!tmp)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    snprintf(tmp, tl, "%s.tmp-%ld", out_dir, (long)getpid());
    int created = 0;
    int rc = ckpt_mkdir_p(tmp, &created);
    if (!rc)
        rc = ftq_bert_write_classifier(m, src_dir, tmp, labels, n_labels);
    if (!rc) {
        ckpt_fsync_dir(tmp);
        if (rename(tmp, out_dir) != 0)
            rc = ftq_set_error(FTQ_EIO, "cannot rename '%s' to '%s'", tmp, out_dir);
    }
    if (rc && created) /* leave nothing half-written */
        ftq_remove_tree(tmp);
    free(tmp);
    return rc;
}
