/* test_lora.c - LoRA on the trainable decoder (finetune/lora.c, tmodel*.c in mode lora):
 * the adapter product against a naive reference; the initial adapter (B = 0) leaves the
 * loss of the base exactly; gradients of A and B against the chain rule through the
 * merged model W' = W + s B A (whose full-mode gradients are checked against torch
 * goldens in test_tmodel.c) for Llama (GQA) and GPT-2 on all linear sites; finite
 * differences with dropout on (the mask held fixed); target parsing; the PEFT adapter
 * files; a tiny training run against PEFT (tests/fixtures/lora). */
#include <stdlib.h>
#include <string.h>

#include "finetune/tmodel.h"
#include "model/model.h"
#include "include/ftq_bert_train.h"
#include "model/bert_internal.h"
#include "tests/test_util.h"

#define GPT2_DIR "golden/gpt2_tiny_random"
#define LLAMA_DIR "golden/llama_tiny_random"

static ftq_tmodel *new_tm(const ftq_model *m, const ftq_tmodel_params *p)
{
    ftq_tmodel *tm = NULL;
    int rc = ftq_tmodel_new(m, p, &tm);
    if (rc != FTQ_OK)
        fprintf(stderr, "\n  ftq_tmodel_new: %s\n", ftq_last_error());
    CU_ASSERT_EQUAL(rc, FTQ_OK);
    return tm;
}

/* ---- the product ----------------------------------------------------------------------------- */

/* strided y += s (x A^T) B^T against a double triple loop: N = 5, in 19, out 13, r 3;
 * 1e-5 relative to max |y| (float sums of <= 19 terms) */
static void test_product(void)
{
    enum { N = 5, IN = 19, OUT = 13, R = 3, LDX = 23, LDY = 17 };
    float x[N * LDX], A[R * IN], B[OUT * R], y[N * LDY], yr[N * LDY], u[N * R];
    ftq_rng rng;
    ftq_rng_seed(&rng, 3);
    for (int i = 0; i < N * LDX; i++)
        x[i] = ftq_rng_normal(&rng);
    for (int i = 0; i < R * IN; i++)
        A[i] = ftq_rng_normal(&rng);
    for (int i = 0; i < OUT * R; i++)
        B[i] = ftq_rng_normal(&rng);
    for (int i = 0; i < N * LDY; i++)
        y[i] = yr[i] = ftq_rng_normal(&rng);
    ftq_lora_drop d = {0};
    ftq_lora_forward(y + 2, LDY, x, LDX, A, B, u, NULL, N, IN, OUT, R, 0.75f, &d, 0);
    ftq_lora_forward_ref(yr + 2, LDY, x, LDX, A, B, N, IN, OUT, R, 0.75f);
    double mx = 0, err = 0;
    for (int i = 0; i < N * LDY; i++) {
        mx = fabs(yr[i]) > mx ? fabs(yr[i]) : mx;
        err = fabs(y[i] - yr[i]) > err ? fabs(y[i] - yr[i]) : err;
    }
    CU_ASSERT(err <= 1e-5 * mx);
}

/* ---- the model ----------------------------------------------------------------------------- */

static const int32_t lm_ids[12] = {1, 403, 407, 261, 378, 11, 1, 99, 100, 101, 7, 8};
static const int32_t lm_tg[12] = {403, 407, 261, 378, 11, FTQ_IGNORE_INDEX, 99, 100, 101, 7, 8, 9};

/* The weight a site adds to in tmodel tm (row stride in) and its first row. */
static float *site_weight(ftq_tmodel *tm, ftq_tparams *w, int l, const ftq_lora_site *s)
{
    (void)tm;
    ftq_tblock *b = &w->blocks[l];
    float *base = s->lin == LORA_LIN_QKV ? b->wqkv : s->lin == LORA_LIN_O ? b->wo : s->lin == LORA_LIN_FC ? b->w_fc
                                                                                                           : b->w_down;
    return base ? base + (size_t)s->o0 * s->in : NULL;
}

/* B drawn normal(0, sd) so every gradient is non-zero. */
static void randomize_B(ftq_tmodel *tm, float sd, uint64_t seed)
{
    ftq_rng rng;
    ftq_rng_seed(&rng, seed);
    const int L = tm->cfg.n_layers, r = tm->p.lora.r;
    for (int l = 0; l < L; l++)
        for (int s = 0; s < tm->lora_ns; s++) {
            float *B = tm->lora_w[2 * ((size_t)l * tm->lora_ns + s) + 1];
            for (int i = 0; i < tm->lora_sites[s].out * r; i++)
                B[i] = sd * ftq_rng_normal(&rng);
        }
}

/* LoRA gradients = chain rule through the merged model: with G = dL/dW' of the full-mode
 * model on W' = W + s B A, dL/dA = s B^T G and dL/dB = s G A^T. Losses agree to 1e-5
 * relative; per tensor max |lora - chain| <= 2e-3 max |chain| + 1e-8 (float sgemm sums in
 * different orders over the 12 rows and the merged weights' rounding). */
static void merged_case(const char *dir, const char *targets, int rslora)
{
    ftq_model *m = test_load_model(shared_path(dir));
    if (!m)
        return;
    ftq_tmodel_params p = ftq_tmodel_default_params();
    p.max_batch = 2;
    p.max_seq = 6;
    p.mode = FTQ_TRAIN_LORA;
    p.lora.r = 3;
    p.lora.alpha = 5;
    p.lora.rslora = rslora;
    p.lora.targets = targets;
    ftq_tmodel *lt = new_tm(m, &p);
    ftq_tmodel_params pf = p;
    pf.mode = FTQ_TRAIN_FULL;
    ftq_tmodel *ft = new_tm(m, &pf);
    if (!lt || !ft)
        goto done;
    /* at init (B = 0) the adapters add exactly nothing */
    float l0, lb;
    ASSERT_OK(ftq_tmodel_forward(lt, lm_ids, NULL, 2, 6, lm_tg, &l0, NULL));
    ASSERT_OK(ftq_tmodel_forward(ft, lm_ids, NULL, 2, 6, lm_tg, &lb, NULL));
    CU_ASSERT(l0 == lb);
    randomize_B(lt, 0.3f, 11);
    const float s = lt->lora_scale;
    CU_ASSERT(fabs(s - (rslora ? 5.0 / sqrt(3.0) : 5.0 / 3.0)) < 1e-6);
    const int L = lt->cfg.n_layers, r = lt->p.lora.r;
    /* merge into the full model, in double */
    for (int l = 0; l < L; l++)
        for (int si = 0; si < lt->lora_ns; si++) {
            const ftq_lora_site *st = &lt->lora_sites[si];
            const float *A = lt->lora_w[2 * ((size_t)l * lt->lora_ns + si)], *B = lt->lora_w[2 * ((size_t)l * lt->lora_ns + si) + 1];
            float *W = site_weight(ft, &ft->w, l, st);
            for (int o = 0; o < st->out; o++)
                for (int i = 0; i < st->in; i++) {
                    double acc = 0;
                    for (int k = 0; k < r; k++)
                        acc += (double)B[o * r + k] * A[k * st->in + i];
                    W[(size_t)o * st->in + i] = (float)(W[(size_t)o * st->in + i] + s * acc);
                }
        }
    float ll, lf;
    ftq_tmodel_zero_grad(lt);
    ftq_tmodel_zero_grad(ft);
    ASSERT_OK(ftq_tmodel_forward(lt, lm_ids, NULL, 2, 6, lm_tg, &ll, NULL));
    ASSERT_OK(ftq_tmodel_backward(lt, 1.0f));
    ASSERT_OK(ftq_tmodel_forward(ft, lm_ids, NULL, 2, 6, lm_tg, &lf, NULL));
    ASSERT_OK(ftq_tmodel_backward(ft, 1.0f));
    ASSERT_NEAR(ll, lf, 1e-5 * fabs(lf));
    CU_ASSERT(fabs(ll - l0) > 1e-3); /* the adapters matter */
    double worst = 0;
    for (int l = 0; l < L; l++)
        for (int si = 0; si < lt->lora_ns; si++) {
            const ftq_lora_site *st = &lt->lora_sites[si];
            size_t k2 = 2 * ((size_t)l * lt->lora_ns + si);
            const float *A = lt->lora_w[k2], *B = lt->lora_w[k2 + 1];
            const float *gA = lt->lora_g[k2], *gB = lt->lora_g[k2 + 1];
            const float *G = site_weight(ft, &ft->g, l, st);
            double mxA = 0, erA = 0, mxB = 0, erB = 0;
            for (int k = 0; k < r; k++)
                for (int i = 0; i < st->in; i++) {
                    double e = 0;
                    for (int o = 0; o < st->out; o++)
                        e += (double)B[o * r + k] * G[(size_t)o * st->in + i];
                    e *= s;
                    mxA = fmax(mxA, fabs(e));
                    erA = fmax(erA, fabs(e - gA[k * st->in + i]));
                }
            for (int o = 0; o < st->out; o++)
                for (int k = 0; k < r; k++) {
                    double e = 0;
                    for (int i = 0; i < st->in; i++)
                        e += (double)G[(size_t)o * st->in + i] * A[k * st->in + i];
                    e *= s;
                    mxB = fmax(mxB, fabs(e));
                    erB = fmax(erB, fabs(e - gB[o * r + k]));
                }
            double q = fmax(erA / (2e-3 * mxA + 1e-8), erB / (2e-3 * mxB + 1e-8));
            if (!(q <= 1.0))
                fprintf(stderr, "\n  %s layer %d %s: |dA err| %.3g of %.3g, |dB err| %.3g of %.3g\n", dir, l,
                        st->target, erA, mxA, erB, mxB);
            CU_ASSERT(q <= 1.0);
            CU_ASSERT(mxA > 0 && mxB > 0);
            worst = fmax(worst, q);
        }
    fprintf(stderr, "[%s %s: worst %.3g of tolerance] ", dir, targets ? targets : "default", worst);
done:
    ftq_tmodel_free(lt);
    ftq_tmodel_free(ft);
    ftq_model_free(m);
}

