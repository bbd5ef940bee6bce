/* test_rope_scaling.c - rope_scaling "llama3" (Llama 3.1 / 3.2) and "linear" against PyTorch:
 * tiny random LlamaForCausalLM models built by transformers 4.46.3
 * (tools/make_rope_fixtures.py -> tests/fixtures/rope/), 96 positions with an original
 * context of 32, so every frequency band of llama3 is exercised. Checked: the forward's
 * logits, the trainer's loss and q/k gradients (its RoPE tables), and the same models through
 * GGUF (llama3 as llama.cpp's converter writes it: a rope_freqs tensor; linear as
 * rope.scaling.type / factor keys). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

/* Logits of ftq vs PyTorch's float32 ones: |diff| <= 5e-5 * (1 + |want|) at every entry
 * (the two differ by float rounding only; without the scaling they differ by up to 7). */
#define LOGIT_TOL 5e-5

static double max_logit_err(const char *model_path, const cJSON *ref)
{
    ftq_model *m = test_load_model(model_path);
    if (!m)
        return INFINITY;
    size_t n;
    int32_t *ids = json_ints(cJSON_GetObjectItem(ref, "ids"), &n);
    int V = ftq_model_get_config(m)->vocab_size;
    float *lg = malloc(sizeof(float) * n * (size_t)V);
    ftq_session *s = NULL;
    double worst = INFINITY;
    if (ftq_session_new(m, (int)n, &s) == FTQ_OK && ftq_session_eval(s, ids, (int)n, lg, 1) == FTQ_OK) {
        worst = 0.0;
        const cJSON *rows = cJSON_GetObjectItem(ref, "logits");
        for (size_t t = 0; t < n; t++) {
            const cJSON *row = cJSON_GetArrayItem(rows, (int)t);
            for (int v = 0; v < V; v++) {
                double want = strtod(cJSON_GetArrayItem(row, v)->valuestring, NULL);
                double e = fabs(lg[t * (size_t)V + (size_t)v] - want) / (1.0 + fabs(want));
                worst = e > worst ? e : worst;
            }
        }
    }
    ftq_session_free(s);
    free(lg);
    free(ids);
    ftq_model_free(m);
    return worst;
}

static cJSON *load_ref(const char *name)
{
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/rope/%s/logits.json", name);
    return load_json(source_path(rel));
}

static void check_forward(const char *name)
{
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/rope/%s", name);
    cJSON *ref = load_ref(name);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ref);
    double e = max_logit_err(source_path(rel), ref);
    if (!(e <= LOGIT_TOL))
        fprintf(stderr, "\n  %s: logits differ from PyTorch by %.3g (relative)\n", name, e);
    CU_ASSERT(e <= LOGIT_TOL);
    cJSON_Delete(ref);
}

static void test_llama3_forward(void)
{
    ftq_model_config c;
    ASSERT_OK(ftq_config_load(source_path("tests/fixtures/rope/llama3/config.json"), &c));
    CU_ASSERT(c.rope_scaling == FTQ_ROPE_SCALING_LLAMA3 && c.rope_factor == 8.0f && c.rope_low_freq_factor == 1.0f &&
              c.rope_high_freq_factor == 4.0f && c.rope_original_max_position == 32);
    check_forward("llama3");
}

static void test_linear_forward(void)
{
    ftq_model_config c;
    ASSERT_OK(ftq_config_load(source_path("tests/fixtures/rope/linear/config.json"), &c));
    CU_ASSERT(c.rope_scaling == FTQ_ROPE_SCALING_LINEAR && c.rope_factor == 4.0f);
    check_forward("linear");
}

/* The trainer builds its own RoPE tables: HF's loss (labels = ids) and the q/k gradient
 * norms within 1e-4 relative. */
