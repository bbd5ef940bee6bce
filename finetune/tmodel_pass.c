/* tmodel_pass.c - forward (saving what the backward needs) and hand-written backward of the
 * trainable model. Every matmul is one product over all B*T rows (fp32: sgemm; bf16: the
 * packed bf16 products of tmodel_bf16.c); attention is per (row, head) on the saved
 * Q/K/V. Thread discipline (as model/forward.c): an fp32 pass over >= FTQ_BATCH_MIN_T rows
 * runs with OpenMP limited to the calling thread, so the elementwise kernels between sgemm
 * calls run serially here while OpenBLAS owns the cores; a bf16 pass keeps OpenMP's threads
 * (its products are OpenMP's). */
#include <math.h>
#include <string.h>

#include <cblas.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "finetune/tmodel.h"
#include "kernels/kernels.h"
#include "kernels/linear_bf16.h"
#include "kernels/quant.h"
#include "model/model.h"

/* ---- pieces ------------------------------------------------------------------------------ */

static void norm_fwd(const ftq_tmodel *tm, float *out, float *mean, float *rstd, const float *in,
                     const float *w, const float *b, int N)
{
    const ftq_model_config *c = &tm->cfg;
    if (c->arch == FTQ_ARCH_GPT2)
        ftq_layernorm_forward(out, mean, rstd, in, w, b, c->norm_eps, N, c->hidden_size);
    else
        ftq_rmsnorm_forward(out, rstd, in, w, c->norm_eps, N, c->hidden_size);
}

static void norm_bwd(const ftq_tmodel *tm, float *dinp, float *dw, float *db, const float *dout,
                     const float *in, const float *w, const float *mean, const float *rstd, int N)
{
    const ftq_model_config *c = &tm->cfg;
    if (c->arch == FTQ_ARCH_GPT2)
        ftq_layernorm_backward(dinp, dw, db, dout, in, w, mean, rstd, N, c->hidden_size);
    else
        ftq_rmsnorm_backward(dinp, dw, dout, in, w, rstd, N, c->hidden_size);
}

/* out = a + b (out may alias a). Elementwise loops here are parallel over rows (disjoint
 * writes): in an fp32 pass OpenMP has one thread (see the top), in a bf16 pass all. */
