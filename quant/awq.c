/* awq.c - activation-aware weight quantization (quant/awq.h): the per-layer-group alpha
 * search on the calibration statistics and the exact fold of the scales into the model
 * (norm weights, v_proj / up_proj rows). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ftq.h"
#include "quant/awq.h"
#include "quant/qcalib.h"

static void awq_scales(const double *mag, int cols, double alpha, float *s)
{
    double mx = 0;
    for (int j = 0; j < cols; j++)
        mx = mag[j] > mx ? mag[j] : mx;
    const double floor_ = mx > 0 ? 1e-6 * mx : 1.0;
    double lo = INFINITY, hi = 0;
    for (int j = 0; j < cols; j++) {
        double v = alpha == 0 ? 1.0 : pow(mag[j] > floor_ ? mag[j] : floor_, alpha);
        s[j] = (float)v;
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    const double norm = sqrt(lo * hi);
    for (int j = 0; j < cols; j++)
        s[j] = (float)(s[j] / norm);
}

int ftq_awq_search(const ftq_awq_linear *lins, int n, int cols, const ftq_quant_params *qp, const double *imp,
                   const double *mag, const float *gram, int64_t ntok, float *s, double *err, double *err0,
                   double *alpha)
{
    if (!lins || n < 1 || cols < 1 || !qp || !mag || !gram || !s || !err || !err0 || !alpha)
        return ftq_set_error(FTQ_EINVAL, "ftq_awq_search: NULL argument");
    int maxrows = 0;
    for (int i = 0; i < n; i++) {
        if (!lins[i].w || lins[i].rows < 1)
            return ftq_set_error(FTQ_EINVAL, "ftq_awq_search: empty linear layer %d", i);
        maxrows = lins[i].rows > maxrows ? lins[i].rows : maxrows;
    }
    const size_t cc = (size_t)cols * cols;
    float *cand = malloc(sizeof(float) * cols), *g2 = malloc(sizeof(float) * cc);
    float *w2 = malloc(sizeof(float) * (size_t)maxrows * cols);
    double *imp2 = imp ? malloc(sizeof(double) * cols) : NULL;
    int rc = cand && g2 && w2 && (!imp || imp2) ? FTQ_OK : ftq_set_error(FTQ_ENOMEM, "out of memory in the awq search");
    *err = *err0 = INFINITY;
    *alpha = 0;
    for (int a = 0; a < FTQ_AWQ_GRID && rc == FTQ_OK; a++) {
        const double al = (double)a / (FTQ_AWQ_GRID - 1);
        awq_scales(mag, cols, al, cand);
        for (int i = 0; i < cols; i++)
            for (int j = 0; j < cols; j++)
                g2[(size_t)i * cols + j] = gram[(size_t)i * cols + j] / (cand[i] * cand[j]);
        if (imp)
            for (int j = 0; j < cols; j++)
                imp2[j] = imp[j] / ((double)cand[j] * cand[j]);
        double tot = 0;
        for (int k = 0; k < n && rc == FTQ_OK; k++) {
            const int rows = lins[k].rows;
            for (int r = 0; r < rows; r++)
                for (int j = 0; j < cols; j++)
                    w2[(size_t)r * cols + j] = lins[k].w[(size_t)r * cols + j] * cand[j];
            ftq_qtensor q;
            rc = imp ? ftq_qtensor_quantize_weighted(&q, w2, rows, cols, qp, imp2)
                     : ftq_qtensor_quantize(&q, w2, rows, cols, qp);
            if (rc != FTQ_OK)
                break;
            double e = 0;
            rc = ftq_qtensor_output_error(&q, w2, g2, ntok, &e);
            ftq_qtensor_free(&q);
            tot += e;
        }
        if (rc != FTQ_OK)
            break;
        if (a == 0)
            *err0 = tot;
        if (a == 0 || tot < *err) {
            *err = tot;
            *alpha = al;
            memcpy(s, cand, sizeof(float) * cols);
        }
    }
    free(cand);
    free(g2);
    free(w2);
    free(imp2);
    return rc;
}

/* ---- folding into the model ------------------------------------------------------------ */

/* t's data as memory the model owns (a view of the checkpoint is copied first). */
static float *own(ftq_model *m, ftq_tensor *t)
{
    if (!t->data)
        return NULL;
    if (t->owned)
        return t->data;
    size_t bytes = sizeof(float) * (size_t)ftq_tensor_numel(t);
    float *c = ftq_model_alloc(m, bytes);
    if (!c)
        return NULL;
    memcpy(c, t->data, bytes);
    t->data = c;
    t->owned = 1;
    return c;
}

