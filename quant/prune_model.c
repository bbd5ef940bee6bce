/* prune_model.c - prune a whole checkpoint into a directory that appears only when
 * complete. The architecture is picked from a table (quant/prune_internal.h; encoders in
 * quant/prune_arch_bert.c); the decoder's part is here: the model's linear weights are
 * swapped for owned copies, pruned (Wanda block by block with calibration statistics from
 * the forward pass), and written back in the file's own names, layouts (GPT-2 Conv1D
 * [in, out]) and dtypes. */
#include "include/ftq.h"
#include "include/ftq_prune.h"
#include "model/model.h"
#include "quant/prune_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ftq_prune_params ftq_prune_default_params(void)
{
    ftq_prune_params p;
    memset(&p, 0, sizeof p);
    p.method = FTQ_PRUNE_MAGNITUDE;
    p.sparsity = 0.5f;
    p.scope = FTQ_PRUNE_ROW;
    p.calib_ctx = 256;
    p.calib_bos = -1;
    return p;
}

void ftq_prune_report_free(ftq_prune_report *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_tensors; i++)
        free(r->tensors[i].name);
    free(r->tensors);
    memset(r, 0, sizeof *r);
}

/* A weight being pruned: the model tensor it replaces, rows x cols ([out, in]). */
typedef struct {
    ftq_tensor *t;
    float *data; /* owned copy, now also t->data */
    int layer;   /* -1 for embeddings / heads */
    int kind;    /* which calibration statistic feeds it (wanda) */
} slot;

enum { IN_ATTN, IN_O, IN_MLP, IN_DOWN, IN_NONE };

typedef struct {
    slot *s;
    size_t n;
} slots;

static int take(slots *ss, ftq_tensor *t, int layer, int kind)
{
    if (!t->data)
        return FTQ_OK; /* the architecture lacks it */
    for (size_t i = 0; i < ss->n; i++)
        if (ss->s[i].t->data == t->data) { /* tied: share the copy */
            t->data = ss->s[i].data;
            return FTQ_OK;
        }
    int64_t n = ftq_tensor_numel(t);
    float *copy = malloc(sizeof(float) * (size_t)n);
    slot *grown = realloc(ss->s, sizeof(slot) * (ss->n + 1));
    if (!copy || !grown) {
        free(copy);
        if (grown)
            ss->s = grown;
        return ftq_set_error(FTQ_ENOMEM, "cannot prune: out of memory");
    }
    ss->s = grown;
    memcpy(copy, t->data, sizeof(float) * (size_t)n);
    t->data = copy;
    ss->s[ss->n++] = (slot){t, copy, layer, kind};
    return FTQ_OK;
}

static int select_weights(ftq_model *m, const ftq_prune_params *p, slots *ss)
{
    int rc = FTQ_OK;
    for (int l = 0; l < m->cfg.n_layers && rc == FTQ_OK; l++) {
        ftq_layer_weights *L = &m->layers[l];
        rc = take(ss, &L->wq, l, IN_ATTN);
        rc = rc ? rc : take(ss, &L->wk, l, IN_ATTN);
        rc = rc ? rc : take(ss, &L->wv, l, IN_ATTN);
        rc = rc ? rc : take(ss, &L->wo, l, IN_O);
        rc = rc ? rc : take(ss, &L->w_gate, l, IN_MLP);
        rc = rc ? rc : take(ss, &L->w_up, l, IN_MLP);
        rc = rc ? rc : take(ss, &L->w_down, l, IN_DOWN);
    }
    if (rc == FTQ_OK && p->include_embeddings) {
        void *old = m->tok_emb.data;
        rc = take(ss, &m->tok_emb, -1, IN_NONE);
        if (rc == FTQ_OK && m->lm_head.data == old)
            m->lm_head.data = m->tok_emb.data; /* tied output layer follows */
        if (rc == FTQ_OK)
            rc = take(ss, &m->pos_emb, -1, IN_NONE);
    }
    if (rc == FTQ_OK && p->include_head) {
        /* a tied output layer is the embedding matrix: --include-embeddings covers it */
        if (!m->cfg.tie_word_embeddings)
            rc = take(ss, &m->lm_head, -1, IN_NONE);
        if (rc == FTQ_OK)
            rc = take(ss, &m->score, -1, IN_NONE);
    }
    return rc;
}