static void check_trainer(const char *name)
{
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/rope/%s", name);
    ftq_model *m = test_load_model(source_path(rel));
    cJSON *ref = load_ref(name);
    CU_ASSERT_FATAL(m && ref);
    size_t n;
    int32_t *ids = json_ints(cJSON_GetObjectItem(ref, "ids"), &n);
    int32_t *tg = malloc(sizeof(int32_t) * n);
    for (size_t i = 0; i < n; i++)
        tg[i] = i + 1 < n ? ids[i + 1] : FTQ_IGNORE_INDEX;
    ftq_tmodel_params p = ftq_tmodel_default_params();
    p.max_batch = 1;
    p.max_seq = (int)n;
    ftq_tmodel *tm = NULL;
    ASSERT_OK(ftq_tmodel_new(m, &p, &tm));
    float loss = 0.0f;
    ftq_tmodel_zero_grad(tm);
    ASSERT_OK(ftq_tmodel_forward(tm, ids, NULL, 1, (int)n, tg, &loss, NULL));
    ASSERT_OK(ftq_tmodel_backward(tm, 1.0f));
    double want = cJSON_GetObjectItem(ref, "loss")->valuedouble;
    CU_ASSERT(fabs(loss - want) <= 1e-4 * want);
    size_t n_train = 0;
    const float *g = ftq_tmodel_grad_buffer(tm, &n_train);
    size_t off = ftq_tmodel_trainable_offset(tm);
    const cJSON *it;
    int checked = 0;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(ref, "grad_norms"))
    {
        for (size_t k = 0; k < ftq_tmodel_segment_count(tm); k++) {
            const ftq_param_segment *s = ftq_tmodel_segment(tm, k);
            if (strcmp(s->name, it->string) != 0)
                continue;
            double ss = 0.0;
            for (size_t i = 0; i < s->size; i++)
                ss += (double)g[s->offset - off + i] * g[s->offset - off + i];
            double e = fabs(sqrt(ss) - it->valuedouble) / it->valuedouble;
            if (!(e <= 1e-4))
                fprintf(stderr, "\n  %s %s: |grad| %.9g, expected %.9g\n", name, s->name, sqrt(ss), it->valuedouble);
            CU_ASSERT(e <= 1e-4);
            checked++;
        }
    }
    ASSERT_INT_EQ(checked, 4);
    ftq_tmodel_free(tm);
    free(ids);
    free(tg);
    cJSON_Delete(ref);
    ftq_model_free(m);
}

static void test_trainer(void)
{
    check_trainer("llama3");
    check_trainer("linear");
}

/* HF directory -> GGUF (ftq_model_export_gguf, as `ftq export` does): llama3 becomes
 * llama.cpp's rope_freqs tensor (the converter's factors), linear the rope.scaling keys;
 * read back, the logits still match PyTorch. The fixtures have no tokenizer (their 64 ids
 * are just ids): the file gets stories260K's, which does not touch the logits. */