static void add_to(float *out, const float *a, const float *b, size_t n)
{
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (n > 262144)
#endif
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

static void rope_rows(const ftq_tmodel *tm, float *x, int B, int T, int stride, int heads, int backward)
{
    const int hd = tm->cfg.head_dim;
    for (int b = 0; b < B; b++) {
        float *xb = x + (size_t)b * T * stride;
        if (backward)
            ftq_rope_backward(xb, tm->rope_cos, tm->rope_sin, T, stride, heads, hd);
        else
            ftq_rope_forward(xb, tm->rope_cos, tm->rope_sin, T, stride, heads, hd);
    }
}

/* ---- the frozen base of mode lora ------------------------------------------------------------- */

/* The model tensors stacked into linear `lin` of block l (q | k | v, gate | up). */
static int base_parts(const ftq_tmodel *tm, int l, int lin, const ftq_tensor **t)
{
    const ftq_layer_weights *L = &tm->base->layers[l];
    switch (lin) {
    case LORA_LIN_QKV:
        t[0] = &L->wq, t[1] = &L->wk, t[2] = &L->wv;
        return 3;
    case LORA_LIN_O:
        t[0] = &L->wo;
        return 1;
    case LORA_LIN_FC:
        if (tm->cfg.arch == FTQ_ARCH_LLAMA) {
            t[0] = &L->w_gate, t[1] = &L->w_up;
            return 2;
        }
        t[0] = &L->w_up;
        return 1;
    default:
        t[0] = &L->w_down;
        return 1;
    }
}

/* The quantized kernels run on OpenMP: give them the threads the sgemm stage took away. */
static void omp_for_qmat(const ftq_tmodel *tm, const ftq_tensor *t, int on)
{
#ifdef _OPENMP
    if (t->dtype == FTQ_DTYPE_QMAT && tm->stage_saved > 0)
        omp_set_num_threads(on ? tm->stage_saved : 1);
#else
    (void)tm, (void)t, (void)on;
#endif
}

/* y [N, ldy] = x [N, in] W^T + bias for the stacked linear `lin` of block l: the f32 buffer
 * (modes full / frozen / head) or, in mode lora, the frozen model's tensors part by part
 * (f32 views or int8 / int4 on ftq's quantized kernels). */
static void blk_linear(ftq_tmodel *tm, int l, int lin, float *y, int ldy, const float *x, int in, const float *w,
                       const float *bias, int N)
{
    if (!tm->base) {
        ftq_bf16_linear_forward(&tm->bf, y, x, w, bias, N, in, ldy);
        return;
    }
    const ftq_tensor *t[3];
    int np = base_parts(tm, l, lin, t), col = 0;
    for (int k = 0; k < np; k++) {
        int out = (int)t[k]->shape[0];
        omp_for_qmat(tm, t[k], 1);
        if (np == 1 && out == ldy) {
            ftq_linear_forward_ex(y, x, t[k], bias, N, in, out, tm->qscratch);
        } else {
            ftq_linear_forward_ex(tm->lin_tmp, x, t[k], bias ? bias + col : NULL, N, in, out, tm->qscratch);
            for (int i = 0; i < N; i++)
                memcpy(y + (size_t)i * ldy + col, tm->lin_tmp + (size_t)i * out, sizeof(float) * (size_t)out);
        }
        omp_for_qmat(tm, t[k], 0);
        col += out;
    }
}

/* The backward of blk_linear: dx [N, in] = dy W (overwritten), and in modes other than lora
 * the weight / bias gradients. In mode lora the base is frozen: dX only, each quantized part
 * dequantized into one scratch matrix at a time. */
static void blk_linear_backward(ftq_tmodel *tm, int l, int lin, float *dx, float *gw, float *gb, const float *dy,
                                const float *x, const float *w, int N, int in, int ldy)
{
    if (!tm->base) {
        ftq_bf16_linear_backward(&tm->bf, dx, gw, gb, dy, x, w, N, in, ldy, 0);
        return;
    }
    const ftq_tensor *t[3];
    int np = base_parts(tm, l, lin, t), col = 0;
    for (int k = 0; k < np; k++) {
        int out = (int)t[k]->shape[0];
        const float *W = t[k]->data;
        if (t[k]->dtype == FTQ_DTYPE_QMAT) {
            omp_for_qmat(tm, t[k], 1);
            ftq_qmat_dequantize((const ftq_qmat *)t[k]->data, tm->wdeq);
            omp_for_qmat(tm, t[k], 0);
            W = tm->wdeq;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, in, out, 1.0f, dy + col, ldy, W, in,
                    k ? 1.0f : 0.0f, dx, in);
        col += out;
    }
}

/* ---- a quantized embedding / LM head (QLoRA, read in place) ----------------------------------- */

static void qemb_forward(ftq_tmodel *tm, float *out, const int32_t *ids, int B, int T, int C)
{
    const ftq_qmat *q = tm->qemb->data;
    for (int i = 0; i < B * T; i++) {
        float *o = out + (size_t)i * C;
        ftq_qmat_dequantize_row(q, ids[i], o);
        if (tm->w.wpe)
            for (int k = 0; k < C; k++)
                o[k] += tm->w.wpe[(size_t)(i % T) * C + k];
    }
}

/* logits [rows, V] of x [rows, C]: the f32 head, or the quantized one on its kernels */
static void head_forward(ftq_tmodel *tm, const float *x, const float *lm, int rows, int C, int V)
{
    if (!tm->qhead) {
        ftq_bf16_linear_forward(&tm->bf, tm->logits, x, lm, NULL, rows, C, V);
        return;
    }
    omp_for_qmat(tm, tm->qhead, 1);
    ftq_linear_forward_ex(tm->logits, x, tm->qhead, NULL, rows, C, V, tm->qscratch);
    omp_for_qmat(tm, tm->qhead, 0);
}

/* dx [rows, C] = dy [rows, V] W: the frozen quantized head, head_chunk rows of W dequantized
 * into wdeq at a time (never the whole table) */
static void qhead_backward(ftq_tmodel *tm, float *dx, const float *dy, int rows, int C, int V)
{
    const ftq_qmat *q = tm->qhead->data;
    for (int v0 = 0; v0 < V; v0 += tm->head_chunk) {
        int n = V - v0 < tm->head_chunk ? V - v0 : tm->head_chunk;
        for (int r = 0; r < n; r++)
            ftq_qmat_dequantize_row(q, v0 + r, tm->wdeq + (size_t)r * C);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, C, n, 1.0f, dy + v0, V, tm->wdeq, C,
                    v0 ? 1.0f : 0.0f, dx, C);
    }
}

