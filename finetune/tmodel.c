/* tmodel.c - the trainable model: the flat parameter layout (segments table and pointer
 * views, llm.c malloc_and_point_parameters), copying weights in from an ftq_model or
 * drawing them as HF's _init_weights does, the activation buffers, and saving HF
 * checkpoints. The forward and backward passes are in tmodel_pass.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "finetune/tmodel.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"
#include "model/model.h"

/* Largest LM logits chunk (rows x vocab floats); a batch that needs more is processed in
 * chunks whose logits the backward recomputes. 2^26 floats = 256 MB keeps GPT-2 at
 * B x T = 1024 in one chunk. */
#define LOGITS_BUDGET ((size_t)1 << 26)

ftq_tmodel_params ftq_tmodel_default_params(void)
{
    ftq_tmodel_params p;
    memset(&p, 0, sizeof p);
    p.task = FTQ_TASK_LM;
    p.mode = FTQ_TRAIN_FULL;
    p.seed = 1234;
    p.init_std = 0.02f;
    p.max_batch = 4;
    p.max_seq = 0; /* ftq_tmodel_new: min(256, the model's max positions) */
    p.lora = ftq_lora_default_params();
    return p;
}

/* ---- the layout -------------------------------------------------------------------------- */

typedef struct {
    ftq_tmodel *tm;
    size_t off, names_len; /* running offset and name storage */
} builder;

/* Append a segment. wv / gv: the view fields this segment starts (NULL for the second and
 * third part of a stacked view). A NULL tm->segs is the counting pass. */
static void add_seg(builder *b, float **wv, float **gv, const char *name, int ndim, int64_t d0,
                    int64_t d1, int transposed, int kind, float std_scale, int decay)
{
    ftq_tmodel *tm = b->tm;
    size_t size = (size_t)d0 * (size_t)(ndim > 1 ? d1 : 1);
    if (tm->segs) {
        ftq_tseg *s = &tm->segs[tm->n_segs];
        char *dst = tm->names + b->names_len;
        strcpy(dst, name);
        s->seg.name = dst;
        s->seg.offset = b->off;
        s->seg.size = size;
        s->seg.decay = decay;
        s->ndim = ndim;
        s->shape[0] = d0;
        s->shape[1] = ndim > 1 ? d1 : 0;
        s->transposed = transposed;
        s->kind = kind;
        s->std_scale = std_scale;
        if (wv) {
            *wv = tm->params + b->off;
            if (gv)
                *gv = b->off >= tm->off ? tm->grads + (b->off - tm->off) : NULL;
        }
    }
    tm->n_segs++;
    b->names_len += strlen(name) + 1;
    b->off += size;
}

/* Where the trainable suffix of each mode starts. */
typedef struct {
    size_t block_start[4097]; /* offset of block l (l = L: the final norm) */
    size_t score_start;
} marks;

/* One walk over the architecture's tensors in layout order. Run twice: counting
 * (tm->segs NULL) and filling. */
