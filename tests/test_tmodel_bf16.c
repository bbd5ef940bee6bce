/* test_tmodel_bf16.c - bf16 mixed precision of the trainable model (finetune/tmodel_bf16.c):
 * loss and gradients of the tiny random GPT-2 / Llama against the torch float64 goldens
 * within bf16 tolerances; a loss curve of real training (stories260K on TinyStories text,
 * AdamW) against the fp32 curve; the bf16 copies follow the weights after every optimizer
 * step and after ftq_tmodel_params_updated; bit-identical results on 1 and 2 threads; the
 * command line's --precision. */
#include <stdlib.h>
#include <string.h>

#include "finetune/tmodel.h"
#include "kernels/gemm_bf16.h"
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

/* ---- against the float64 goldens ------------------------------------------------------------ */

/* The golden prompt's loss and every tensor's gradient norm vs torch float64. bf16 rounds
 * each matmul operand to 8 significant bits (relative error up to 2^-9 = 2e-3 per value,
 * random in sign), so the loss is held to 1e-2 relative and each gradient norm to 5e-2
 * (measured on AMX: loss 7e-6 / 8e-6, worst norm 3e-3 / 1e-3 for GPT-2 / Llama); the same
 * gradients in fp32 agree to 1e-3 (test_tmodel). The bf16 gradient as a whole points the
 * same way as the golden: cosine similarity > 0.999 over all trainable parameters. */
static void golden_case(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/golden_loss_grads.json", dir);
    ftq_model *m = test_load_model(shared_path(dir));
    cJSON *j = load_json(shared_path(path));
    ftq_tmodel *tm = NULL, *tf = NULL;
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
    tf = tmodel(m, &p);
    p.precision = FTQ_PRECISION_BF16;
    tm = tmodel(m, &p);
    if (!tm || !tf)
        goto done;
    float loss = 0.0f, lf = 0.0f;
    ASSERT_OK(ftq_tmodel_forward(tm, ids, NULL, 1, (int)n, tg, &loss, NULL));
    ASSERT_OK(ftq_tmodel_backward(tm, 1.0f));
    ASSERT_OK(ftq_tmodel_forward(tf, ids, NULL, 1, (int)n, tg, &lf, NULL));
    ASSERT_OK(ftq_tmodel_backward(tf, 1.0f));
    double want = cJSON_GetObjectItem(j, "loss")->valuedouble;
    ASSERT_NEAR(loss, want, 1e-2 * want);
    double worst = 0;
    const cJSON *it;
    int count = 0;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "grad_norms"))
    {
        const ftq_param_segment *s = NULL;
        for (size_t i = 0; i < ftq_tmodel_segment_count(tm); i++)
            if (strcmp(ftq_tmodel_segment(tm, i)->name, it->string) == 0)
                s = ftq_tmodel_segment(tm, i);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        const float *g = ftq_tmodel_grad_buffer(tm, NULL) + (s->offset - ftq_tmodel_trainable_offset(tm));
        double ss = 0.0;
        for (size_t i = 0; i < s->size; i++)
            ss += (double)g[i] * g[i];
        double got = sqrt(ss), e = it->valuedouble, rel = fabs(got - e) / e;
        worst = fmax(worst, rel);
        if (!(rel <= 5e-2))
            fprintf(stderr, "\n  %s: |grad| %.9g, expected %.9g\n", it->string, got, e);
        CU_ASSERT(rel <= 5e-2);
        count++;
    }
    ASSERT_INT_EQ(count, ftq_tmodel_segment_count(tm));
    size_t ng;
    const float *gb = ftq_tmodel_grad_buffer(tm, &ng), *gf = ftq_tmodel_grad_buffer(tf, NULL);
    double dot = 0, nb = 0, nf = 0;
    for (size_t i = 0; i < ng; i++) {
        dot += (double)gb[i] * gf[i];
        nb += (double)gb[i] * gb[i];
        nf += (double)gf[i] * gf[i];
    }
    double cosine = dot / sqrt(nb * nf);
    CU_ASSERT(cosine > 0.999);
    fprintf(stderr, "[bf16 path %s: loss rel %.1e, worst norm rel %.1e, cosine to fp32 %.6f] ",
            ftq_bf16_path_name(ftq_bf16_best_path()), fabs(loss - want) / want, worst, cosine);
done:
    free(ids);
    free(tg);
    ftq_tmodel_free(tm);
    ftq_tmodel_free(tf);
    cJSON_Delete(j);
    ftq_model_free(m);
}

static void test_golden_gpt2(void) { golden_case(GPT2_DIR); }
static void test_golden_llama(void) { golden_case(LLAMA_DIR); }

/* ---- a loss curve --------------------------------------------------------------------------------- */

