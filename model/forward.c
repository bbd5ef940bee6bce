/* forward.c - sessions (KV cache + preallocated activations) and the batched forward pass
 * of Llama-family and GPT-2 models. A chunk of T tokens goes through each layer at once:
 * every linear layer is one ftq_linear_forward_ex over all T rows (f32 or int8 / int4
 * weights), attention works per head on the cache. Nothing is allocated after
 * ftq_session_new (quantized products use the session's qscratch). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <cblas.h>

#include "kernels/kernels.h"
#include "model/model.h"

/* Rows per forward chunk: large enough for sgemm efficiency, small enough that the
 * activations and the attention scratch stay modest for long contexts. */
#define MAX_BATCH 512

/* The scratch of the largest quantized product of a chunk of up to n_batch rows. */
static size_t session_qscratch_bytes(const ftq_model *m, int n_batch)
{
    size_t best = ftq_linear_scratch_bytes(&m->tok_emb, n_batch);
    const ftq_tensor *heads[] = {&m->lm_head, &m->score};
    for (int i = 0; i < 2; i++) {
        size_t b = ftq_linear_scratch_bytes(heads[i], n_batch);
        best = b > best ? b : best;
    }
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const ftq_tensor *t = (const ftq_tensor *)&m->layers[l];
        for (size_t i = 0; i < sizeof(ftq_layer_weights) / sizeof(ftq_tensor); i++) {
            size_t b = ftq_linear_scratch_bytes(&t[i], n_batch);
            best = b > best ? b : best;
        }
    }
    return best;
}

int ftq_session_new(const ftq_model *m, int n_ctx, ftq_session **out)
{
    if (!out)
        return ftq_set_error(FTQ_EINVAL, "ftq_session_new: NULL output");
    *out = NULL;
    if (!m)
        return ftq_set_error(FTQ_EINVAL, "ftq_session_new: NULL model");
    const ftq_model_config *c = &m->cfg;
    if (n_ctx < 1)
        return ftq_set_error(FTQ_EINVAL, "invalid context length %d (must be at least 1)", n_ctx);
    if (c->arch == FTQ_ARCH_GPT2 && n_ctx > c->max_position)
        return ftq_set_error(FTQ_EINVAL,
                             "context length %d exceeds the model's %d learned positions "
                             "(n_positions)",
                             n_ctx, c->max_position);
    ftq_session *s = calloc(1, sizeof *s);
    if (!s)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    s->m = m;
    s->n_ctx = n_ctx;
    s->n_batch = n_ctx < MAX_BATCH ? n_ctx : MAX_BATCH;
    size_t B = (size_t)s->n_batch, C = (size_t)c->hidden_size, F = (size_t)c->intermediate_size;
    size_t Q = (size_t)c->n_heads * c->head_dim, K = (size_t)c->n_kv_heads * c->head_dim;
    size_t half = (size_t)c->head_dim / 2;
    size_t cache = (size_t)c->n_layers * (size_t)n_ctx * K;
    size_t qbytes = session_qscratch_bytes(m, s->n_batch);
    size_t rope = c->arch == FTQ_ARCH_LLAMA ? (size_t)n_ctx * half : 0;
    size_t sizes[] = {
        cache, cache, rope, rope, B * C, B * C, B * Q, B * Q, B * F,
        c->arch == FTQ_ARCH_LLAMA ? B * F : 0,
        ftq_attention_scratch_floats(s->n_batch, n_ctx, c->n_heads),
        (qbytes + sizeof(float) - 1) / sizeof(float),
    };
    float *qscratch = NULL;
    float **ptrs[] = {&s->k_cache, &s->v_cache, &s->rope_cos, &s->rope_sin, &s->x, &s->xb, &s->q,
                      &s->att, &s->hb, &s->hb2, &s->scratch, &qscratch};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        total += (sizes[i] + 15) & ~(size_t)15; /* 64-byte aligned offsets */
    if (total > SIZE_MAX / sizeof(float) ||
        !(s->mem = aligned_alloc(64, total * sizeof(float)))) {
        free(s);
        return ftq_set_error(FTQ_ENOMEM, "out of memory allocating a session for %d positions (%.1f MB)",
                             n_ctx, (double)total * sizeof(float) / 1e6);
    }
    float *p = s->mem;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        *ptrs[i] = sizes[i] ? p : NULL;
        p += (sizes[i] + 15) & ~(size_t)15;
    }
    s->qscratch = qscratch;
    if (rope)
        ftq_model_rope_table(s->rope_cos, s->rope_sin, n_ctx, c);
    *out = s;
    return FTQ_OK;
}

void ftq_session_free(ftq_session *s)
{
    if (!s)
        return;
    free(s->mem);
    free(s);
}