static int prune_slot(const slot *s, const ftq_prune_params *p, const float *norm)
{
    int64_t rows = s->t->shape[0], cols = s->t->ndim > 1 ? s->t->shape[1] : 1;
    int rc;
    if (p->method == FTQ_PRUNE_NM)
        rc = ftq_prune_nm(s->data, rows, cols, p->n, p->m);
    else if (p->method == FTQ_PRUNE_WANDA)
        rc = ftq_prune_wanda(s->data, rows, cols, norm, p->sparsity, p->n, p->m);
    else
        rc = ftq_prune_magnitude(s->data, rows, cols, p->sparsity,
                                 p->scope == FTQ_PRUNE_TENSOR ? FTQ_PRUNE_TENSOR : FTQ_PRUNE_ROW);
    if (rc != FTQ_OK)
        return ftq_wrap_error(rc, "tensor '%s'", s->t->name ? s->t->name : "?");
    return FTQ_OK;
}

/* Wanda, block by block: statistics of block l's inputs with blocks < l already pruned. */
static int prune_wanda(ftq_model *m, const slots *ss, const ftq_prune_params *p, int64_t *calib_tokens)
{
    const ftq_model_config *c = &m->cfg;
    const int C = c->hidden_size, Q = c->n_heads * c->head_dim, F = c->intermediate_size, L = c->n_layers;
    int ctx = p->calib_ctx, bos = p->calib_bos >= 0, per = ctx - bos;
    if (ctx < 2 || per < 1 || (c->max_position > 0 && ctx > c->max_position))
        return ftq_set_error(FTQ_EINVAL, "cannot prune: calibration context %d must be in [2, %d]", ctx,
                             c->max_position);
    size_t n_win = p->n_calib / (size_t)per;
    if (n_win == 0)
        return ftq_set_error(FTQ_EINVAL, "cannot prune with wanda: %zu calibration tokens are fewer than one "
                                         "window of %d", p->n_calib, per);
    ftq_act_stats st;
    memset(&st, 0, sizeof st);
    st.attn_in = calloc((size_t)L * C, sizeof(double));
    st.o_in = calloc((size_t)L * Q, sizeof(double));
    st.mlp_in = calloc((size_t)L * C, sizeof(double));
    st.down_in = calloc((size_t)L * F, sizeof(double));
    float *norm = malloc(sizeof(float) * (size_t)(F > C ? (F > Q ? F : Q) : (C > Q ? C : Q)));
    int32_t *win = malloc(sizeof(int32_t) * (size_t)ctx);
    ftq_session *s = NULL;
    int rc = !st.attn_in || !st.o_in || !st.mlp_in || !st.down_in || !norm || !win
                 ? ftq_set_error(FTQ_ENOMEM, "cannot prune: out of memory")
                 : ftq_session_new(m, ctx, &s);
    for (int l = 0; l < L && rc == FTQ_OK; l++) {
        st.last_layer = l;
        st.tokens = 0;
        s->stats = &st;
        for (size_t w = 0; w < n_win && rc == FTQ_OK; w++) {
            if (bos)
                win[0] = p->calib_bos;
            memcpy(win + bos, p->calib + w * (size_t)per, sizeof(int32_t) * (size_t)per);
            ftq_session_reset(s);
            rc = ftq_session_eval(s, win, ctx, NULL, 0);
        }
        s->stats = NULL;
        *calib_tokens = st.tokens;
        for (size_t i = 0; i < ss->n && rc == FTQ_OK; i++) {
            const slot *sl = &ss->s[i];
            if (sl->layer != l)
                continue;
            const double *sum = sl->kind == IN_ATTN ? st.attn_in + (size_t)l * C
                                : sl->kind == IN_O  ? st.o_in + (size_t)l * Q
                                : sl->kind == IN_MLP ? st.mlp_in + (size_t)l * C
                                                     : st.down_in + (size_t)l * F;
            int64_t cols = sl->t->shape[1];
            for (int64_t j = 0; j < cols; j++)
                norm[j] = (float)sqrt(sum[j] / (double)(st.tokens > 0 ? st.tokens : 1));
            rc = prune_slot(sl, p, norm);
        }
    }
    ftq_session_free(s);
    free(win);
    free(norm);
    free(st.attn_in);
    free(st.o_in);
    free(st.mlp_in);
    free(st.down_in);
    return rc;
}

/* ---- writing the file layout ------------------------------------------------------- */

/* The pruned data for checkpoint tensor `name`, in the file's layout, as a malloc'd f32
 * buffer; NULL (and FTQ_OK) if the tensor was not pruned. */
