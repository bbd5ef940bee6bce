/* test_quant_calib.c - calibrated quantization of a whole model (quant/quantize_calib.c and
 * its use in quant/quantize_model.c) on stories260K: the statistics pass (sum x x^T's
 * diagonal against the separately accumulated sum of x_j^2, token count), KL divergence
 * from the f32 model of RTN / importance search / GPTQ / mixed precision (calibrated on Tiny
 * Shakespeare, measured on TinyStories: other text), the metadata that records the
 * calibration and the plan, and the refusals. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "include/ftq_quant.h"
#include "model/model.h"
#include "quant/awq.h"
#include "quant/quantize_calib.h"
#include "tests/test_util.h"

#define STORIES "models/stories260K"

/* The ids of the first 64 kB of a text (more than any test here uses: the whole files
 * take most of the suite's time to tokenize; 64 kB cuts a sentence, not a window used). */
static int32_t *tokens_of(const char *file, size_t *n)
{
    ftq_tokenizer *tk = NULL;
    char *text = NULL;
    size_t len = 0;
    int32_t *ids = NULL;
    *n = 0;
    if (ftq_tokenizer_load(shared_path(STORIES), &tk) != FTQ_OK || ftq_read_file(shared_path(file), &text, &len) != FTQ_OK ||
        ftq_tokenizer_encode(tk, text, len < 65536 ? len : 65536, 0, &ids, n) != FTQ_OK)
        CU_FAIL("cannot tokenize");
    free(text);
    ftq_tokenizer_free(tk);
    return ids;
}

static ftq_quantize_params cparams(const int32_t *calib, size_t n)
{
    ftq_quantize_params p = ftq_quantize_default_params();
    p.bits = 4;
    p.group = 32;
    p.embeddings = FTQ_QPOLICY_INT8;
    p.calib = calib;
    p.n_calib = n;
    p.calib_ctx = 256;
    p.calib_bos = 1;
    p.calib_name = "input.txt";
    return p;
}

static void test_stats(void)
{
    size_t n = 0;
    int32_t *ids = tokens_of("data/tinyshakespeare/input.txt", &n);
    ftq_model *m = NULL;
    ASSERT_OK(ftq_model_load(shared_path(STORIES), &m));
    ftq_quantize_params p = cparams(ids, 2000);
    ftq_act_stats st;
    ASSERT_OK(ftq_qcalib_collect(m, &p, 1, &st));
    ASSERT_INT_EQ(st.tokens, 7 * 256); /* 2000 / 255 windows of BOS + 255 */
    const ftq_model_config *c = &m->cfg;
    const int dims[4] = {c->hidden_size, c->n_heads * c->head_dim, c->hidden_size, c->intermediate_size};
    const double *sq[4] = {st.attn_in, st.o_in, st.mlp_in, st.down_in};
    const float *gr[4] = {st.attn_gram, st.o_gram, st.mlp_gram, st.down_gram};
    double worst = 0;
    int asym = 0;
    for (int k = 0; k < 4; k++)
        for (int l = 0; l < c->n_layers; l++) {
            const size_t d = (size_t)dims[k];
            const float *g = gr[k] + (size_t)l * d * d;
            for (size_t j = 0; j < d; j++) {
                double a = sq[k][(size_t)l * d + j], b = g[j * d + j];
                CU_ASSERT(a > 0);
                double rel = fabs(a - b) / a;
                worst = rel > worst ? rel : worst;
                for (size_t i = 0; i < j; i++)
                    asym += fabsf(g[i * d + j] - g[j * d + i]) > 1e-4f * (fabsf(g[i * d + j]) + 1e-6f);
            }
        }
    /* float sgemm against double sums over 1,792 tokens */
    CU_ASSERT(worst < 1e-4);
    ASSERT_INT_EQ(asym, 0);
    ftq_qcalib_stats_free(&st);
    p.n_calib = 200; /* fewer than one window */
    CU_ASSERT_EQUAL(ftq_qcalib_collect(m, &p, 0, &st), FTQ_EINVAL);
    CU_ASSERT(strstr(ftq_last_error(), "fewer than one window") != NULL);
    ftq_model_free(m);
    free(ids);
}