void ftq_session_reset(ftq_session *s) { s->pos = 0; }
int ftq_session_pos(const ftq_session *s) { return s->pos; }
int ftq_session_ctx(const ftq_session *s) { return s->n_ctx; }

static void norm_forward(const ftq_model *m, float *out, const float *in, const ftq_tensor *w,
                         const ftq_tensor *b, int T)
{
    const ftq_model_config *c = &m->cfg;
    if (c->arch == FTQ_ARCH_GPT2)
        ftq_layernorm_forward(out, NULL, NULL, in, ftq_tdata(w), ftq_tdata(b), c->norm_eps, T,
                              c->hidden_size);
    else
        ftq_rmsnorm_forward(out, NULL, in, ftq_tdata(w), c->norm_eps, T, c->hidden_size);
}

static void act_forward(ftq_act act, float *x, size_t n)
{
    switch (act) {
    case FTQ_ACT_GELU_TANH:
        ftq_gelu_tanh_forward(x, x, n);
        break;
    case FTQ_ACT_GELU:
        ftq_gelu_erf_forward(x, x, n);
        break;
    case FTQ_ACT_RELU:
        ftq_relu_forward(x, x, n);
        break;
    case FTQ_ACT_SILU: /* llama MLPs use silu_mul; the loader rejects a silu GPT-2 */
        break;
    }
}

/* One chunk of T <= n_batch tokens at positions s->pos .. s->pos+T-1. logits: NULL, or
 * [T, V] (all_rows) or [V] for the last row. hidden: NULL or [C], the final-normed hidden
 * state of the last row. */
/* stats[j] += sum over the T rows of x[t][j]^2 */
static void add_sumsq(double *stats, const float *x, int T, int dim)
{
    for (int t = 0; t < T; t++)
        for (int j = 0; j < dim; j++)
            stats[j] += (double)x[(size_t)t * dim + j] * x[(size_t)t * dim + j];
}

/* stats[j] += sum over the T rows of |x[t][j]| (when collected) */
static void add_sumabs(double *stats, const float *x, int T, int dim)
{
    if (!stats)
        return;
    for (int t = 0; t < T; t++)
        for (int j = 0; j < dim; j++)
            stats[j] += fabs((double)x[(size_t)t * dim + j]);
}

/* gram[dim][dim] += x^T x over the T rows of x (one sgemm; only the calibration pass) */
static void add_gram(float *gram, const float *x, int T, int dim)
{
    if (gram)
        ftq_gram_accumulate(gram, x, T, dim);
}

/* out [T, out] += scale (in A^T) B^T for every adapter kept beside w (a quantized base) */
static int side_lora(const ftq_model *m, float *out, const float *in, const ftq_tensor *w, int T)
{
    for (size_t i = 0; i < m->n_side; i++) {
        const ftq_side_lora *a = &m->side[i];
        if (a->w != w)
            continue;
        float *u = malloc(sizeof(float) * (size_t)T * (size_t)a->r);
        if (!u)
            return ftq_set_error(FTQ_ENOMEM, "out of memory for a lora adapter's product");
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, a->r, a->in, 1.0f, in, a->in, a->A, a->in, 0.0f, u,
                    a->r);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, a->out, a->r, a->scale, u, a->r, a->B, a->r, 1.0f,
                    out, a->out);
        free(u);
    }
    return FTQ_OK;
}

/* One linear layer on the session's scratch. A quantized product runs on OpenMP alone
 * (never OpenBLAS), so inside a solo stage it gets the saved thread count back. */
static int lin(ftq_session *s, int solo, float *out, const float *in, const ftq_tensor *w,
               const ftq_tensor *b, int T, int in_dim, int out_dim)
{
    int rc;
#ifdef _OPENMP
    if (solo > 0 && ftq_linear_on_omp(w)) {
        omp_set_num_threads(solo);
        rc = ftq_linear_forward_ex(out, in, w, b ? ftq_tdata(b) : NULL, T, in_dim, out_dim, s->qscratch);
        omp_set_num_threads(1);
        return rc ? rc : s->m->n_side ? side_lora(s->m, out, in, w, T) : FTQ_OK;
    }
#endif
    (void)solo;
    rc = ftq_linear_forward_ex(out, in, w, b ? ftq_tdata(b) : NULL, T, in_dim, out_dim, s->qscratch);
    return rc ? rc : s->m->n_side ? side_lora(s->m, out, in, w, T) : FTQ_OK;
}

#define TRYF(expr)                      \
    do {                                \
        if ((rc = (expr)) != FTQ_OK)    \
            goto done;                  \
    } while (0)