/* B x T training ids from the TinyStories sample (consecutive blocks), stories260K's tokenizer. */
static int32_t *story_ids(int B, int T)
{
    ftq_tokenizer *tk = NULL;
    if (ftq_tokenizer_load(shared_path("models/stories260K"), &tk) != FTQ_OK)
        return NULL;
    FILE *f = fopen(shared_path("data/tinystories/tinystories_sample.txt"), "rb");
    char *text = malloc(1 << 16);
    size_t len = f ? fread(text, 1, (1 << 16) - 1, f) : 0;
    if (f)
        fclose(f);
    text[len] = 0;
    int32_t *ids = NULL, *out = NULL;
    size_t n = 0;
    if (ftq_tokenizer_encode(tk, text, len, 1, &ids, &n) == FTQ_OK && n >= (size_t)B * T + 1) {
        out = malloc(sizeof(int32_t) * ((size_t)B * T + 1));
        memcpy(out, ids, sizeof(int32_t) * ((size_t)B * T + 1));
    }
    free(ids);
    free(text);
    ftq_tokenizer_free(tk);
    return out;
}

/* STEPS AdamW steps (lr 1e-3) of stories260K, each on the next B x T tokens of TinyStories
 * (no batch seen twice), fp32 and bf16 from the same weights: the bf16 loss stays within
 * 1% of the fp32 loss at every step (measured 0.2% worst on AMX), and both curves fall by the same
 * amount to within 0.02 nats. */
static void test_loss_curve(void)
{
    enum { B = 4, T = 32, STEPS = 16 };
    ftq_model *m = test_load_model(shared_path("models/stories260K"));
    int32_t *all = story_ids(B * STEPS, T);
    CU_ASSERT_PTR_NOT_NULL(all);
    if (!m || !all) {
        ftq_model_free(m);
        free(all);
        return;
    }
    double curve[2][STEPS];
    for (int prec = 0; prec < 2; prec++) {
        ftq_tmodel_params p = ftq_tmodel_default_params();
        p.max_batch = B;
        p.max_seq = T;
        p.precision = prec ? FTQ_PRECISION_BF16 : FTQ_PRECISION_FP32;
        ftq_tmodel *tm = tmodel(m, &p);
        if (!tm)
            break;
        size_t np, ng;
        float *w = ftq_tmodel_param_buffer(tm, &np), *g = ftq_tmodel_grad_buffer(tm, &ng);
        float *mo = calloc(ng, sizeof(float)), *v = calloc(ng, sizeof(float));
        ftq_adamw_params ap = {0.9f, 0.999f, 1e-8f, 0.0f};
        for (int s = 0; s < STEPS; s++) {
            int32_t ids[B * T], tg[B * T];
            const int32_t *blk = all + (size_t)s * B * T;
            for (int i = 0; i < B * T; i++) {
                ids[i] = blk[i];
                tg[i] = blk[i + 1];
            }
            float loss = 0;
            ftq_tmodel_zero_grad(tm);
            ASSERT_OK(ftq_tmodel_forward(tm, ids, NULL, B, T, tg, &loss, NULL));
            ASSERT_OK(ftq_tmodel_backward(tm, 1.0f));
            ftq_adamw_update(w + ftq_tmodel_trainable_offset(tm), g, mo, v, ng, 1e-3f, &ap, s + 1, 0);
            curve[prec][s] = loss;
        }
        free(mo);
        free(v);
        ftq_tmodel_free(tm);
    }
    test_curves_agree(curve[0], curve[1], STEPS, 1e-2, 0.02);
    free(all);
    ftq_model_free(m);
}

/* ---- the copies follow the weights ---------------------------------------------------------------- */

static float lm_loss(ftq_tmodel *tm, const int32_t *ids, const int32_t *tg, int B, int T)
{
    float loss = NAN;
    ASSERT_OK(ftq_tmodel_forward(tm, ids, NULL, B, T, tg, &loss, NULL));
    return loss;
}

/* After backward + an optimizer step, and after writing the weights + params_updated, a
 * bf16 model computes exactly what a new bf16 model made from those weights computes: the
 * bf16 copies are refreshed (and only once: a second forward gives the same bits). */
