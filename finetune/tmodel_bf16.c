/* tmodel_bf16.c - bf16 mixed precision of the trainable model: packed bf16 copies of the
 * weight matrices (one packing for y = x W^T, one for dx = dy W), converted from the fp32
 * master weights once per optimizer step (the first forward after a backward), and the
 * matmuls of the passes on them. Invariant: a copy is never older than the last
 * ftq_tmodel_params_updated / backward before the current forward. Matrices that are not
 * registered (the classification head) and every fp32 model take the fp32 kernels. */
#include <stdlib.h>
#include <string.h>

#include "finetune/tmodel.h"
#include "kernels/gemm_bf16.h"
#include "kernels/kernels.h"

struct ftq_tbf16_mat {
    const float *w;      /* [out, in] fp32 master weights */
    int out, in;
    int rows;            /* most rows of an activation multiplied with it */
    int trainable;       /* refreshed after every step (else packed once) */
    int need_bwd;        /* the backward reaches it (its input gradient is needed) */
    uint16_t *fwd, *bwd; /* packed B of Y = X W^T (n = out, k = in) and dX = dY W (n = in, k = out) */
};

const char *ftq_precision_name(ftq_precision p) { return p == FTQ_PRECISION_BF16 ? "bf16" : "fp32"; }

int ftq_precision_from_name(const char *name, ftq_precision *out)
{
    if (name && strcmp(name, "fp32") == 0)
        *out = FTQ_PRECISION_FP32;
    else if (name && strcmp(name, "bf16") == 0)
        *out = FTQ_PRECISION_BF16;
    else
        return ftq_set_error(FTQ_EINVAL, "unknown precision '%s' (expected fp32 or bf16)", name ? name : "");
    return FTQ_OK;
}