static void test_merged_llama(void) { merged_case(LLAMA_DIR, "all-linear", 0); }
static void test_merged_llama_qv(void) { merged_case(LLAMA_DIR, NULL, 1); }
static void test_merged_gpt2(void) { merged_case(GPT2_DIR, "all-linear", 0); }

/* Central differences of the float forward with dropout 0.25 (the mask of the step held
 * fixed by replaying its counter), task classify with a new head: A, B and the head. With
 * h = 1e-3 and losses ~1 the float forward's rounding (~1e-6) gives FD errors ~1e-3 at
 * most; the h^2 term is ~1e-6 |f'''| (h = 1e-2 was visibly curved): tolerance
 * 3e-3 + 3e-2 |g|. */
static void test_fd_dropout(void)
{
    ftq_model *m = test_load_model(shared_path(LLAMA_DIR));
    if (!m)
        return;
    ftq_tmodel_params p = ftq_tmodel_default_params();
    p.task = FTQ_TASK_CLASSIFY;
    p.num_labels = 3;
    p.max_batch = 3;
    p.max_seq = 7;
    p.mode = FTQ_TRAIN_LORA;
    p.lora.r = 2;
    p.lora.alpha = 4;
    p.lora.dropout = 0.25;
    p.lora.targets = "q_proj,v_proj,o_proj,down_proj";
    ftq_tmodel *tm = new_tm(m, &p);
    if (!tm)
        goto done;
    randomize_B(tm, 0.5f, 5);
    int32_t ids[21] = {1, 17, 300, 45, 9, 88, 200, 1, 52, 7, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0};
    int32_t lengths[3] = {7, 3, 1}, labels[3] = {2, 0, 1};
    ftq_tmodel_set_training(tm, 1);
    float loss;
    ftq_tmodel_zero_grad(tm);
    ASSERT_OK(ftq_tmodel_forward(tm, ids, lengths, 3, 7, labels, &loss, NULL));
    uint64_t ctr = tm->lora_drop.counter;
    ASSERT_OK(ftq_tmodel_backward(tm, 1.0f));
    /* a different mask gives a different loss; evaluation (training off) another */
    float l2, le;
    ASSERT_OK(ftq_tmodel_forward(tm, ids, lengths, 3, 7, labels, &l2, NULL));
    CU_ASSERT(l2 != loss);
    ftq_tmodel_set_training(tm, 0);
    ASSERT_OK(ftq_tmodel_forward(tm, ids, lengths, 3, 7, labels, &le, NULL));
    CU_ASSERT(le != loss);
    ftq_tmodel_set_training(tm, 1);
    size_t n;
    float *params = ftq_tmodel_param_buffer(tm, &n);
    const float *grads = ftq_tmodel_grad_buffer(tm, NULL);
    size_t off = ftq_tmodel_trainable_offset(tm);
    ftq_rng rng;
    ftq_rng_seed(&rng, 9);
    int checked = 0, bad = 0;
    for (size_t si = 0; si < ftq_tmodel_segment_count(tm); si++) {
        const ftq_param_segment *s = ftq_tmodel_segment(tm, si);
        for (int k = 0; k < 3; k++) {
            size_t pi = s->offset + ftq_rng_u64(&rng) % s->size;
            float x0 = params[pi], lp, lm;
            const float h = 1e-3f;
            params[pi] = x0 + h;
            tm->lora_drop.counter = ctr - 1;
            ASSERT_OK(ftq_tmodel_forward(tm, ids, lengths, 3, 7, labels, &lp, NULL));
            params[pi] = x0 - h;
            tm->lora_drop.counter = ctr - 1;
            ASSERT_OK(ftq_tmodel_forward(tm, ids, lengths, 3, 7, labels, &lm, NULL));
            params[pi] = x0;
            double fd = ((double)lp - lm) / (2.0 * h), g = grads[pi - off];
            if (!(fabs(g - fd) <= 3e-3 + 3e-2 * fabs(g))) {
                fprintf(stderr, "\n  %s[%zu]: analytic %.6g, FD %.6g\n", s->name, pi - s->offset, g, fd);
                bad++;
            }
            checked++;
        }
    }
    CU_ASSERT(bad == 0);
    CU_ASSERT(checked >= 3 * 9);
done:
    ftq_tmodel_free(tm);
    ftq_model_free(m);
}

/* Targets: the family's names, all-linear, PEFT's defaults, unknown names refused. */
static void test_targets(void)
{
    ftq_model_config c;
    memset(&c, 0, sizeof c);
    c.arch = FTQ_ARCH_LLAMA;
    c.hidden_size = 64;
    c.intermediate_size = 176;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 16;
    ftq_lora_params p = ftq_lora_default_params();
    ftq_lora_site s[FTQ_LORA_MAX_SITES];
    int n = 0;
    ASSERT_OK(ftq_lora_sites(&c, &p, s, &n));
    CU_ASSERT_EQUAL(n, 2);
    CU_ASSERT_STRING_EQUAL(s[0].target, "q_proj");
    CU_ASSERT_STRING_EQUAL(s[1].target, "v_proj");
    CU_ASSERT_EQUAL(s[1].o0, 64 + 32);
    CU_ASSERT_EQUAL(s[1].out, 32);
    p.targets = "all-linear";
    ASSERT_OK(ftq_lora_sites(&c, &p, s, &n));
    CU_ASSERT_EQUAL(n, 7);
    CU_ASSERT_EQUAL(s[5].o0, 176); /* up_proj: the second half of gate | up */
    CU_ASSERT_EQUAL(s[6].in, 176);
    p.targets = "k_proj,c_attn";
    CU_ASSERT_EQUAL(ftq_lora_sites(&c, &p, s, &n), FTQ_EINVAL);
    CU_ASSERT(strstr(ftq_last_error(), "'c_attn'") != NULL);
    c.arch = FTQ_ARCH_GPT2;
    c.n_kv_heads = 4;
    p.targets = "c_proj";
    ASSERT_OK(ftq_lora_sites(&c, &p, s, &n));
    CU_ASSERT_EQUAL(n, 2); /* attention and MLP c_proj, as PEFT matches both */
    p.r = 0;
    CU_ASSERT_EQUAL(ftq_lora_check(&p), FTQ_EINVAL);
}

/* A tiny training run against PEFT (tools/make_lora_fixture.py): stories260K, r = 4,
 * alpha 8, all seven linears, PEFT's initial adapter loaded from its own file, 12 AdamW
 * steps at lr 1e-2 on one batch of 2 x 24 tokens. Tolerance per step: |ftq - torch| <=
 * 2e-4 + 2e-3 |torch|. Both sides are float32 with different summation orders (sgemm
 * blocking vs torch's kernels), ~1e-6 relative per loss; Adam's first steps move every
 * weight by ~lr whatever the gradient's size, so those differences grow over the run but
 * stay far below the loss falling 200-fold, which is what a wrong gradient would change. */