static int forward_chunk(ftq_session *s, const int32_t *ids, int T, float *logits, int all_rows,
                         float *hidden)
{
    const ftq_model *m = s->m;
    const ftq_model_config *c = &m->cfg;
    const int C = c->hidden_size, F = c->intermediate_size, H = c->n_heads, KV = c->n_kv_heads;
    const int hd = c->head_dim, Q = H * hd, K = KV * hd, half = hd / 2;
    const int llama = c->arch == FTQ_ARCH_LLAMA;
    const int pos0 = s->pos;

    int rc = FTQ_OK;
    /* A quantized or bf16 model's blocks never call OpenBLAS (int8/int4/bf16 kernels and
     * attention on OpenMP), so they keep every OpenMP thread instead of entering a solo
     * stage. */
    const int quantized = c->n_layers > 0 && ftq_linear_on_omp(&m->layers[0].wq);
    int solo = quantized ? 0 : ftq_sgemm_stage_begin(T);

    /* embeddings (f32, or int8 / int4 / bf16 rows converted; s->xb holds a position row) */
    for (int t = 0; t < T; t++) {
        float *x = s->x + (size_t)t * C;
        ftq_weight_row(&m->tok_emb, ids[t], x);
        if (m->pos_emb.data) {
            ftq_weight_row(&m->pos_emb, pos0 + t, s->xb);
            ftq_add_inplace(x, s->xb, (size_t)C);
        }
    }

    ftq_act_stats *st = s->stats;
    int n_layers = st && st->last_layer < c->n_layers ? st->last_layer + 1 : c->n_layers;
    if (st) {
        all_rows = 1;
        st->tokens += T;
    }
    for (int l = 0; l < n_layers; l++) {
        const ftq_layer_weights *L = &m->layers[l];
        float *kc = s->k_cache + (size_t)l * s->n_ctx * K, *vc = s->v_cache + (size_t)l * s->n_ctx * K;
        /* in the last layer only the rows whose logits are wanted need more than K and V */
        int r0 = (l == c->n_layers - 1 && !all_rows) ? T - 1 : 0, Tq = T - r0;

        norm_forward(m, s->xb, s->x, &L->norm1_w, &L->norm1_b, T);
        if (st)
        {
            add_sumsq(st->attn_in + (size_t)l * C, s->xb, T, C);
            add_sumabs(st->attn_abs ? st->attn_abs + (size_t)l * C : NULL, s->xb, T, C);
            add_gram(st->attn_gram ? st->attn_gram + (size_t)l * C * C : NULL, s->xb, T, C);
        }
        TRYF(lin(s, solo, kc + (size_t)pos0 * K, s->xb, &L->wk, &L->bk, T, C, K));
        TRYF(lin(s, solo, vc + (size_t)pos0 * K, s->xb, &L->wv, &L->bv, T, C, K));
        TRYF(lin(s, solo, s->q, s->xb + (size_t)r0 * C, &L->wq, &L->bq, Tq, C, Q));
        if (llama) {
            ftq_rope_forward(s->q, s->rope_cos + (size_t)(pos0 + r0) * half,
                             s->rope_sin + (size_t)(pos0 + r0) * half, Tq, Q, H, hd);
            ftq_rope_forward(kc + (size_t)pos0 * K, s->rope_cos + (size_t)pos0 * half,
                             s->rope_sin + (size_t)pos0 * half, T, K, KV, hd);
        }
        if (quantized)
            ftq_attention_forward_omp(s->att, s->scratch, s->q, kc, vc, Tq, pos0 + r0, H, KV, hd,
                                      c->sliding_window);
        else
            ftq_attention_forward(s->att, s->scratch, s->q, kc, vc, Tq, pos0 + r0, H, KV, hd,
                                  c->sliding_window);

        float *x = s->x + (size_t)r0 * C;
        if (st)
        {
            add_sumsq(st->o_in + (size_t)l * Q, s->att, Tq, Q);
            add_sumabs(st->o_abs ? st->o_abs + (size_t)l * Q : NULL, s->att, Tq, Q);
            add_gram(st->o_gram ? st->o_gram + (size_t)l * Q * Q : NULL, s->att, Tq, Q);
        }
        TRYF(lin(s, solo, s->xb, s->att, &L->wo, &L->bo, Tq, Q, C));
        ftq_add_inplace(x, s->xb, (size_t)Tq * C);

        norm_forward(m, s->xb, x, &L->norm2_w, &L->norm2_b, Tq);
        if (st)
        {
            add_sumsq(st->mlp_in + (size_t)l * C, s->xb, Tq, C);
            add_sumabs(st->mlp_abs ? st->mlp_abs + (size_t)l * C : NULL, s->xb, Tq, C);
            add_gram(st->mlp_gram ? st->mlp_gram + (size_t)l * C * C : NULL, s->xb, Tq, C);
        }
        if (llama) {
            TRYF(lin(s, solo, s->hb, s->xb, &L->w_gate, &L->b_gate, Tq, C, F));
            TRYF(lin(s, solo, s->hb2, s->xb, &L->w_up, &L->b_up, Tq, C, F));
            ftq_silu_mul_forward(s->hb, s->hb, s->hb2, (size_t)Tq * F);
        } else {
            TRYF(lin(s, solo, s->hb, s->xb, &L->w_up, &L->b_up, Tq, C, F));
            act_forward(c->act, s->hb, (size_t)Tq * F);
        }
        if (st)
        {
            add_sumsq(st->down_in + (size_t)l * F, s->hb, Tq, F);
            add_sumabs(st->down_abs ? st->down_abs + (size_t)l * F : NULL, s->hb, Tq, F);
            add_gram(st->down_gram ? st->down_gram + (size_t)l * F * F : NULL, s->hb, Tq, F);
        }
        TRYF(lin(s, solo, s->xb, s->hb, &L->w_down, &L->b_down, Tq, F, C));
        ftq_add_inplace(x, s->xb, (size_t)Tq * C);
    }

    ftq_sgemm_stage_end(solo);
    solo = 0;

    if ((logits || hidden) && !st) {
        int r0 = logits && all_rows ? 0 : T - 1, rows = T - r0;
        solo = ftq_sgemm_stage_begin(rows);
        norm_forward(m, s->xb, s->x + (size_t)r0 * C, &m->norm_w, &m->norm_b, rows);
        if (logits)
            TRYF(lin(s, solo, logits, s->xb, &m->lm_head, NULL, rows, C, c->vocab_size));
        if (hidden)
            memcpy(hidden, s->xb + (size_t)(rows - 1) * C, sizeof(float) * (size_t)C);
    }
    s->pos += T;
done:
    ftq_sgemm_stage_end(solo);
    return rc;
}