/* KL(f32 || dir) and top-1 agreement on 8 chunks of 256 TinyStories tokens. */
static double kl_of(const char *dir, const ftq_model *ref, const int32_t *ids, size_t n, double *top1)
{
    ftq_model *m = NULL;
    ftq_ppl_params pp = ftq_ppl_default_params();
    pp.n_ctx = 256;
    pp.n_chunks = 8;
    pp.ref = ref;
    ftq_ppl_result r;
    if (ftq_model_load(dir, &m) != FTQ_OK || ftq_perplexity(m, ids, n, &pp, &r) != FTQ_OK) {
        CU_FAIL(ftq_last_error());
        ftq_model_free(m);
        return NAN;
    }
    ftq_model_free(m);
    *top1 = r.top1_agree;
    return r.kl;
}

static void test_methods(void)
{
    size_t nc = 0, ne = 0;
    int32_t *calib = tokens_of("data/tinyshakespeare/input.txt", &nc);
    int32_t *eval = tokens_of("data/tinystories/tinystories_sample.txt", &ne);
    ftq_model *ref = NULL;
    ASSERT_OK(ftq_model_load(shared_path(STORIES), &ref));
    const char *tmp = test_tmpdir("qcal_methods");
    char d[4][1024];
    const char *names[4] = {"rtn", "imatrix", "gptq", "mixed"};
    ftq_quantize_report rep[4];
    for (int k = 0; k < 4; k++) {
        snprintf(d[k], sizeof d[k], "%s/%s", tmp, names[k]);
        ftq_quantize_params p = cparams(calib, 4096);
        p.calib_ctx = 128; /* the sensitivity runs then use 128 tokens */
        if (k == 0)
            p.calib = NULL;
        p.method = k >= 2 ? FTQ_QMETHOD_GPTQ : FTQ_QMETHOD_RTN;
        p.target_bits = k == 3 ? 5.5 : 0;
        ASSERT_OK(ftq_quantize_model(shared_path(STORIES), d[k], &p, &rep[k]));
    }
    double kl[4], t1[4];
    for (int k = 0; k < 4; k++)
        kl[k] = kl_of(d[k], ref, eval, ne, &t1[k]);
    fprintf(stderr, "\n    KL rtn %.4f imatrix %.4f gptq %.4f mixed %.4f; top-1 %.3f %.3f %.3f %.3f ", kl[0], kl[1], kl[2],
            kl[3], t1[0], t1[1], t1[2], t1[3]);
    CU_ASSERT(kl[1] < 0.9 * kl[0]);
    CU_ASSERT(kl[2] < 0.9 * kl[0]);
    CU_ASSERT(kl[3] < kl[2]);
    CU_ASSERT(t1[3] > t1[0]);
    /* report: methods per tensor, the calibration tokens, the budget kept */
    ASSERT_INT_EQ(rep[1].calib_tokens, 32 * 128); /* 4096 / 127 windows of BOS + 127 */
    int n8 = 0, n_lin = 0;
    for (size_t i = 0; i < rep[3].n_tensors; i++) {
        const ftq_quantize_tensor_report *t = &rep[3].tensors[i];
        if (t->sensitivity < 0)
            continue;
        n_lin++;
        n8 += strncmp(t->scheme, "q8", 2) == 0;
        CU_ASSERT_STRING_EQUAL(t->method, "gptq");
        CU_ASSERT(t->out_err >= 0);
    }
    ASSERT_INT_EQ(n_lin, 5 * 7);
    CU_ASSERT(n8 > 0 && n8 < n_lin);
    CU_ASSERT(rep[3].linear_bits <= 5.5 && rep[3].linear_bits > 4.5);
    /* q4 g32 is 4.5 bits; down_proj's 172 columns end in a partial group of 12 */
    CU_ASSERT(rep[0].linear_bits > 4.5 && rep[0].linear_bits < 4.52);
    for (size_t i = 0; i < rep[1].n_tensors; i++) {
        const char *nm = rep[1].tensors[i].name;
        int lin = strstr(nm, "layers.") != NULL;
        CU_ASSERT_STRING_EQUAL(rep[1].tensors[i].method, lin ? "imatrix" : "rtn"); /* embedding: no inputs */
        CU_ASSERT_STRING_EQUAL(rep[0].tensors[i].method, "rtn");
    }
    /* the layer with the most KL per extra bit is int8 */
    const ftq_quantize_tensor_report *best = NULL;
    for (size_t i = 0; i < rep[3].n_tensors; i++) {
        const ftq_quantize_tensor_report *t = &rep[3].tensors[i];
        if (t->sensitivity >= 0 && (!best || t->sensitivity / (double)t->numel > best->sensitivity / (double)best->numel))
            best = t;
    }
    CU_ASSERT_PTR_NOT_NULL_FATAL(best);
    CU_ASSERT_STRING_EQUAL(best->scheme, "q8_g32");

    /* metadata: the calibration, the plan, each tensor's method */
    ftq_checkpoint *ck = NULL;
    ASSERT_OK(ftq_checkpoint_open(d[3], &ck));
    const ftq_st_file *f = ftq_checkpoint_file(ck, 0);
    cJSON *c = cJSON_Parse(ftq_st_metadata_get(f, "ftq.quant.calibration"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(c, "file")->valuestring, "input.txt");
    ASSERT_INT_EQ(cJSON_GetObjectItem(c, "tokens")->valueint, 32 * 128);
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(c, "method")->valuestring, "gptq");
    ASSERT_NEAR(cJSON_GetObjectItem(c, "target_bits")->valuedouble, 5.5, 0);
    const cJSON *plan = cJSON_GetObjectItem(c, "plan");
    ASSERT_INT_EQ(cJSON_GetArraySize(plan), 35);
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(plan, best->name)->valuestring, "q8_g32");
    cJSON_Delete(c);
    cJSON *tl = cJSON_Parse(ftq_st_metadata_get(f, "ftq.quant.tensors"));
    const cJSON *e = cJSON_GetObjectItem(tl, best->name);
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(e, "method")->valuestring, "gptq");
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(e, "scheme")->valuestring, "q8");
    cJSON_Delete(tl);
    ftq_checkpoint_close(ck);
    ASSERT_OK(ftq_checkpoint_open(d[0], &ck)); /* no calibration, no key */
    CU_ASSERT_PTR_NULL(ftq_st_metadata_get(ftq_checkpoint_file(ck, 0), "ftq.quant.calibration"));
    ftq_checkpoint_close(ck);
    for (int k = 0; k < 4; k++)
        ftq_quantize_report_free(&rep[k]);
    ftq_model_free(ref);
    free(calib);
    free(eval);
}