/* ---- LoRA ---------------------------------------------------------------------------------- */

void ftq_tmodel_set_training(ftq_tmodel *tm, int on)
{
    if (tm)
        tm->lora_train = on != 0;
}

void ftq_tmodel_lora_forward(ftq_tmodel *tm, int l, int lin, float *y, int ldy, const float *x, int ldx)
{
    const int N = tm->B * tm->T, r = tm->p.lora.r;
    for (int s = 0; s < tm->lora_ns; s++) {
        const ftq_lora_site *st = &tm->lora_sites[s];
        if (st->lin != lin)
            continue;
        size_t k = (size_t)l * tm->lora_ns + s;
        ftq_lora_forward(y + st->o0, ldy, x, ldx, tm->lora_w[2 * k], tm->lora_w[2 * k + 1],
                         tm->lora_u + k * (size_t)N * r, tm->lora_xd, N, st->in, st->out, r, tm->lora_scale,
                         &tm->lora_drop, k);
    }
}

void ftq_tmodel_lora_backward(ftq_tmodel *tm, int l, int lin, float *dx, int lddx, const float *dy, int lddy,
                              const float *x, int ldx)
{
    const int N = tm->B * tm->T, r = tm->p.lora.r;
    for (int s = 0; s < tm->lora_ns; s++) {
        const ftq_lora_site *st = &tm->lora_sites[s];
        if (st->lin != lin)
            continue;
        size_t k = (size_t)l * tm->lora_ns + s;
        ftq_lora_backward(dx, lddx, tm->lora_g[2 * k], tm->lora_g[2 * k + 1], dy + st->o0, lddy, x, ldx,
                          tm->lora_w[2 * k], tm->lora_w[2 * k + 1], tm->lora_u + k * (size_t)N * r, tm->lora_du,
                          tm->lora_xd, N, st->in, st->out, r, tm->lora_scale, &tm->lora_drop, k);
    }
}

/* act = silu(gate) * up (llama) or the activation of fc (GPT-2), row by row */
static void mlp_act(const ftq_tmodel *tm, const ftq_tacts *a, int N)
{
    const ftq_model_config *c = &tm->cfg;
    const int F = c->intermediate_size;
    if (c->arch == FTQ_ARCH_LLAMA) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if ((long)N * F > 262144)
#endif
        for (int t = 0; t < N; t++)
            ftq_silu_mul_forward(a->act + (size_t)t * F, a->fc + (size_t)t * 2 * F,
                                 a->fc + (size_t)t * 2 * F + F, (size_t)F);
        return;
    }
    size_t n = (size_t)N * F;
    switch (c->act) {
    case FTQ_ACT_GELU:
        ftq_gelu_erf_forward(a->act, a->fc, n);
        break;
    case FTQ_ACT_RELU:
        ftq_relu_forward(a->act, a->fc, n);
        break;
    default:
        ftq_gelu_tanh_forward(a->act, a->fc, n);
        break;
    }
}

/* One block: xin -> x1 (after attention) -> xout. Frozen blocks pass the shared activation
 * set and the same stream buffer for all three (in place). */