static void build_layout(builder *b, marks *mk)
{
    ftq_tmodel *tm = b->tm;
    const ftq_model_config *c = &tm->cfg;
    const int gpt2 = c->arch == FTQ_ARCH_GPT2;
    const int64_t C = c->hidden_size, V = c->vocab_size, F = c->intermediate_size;
    const int64_t Q = (int64_t)c->n_heads * c->head_dim, K = (int64_t)c->n_kv_heads * c->head_dim;
    const int L = c->n_layers;
    const float proj_scale = gpt2 ? 1.0f / sqrtf(2.0f * (float)L) : 1.0f;
    const int mats = tm->p.mode != FTQ_TRAIN_LORA; /* lora: the frozen model's tensors are used in place */
    char nm[256];
    tm->n_segs = 0;
    b->off = 0;
    b->names_len = 0;
    ftq_tparams *w = &tm->w, *g = &tm->g;

    if (gpt2) {
        if (!tm->ext_emb)
            add_seg(b, &w->wte, &g->wte, "transformer.wte.weight", 2, V, C, 0, SEG_EMBED, 1.0f, 0);
        add_seg(b, &w->wpe, &g->wpe, "transformer.wpe.weight", 2, c->max_position, C, 0, SEG_EMBED, 1.0f, 0);
    } else {
        if (!tm->ext_emb)
            add_seg(b, &w->wte, &g->wte, "model.embed_tokens.weight", 2, V, C, 0, SEG_EMBED, 1.0f, 0);
    }
    for (int l = 0; l < L; l++) {
        mk->block_start[l] = b->off;
        ftq_tblock *wb = tm->segs ? &w->blocks[l] : NULL, *gb = tm->segs ? &g->blocks[l] : NULL;
#define V_(f) (wb ? &wb->f : NULL), (gb ? &gb->f : NULL)
#define NAME(fmt) (snprintf(nm, sizeof nm, fmt, l), nm)
        if (gpt2) {
            add_seg(b, V_(norm1_w), NAME("transformer.h.%d.ln_1.weight"), 1, C, 0, 0, SEG_NORM, 1, 0);
            add_seg(b, V_(norm1_b), NAME("transformer.h.%d.ln_1.bias"), 1, C, 0, 0, SEG_BIAS, 1, 0);
            if (mats)
                add_seg(b, V_(wqkv), NAME("transformer.h.%d.attn.c_attn.weight"), 2, C, 3 * C, 1, SEG_MATRIX, 1, 1);
            add_seg(b, V_(bqkv), NAME("transformer.h.%d.attn.c_attn.bias"), 1, 3 * C, 0, 0, SEG_BIAS, 1, 0);
            if (mats)
                add_seg(b, V_(wo), NAME("transformer.h.%d.attn.c_proj.weight"), 2, C, C, 1, SEG_MATRIX, proj_scale, 1);
            add_seg(b, V_(bo), NAME("transformer.h.%d.attn.c_proj.bias"), 1, C, 0, 0, SEG_BIAS, 1, 0);
            add_seg(b, V_(norm2_w), NAME("transformer.h.%d.ln_2.weight"), 1, C, 0, 0, SEG_NORM, 1, 0);
            add_seg(b, V_(norm2_b), NAME("transformer.h.%d.ln_2.bias"), 1, C, 0, 0, SEG_BIAS, 1, 0);
            if (mats)
                add_seg(b, V_(w_fc), NAME("transformer.h.%d.mlp.c_fc.weight"), 2, C, F, 1, SEG_MATRIX, 1, 1);
            add_seg(b, V_(b_fc), NAME("transformer.h.%d.mlp.c_fc.bias"), 1, F, 0, 0, SEG_BIAS, 1, 0);
            if (mats)
                add_seg(b, V_(w_down), NAME("transformer.h.%d.mlp.c_proj.weight"), 2, F, C, 1, SEG_MATRIX, proj_scale, 1);
            add_seg(b, V_(b_down), NAME("transformer.h.%d.mlp.c_proj.bias"), 1, C, 0, 0, SEG_BIAS, 1, 0);
        } else {
            add_seg(b, V_(norm1_w), NAME("model.layers.%d.input_layernorm.weight"), 1, C, 0, 0, SEG_NORM, 1, 0);
            if (mats)
                add_seg(b, V_(wqkv), NAME("model.layers.%d.self_attn.q_proj.weight"), 2, Q, C, 0, SEG_MATRIX, 1, 1);
            if (mats)
                add_seg(b, NULL, NULL, NAME("model.layers.%d.self_attn.k_proj.weight"), 2, K, C, 0, SEG_MATRIX, 1, 1);
            if (mats)
                add_seg(b, NULL, NULL, NAME("model.layers.%d.self_attn.v_proj.weight"), 2, K, C, 0, SEG_MATRIX, 1, 1);
            if (c->qkv_bias) {
                add_seg(b, V_(bqkv), NAME("model.layers.%d.self_attn.q_proj.bias"), 1, Q, 0, 0, SEG_BIAS, 1, 0);
                add_seg(b, NULL, NULL, NAME("model.layers.%d.self_attn.k_proj.bias"), 1, K, 0, 0, SEG_BIAS, 1, 0);
                add_seg(b, NULL, NULL, NAME("model.layers.%d.self_attn.v_proj.bias"), 1, K, 0, 0, SEG_BIAS, 1, 0);
            }
            if (mats)
                add_seg(b, V_(wo), NAME("model.layers.%d.self_attn.o_proj.weight"), 2, C, Q, 0, SEG_MATRIX, 1, 1);
            if (c->o_bias)
                add_seg(b, V_(bo), NAME("model.layers.%d.self_attn.o_proj.bias"), 1, C, 0, 0, SEG_BIAS, 1, 0);
            add_seg(b, V_(norm2_w), NAME("model.layers.%d.post_attention_layernorm.weight"), 1, C, 0, 0, SEG_NORM, 1, 0);
            if (mats)
                add_seg(b, V_(w_fc), NAME("model.layers.%d.mlp.gate_proj.weight"), 2, F, C, 0, SEG_MATRIX, 1, 1);
            if (mats)
                add_seg(b, NULL, NULL, NAME("model.layers.%d.mlp.up_proj.weight"), 2, F, C, 0, SEG_MATRIX, 1, 1);
            if (c->mlp_bias) {
                add_seg(b, V_(b_fc), NAME("model.layers.%d.mlp.gate_proj.bias"), 1, F, 0, 0, SEG_BIAS, 1, 0);
                add_seg(b, NULL, NULL, NAME("model.layers.%d.mlp.up_proj.bias"), 1, F, 0, 0, SEG_BIAS, 1, 0);
            }
            if (mats)
                add_seg(b, V_(w_down), NAME("model.layers.%d.mlp.down_proj.weight"), 2, C, F, 0, SEG_MATRIX, 1, 1);
            if (c->mlp_bias)
                add_seg(b, V_(b_down), NAME("model.layers.%d.mlp.down_proj.bias"), 1, C, 0, 0, SEG_BIAS, 1, 0);
        }
#undef V_
#undef NAME
    }
    mk->block_start[L] = b->off;
    if (gpt2) {
        add_seg(b, &w->normf_w, &g->normf_w, "transformer.ln_f.weight", 1, C, 0, 0, SEG_NORM, 1, 0);
        add_seg(b, &w->normf_b, &g->normf_b, "transformer.ln_f.bias", 1, C, 0, 0, SEG_BIAS, 1, 0);
    } else {
        add_seg(b, &w->normf_w, &g->normf_w, "model.norm.weight", 1, C, 0, 0, SEG_NORM, 1, 0);
    }
    if (tm->p.task == FTQ_TASK_LM && !c->tie_word_embeddings && !tm->ext_head)
        add_seg(b, &w->lm_head, &g->lm_head, "lm_head.weight", 2, V, C, 0, SEG_MATRIX, 1, 1);
    mk->score_start = b->off;
    if (tm->p.task == FTQ_TASK_CLASSIFY)
        add_seg(b, &w->score, &g->score, "score.weight", 2, tm->NL, C, 0, SEG_MATRIX, 1, 1);
    /* LoRA: A [r, in], B [out, r] of every site of every block, named as PEFT saves them */
    const int r = tm->p.lora.r;
    for (int l = 0; l < L && tm->p.mode == FTQ_TRAIN_LORA; l++)
        for (int si = 0; si < tm->lora_ns; si++) {
            const ftq_lora_site *st = &tm->lora_sites[si];
            size_t k = 2 * ((size_t)l * tm->lora_ns + si);
            char path[192];
            snprintf(path, sizeof path, st->path, l);
            snprintf(nm, sizeof nm, "base_model.model.%s.lora_A.weight", path);
            add_seg(b, tm->segs ? &tm->lora_w[k] : NULL, tm->segs ? &tm->lora_g[k] : NULL, nm, 2, r, st->in, 0,
                    SEG_LORA_A, 1, 1);
            snprintf(nm, sizeof nm, "base_model.model.%s.lora_B.weight", path);
            add_seg(b, tm->segs ? &tm->lora_w[k + 1] : NULL, tm->segs ? &tm->lora_g[k + 1] : NULL, nm, 2,
                    st->out, r, 0, SEG_LORA_B, 1, 1);
        }
}