static void test_peft_curve(void)
{
    cJSON *j = load_json(source_path("tests/fixtures/lora/ref.json"));
    ftq_model *m = test_load_model(shared_path("models/stories260K"));
    ftq_tmodel *tm = NULL;
    float *m1 = NULL, *m2 = NULL;
    if (!j || !m)
        goto done;
    const cJSON *ids_j = cJSON_GetObjectItem(j, "ids"), *loss_j = cJSON_GetObjectItem(j, "losses");
    int B = cJSON_GetObjectItem(j, "batch")->valueint, T = cJSON_GetObjectItem(j, "seq")->valueint;
    int32_t ids[64], tg[64];
    CU_ASSERT_FATAL(B * T <= 64 && cJSON_GetArraySize(ids_j) == B * T);
    for (int i = 0; i < B * T; i++)
        ids[i] = cJSON_GetArrayItem(ids_j, i)->valueint;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            tg[b * T + t] = t + 1 < T ? ids[b * T + t + 1] : FTQ_IGNORE_INDEX;
    ftq_tmodel_params p = ftq_tmodel_default_params();
    p.max_batch = B;
    p.max_seq = T;
    p.mode = FTQ_TRAIN_LORA;
    p.lora.r = 4;
    p.lora.alpha = 8;
    p.lora.targets = "all-linear";
    if (!(tm = new_tm(m, &p)))
        goto done;
    ASSERT_OK(ftq_tmodel_load_adapter(tm, source_path("tests/fixtures/lora")));
    size_t nt;
    float *grads = ftq_tmodel_grad_buffer(tm, &nt);
    float *params = ftq_tmodel_param_buffer(tm, NULL) + ftq_tmodel_trainable_offset(tm);
    CU_ASSERT_EQUAL(nt, (size_t)cJSON_GetObjectItem(j, "trainable")->valueint);
    m1 = calloc(nt, sizeof(float));
    m2 = calloc(nt, sizeof(float));
    const ftq_adamw_params ap = {0.9f, 0.999f, 1e-8f, 0.0f};
    double worst = 0;
    for (int s = 0; s < cJSON_GetArraySize(loss_j); s++) {
        float loss;
        ftq_tmodel_zero_grad(tm);
        ASSERT_OK(ftq_tmodel_forward(tm, ids, NULL, B, T, tg, &loss, NULL));
        ASSERT_OK(ftq_tmodel_backward(tm, 1.0f));
        double want = cJSON_GetArrayItem(loss_j, s)->valuedouble, tol = 2e-4 + 2e-3 * fabs(want);
        if (!(fabs(loss - want) <= tol))
            fprintf(stderr, "\n  step %d: loss %.7g, PEFT %.7g\n", s, loss, want);
        CU_ASSERT(fabs(loss - want) <= tol);
        worst = fmax(worst, fabs(loss - want) / tol);
        ftq_adamw_update(params, grads, m1, m2, nt, 1e-2f, &ap, s + 1, 0);
    }
    float fl;
    ASSERT_OK(ftq_tmodel_forward(tm, ids, NULL, B, T, tg, &fl, NULL));
    double want = cJSON_GetObjectItem(j, "final_loss")->valuedouble;
    CU_ASSERT(fabs(fl - want) <= 2e-4 + 2e-3 * want);
    fprintf(stderr, "[final loss %.6g vs PEFT %.6g, worst %.3g of tolerance] ", fl, want, worst);
done:
    free(m1);
    free(m2);
    ftq_tmodel_free(tm);
    ftq_model_free(m);
    cJSON_Delete(j);
}

/* The loss of a tmodel in mode full on model m (B x T = 2 x 6 LM batch). */
static float full_loss(const ftq_model *m)
{
    ftq_tmodel_params p = ftq_tmodel_default_params();
    p.max_batch = 2;
    p.max_seq = 6;
    ftq_tmodel *tm = new_tm(m, &p);
    float l = NAN;
    if (tm)
        ASSERT_OK(ftq_tmodel_forward(tm, lm_ids, NULL, 2, 6, lm_tg, &l, NULL));
    ftq_tmodel_free(tm);
    return l;
}

/* Saved adapter -> ftq_model_apply_adapter and ftq_peft_merge_dir: both give the loss of the
 * LoRA model (1e-5 relative: the merged weights are rounded to float once), for Llama and
 * GPT-2 (fan_in_fan_out: Conv1D stays [in, out] in the merged file); the adapter files say
 * what PEFT needs; a broken adapter is refused by name. */
static void roundtrip_case(const char *dir, const char *tmpname)
{
    ftq_model *m = test_load_model(shared_path(dir)), *ma = NULL, *mm = NULL;
    if (!m)
        return;
    ftq_tmodel_params p = ftq_tmodel_default_params();
    p.max_batch = 2;
    p.max_seq = 6;
    p.mode = FTQ_TRAIN_LORA;
    p.lora.r = 2;
    p.lora.alpha = 3;
    p.lora.targets = "all-linear";
    ftq_tmodel *tm = new_tm(m, &p);
    if (!tm)
        goto done;
    randomize_B(tm, 0.3f, 2);
    float want;
    ASSERT_OK(ftq_tmodel_forward(tm, lm_ids, NULL, 2, 6, lm_tg, &want, NULL));
    char ad[512], out[600];
    snprintf(ad, sizeof ad, "%s", test_tmpdir(tmpname));
    snprintf(out, sizeof out, "%s/merged", ad);
    ASSERT_OK(ftq_tmodel_save_adapter(tm, ad, shared_path(dir)));
    ftq_peft *pf = NULL;
    ASSERT_OK(ftq_peft_open(ad, &pf));
    if (pf) {
        CU_ASSERT_EQUAL(ftq_peft_rank(pf), 2);
        CU_ASSERT_EQUAL(ftq_peft_module_count(pf), (size_t)(4 + (strstr(dir, "llama") ? 3 : 0)) * 2);
        CU_ASSERT(fabs(ftq_peft_scaling(pf) - 1.5) < 1e-7);
        CU_ASSERT_STRING_EQUAL(ftq_peft_task_type(pf), "CAUSAL_LM");
        CU_ASSERT_EQUAL(ftq_peft_fan_in_fan_out(pf), strstr(dir, "gpt2") != NULL);
    }
    ftq_peft_close(pf);
    ASSERT_OK(ftq_model_load(shared_path(dir), &ma));
    if (ma) {
        ASSERT_OK(ftq_model_apply_adapter(ma, ad));
        float got = full_loss(ma);
        ASSERT_NEAR(got, want, 1e-5 * fabs(want));
    }
    ASSERT_OK(ftq_peft_merge_dir(shared_path(dir), ad, out));
    CU_ASSERT_EQUAL(ftq_peft_merge_dir(shared_path(dir), ad, out), FTQ_EINVAL); /* exists: refused up front */
    ftq_clear_error();
    ASSERT_OK(ftq_model_load(out, &mm));
    if (mm) {
        float got = full_loss(mm);
        ASSERT_NEAR(got, want, 1e-5 * fabs(want));
    }
    /* llama.cpp's LoRA GGUF: metadata, names, ggml shapes; Llama's attn_q lora_b rows in the
     * converter's interleaved order (gguf row 2j + i of a head = HF row i hd/2 + j) */
    if (strstr(dir, "llama")) {
        char gg[640];
        snprintf(gg, sizeof gg, "%s/adapter.gguf", ad);
        ftq_model_config mc = *ftq_tmodel_config(tm);
        ASSERT_OK(ftq_peft_export_gguf(ad, &mc, gg));
        ftq_gguf *g = NULL;
        ASSERT_OK(ftq_gguf_open(gg, &g));
        if (g) {
            const char *sv;
            size_t sl;
            double alpha = 0;
            ASSERT_OK(ftq_gguf_get_str(g, "general.type", &sv, &sl));
            CU_ASSERT(sl == 7 && strncmp(sv, "adapter", 7) == 0);
            ASSERT_OK(ftq_gguf_get_str(g, "adapter.type", &sv, &sl));
            CU_ASSERT(sl == 4 && strncmp(sv, "lora", 4) == 0);
            ASSERT_OK(ftq_gguf_get_float(g, "adapter.lora.alpha", &alpha));
            CU_ASSERT(alpha == 3.0);
            CU_ASSERT_EQUAL(ftq_gguf_tensor_count(g), 2 * 7 * (size_t)mc.n_layers);
            const ftq_gguf_tensor *ta = ftq_gguf_find_tensor(g, "blk.1.ffn_down.weight.lora_a");
            const ftq_gguf_tensor *tb = ftq_gguf_find_tensor(g, "blk.0.attn_q.weight.lora_b");
            CU_ASSERT_FATAL(ta != NULL && tb != NULL);
            CU_ASSERT(ta->ne[0] == mc.intermediate_size && ta->ne[1] == 2);
            CU_ASSERT(tb->ne[0] == 2 && tb->ne[1] == (int64_t)mc.n_heads * mc.head_dim);
            float *b = malloc(sizeof(float) * 2 * (size_t)tb->ne[1]);
            ASSERT_OK(ftq_gguf_tensor_to_f32(tb, b));
            const float *B = tm->lora_w[1]; /* layer 0, q_proj: B [Q, 2] */
            const int hd = mc.head_dim, half = hd / 2;
            int bad = 0;
            for (int h = 0; h < mc.n_heads; h++)
                for (int j = 0; j < half; j++)
                    for (int i = 0; i < 2; i++)
                        for (int k = 0; k < 2; k++)
                            bad += b[(h * hd + 2 * j + i) * 2 + k] != B[(h * hd + i * half + j) * 2 + k];
            CU_ASSERT_EQUAL(bad, 0);
            free(b);
        }
        ftq_gguf_close(g);
    }
    /* a config that is not plain LoRA */
    char cfg[600];
    snprintf(cfg, sizeof cfg, "%s/adapter_config.json", ad);
    FILE *f = fopen(cfg, "w");
    if (f) {
        fputs("{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 3, \"use_dora\": true}", f);
        fclose(f);
        ftq_peft *bad = NULL;
        CU_ASSERT_EQUAL(ftq_peft_open(ad, &bad), FTQ_EUNSUPPORTED);
        CU_ASSERT(strstr(ftq_last_error(), "use_dora") != NULL);
        f = fopen(cfg, "w");
        fputs("{\"peft_type\": \"LORA\", \"r\": 3, \"lora_alpha\": 3}", f);
        fclose(f);
        CU_ASSERT_EQUAL(ftq_peft_open(ad, &bad), FTQ_EFORMAT); /* r disagrees with the tensors */
        CU_ASSERT(strstr(ftq_last_error(), "r = 3") != NULL);
        CU_ASSERT(bad == NULL);
    }
done:
    ftq_model_free(ma);
    ftq_model_free(mm);
    ftq_tmodel_free(tm);
    ftq_model_free(m);
}

