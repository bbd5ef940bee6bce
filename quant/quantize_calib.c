/* quantize_calib.c - calibration for ftq_quantize_model on a decoder: the input statistics of
 * every block's linear layers from one forward pass over the calibration windows (sum of
 * x_j^2, and sum of x x^T for GPTQ), attached to the jobs; and the mixed-precision plan:
 * each layer's sensitivity (the KL divergence from the source model on a calibration window
 * with only that layer at int4) and the greedy int8 upgrades that fit the bit budget.
 * The model's weights are only ever swapped for a moment (pointer swap, restored). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "model/model.h"
#include "model/qcheckpoint.h"
#include "quant/qcalib.h"
#include "quant/quantize_calib.h"
#include "quant/quantize_kplan.h"

void ftq_qcalib_stats_free(ftq_act_stats *st)
{
    if (!st)
        return;
    free(st->attn_in);
    free(st->o_in);
    free(st->mlp_in);
    free(st->down_in);
    free(st->attn_gram);
    free(st->o_gram);
    free(st->mlp_gram);
    free(st->down_gram);
    free(st->attn_abs);
    free(st->o_abs);
    free(st->mlp_abs);
    free(st->down_abs);
    memset(st, 0, sizeof *st);
}

static int check_calib(const ftq_model *m, const ftq_quantize_params *p, int *per, size_t *n_win)
{
    const ftq_model_config *c = &m->cfg;
    int ctx = p->calib_ctx, bos = p->calib_bos >= 0;
    if (ctx < 2 || ctx - bos < 1 || (c->max_position > 0 && ctx > c->max_position))
        return ftq_set_error(FTQ_EINVAL, "cannot quantize: calibration context %d must be in [2, %d]", ctx,
                             c->max_position > 0 ? c->max_position : 1 << 20);
    if (p->calib_bos >= c->vocab_size)
        return ftq_set_error(FTQ_EINVAL, "cannot quantize: calibration BOS id %d outside the vocabulary",
                             p->calib_bos);
    *per = ctx - bos;
    *n_win = p->n_calib / (size_t)*per;
    if (*n_win == 0)
        return ftq_set_error(FTQ_EINVAL, "cannot calibrate: %zu calibration tokens are fewer than one window of %d",
                             p->n_calib, *per);
    return FTQ_OK;
}

/* Window w of the calibration text into win[ctx] (BOS first if any). */
static void window(const ftq_quantize_params *p, int per, size_t w, int32_t *win)
{
    int bos = p->calib_bos >= 0;
    if (bos)
        win[0] = p->calib_bos;
    memcpy(win + bos, p->calib + w * (size_t)per, sizeof(int32_t) * (size_t)per);
}

int ftq_qcalib_collect(ftq_model *m, const ftq_quantize_params *p, int want_gram, ftq_act_stats *st)
{
    memset(st, 0, sizeof *st);
    int per = 0;
    size_t n_win = 0;
    int rc = check_calib(m, p, &per, &n_win);
    if (rc != FTQ_OK)
        return rc;
    const ftq_model_config *c = &m->cfg;
    const size_t C = (size_t)c->hidden_size, Q = (size_t)c->n_heads * c->head_dim, F = (size_t)c->intermediate_size,
                 L = (size_t)c->n_layers;
    st->attn_in = calloc(L * C, sizeof(double));
    st->o_in = calloc(L * Q, sizeof(double));
    st->mlp_in = calloc(L * C, sizeof(double));
    st->down_in = calloc(L * F, sizeof(double));
    int ok = st->attn_in && st->o_in && st->mlp_in && st->down_in;
    if (ok && want_gram) {
        st->attn_gram = calloc(L * C * C, sizeof(float));
        st->o_gram = calloc(L * Q * Q, sizeof(float));
        st->mlp_gram = calloc(L * C * C, sizeof(float));
        st->down_gram = calloc(L * F * F, sizeof(float));
        ok = st->attn_gram && st->o_gram && st->mlp_gram && st->down_gram;
    }
    if (ok && p->awq) {
        st->attn_abs = calloc(L * C, sizeof(double));
        st->o_abs = calloc(L * Q, sizeof(double));
        st->mlp_abs = calloc(L * C, sizeof(double));
        st->down_abs = calloc(L * F, sizeof(double));
        ok = st->attn_abs && st->o_abs && st->mlp_abs && st->down_abs;
    }
    int32_t *win = malloc(sizeof(int32_t) * (size_t)p->calib_ctx);
    ftq_session *s = NULL;
    rc = !ok || !win ? ftq_set_error(FTQ_ENOMEM, "cannot calibrate: out of memory for the activation statistics")
                     : ftq_session_new(m, p->calib_ctx, &s);
    if (rc == FTQ_OK) {
        st->last_layer = c->n_layers - 1;
        s->stats = st;
        for (size_t w = 0; w < n_win && rc == FTQ_OK; w++) {
            window(p, per, w, win);
            ftq_session_reset(s);
            rc = ftq_session_eval(s, win, p->calib_ctx, NULL, 0);
        }
        s->stats = NULL;
    }
    ftq_session_free(s);
    free(win);
    if (rc != FTQ_OK)
        ftq_qcalib_stats_free(st);
    return rc;
}

