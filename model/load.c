/* load.c - checks a checkpoint against a config and binds its tensors to an ftq_model.
 * One walk over the tensors the config implies serves both ftq_model_validate (check only)
 * and ftq_model_load (check, then view / convert / transpose into the model); it reports
 * the first missing, misshapen or unsupported tensor, then any tensor nobody asked for.
 * In a quantized checkpoint (docs/quant-format.md) a listed NAME is found through the
 * quantization index (model/qcheckpoint.h) and bound as an FTQ_DTYPE_QMAT tensor packed
 * for the int8 / int4 kernels; only linear weights, embeddings and heads may be quantized. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint_src.h"
#include "model/model.h"
#include "model/qcheckpoint.h"

/* ---- the walk ------------------------------------------------------------------------- */

typedef struct {
    const ftq_model_config *cfg;
    const ftq_checkpoint *ck;
    int drop_parts; /* free a quantized entry's parts once packed (FTQ_LOAD_KEEP_QUANT GGUF copies) */
    const char *label;    /* model 'label': ... in messages */
    ftq_model *m;         /* NULL: validate only */
    const char *prefix;   /* GPT-2: "transformer." or "" */
    const ftq_tensor **used;
    size_t n_used;
    const ftq_qindex *qix; /* NULL unless the checkpoint is quantized */
    int q_ok;             /* the tensors looked up now may be quantized */
    int lin;              /* the last tensor `need` found may be quantized (a weight matrix,
                             embedding or head) */
    int bf16;             /* FTQ_LOAD_BF16: bind such tensors as packed bf16 */
} walk;

static int is_float_dtype(ftq_dtype d)
{
    return d == FTQ_DTYPE_F32 || d == FTQ_DTYPE_F16 || d == FTQ_DTYPE_BF16 || d == FTQ_DTYPE_F64;
}

static const char *dtype_name(ftq_dtype d)
{
    const ftq_dtype_traits *tr = ftq_dtype_info(d);
    return tr ? tr->name : "?";
}

/* Look up `name` (printf format) and check shape and dtype. *out is NULL when the tensor is
 * optional and absent. */
static int need(walk *w, const ftq_tensor **out, int optional, int ndim, int64_t d0, int64_t d1,
                const char *fmt, ...) __attribute__((format(printf, 7, 8)));

static int need(walk *w, const ftq_tensor **out, int optional, int ndim, int64_t d0, int64_t d1,
                const char *fmt, ...)
{
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    int64_t want[2] = {d0, d1};
    char ws[64], gs[64];
    ftq_shape_str(want, ndim, ws, sizeof ws);
    *out = NULL;
    const ftq_tensor *t = ftq_checkpoint_find(w->ck, name);
    const ftq_qentry *qe = t ? NULL : ftq_qindex_find(w->qix, name);
    if (qe)
        t = &qe->view;
    if (!t) {
        if (optional)
            return FTQ_OK;
        return ftq_set_error(FTQ_ENOTFOUND, "model '%s': missing tensor '%s' (expected shape %s)",
                             w->label, name, ws);
    }
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = t->shape[i] == want[i];
    if (!ok)
        return ftq_set_error(FTQ_EFORMAT, "model '%s': tensor '%s' has shape %s, expected %s", w->label,
                             name, ftq_shape_str(t->shape, t->ndim, gs, sizeof gs), ws);
    if (qe) {
        if (!w->q_ok)
            return ftq_set_error(FTQ_EUNSUPPORTED,
                                 "model '%s': tensor '%s' is quantized, but only linear weights, "
                                 "embeddings and heads can be",
                                 w->label, name);
        w->used[w->n_used++] = qe->qweight;
        w->used[w->n_used++] = qe->qscale;
        if (qe->qzero)
            w->used[w->n_used++] = qe->qzero;
        if (qe->qmin)
            w->used[w->n_used++] = qe->qmin;
        *out = t;
        return FTQ_OK;
    }
    w->lin = w->q_ok;
    if (!is_float_dtype(t->dtype))
        return ftq_set_error(FTQ_EUNSUPPORTED,
                             "model '%s': tensor '%s' has unsupported dtype %s (expected F32, F16, "
                             "BF16 or F64)",
                             w->label, name, dtype_name(t->dtype));
    w->used[w->n_used++] = t;
    *out = t;
    return FTQ_OK;
}

