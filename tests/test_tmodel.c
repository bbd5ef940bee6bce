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

static ftq_model *load(const char *dir)
{
    ftq_model *m = NULL;
    int rc = ftq_model_load(dir, &m);
    if (rc != FTQ_OK)
        fprintf(stderr, "\n  cannot load '%s': %s\n", dir, ftq_last_error());
    CU_ASSERT_EQUAL(rc, FTQ_OK);
    return m;
}

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
    ftq_model *m = load(shared_path(dir));
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

void test_register_tmodel(void)
{
    static const test_case cases[] = {
        {"golden_gpt2", test_golden_gpt2},
        {"golden_llama", test_golden_llama},
        {NULL, NULL},
    };
    test_add_suite("tmodel", cases);
}