static void test_roundtrip_llama(void) { roundtrip_case(LLAMA_DIR, "lora_rt_llama"); }
static void test_roundtrip_gpt2(void) { roundtrip_case(GPT2_DIR, "lora_rt_gpt2"); }

/* QLoRA: the frozen base is an ftq int8 / int4 checkpoint of the tiny Llama, used in place
 * (forward on the quantized kernels, dX = dY W with W dequantized one matrix at a time).
 * The quantized kernels round their input activations to int8 per block of 32 (~1/254
 * relative), so the quantized forward is a staircase at fine scale: central differences
 * with h = 1e-3 measure the steps (cosine ~0 to the gradient), with h = 1e-2 still ~0.9.
 * At h = 0.1 (B ~ N(0, 0.1), so the curvature term stays small) the FD vector of 56
 * sampled A / B entries agrees with the analytic one to 15 % relative L2, cosine >= 0.99
 * (measured 0.10 / 0.995 int8, 0.087 / 0.996 int4). The tight check is against the
 * dequantized checkpoint as an f32 base (below). Also: the LoRA model on the quantized base
 * keeps no block matrices in its buffer (memory: base as stored + adapters). */
static void qlora_case(int bits)
{
    char tag[32], dst[600], ddir[600];
    snprintf(tag, sizeof tag, "qlora_%d", bits);
    snprintf(dst, sizeof dst, "%s/q", test_tmpdir(tag));
    snprintf(ddir, sizeof ddir, "%.590s-d", dst);
    ftq_quantize_params qp = ftq_quantize_default_params();
    qp.bits = bits;
    qp.group = 32;
    ftq_quantize_report rep;
    memset(&rep, 0, sizeof rep);
    ftq_model *m = NULL, *md = NULL;
    ftq_tmodel *tm = NULL, *tf = NULL;
    ASSERT_OK(ftq_quantize_model(shared_path(LLAMA_DIR), dst, &qp, &rep));
    ftq_quantize_report_free(&rep);
    ASSERT_OK(ftq_model_load(dst, &m));
    if (!m)
        return;
    CU_ASSERT(ftq_model_quantized_count(m) >= 7 * m->cfg.n_layers);
    ftq_tmodel_params p = ftq_tmodel_default_params();
    p.max_batch = 2;
    p.max_seq = 6;
    p.mode = FTQ_TRAIN_LORA;
    p.lora.r = 2;
    p.lora.alpha = 4;
    p.lora.targets = "all-linear";
    if (!(tm = new_tm(m, &p)))
        goto done;
    size_t n;
    float *params = ftq_tmodel_param_buffer(tm, &n);
    const ftq_model_config *c = &m->cfg;
    size_t emb = (size_t)c->vocab_size * c->hidden_size * (c->tie_word_embeddings ? 1 : 2);
    CU_ASSERT(n < emb + (size_t)c->n_layers * 4 * c->hidden_size + ftq_tmodel_segment_count(tm) * 2000);
    randomize_B(tm, 0.1f, 3);
    const float *grads = ftq_tmodel_grad_buffer(tm, NULL);
    size_t off = ftq_tmodel_trainable_offset(tm);
    float loss;
    ftq_tmodel_zero_grad(tm);
    ASSERT_OK(ftq_tmodel_forward(tm, lm_ids, NULL, 2, 6, lm_tg, &loss, NULL));
    ASSERT_OK(ftq_tmodel_backward(tm, 1.0f));
    ftq_rng rng;
    ftq_rng_seed(&rng, 21);
    const float h = 0.1f;
    double dot = 0, na = 0, nf = 0, nd = 0;
    int checked = 0;
    for (size_t si = 0; si < ftq_tmodel_segment_count(tm); si++) {
        const ftq_param_segment *s = ftq_tmodel_segment(tm, si);
        for (int k = 0; k < 2; k++) {
            size_t pi = s->offset + ftq_rng_u64(&rng) % s->size;
            float x0 = params[pi], lp, lm;
            params[pi] = x0 + h;
            ASSERT_OK(ftq_tmodel_forward(tm, lm_ids, NULL, 2, 6, lm_tg, &lp, NULL));
            params[pi] = x0 - h;
            ASSERT_OK(ftq_tmodel_forward(tm, lm_ids, NULL, 2, 6, lm_tg, &lm, NULL));
            params[pi] = x0;
            double fd = ((double)lp - lm) / (2.0 * h), g = grads[pi - off];
            dot += g * fd;
            na += g * g;
            nf += fd * fd;
            nd += (g - fd) * (g - fd);
            checked++;
        }
    }
    double rel = sqrt(nd / nf), cosv = dot / sqrt(na * nf);
    fprintf(stderr, "[int%d: %d entries, |analytic - FD| / |FD| %.3g, cosine %.5f] ", bits, checked, rel, cosv);
    CU_ASSERT(rel <= 0.15);
    CU_ASSERT(cosv >= 0.99);
    CU_ASSERT(checked >= 2 * 2 * 7 * c->n_layers);
    /* the same adapters on the dequantized checkpoint as an f32 base (exactly the weights
     * the quantized kernels use): the only difference left is the int8 rounding of the
     * kernels' input activations, so the losses agree to 2e-3 relative and the whole
     * gradient vector to 3e-2 relative L2 */
    ASSERT_OK(ftq_dequantize_model(dst, ddir, FTQ_DTYPE_F32));
    ASSERT_OK(ftq_model_load(ddir, &md));
    if (md && (tf = new_tm(md, &p)) != NULL) {
        randomize_B(tf, 0.1f, 3);
        float lq, lf;
        ftq_tmodel_zero_grad(tm);
        ftq_tmodel_zero_grad(tf);
        ASSERT_OK(ftq_tmodel_forward(tm, lm_ids, NULL, 2, 6, lm_tg, &lq, NULL));
        ASSERT_OK(ftq_tmodel_backward(tm, 1.0f));
        ASSERT_OK(ftq_tmodel_forward(tf, lm_ids, NULL, 2, 6, lm_tg, &lf, NULL));
        ASSERT_OK(ftq_tmodel_backward(tf, 1.0f));
        ASSERT_NEAR(lq, lf, 2e-3 * fabs(lf));
        size_t nq, nf2;
        const float *gq = ftq_tmodel_grad_buffer(tm, &nq), *gf = ftq_tmodel_grad_buffer(tf, &nf2);
        CU_ASSERT_FATAL(nq == nf2);
        double e2 = 0, f2 = 0;
        for (size_t i = 0; i < nq; i++) {
            e2 += ((double)gq[i] - gf[i]) * ((double)gq[i] - gf[i]);
            f2 += (double)gf[i] * gf[i];
        }
        fprintf(stderr, "[vs dequantized f32 base: loss %.7g / %.7g, gradient relative L2 %.3g] ", lq, lf,
                sqrt(e2 / f2));
        CU_ASSERT(sqrt(e2 / f2) <= 3e-2);
    }
done:
    ftq_tmodel_free(tf);
    ftq_model_free(md);
    ftq_tmodel_free(tm);
    ftq_model_free(m);
}