/* ---- binding tensors into the model ------------------------------------------------- */

static int oom(const walk *w, const char *name)
{
    return ftq_set_error(FTQ_ENOMEM, "model '%s': out of memory converting tensor '%s'", w->label,
                         name);
}

/* dst = rows [row0, row0 + rows) of a quantized entry's [out, in] matrix, packed for the
 * kernels (the file's row-major codes and exact f16 scales, freed after packing). */
static int bind_qmat(walk *w, ftq_tensor *dst, const ftq_qentry *e, int row0, int rows)
{
    ftq_model *m = w->m;
    ftq_qmat **grown = realloc(m->qmats, (m->n_qmats + 1) * sizeof *grown);
    ftq_qmat *qm = ftq_model_alloc(m, sizeof *qm);
    char *name = ftq_model_alloc(m, strlen(e->name) + 1);
    if (grown)
        m->qmats = grown;
    if (!grown || !qm || !name)
        return oom(w, e->name);
    memset(qm, 0, sizeof *qm);
    m->qmats[m->n_qmats++] = qm;
    strcpy(name, e->name);
    ftq_qtensor q;
    int rc = ftq_qentry_read(e, row0, rows, &q);
    if (rc == FTQ_OK) {
        ftq_checkpoint_release(w->ck, (const char *)e->qweight->data + (size_t)row0 * q.row_bytes,
                               (size_t)rows * q.row_bytes);
        rc = ftq_qmat_pack(qm, &q, 0);
    }
    ftq_qtensor_free(&q);
    if (rc == FTQ_OK && row0 + rows == e->rows && w->drop_parts) { /* a GGUF's heap copies: not read again */
        const ftq_tensor *parts[] = {e->qweight, e->qscale, e->qzero, e->qmin};
        for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++)
            ftq_checkpoint_discard((ftq_checkpoint *)w->ck, parts[k]);
    }
    if (rc != FTQ_OK)
        return ftq_wrap_error(rc, "model '%s': tensor '%s'", w->label, e->name);
    memset(dst, 0, sizeof *dst);
    dst->name = name;
    dst->dtype = FTQ_DTYPE_QMAT;
    dst->ndim = 2;
    dst->shape[0] = rows;
    dst->shape[1] = e->cols;
    dst->nbytes = ftq_qmat_bytes(qm);
    dst->data = qm;
    dst->owned = 1;
    m->n_quantized++;
    return FTQ_OK;
}

/* A quantized entry must be stored in the orientation the architecture reads it in. */
static int check_orientation(const walk *w, const ftq_qentry *e, int transposed)
{
    if (e->transposed == transposed)
        return FTQ_OK;
    return ftq_set_error(FTQ_EFORMAT,
                         "model '%s': quantized tensor '%s' is %smarked transposed, but a %s model "
                         "stores it %s",
                         w->label, e->name, e->transposed ? "" : "not ", w->cfg->model_type,
                         transposed ? "[in, out] (Conv1D)" : "[out, in]");
}

static void describe(ftq_tensor *dst, const ftq_tensor *src, int ndim, int64_t d0, int64_t d1,
                     void *data, int owned)
{
    memset(dst, 0, sizeof *dst);
    dst->name = src->name;
    dst->dtype = FTQ_DTYPE_F32;
    dst->ndim = ndim;
    dst->shape[0] = d0;
    dst->shape[1] = ndim > 1 ? d1 : 0;
    dst->nbytes = sizeof(float) * (size_t)d0 * (size_t)(ndim > 1 ? d1 : 1);
    dst->data = data;
    dst->owned = owned;
}