/* ---- weights in ------------------------------------------------------------------------- */

/* Every tensor the copy reads must be plain f32 (a quantized checkpoint cannot be
 * fine-tuned: its weights are not the values the optimizer would update). */
static int check_f32(const ftq_tensor *t)
{
    if (t->data && (t->dtype != FTQ_DTYPE_F32 || t->nbytes != (size_t)ftq_tensor_numel(t) * sizeof(float)))
        return ftq_set_error(FTQ_EUNSUPPORTED, "cannot fine-tune tensor '%s': its weights are not float32 "
                             "(a quantized checkpoint)",
                             t->name ? t->name : "?");
    return FTQ_OK;
}

/* lora: the block matrices may be quantized (QLoRA: used in place) and the embeddings / head
 * too (copied dequantized: they are frozen) */
static int check_model_f32(const ftq_model *m, int lora)
{
    int rc;
    const ftq_tensor *top[] = {&m->tok_emb, &m->pos_emb, &m->norm_w, &m->norm_b, &m->lm_head, &m->score};
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        if (!(lora && top[i]->dtype == FTQ_DTYPE_QMAT) && (rc = check_f32(top[i])) != FTQ_OK)
            return rc;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const ftq_layer_weights *L = &m->layers[l];
        const ftq_tensor *t = (const ftq_tensor *)L;
        for (size_t i = 0; i < sizeof(ftq_layer_weights) / sizeof(ftq_tensor); i++) {
            int mat = &t[i] == &L->wq || &t[i] == &L->wk || &t[i] == &L->wv || &t[i] == &L->wo ||
                      &t[i] == &L->w_gate || &t[i] == &L->w_up || &t[i] == &L->w_down;
            if (lora && mat && (t[i].dtype == FTQ_DTYPE_QMAT || t[i].dtype == FTQ_DTYPE_F32))
                continue;
            if ((rc = check_f32(&t[i])) != FTQ_OK)
                return rc;
        }
    }
    return FTQ_OK;
}

static void copy_t(float *dst, const ftq_tensor *t)
{
    if (dst && t->data && t->dtype == FTQ_DTYPE_QMAT) /* mode lora on a quantized base: a frozen copy */
        ftq_qmat_dequantize((const ftq_qmat *)t->data, dst);
    else if (dst && t->data)
        memcpy(dst, t->data, (size_t)ftq_tensor_numel(t) * sizeof(float));
}