/* QLoRA on a Q4_1 GGUF (what SmolLM2 ships): --keep-quant binds every Q4_1 matrix as q4m
 * (ggml's d * c + m, code for code), the embedding and the LM head included, and the trainer
 * reads all of them in place: no f32 copy of the embedding or head in its buffer, logits on
 * the quantized kernels, the head's dX from row chunks. The same GGUF loaded as f32 (ggml's
 * dequantization: the very same weight values) is the reference: the only difference left
 * is the kernels' int8 rounding of their input activations, so the losses agree to 2e-3
 * relative and the gradient vector (every adapter) to 3e-2 relative L2. */
static void test_qlora_q4_1_gguf(void)
{
    char gg[700], args[1600];
    snprintf(gg, sizeof gg, "%s/tiny-q41.gguf", test_tmpdir("qlora_q41"));
    snprintf(args, sizeof args, "export -m '%s' -o '%s' --type q4_1 --json", shared_path(LLAMA_DIR), gg);
    cJSON_Delete(ftq_run_json(args));
    ftq_model *mq = NULL, *mf = NULL;
    ftq_tmodel *tq = NULL, *tf = NULL;
    ASSERT_OK(ftq_model_load_ex(gg, FTQ_LOAD_KEEP_QUANT, &mq));
    ASSERT_OK(ftq_model_load(gg, &mf));
    if (!mq || !mf)
        goto done;
    const ftq_model_config *c = &mq->cfg;
    CU_ASSERT(mq->tok_emb.dtype == FTQ_DTYPE_QMAT && mq->lm_head.dtype == FTQ_DTYPE_QMAT);
    CU_ASSERT(((const ftq_qmat *)mq->tok_emb.data)->scheme == FTQ_QSCHEME_Q4M);
    ftq_tmodel_params p = ftq_tmodel_default_params();
    p.max_batch = 2;
    p.max_seq = 6;
    p.mode = FTQ_TRAIN_LORA;
    p.lora.r = 2;
    p.lora.alpha = 4;
    p.lora.targets = "all-linear";
    if (!(tq = new_tm(mq, &p)) || !(tf = new_tm(mf, &p)))
        goto done;
    size_t nq, nf;
    ftq_tmodel_param_buffer(tq, &nq);
    ftq_tmodel_param_buffer(tf, &nf);
    CU_ASSERT(nq == nf);
    CU_ASSERT(nq < (size_t)c->vocab_size * c->hidden_size); /* no embedding / head copy */
    randomize_B(tq, 0.1f, 3);
    randomize_B(tf, 0.1f, 3);
    float lq, lf;
    ftq_tmodel_zero_grad(tq);
    ftq_tmodel_zero_grad(tf);
    ASSERT_OK(ftq_tmodel_forward(tq, lm_ids, NULL, 2, 6, lm_tg, &lq, NULL));
    ASSERT_OK(ftq_tmodel_backward(tq, 1.0f));
    ASSERT_OK(ftq_tmodel_forward(tf, lm_ids, NULL, 2, 6, lm_tg, &lf, NULL));
    ASSERT_OK(ftq_tmodel_backward(tf, 1.0f));
    ASSERT_NEAR(lq, lf, 2e-3 * fabs(lf));
    size_t gn, gn2;
    const float *gq = ftq_tmodel_grad_buffer(tq, &gn), *gf = ftq_tmodel_grad_buffer(tf, &gn2);
    CU_ASSERT_FATAL(gn == gn2 && gn > 0);
    double e2 = 0, f2 = 0;
    for (size_t i = 0; i < gn; i++) {
        e2 += ((double)gq[i] - gf[i]) * ((double)gq[i] - gf[i]);
        f2 += (double)gf[i] * gf[i];
    }
    fprintf(stderr, "[q4m vs f32 base: loss %.7g / %.7g, gradient relative L2 %.3g] ", lq, lf, sqrt(e2 / f2));
    CU_ASSERT(sqrt(e2 / f2) <= 3e-2);
done:
    ftq_tmodel_free(tq);
    ftq_tmodel_free(tf);
    ftq_model_free(mq);
    ftq_model_free(mf);
}

/* All 16 positions' logits of `ids` (malloc'd) from m. */
static float *logits16(const ftq_model *m, const int32_t *ids)
{
    int V = m->cfg.vocab_size;
    float *lg = malloc(sizeof(float) * 16 * (size_t)V);
    ftq_session *s = NULL;
    if (ftq_session_new(m, 16, &s) != FTQ_OK || ftq_session_eval(s, ids, 16, lg, 1) != FTQ_OK) {
        free(lg);
        lg = NULL;
    }
    ftq_session_free(s);
    return lg;
}

static double rel_l2(const float *a, const float *b, size_t n)
{
    double e = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        e += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    return sqrt(e / r);
}

/* --adapter on a quantized base (inference): the int8 weights cannot take W + s B A, so the
 * adapter stays beside them and every product adds s (x A^T) B^T. Against the dequantized
 * twin with the adapter merged (the same weights, W + s B A exactly) the logits differ only
 * by the kernels' int8 activation rounding, far less than what the adapter changes. */
static void test_adapter_on_quantized(void)
{
    char ad[600], q[640], d[640];
    snprintf(ad, sizeof ad, "%.590s", test_tmpdir("adapter_q")); /* the adapter files; the models beside it */
    snprintf(q, sizeof q, "%s/q8", ad);
    snprintf(d, sizeof d, "%s/d", ad);
    const char *base = shared_path("models/stories260K");
    ftq_model *m = test_load_model(base), *mq = NULL, *md = NULL, *mq0 = NULL;
    if (!m)
        return;
    ftq_tmodel_params p = ftq_tmodel_default_params();
    p.max_batch = 1;
    p.max_seq = 16;
    p.mode = FTQ_TRAIN_LORA;
    p.lora.r = 4;
    p.lora.alpha = 8;
    p.lora.targets = "all-linear";
    ftq_tmodel *tm = new_tm(m, &p);
    CU_ASSERT_FATAL(tm != NULL);
    randomize_B(tm, 0.05f, 11);
    ASSERT_OK(ftq_tmodel_save_adapter(tm, ad, base));
    ftq_tmodel_free(tm);
    ftq_model_free(m);
    ftq_quantize_params qp = ftq_quantize_default_params();
    qp.bits = 8;
    qp.group = 32;
    ftq_quantize_report rep;
    memset(&rep, 0, sizeof rep);
    ASSERT_OK(ftq_quantize_model(base, q, &qp, &rep));
    ftq_quantize_report_free(&rep);
    ASSERT_OK(ftq_dequantize_model(q, d, FTQ_DTYPE_F32));
    ASSERT_OK(ftq_model_load(q, &mq));
    ASSERT_OK(ftq_model_load(q, &mq0));
    ASSERT_OK(ftq_model_load(d, &md));
    CU_ASSERT_FATAL(mq && mq0 && md);
    ASSERT_OK(ftq_model_apply_adapter(mq, ad));
    ASSERT_OK(ftq_model_apply_adapter(md, ad));
    CU_ASSERT(mq->n_side == (size_t)7 * mq->cfg.n_layers && md->n_side == 0);
    int32_t ids[16];
    for (int i = 0; i < 16; i++)
        ids[i] = i ? (i * 37 + 5) % mq->cfg.vocab_size : 1;
    float *lq = logits16(mq, ids), *ld = logits16(md, ids), *l0 = logits16(mq0, ids);
    CU_ASSERT_FATAL(lq && ld && l0);
    size_t n = 16 * (size_t)mq->cfg.vocab_size;
    double twin = rel_l2(lq, ld, n), effect = rel_l2(l0, ld, n);
    fprintf(stderr, "[vs merged twin %.3g, adapter's effect %.3g] ", twin, effect);
    CU_ASSERT(twin < 1e-2);
    CU_ASSERT(effect > 10 * twin);
    free(lq);
    free(ld);
    free(l0);
    ftq_model_free(mq);
    ftq_model_free(mq0);
    ftq_model_free(md);
}