/* f32 data of src: the mmap itself when it is F32 and aligned, else a converted copy. */
static int f32_of(walk *w, const ftq_tensor *src, const float **data, int *owned)
{
    if (src->dtype == FTQ_DTYPE_F32 && ((uintptr_t)src->data & 3) == 0) {
        *data = src->data;
        *owned = 0;
        return FTQ_OK;
    }
    float *p = ftq_model_alloc(w->m, sizeof(float) * (size_t)ftq_tensor_numel(src));
    if (!p)
        return oom(w, src->name);
    int rc = ftq_tensor_to_f32(src, p);
    if (rc != FTQ_OK)
        return rc;
    *data = p;
    *owned = 1;
    return FTQ_OK;
}

/* dst = src as it is (same shape). */
static int bind_plain(walk *w, ftq_tensor *dst, const ftq_tensor *src)
{
    const ftq_qentry *qe = ftq_qindex_entry_of(w->qix, src);
    if (qe && check_orientation(w, qe, 0) != FTQ_OK)
        return FTQ_EFORMAT;
    if (!w->m || !src)
        return FTQ_OK;
    if (qe)
        return bind_qmat(w, dst, qe, 0, qe->rows);
    if (w->bf16 && w->lin && src->ndim == 2) {
        int rc = ftq_model_bind_bmat(w->m, dst, src, 0, 0, src->shape[0], w->label);
        ftq_checkpoint_discard(w->m->ck, src); /* read once */
        return rc;
    }
    const float *d = NULL;
    int owned = 0, rc = f32_of(w, src, &d, &owned);
    if (rc != FTQ_OK)
        return rc;
    describe(dst, src, src->ndim, src->shape[0], src->ndim > 1 ? src->shape[1] : 0, (void *)d, owned);
    return FTQ_OK;
}

/* f32 data of src for reading once: the mmap, or a temporary conversion (*tmp, to free). */
static int f32_temp(walk *w, const ftq_tensor *src, const float **data, float **tmp)
{
    *tmp = NULL;
    if (src->dtype == FTQ_DTYPE_F32 && ((uintptr_t)src->data & 3) == 0) {
        *data = src->data;
        return FTQ_OK;
    }
    *tmp = malloc(sizeof(float) * (size_t)ftq_tensor_numel(src));
    if (!*tmp)
        return oom(w, src->name);
    int rc = ftq_tensor_to_f32(src, *tmp);
    if (rc != FTQ_OK) {
        free(*tmp);
        *tmp = NULL;
        return rc;
    }
    *data = *tmp;
    return FTQ_OK;
}

/* dst = elements [off, off + len) of a 1-D tensor: a view when possible, else a copy. */
static int bind_slice1d(walk *w, ftq_tensor *dst, const ftq_tensor *src, int64_t off, int64_t len)
{
    if (!w->m || !src)
        return FTQ_OK;
    const float *s = NULL;
    float *tmp;
    int rc = f32_temp(w, src, &s, &tmp);
    if (rc != FTQ_OK)
        return rc;
    if (!tmp) {
        describe(dst, src, 1, len, 0, (void *)(s + off), 0);
        return FTQ_OK;
    }
    float *d = ftq_model_alloc(w->m, sizeof(float) * (size_t)len);
    if (d)
        memcpy(d, s + off, sizeof(float) * (size_t)len);
    free(tmp);
    if (!d)
        return oom(w, src->name);
    describe(dst, src, 1, len, 0, d, 1);
    return FTQ_OK;
}