static void copy_from_model(ftq_tmodel *tm, const ftq_model *m)
{
    const ftq_model_config *c = &tm->cfg;
    const size_t C = (size_t)c->hidden_size, F = (size_t)c->intermediate_size;
    const size_t Q = (size_t)c->n_heads * c->head_dim, K = (size_t)c->n_kv_heads * c->head_dim;
    if (!tm->ext_emb)
        copy_t(tm->w.wte, &m->tok_emb);
    copy_t(tm->w.wpe, &m->pos_emb);
    for (int l = 0; l < c->n_layers; l++) {
        const ftq_layer_weights *L = &m->layers[l];
        ftq_tblock *b = &tm->w.blocks[l];
        copy_t(b->norm1_w, &L->norm1_w);
        copy_t(b->norm1_b, &L->norm1_b);
        if (b->wqkv) { /* mode lora: no block matrices in the buffer */
            copy_t(b->wqkv, &L->wq);
            copy_t(b->wqkv + Q * C, &L->wk);
            copy_t(b->wqkv + (Q + K) * C, &L->wv);
        }
        if (b->bqkv) {
            copy_t(b->bqkv, &L->bq);
            copy_t(b->bqkv + Q, &L->bk);
            copy_t(b->bqkv + Q + K, &L->bv);
        }
        copy_t(b->wo, &L->wo);
        copy_t(b->bo, &L->bo);
        copy_t(b->norm2_w, &L->norm2_w);
        copy_t(b->norm2_b, &L->norm2_b);
        if (c->arch == FTQ_ARCH_LLAMA) {
            if (b->w_fc) {
                copy_t(b->w_fc, &L->w_gate);
                copy_t(b->w_fc + F * C, &L->w_up);
            }
            if (b->b_fc) {
                copy_t(b->b_fc, &L->b_gate);
                copy_t(b->b_fc + F, &L->b_up);
            }
        } else {
            copy_t(b->w_fc, &L->w_up);
            copy_t(b->b_fc, &L->b_up);
        }
        copy_t(b->w_down, &L->w_down);
        copy_t(b->b_down, &L->b_down);
    }
    copy_t(tm->w.normf_w, &m->norm_w);
    copy_t(tm->w.normf_b, &m->norm_b);
    if (!tm->ext_head)
        copy_t(tm->w.lm_head, &m->lm_head);
}

/* HF _init_weights: Linear / Conv1D / Embedding weights normal(0, std) (GPT-2 c_proj:
 * std / sqrt(2 n_layer)), biases 0, norm weights 1; Llama zeroes the padding_idx row. */