static void block_forward(ftq_tmodel *tm, int l, const ftq_tacts *a, const float *xin, float *x1,
                          float *xout, int B, int T)
{
    const ftq_model_config *c = &tm->cfg;
    const ftq_tblock *w = &tm->w.blocks[l];
    const int N = B * T, C = c->hidden_size, F = c->intermediate_size, H = c->n_heads;
    const int KV = c->n_kv_heads, hd = c->head_dim, Q = H * hd, K = KV * hd, QKV = Q + 2 * K;
    const int llama = c->arch == FTQ_ARCH_LLAMA;

    norm_fwd(tm, a->h1, a->mean1, a->rstd1, xin, w->norm1_w, w->norm1_b, N);
    blk_linear(tm, l, LORA_LIN_QKV, a->qkv, QKV, a->h1, C, w->wqkv, w->bqkv, N);
    if (tm->lora_ns)
        ftq_tmodel_lora_forward(tm, l, LORA_LIN_QKV, a->qkv, QKV, a->h1, C);
    if (llama) {
        rope_rows(tm, a->qkv, B, T, QKV, H, 0);
        rope_rows(tm, a->qkv + Q, B, T, QKV, KV, 0);
    }
    ftq_attention_train_forward(a->y, Q, a->probs, a->qkv, QKV, a->qkv + Q, a->qkv + Q + K, QKV, B, T,
                                H, KV, hd);
    blk_linear(tm, l, LORA_LIN_O, tm->tmp, C, a->y, Q, w->wo, w->bo, N);
    if (tm->lora_ns)
        ftq_tmodel_lora_forward(tm, l, LORA_LIN_O, tm->tmp, C, a->y, Q);
    add_to(x1, xin, tm->tmp, (size_t)N * C);

    norm_fwd(tm, a->h2, a->mean2, a->rstd2, x1, w->norm2_w, w->norm2_b, N);
    if (llama) {
        blk_linear(tm, l, LORA_LIN_FC, a->fc, 2 * F, a->h2, C, w->w_fc, w->b_fc, N);
        if (tm->lora_ns)
            ftq_tmodel_lora_forward(tm, l, LORA_LIN_FC, a->fc, 2 * F, a->h2, C);
    } else {
        blk_linear(tm, l, LORA_LIN_FC, a->fc, F, a->h2, C, w->w_fc, w->b_fc, N);
        if (tm->lora_ns)
            ftq_tmodel_lora_forward(tm, l, LORA_LIN_FC, a->fc, F, a->h2, C);
    }
    mlp_act(tm, a, N);
    blk_linear(tm, l, LORA_LIN_DOWN, tm->tmp, C, a->act, F, w->w_down, w->b_down, N);
    if (tm->lora_ns)
        ftq_tmodel_lora_forward(tm, l, LORA_LIN_DOWN, tm->tmp, C, a->act, F);
    add_to(xout, x1, tm->tmp, (size_t)N * C);
}

/* Backward of one block: tm->dres holds d loss / d xout on entry and d loss / d xin on exit
 * (if need_dinp). Parameter gradients accumulate into tm->g.blocks[l]. */
