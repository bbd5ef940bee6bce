/* test_tmodel.c - the trainable model (finetune/tmodel*.c) and AdamW (finetune/optim.c):
 * loss and gradients of the tiny random GPT-2 / Llama against torch float64 goldens; the
 * classification head against double-precision finite differences; frozen and head modes;
 * save / reload round trips (classifier checkpoints through ftq_model_load and
 * ftq_model_classify); determinism; AdamW against a double-precision reference. */
#include <stdlib.h>
#include <string.h>

#include "finetune/tmodel.h"
#include "tests/test_util.h"

#define GPT2_DIR "golden/gpt2_tiny_random"
#define LLAMA_DIR "golden/llama_tiny_random"

static ftq_tmodel *tmodel(const ftq_model *m, const ftq_tmodel_params *p)
{
    ftq_tmodel *tm = NULL;
    int rc = ftq_tmodel_new(m, p, &tm);
    if (rc != FTQ_OK)
        fprintf(stderr, "\n  ftq_tmodel_new: %s\n", ftq_last_error());
    CU_ASSERT_EQUAL(rc, FTQ_OK);
    return tm;
}

/* The trainable segment named `name`, or NULL. */
static const ftq_param_segment *find_seg(const ftq_tmodel *tm, const char *name)
{
    for (size_t i = 0; i < ftq_tmodel_segment_count(tm); i++) {
        const ftq_param_segment *s = ftq_tmodel_segment(tm, i);
        if (strcmp(s->name, name) == 0)
            return s;
    }
    return NULL;
}

static const float *seg_grad(ftq_tmodel *tm, const ftq_param_segment *s)
{
    return ftq_tmodel_grad_buffer(tm, NULL) + (s->offset - ftq_tmodel_trainable_offset(tm));
}

/* ---- golden loss and gradients --------------------------------------------------------------- */

/* HF CausalLM loss of one prompt (targets = ids shifted by one, last position unscored)
 * and the gradient of every tensor vs torch float64 autograd: loss, each Frobenius norm
 * and the two full gradient vectors within 1e-3 relative. For the full vectors the
 * tolerance per entry is 1e-3 |want| + 1e-6 max|want|: GPT-2's c_attn.bias has a k part
 * that is exactly 0 in exact arithmetic (softmax is shift invariant) and ~1e-20 in the
 * golden; float rounding leaves ~1e-9 there. */
static void golden_case(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/golden_loss_grads.json", dir);
    ftq_model *m = test_load_model(shared_path(dir));
    cJSON *j = load_json(shared_path(path));
    ftq_tmodel *tm = NULL;
    int32_t *ids = NULL, *tg = NULL;
    if (!m || !j)
        goto done;
    size_t n;
    ids = json_ints(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "prompt"), "ids"), &n);
    tg = malloc(sizeof(int32_t) * n);
    for (size_t i = 0; i < n; i++)
        tg[i] = i + 1 < n ? ids[i + 1] : FTQ_IGNORE_INDEX;
    ftq_tmodel_params p = ftq_tmodel_default_params();
    p.max_batch = 1;
    p.max_seq = (int)n;
    tm = tmodel(m, &p);
    if (!tm)
        goto done;
    float loss = 0.0f;
    ftq_tmodel_zero_grad(tm);
    ASSERT_OK(ftq_tmodel_forward(tm, ids, NULL, 1, (int)n, tg, &loss, NULL));
    ASSERT_OK(ftq_tmodel_backward(tm, 1.0f));
    double want = cJSON_GetObjectItem(j, "loss")->valuedouble;
    double worst = fabs(loss - want) / want;
    ASSERT_NEAR(loss, want, 1e-3 * want);

    const cJSON *gn = cJSON_GetObjectItem(j, "grad_norms"), *it;
    int count = 0;
    cJSON_ArrayForEach(it, gn)
    {
        const ftq_param_segment *s = find_seg(tm, it->string);
        if (!s) {
            fprintf(stderr, "\n  no segment '%s'\n", it->string);
            CU_FAIL("segment missing");
            continue;
        }
        const float *g = seg_grad(tm, s);
        double ss = 0.0;
        for (size_t i = 0; i < s->size; i++)
            ss += (double)g[i] * g[i];
        double got = sqrt(ss), e = it->valuedouble, rel = fabs(got - e) / e;
        if (rel > worst)
            worst = rel;
        if (!(rel <= 1e-3))
            fprintf(stderr, "\n  %s: |grad| %.9g, expected %.9g\n", it->string, got, e);
        CU_ASSERT(rel <= 1e-3);
        count++;
    }
    ASSERT_INT_EQ(count, ftq_tmodel_segment_count(tm)); /* every tensor has a golden norm */

    cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "full_grads"))
    {
        const ftq_param_segment *s = find_seg(tm, it->string);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        size_t nv;
        double *v = json_doubles(cJSON_GetObjectItem(it, "values"), &nv);
        ASSERT_INT_EQ(nv, s->size);
        const float *g = seg_grad(tm, s);
        double vmax = 0.0;
        for (size_t i = 0; i < nv; i++)
            vmax = fabs(v[i]) > vmax ? fabs(v[i]) : vmax;
        int bad = 0;
        for (size_t i = 0; i < nv && i < s->size; i++) {
            double d = fabs(g[i] - v[i]), rel = d / (fabs(v[i]) + 1e-3 * vmax);
            if (rel > worst)
                worst = rel;
            if (!(d <= 1e-3 * fabs(v[i]) + 1e-6 * vmax) && bad++ < 3)
                fprintf(stderr, "\n  %s[%zu] = %.9g, expected %.9g\n", it->string, i, g[i], v[i]);
        }
        CU_ASSERT(bad == 0);
        free(v);
    }
    fprintf(stderr, "[max rel err %.2e] ", worst);
done:
    free(ids);
    free(tg);
    ftq_tmodel_free(tm);
    cJSON_Delete(j);
    ftq_model_free(m);
}

static void test_golden_gpt2(void) { golden_case(GPT2_DIR); }
static void test_golden_llama(void) { golden_case(LLAMA_DIR); }

/* ---- a double-precision reference of the whole model -------------------------------------- */

/* The HF forward (Llama / GPT-2, LM or sequence classification) in double, reading a double
 * copy of the flat parameter buffer through the tmodel's own views (so a finite difference
 * perturbs exactly one parameter), sequence by sequence. Returns the mean loss. */
typedef struct {
    const ftq_tmodel *tm;
    double *pd;
    const int32_t *ids, *lengths, *targets;
    int B, T;
} ref_ctx;

static const double *rv(const ref_ctx *r, const float *view)
{
    return view ? r->pd + (view - r->tm->params) : NULL;
}

static void rlin(double *y, const double *x, const double *W, const double *b, int T, int in, int out)
{
    for (int t = 0; t < T; t++)
        for (int o = 0; o < out; o++) {
            double s = b ? b[o] : 0.0;
            for (int i = 0; i < in; i++)
                s += x[(size_t)t * in + i] * W[(size_t)o * in + i];
            y[(size_t)t * out + o] = s;
        }
}