static int file_layout(const ftq_model *m, const slots *ss, const char *name, const ftq_tensor *ft, float **out)
{
    *out = NULL;
    const ftq_tensor *src = NULL;
    for (size_t i = 0; i < ss->n; i++)
        if (ss->s[i].t->name && strcmp(ss->s[i].t->name, name) == 0)
            src = ss->s[i].t;
    int gpt2 = m->cfg.arch == FTQ_ARCH_GPT2;
    int64_t n = ftq_tensor_numel(ft);
    if (!gpt2 || ft->ndim != 2) { /* same layout as the model */
        if (!src)
            return FTQ_OK;
        *out = malloc(sizeof(float) * (size_t)n);
        if (!*out)
            return ftq_set_error(FTQ_ENOMEM, "out of memory");
        memcpy(*out, src->data, sizeof(float) * (size_t)n);
        return FTQ_OK;
    }
    /* GPT-2 Conv1D weights: the model holds [out, in] transposes; c_attn is q | k | v */
    const char *h = strstr(name, "h.");
    int layer = -1, off = 0;
    char suffix[64] = "";
    if (h && (h == name || h[-1] == '.') && sscanf(h, "h.%d.%n", &layer, &off) == 1)
        snprintf(suffix, sizeof suffix, "%s", h + off);
    if (layer < 0 || layer >= m->cfg.n_layers) {
        if (!src) /* embeddings and heads are [rows, C] in both */
            return FTQ_OK;
        *out = malloc(sizeof(float) * (size_t)n);
        if (!*out)
            return ftq_set_error(FTQ_ENOMEM, "out of memory");
        memcpy(*out, src->data, sizeof(float) * (size_t)n);
        return FTQ_OK;
    }
    const ftq_layer_weights *L = &m->layers[layer];
    const ftq_tensor *parts[3] = {NULL, NULL, NULL};
    if (strcmp(suffix, "attn.c_attn.weight") == 0) {
        parts[0] = &L->wq;
        parts[1] = &L->wk;
        parts[2] = &L->wv;
    } else if (strcmp(suffix, "attn.c_proj.weight") == 0) {
        parts[0] = &L->wo;
    } else if (strcmp(suffix, "mlp.c_fc.weight") == 0) {
        parts[0] = &L->w_up;
    } else if (strcmp(suffix, "mlp.c_proj.weight") == 0) {
        parts[0] = &L->w_down;
    }
    int pruned = 0;
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; parts[k] && i < ss->n; i++)
            pruned |= ss->s[i].t == parts[k];
    if (!pruned)
        return FTQ_OK;
    int64_t in = ft->shape[0], outd = ft->shape[1];
    float *buf = malloc(sizeof(float) * (size_t)n);
    if (!buf)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    int64_t col0 = 0;
    for (int k = 0; k < 3 && parts[k]; k++) {
        const float *w = ftq_tdata(parts[k]);
        int64_t rows = parts[k]->shape[0];
        for (int64_t o = 0; o < rows; o++)
            for (int64_t i = 0; i < in; i++)
                buf[i * outd + col0 + o] = w[o * in + i];
        col0 += rows;
    }
    *out = buf;
    return FTQ_OK;
}

static int write_output(const ftq_model *m, const slots *ss, const char *dir, ftq_prune_report *r)
{
    const ftq_checkpoint *ck = m->ck;
    size_t nt = ftq_checkpoint_count(ck);
    ftq_tensor *outs = calloc(nt ? nt : 1, sizeof(ftq_tensor)); /* calloc(0) may be NULL */
    void **bufs = calloc(nt ? nt : 1, sizeof(void *));
    r->tensors = calloc(nt ? nt : 1, sizeof(ftq_prune_tensor_report));
    int rc = outs && bufs && r->tensors ? FTQ_OK : ftq_set_error(FTQ_ENOMEM, "out of memory");
    for (size_t i = 0; i < nt && rc == FTQ_OK; i++) {
        const ftq_tensor *ft = ftq_checkpoint_tensor(ck, i);
        outs[i] = *ft;
        outs[i].owned = 0;
        int64_t n = ftq_tensor_numel(ft);
        const ftq_dtype_traits *tr = ftq_dtype_info(ft->dtype);
        if (tr->is_float && tr->to_f32)
            r->model_numel += n;
        float *f = NULL;
        rc = file_layout(m, ss, ft->name, ft, &f);
        if (rc != FTQ_OK || !f) {
            if (rc == FTQ_OK && tr->is_float && tr->to_f32)
                rc = ftq_prune_count_untouched(ft, r);
            continue;
        }
        rc = ftq_prune_emit(ft, f, n, r, &bufs[i]);
        free(f);
        outs[i].data = bufs[i];
    }
    if (rc == FTQ_OK)
        rc = ftq_prune_write_weights(ck, dir, outs, nt);
    for (size_t i = 0; bufs && i < nt; i++)
        free(bufs[i]);
    free(bufs);
    free(outs);
    return rc;
}