/* GPT-2 Conv1D: src is [in, out_total]; dst = columns [c0, c0 + out) transposed to [out, in]. */
static int bind_transposed(walk *w, ftq_tensor *dst, const ftq_tensor *src, int64_t c0, int64_t out)
{
    const ftq_qentry *qe = ftq_qindex_entry_of(w->qix, src);
    if (qe && check_orientation(w, qe, 1) != FTQ_OK)
        return FTQ_EFORMAT;
    if (!w->m || !src)
        return FTQ_OK;
    if (qe) /* the file holds the [out_total, in] transpose: a range of its rows */
        return bind_qmat(w, dst, qe, (int)c0, (int)out);
    if (w->bf16 && w->lin) {
        int rc = ftq_model_bind_bmat(w->m, dst, src, 1, c0, out, w->label);
        if (c0 + out == src->shape[1]) /* the walk binds the column blocks in order */
            ftq_checkpoint_discard(w->m->ck, src);
        return rc;
    }
    int64_t in = src->shape[0], ld = src->shape[1];
    const float *s = NULL;
    float *tmp;
    int rc = f32_temp(w, src, &s, &tmp);
    if (rc != FTQ_OK)
        return rc;
    float *d = ftq_model_alloc(w->m, sizeof(float) * (size_t)(in * out));
    if (!d) {
        free(tmp);
        return oom(w, src->name);
    }
    enum { B = 32 };
    for (int64_t i0 = 0; i0 < in; i0 += B)
        for (int64_t o0 = 0; o0 < out; o0 += B)
            for (int64_t i = i0; i < in && i < i0 + B; i++)
                for (int64_t o = o0; o < out && o < o0 + B; o++)
                    d[o * in + i] = s[i * ld + c0 + o];
    free(tmp);
    /* the file's [in, out] copy is not read again (c_attn's other column blocks fault the
     * pages back in from the page cache): keeps GPT-2's peak memory near its own size */
    ftq_checkpoint_release(w->ck, src->data, src->nbytes);
    describe(dst, src, 2, out, in, d, 1);
    return FTQ_OK;
}

/* ---- the expected tensors of each architecture ---------------------------------------- */

#define TRY(expr)                        \
    do {                                 \
        int rc_ = (expr);                \
        if (rc_ != FTQ_OK)               \
            return rc_;                  \
    } while (0)

/* The output heads. Causal LM: lm_head.weight (optional when tied: HF ties it to the
 * embedding whether or not the file stores a copy). Sequence classifier (HF
 * *ForSequenceClassification state dict): score.weight [num_labels, C] and no lm_head. */
static int walk_heads(walk *w)
{
    const ftq_model_config *c = w->cfg;
    int64_t C = c->hidden_size, V = c->vocab_size;
    ftq_model *m = w->m;
    const ftq_tensor *t;
    w->q_ok = 1;
    if (c->is_classifier) {
        TRY(need(w, &t, 0, 2, c->num_labels, C, "score.weight"));
        TRY(bind_plain(w, m ? &m->score : NULL, t));
        return FTQ_OK;
    }
    TRY(need(w, &t, c->tie_word_embeddings, 2, V, C, "lm_head.weight"));
    if (!c->tie_word_embeddings)
        TRY(bind_plain(w, m ? &m->lm_head : NULL, t));
    w->q_ok = 0;
    return FTQ_OK;
}