/* ---- mixed precision ---------------------------------------------------------------------- */

static double lse(const float *r, int V)
{
    float mx = r[0];
    for (int i = 1; i < V; i++)
        mx = r[i] > mx ? r[i] : mx;
    double s = 0;
    for (int i = 0; i < V; i++)
        s += exp((double)r[i] - mx);
    return log(s) + mx;
}

/* Mean KL(P_ref || P) over rows [1, T) (row 0 follows BOS alone) of two [T, V] logit sets. */
static double mean_kl(const float *ref, const float *got, int T, int V)
{
    double tot = 0;
    for (int t = 1; t < T; t++) {
        const float *a = ref + (size_t)t * V, *b = got + (size_t)t * V;
        double la = lse(a, V), lb = lse(b, V), kl = 0;
        for (int i = 0; i < V; i++) {
            double pa = (double)a[i] - la;
            kl += exp(pa) * (pa - ((double)b[i] - lb));
        }
        tot += kl > 0 ? kl : 0;
    }
    return T > 1 ? tot / (T - 1) : 0;
}

/* The model tensors of block l stored under `name` (GPT-2's c_attn: q, k and v). */
static int block_tensors(ftq_model *m, int l, const char *name, ftq_tensor **out)
{
    ftq_layer_weights *L = &m->layers[l];
    ftq_tensor *lw[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    int n = 0;
    for (size_t i = 0; i < sizeof lw / sizeof lw[0]; i++)
        if (lw[i]->data && lw[i]->name && strcmp(lw[i]->name, name) == 0)
            out[n++] = lw[i];
    return n;
}

typedef struct {
    size_t job;
    double gain; /* sensitivity per extra bit */
} upgrade;

static int by_gain_desc(const void *a, const void *b)
{
    const upgrade *x = a, *y = b;
    if (x->gain != y->gain)
        return x->gain > y->gain ? -1 : 1;
    return x->job < y->job ? -1 : x->job > y->job;
}

/* The sensitivities a previous mixed-precision output recorded (FTQ_QUANT_KEY_CALIB's
 * "sensitivity"), onto the jobs, after checking that they were measured the same way:
 * the same calibration file name, tokens (windows x context), context, BOS, AWQ or not,
 * and int4 scheme. */
static int cached_sensitivity(const ftq_quantize_params *p, int64_t tokens, ftq_qjobs *js)
{
    const char *dir = p->sensitivity_from;
    ftq_checkpoint *ck = NULL;
    int rc = ftq_checkpoint_open(dir, &ck);
    if (rc != FTQ_OK)
        return ftq_wrap_error(rc, "cannot read sensitivities from '%s'", dir);
    const char *meta = ftq_checkpoint_nfiles(ck) ? ftq_st_metadata_get(ftq_checkpoint_file(ck, 0), FTQ_QUANT_KEY_CALIB)
                                                 : NULL;
    cJSON *c = meta ? cJSON_Parse(meta) : NULL;
    const cJSON *sens = cJSON_GetObjectItemCaseSensitive(c, "sensitivity");
    const cJSON *file = cJSON_GetObjectItemCaseSensitive(c, "file"), *tok = cJSON_GetObjectItemCaseSensitive(c, "tokens");
    const cJSON *ctx = cJSON_GetObjectItemCaseSensitive(c, "ctx"), *bos = cJSON_GetObjectItemCaseSensitive(c, "bos");
    const cJSON *awq = cJSON_GetObjectItemCaseSensitive(c, "awq"), *sch = cJSON_GetObjectItemCaseSensitive(c, "sensitivity_scheme");
    char lab[24];
    ftq_qcalib_sens_label(p, lab, sizeof lab);
    if (!cJSON_IsObject(sens) || !cJSON_IsString(file) || !cJSON_IsNumber(tok) || !cJSON_IsNumber(ctx) ||
        !cJSON_IsBool(bos) || !cJSON_IsBool(awq) || !cJSON_IsString(sch))
        rc = ftq_set_error(FTQ_EFORMAT, "cannot read sensitivities from '%s': it records none (quantize with --bits "
                           "first)", dir);
    else if (strcmp(file->valuestring, p->calib_name ? p->calib_name : "") != 0 || (int64_t)tok->valuedouble != tokens ||
             ctx->valueint != p->calib_ctx || cJSON_IsTrue(bos) != (p->calib_bos >= 0) ||
             cJSON_IsTrue(awq) != (p->awq != 0) || strcmp(sch->valuestring, lab) != 0)
        rc = ftq_set_error(FTQ_EINVAL, "cannot reuse the sensitivities of '%s': measured on '%s' (%d tokens, ctx %d, "
                           "%s, %s), not this calibration and scheme", dir, file->valuestring, (int)tok->valuedouble,
                           ctx->valueint, cJSON_IsTrue(awq) ? "awq" : "no awq", sch->valuestring);
    for (size_t i = 0; i < js->n && rc == FTQ_OK; i++) {
        ftq_qjob *j = &js->j[i];
        if (j->layer < 0 || !j->quantize)
            continue;
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(sens, j->name);
        if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0))
            rc = ftq_set_error(FTQ_EFORMAT, "cannot reuse the sensitivities of '%s': none recorded for '%s'", dir,
                               j->name);
        else
            j->sensitivity = v->valuedouble;
    }
    cJSON_Delete(c);
    ftq_checkpoint_close(ck);
    return rc;
}