static void block_backward(ftq_tmodel *tm, int l, int need_dinp)
{
    const ftq_model_config *c = &tm->cfg;
    const ftq_tacts *a = &tm->acts[l];
    const ftq_tblock *w = &tm->w.blocks[l], *g = &tm->g.blocks[l];
    const int B = tm->B, T = tm->T, N = B * T;
    const int C = c->hidden_size, F = c->intermediate_size, H = c->n_heads;
    const int KV = c->n_kv_heads, hd = c->head_dim, Q = H * hd, K = KV * hd, QKV = Q + 2 * K;
    const int llama = c->arch == FTQ_ARCH_LLAMA;
    float *dres = tm->dres, *dh = tm->dh;
    if (tm->recompute) { /* the shared h1 / h2 / act hold another block's values: this block's again */
        norm_fwd(tm, a->h1, a->mean1, a->rstd1, a->x, w->norm1_w, w->norm1_b, N);
        norm_fwd(tm, a->h2, a->mean2, a->rstd2, a->x1, w->norm2_w, w->norm2_b, N);
        mlp_act(tm, a, N);
    }

    /* MLP: xout = x1 + down(act(fc(h2))) */
    blk_linear_backward(tm, l, LORA_LIN_DOWN, tm->dact, g->w_down, g->b_down, dres, a->act, w->w_down, N, F, C);
    if (tm->lora_ns)
        ftq_tmodel_lora_backward(tm, l, LORA_LIN_DOWN, tm->dact, F, dres, C, a->act, F);
    if (llama) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if ((long)N * F > 262144)
#endif
        for (int t = 0; t < N; t++) {
            float *d = tm->dfc + (size_t)t * 2 * F;
            const float *fc = a->fc + (size_t)t * 2 * F;
            ftq_silu_mul_backward(d, d + F, fc, fc + F, tm->dact + (size_t)t * F, (size_t)F);
        }
        blk_linear_backward(tm, l, LORA_LIN_FC, dh, g->w_fc, g->b_fc, tm->dfc, a->h2, w->w_fc, N, C, 2 * F);
        if (tm->lora_ns)
            ftq_tmodel_lora_backward(tm, l, LORA_LIN_FC, dh, C, tm->dfc, 2 * F, a->h2, C);
    } else {
        size_t n = (size_t)N * F;
        switch (c->act) {
        case FTQ_ACT_GELU:
            ftq_gelu_erf_backward(tm->dfc, a->fc, tm->dact, n);
            break;
        case FTQ_ACT_RELU:
            ftq_relu_backward(tm->dfc, a->fc, tm->dact, n);
            break;
        default:
            ftq_gelu_tanh_backward(tm->dfc, a->fc, tm->dact, n);
            break;
        }
        blk_linear_backward(tm, l, LORA_LIN_FC, dh, g->w_fc, g->b_fc, tm->dfc, a->h2, w->w_fc, N, C, F);
        if (tm->lora_ns)
            ftq_tmodel_lora_backward(tm, l, LORA_LIN_FC, dh, C, tm->dfc, F, a->h2, C);
    }
    norm_bwd(tm, dres, g->norm2_w, g->norm2_b, dh, a->x1, w->norm2_w, a->mean2, a->rstd2, N);

    /* attention: x1 = xin + o(attn(rope(qkv(h1)))) */
    blk_linear_backward(tm, l, LORA_LIN_O, tm->dy, g->wo, g->bo, dres, a->y, w->wo, N, Q, C);
    if (tm->lora_ns)
        ftq_tmodel_lora_backward(tm, l, LORA_LIN_O, tm->dy, Q, dres, C, a->y, Q);
    ftq_attention_train_backward(tm->dqkv, QKV, tm->dqkv + Q, tm->dqkv + Q + K, QKV, tm->datt, tm->dy, Q,
                                 a->probs, a->qkv, QKV, a->qkv + Q, a->qkv + Q + K, QKV, B, T, H, KV, hd);
    if (llama) {
        rope_rows(tm, tm->dqkv, B, T, QKV, H, 1);
        rope_rows(tm, tm->dqkv + Q, B, T, QKV, KV, 1);
    }
    blk_linear_backward(tm, l, LORA_LIN_QKV, dh, g->wqkv, g->bqkv, tm->dqkv, a->h1, w->wqkv, N, C, QKV);
    if (tm->lora_ns)
        ftq_tmodel_lora_backward(tm, l, LORA_LIN_QKV, dh, C, tm->dqkv, QKV, a->h1, C);
    norm_bwd(tm, need_dinp ? dres : NULL, g->norm1_w, g->norm1_b, dh, a->x, w->norm1_w, a->mean1,
             a->rstd1, N);
}

/* ---- forward -------------------------------------------------------------------------------- */