static void test_qlora_int8(void) { qlora_case(8); }
static void test_qlora_int4(void) { qlora_case(4); }

/* One BERT LoRA model (bert_tiny_random's layout at dir, a new 2-label pooler head, r = 2 on
 * all six block linears, B ~ N(0, 0.5) from a fixed seed) and the loss and gradient of one
 * batch; NULL grads on failure. */
static float *bert_lora_grads(const char *dir, double *loss, size_t *n, size_t *start, int *nq)
{
    ftq_bert *m = NULL;
    ftq_bert_ws *ws = NULL;
    if (ftq_bert_load(dir, &m) != FTQ_OK)
        return NULL;
    *nq = ftq_bert_quantized_count(m);
    ftq_lora_params lp = ftq_lora_default_params();
    lp.r = 2;
    lp.alpha = 4;
    lp.targets = "all-linear";
    float *grads = NULL;
    if (ftq_bert_add_head(m, 2, FTQ_POOL_POOLER, 7) == FTQ_OK && ftq_bert_add_lora(m, &lp, 5, 12) == FTQ_OK &&
        ftq_bert_ws_new(m, 2, 6, 1, &ws) == FTQ_OK) {
        ftq_rng rng;
        ftq_rng_seed(&rng, 8);
        for (int l = 0; l < m->cfg.n_layers; l++)
            for (int k = 0; k < BERT_LIN_N; k++) {
                int out = k == BERT_LIN_FC1 ? m->cfg.ffn : m->cfg.hidden;
                float *B = m->params + m->lora->off[((size_t)l * BERT_LIN_N + k) * 2 + 1];
                for (int i = 0; i < out * 2; i++)
                    B[i] = 0.5f * ftq_rng_normal(&rng);
            }
        const int32_t ids[12] = {2, 17, 45, 9, 88, 3, 2, 52, 7, 3, 0, 0}, types[12] = {0};
        const int lens[2] = {6, 4};
        const int32_t labels[2] = {1, 0};
        *n = ftq_bert_num_params(m);
        *start = (size_t)(m->w.cls_w - m->params);
        grads = calloc(*n, sizeof(float));
        if (ftq_bert_forward(m, ws, ids, types, lens, 2, 6) != FTQ_OK ||
            ftq_bert_loss_grad(m, ws, labels, grads, 0, loss) != FTQ_OK) {
            free(grads);
            grads = NULL;
        }
    }
    if (!grads)
        fprintf(stderr, "\n  %s\n", ftq_last_error());
    ftq_bert_ws_free(ws);
    ftq_bert_free(m);
    return grads;
}

/* LoRA on an int8 BERT checkpoint (ftq quantize: the twelve block linears int8):
 * the forward on the int8 kernels, dX = dY W with one weight dequantized at a time. Against
 * the dequantized checkpoint as an f32 base (the very same weight values), the only
 * difference is the kernels' int8 rounding of their input activations: loss within 2e-3
 * relative, the gradient (classifier and every adapter) within 3e-2 relative L2. */
static int run_bert_lora_trainer_on(const char *model, const char *out, const char *resume);

static void test_bert_qlora_int8(void)
{
    char q[600], d[640];
    snprintf(q, sizeof q, "%s/q8", test_tmpdir("bert_qlora"));
    snprintf(d, sizeof d, "%s-d", q);
    ftq_quantize_params qp = ftq_quantize_default_params();
    qp.bits = 8;
    qp.group = 32;
    ftq_quantize_report rep;
    memset(&rep, 0, sizeof rep);
    ASSERT_OK(ftq_quantize_model(shared_path("golden/bert_tiny_random"), q, &qp, &rep));
    ftq_quantize_report_free(&rep);
    ASSERT_OK(ftq_dequantize_model(q, d, FTQ_DTYPE_F32));
    double lq = 0, lf = 0;
    size_t nq = 0, nf = 0, sq = 0, sf = 0;
    int cq = 0, cf = 0;
    float *gq = bert_lora_grads(q, &lq, &nq, &sq, &cq), *gf = bert_lora_grads(d, &lf, &nf, &sf, &cf);
    CU_ASSERT_FATAL(gq && gf && nq - sq == nf - sf); /* the quantized base has no f32 slice: offsets differ */
    fprintf(stderr, "[%d quantized] ", cq);
    CU_ASSERT(cq >= 2 * 6); /* at least the six linears of both blocks */
    ASSERT_INT_EQ(cf, 0);
    ASSERT_NEAR(lq, lf, 2e-3 * fabs(lf));
    double e2 = 0, f2 = 0;
    for (size_t i = 0; i < nq - sq; i++) {
        e2 += ((double)gq[sq + i] - gf[sf + i]) * ((double)gq[sq + i] - gf[sf + i]);
        f2 += (double)gf[sf + i] * gf[sf + i];
    }
    fprintf(stderr, "[int8 vs f32 base: loss %.7g / %.7g, gradient relative L2 %.3g] ", lq, lf, sqrt(e2 / f2));
    CU_ASSERT(f2 > 0 && sqrt(e2 / f2) <= 3e-2);
    free(gq);
    free(gf);
    /* the trainer end to end on the int8 base: an adapter directory, no model weights */
    char out[700], f[760];
    snprintf(out, sizeof out, "%s-run", q);
    ASSERT_OK(run_bert_lora_trainer_on(q, out, NULL));
    snprintf(f, sizeof f, "%s/adapter_model.safetensors", out);
    CU_ASSERT(ftq_is_file(f));
    snprintf(f, sizeof f, "%s/model.safetensors", out);
    CU_ASSERT(!ftq_is_file(f));
}

/* BERT (bert_tiny_random, a 2-label head, pooler): LoRA r = 2 on all six block linears,
 * B ~ N(0, 0.5), dropout 0.2 with the mask held fixed by replaying its counter; the
 * gradients of A, B and the classifier against central differences of the float forward,
 * h = 1e-3, tolerance 3e-3 + 3e-2 |g| (as fd_dropout); the frozen base gets no gradient. */