static void add_mat(ftq_tmodel *tm, const float *w, int out, int in, int rows, int need_bwd)
{
    uintptr_t lo = (uintptr_t)tm->params, hi = (uintptr_t)(tm->params + tm->n_params);
    if (!w || (uintptr_t)w < lo || (uintptr_t)w >= hi)
        return; /* not in the fp32 buffer (e.g. a frozen base kept as the model's tensors): fp32 path */
    struct ftq_tbf16_mat *m = &tm->bmats[tm->n_bmats++];
    m->w = w;
    m->out = out;
    m->in = in;
    m->rows = rows;
    m->trainable = (size_t)(w - tm->params) >= tm->off;
    m->need_bwd = need_bwd;
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

int ftq_tmodel_bf16_init(ftq_tmodel *tm)
{
    const ftq_model_config *c = &tm->cfg;
    const int L = c->n_layers, C = c->hidden_size, F = c->intermediate_size;
    const int Q = c->n_heads * c->head_dim, K = c->n_kv_heads * c->head_dim;
    const int FC = c->arch == FTQ_ARCH_LLAMA ? 2 * F : F;
    const int N = tm->p.max_batch * tm->p.max_seq;
    tm->bmats = calloc((size_t)L * 4 + 1, sizeof *tm->bmats);
    if (!tm->bmats)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    for (int l = 0; l < L; l++) {
        const ftq_tblock *w = &tm->w.blocks[l];
        int bwd = l >= tm->first_block;
        add_mat(tm, w->wqkv, Q + 2 * K, C, N, bwd);
        add_mat(tm, w->wo, C, Q, N, bwd);
        add_mat(tm, w->w_fc, FC, C, N, bwd);
        add_mat(tm, w->w_down, C, F, N, bwd);
    }
    if (tm->p.task == FTQ_TASK_LM)
        add_mat(tm, tm->w.lm_head ? tm->w.lm_head : tm->w.wte, c->vocab_size, C, tm->chunk_rows, 1);
    size_t na = 1, nb = 1, total = 0;
    for (size_t i = 0; i < tm->n_bmats; i++) {
        const struct ftq_tbf16_mat *m = &tm->bmats[i];
        na = max_sz(na, ftq_bf16_a_elems(m->rows, m->in));
        if (m->need_bwd)
            na = max_sz(na, ftq_bf16_a_elems(m->rows, m->out));
        if (m->trainable) { /* dW: dY^T X, or (X^T dY)^T when in < out */
            na = max_sz(na, ftq_bf16_a_elems(m->in < m->out ? m->in : m->out, m->rows));
            nb = max_sz(nb, ftq_bf16_b_elems(m->in < m->out ? m->out : m->in, m->rows));
        }
        total += ftq_bf16_b_elems(m->out, m->in) * (m->need_bwd ? 2 : 1);
    }
    tm->bf_a = aligned_alloc(64, (na * sizeof(uint16_t) + 63) & ~(size_t)63);
    tm->bf_b = aligned_alloc(64, (nb * sizeof(uint16_t) + 63) & ~(size_t)63);
    int ok = tm->bf_a && tm->bf_b;
    for (size_t i = 0; ok && i < tm->n_bmats; i++) {
        struct ftq_tbf16_mat *m = &tm->bmats[i];
        size_t bytes = (ftq_bf16_b_elems(m->out, m->in) * sizeof(uint16_t) + 63) & ~(size_t)63;
        m->fwd = aligned_alloc(64, bytes);
        m->bwd = m->need_bwd ? aligned_alloc(64, bytes) : NULL;
        ok = m->fwd && (m->bwd || !m->need_bwd);
    }
    if (!ok)
        return ftq_set_error(FTQ_ENOMEM, "out of memory allocating %.1f MB of bf16 weights and activations",
                             (double)(total + na + nb) * 2 / 1e6);
    tm->bf_stale = 2;
    return FTQ_OK;
}

void ftq_tmodel_bf16_free(ftq_tmodel *tm)
{
    for (size_t i = 0; tm->bmats && i < tm->n_bmats; i++) {
        free(tm->bmats[i].fwd);
        free(tm->bmats[i].bwd);
    }
    free(tm->bmats);
    free(tm->bf_a);
    free(tm->bf_b);
    tm->bmats = NULL;
    tm->n_bmats = 0;
}

void ftq_tmodel_bf16_refresh(ftq_tmodel *tm)
{
    if (!tm->bmats || !tm->bf_stale)
        return;
    for (size_t i = 0; i < tm->n_bmats; i++) {
        struct ftq_tbf16_mat *m = &tm->bmats[i];
        if (tm->bf_stale < 2 && !m->trainable)
            continue;
        ftq_bf16_pack_b(m->fwd, m->w, m->out, m->in, (size_t)m->in, 1);
        if (m->bwd)
            ftq_bf16_pack_b(m->bwd, m->w, m->in, m->out, 1, (size_t)m->in);
    }
    tm->bf_stale = 0;
}

void ftq_tmodel_params_updated(ftq_tmodel *tm)
{
    if (tm && tm->bmats)
        tm->bf_stale = 2;
}

static const struct ftq_tbf16_mat *find(const ftq_tmodel *tm, const float *w)
{
    for (size_t i = 0; tm->bmats && i < tm->n_bmats; i++)
        if (tm->bmats[i].w == w)
            return &tm->bmats[i];
    return NULL;
}

void ftq_tmm_forward(ftq_tmodel *tm, float *out, const float *in, const float *w, const float *bias, int N,
                     int in_dim, int out_dim)
{
    const struct ftq_tbf16_mat *m = find(tm, w);
    if (!m || N > m->rows) {
        ftq_linear_f32(out, in, w, bias, N, in_dim, out_dim);
        return;
    }
    ftq_bf16_pack_a(tm->bf_a, in, N, in_dim, (size_t)in_dim, 1);
    ftq_gemm_bf16(FTQ_BF16_AUTO, out, (size_t)out_dim, tm->bf_a, m->fwd, N, out_dim, in_dim, bias, 0);
}

void ftq_tmm_backward(ftq_tmodel *tm, float *dinp, float *dweight, float *dbias, const float *dout,
                      const float *inp, const float *w, int N, int in_dim, int out_dim)
{
    const struct ftq_tbf16_mat *m = find(tm, w);
    if (!m || N > m->rows || (dinp && !m->bwd) || (dweight && !m->trainable)) {
        ftq_linear_backward(dinp, dweight, dbias, dout, inp, w, N, in_dim, out_dim, 0);
        return;
    }
    if (dinp) {
        ftq_bf16_pack_a(tm->bf_a, dout, N, out_dim, (size_t)out_dim, 1);
        ftq_gemm_bf16(FTQ_BF16_AUTO, dinp, (size_t)in_dim, tm->bf_a, m->bwd, N, in_dim, out_dim, NULL, 0);
    }
    if (dweight && in_dim < out_dim) { /* (X^T dY)^T: the transposed packing is of the narrower X */
        ftq_bf16_pack_a(tm->bf_a, inp, in_dim, N, 1, (size_t)in_dim);
        ftq_bf16_pack_b(tm->bf_b, dout, out_dim, N, 1, (size_t)out_dim);
        ftq_gemm_bf16_tc(FTQ_BF16_AUTO, dweight, (size_t)in_dim, tm->bf_a, tm->bf_b, in_dim, out_dim, N, 1);
    } else if (dweight) {
        ftq_bf16_pack_a(tm->bf_a, dout, out_dim, N, 1, (size_t)out_dim);
        ftq_bf16_pack_b(tm->bf_b, inp, in_dim, N, 1, (size_t)in_dim);
        ftq_gemm_bf16(FTQ_BF16_AUTO, dweight, (size_t)in_dim, tm->bf_a, tm->bf_b, out_dim, in_dim, N, NULL, 1);
    }
    if (dbias)
        ftq_colsum_accumulate(dbias, dout, N, out_dim);
}