static int check_inputs(const ftq_tmodel *tm, const int32_t *ids, const int32_t *lengths, int B, int T,
                        const int32_t *targets)
{
    const int V = tm->cfg.vocab_size;
    if (B < 1 || T < 1 || B > tm->p.max_batch || T > tm->p.max_seq)
        return ftq_set_error(FTQ_EINVAL,
                             "batch %d x sequence %d does not fit the model's training buffers (at most %d x %d)",
                             B, T, tm->p.max_batch, tm->p.max_seq);
    for (int i = 0; i < B * T; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return ftq_set_error(FTQ_EINVAL, "token id %d at index %d is out of range (vocab size %d)",
                                 (int)ids[i], i, V);
    if (lengths)
        for (int b = 0; b < B; b++)
            if (lengths[b] < 1 || lengths[b] > T)
                return ftq_set_error(FTQ_EINVAL, "length %d of row %d is outside 1..%d", (int)lengths[b], b, T);
    if (targets) {
        int n = tm->p.task == FTQ_TASK_LM ? B * T : B;
        int hi = tm->p.task == FTQ_TASK_LM ? V : tm->NL;
        for (int i = 0; i < n; i++)
            if (targets[i] != FTQ_IGNORE_INDEX && (targets[i] < 0 || targets[i] >= hi))
                return ftq_set_error(FTQ_EINVAL, "target %d at index %d is out of range (%s %d)", (int)targets[i],
                                     i, tm->p.task == FTQ_TASK_LM ? "vocab size" : "labels", hi);
    }
    return FTQ_OK;
}

int ftq_tmodel_forward(ftq_tmodel *tm, const int32_t *ids, const int32_t *lengths, int B, int T,
                       const int32_t *targets, float *loss, float *logits)
{
    if (!tm || !ids)
        return ftq_set_error(FTQ_EINVAL, "ftq_tmodel_forward: NULL argument");
    tm->fwd_ok = 0;
    int rc = check_inputs(tm, ids, lengths, B, T, targets);
    if (rc != FTQ_OK)
        return rc;
    const ftq_model_config *c = &tm->cfg;
    const int N = B * T, C = c->hidden_size, L = c->n_layers, V = c->vocab_size;
    const int classify = tm->p.task == FTQ_TASK_CLASSIFY;
    tm->B = B;
    tm->T = T;
    /* a fresh mask per training forward, counted so that a resumed run draws the same ones
     * (the count is saved with the adapter) */
    tm->lora_drop.p = tm->lora_train ? (float)tm->p.lora.dropout : 0.0f;
    tm->lora_drop.seed = tm->p.seed;
    if (tm->lora_train)
        tm->lora_drop.counter++;
    memcpy(tm->ids, ids, sizeof(int32_t) * (size_t)N);
    tm->has_targets = targets != NULL;
    if (targets)
        memcpy(tm->targets, targets, sizeof(int32_t) * (size_t)(classify ? B : N));

    /* bf16: the packed weights are refreshed here (once per step); its products run on
     * OpenMP, so the pass keeps every thread (fp32: sgemm owns the cores, see the top) */
    ftq_bf16_set_refresh(&tm->bf);
    int solo = tm->bf.mats ? 0 : ftq_sgemm_stage_begin(N), blas = tm->bf.mats ? ftq_bf16_stage_begin() : 0;
    tm->stage_saved = solo;

    /* embeddings into the stream buffer of the lowest trainable block (or the final one) */
    const int fb = tm->first_block;
    float *stream = fb < L ? tm->acts[fb].x : tm->xf;
    if (tm->qemb) /* QLoRA: the quantized table's rows, as an embedding lookup reads them */
        qemb_forward(tm, stream, ids, B, T, C);
    else
        ftq_embedding_forward(stream, ids, tm->w.wte, tm->w.wpe, B, T, C);
    for (int l = 0; l < L; l++) {
        if (l < fb) {
            block_forward(tm, l, &tm->shared, stream, stream, stream, B, T);
        } else {
            float *xout = l + 1 < L ? tm->acts[l + 1].x : tm->xf;
            block_forward(tm, l, &tm->acts[l], tm->acts[l].x, tm->acts[l].x1, xout, B, T);
        }
    }
    norm_fwd(tm, tm->hf, tm->meanf, tm->rstdf, tm->xf, tm->w.normf_w, tm->w.normf_b, N);

    double sum = 0.0;
    int scored = 0;
    if (classify) {
        const int NL = tm->NL;
        for (int b = 0; b < B; b++) {
            int row = b * T + (lengths ? lengths[b] : T) - 1;
            tm->pool_row[b] = row;
            memcpy(tm->pooled + (size_t)b * C, tm->hf + (size_t)row * C, sizeof(float) * (size_t)C);
        }
        ftq_linear_f32(tm->logits, tm->pooled, tm->w.score, NULL, B, C, NL);
        if (logits)
            memcpy(logits, tm->logits, sizeof(float) * (size_t)B * NL);
        if (targets)
            scored = ftq_xent_forward(tm->logits, tm->losses, targets, B, NL);
        for (int b = 0; targets && b < B; b++)
            sum += tm->losses[b];
    } else if (targets) {
        const float *lm = tm->w.lm_head ? tm->w.lm_head : tm->w.wte;
        for (int r0 = 0; r0 < N; r0 += tm->chunk_rows) {
            int rows = N - r0 < tm->chunk_rows ? N - r0 : tm->chunk_rows;
            head_forward(tm, tm->hf + (size_t)r0 * C, lm, rows, C, V);
            scored += ftq_xent_forward(tm->logits, tm->losses + r0, targets + r0, rows, V);
        }
        for (int i = 0; i < N; i++)
            sum += tm->losses[i];
    }
    ftq_sgemm_stage_end(solo);
    ftq_bf16_stage_end(blas);

    tm->n_scored = scored;
    if (loss)
        *loss = scored > 0 ? (float)(sum / scored) : 0.0f;
    tm->fwd_ok = 1;
    return FTQ_OK;
}

/* ---- backward -------------------------------------------------------------------------------- */

int ftq_tmodel_backward(ftq_tmodel *tm, float scale)
{
    if (!tm)
        return ftq_set_error(FTQ_EINVAL, "ftq_tmodel_backward: NULL model");
    if (!tm->fwd_ok || !tm->has_targets)
        return ftq_set_error(FTQ_EINVAL, "ftq_tmodel_backward needs a forward with targets before it "
                             "(once per forward)");
    tm->fwd_ok = 0; /* the logits buffer now holds gradients */
    ftq_bf16_set_mark(&tm->bf, 1); /* an optimizer step on the trainable weights comes next */
    if (tm->n_scored == 0 || tm->n_train == 0)
        return FTQ_OK;
    const ftq_model_config *c = &tm->cfg;
    const int B = tm->B, T = tm->T, N = B * T, C = c->hidden_size, L = c->n_layers, V = c->vocab_size;
    const float dloss = scale / (float)tm->n_scored;
    int solo = tm->bf.mats ? 0 : ftq_sgemm_stage_begin(N), blas = tm->bf.mats ? ftq_bf16_stage_begin() : 0;
    tm->stage_saved = solo;

    if (tm->p.task == FTQ_TASK_CLASSIFY) {
        const int NL = tm->NL;
        const int head_only = tm->p.mode == FTQ_TRAIN_HEAD;
        ftq_xent_backward(tm->logits, tm->targets, dloss, B, NL);
        ftq_bf16_linear_backward(&tm->bf, head_only ? NULL : tm->dpooled, tm->g.score, NULL, tm->logits,
                                 tm->pooled, tm->w.score, B, C, NL, 0);
        if (head_only) {
            ftq_sgemm_stage_end(solo);
            ftq_bf16_stage_end(blas);
            return FTQ_OK;
        }
        memset(tm->dh, 0, sizeof(float) * (size_t)N * C);
        for (int b = 0; b < B; b++)
            memcpy(tm->dh + (size_t)tm->pool_row[b] * C, tm->dpooled + (size_t)b * C, sizeof(float) * (size_t)C);
    } else {
        const float *lm = tm->w.lm_head ? tm->w.lm_head : tm->w.wte;
        float *glm = tm->w.lm_head ? tm->g.lm_head : tm->g.wte;
        const int chunked = tm->chunk_rows < N;
        for (int r0 = 0; r0 < N; r0 += tm->chunk_rows) {
            int rows = N - r0 < tm->chunk_rows ? N - r0 : tm->chunk_rows;
            if (chunked) { /* recompute this chunk's softmax */
                head_forward(tm, tm->hf + (size_t)r0 * C, lm, rows, C, V);
                ftq_xent_forward(tm->logits, tm->losses + r0, tm->targets + r0, rows, V);
            }
            ftq_xent_backward(tm->logits, tm->targets + r0, dloss, rows, V);
            if (tm->qhead)
                qhead_backward(tm, tm->dh + (size_t)r0 * C, tm->logits, rows, C, V);
            else
                ftq_bf16_linear_backward(&tm->bf, tm->dh + (size_t)r0 * C, glm, NULL, tm->logits,
                                         tm->hf + (size_t)r0 * C, lm, rows, C, V, 0);
        }
    }

    const int full = tm->p.mode == FTQ_TRAIN_FULL, below = full || tm->first_block < L;
    if (below)
        memset(tm->dres, 0, sizeof(float) * (size_t)N * C);
    norm_bwd(tm, below ? tm->dres : NULL, tm->g.normf_w, tm->g.normf_b, tm->dh, tm->xf, tm->w.normf_w,
             tm->meanf, tm->rstdf, N);
    for (int l = L - 1; l >= tm->first_block; l--)
        block_backward(tm, l, l > tm->first_block || full);
    if (full)
        ftq_embedding_backward(tm->g.wte, tm->g.wpe, tm->dres, tm->ids, B, T, C);
    ftq_sgemm_stage_end(solo);
    ftq_bf16_stage_end(blas);
    return FTQ_OK;
}