static void test_bert_fd(void)
{
    ftq_bert *m = NULL;
    ftq_bert_ws *ws = NULL;
    float *grads = NULL;
    ASSERT_OK(ftq_bert_load(shared_path("golden/bert_tiny_random"), &m));
    if (!m)
        return;
    ASSERT_OK(ftq_bert_add_head(m, 2, FTQ_POOL_POOLER, 7));
    ftq_lora_params lp = ftq_lora_default_params();
    lp.r = 2;
    lp.alpha = 4;
    lp.dropout = 0.2;
    lp.targets = "all-linear";
    ASSERT_OK(ftq_bert_add_lora(m, &lp, 5, 2 * 6));
    ASSERT_OK(ftq_bert_ws_new(m, 2, 6, 1, &ws));
    CU_ASSERT_FATAL(m->lora != NULL && ws != NULL);
    ftq_rng rng;
    ftq_rng_seed(&rng, 8);
    const int L = m->cfg.n_layers, r = 2;
    for (int l = 0; l < L; l++)
        for (int k = 0; k < BERT_LIN_N; k++) {
            int out = k == BERT_LIN_FC1 ? m->cfg.ffn : m->cfg.hidden;
            float *B = m->params + m->lora->off[((size_t)l * BERT_LIN_N + k) * 2 + 1];
            for (int i = 0; i < out * r; i++)
                B[i] = 0.5f * ftq_rng_normal(&rng);
        }
    const int32_t ids[12] = {2, 17, 45, 9, 88, 3, 2, 52, 7, 3, 0, 0}, types[12] = {0};
    const int lens[2] = {6, 4};
    const int32_t labels[2] = {1, 0};
    size_t n = ftq_bert_num_params(m);
    grads = calloc(n, sizeof(float));
    double loss;
    m->lora->training = 1;
    ASSERT_OK(ftq_bert_forward(m, ws, ids, types, lens, 2, 6));
    uint64_t ctr = m->lora->drop.counter;
    ASSERT_OK(ftq_bert_loss_grad(m, ws, labels, grads, 0, &loss));
    /* frozen: no gradient below the adapters except the classifier */
    size_t cls = (size_t)(m->w.cls_w - m->params), nz = 0;
    for (size_t i = 0; i < cls; i++)
        nz += grads[i] != 0.0f;
    CU_ASSERT_EQUAL(nz, 0);
    double gmax = 0;
    for (size_t i = m->lora->start; i < n; i++)
        gmax = fmax(gmax, fabs(grads[i]));
    CU_ASSERT(gmax > 1e-3); /* the adapters do get gradients */
    float *P = ftq_bert_params(m);
    int bad = 0, checked = 0;
    for (int l = 0; l < L; l++)
        for (int k = 0; k < BERT_LIN_N; k++)
            for (int ab = 0; ab < 2; ab++) {
                size_t o = m->lora->off[((size_t)l * BERT_LIN_N + k) * 2 + ab];
                size_t cnt = ab ? (size_t)(k == BERT_LIN_FC1 ? m->cfg.ffn : m->cfg.hidden) * r
                                : (size_t)r * (k == BERT_LIN_FC2 ? m->cfg.ffn : m->cfg.hidden);
                size_t pi = o + ftq_rng_u64(&rng) % cnt;
                float x0 = P[pi];
                double lp2, lm2;
                const float h = 1e-3f;
                float *scratch = calloc(n, sizeof(float));
                P[pi] = x0 + h;
                m->lora->drop.counter = ctr - 1;
                ASSERT_OK(ftq_bert_forward(m, ws, ids, types, lens, 2, 6));
                ASSERT_OK(ftq_bert_loss_grad(m, ws, labels, scratch, 0, &lp2));
                P[pi] = x0 - h;
                m->lora->drop.counter = ctr - 1;
                ASSERT_OK(ftq_bert_forward(m, ws, ids, types, lens, 2, 6));
                ASSERT_OK(ftq_bert_loss_grad(m, ws, labels, scratch, 0, &lm2));
                P[pi] = x0;
                free(scratch);
                double fd = (lp2 - lm2) / (2.0 * h), g = grads[pi];
                if (!(fabs(g - fd) <= 3e-3 + 3e-2 * fabs(g))) {
                    fprintf(stderr, "\n  bert layer %d linear %d lora_%c: analytic %.6g, FD %.6g\n", l, k, ab ? 'B' : 'A',
                            g, fd);
                    bad++;
                }
                checked++;
            }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(checked == L * BERT_LIN_N * 2);
    ftq_bert_ws_free(ws);
    ftq_bert_free(m);
    free(grads);
}

/* Run a trainer on c to the end; with verbose, print the error of a failed run. */
static int run_trainer(const ftq_train_config *c, int verbose)
{
    ftq_trainer *t = NULL;
    int rc = ftq_trainer_new(c, &t);
    if (rc == FTQ_OK) {
        ftq_train_result r;
        rc = ftq_trainer_run(t, &r);
        ftq_train_result_free(&r);
    }
    if (rc != FTQ_OK && verbose)
        fprintf(stderr, "\n  trainer: %s\n", ftq_last_error());
    ftq_trainer_free(t);
    return rc;
}

/* The adapter_model.safetensors of output directories a and b are byte for byte the same. */
static void assert_same_adapter(const char *a, const char *b)
{
    char fa[700], fb[700];
    snprintf(fa, sizeof fa, "%s/adapter_model.safetensors", a);
    snprintf(fb, sizeof fb, "%s/adapter_model.safetensors", b);
    char *da = NULL, *db = NULL;
    size_t la = 0, lb = 0;
    ASSERT_OK(ftq_read_file(fa, &da, &la));
    ASSERT_OK(ftq_read_file(fb, &db, &lb));
    CU_ASSERT(da && db && la == lb && la > 0 && memcmp(da, db, la) == 0);
    free(da);
    free(db);
}

/* The trainer in mode lora (stories260K, lm, dropout 0.1): 6 steps with a checkpoint every 3
 * give the same adapter file, byte for byte, as resuming from checkpoint-3 (the dropout
 * masks continue: their count is saved with the adapter); the output is a PEFT directory. */
static int run_lora_trainer(const char *out, const char *resume)
{
    ftq_train_config c = ftq_train_default_config();
    c.model_dir = shared_path("models/stories260K");
    c.train_source = source_path("datasets/tinystories_sample.txt");
    c.output_dir = out;
    c.resume_dir = resume;
    c.task = FTQ_TASK_LM;
    c.mode = FTQ_TRAIN_LORA;
    c.lora.r = 4;
    c.lora.alpha = 8;
    c.lora.dropout = 0.1;
    c.lora.targets = "all-linear";
    c.max_steps = 6;
    c.save_every = 3;
    c.lr = 1e-2;
    c.seq_len = 32;
    c.batch_size = 2;
    c.limit = 64;
    c.dev_limit = 8;
    return run_trainer(&c, 1);
}

static void test_trainer_resume(void)
{
    char a[600], b[600], ck[640];
    snprintf(a, sizeof a, "%s/a", test_tmpdir("lora_resume"));
    snprintf(b, sizeof b, "%.580s/../b", a);
    snprintf(ck, sizeof ck, "%s/checkpoint-3", a);
    ASSERT_OK(run_lora_trainer(a, NULL));
    ASSERT_OK(run_lora_trainer(b, ck));
    assert_same_adapter(a, b);
    char fa[700];
    snprintf(fa, sizeof fa, "%s/adapter_config.json", a);
    CU_ASSERT(ftq_is_file(fa));
    snprintf(fa, sizeof fa, "%s/model.safetensors", a);
    CU_ASSERT(!ftq_is_file(fa)); /* an adapter, not a model */
}

/* The trainer in mode lora on BERT (bert_tiny_random, 32 SST-2 rows, dropout 0.1): 6 steps
 * with a checkpoint every 3, and the same run resumed from checkpoint-3: the adapters and the
 * head are byte for byte the uninterrupted run's (the optimizer state, the data order and
 * the dropout masks all continue). */
static int run_bert_lora_trainer_on(const char *model, const char *out, const char *resume)
{
    ftq_train_config c = ftq_train_default_config();
    c.model_dir = model;
    c.train_source = shared_path("data/sst2/train.tsv");
    c.output_dir = out;
    c.resume_dir = resume;
    c.task = FTQ_TASK_CLASSIFY;
    c.mode = FTQ_TRAIN_LORA;
    c.lora.r = 2;
    c.lora.alpha = 4;
    c.lora.dropout = 0.1;
    c.lora.targets = "all-linear";
    c.max_steps = 6;
    c.save_every = 3;
    c.lr = 1e-2;
    c.seq_len = 32;
    c.batch_size = 4;
    c.limit = 32;
    return run_trainer(&c, 1);
}

static int run_bert_lora_trainer(const char *out, const char *resume)
{
    return run_bert_lora_trainer_on(shared_path("golden/bert_tiny_random"), out, resume);
}

static void test_bert_resume(void)
{
    char a[600], b[600], ck[640];
    snprintf(a, sizeof a, "%s/a", test_tmpdir("bert_lora_resume"));
    snprintf(b, sizeof b, "%.580s/../b", a);
    snprintf(ck, sizeof ck, "%s/checkpoint-3", a);
    ASSERT_OK(run_bert_lora_trainer(a, NULL));
    ASSERT_OK(run_bert_lora_trainer(b, ck));
    assert_same_adapter(a, b);
    /* a lora checkpoint cannot seed a full run */
    ftq_train_config c = ftq_train_default_config();
    c.model_dir = shared_path("golden/bert_tiny_random");
    c.train_source = shared_path("data/sst2/train.tsv");
    c.output_dir = b;
    c.resume_dir = ck;
    c.max_steps = 6;
    c.limit = 32;
    int rc = run_trainer(&c, 0);
    CU_ASSERT(rc != FTQ_OK && strstr(ftq_last_error(), "lora run"));
}

/* `ftq embed --adapter`: the sentence embedding of the base with a BERT LoRA adapter (from a
 * 6-step lora run) merged on load equals, bit for bit, that of the directory `ftq merge`
 * writes from the same pair, and differs from the base's own. */