static void rnorm(const ref_ctx *r, double *y, const double *x, const double *w, const double *b, int T)
{
    const ftq_model_config *c = &r->tm->cfg;
    int C = c->hidden_size, ln = c->arch == FTQ_ARCH_GPT2;
    for (int t = 0; t < T; t++) {
        const double *xt = x + (size_t)t * C;
        double m = 0.0, v = 0.0;
        if (ln) {
            for (int i = 0; i < C; i++)
                m += xt[i];
            m /= C;
        }
        for (int i = 0; i < C; i++)
            v += (xt[i] - m) * (xt[i] - m);
        double rs = 1.0 / sqrt(v / C + (double)c->norm_eps);
        for (int i = 0; i < C; i++)
            y[(size_t)t * C + i] = (xt[i] - m) * rs * w[i] + (b ? b[i] : 0.0);
    }
}

static double rce(const double *x, int n, int target)
{
    double m = x[0], z = 0.0;
    for (int j = 1; j < n; j++)
        m = x[j] > m ? x[j] : m;
    for (int j = 0; j < n; j++)
        z += exp(x[j] - m);
    return log(z) + m - x[target];
}

static double ref_loss(void *p)
{
    const ref_ctx *r = p;
    const ftq_tmodel *tm = r->tm;
    const ftq_model_config *c = &tm->cfg;
    const int T = r->T, C = c->hidden_size, F = c->intermediate_size, H = c->n_heads, KV = c->n_kv_heads;
    const int hd = c->head_dim, Q = H * hd, K = KV * hd, QKV = Q + 2 * K, V = c->vocab_size;
    const int llama = c->arch == FTQ_ARCH_LLAMA, FC = llama ? 2 * F : F;
    double *x = calloc((size_t)T * C, sizeof(double)), *h = calloc((size_t)T * C, sizeof(double));
    double *qkv = calloc((size_t)T * QKV, sizeof(double)), *y = calloc((size_t)T * Q, sizeof(double));
    double *o = calloc((size_t)T * C, sizeof(double)), *fc = calloc((size_t)T * FC, sizeof(double));
    double *a = calloc((size_t)T * F, sizeof(double)), *s = calloc((size_t)T, sizeof(double));
    double *lg = calloc((size_t)(V > tm->NL ? V : tm->NL), sizeof(double));
    double total = 0.0;
    int scored = 0;
    for (int b = 0; b < r->B; b++) {
        const int32_t *ids = r->ids + (size_t)b * T;
        for (int t = 0; t < T; t++)
            for (int i = 0; i < C; i++)
                x[(size_t)t * C + i] = rv(r, tm->w.wte)[(size_t)ids[t] * C + i] +
                                       (tm->w.wpe ? rv(r, tm->w.wpe)[(size_t)t * C + i] : 0.0);
        for (int l = 0; l < c->n_layers; l++) {
            const ftq_tblock *w = &tm->w.blocks[l];
            rnorm(r, h, x, rv(r, w->norm1_w), rv(r, w->norm1_b), T);
            rlin(qkv, h, rv(r, w->wqkv), rv(r, w->bqkv), T, C, QKV);
            if (llama)
                for (int t = 0; t < T; t++)
                    for (int hh = 0; hh < H + KV; hh++) {
                        double *v = qkv + (size_t)t * QKV + (size_t)hh * hd;
                        for (int i = 0; i < hd / 2; i++) {
                            double ang = t * pow((double)c->rope_theta, -2.0 * i / hd);
                            double x0 = v[i], x1 = v[i + hd / 2];
                            v[i] = x0 * cos(ang) - x1 * sin(ang);
                            v[i + hd / 2] = x1 * cos(ang) + x0 * sin(ang);
                        }
                    }
            for (int hh = 0; hh < H; hh++) {
                int kc = Q + (hh / (H / KV)) * hd, vc = kc + K;
                for (int t = 0; t < T; t++) {
                    double m = -INFINITY, z = 0.0;
                    for (int j = 0; j <= t; j++) {
                        double d = 0.0;
                        for (int i = 0; i < hd; i++)
                            d += qkv[(size_t)t * QKV + hh * hd + i] * qkv[(size_t)j * QKV + kc + i];
                        s[j] = d / sqrt((double)hd);
                        m = s[j] > m ? s[j] : m;
                    }
                    for (int j = 0; j <= t; j++)
                        z += (s[j] = exp(s[j] - m));
                    for (int i = 0; i < hd; i++) {
                        double acc = 0.0;
                        for (int j = 0; j <= t; j++)
                            acc += s[j] / z * qkv[(size_t)j * QKV + vc + i];
                        y[(size_t)t * Q + hh * hd + i] = acc;
                    }
                }
            }
            rlin(o, y, rv(r, w->wo), rv(r, w->bo), T, Q, C);
            for (size_t i = 0; i < (size_t)T * C; i++)
                x[i] += o[i];
            rnorm(r, h, x, rv(r, w->norm2_w), rv(r, w->norm2_b), T);
            rlin(fc, h, rv(r, w->w_fc), rv(r, w->b_fc), T, C, FC);
            for (int t = 0; t < T; t++)
                for (int i = 0; i < F; i++) {
                    double g = fc[(size_t)t * FC + i];
                    if (llama)
                        a[(size_t)t * F + i] = g / (1.0 + exp(-g)) * fc[(size_t)t * FC + F + i];
                    else if (c->act == FTQ_ACT_GELU)
                        a[(size_t)t * F + i] = 0.5 * g * (1.0 + erf(g / sqrt(2.0)));
                    else if (c->act == FTQ_ACT_RELU)
                        a[(size_t)t * F + i] = g > 0.0 ? g : 0.0;
                    else
                        a[(size_t)t * F + i] = 0.5 * g * (1.0 + tanh(sqrt(2.0 / M_PI) * (g + 0.044715 * g * g * g)));
                }
            rlin(o, a, rv(r, w->w_down), rv(r, w->b_down), T, F, C);
            for (size_t i = 0; i < (size_t)T * C; i++)
                x[i] += o[i];
        }
        rnorm(r, h, x, rv(r, tm->w.normf_w), rv(r, tm->w.normf_b), T);
        if (tm->p.task == FTQ_TASK_CLASSIFY) {
            int row = (r->lengths ? r->lengths[b] : T) - 1;
            rlin(lg, h + (size_t)row * C, rv(r, tm->w.score), NULL, 1, C, tm->NL);
            if (r->targets[b] >= 0) {
                total += rce(lg, tm->NL, r->targets[b]);
                scored++;
            }
        } else {
            const double *lm = rv(r, tm->w.lm_head ? tm->w.lm_head : tm->w.wte);
            for (int t = 0; t < T; t++) {
                int tg = r->targets[(size_t)b * T + t];
                if (tg < 0)
                    continue;
                rlin(lg, h + (size_t)t * C, lm, NULL, 1, C, V);
                total += rce(lg, V, tg);
                scored++;
            }
        }
    }
    free(x);
    free(h);
    free(qkv);
    free(y);
    free(o);
    free(fc);
    free(a);
    free(s);
    free(lg);
    return total / scored;
}