static void test_gguf(void)
{
    const char *tmp = test_tmpdir("rope_gguf");
    static const char *const names[] = {"llama3", "linear"};
    ftq_tokenizer *tok = NULL;
    ASSERT_OK(ftq_tokenizer_load_kind(source_path("datasets/stories260K"), FTQ_TOKENIZER_SPM, &tok));
    for (int i = 0; i < 2; i++) {
        char src[256], out[1024], cfgp[300];
        snprintf(src, sizeof src, "tests/fixtures/rope/%s", names[i]);
        snprintf(cfgp, sizeof cfgp, "%s/config.json", src);
        snprintf(out, sizeof out, "%s/%s.gguf", tmp, names[i]);
        ftq_model_config cfg;
        ftq_checkpoint *ck = NULL;
        ASSERT_OK(ftq_config_load(source_path(cfgp), &cfg));
        ASSERT_OK(ftq_checkpoint_open(source_path(src), &ck));
        ASSERT_OK(ftq_model_export_gguf(&cfg, ck, tok, FTQ_GGML_F32, out, NULL));
        ftq_checkpoint_close(ck);
        ftq_gguf *g = NULL;
        ASSERT_OK(ftq_gguf_open(out, &g));
        const ftq_gguf_tensor *rf = ftq_gguf_find_tensor(g, "rope_freqs.weight");
        const char *s = NULL;
        size_t len = 0;
        double f = 0;
        if (i == 0) {
            CU_ASSERT(rf && rf->type == FTQ_GGML_F32 && rf->n_dims == 1 && rf->ne[0] == 8);
            CU_ASSERT(ftq_gguf_get_str(g, "llama.rope.scaling.type", &s, &len) == FTQ_ENOTFOUND);
            if (rf) { /* bands: kept, smoothed, divided by 8 */
                const float *fa = rf->data;
                CU_ASSERT(fa[0] == 1.0f && fa[1] > 1.0f && fa[1] < 8.0f && fa[2] == 8.0f && fa[7] == 8.0f);
            }
        } else {
            CU_ASSERT(rf == NULL);
            CU_ASSERT(ftq_gguf_get_str(g, "llama.rope.scaling.type", &s, &len) == FTQ_OK && len == 6 &&
                      memcmp(s, "linear", 6) == 0);
            CU_ASSERT(ftq_gguf_get_float(g, "llama.rope.scaling.factor", &f) == FTQ_OK && f == 4.0);
        }
        ftq_gguf_close(g);
        cJSON *ref = load_ref(names[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ref);
        double e = max_logit_err(out, ref);
        if (!(e <= LOGIT_TOL))
            fprintf(stderr, "\n  %s.gguf: logits differ from PyTorch by %.3g (relative)\n", names[i], e);
        CU_ASSERT(e <= LOGIT_TOL);
        cJSON_Delete(ref);
    }
    ftq_tokenizer_free(tok);
}

#define LLAMA_BASE                                                                                                 \
    "\"model_type\":\"llama\",\"vocab_size\":100,\"hidden_size\":32,\"intermediate_size\":64,"                    \
    "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"max_position_embeddings\":64"

static void expect_config_error(const char *json, int status, const char *phrase)
{
    ftq_model_config c;
    int rc = ftq_config_parse(json, strlen(json), "DIR/config.json", &c);
    CU_ASSERT_EQUAL(rc, status);
    if (!strstr(ftq_last_error(), phrase) || strchr(ftq_last_error(), '\n'))
        fprintf(stderr, "\n  got '%s', expected it to contain '%s'\n", ftq_last_error(), phrase);
    CU_ASSERT_PTR_NOT_NULL(strstr(ftq_last_error(), phrase));
}

/* Unknown types are refused with one line naming the type; malformed parameters too. */
static void test_refusals(void)
{
    expect_config_error("{" LLAMA_BASE ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4.0}}", FTQ_EUNSUPPORTED,
                        "key \"rope_scaling\" (type \"yarn\") is not supported (expected linear or llama3)");
    expect_config_error("{" LLAMA_BASE ",\"rope_scaling\":{\"type\":\"dynamic\",\"factor\":2.0}}", FTQ_EUNSUPPORTED,
                        "(type \"dynamic\") is not supported");
    expect_config_error("{" LLAMA_BASE ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0}}", FTQ_EFORMAT,
                        "key \"rope_scaling\" of type \"llama3\" has no \"low_freq_factor\"");
    expect_config_error("{" LLAMA_BASE ",\"rope_scaling\":{\"type\":\"linear\",\"factor\":-2}}", FTQ_EFORMAT,
                        "\"factor\" must be a positive number, got -2");
    expect_config_error("{" LLAMA_BASE ",\"rope_scaling\":{\"factor\":2}}", FTQ_EFORMAT,
                        "has no string \"rope_type\" or \"type\"");
    expect_config_error("{" LLAMA_BASE ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8,\"low_freq_factor\":4,"
                        "\"high_freq_factor\":1,\"original_max_position_embeddings\":8192}}",
                        FTQ_EFORMAT, "high_freq_factor 1 must be above low_freq_factor 4");
    ftq_model_config c;
    const char *def = "{" LLAMA_BASE ",\"rope_scaling\":{\"rope_type\":\"default\"}}";
    ASSERT_OK(ftq_config_parse(def, strlen(def), "x", &c));
    CU_ASSERT_EQUAL(c.rope_scaling, FTQ_ROPE_SCALING_NONE);
}

void test_register_rope_scaling(void)
{
    static const test_case cases[] = {
        {"llama3_forward", test_llama3_forward},
        {"linear_forward", test_linear_forward},
        {"trainer", test_trainer},
        {"gguf", test_gguf},
        {"refusals", test_refusals},
        {NULL, NULL},
    };
    test_add_suite("rope_scaling", cases);
}