int ftq_awq_applies(const ftq_model *m, int kind)
{
    if (!m || m->cfg.n_layers < 1)
        return 0;
    const ftq_layer_weights *L = &m->layers[0];
    switch (kind) {
    case FTQ_AWQ_QKV:
        return L->norm1_w.data && L->wq.data && L->wk.data && L->wv.data;
    case FTQ_AWQ_O:
        /* GPT-2's v bias is a slice of c_attn.bias, shared with q and k: not folded */
        return L->wv.data && L->wo.data && (!L->bv.data || !L->bq.name || !L->bv.name || strcmp(L->bq.name, L->bv.name) != 0) &&
               m->cfg.n_kv_heads > 0 && m->cfg.n_heads % m->cfg.n_kv_heads == 0;
    case FTQ_AWQ_MLP:
        return L->norm2_w.data && L->w_up.data;
    case FTQ_AWQ_DOWN:
        return L->w_gate.data && L->w_up.data && L->w_down.data;
    }
    return 0;
}

static void scale_cols(float *w, int rows, int cols, const float *s)
{
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++)
            w[(size_t)r * cols + j] *= s[j];
}

static void divide(float *v, int n, const float *s)
{
    for (int j = 0; j < n; j++)
        v[j] /= s[j];
}

/* kind O's effective scales: channel (h, d) takes the scale of (the first head of h's kv group, d) */
static void tie_o(const ftq_model_config *c, const float *s, float *t)
{
    const int hd = c->head_dim, rep = c->n_heads / c->n_kv_heads;
    for (int h = 0; h < c->n_heads; h++)
        for (int d = 0; d < hd; d++)
            t[h * hd + d] = s[(h / rep * rep) * hd + d];
}

int ftq_awq_fold(ftq_model *m, int l, int kind, const float *s)
{
    if (!m || !s || l < 0 || l >= m->cfg.n_layers || !ftq_awq_applies(m, kind))
        return ftq_set_error(FTQ_EINVAL, "ftq_awq_fold: kind %d does not apply to layer %d", kind, l);
    const ftq_model_config *c = &m->cfg;
    ftq_layer_weights *L = &m->layers[l];
    const int C = c->hidden_size, F = c->intermediate_size, hd = c->head_dim;
    const int Q = c->n_heads * hd, K = c->n_kv_heads * hd;
    int ok = 1;
    switch (kind) {
    case FTQ_AWQ_QKV:
    case FTQ_AWQ_MLP: {
        ftq_tensor *nw = kind == FTQ_AWQ_QKV ? &L->norm1_w : &L->norm2_w;
        ftq_tensor *nb = kind == FTQ_AWQ_QKV ? &L->norm1_b : &L->norm2_b;
        ftq_tensor *lw[3] = {&L->wq, &L->wk, &L->wv};
        if (kind == FTQ_AWQ_MLP) {
            lw[0] = &L->w_gate;
            lw[1] = &L->w_up;
            lw[2] = NULL;
        }
        float *g = own(m, nw), *b = nb->data ? own(m, nb) : NULL;
        ok = g && (!nb->data || b);
        for (int i = 0; i < 3 && ok; i++) {
            if (!lw[i] || !lw[i]->data)
                continue;
            float *w = own(m, lw[i]);
            ok = w != NULL;
            if (ok)
                scale_cols(w, (int)lw[i]->shape[0], C, s);
        }
        if (ok) {
            divide(g, C, s);
            if (b)
                divide(b, C, s);
        }
        break;
    }
    case FTQ_AWQ_O: {
        float *t = malloc(sizeof(float) * Q), *wv = own(m, &L->wv), *wo = own(m, &L->wo);
        float *bv = L->bv.data ? own(m, &L->bv) : NULL;
        ok = t && wv && wo && (!L->bv.data || bv);
        if (ok) {
            tie_o(c, s, t);
            for (int r = 0; r < K; r++) { /* v channel (g, d) is o channel (g * rep, d) */
                const int rep = c->n_heads / c->n_kv_heads;
                const float sv = t[(r / hd) * rep * hd + r % hd];
                for (int j = 0; j < C; j++)
                    wv[(size_t)r * C + j] /= sv;
                if (bv)
                    bv[r] /= sv;
            }
            scale_cols(wo, C, Q, t);
        }
        free(t);
        break;
    }
    case FTQ_AWQ_DOWN: {
        float *wu = own(m, &L->w_up), *wd = own(m, &L->w_down), *bu = L->b_up.data ? own(m, &L->b_up) : NULL;
        ok = wu && wd && (!L->b_up.data || bu);
        if (ok) {
            for (int r = 0; r < F; r++)
                for (int j = 0; j < C; j++)
                    wu[(size_t)r * C + j] /= s[r];
            if (bu)
                divide(bu, F, s);
            scale_cols(wd, C, F, s);
        }
        break;
    }
    }
    return ok ? FTQ_OK : ftq_set_error(FTQ_ENOMEM, "out of memory folding awq scales");
}