/* Gradient of every trainable tensor at `per_seg` sampled entries (all entries of tensors
 * up to 256 floats; embedding rows of the tokens in the batch) against central differences
 * of ref_loss, h = 1e-5. Per tensor: max |analytic - FD| <= 1e-3 max |FD| + 1e-7. */
static void fd_model(ftq_tmodel *tm, const int32_t *ids, const int32_t *lengths, int B, int T,
                     const int32_t *targets, int per_seg, const char *what)
{
    size_t n;
    float *params = ftq_tmodel_param_buffer(tm, &n);
    const float *grads = ftq_tmodel_grad_buffer(tm, NULL);
    size_t off = ftq_tmodel_trainable_offset(tm);
    ref_ctx r = {tm, malloc(sizeof(double) * n), ids, lengths, targets, B, T};
    for (size_t i = 0; i < n; i++)
        r.pd[i] = params[i];
    float loss = 0.0f;
    ftq_tmodel_zero_grad(tm);
    ASSERT_OK(ftq_tmodel_forward(tm, ids, lengths, B, T, targets, &loss, NULL));
    ASSERT_OK(ftq_tmodel_backward(tm, 1.0f));
    double want = ref_loss(&r);
    ASSERT_NEAR(loss, want, 2e-5 * (1.0 + fabs(want)));
    ftq_rng rng;
    ftq_rng_seed(&rng, 77);
    double worst = 0.0;
    const int C = ftq_tmodel_config(tm)->hidden_size;
    for (size_t si = 0; si < ftq_tmodel_segment_count(tm); si++) {
        const ftq_param_segment *s = ftq_tmodel_segment(tm, si);
        int all = s->size <= 256, emb = strstr(s->name, "embed_tokens") || strstr(s->name, "wte");
        int cnt = all ? (int)s->size : per_seg;
        double scale = 0.0, err = 0.0;
        for (int k = 0; k < cnt; k++) {
            size_t idx = all ? (size_t)k : (size_t)(ftq_rng_u64(&rng) % s->size);
            if (emb && !all)
                idx = (size_t)ids[ftq_rng_u64(&rng) % (uint64_t)(B * T)] * C + ftq_rng_u64(&rng) % (uint64_t)C;
            size_t pi = s->offset + idx;
            double x0 = r.pd[pi];
            r.pd[pi] = x0 + 1e-5;
            double lp = ref_loss(&r);
            r.pd[pi] = x0 - 1e-5;
            double lm = ref_loss(&r);
            r.pd[pi] = x0;
            double fd = (lp - lm) / 2e-5, g = grads[pi - off];
            scale = fabs(fd) > scale ? fabs(fd) : scale;
            err = fabs(g - fd) > err ? fabs(g - fd) : err;
        }
        double q = err / (1e-3 * scale + 1e-7);
        if (q > worst)
            worst = q;
        if (!(q <= 1.0))
            fprintf(stderr, "\n  %s: %s: max |analytic - FD| %.3g, max |FD| %.3g\n", what, s->name, err, scale);
        CU_ASSERT(q <= 1.0);
    }
    fprintf(stderr, "[%s: worst %.3g of tolerance] ", what, worst);
    free(r.pd);
}

/* The classification head end to end: B = 3 right-padded rows of different lengths (pooled
 * at lengths[b] - 1), a new 3-label head, Llama (GQA, RMSNorm, RoPE) and GPT-2. */
static void classify_fd_case(const char *dir)
{
    ftq_model *m = test_load_model(shared_path(dir));
    if (!m)
        return;
    ftq_tmodel_params p = ftq_tmodel_default_params();
    p.task = FTQ_TASK_CLASSIFY;
    p.num_labels = 3;
    p.max_batch = 3;
    p.max_seq = 7;
    p.seed = 5;
    ftq_tmodel *tm = tmodel(m, &p);
    if (tm) {
        int32_t ids[21] = {1, 17, 300, 45, 9, 88, 200, 1, 52, 7, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0};
        int32_t lengths[3] = {7, 3, 1}, labels[3] = {2, 0, 1};
        fd_model(tm, ids, lengths, 3, 7, labels, 12, dir);
        /* the padding does not matter: other pad ids, same loss */
        float l1, l2;
        ASSERT_OK(ftq_tmodel_forward(tm, ids, lengths, 3, 7, labels, &l1, NULL));
        for (int i = 10; i < 21; i++)
            ids[i] = 400 + i;
        ids[14] = 3;
        ASSERT_OK(ftq_tmodel_forward(tm, ids, lengths, 3, 7, labels, &l2, NULL));
        CU_ASSERT(l1 == l2);
    }
    ftq_tmodel_free(tm);
    ftq_model_free(m);
}

static void test_classify_fd_llama(void) { classify_fd_case(LLAMA_DIR); }
static void test_classify_fd_gpt2(void) { classify_fd_case(GPT2_DIR); }

/* LM with B = 2 and ignored targets (padding, prompt masking) against the reference. */
static void test_lm_fd_batch(void)
{
    ftq_model *m = test_load_model(shared_path(LLAMA_DIR));
    if (!m)
        return;
    ftq_tmodel_params p = ftq_tmodel_default_params();
    p.max_batch = 2;
    p.max_seq = 6;
    ftq_tmodel *tm = tmodel(m, &p);
    if (tm) {
        int32_t ids[12] = {1, 403, 407, 261, 378, 11, 1, 99, 100, 101, 0, 0};
        int32_t tg[12] = {403, 407, 261, 378, 11, FTQ_IGNORE_INDEX, FTQ_IGNORE_INDEX, 100, 101, 0, FTQ_IGNORE_INDEX,
                          FTQ_IGNORE_INDEX};
        fd_model(tm, ids, NULL, 2, 6, tg, 8, "llama lm");
    }
    ftq_tmodel_free(tm);
    ftq_model_free(m);
}

/* ---- frozen and head modes ------------------------------------------------------------------ */

/* One AdamW step over the trainable suffix with every segment's decay flag. */
static void adamw_step(ftq_tmodel *tm, float *m1, float *m2, int64_t step)
{
    ftq_adamw_params ap = {0.9f, 0.999f, 1e-8f, 0.01f};
    float *params = ftq_tmodel_param_buffer(tm, NULL);
    float *grads = ftq_tmodel_grad_buffer(tm, NULL);
    size_t off = ftq_tmodel_trainable_offset(tm);
    for (size_t i = 0; i < ftq_tmodel_segment_count(tm); i++) {
        const ftq_param_segment *s = ftq_tmodel_segment(tm, i);
        size_t o = s->offset - off;
        ftq_adamw_update(params + s->offset, grads + o, m1 + o, m2 + o, s->size, 1e-3f, &ap, step, s->decay);
    }
}