/* j's sensitivity: the mean KL from ref on win with only j's layer int4 (importance search). */
static int measure(ftq_model *m, ftq_session *s, ftq_qjob *j, const int32_t *win, int T, const float *ref, float *got)
{
    int rc = FTQ_OK;
    ftq_tensor *ts[3];
    int nt = block_tensors(m, j->layer, j->name, ts);
    void *saved[3];
    float *buf[3] = {NULL, NULL, NULL};
    for (int k = 0; k < nt && rc == FTQ_OK; k++) {
        int rows = (int)ts[k]->shape[0], cols = (int)ts[k]->shape[1];
        ftq_qtensor q;
        buf[k] = malloc(sizeof(float) * (size_t)rows * cols);
        if (!buf[k]) {
            rc = ftq_set_error(FTQ_ENOMEM, "cannot plan mixed precision: out of memory");
            break;
        }
        rc = ftq_qtensor_quantize_weighted(&q, ts[k]->data, rows, cols, &j->qp, j->imp);
        if (rc != FTQ_OK) {
            rc = ftq_wrap_error(rc, "cannot quantize tensor '%s'", j->name);
            break;
        }
        ftq_qtensor_dequantize(&q, buf[k]);
        ftq_qtensor_free(&q);
    }
    for (int k = 0; k < nt && rc == FTQ_OK; k++) {
        saved[k] = ts[k]->data;
        ts[k]->data = buf[k];
    }
    if (rc == FTQ_OK) {
        ftq_session_reset(s);
        rc = ftq_session_eval(s, win, T, got, 1);
        for (int k = 0; k < nt; k++)
            ts[k]->data = saved[k];
    }
    for (int k = 0; k < nt; k++)
        free(buf[k]);
    if (rc == FTQ_OK)
        j->sensitivity = mean_kl(ref, got, T, m->cfg.vocab_size);
    return rc;
}