/* The common part of ftq_session_eval and ftq_session_eval_hidden. */
static int eval_ids(ftq_session *s, const int32_t *ids, int n, float *logits, int all_logits,
                    float *hidden)
{
    if (!s || (n > 0 && !ids))
        return ftq_set_error(FTQ_EINVAL, "ftq_session_eval: NULL argument");
    if (logits && !s->m->lm_head.data)
        return ftq_set_error(FTQ_EINVAL, "the model has no language-model head (lm_head.weight): it is a "
                             "sequence classifier");
    if (n < 0)
        return ftq_set_error(FTQ_EINVAL, "invalid token count %d", n);
    if (n > s->n_ctx - s->pos)
        return ftq_set_error(FTQ_EINVAL,
                             "context overflow: %d tokens at position %d exceed the session's %d "
                             "positions",
                             n, s->pos, s->n_ctx);
    const int V = s->m->cfg.vocab_size;
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return ftq_set_error(FTQ_EINVAL, "token id %d at index %d is out of range (vocab size %d)",
                                 (int)ids[i], i, V);
    for (int off = 0; off < n; off += s->n_batch) {
        int T = n - off < s->n_batch ? n - off : s->n_batch;
        int last = off + T == n;
        float *out = NULL;
        if (logits && all_logits)
            out = logits + (size_t)off * V;
        else if (logits && last)
            out = logits;
        int rc = forward_chunk(s, ids + off, T, out, logits && all_logits, last ? hidden : NULL);
        if (rc != FTQ_OK)
            return rc;
    }
    return FTQ_OK;
}

int ftq_session_eval(ftq_session *s, const int32_t *ids, int n, float *logits, int all_logits)
{
    return eval_ids(s, ids, n, logits, all_logits, NULL);
}

int ftq_session_eval_hidden(ftq_session *s, const int32_t *ids, int n, float *hidden)
{
    if (n < 1 || !hidden)
        return ftq_set_error(FTQ_EINVAL, "ftq_session_eval_hidden: needs at least one token and an output");
    return eval_ids(s, ids, n, NULL, 0, hidden);
}

int ftq_model_classify(const ftq_model *m, ftq_session *s, const int32_t *ids, int n, float *logits)
{
    if (!m || !s || !ids || !logits)
        return ftq_set_error(FTQ_EINVAL, "ftq_model_classify: NULL argument");
    if (!m->score.data)
        return ftq_set_error(FTQ_EINVAL, "the model has no classification head (score.weight)");
    if (s->m != m)
        return ftq_set_error(FTQ_EINVAL, "ftq_model_classify: the session belongs to another model");
    if (n < 1)
        return ftq_set_error(FTQ_EINVAL, "cannot classify an empty sequence");
    const int C = m->cfg.hidden_size, NL = (int)m->score.shape[0];
    float *h = malloc(sizeof(float) * (size_t)C);
    if (!h)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    ftq_session_reset(s);
    int rc = ftq_session_eval_hidden(s, ids, n, h);
    if (rc == FTQ_OK)
        rc = ftq_linear_forward_ex(logits, h, &m->score, NULL, 1, C, NL, s->qscratch);
    free(h);
    return rc;
}