static int walk_llama(walk *w)
{
    const ftq_model_config *c = w->cfg;
    int64_t C = c->hidden_size, V = c->vocab_size, F = c->intermediate_size;
    int64_t Q = (int64_t)c->n_heads * c->head_dim, K = (int64_t)c->n_kv_heads * c->head_dim;
    ftq_model *m = w->m;
    const ftq_tensor *t;
    w->q_ok = 1;
    TRY(need(w, &t, 0, 2, V, C, "model.embed_tokens.weight"));
    TRY(bind_plain(w, m ? &m->tok_emb : NULL, t));
    w->q_ok = 0;
    for (int l = 0; l < c->n_layers; l++) {
        ftq_layer_weights *L = m ? &m->layers[l] : NULL;
        /* q_ok: only the 2-D (linear) weights may be quantized */
#define LAYER(field, nd, d0, d1, suffix)                                                \
    do {                                                                                \
        w->q_ok = (nd) == 2;                                                            \
        TRY(need(w, &t, 0, nd, d0, d1, "model.layers.%d." suffix, l));                  \
        w->q_ok = 0;                                                                    \
        TRY(bind_plain(w, L ? &L->field : NULL, t));                                    \
    } while (0)
        LAYER(norm1_w, 1, C, 0, "input_layernorm.weight");
        LAYER(wq, 2, Q, C, "self_attn.q_proj.weight");
        LAYER(wk, 2, K, C, "self_attn.k_proj.weight");
        LAYER(wv, 2, K, C, "self_attn.v_proj.weight");
        LAYER(wo, 2, C, Q, "self_attn.o_proj.weight");
        if (c->qkv_bias) {
            LAYER(bq, 1, Q, 0, "self_attn.q_proj.bias");
            LAYER(bk, 1, K, 0, "self_attn.k_proj.bias");
            LAYER(bv, 1, K, 0, "self_attn.v_proj.bias");
        }
        if (c->o_bias)
            LAYER(bo, 1, C, 0, "self_attn.o_proj.bias");
        LAYER(norm2_w, 1, C, 0, "post_attention_layernorm.weight");
        LAYER(w_gate, 2, F, C, "mlp.gate_proj.weight");
        LAYER(w_up, 2, F, C, "mlp.up_proj.weight");
        LAYER(w_down, 2, C, F, "mlp.down_proj.weight");
        if (c->mlp_bias) {
            LAYER(b_gate, 1, F, 0, "mlp.gate_proj.bias");
            LAYER(b_up, 1, F, 0, "mlp.up_proj.bias");
            LAYER(b_down, 1, C, 0, "mlp.down_proj.bias");
        }
#undef LAYER
    }
    TRY(need(w, &t, 0, 1, C, 0, "model.norm.weight"));
    TRY(bind_plain(w, m ? &m->norm_w : NULL, t));
    return walk_heads(w);
}

static int walk_gpt2(walk *w)
{
    const ftq_model_config *c = w->cfg;
    int64_t C = c->hidden_size, V = c->vocab_size, F = c->intermediate_size, P = c->max_position;
    ftq_model *m = w->m;
    const char *p = w->prefix;
    const ftq_tensor *t;
    w->q_ok = 1;
    TRY(need(w, &t, 0, 2, V, C, "%swte.weight", p));
    TRY(bind_plain(w, m ? &m->tok_emb : NULL, t));
    TRY(need(w, &t, 0, 2, P, C, "%swpe.weight", p));
    TRY(bind_plain(w, m ? &m->pos_emb : NULL, t));
    w->q_ok = 0;
    for (int l = 0; l < c->n_layers; l++) {
        ftq_layer_weights *L = m ? &m->layers[l] : NULL;
        /* q_ok: only the 2-D (Conv1D) weights may be quantized */
#define NEED(nd, d0, d1, suffix)                                                 \
    do {                                                                         \
        w->q_ok = (nd) == 2;                                                     \
        TRY(need(w, &t, 0, nd, d0, d1, "%sh.%d." suffix, p, l));                 \
        w->q_ok = 0;                                                             \
    } while (0)
        NEED(1, C, 0, "ln_1.weight");
        TRY(bind_plain(w, L ? &L->norm1_w : NULL, t));
        NEED(1, C, 0, "ln_1.bias");
        TRY(bind_plain(w, L ? &L->norm1_b : NULL, t));
        NEED(2, C, 3 * C, "attn.c_attn.weight");
        TRY(bind_transposed(w, L ? &L->wq : NULL, t, 0, C));
        TRY(bind_transposed(w, L ? &L->wk : NULL, t, C, C));
        TRY(bind_transposed(w, L ? &L->wv : NULL, t, 2 * C, C));
        NEED(1, 3 * C, 0, "attn.c_attn.bias");
        TRY(bind_slice1d(w, L ? &L->bq : NULL, t, 0, C));
        TRY(bind_slice1d(w, L ? &L->bk : NULL, t, C, C));
        TRY(bind_slice1d(w, L ? &L->bv : NULL, t, 2 * C, C));
        NEED(2, C, C, "attn.c_proj.weight");
        TRY(bind_transposed(w, L ? &L->wo : NULL, t, 0, C));
        NEED(1, C, 0, "attn.c_proj.bias");
        TRY(bind_plain(w, L ? &L->bo : NULL, t));
        NEED(1, C, 0, "ln_2.weight");
        TRY(bind_plain(w, L ? &L->norm2_w : NULL, t));
        NEED(1, C, 0, "ln_2.bias");
        TRY(bind_plain(w, L ? &L->norm2_b : NULL, t));
        NEED(2, C, F, "mlp.c_fc.weight");
        TRY(bind_transposed(w, L ? &L->w_up : NULL, t, 0, F));
        NEED(1, F, 0, "mlp.c_fc.bias");
        TRY(bind_plain(w, L ? &L->b_up : NULL, t));
        NEED(2, F, C, "mlp.c_proj.weight");
        TRY(bind_transposed(w, L ? &L->w_down : NULL, t, 0, C));
        NEED(1, C, 0, "mlp.c_proj.bias");
        TRY(bind_plain(w, L ? &L->b_down : NULL, t));
#undef NEED
    }
    TRY(need(w, &t, 0, 1, C, 0, "%sln_f.weight", p));
    TRY(bind_plain(w, m ? &m->norm_w : NULL, t));
    TRY(need(w, &t, 0, 1, C, 0, "%sln_f.bias", p));
    TRY(bind_plain(w, m ? &m->norm_b : NULL, t));
    return walk_heads(w);
}