static void test_refresh(void)
{
    enum { B = 2, T = 16 };
    ftq_model *m = test_load_model(shared_path(LLAMA_DIR));
    if (!m)
        return;
    ftq_tmodel_params p = ftq_tmodel_default_params();
    p.max_batch = B;
    p.max_seq = T;
    p.precision = FTQ_PRECISION_BF16;
    ftq_tmodel *tm = tmodel(m, &p), *t2 = tmodel(m, &p);
    if (!tm || !t2)
        goto done;
    int32_t ids[B * T], tg[B * T];
    for (int i = 0; i < B * T; i++) {
        ids[i] = (i * 37 + 5) % 500;
        tg[i] = (i * 11 + 3) % 500;
    }
    size_t np, ng;
    float *w = ftq_tmodel_param_buffer(tm, &np), *g = ftq_tmodel_grad_buffer(tm, &ng);
    float *w2 = ftq_tmodel_param_buffer(t2, NULL);
    float *mo = calloc(ng, sizeof(float)), *v = calloc(ng, sizeof(float));
    ftq_adamw_params ap = {0.9f, 0.999f, 1e-8f, 0.01f};
    float l0 = lm_loss(tm, ids, tg, B, T);
    ASSERT_OK(ftq_tmodel_backward(tm, 1.0f));
    ftq_adamw_update(w + ftq_tmodel_trainable_offset(tm), g, mo, v, ng, 1e-2f, &ap, 1, 1);
    float l1 = lm_loss(tm, ids, tg, B, T), l1b = lm_loss(tm, ids, tg, B, T);
    memcpy(w2, w, np * sizeof(float));
    ftq_tmodel_params_updated(t2);
    float l2 = lm_loss(t2, ids, tg, B, T);
    CU_ASSERT(l1 != l0);
    CU_ASSERT(memcmp(&l1, &l2, sizeof l1) == 0);
    CU_ASSERT(memcmp(&l1, &l1b, sizeof l1) == 0);
    /* without params_updated the copies would be stale: writing w2 back to the first
     * weights and declaring it gives l0 again */
    ftq_tmodel *t3 = tmodel(m, &p);
    if (t3) {
        memcpy(w2, ftq_tmodel_param_buffer(t3, NULL), np * sizeof(float));
        ftq_tmodel_params_updated(t2);
        float l3 = lm_loss(t2, ids, tg, B, T);
        CU_ASSERT(memcmp(&l3, &l0, sizeof l0) == 0);
        ftq_tmodel_free(t3);
    }
    free(mo);
    free(v);
done:
    ftq_tmodel_free(tm);
    ftq_tmodel_free(t2);
    ftq_model_free(m);
}

/* ---- threads ---------------------------------------------------------------------------------------- */

/* Loss and every gradient bit for bit on 1 and 2 threads (each output block of a bf16
 * product is one thread's, in one order; the fp32 kernels between are row-parallel). */
static void test_threads(void)
{
    const char *dirs[2] = {GPT2_DIR, LLAMA_DIR};
    int saved = ftq_get_threads();
    for (int d = 0; d < 2; d++) {
        ftq_model *m = test_load_model(shared_path(dirs[d]));
        if (!m)
            continue;
        ftq_tmodel_params p = ftq_tmodel_default_params();
        p.max_batch = 2;
        p.max_seq = 96;
        p.precision = FTQ_PRECISION_BF16;
        ftq_tmodel *tm = tmodel(m, &p);
        int N = 2 * p.max_seq;
        int32_t *ids = malloc(sizeof(int32_t) * N), *tg = malloc(sizeof(int32_t) * N);
        for (int i = 0; i < N; i++) {
            ids[i] = (i * 31 + 7) % 500;
            tg[i] = i % 7 == 3 ? FTQ_IGNORE_INDEX : (i * 13 + 1) % 500;
        }
        size_t n = 0;
        float *g = tm ? ftq_tmodel_grad_buffer(tm, &n) : NULL, *g1 = malloc((n ? n : 1) * sizeof(float)), l1 = 0,
              l2 = 0;
        for (int th = 1; tm && th <= 2; th++) {
            ftq_set_threads(th);
            ftq_tmodel_zero_grad(tm);
            ASSERT_OK(ftq_tmodel_forward(tm, ids, NULL, 2, p.max_seq, tg, th == 1 ? &l1 : &l2, NULL));
            ASSERT_OK(ftq_tmodel_backward(tm, 1.0f));
            if (th == 1)
                memcpy(g1, g, n * sizeof(float));
        }
        ftq_set_threads(saved);
        CU_ASSERT(memcmp(&l1, &l2, sizeof l1) == 0);
        CU_ASSERT(n > 0 && memcmp(g1, g, n * sizeof(float)) == 0);
        free(g1);
        free(ids);
        free(tg);
        ftq_tmodel_free(tm);
        ftq_model_free(m);
    }
}

/* ---- the command line ------------------------------------------------------------------------------- */

static void test_cli(void)
{
    char args[2048];
    snprintf(args, sizeof args, "finetune --task lm -m '%s' -d '%s' --precision fp16 -o '%s/out'",
             shared_path("models/stories260K"), shared_path("data/tinystories/tinystories_sample.txt"),
             test_tmpdir("bf16_cli"));
    ftq_expect_error(args, "unknown --precision 'fp16'", NULL);
    snprintf(args, sizeof args, "finetune --task lm --mode lora -m '%s' -d '%s' --precision bf16 -o '%s/out3'",
             shared_path("models/stories260K"), shared_path("data/tinystories/tinystories_sample.txt"),
             test_tmpdir("bf16_cli3"));
    ftq_expect_error(args, "--precision bf16 does not apply to --mode lora yet", NULL);
}

void test_register_tmodel_bf16(void)
{
    static const test_case cases[] = {
        {"golden_gpt2", test_golden_gpt2},
        {"golden_llama", test_golden_llama},
        {"loss_curve", test_loss_curve},
        {"refresh", test_refresh},
        {"threads", test_threads},
        {"cli", test_cli},
        {NULL, NULL},
    };
    test_add_suite("tmodel_bf16", cases);
}