/* Forward + backward of `tm` on a fixed LM or classify batch. */
static void run_batch(ftq_tmodel *tm, int classify)
{
    static const int32_t ids[12] = {1, 403, 407, 261, 378, 11, 1, 99, 100, 101, 7, 8};
    static const int32_t tg[12] = {403, 407, 261, 378, 11, FTQ_IGNORE_INDEX, 99, 100, 101, 7, 8, 9};
    static const int32_t lengths[2] = {6, 4}, labels[2] = {1, 0};
    float loss;
    ftq_tmodel_zero_grad(tm);
    ASSERT_OK(ftq_tmodel_forward(tm, ids, classify ? lengths : NULL, 2, 6, classify ? labels : tg, &loss, NULL));
    ASSERT_OK(ftq_tmodel_backward(tm, 1.0f));
}

/* Mode frozen K / head against mode full on the same batch: the trainable suffix starts
 * where the layout says, its gradients are bit-identical to the full model's (the frozen
 * blocks run the same kernels, only without stored activations), and after an AdamW step
 * the frozen prefix of the parameter buffer is bit-identical to before. */
static void frozen_case(const char *dir, ftq_task task, ftq_train_mode mode, int K, const char *first_name,
                        size_t want_segments)
{
    ftq_model *m = test_load_model(shared_path(dir));
    if (!m)
        return;
    ftq_tmodel_params p = ftq_tmodel_default_params();
    p.task = task;
    p.num_labels = task == FTQ_TASK_CLASSIFY ? 2 : 0;
    p.max_batch = 2;
    p.max_seq = 6;
    ftq_tmodel *full = tmodel(m, &p);
    p.mode = mode;
    p.freeze_layers = K;
    ftq_tmodel *fz = tmodel(m, &p);
    if (!full || !fz)
        goto done;
    size_t n, nf, ntr;
    float *pf = ftq_tmodel_param_buffer(full, &nf), *pz = ftq_tmodel_param_buffer(fz, &n);
    ASSERT_INT_EQ(n, nf);
    CU_ASSERT(memcmp(pf, pz, n * sizeof(float)) == 0);
    const float *gz = ftq_tmodel_grad_buffer(fz, &ntr);
    size_t off = ftq_tmodel_trainable_offset(fz);
    ASSERT_INT_EQ(off + ntr, n);
    CU_ASSERT_STRING_EQUAL(ftq_tmodel_segment(fz, 0)->name, first_name);
    ASSERT_INT_EQ(ftq_tmodel_segment(fz, 0)->offset, off);
    ASSERT_INT_EQ(ftq_tmodel_segment_count(fz), want_segments);
    int classify = task == FTQ_TASK_CLASSIFY;
    run_batch(full, classify);
    run_batch(fz, classify);
    CU_ASSERT(memcmp(gz, ftq_tmodel_grad_buffer(full, NULL) + off, ntr * sizeof(float)) == 0);

    float *before = malloc(n * sizeof(float));
    memcpy(before, pz, n * sizeof(float));
    float *m1 = calloc(ntr, sizeof(float)), *m2 = calloc(ntr, sizeof(float));
    adamw_step(fz, m1, m2, 1);
    CU_ASSERT(memcmp(before, pz, off * sizeof(float)) == 0);
    CU_ASSERT(memcmp(before + off, pz + off, ntr * sizeof(float)) != 0);
    free(before);
    free(m1);
    free(m2);
done:
    ftq_tmodel_free(full);
    ftq_tmodel_free(fz);
    ftq_model_free(m);
}

static void test_frozen(void)
{
    /* Llama LM, first block frozen: block 1 (9 tensors), norm, lm_head */
    frozen_case(LLAMA_DIR, FTQ_TASK_LM, FTQ_TRAIN_FROZEN, 1, "model.layers.1.input_layernorm.weight", 11);
    /* K = 0: only the embedding is frozen */
    frozen_case(LLAMA_DIR, FTQ_TASK_LM, FTQ_TRAIN_FROZEN, 0, "model.layers.0.input_layernorm.weight", 20);
    /* GPT-2 tied, every block frozen: the output layer is the frozen wte, ln_f trains */
    frozen_case(GPT2_DIR, FTQ_TASK_LM, FTQ_TRAIN_FROZEN, 2, "transformer.ln_f.weight", 2);
    /* classify with one frozen block */
    frozen_case(GPT2_DIR, FTQ_TASK_CLASSIFY, FTQ_TRAIN_FROZEN, 1, "transformer.h.1.ln_1.weight", 15);
}

static void test_head(void)
{
    frozen_case(LLAMA_DIR, FTQ_TASK_CLASSIFY, FTQ_TRAIN_HEAD, 0, "score.weight", 1);
    frozen_case(GPT2_DIR, FTQ_TASK_CLASSIFY, FTQ_TRAIN_HEAD, 0, "score.weight", 1);
    ftq_model *m = test_load_model(shared_path(LLAMA_DIR));
    if (!m)
        return;
    ftq_tmodel_params p = ftq_tmodel_default_params();
    p.task = FTQ_TASK_CLASSIFY;
    p.num_labels = 4;
    p.mode = FTQ_TRAIN_HEAD;
    ftq_tmodel *tm = tmodel(m, &p);
    size_t n;
    ftq_tmodel_grad_buffer(tm, &n);
    ASSERT_INT_EQ(n, 4 * 64);
    ftq_tmodel_free(tm);
    /* head mode is for classification only; bad freeze counts */
    tm = NULL;
    p.task = FTQ_TASK_LM;
    CU_ASSERT_EQUAL(ftq_tmodel_new(m, &p, &tm), FTQ_EINVAL);
    p.mode = FTQ_TRAIN_FROZEN;
    p.freeze_layers = 3;
    CU_ASSERT_EQUAL(ftq_tmodel_new(m, &p, &tm), FTQ_EINVAL);
    CU_ASSERT_PTR_NULL(tm);
    ftq_model_free(m);
}

/* ---- save / load ------------------------------------------------------------------------------- */

/* Write config.json into dir: the checkpoint's config, as a sequence classifier with
 * `labels` names when labels != NULL. */