/* The decoder (Llama-family, GPT-2-family): the ftq_model's linear weights. */
static int prune_decoder(const char *in_dir, const char *tmp, const ftq_prune_params *p, ftq_prune_report *report)
{
    ftq_model *m = NULL;
    int rc = ftq_model_load(in_dir, &m);
    if (rc != FTQ_OK)
        return rc;
    if (ftq_model_quantized_count(m) > 0) {
        ftq_model_free(m);
        return ftq_set_error(FTQ_EUNSUPPORTED, "cannot prune '%s': it is quantized (prune before quantizing, or "
                                               "dequantize it first)", in_dir);
    }
    slots ss = {NULL, 0};
    rc = select_weights(m, p, &ss);
    if (rc == FTQ_OK) {
        if (p->method == FTQ_PRUNE_WANDA) {
            rc = prune_wanda(m, &ss, p, &report->calib_tokens);
        } else if (p->method == FTQ_PRUNE_MAGNITUDE && p->scope == FTQ_PRUNE_GLOBAL) {
            ftq_prune_span *sp = malloc(sizeof(ftq_prune_span) * (ss.n ? ss.n : 1));
            for (size_t i = 0; sp && i < ss.n; i++)
                sp[i] = (ftq_prune_span){ss.s[i].data, ftq_tensor_numel(ss.s[i].t)};
            rc = sp ? ftq_prune_global(sp, ss.n, p->sparsity) : ftq_set_error(FTQ_ENOMEM, "out of memory");
            free(sp);
        } else {
            for (size_t i = 0; i < ss.n && rc == FTQ_OK; i++)
                rc = prune_slot(&ss.s[i], p, NULL);
        }
    }
    if (rc == FTQ_OK)
        rc = write_output(m, &ss, tmp, report);
    for (size_t i = 0; i < ss.n; i++)
        free(ss.s[i].data);
    free(ss.s);
    ftq_model_free(m);
    return rc;
}

static const ftq_prune_arch arch_decoder = {"decoder", NULL, prune_decoder};

int ftq_prune_model(const char *in_dir, const char *out_dir, const ftq_prune_params *p,
                    ftq_prune_report *report)
{
    memset(report, 0, sizeof *report);
    if (p->method == FTQ_PRUNE_WANDA && (p->include_embeddings || p->include_head))
        return ftq_set_error(FTQ_EINVAL, "cannot prune embeddings or heads with wanda (no calibration inputs "
                                         "for them); use magnitude or nm");
    if (p->method == FTQ_PRUNE_WANDA && !p->calib)
        return ftq_set_error(FTQ_EINVAL, "wanda needs calibration text");
    if (p->method == FTQ_PRUNE_NM && (p->m < 2 || p->n < 1 || p->n >= p->m))
        return ftq_set_error(FTQ_EINVAL, "cannot prune: N:M must have 0 < N < M, got %d:%d", p->n, p->m);
    if (p->method != FTQ_PRUNE_NM && !(p->m > 0) && !(p->sparsity >= 0.0f && p->sparsity <= 1.0f))
        return ftq_set_error(FTQ_EINVAL, "cannot prune: sparsity %g outside [0, 1]", (double)p->sparsity);
    static const ftq_prune_arch *const archs[] = {&ftq_prune_arch_bert, &arch_decoder};
    const ftq_prune_arch *arch = &arch_decoder;
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (!archs[i]->match || archs[i]->match(in_dir)) {
            arch = archs[i];
            break;
        }
    char *tmp = NULL;
    int rc = ftq_outdir_begin(out_dir, 0, &tmp);
    if (rc == FTQ_OK)
        rc = arch->run(in_dir, tmp, p, report);
    if (rc == FTQ_OK)
        rc = ftq_model_files_copy(in_dir, tmp, 1); /* a GGUF's written from its metadata */
    if (rc == FTQ_OK) {
        rc = ftq_outdir_commit(tmp, out_dir, 0);
        tmp = NULL;
    }
    ftq_outdir_abort(tmp);
    if (rc != FTQ_OK)
        ftq_prune_report_free(report);
    return rc;
}