static void test_embed_adapter(void)
{
    char ad[600], merged[640], args[2400];
    snprintf(ad, sizeof ad, "%.590s", test_tmpdir("embed_adapter"));
    snprintf(merged, sizeof merged, "%s/merged", ad);
    ASSERT_OK(run_bert_lora_trainer(ad, NULL));
    const char *base = shared_path("golden/bert_tiny_random");
    snprintf(args, sizeof args, "merge -m '%s' --adapter '%s' -o '%s'", base, ad, merged);
    char *out = NULL, *err = NULL;
    int rc = ftq_run(args, &out, &err);
    if (rc != 0)
        fprintf(stderr, "\n  merge: %s\n", err ? err : "?");
    ASSERT_INT_EQ(rc, 0);
    free(out);
    free(err);
    cJSON *e[3];
    const char *models[3] = {base, merged, base};
    for (int k = 0; k < 3; k++) {
        snprintf(args, sizeof args, "embed -m '%s' %s%s%s -p 'a gripping, funny film' --json", models[k],
                 k == 0 ? "--adapter '" : "", k == 0 ? ad : "", k == 0 ? "'" : "");
        e[k] = ftq_run_json(args);
    }
    CU_ASSERT_FATAL(e[0] && e[1] && e[2]);
    const cJSON *v[3];
    for (int k = 0; k < 3; k++)
        v[k] = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(e[k], "embeddings"), 0);
    CU_ASSERT_FATAL(cJSON_IsArray(v[0]) && cJSON_IsArray(v[1]) && cJSON_IsArray(v[2]));
    int n = cJSON_GetArraySize(v[0]), same = 0, moved = 0;
    ASSERT_INT_EQ(cJSON_GetArraySize(v[1]), n);
    for (int i = 0; i < n; i++) {
        double a0 = cJSON_GetArrayItem(v[0], i)->valuedouble, a1 = cJSON_GetArrayItem(v[1], i)->valuedouble,
               a2 = cJSON_GetArrayItem(v[2], i)->valuedouble;
        same += a0 == a1;
        moved += fabs(a0 - a2) > 1e-6;
    }
    ASSERT_INT_EQ(same, n);
    CU_ASSERT(moved > n / 2);
    for (int k = 0; k < 3; k++)
        cJSON_Delete(e[k]);
}

/* Classify and embed with an adapter on an int8 BERT base (bert_tiny_random quantized, group
 * 32; the adapter of a 6-step lora run on the f32 base, r = 2 on all six block linears, with
 * its head): the adapter stays beside the int8 weights and every adapted product adds
 * s (x A^T) B^T on the forward LoRA training uses. Against the dequantized twin of the same
 * checkpoint with the adapter merged (W + s B A on exactly the weights the int8 kernels
 * read), the only difference is the kernels' int8 rounding of their input activations
 * (at most half a step, 2^-8 of a row's range, per product; errors of random sign average
 * down): logits and embeddings within 2e-3 relative L2 (measured ~1e-4), and at least 10x
 * below what the adapter's LoRA terms change (scale 0 / no adapter). Three prompts in
 * one batch (> 64 token rows) also grow the adapter's buffers past their initial size. */
static void test_bert_adapter_on_quantized(void)
{
    char ad[600], q[640], d[640], args[2400];
    snprintf(ad, sizeof ad, "%.590s", test_tmpdir("bert_adapter_q"));
    snprintf(q, sizeof q, "%s/q8", ad);
    snprintf(d, sizeof d, "%s/d", ad);
    const char *base = shared_path("golden/bert_tiny_random");
    ASSERT_OK(run_bert_lora_trainer(ad, NULL));
    ftq_quantize_params qp = ftq_quantize_default_params();
    qp.bits = 8;
    qp.group = 32;
    ftq_quantize_report rep;
    memset(&rep, 0, sizeof rep);
    ASSERT_OK(ftq_quantize_model(base, q, &qp, &rep));
    ftq_quantize_report_free(&rep);
    ASSERT_OK(ftq_dequantize_model(q, d, FTQ_DTYPE_F32));
    /* classify: the int8 base + adapter, the merged twin, the int8 base + the adapter's head only */
    static const char *const texts[3] = {
        "a gripping, funny film with a cast that never once lets the story sag or drift into cliche, "
        "and a score that carries every scene to its end",
        "dull", "an uneven but often charming debut from a director worth watching closely"};
    float lg[3][3 * 8];
    int32_t pred[3];
    int nl = 0;
    ftq_tokenizer *tok = NULL;
    ASSERT_OK(ftq_tokenizer_load(base, &tok));
    CU_ASSERT_FATAL(tok != NULL);
    for (int v = 0; v < 3; v++) {
        ftq_bert *m = NULL;
        ASSERT_OK(ftq_bert_load(v == 1 ? d : q, &m));
        CU_ASSERT_FATAL(m != NULL);
        if (v != 1)
            CU_ASSERT(ftq_bert_quantized_count(m) >= 2 * 6);
        ASSERT_OK(ftq_bert_apply_adapter(m, ad));
        CU_ASSERT((m->lora != NULL) == (v != 1)); /* beside on int8, merged on f32 */
        if (v == 2 && m->lora)
            m->lora->scale = 0.0f;
        nl = m->cfg.num_labels;
        CU_ASSERT_FATAL(nl >= 2 && nl <= 8);
        ASSERT_OK(ftq_bert_predict(m, tok, texts, NULL, 3, 64, 3, pred, lg[v]));
        if (v == 0 && m->lora)
            CU_ASSERT(m->lora->rows_cap > 64);
        ftq_bert_free(m);
    }
    ftq_tokenizer_free(tok);
    size_t n = 3 * (size_t)nl;
    double twin = rel_l2(lg[0], lg[1], n), effect = rel_l2(lg[2], lg[1], n);
    fprintf(stderr, "[classify: vs merged twin %.3g, adapter's effect %.3g] ", twin, effect);
    CU_ASSERT(twin < 2e-3);
    CU_ASSERT(effect > 10 * twin);
    /* embed through the command: int8 + adapter, the twin + adapter (merged), int8 alone */
    float *e[3] = {NULL, NULL, NULL};
    int ne = 0;
    for (int k = 0; k < 3; k++) {
        snprintf(args, sizeof args, "embed -m '%s' %s%s%s -p '%s' --json", k == 1 ? d : q, k < 2 ? "--adapter '" : "",
                 k < 2 ? ad : "", k < 2 ? "'" : "", texts[0]);
        cJSON *j = ftq_run_json(args);
        const cJSON *v = j ? cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "embeddings"), 0) : NULL;
        if (cJSON_IsArray(v) && (ne = cJSON_GetArraySize(v)) > 0 && (e[k] = malloc(sizeof(float) * (size_t)ne)))
            for (int i = 0; i < ne; i++)
                e[k][i] = (float)cJSON_GetArrayItem(v, i)->valuedouble;
        cJSON_Delete(j);
    }
    CU_ASSERT_FATAL(e[0] && e[1] && e[2]);
    twin = rel_l2(e[0], e[1], (size_t)ne);
    effect = rel_l2(e[2], e[1], (size_t)ne);
    fprintf(stderr, "[embed: vs merged twin %.3g, adapter's effect %.3g] ", twin, effect);
    CU_ASSERT(twin < 2e-3);
    CU_ASSERT(effect > 10 * twin);
    for (int k = 0; k < 3; k++)
        free(e[k]);
}

void test_register_lora(void)
{
    static const test_case cases[] = {
        {"product", test_product},
        {"merged_llama", test_merged_llama},
        {"merged_llama_qv_rslora", test_merged_llama_qv},
        {"merged_gpt2", test_merged_gpt2},
        {"fd_dropout", test_fd_dropout},
        {"targets", test_targets},
        {"peft_curve", test_peft_curve},
        {"roundtrip_llama", test_roundtrip_llama},
        {"roundtrip_gpt2", test_roundtrip_gpt2},
        {"qlora_int8", test_qlora_int8},
        {"qlora_int4", test_qlora_int4},
        {"qlora_q4_1_gguf", test_qlora_q4_1_gguf},
        {"adapter_on_quantized", test_adapter_on_quantized},
        {"bert_fd", test_bert_fd},
        {"bert_qlora_int8", test_bert_qlora_int8},
        {"trainer_resume", test_trainer_resume},
        {"bert_resume", test_bert_resume},
        {"embed_adapter", test_embed_adapter},
        {"bert_adapter_on_quantized", test_bert_adapter_on_quantized},
        {NULL, NULL},
    };
    test_add_suite("lora", cases);
}