/* Non-parameter buffers that older exports carry: GPT-2's causal-mask buffers
 * ([transformer.]h.N.attn.bias / .masked_bias) and Llama's rotary inv_freq. */
static int is_legacy_buffer(const walk *w, const char *name)
{
    if (w->cfg->arch == FTQ_ARCH_GPT2) {
        const char *s = name;
        if (strncmp(s, "transformer.", 12) == 0)
            s += 12;
        if (strncmp(s, "h.", 2) != 0 || s[2] < '0' || s[2] > '9')
            return 0;
        s += 2;
        while (*s >= '0' && *s <= '9')
            s++;
        return strcmp(s, ".attn.bias") == 0 || strcmp(s, ".attn.masked_bias") == 0;
    }
    const char *s = name;
    if (strncmp(s, "model.layers.", 13) != 0 || s[13] < '0' || s[13] > '9')
        return 0;
    s += 13;
    while (*s >= '0' && *s <= '9')
        s++;
    return strcmp(s, ".self_attn.rotary_emb.inv_freq") == 0;
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (const void *const *)a, y = (uintptr_t) * (const void *const *)b;
    return x < y ? -1 : x > y;
}

static int check_config(const ftq_model_config *c, const char *label)
{
    if (c->vocab_size < 1 || c->hidden_size < 1 || c->intermediate_size < 1 || c->n_layers < 1 ||
        c->n_heads < 1 || c->n_kv_heads < 1 || c->head_dim < 1 || c->max_position < 1)
        return ftq_set_error(FTQ_EFORMAT, "model '%s': config has a non-positive size", label);
    if (c->n_heads % c->n_kv_heads != 0)
        return ftq_set_error(FTQ_EFORMAT,
                             "model '%s': num_attention_heads %d is not a multiple of "
                             "num_key_value_heads %d",
                             label, c->n_heads, c->n_kv_heads);
    if (c->arch == FTQ_ARCH_GPT2 &&
        (c->n_kv_heads != c->n_heads || (int64_t)c->n_heads * c->head_dim != c->hidden_size))
        return ftq_set_error(FTQ_EFORMAT, "model '%s': n_embd %d is not n_head %d x head size %d", label,
                             c->hidden_size, c->n_heads, c->head_dim);
    if (c->arch == FTQ_ARCH_GPT2 && c->act == FTQ_ACT_SILU)
        return ftq_set_error(FTQ_EUNSUPPORTED, "model '%s': GPT-2 with a silu activation", label);
    if (c->arch == FTQ_ARCH_LLAMA && (c->head_dim % 2 != 0 || c->act != FTQ_ACT_SILU))
        return ftq_set_error(FTQ_EUNSUPPORTED,
                             "model '%s': llama-family model needs an even head_dim and silu "
                             "(head_dim %d)",
                             label, c->head_dim);
    if (c->is_classifier && c->num_labels < 1)
        return ftq_set_error(FTQ_EFORMAT, "model '%s': sequence classifier without labels", label);
    if (c->arch != FTQ_ARCH_LLAMA && c->arch != FTQ_ARCH_GPT2)
        return ftq_set_error(FTQ_EUNSUPPORTED, "model '%s': unsupported architecture %d", label,
                             (int)c->arch);
    return FTQ_OK;
}