int ftq_awq_apply(ftq_model *m, ftq_act_stats *st, const ftq_quant_params *qp, int weighted, double *alphas)
{
    const ftq_model_config *c = &m->cfg;
    const int C = c->hidden_size, F = c->intermediate_size, Q = c->n_heads * c->head_dim;
    const int dims[FTQ_AWQ_KINDS] = {C, Q, C, F};
    double *imps[FTQ_AWQ_KINDS] = {st->attn_in, st->o_in, st->mlp_in, st->down_in};
    double *abss[FTQ_AWQ_KINDS] = {st->attn_abs, st->o_abs, st->mlp_abs, st->down_abs};
    float *grams[FTQ_AWQ_KINDS] = {st->attn_gram, st->o_gram, st->mlp_gram, st->down_gram};
    for (int k = 0; k < FTQ_AWQ_KINDS; k++)
        if (!imps[k] || !abss[k] || !grams[k])
            return ftq_set_error(FTQ_EINVAL, "ftq_awq_apply: the calibration statistics lack what awq needs");
    if (st->tokens < 1)
        return ftq_set_error(FTQ_EINVAL, "ftq_awq_apply: no calibration tokens");
    double *mag = malloc(sizeof(double) * (size_t)(F > C ? (F > Q ? F : Q) : (C > Q ? C : Q)));
    float *s = malloc(sizeof(float) * (size_t)(F > C ? (F > Q ? F : Q) : (C > Q ? C : Q)));
    int rc = mag && s ? FTQ_OK : ftq_set_error(FTQ_ENOMEM, "out of memory in awq");
    for (int l = 0; l < c->n_layers && rc == FTQ_OK; l++) {
        ftq_layer_weights *L = &m->layers[l];
        for (int k = 0; k < FTQ_AWQ_KINDS && rc == FTQ_OK; k++) {
            alphas[l * FTQ_AWQ_KINDS + k] = -1;
            if (!ftq_awq_applies(m, k))
                continue;
            const int dim = dims[k];
            double *imp = imps[k] + (size_t)l * dim, *ab = abss[k] + (size_t)l * dim;
            float *g = grams[k] + (size_t)l * dim * dim;
            for (int j = 0; j < dim; j++)
                mag[j] = ab[j] / (double)st->tokens;
            if (k == FTQ_AWQ_O) { /* one magnitude per v channel: the mean over its heads */
                const int hd = c->head_dim, rep = c->n_heads / c->n_kv_heads;
                for (int h0 = 0; h0 < c->n_heads; h0 += rep)
                    for (int d = 0; d < hd; d++) {
                        double t = 0;
                        for (int h = h0; h < h0 + rep; h++)
                            t += mag[h * hd + d];
                        for (int h = h0; h < h0 + rep; h++)
                            mag[h * hd + d] = t / rep;
                    }
            }
            ftq_awq_linear lins[3];
            int n = 0;
            const ftq_tensor *ts[4][3] = {{&L->wq, &L->wk, &L->wv}, {&L->wo, NULL, NULL},
                                          {&L->w_gate, &L->w_up, NULL}, {&L->w_down, NULL, NULL}};
            for (int i = 0; i < 3; i++)
                if (ts[k][i] && ts[k][i]->data)
                    lins[n++] = (ftq_awq_linear){ts[k][i]->data, (int)ts[k][i]->shape[0]};
            double err = 0, err0 = 0, al = 0;
            rc = ftq_awq_search(lins, n, dim, qp, weighted ? imp : NULL, mag, g, st->tokens, s, &err, &err0, &al);
            if (rc != FTQ_OK)
                break;
            alphas[l * FTQ_AWQ_KINDS + k] = al;
            if (al == 0)
                continue;
            rc = ftq_awq_fold(m, l, k, s);
            /* the statistics of the scaled input x / s */
            for (int i = 0; i < dim && rc == FTQ_OK; i++) {
                imp[i] /= (double)s[i] * s[i];
                ab[i] /= s[i];
                for (int j = 0; j < dim; j++)
                    g[(size_t)i * dim + j] /= s[i] * s[j];
            }
        }
    }
    free(mag);
    free(s);
    return rc;
}