static void write_config(const char *src_dir, const char *dir, const char *arch, const char *const *labels, int nl)
{
    char *text = NULL;
    size_t len;
    char src[1024], dst[1024];
    snprintf(src, sizeof src, "%s/config.json", src_dir);
    snprintf(dst, sizeof dst, "%s/config.json", dir);
    ASSERT_OK(ftq_read_file(src, &text, &len));
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (arch) {
        cJSON_ReplaceItemInObject(j, "architectures", cJSON_CreateStringArray(&arch, 1));
        cJSON *map = cJSON_CreateObject();
        for (int i = 0; labels && i < nl; i++) {
            char k[16];
            snprintf(k, sizeof k, "%d", i);
            cJSON_AddStringToObject(map, k, labels[i]);
        }
        if (labels)
            cJSON_AddItemToObject(j, "id2label", map);
        else
            cJSON_Delete(map);
    }
    char *out = cJSON_Print(j);
    FILE *f = fopen(dst, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(out, f);
    fclose(f);
    free(out);
    cJSON_Delete(j);
}

/* An unmodified model saved by the tmodel reloads with identical logits; for GPT-2 (Conv1D
 * transposed back, c_attn re-concatenated, tied lm_head omitted) every tensor is byte for
 * byte the original. */
static void roundtrip_case(const char *dir, const char *tmpname)
{
    ftq_model *m = test_load_model(shared_path(dir));
    if (!m)
        return;
    ftq_tmodel_params p = ftq_tmodel_default_params();
    ftq_tmodel *tm = tmodel(m, &p);
    ftq_model *m2 = NULL;
    if (!tm)
        goto done;
    const char *tmp = test_tmpdir(tmpname);
    char out[1024];
    snprintf(out, sizeof out, "%s/model.safetensors", tmp);
    ASSERT_OK(ftq_tmodel_save_weights(tm, out));
    write_config(shared_path(dir), tmp, NULL, NULL, 0);
    m2 = test_load_model(tmp);
    if (!m2)
        goto done;
    const ftq_checkpoint *a = ftq_model_get_checkpoint(m), *b = ftq_model_get_checkpoint(m2);
    ASSERT_INT_EQ(ftq_checkpoint_count(b), ftq_checkpoint_count(a));
    int differ = 0;
    for (size_t i = 0; i < ftq_checkpoint_count(a); i++) {
        const ftq_tensor *ta = ftq_checkpoint_tensor(a, i), *tb = ftq_checkpoint_find(b, ta->name);
        if (!tb || tb->nbytes != ta->nbytes || tb->ndim != ta->ndim ||
            memcmp(tb->shape, ta->shape, sizeof ta->shape) != 0 || memcmp(ta->data, tb->data, ta->nbytes) != 0) {
            fprintf(stderr, "\n  tensor '%s' differs after the round trip\n", ta->name);
            differ++;
        }
    }
    ASSERT_INT_EQ(differ, 0);
    int32_t ids[6] = {1, 403, 407, 261, 378, 11};
    int V = ftq_model_get_config(m)->vocab_size;
    float *la = malloc(sizeof(float) * 6 * V), *lb = malloc(sizeof(float) * 6 * V);
    ftq_session *sa = NULL, *sb = NULL;
    ASSERT_OK(ftq_session_new(m, 6, &sa));
    ASSERT_OK(ftq_session_new(m2, 6, &sb));
    ASSERT_OK(ftq_session_eval(sa, ids, 6, la, 1));
    ASSERT_OK(ftq_session_eval(sb, ids, 6, lb, 1));
    CU_ASSERT(memcmp(la, lb, sizeof(float) * 6 * V) == 0);
    ftq_session_free(sa);
    ftq_session_free(sb);
    free(la);
    free(lb);
done:
    ftq_model_free(m2);
    ftq_tmodel_free(tm);
    ftq_model_free(m);
}

static void test_roundtrip_llama(void) { roundtrip_case(LLAMA_DIR, "tmodel_rt_llama"); }
static void test_roundtrip_gpt2(void) { roundtrip_case(GPT2_DIR, "tmodel_rt_gpt2"); }

/* A classifier trained a step, saved as HF's *ForSequenceClassification (backbone +
 * score.weight, no lm_head), reloads through ftq_model_load; ftq_model_classify gives the
 * tmodel's logits (to float rounding of the two code paths) for rows of every length; the
 * labels come back from id2label; a tmodel built from the checkpoint starts from its head. */
static void classifier_case(const char *dir, const char *arch, const char *tmpname)
{
    ftq_model *m = test_load_model(shared_path(dir));
    if (!m)
        return;
    ftq_tmodel_params p = ftq_tmodel_default_params();
    p.task = FTQ_TASK_CLASSIFY;
    p.num_labels = 3;
    p.max_batch = 2;
    p.max_seq = 6;
    ftq_tmodel *tm = tmodel(m, &p), *tm2 = NULL;
    ftq_model *m2 = NULL;
    ftq_session *s = NULL;
    char **names = NULL;
    int nn = 0;
    if (!tm)
        goto done;
    size_t ntr;
    ftq_tmodel_grad_buffer(tm, &ntr);
    float *m1 = calloc(ntr, sizeof(float)), *v1 = calloc(ntr, sizeof(float));
    run_batch(tm, 1);
    adamw_step(tm, m1, v1, 1);
    free(m1);
    free(v1);
    const char *tmp = test_tmpdir(tmpname);
    char out[1024];
    snprintf(out, sizeof out, "%s/model.safetensors", tmp);
    ASSERT_OK(ftq_tmodel_save_weights(tm, out));
    static const char *const labels[3] = {"negative", "neutral", "positive"};
    write_config(shared_path(dir), tmp, arch, labels, 3);
    m2 = test_load_model(tmp);
    if (!m2)
        goto done;
    const ftq_model_config *c2 = ftq_model_get_config(m2);
    CU_ASSERT(c2->is_classifier);
    ASSERT_INT_EQ(c2->num_labels, 3);
    ASSERT_INT_EQ(ftq_model_num_labels(m2), 3);
    ASSERT_INT_EQ(ftq_model_num_labels(m), 0);
    CU_ASSERT_PTR_NULL(ftq_checkpoint_find(ftq_model_get_checkpoint(m2), "lm_head.weight"));
    ASSERT_OK(ftq_config_load_labels(tmp, &names, &nn));
    ASSERT_INT_EQ(nn, 3);
    if (nn == 3)
        CU_ASSERT_STRING_EQUAL(names[2], "positive");

    int32_t ids[12] = {1, 403, 407, 261, 378, 11, 1, 99, 100, 0, 0, 0};
    int32_t lengths[2] = {6, 3};
    float lg[6], one[3];
    ASSERT_OK(ftq_tmodel_forward(tm, ids, lengths, 2, 6, NULL, NULL, lg));
    ASSERT_OK(ftq_session_new(m2, 6, &s));
    double worst = 0.0;
    for (int b = 0; b < 2; b++) {
        ASSERT_OK(ftq_model_classify(m2, s, ids + b * 6, lengths[b], one));
        for (int k = 0; k < 3; k++)
            worst = fmax(worst, fabs((double)one[k] - lg[b * 3 + k]));
    }
    fprintf(stderr, "[max |d logit| %.2g] ", worst);
    CU_ASSERT(worst <= 1e-5);
    /* LM logits need a language-model head, which a classifier does not have */
    float *lm = malloc(sizeof(float) * (size_t)c2->vocab_size);
    int rc = ftq_session_eval(s, ids, 1, lm, 0);
    CU_ASSERT(c2->tie_word_embeddings ? rc == FTQ_OK : rc == FTQ_EINVAL);
    free(lm);

    /* the checkpoint's head is used as it is */
    p.num_labels = 0;
    tm2 = tmodel(m2, &p);
    float lg2[6];
    if (tm2) {
        ASSERT_OK(ftq_tmodel_forward(tm2, ids, lengths, 2, 6, NULL, NULL, lg2));
        CU_ASSERT(memcmp(lg, lg2, sizeof lg) == 0);
        ftq_tmodel_free(tm2);
        tm2 = NULL;
    }
    p.num_labels = 5;
    CU_ASSERT_EQUAL(ftq_tmodel_new(m2, &p, &tm2), FTQ_EINVAL);
    /* no LM task on an untied classifier: there is no lm_head to train */
    p.task = FTQ_TASK_LM;
    p.num_labels = 0;
    rc = ftq_tmodel_new(m2, &p, &tm2);
    CU_ASSERT(c2->tie_word_embeddings ? rc == FTQ_OK : rc == FTQ_EINVAL);
done:
    ftq_free_strings(names, nn);
    ftq_session_free(s);
    ftq_tmodel_free(tm2);
    ftq_model_free(m2);
    ftq_tmodel_free(tm);
    ftq_model_free(m);
}

static void test_classifier_llama(void)
{
    classifier_case(LLAMA_DIR, "LlamaForSequenceClassification", "tmodel_cls_llama");
}
static void test_classifier_gpt2(void)
{
    classifier_case(GPT2_DIR, "GPT2ForSequenceClassification", "tmodel_cls_gpt2");
}

/* ---- determinism, chunking, init ------------------------------------------------------------------ */

/* Two identical forward + backward passes on 2 threads give bit-identical loss and
 * gradients (sgemm with a fixed thread count, no float atomics or OpenMP reductions). The
 * shape is large enough for the sgemm paths and several attention row blocks. */
static void test_determinism(void)
{
    const char *dirs[2] = {GPT2_DIR, LLAMA_DIR};
    int saved = ftq_get_threads();
    ftq_set_threads(2);
    for (int d = 0; d < 2; d++) {
        ftq_model *m = test_load_model(shared_path(dirs[d]));
        if (!m)
            continue;
        ftq_tmodel_params p = ftq_tmodel_default_params();
        p.max_batch = 2;
        p.max_seq = d ? 128 + 5 : 128; /* GPT-2 tiny has 128 positions */
        ftq_tmodel *tm = tmodel(m, &p);
        if (!tm) {
            ftq_model_free(m);
            continue;
        }
        int N = 2 * p.max_seq;
        int32_t *ids = malloc(sizeof(int32_t) * N), *tg = malloc(sizeof(int32_t) * N);
        ftq_rng r;
        ftq_rng_seed(&r, 9);
        for (int i = 0; i < N; i++) {
            ids[i] = (int32_t)(ftq_rng_u64(&r) % 500);
            tg[i] = i % 7 == 3 ? FTQ_IGNORE_INDEX : (int32_t)(ftq_rng_u64(&r) % 500);
        }
        size_t n;
        float *g = ftq_tmodel_grad_buffer(tm, &n), *g1 = malloc(n * sizeof(float)), l1, l2;
        ftq_tmodel_zero_grad(tm);
        ASSERT_OK(ftq_tmodel_forward(tm, ids, NULL, 2, p.max_seq, tg, &l1, NULL));
        ASSERT_OK(ftq_tmodel_backward(tm, 1.0f));
        memcpy(g1, g, n * sizeof(float));
        ftq_tmodel_zero_grad(tm);
        ASSERT_OK(ftq_tmodel_forward(tm, ids, NULL, 2, p.max_seq, tg, &l2, NULL));
        ASSERT_OK(ftq_tmodel_backward(tm, 1.0f));
        CU_ASSERT(l1 == l2);
        CU_ASSERT(memcmp(g1, g, n * sizeof(float)) == 0);
        /* backward twice without a forward is an error; grads accumulate with scale */
        CU_ASSERT_EQUAL(ftq_tmodel_backward(tm, 1.0f), FTQ_EINVAL);
        ASSERT_OK(ftq_tmodel_forward(tm, ids, NULL, 2, p.max_seq, tg, &l2, NULL));
        ASSERT_OK(ftq_tmodel_backward(tm, 0.5f));
        /* The accumulated gradient is 1.5x the first, to rounding: sgemm applies the 0.5 and
         * adds into the existing gradient in a kernel-dependent order (OpenBLAS' SkylakeX and
         * Haswell kernels differ), so an element whose partial sums cancel can be off by many
         * ulps of itself. The error is bounded by the scale of the terms summed, so each
         * tensor is compared against its largest gradient, not element by element. */
        double worst = 0.0;
        size_t off0 = ftq_tmodel_trainable_offset(tm), covered = 0;
        for (size_t sgi = 0; sgi < ftq_tmodel_segment_count(tm); sgi++) {
            const ftq_param_segment *sg = ftq_tmodel_segment(tm, sgi);
            size_t o = sg->offset - off0;
            double scale = 0.0, err = 0.0;
            for (size_t i = o; i < o + sg->size; i++) {
                scale = fmax(scale, fabs(1.5 * g1[i]));
                err = fmax(err, fabs(g[i] - 1.5 * g1[i]));
            }
            if (scale > 0.0)
                worst = fmax(worst, err / scale);
            else
                CU_ASSERT(err == 0.0);
            covered += sg->size;
        }
        CU_ASSERT_EQUAL(covered, n); /* the segments tile the trainable gradient */
        /* measured 5.6e-8 (GPT-2), 5.4e-8 / 7.2e-8 (Llama, SkylakeX / Haswell sgemm): a 1e-6 bar */
        printf("[worst %.1e of the tensor's scale] ", worst);
        CU_ASSERT(worst < 1e-6);
        free(g1);
        free(ids);
        free(tg);
        ftq_tmodel_free(tm);
        ftq_model_free(m);
    }
    ftq_set_threads(saved);
}

/* LM logits in several chunks (the backward recomputes each chunk's softmax) give the same
 * loss and gradients as one chunk, to float rounding. */
static void test_lm_chunks(void)
{
    ftq_model *m = test_load_model(shared_path(GPT2_DIR));
    if (!m)
        return;
    ftq_tmodel_params p = ftq_tmodel_default_params();
    p.max_batch = 2;
    p.max_seq = 6;
    ftq_tmodel *a = tmodel(m, &p), *b = tmodel(m, &p);
    if (a && b) {
        b->chunk_rows = 5; /* 12 rows: chunks of 5, 5, 2 (the buffer holds all 12) */
        run_batch(a, 0);
        run_batch(b, 0);
        size_t n;
        const float *ga = ftq_tmodel_grad_buffer(a, &n), *gb = ftq_tmodel_grad_buffer(b, NULL);
        double worst = 0.0, scale = 0.0;
        for (size_t i = 0; i < n; i++) {
            worst = fmax(worst, fabs(ga[i] - gb[i]));
            scale = fmax(scale, fabs(ga[i]));
        }
        CU_ASSERT(worst <= 1e-5 * scale);
    }
    ftq_tmodel_free(a);
    ftq_tmodel_free(b);
    ftq_model_free(m);
}

/* init_random: HF _init_weights statistics, seeded and reproducible. */
static void test_init_random(void)
{
    ftq_model *m = test_load_model(shared_path(GPT2_DIR));
    if (!m)
        return;
    ftq_tmodel_params p = ftq_tmodel_default_params();
    p.init_random = 1;
    p.seed = 11;
    p.task = FTQ_TASK_CLASSIFY;
    p.num_labels = 2;
    ftq_tmodel *a = tmodel(m, &p), *b = tmodel(m, &p);
    p.seed = 12;
    ftq_tmodel *c = tmodel(m, &p);
    if (a && b && c) {
        size_t n;
        float *pa = ftq_tmodel_param_buffer(a, &n);
        CU_ASSERT(memcmp(pa, ftq_tmodel_param_buffer(b, NULL), n * sizeof(float)) == 0);
        CU_ASSERT(memcmp(pa, ftq_tmodel_param_buffer(c, NULL), n * sizeof(float)) != 0);
        for (size_t i = 0; i < ftq_tmodel_segment_count(a); i++) {
            const ftq_param_segment *s = ftq_tmodel_segment(a, i);
            const float *x = pa + s->offset;
            double m1 = 0.0, m2 = 0.0;
            for (size_t k = 0; k < s->size; k++) {
                m1 += x[k];
                m2 += (double)x[k] * x[k];
            }
            m1 /= s->size;
            double sd = sqrt(m2 / s->size - m1 * m1);
            if (strstr(s->name, ".ln_") && strstr(s->name, ".weight")) {
                CU_ASSERT(m1 == 1.0 && sd == 0.0);
            } else if (strstr(s->name, ".bias")) {
                CU_ASSERT(m1 == 0.0 && sd == 0.0);
            } else {
                double want = strstr(s->name, "c_proj.weight") ? 0.02 / sqrt(4.0) : 0.02;
                double tol = 4.0 * want / sqrt((double)s->size) + 1e-3 * want;
                if (!(fabs(sd - want) <= tol * 2))
                    fprintf(stderr, "\n  %s: std %.5g, expected %.5g\n", s->name, sd, want);
                CU_ASSERT(fabs(sd - want) <= tol * 2);
            }
            CU_ASSERT_EQUAL(s->decay, !strstr(s->name, "bias") && !strstr(s->name, "ln_") && !strstr(s->name, "wte") &&
                                          !strstr(s->name, "wpe"));
        }
    }
    ftq_tmodel_free(a);
    ftq_tmodel_free(b);
    ftq_tmodel_free(c);
    ftq_model_free(m);
}

/* Bad inputs are refused with a message, not computed. */
static void test_errors(void)
{
    ftq_model *m = test_load_model(shared_path(LLAMA_DIR));
    if (!m)
        return;
    ftq_tmodel_params p = ftq_tmodel_default_params();
    p.max_batch = 1;
    p.max_seq = 4;
    ftq_tmodel *tm = tmodel(m, &p);
    int32_t ids[4] = {1, 2, 3, 4}, tg[4] = {2, 3, 4, 5};
    float loss;
    CU_ASSERT_EQUAL(ftq_tmodel_forward(tm, ids, NULL, 2, 4, tg, &loss, NULL), FTQ_EINVAL);
    CU_ASSERT_EQUAL(ftq_tmodel_forward(tm, ids, NULL, 1, 5, tg, &loss, NULL), FTQ_EINVAL);
    ids[2] = 512;
    CU_ASSERT_EQUAL(ftq_tmodel_forward(tm, ids, NULL, 1, 4, tg, &loss, NULL), FTQ_EINVAL);
    CU_ASSERT(strstr(ftq_last_error(), "out of range") != NULL);
    ids[2] = 3;
    tg[1] = -5;
    CU_ASSERT_EQUAL(ftq_tmodel_forward(tm, ids, NULL, 1, 4, tg, &loss, NULL), FTQ_EINVAL);
    CU_ASSERT_EQUAL(ftq_tmodel_backward(tm, 1.0f), FTQ_EINVAL);
    /* every target ignored: loss 0, nothing to do */
    for (int i = 0; i < 4; i++)
        tg[i] = FTQ_IGNORE_INDEX;
    ASSERT_OK(ftq_tmodel_forward(tm, ids, NULL, 1, 4, tg, &loss, NULL));
    CU_ASSERT(loss == 0.0f);
    ASSERT_OK(ftq_tmodel_backward(tm, 1.0f));
    ftq_tmodel_free(tm);
    ftq_tmodel_free(NULL);
    p.max_seq = -1;
    tm = NULL;
    CU_ASSERT_EQUAL(ftq_tmodel_new(m, &p, &tm), FTQ_EINVAL);
    p.max_seq = 4;
    p.task = FTQ_TASK_CLASSIFY; /* no labels and no head in the checkpoint */
    CU_ASSERT_EQUAL(ftq_tmodel_new(m, &p, &tm), FTQ_EINVAL);
    CU_ASSERT_PTR_NULL(tm);
    ftq_model_free(m);
}

/* ---- classifier configs ------------------------------------------------------------------------- */

#define CLS_BASE                                                                                              \
    "\"model_type\":\"llama\",\"vocab_size\":100,\"hidden_size\":32,\"intermediate_size\":64,"                 \
    "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"max_position_embeddings\":64"

static int parse(const char *json, ftq_model_config *c) { return ftq_config_parse(json, strlen(json), "c.json", c); }

/* architectures[0] *ForSequenceClassification -> is_classifier; HF leaves num_labels and
 * id2label out of config.json when they are the defaults (2 labels); the parameter count
 * has score instead of lm_head; label names from id2label, LABEL_i where absent. */
static void test_config_classifier(void)
{
    ftq_model_config c;
    ASSERT_OK(parse("{\"architectures\":[\"LlamaForSequenceClassification\"]," CLS_BASE "}", &c));
    CU_ASSERT(c.is_classifier);
    ASSERT_INT_EQ(c.num_labels, 2);
    ASSERT_INT_EQ(ftq_config_param_count(&c), 100 * 32 + 1 * (4 * 32 * 32 + 3 * 32 * 64 + 2 * 32) + 32 + 2 * 32);
    ASSERT_OK(parse("{\"architectures\":[\"LlamaForCausalLM\"]," CLS_BASE ",\"num_labels\":4}", &c));
    CU_ASSERT(!c.is_classifier);
    ASSERT_INT_EQ(c.num_labels, 4);
    ASSERT_OK(parse("{\"architectures\":[\"GPT2ForSequenceClassification\"],\"model_type\":\"gpt2\",\"vocab_size\":10,"
                    "\"n_embd\":8,\"n_layer\":1,\"n_head\":2,\"n_ctx\":16,\"id2label\":{\"0\":\"a\",\"1\":\"b\",\"2\":\"c\"}}",
                    &c));
    CU_ASSERT(c.is_classifier);
    ASSERT_INT_EQ(c.num_labels, 3);
    CU_ASSERT_EQUAL(parse("{\"architectures\":\"LlamaForCausalLM\"," CLS_BASE "}", &c), FTQ_EFORMAT);
    CU_ASSERT_EQUAL(parse("{\"architectures\":[7]," CLS_BASE "}", &c), FTQ_EFORMAT);
    ASSERT_OK(parse("{\"architectures\":[]," CLS_BASE "}", &c));
    CU_ASSERT(!c.is_classifier);

    const char *tmp = test_tmpdir("tmodel_labels");
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", tmp);
    struct {
        const char *json;
        int rc, n;
        const char *last;
    } cases[] = {
        {"{\"architectures\":[\"LlamaForSequenceClassification\"]," CLS_BASE ",\"id2label\":{\"1\":\"pos\",\"0\":\"neg\"}}",
         FTQ_OK, 2, "pos"},
        {"{\"architectures\":[\"LlamaForSequenceClassification\"]," CLS_BASE ",\"num_labels\":3}", FTQ_OK, 3, "LABEL_2"},
        {"{\"architectures\":[\"LlamaForSequenceClassification\"]," CLS_BASE "}", FTQ_OK, 2, "LABEL_1"},
        {"{" CLS_BASE "}", FTQ_OK, 0, NULL},
        {"{\"architectures\":[\"LlamaForSequenceClassification\"]," CLS_BASE ",\"id2label\":{\"0\":\"a\",\"x\":\"b\"}}",
         FTQ_EFORMAT, 0, NULL},
        {"{\"architectures\":[\"LlamaForSequenceClassification\"]," CLS_BASE ",\"id2label\":{\"0\":\"a\",\"01\":\"b\"}}",
         FTQ_EFORMAT, 0, NULL},
        {"{\"architectures\":[\"LlamaForSequenceClassification\"]," CLS_BASE ",\"id2label\":{\"0\":\"a\",\"1\":2}}",
         FTQ_EFORMAT, 0, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        FILE *f = fopen(path, "w");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        fputs(cases[i].json, f);
        fclose(f);
        char **names = NULL;
        int n = -1;
        int rc = ftq_config_load_labels(tmp, &names, &n);
        if (rc != cases[i].rc)
            fprintf(stderr, "\n  case %zu: rc %d (%s)\n", i, rc, ftq_last_error());
        CU_ASSERT_EQUAL(rc, cases[i].rc);
        if (rc == FTQ_OK) {
            ASSERT_INT_EQ(n, cases[i].n);
            if (cases[i].last && n > 0)
                CU_ASSERT_STRING_EQUAL(names[n - 1], cases[i].last);
        } else {
            CU_ASSERT_PTR_NULL(names);
        }
        ftq_free_strings(names, n);
    }
}

/* ---- AdamW ---------------------------------------------------------------------------------------- */

/* PyTorch AdamW in double. */
static void adamw_double(double *p, const double *g, double *m, double *v, size_t n, double lr, double b1,
                         double b2, double eps, double wd, int64_t step, int decay)
{
    double bc1 = 1.0 - pow(b1, (double)step), bc2 = 1.0 - pow(b2, (double)step);
    for (size_t i = 0; i < n; i++) {
        if (decay)
            p[i] *= 1.0 - lr * wd;
        m[i] = b1 * m[i] + (1.0 - b1) * g[i];
        v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
        p[i] -= lr / bc1 * m[i] / (sqrt(v[i]) / sqrt(bc2) + eps);
    }
}

/* Six steps with changing gradients (some tiny, some zero) against the double reference:
 * each parameter within 1e-6 |p| + 1e-4 x (total step size); the fast path equals the
 * scalar reference bit for bit at every length tail. */
static void test_adamw(void)
{
    ftq_rng r;
    ftq_rng_seed(&r, 31);
    ftq_adamw_params ap = {0.9f, 0.999f, 1e-8f, 0.1f};
    for (size_t n = 1; n <= 20000; n = n < 67 ? n + 1 : n * 9 + 1) {
        for (int decay = 0; decay < 2; decay++) {
            float *p = malloc(n * sizeof(float)), *g = malloc(n * sizeof(float));
            float *m = calloc(n, sizeof(float)), *v = calloc(n, sizeof(float));
            float *p2 = malloc(n * sizeof(float)), *m2 = calloc(n, sizeof(float)), *v2 = calloc(n, sizeof(float));
            double *pd = malloc(n * sizeof(double)), *gd = malloc(n * sizeof(double));
            double *md = calloc(n, sizeof(double)), *vd = calloc(n, sizeof(double));
            for (size_t i = 0; i < n; i++)
                pd[i] = p2[i] = p[i] = ftq_rng_normal(&r);
            float lr = 1e-3f;
            int bad = 0;
            for (int64_t step = 1; step <= 6; step++) {
                for (size_t i = 0; i < n; i++) {
                    float x = ftq_rng_normal(&r) * (i % 5 == 0 ? 1e-6f : 1.0f);
                    g[i] = i % 11 == 0 ? 0.0f : x;
                    gd[i] = g[i];
                }
                ftq_adamw_update(p, g, m, v, n, lr, &ap, step, decay);
                ftq_adamw_update_ref(p2, g, m2, v2, n, lr, &ap, step, decay);
                adamw_double(pd, gd, md, vd, n, lr, 0.9, 0.999, 1e-8, (double)ap.weight_decay, step, decay);
                bad += memcmp(p, p2, n * sizeof(float)) != 0 || memcmp(m, m2, n * sizeof(float)) != 0 ||
                       memcmp(v, v2, n * sizeof(float)) != 0;
                for (size_t i = 0; i < n; i++)
                    if (!(fabs(p[i] - pd[i]) <= 1e-6 * fabs(pd[i]) + 1e-4 * lr * step)) {
                        if (bad++ < 3)
                            fprintf(stderr, "\n  adamw n=%zu step %d: p[%zu] = %.9g, double %.9g\n", n, (int)step,
                                    i, p[i], pd[i]);
                    }
            }
            CU_ASSERT(bad == 0);
            free(p);
            free(g);
            free(m);
            free(v);
            free(p2);
            free(m2);
            free(v2);
            free(pd);
            free(gd);
            free(md);
            free(vd);
        }
    }
    /* the first step moves every parameter with a non-zero gradient by ~lr */
    float p = 1.0f, g = 0.5f, m = 0.0f, v = 0.0f;
    ftq_adamw_params ap0 = {0.9f, 0.999f, 1e-8f, 0.0f};
    ftq_adamw_update(&p, &g, &m, &v, 1, 0.01f, &ap0, 1, 1);
    ASSERT_NEAR(p, 0.99, 1e-6);
}

void test_register_tmodel(void)
{
    static const test_case cases[] = {
        {"golden_gpt2", test_golden_gpt2},
        {"golden_llama", test_golden_llama},
        {"classify_fd_llama", test_classify_fd_llama},
        {"classify_fd_gpt2", test_classify_fd_gpt2},
        {"lm_fd_batch", test_lm_fd_batch},
        {"frozen", test_frozen},
        {"head", test_head},
        {"roundtrip_llama", test_roundtrip_llama},
        {"roundtrip_gpt2", test_roundtrip_gpt2},
        {"classifier_llama", test_classifier_llama},
        {"classifier_gpt2", test_classifier_gpt2},
        {"determinism", test_determinism},
        {"lm_chunks", test_lm_chunks},
        {"init_random", test_init_random},
        {"errors", test_errors},
        {"config_classifier", test_config_classifier},
        {"adamw", test_adamw},
        {NULL, NULL},
    };
    test_add_suite("tmodel", cases);
}