static int run_walk(const ftq_model_config *cfg, const ftq_checkpoint *ck, const char *label,
                    ftq_model *m, unsigned flags)
{
    TRY(check_config(cfg, label));
    size_t n = ftq_checkpoint_count(ck);
    walk w = {.cfg = cfg, .ck = ck, .label = label, .m = m, .prefix = "",
              .drop_parts = (flags & FTQ_LOAD_KEEP_QUANT) != 0, .bf16 = (flags & FTQ_LOAD_BF16) != 0};
    ftq_qindex *qix = NULL;
    TRY(ftq_qindex_open(ck, label, &qix));
    w.qix = qix;
    /* each expected name is looked up once and uses one tensor, or a quantized entry's two
     * or three parts: at most n tensors */
    w.used = malloc(sizeof(*w.used) * (n + 1));
    if (!w.used) {
        ftq_qindex_free(qix);
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    }
    int rc;
    if (cfg->arch == FTQ_ARCH_GPT2) {
        /* wte may be quantized: look in the index too */
        int has_p = ftq_checkpoint_find(ck, "transformer.wte.weight") || ftq_qindex_find(qix, "transformer.wte.weight");
        int has_bare = ftq_checkpoint_find(ck, "wte.weight") || ftq_qindex_find(qix, "wte.weight");
        w.prefix = has_p ? "transformer." : has_bare ? "" : "transformer.";
        rc = walk_gpt2(&w);
    } else {
        rc = walk_llama(&w);
    }
    if (rc == FTQ_OK) {
        qsort(w.used, w.n_used, sizeof *w.used, cmp_ptr);
        for (size_t i = 0; i < n; i++) {
            const ftq_tensor *t = ftq_checkpoint_tensor(ck, i);
            if (bsearch(&t, w.used, w.n_used, sizeof *w.used, cmp_ptr) || is_legacy_buffer(&w, t->name))
                continue;
            rc = ftq_set_error(FTQ_EFORMAT, "model '%s': unexpected tensor '%s' (not part of a %s model "
                               "with %d layers)",
                               label, t->name, cfg->model_type, cfg->n_layers);
            break;
        }
    }
    free(w.used);
    ftq_qindex_free(qix);
    return rc;
}

/* ---- public API ------------------------------------------------------------------------ */

int ftq_model_validate(const ftq_model_config *cfg, const ftq_checkpoint *ck)
{
    if (!cfg || !ck)
        return ftq_set_error(FTQ_EINVAL, "ftq_model_validate: NULL argument");
    /* name the checkpoint by its directory (or its single file) */
    char label[1024] = "?";
    const ftq_st_file *f = ftq_checkpoint_nfiles(ck) ? ftq_checkpoint_file(ck, 0) : NULL;
    if (f) {
        snprintf(label, sizeof label, "%s", ftq_st_path(f));
        char *slash = strrchr(label, '/');
        if (slash && slash != label)
            *slash = '\0';
        else if (slash)
            slash[1] = '\0';
        else if (strstr(label, ".safetensors"))
            strcpy(label, ".");
    }
    return run_walk(cfg, ck, label, NULL, 0);
}