/* [n, V] logits of ids on a fresh session */
/* AWQ on stories260K (calibrated on Tiny Shakespeare, measured on TinyStories): lower KL
 * than the importance search alone; each linear layer's method, the alphas in the
 * metadata, and the norms written with the scales folded in exactly where a block's
 * q/k/v alpha is not 0. */
static void test_awq(void)
{
    size_t nc = 0, ne = 0;
    int32_t *calib = tokens_of("data/tinyshakespeare/input.txt", &nc);
    int32_t *eval = tokens_of("data/tinystories/tinystories_sample.txt", &ne);
    ftq_model *ref = NULL;
    ASSERT_OK(ftq_model_load(shared_path(STORIES), &ref));
    const char *tmp = test_tmpdir("qcal_awq");
    char d[2][1024];
    ftq_quantize_report rep[2];
    double kl[2], t1[2];
    for (int k = 0; k < 2; k++) {
        snprintf(d[k], sizeof d[k], "%s/%s", tmp, k ? "awq" : "imatrix");
        ftq_quantize_params p = cparams(calib, 4096);
        p.calib_ctx = 128;
        p.awq = k;
        ASSERT_OK(ftq_quantize_model(shared_path(STORIES), d[k], &p, &rep[k]));
        kl[k] = kl_of(d[k], ref, eval, ne, &t1[k]);
    }
    fprintf(stderr, "\n    KL imatrix %.4f awq %.4f; top-1 %.3f %.3f ", kl[0], kl[1], t1[0], t1[1]);
    CU_ASSERT(kl[1] < kl[0]); /* awq's scales, then the same importance search */
    ftq_checkpoint *ck = NULL;
    cJSON *c = NULL;
    /* awq: each linear layer's method, the alphas, and the folded norms written as f32 */
    for (size_t i = 0; i < rep[1].n_tensors; i++)
        CU_ASSERT_STRING_EQUAL(rep[1].tensors[i].method, strstr(rep[1].tensors[i].name, "layers.") ? "awq" : "rtn");
    ASSERT_OK(ftq_checkpoint_open(d[1], &ck));
    c = cJSON_Parse(ftq_st_metadata_get(ftq_checkpoint_file(ck, 0), "ftq.quant.calibration"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(c, "method")->valuestring, "awq");
    const cJSON *al = cJSON_GetObjectItem(c, "awq_alpha");
    ASSERT_INT_EQ(cJSON_GetArraySize(al), 5);
    ftq_checkpoint *src = NULL;
    ASSERT_OK(ftq_checkpoint_open(shared_path(STORIES), &src));
    int changed = 0;
    for (int l = 0; l < 5; l++) {
        char nm[96];
        snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", l);
        const ftq_tensor *a = ftq_checkpoint_find(ck, nm), *b = ftq_checkpoint_find(src, nm);
        CU_ASSERT_PTR_NOT_NULL_FATAL(a);
        double alpha = cJSON_GetArrayItem(cJSON_GetArrayItem(al, l), 0)->valuedouble;
        CU_ASSERT(alpha >= 0 && alpha <= 1);
        int same = memcmp(a->data, b->data, b->nbytes) == 0;
        CU_ASSERT_EQUAL(same, alpha == 0); /* folded exactly where a scale was chosen */
        changed += !same;
    }
    CU_ASSERT(changed > 0);
    cJSON_Delete(c);
    ftq_checkpoint_close(src);
    ftq_checkpoint_close(ck);
    for (int k = 0; k < 2; k++)
        ftq_quantize_report_free(&rep[k]);
    ftq_model_free(ref);
    free(calib);
    free(eval);
}

static float *logits_of(const ftq_model *m, const int32_t *ids, int n)
{
    float *lg = malloc(sizeof(float) * (size_t)n * m->cfg.vocab_size);
    ftq_session *s = NULL;
    ASSERT_OK(ftq_session_new(m, n, &s));
    ASSERT_OK(ftq_session_eval(s, ids, n, lg, 1));
    ftq_session_free(s);
    return lg;
}

/* AWQ's fold is exact: random scales in [1/4, 4] folded into every block and every kind
 * that applies leave the f32 model's logits unchanged to float precision (stories260K:
 * RMSNorm, grouped-query attention with 2 heads per kv head, gated MLP; tiny GPT-2:
 * LayerNorm weight and bias, where v -> o (c_attn's shared bias) and up -> down (GELU)
 * do not apply), while the weights themselves change. */
static void test_awq_fold(void)
{
    const char *dirs[2] = {STORIES, "golden/gpt2_tiny_random"};
    const int expect[2][4] = {{1, 1, 1, 1}, {1, 0, 1, 0}};
    for (int d = 0; d < 2; d++) {
        ftq_model *m = NULL;
        ASSERT_OK(ftq_model_load(shared_path(dirs[d]), &m));
        const ftq_model_config *c = &m->cfg;
        const int n = 24, V = c->vocab_size;
        int32_t ids[24];
        for (int i = 0; i < n; i++)
            ids[i] = (i * 37 + 5) % V;
        float *ref = logits_of(m, ids, n);
        ftq_rng r;
        ftq_rng_seed(&r, 5 + d);
        const int dims[4] = {c->hidden_size, c->n_heads * c->head_dim, c->hidden_size, c->intermediate_size};
        float *sc = malloc(sizeof(float) * (size_t)c->intermediate_size * 4);
        float g0 = ftq_tdata(&m->layers[0].norm1_w)[0], wo0 = ftq_tdata(&m->layers[0].wo)[0];
        for (int k = 0; k < 4; k++) {
            ASSERT_INT_EQ(ftq_awq_applies(m, k), expect[d][k]);
            if (!ftq_awq_applies(m, k)) {
                CU_ASSERT_EQUAL(ftq_awq_fold(m, 0, k, sc), FTQ_EINVAL);
                continue;
            }
            for (int l = 0; l < c->n_layers; l++) {
                for (int j = 0; j < dims[k]; j++)
                    sc[j] = powf(4.0f, 2.0f * ftq_rng_uniform(&r) - 1.0f);
                ASSERT_OK(ftq_awq_fold(m, l, k, sc));
            }
        }
        CU_ASSERT(ftq_tdata(&m->layers[0].norm1_w)[0] != g0);
        CU_ASSERT(!expect[d][1] || ftq_tdata(&m->layers[0].wo)[0] != wo0);
        float *got = logits_of(m, ids, n);
        double worst = 0, mx = 0;
        for (size_t i = 0; i < (size_t)n * V; i++) {
            worst = fmax(worst, fabs((double)got[i] - ref[i]));
            mx = fmax(mx, fabs((double)ref[i]));
        }
        fprintf(stderr, "\n    %s: max |logit diff| %.3g (max |logit| %.3g) ", dirs[d], worst, mx);
        CU_ASSERT(worst <= 4e-6 * mx);
        free(ref);
        free(got);
        free(sc);
        ftq_model_free(m);
    }
}

/* --sensitivity: a budget planned from the sensitivities recorded by an earlier --bits
 * output gives the same file, byte for byte, as measuring them afresh (the same plan, the
 * same sensitivities in the report); other calibration or no recorded sensitivities are
 * refused in one line. */
static void test_sensitivity_cache(void)
{
    size_t nc = 0;
    int32_t *calib = tokens_of("data/tinyshakespeare/input.txt", &nc);
    const char *tmp = test_tmpdir("qcal_senscache");
    char d[4][1024];
    const char *names[4] = {"b55", "b50", "b50cached", "refused"};
    ftq_quantize_report rep[3];
    for (int k = 0; k < 3; k++) {
        snprintf(d[k], sizeof d[k], "%s/%s", tmp, names[k]);
        ftq_quantize_params p = cparams(calib, 4096);
        p.calib_ctx = 128;
        p.target_bits = k == 0 ? 5.5 : 5.0;
        p.sensitivity_from = k == 2 ? d[0] : NULL;
        ASSERT_OK(ftq_quantize_model(shared_path(STORIES), d[k], &p, &rep[k]));
    }
    snprintf(d[3], sizeof d[3], "%s/%s", tmp, names[3]);
    ASSERT_INT_EQ(rep[1].n_tensors, rep[2].n_tensors);
    int n8 = 0, diff = 0;
    for (size_t i = 0; i < rep[1].n_tensors; i++) {
        diff += strcmp(rep[1].tensors[i].scheme, rep[2].tensors[i].scheme) != 0;
        diff += rep[1].tensors[i].sensitivity != rep[2].tensors[i].sensitivity;
        diff += rep[0].tensors[i].sensitivity != rep[2].tensors[i].sensitivity;
        n8 += rep[1].tensors[i].sensitivity >= 0 && strncmp(rep[1].tensors[i].scheme, "q8", 2) == 0;
    }
    ASSERT_INT_EQ(diff, 0);
    CU_ASSERT(n8 > 0);
    char *fa = NULL, *fb = NULL, pa[1100], pb[1100];
    size_t la = 0, lb = 0;
    snprintf(pa, sizeof pa, "%s/model.safetensors", d[1]);
    snprintf(pb, sizeof pb, "%s/model.safetensors", d[2]);
    ASSERT_OK(ftq_read_file(pa, &fa, &la));
    ASSERT_OK(ftq_read_file(pb, &fb, &lb));
    CU_ASSERT(la == lb && memcmp(fa, fb, la) == 0);
    free(fa);
    free(fb);
    for (int k = 0; k < 3; k++)
        ftq_quantize_report_free(&rep[k]);
    ftq_quantize_report rr;
    ftq_quantize_params p = cparams(calib, 2048); /* other tokens */
    p.calib_ctx = 128;
    p.target_bits = 5.0;
    p.sensitivity_from = d[0];
    CU_ASSERT_EQUAL(ftq_quantize_model(shared_path(STORIES), d[3], &p, &rr), FTQ_EINVAL);
    CU_ASSERT(strstr(ftq_last_error(), "cannot reuse the sensitivities") != NULL);
    CU_ASSERT(strchr(ftq_last_error(), '\n') == NULL);
    p = cparams(calib, 4096);
    p.calib_ctx = 128;
    p.awq = 1; /* measured without awq */
    p.target_bits = 5.0;
    p.sensitivity_from = d[0];
    CU_ASSERT_EQUAL(ftq_quantize_model(shared_path(STORIES), d[3], &p, &rr), FTQ_EINVAL);
    p.awq = 0;
    p.sensitivity_from = shared_path(STORIES); /* not a --bits output */
    CU_ASSERT_EQUAL(ftq_quantize_model(shared_path(STORIES), d[3], &p, &rr), FTQ_EFORMAT);
    CU_ASSERT(strstr(ftq_last_error(), "records none") != NULL);
    p.target_bits = 0; /* nothing to plan */
    CU_ASSERT_EQUAL(ftq_quantize_model(shared_path(STORIES), d[3], &p, &rr), FTQ_EINVAL);
    CU_ASSERT(!ftq_is_quantized_checkpoint(d[3]));
    free(calib);
}

static void test_refusals(void)
{
    size_t n = 0;
    int32_t *ids = tokens_of("data/tinyshakespeare/input.txt", &n);
    const char *tmp = test_tmpdir("qcal_refuse");
    char d[1024];
    snprintf(d, sizeof d, "%s/x", tmp);
    ftq_quantize_report rep;
    ftq_quantize_params p = cparams(NULL, 0);
    p.method = FTQ_QMETHOD_GPTQ;
    CU_ASSERT_EQUAL(ftq_quantize_model(shared_path(STORIES), d, &p, &rep), FTQ_EINVAL);
    CU_ASSERT(strstr(ftq_last_error(), "gptq needs calibration") != NULL);
    p = cparams(NULL, 0);
    p.awq = 1;
    CU_ASSERT_EQUAL(ftq_quantize_model(shared_path(STORIES), d, &p, &rep), FTQ_EINVAL);
    CU_ASSERT(strstr(ftq_last_error(), "awq needs calibration") != NULL);
    p = cparams(NULL, 0);
    p.target_bits = 5;
    CU_ASSERT_EQUAL(ftq_quantize_model(shared_path(STORIES), d, &p, &rep), FTQ_EINVAL);
    p = cparams(ids, 4096);
    p.target_bits = 4.2; /* below int4 g32's own 4.5 */
    CU_ASSERT_EQUAL(ftq_quantize_model(shared_path(STORIES), d, &p, &rep), FTQ_EINVAL);
    CU_ASSERT(strstr(ftq_last_error(), "below the int4 layers") != NULL);
    p = cparams(ids, 4096);
    p.bits = 8;
    p.target_bits = 6;
    CU_ASSERT_EQUAL(ftq_quantize_model(shared_path(STORIES), d, &p, &rep), FTQ_EINVAL);
    p = cparams(ids, 4096);
    p.embeddings = FTQ_QPOLICY_KEEP;
    p.method = FTQ_QMETHOD_GPTQ; /* an encoder takes the importance search only */
    CU_ASSERT_EQUAL(ftq_quantize_model(shared_path("models/all-MiniLM-L6-v2"), d, &p, &rep), FTQ_EUNSUPPORTED);
    CU_ASSERT(strstr(ftq_last_error(), "decoders") != NULL);
    CU_ASSERT(!ftq_is_quantized_checkpoint(d)); /* nothing was written */
    /* the command line: one line each, nothing written */
    char args[4096];
    snprintf(args, sizeof args, "quantize -m '%s' -o '%s' --type int4 --method awq", shared_path(STORIES), d);
    ftq_expect_error(args, "need --calib FILE", d);
    snprintf(args, sizeof args, "quantize -m '%s' -o '%s' --type int4 --calib '%s' --sensitivity '%s'",
             shared_path(STORIES), d, shared_path("data/tinyshakespeare/input.txt"), shared_path(STORIES));
    ftq_expect_error(args, "--sensitivity DIR needs --bits", d);
    snprintf(args, sizeof args, "quantize -m '%s' -o '%s' --type int4 --method awz", shared_path(STORIES), d);
    ftq_expect_error(args, "unknown --method 'awz'", d);
    free(ids);
}

void test_register_quant_calib(void)
{
    static const test_case cases[] = {
        {"stats", test_stats},
        {"methods", test_methods},
        {"awq", test_awq},
        {"awq_fold", test_awq_fold},
        {"sensitivity_cache", test_sensitivity_cache},
        {"refusals", test_refusals},
        {NULL, NULL},
    };
    test_add_suite("quant_calib", cases);
}