static void init_segment(ftq_tmodel *tm, const ftq_tseg *s, ftq_rng *rng)
{
    float *p = tm->params + s->seg.offset;
    size_t n = s->seg.size;
    switch (s->kind) {
    case SEG_MATRIX:
    case SEG_EMBED: {
        float sd = tm->p.init_std * s->std_scale;
        for (size_t i = 0; i < n; i++)
            p[i] = sd * ftq_rng_normal(rng);
        if (s->kind == SEG_EMBED && tm->cfg.arch == FTQ_ARCH_LLAMA && p == tm->w.wte &&
            tm->cfg.pad_token_id >= 0)
            memset(p + (size_t)tm->cfg.pad_token_id * tm->cfg.hidden_size, 0,
                   sizeof(float) * (size_t)tm->cfg.hidden_size);
        break;
    }
    case SEG_NORM:
        for (size_t i = 0; i < n; i++)
            p[i] = 1.0f;
        break;
    case SEG_LORA_A: { /* nn.init.kaiming_uniform_(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
        float bound = 1.0f / sqrtf((float)s->shape[1]);
        for (size_t i = 0; i < n; i++)
            p[i] = (2.0f * ftq_rng_uniform(rng) - 1.0f) * bound;
        break;
    }
    default:
        memset(p, 0, sizeof(float) * n);
        break;
    }
}

/* The segment that starts at p. */
static size_t seg_index(const ftq_tmodel *tm, const float *p)
{
    size_t off = (size_t)(p - tm->params), i = 0;
    while (i + 1 < tm->n_segs && tm->segs[i].seg.offset != off)
        i++;
    return i;
}

/* ---- activations -------------------------------------------------------------------------- */

typedef struct {
    float **ptr;
    size_t n;
} slot;

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

static int alloc_acts(ftq_tmodel *tm)
{
    const ftq_model_config *c = &tm->cfg;
    const int gpt2 = c->arch == FTQ_ARCH_GPT2, L = c->n_layers;
    const size_t Bm = (size_t)tm->p.max_batch, Tm = (size_t)tm->p.max_seq, N = Bm * Tm;
    const size_t C = (size_t)c->hidden_size, F = (size_t)c->intermediate_size, V = (size_t)c->vocab_size;
    const size_t H = (size_t)c->n_heads, Q = H * c->head_dim, K = (size_t)c->n_kv_heads * c->head_dim;
    const size_t QKV = Q + 2 * K, FC = gpt2 ? F : 2 * F;
    const int train_blocks = tm->p.mode != FTQ_TRAIN_HEAD;

    size_t cap = (size_t)(L + 1) * 16 + 32, ns = 0;
    slot *sl = calloc(cap, sizeof *sl);
    tm->acts = calloc((size_t)L, sizeof *tm->acts);
    if (!sl || !tm->acts) {
        free(sl);
        return ftq_set_error(FTQ_ENOMEM, "out of memory allocating the training activations");
    }
#define SLOT(p, count) (sl[ns].ptr = (p), sl[ns].n = (count), ns++)
    /* one full set per trainable block, one shared set for all frozen blocks */
    for (int l = -1; l < L; l++) {
        ftq_tacts *a;
        if (l < 0) {
            if (tm->first_block == 0)
                continue;
            a = &tm->shared;
        } else if (l < tm->first_block) {
            continue;
        } else {
            a = &tm->acts[l];
        }
        if (l >= 0) { /* frozen blocks work in place on the stream buffer */
            SLOT(&a->x, N * C);
            SLOT(&a->x1, N * C);
        }
        if (gpt2)
            SLOT(&a->mean1, N);
        /* mode lora: one h1 / h2 / act for all blocks (recomputed in the backward) */
        const int share = tm->recompute && l > tm->first_block;
        SLOT(&a->rstd1, N);
        if (!share)
            SLOT(&a->h1, N * C);
        SLOT(&a->qkv, N * QKV);
        SLOT(&a->probs, Bm * H * Tm * Tm);
        SLOT(&a->y, N * Q);
        if (gpt2)
            SLOT(&a->mean2, N);
        SLOT(&a->rstd2, N);
        if (!share)
            SLOT(&a->h2, N * C);
        SLOT(&a->fc, N * FC);
        if (!share)
            SLOT(&a->act, N * F);
    }
    SLOT(&tm->xf, N * C);
    if (gpt2)
        SLOT(&tm->meanf, N);
    SLOT(&tm->rstdf, N);
    SLOT(&tm->hf, N * C);
    SLOT(&tm->tmp, N * C);
    SLOT(&tm->losses, N);
    if (tm->p.task == FTQ_TASK_LM) {
        size_t rows = LOGITS_BUDGET / V;
        if (rows < 1)
            rows = 1;
        if (rows > N)
            rows = N;
        tm->chunk_rows = (int)rows;
        SLOT(&tm->logits, rows * V);
    } else {
        SLOT(&tm->logits, Bm * (size_t)tm->NL);
        SLOT(&tm->pooled, Bm * C);
        SLOT(&tm->dpooled, Bm * C);
    }
    if (!gpt2) {
        SLOT(&tm->rope_cos, Tm * (size_t)(c->head_dim / 2));
        SLOT(&tm->rope_sin, Tm * (size_t)(c->head_dim / 2));
    }
    if (tm->p.mode == FTQ_TRAIN_LORA) {
        size_t r = (size_t)tm->p.lora.r, mx = C > F ? C : F;
        mx = mx > Q ? mx : Q;
        SLOT(&tm->lora_u, (size_t)L * tm->lora_ns * N * r);
        SLOT(&tm->lora_du, N * r);
        SLOT(&tm->lora_xd, N * mx);
    }
    if (train_blocks) {
        SLOT(&tm->dres, N * C);
        SLOT(&tm->dh, N * C);
        if (tm->first_block < L) {
            SLOT(&tm->dqkv, N * QKV);
            SLOT(&tm->dy, N * Q);
            SLOT(&tm->dfc, N * FC);
            SLOT(&tm->dact, N * F);
            SLOT(&tm->datt, Tm * Tm);
        }
    }
#undef SLOT
    size_t total = 0;
    for (size_t i = 0; i < ns; i++)
        total += round16(sl[i].n);
    if (total > SIZE_MAX / sizeof(float) / 2 || !(tm->act_mem = aligned_alloc(64, total * sizeof(float)))) {
        free(sl);
        return ftq_set_error(FTQ_ENOMEM,
                             "out of memory allocating %.1f MB of training activations for batch %d x "
                             "sequence %d",
                             (double)total * sizeof(float) / 1e6, tm->p.max_batch, tm->p.max_seq);
    }
    /* touch every page now, so the first training step does not pay for the page faults */
    memset(tm->act_mem, 0, total * sizeof(float));
    float *p = tm->act_mem;
    for (size_t i = 0; i < ns; i++) {
        *sl[i].ptr = p;
        p += round16(sl[i].n);
    }
    free(sl);
    for (int l = tm->first_block + 1; tm->recompute && l < L; l++) {
        tm->acts[l].h1 = tm->acts[tm->first_block].h1;
        tm->acts[l].h2 = tm->acts[tm->first_block].h2;
        tm->acts[l].act = tm->acts[tm->first_block].act;
    }
    for (int l = 0; l < tm->first_block && l < L; l++)
        tm->acts[l] = tm->shared;
    if (!gpt2)
        ftq_model_rope_table(tm->rope_cos, tm->rope_sin, tm->p.max_seq, c);
    return FTQ_OK;
}

/* mode lora: the frozen model's block matrices are read in place; scratch for one part's
 * product, a quantized product's activations and one dequantized matrix. */
static int alloc_base_scratch(ftq_tmodel *tm, const ftq_model *m)
{
    const int N = tm->p.max_batch * tm->p.max_seq;
    size_t rows = 0, mat = 0, qs = 0;
    int quantized = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const ftq_layer_weights *L = &m->layers[l];
        const ftq_tensor *ts[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
            const ftq_tensor *t = ts[i];
            if (!t->data)
                continue;
            size_t r = (size_t)t->shape[0], n = r * (size_t)t->shape[1], q = ftq_linear_scratch_bytes(t, N);
            rows = r > rows ? r : rows;
            mat = n > mat ? n : mat;
            qs = q > qs ? q : qs;
            quantized |= t->dtype == FTQ_DTYPE_QMAT;
        }
    }
    if (tm->qhead) { /* the logits of a chunk of rows; dX by row chunks of the head in wdeq */
        size_t q = ftq_linear_scratch_bytes(tm->qhead, tm->chunk_rows), C = (size_t)m->cfg.hidden_size;
        qs = q > qs ? q : qs;
        mat = mat > 256 * C ? mat : 256 * C;
        quantized = 1;
        tm->head_chunk = (int)(mat / C);
    }
    tm->base = m;
    tm->lin_tmp = malloc(sizeof(float) * rows * (size_t)N + 64);
    tm->qscratch = qs ? malloc(qs) : NULL;
    tm->wdeq = quantized ? malloc(sizeof(float) * mat) : NULL;
    if (!tm->lin_tmp || (qs && !tm->qscratch) || (quantized && !tm->wdeq))
        return ftq_set_error(FTQ_ENOMEM, "out of memory for the frozen base's scratch");
    return FTQ_OK;
}

/* ---- construction -------------------------------------------------------------------------- */

static int check_params(const ftq_model *m, const ftq_tmodel_params *p, int *nl)
{
    const ftq_model_config *c = &m->cfg;
    if (p->task != FTQ_TASK_LM && p->task != FTQ_TASK_CLASSIFY)
        return ftq_set_error(FTQ_EINVAL, "invalid task %d", (int)p->task);
    if (p->mode != FTQ_TRAIN_FULL && p->mode != FTQ_TRAIN_FROZEN && p->mode != FTQ_TRAIN_HEAD &&
        p->mode != FTQ_TRAIN_LORA)
        return ftq_set_error(FTQ_EINVAL, "invalid training mode %d", (int)p->mode);
    int rc;
    if (p->mode == FTQ_TRAIN_LORA && (rc = ftq_lora_check(&p->lora)) != FTQ_OK)
        return rc;
    if (p->mode == FTQ_TRAIN_HEAD && p->task != FTQ_TASK_CLASSIFY)
        return ftq_set_error(FTQ_EINVAL, "training mode 'head' needs the classify task");
    if (p->mode == FTQ_TRAIN_FROZEN && (p->freeze_layers < 0 || p->freeze_layers > c->n_layers))
        return ftq_set_error(FTQ_EINVAL, "cannot freeze %d layers of a %d-layer model", p->freeze_layers,
                             c->n_layers);
    if (p->max_batch < 1 || p->max_seq < 1)
        return ftq_set_error(FTQ_EINVAL, "invalid training shape: batch %d x sequence %d", p->max_batch,
                             p->max_seq);
    if ((int64_t)p->max_batch * p->max_seq > INT32_MAX / 4)
        return ftq_set_error(FTQ_EINVAL, "training shape batch %d x sequence %d is too large", p->max_batch,
                             p->max_seq);
    if (c->arch == FTQ_ARCH_GPT2 && p->max_seq > c->max_position)
        return ftq_set_error(FTQ_EINVAL, "sequence length %d exceeds the model's %d learned positions (n_positions)",
                             p->max_seq, c->max_position);
    if (c->sliding_window > 0 && p->max_seq > c->sliding_window)
        return ftq_set_error(FTQ_EUNSUPPORTED,
                             "training with a sliding window (%d) shorter than the sequence length %d is not "
                             "supported",
                             c->sliding_window, p->max_seq);
    if (p->precision != FTQ_PRECISION_FP32 && p->precision != FTQ_PRECISION_BF16)
        return ftq_set_error(FTQ_EINVAL, "invalid precision %d", (int)p->precision);
    if (!(p->init_std > 0.0f) || !isfinite(p->init_std))
        return ftq_set_error(FTQ_EINVAL, "invalid init_std %g", (double)p->init_std);
    *nl = 0;
    if (p->task == FTQ_TASK_CLASSIFY) {
        int have = ftq_model_num_labels(m);
        int want = p->num_labels > 0 ? p->num_labels : have;
        if (want < 1)
            return ftq_set_error(FTQ_EINVAL, "the classify task needs num_labels (the model has no head)");
        if (have > 0 && want != have)
            return ftq_set_error(FTQ_EINVAL, "num_labels %d does not match the checkpoint's classification head "
                                 "(%d labels)", want, have);
        *nl = want;
    } else if (!c->tie_word_embeddings && !m->lm_head.data) {
        return ftq_set_error(FTQ_EINVAL, "the language-model task needs lm_head.weight, which the "
                             "checkpoint does not have (a sequence classifier)");
    }
    return FTQ_OK;
}

int ftq_tmodel_new(const ftq_model *m, const ftq_tmodel_params *p, ftq_tmodel **out)
{
    if (!out)
        return ftq_set_error(FTQ_EINVAL, "ftq_tmodel_new: NULL output");
    *out = NULL;
    if (!m || !p)
        return ftq_set_error(FTQ_EINVAL, "ftq_tmodel_new: NULL argument");
    ftq_tmodel_params pp = *p;
    if (pp.max_seq == 0)
        pp.max_seq = m->cfg.max_position < 256 ? m->cfg.max_position : 256;
    p = &pp;
    int nl = 0, rc = check_params(m, p, &nl);
    if (rc == FTQ_OK && p->mode == FTQ_TRAIN_LORA && p->init_random)
        rc = ftq_set_error(FTQ_EINVAL, "lora trains adapters on a pretrained base; random initialization is not "
                           "possible");
    if (rc == FTQ_OK && !p->init_random)
        rc = check_model_f32(m, p->mode == FTQ_TRAIN_LORA);
    if (rc != FTQ_OK)
        return rc;
    const int L = m->cfg.n_layers;
    if (L > 4096)
        return ftq_set_error(FTQ_EUNSUPPORTED, "models with more than 4096 layers are not supported");
    ftq_tmodel *tm = calloc(1, sizeof *tm);
    if (!tm)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    tm->cfg = m->cfg;
    tm->p = *p;
    tm->NL = nl;
    if (p->task == FTQ_TASK_CLASSIFY) {
        tm->cfg.is_classifier = 1;
        tm->cfg.num_labels = nl;
    } else {
        tm->cfg.is_classifier = 0;
    }
    tm->w.blocks = calloc((size_t)L, sizeof(ftq_tblock));
    tm->g.blocks = calloc((size_t)L, sizeof(ftq_tblock));
    if (p->mode == FTQ_TRAIN_LORA) {
        if ((rc = ftq_lora_sites(&tm->cfg, &p->lora, tm->lora_sites, &tm->lora_ns)) != FTQ_OK) {
            ftq_tmodel_free(tm);
            return rc;
        }
        tm->lora_scale = ftq_lora_scaling(&p->lora);
        tm->lora_w = calloc(2 * (size_t)L * tm->lora_ns, sizeof(float *));
        tm->lora_g = calloc(2 * (size_t)L * tm->lora_ns, sizeof(float *));
        if (!tm->lora_w || !tm->lora_g) {
            ftq_tmodel_free(tm);
            return ftq_set_error(FTQ_ENOMEM, "out of memory");
        }
    }
    marks *mk = calloc(1, sizeof *mk);
    if (!tm->w.blocks || !tm->g.blocks || !mk) {
        free(mk);
        ftq_tmodel_free(tm);
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    }

    /* mode lora: a float32 embedding / LM head of the frozen model is read in place too */
    if (p->mode == FTQ_TRAIN_LORA && !p->init_random) {
        tm->ext_emb = m->tok_emb.data && (m->tok_emb.dtype == FTQ_DTYPE_F32 || m->tok_emb.dtype == FTQ_DTYPE_QMAT);
        tm->ext_head = m->lm_head.data && (m->lm_head.dtype == FTQ_DTYPE_F32 || m->lm_head.dtype == FTQ_DTYPE_QMAT) &&
                       !m->cfg.tie_word_embeddings;
        /* quantized ones stay quantized (QLoRA: no f32 copy of a 49152 x 576 table) */
        tm->qemb = tm->ext_emb && m->tok_emb.dtype == FTQ_DTYPE_QMAT ? &m->tok_emb : NULL;
        tm->qhead = tm->ext_head && m->lm_head.dtype == FTQ_DTYPE_QMAT ? &m->lm_head
                    : m->cfg.tie_word_embeddings                      ? tm->qemb
                                                                      : NULL;
    }
    /* counting pass, then the trainable offset, then the real pass */
    builder b = {.tm = tm};
    build_layout(&b, mk);
    tm->n_params = b.off;
    size_t n_segs = tm->n_segs, names_len = b.names_len;
    switch (p->mode) {
    case FTQ_TRAIN_FULL:
        tm->off = 0;
        tm->first_block = 0;
        break;
    case FTQ_TRAIN_FROZEN:
        tm->off = mk->block_start[p->freeze_layers];
        tm->first_block = p->freeze_layers;
        break;
    case FTQ_TRAIN_HEAD:
        tm->off = mk->score_start;
        tm->first_block = L;
        break;
    case FTQ_TRAIN_LORA: /* the head (classify) and the adapters; gradients flow through every block */
        tm->off = mk->score_start;
        tm->first_block = 0;
        break;
    }
    tm->n_train = tm->n_params - tm->off;
    tm->segs = calloc(n_segs, sizeof *tm->segs);
    tm->names = malloc(names_len + 1);
    tm->params = aligned_alloc(64, round16(tm->n_params) * sizeof(float));
    tm->grads = aligned_alloc(64, round16(tm->n_train ? tm->n_train : 1) * sizeof(float));
    if (!tm->segs || !tm->names || !tm->params || !tm->grads) {
        double mb = (double)(tm->n_params + tm->n_train) * sizeof(float) / 1e6; /* read before the free */
        free(mk);
        ftq_tmodel_free(tm);
        return ftq_set_error(FTQ_ENOMEM, "out of memory allocating %.1f MB of parameters and gradients", mb);
    }
    build_layout(&b, mk);
    free(mk);
    if (tm->ext_emb && !tm->qemb)
        tm->w.wte = (float *)m->tok_emb.data;
    if (tm->ext_head && m->lm_head.dtype == FTQ_DTYPE_F32)
        tm->w.lm_head = (float *)m->lm_head.data;
    tm->first_seg = 0;
    while (tm->first_seg < tm->n_segs && tm->segs[tm->first_seg].seg.offset < tm->off)
        tm->first_seg++;
    memset(tm->grads, 0, tm->n_train * sizeof(float));

    /* weights: pretrained values, a new head, or HF's initialization of everything */
    ftq_rng rng;
    ftq_rng_seed(&rng, p->seed);
    if (p->init_random) {
        for (size_t i = 0; i < tm->n_segs; i++)
            init_segment(tm, &tm->segs[i], &rng);
    } else {
        copy_from_model(tm, m);
        if (tm->w.score) {
            if (m->score.data)
                memcpy(tm->w.score, m->score.data, sizeof(float) * (size_t)nl * m->cfg.hidden_size);
            else
                init_segment(tm, &tm->segs[seg_index(tm, tm->w.score)], &rng);
        }
        for (size_t i = 0; i < tm->n_segs; i++) /* new adapters: A Kaiming-uniform, B zero */
            if (tm->segs[i].kind == SEG_LORA_A || tm->segs[i].kind == SEG_LORA_B)
                init_segment(tm, &tm->segs[i], &rng);
    }
    tm->recompute = p->mode == FTQ_TRAIN_LORA;
    if ((rc = alloc_acts(tm)) != FTQ_OK ||
        (p->precision == FTQ_PRECISION_BF16 && (rc = ftq_tmodel_bf16_init(tm)) != FTQ_OK)) {
        ftq_tmodel_free(tm);
        return rc;
    }
    if (p->mode == FTQ_TRAIN_LORA && (rc = alloc_base_scratch(tm, m)) != FTQ_OK) {
        ftq_tmodel_free(tm);
        return rc;
    }
    size_t n = (size_t)p->max_batch * p->max_seq;
    tm->ids = malloc(sizeof(int32_t) * n);
    tm->targets = malloc(sizeof(int32_t) * n);
    tm->pool_row = malloc(sizeof(int32_t) * (size_t)p->max_batch);
    if (!tm->ids || !tm->targets || !tm->pool_row) {
        ftq_tmodel_free(tm);
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    }
    *out = tm;
    return FTQ_OK;
}

void ftq_tmodel_free(ftq_tmodel *tm)
{
    if (!tm)
        return;
    free(tm->w.blocks);
    free(tm->g.blocks);
    free(tm->segs);
    free(tm->names);
    free(tm->params);
    free(tm->grads);
    free(tm->acts);
    free(tm->act_mem);
    free(tm->ids);
    free(tm->targets);
    free(tm->pool_row);
    free(tm->lora_w);
    free(tm->lora_g);
    free(tm->lin_tmp);
    free(tm->qscratch);
    free(tm->wdeq);
    ftq_bf16_set_free(&tm->bf);
    free(tm);
}

/* ---- accessors -------------------------------------------------------------------------- */

float *ftq_tmodel_param_buffer(ftq_tmodel *tm, size_t *n)
{
    if (n)
        *n = tm->n_params;
    return tm->params;
}

float *ftq_tmodel_grad_buffer(ftq_tmodel *tm, size_t *n_trainable)
{
    if (n_trainable)
        *n_trainable = tm->n_train;
    return tm->grads;
}

size_t ftq_tmodel_trainable_offset(const ftq_tmodel *tm) { return tm->off; }

size_t ftq_tmodel_segment_count(const ftq_tmodel *tm) { return tm->n_segs - tm->first_seg; }

const ftq_param_segment *ftq_tmodel_segment(const ftq_tmodel *tm, size_t i)
{
    if (i >= tm->n_segs - tm->first_seg)
        return NULL;
    return &tm->segs[tm->first_seg + i].seg;
}

const ftq_model_config *ftq_tmodel_config(const ftq_tmodel *tm) { return &tm->cfg; }

void ftq_tmodel_zero_grad(ftq_tmodel *tm)
{
    if (tm && tm->n_train)
        memset(tm->grads, 0, tm->n_train * sizeof(float));
}

/* ---- saving -------------------------------------------------------------------------------- */

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp(((const ftq_tensor *)a)->name, ((const ftq_tensor *)b)->name);
}

int ftq_tmodel_save_weights(const ftq_tmodel *tm, const char *path)
{
    if (!tm || !path)
        return ftq_set_error(FTQ_EINVAL, "ftq_tmodel_save_weights: NULL argument");
    ftq_tensor *ts = calloc(tm->n_segs, sizeof *ts);
    float **tmp = calloc(tm->n_segs, sizeof *tmp);
    int rc = FTQ_OK;
    if (!ts || !tmp) {
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < tm->n_segs; i++) {
        const ftq_tseg *s = &tm->segs[i];
        ftq_tensor *t = &ts[i];
        t->name = (char *)s->seg.name;
        t->dtype = FTQ_DTYPE_F32;
        t->ndim = s->ndim;
        t->shape[0] = s->shape[0];
        t->shape[1] = s->shape[1];
        t->nbytes = s->seg.size * sizeof(float);
        const float *src = tm->params + s->seg.offset;
        if (!s->transposed) {
            t->data = (void *)src;
            continue;
        }
        /* the buffer holds [d1, d0]; the file wants [d0, d1] */
        size_t d0 = (size_t)s->shape[0], d1 = (size_t)s->shape[1];
        float *d = tmp[i] = malloc(t->nbytes ? t->nbytes : 1);
        if (!d) {
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory writing '%s'", path);
            goto done;
        }
        enum { BLK = 32 };
        for (size_t i0 = 0; i0 < d0; i0 += BLK)
            for (size_t j0 = 0; j0 < d1; j0 += BLK)
                for (size_t r = i0; r < d0 && r < i0 + BLK; r++)
                    for (size_t c = j0; c < d1 && c < j0 + BLK; c++)
                        d[r * d1 + c] = src[c * d0 + r];
        t->data = d;
    }
    qsort(ts, tm->n_segs, sizeof *ts, cmp_tensor_name);
    static const char *const meta[] = {"format", "pt", NULL};
    rc = ftq_st_write(path, ts, tm->n_segs, meta);
done:
    if (tmp)
        for (size_t i = 0; i < tm->n_segs; i++)
            free(tmp[i]);
    free(tmp);
    free(ts);
    return rc;
}