int ftq_qcalib_plan(ftq_model *m, const ftq_quantize_params *p, ftq_qjobs *js)
{
    int per = 0;
    size_t n_win = 0;
    int rc = check_calib(m, p, &per, &n_win);
    if (rc != FTQ_OK)
        return rc;
    /* one window of at most SENS_TOKENS: 7 L forward passes must stay cheap, and the KL of
     * every layer is measured on the same tokens, so only their ranking matters */
    enum { SENS_TOKENS = 256 };
    const int T = p->calib_ctx < SENS_TOKENS ? p->calib_ctx : SENS_TOKENS, V = m->cfg.vocab_size;
    float *ref = malloc(sizeof(float) * (size_t)T * V), *got = malloc(sizeof(float) * (size_t)T * V);
    int32_t *win = malloc(sizeof(int32_t) * (size_t)p->calib_ctx);
    upgrade *up = malloc(sizeof(upgrade) * (js->n ? js->n : 1));
    ftq_session *s = NULL;
    const int cached = p->sensitivity_from != NULL;
    rc = !ref || !got || !win || !up ? ftq_set_error(FTQ_ENOMEM, "cannot plan mixed precision: out of memory")
         : cached                    ? cached_sensitivity(p, (int64_t)n_win * p->calib_ctx, js)
                                     : ftq_session_new(m, T, &s);
    /* the sensitivity window: the last calibration window (any would do) */
    if (rc == FTQ_OK && !cached) {
        window(p, per, n_win - 1, win);
        rc = ftq_session_eval(s, win, T, ref, 1);
    }
    size_t n_up = 0;
    double total_bits = 0, total_w = 0;
    int n_lin = 0;
    for (size_t i = 0; i < js->n; i++)
        n_lin += js->j[i].layer >= 0 && js->j[i].quantize;
    for (size_t i = 0; i < js->n && rc == FTQ_OK; i++) {
        ftq_qjob *j = &js->j[i];
        if (j->layer < 0 || !j->quantize)
            continue;
        if (!cached)
            rc = measure(m, s, j, win, T, ref, got);
        if (rc != FTQ_OK)
            break;
        double numel = (double)j->rows * j->cols;
        ftq_quant_params q8 = j->qp;
        q8.scheme = FTQ_QSCHEME_Q8;
        q8.group = 32;
        double extra = numel * (ftq_qcalib_bits(&q8, j->cols) - ftq_qcalib_bits(&j->qp, j->cols));
        up[n_up++] = (upgrade){i, extra > 0 ? j->sensitivity / extra : 0};
        total_bits += numel * ftq_qcalib_bits(&j->qp, j->cols);
        total_w += numel;
        if (p->progress)
            p->progress(p->progress_user, (int)n_up, n_lin, j->name);
    }
    if (rc == FTQ_OK && total_w > 0 && total_bits / total_w > p->target_bits)
        rc = ftq_set_error(FTQ_EINVAL, "cannot plan mixed precision: --bits %g is below the int4 layers' own %.3f "
                                       "bits per weight", p->target_bits, total_bits / total_w);
    if (rc == FTQ_OK && p->kquant) {
        rc = ftq_qkplan_greedy(p, js, total_bits, total_w);
    } else if (rc == FTQ_OK) {
        qsort(up, n_up, sizeof *up, by_gain_desc);
        for (size_t k = 0; k < n_up; k++) {
            ftq_qjob *j = &js->j[up[k].job];
            ftq_quant_params q8 = j->qp;
            q8.scheme = FTQ_QSCHEME_Q8;
            q8.group = 32;
            double numel = (double)j->rows * j->cols;
            double nb = total_bits + numel * (ftq_qcalib_bits(&q8, j->cols) - ftq_qcalib_bits(&j->qp, j->cols));
            if (nb / total_w <= p->target_bits + 1e-9) { /* skip what does not fit; smaller ones may */
                total_bits = nb;
                j->qp = q8;
            }
        }
    }
    ftq_session_free(s);
    free(ref);
    free(got);
    free(win);
    free(up);
    return rc;
}