void ftq_model_free(ftq_model *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_qmats; i++)
        ftq_qmat_free(m->qmats[i]);
    free(m->qmats);
    for (size_t i = 0; i < m->n_allocs; i++)
        free(m->allocs[i]);
    free(m->allocs);
    free(m->layers);
    ftq_checkpoint_close(m->ck);
    free(m->dir);
    free(m);
}

static int64_t numel_or0(const ftq_tensor *t) { return t->data ? ftq_tensor_numel(t) : 0; }

static int64_t count_params(const ftq_model *m)
{
    int64_t n = numel_or0(&m->tok_emb) + numel_or0(&m->pos_emb) + numel_or0(&m->norm_w) +
                numel_or0(&m->norm_b);
    if (!m->cfg.tie_word_embeddings)
        n += numel_or0(&m->lm_head);
    n += numel_or0(&m->score);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const ftq_tensor *t = (const ftq_tensor *)&m->layers[l];
        for (size_t i = 0; i < sizeof(ftq_layer_weights) / sizeof(ftq_tensor); i++)
            n += numel_or0(&t[i]);
    }
    return n;
}

int ftq_model_load(const char *dir, ftq_model **out)
{
    return ftq_model_load_ex(dir, 0, out);
}

int ftq_model_load_ex(const char *dir, unsigned flags, ftq_model **out)
{
    if (!out)
        return ftq_set_error(FTQ_EINVAL, "ftq_model_load: NULL output");
    *out = NULL;
    if (!dir)
        return ftq_set_error(FTQ_EINVAL, "ftq_model_load: NULL directory");
    ftq_model *m = calloc(1, sizeof *m);
    char *cfg_path = ftq_path_join(dir, "config.json");
    if (!m || !cfg_path || !(m->dir = strdup(dir))) {
        free(cfg_path);
        ftq_model_free(m);
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    }
    int rc;
    if (ftq_gguf_is_file(dir)) /* a GGUF file holds its config as metadata */
        rc = ftq_gguf_checkpoint_open_ex(dir, ((flags & FTQ_LOAD_KEEP_QUANT) ? FTQ_GGUF_KEEP_QUANT : 0) |
                                                  ((flags & FTQ_LOAD_BF16) ? FTQ_GGUF_BF16 : 0),
                                         &m->cfg, &m->ck);
    else if ((rc = ftq_config_load(cfg_path, &m->cfg)) == FTQ_OK)
        rc = ftq_checkpoint_open(dir, &m->ck);
    free(cfg_path);
    /* validate first: num_hidden_layers sizes the layer table, and only the tensors the file
     * holds bound it (16777216 layers used to reserve 35 GB before "missing tensor") */
    if (rc == FTQ_OK)
        rc = run_walk(&m->cfg, m->ck, dir, NULL, 0);
    if (rc == FTQ_OK && m->cfg.n_layers > 0 &&
        !(m->layers = calloc((size_t)m->cfg.n_layers, sizeof *m->layers)))
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
    if (rc == FTQ_OK)
        rc = run_walk(&m->cfg, m->ck, dir, m, flags);
    if (rc != FTQ_OK) {
        ftq_model_free(m);
        return rc;
    }
    if (m->cfg.tie_word_embeddings) {
        m->lm_head = m->tok_emb;
        m->lm_head.owned = 0;
    }
    m->n_params = count_params(m);
    *out = m;
    return FTQ_OK;
}

const ftq_model_config *ftq_model_get_config(const ftq_model *m) { return &m->cfg; }
int ftq_model_num_labels(const ftq_model *m) { return m && m->score.data ? (int)m->score.shape[0] : 0; }
const ftq_checkpoint *ftq_model_get_checkpoint(const ftq_model *m) { return m->ck; }
int64_t ftq_model_param_count(const ftq_model *m) { return m->n_params; }
