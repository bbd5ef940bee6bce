/* test_quant_model.c - quantized checkpoints end to end (quant/quantize_model.c,
 * quant/dequantize_model.c, model/qcheckpoint.c, the loader and forward on QMAT weights):
 * quantize -> load -> logits against the dequantized F32 twin, exact dequantization against
 * the format's formula, perplexity of int8 stories260K, search, metadata, malformed files,
 * NaN refusal, classifier and generation on quantized models, parameter errors.
 *
 * Tolerance of "quantized model vs its dequantized F32 twin": both compute with exactly the
 * same weights (checked bit for bit below), so the only difference is that the quantized
 * matmuls round their activations to int8 per block of 32 (docs/quant-format.md section 2:
 * about 0.5-0.7 % relative RMS per product on normal activations), compounded over the
 * layers. The bound used is a relative RMS difference of the logits (||a - b|| / ||b|| over
 * all positions and the vocabulary) of at most 2 %, with the same argmax on at least 90 %
 * of the positions; measured: 0.45-0.8 % on every model and scheme below (printed). A wrong
 * code, scale, group, row slice or transpose gives differences of order 100 %. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "include/ftq_quant.h"
#include "model/model.h"
#include "model/qcheckpoint.h"
#include "tests/test_util.h"

#define STORIES "models/stories260K"
#define LLAMA "golden/llama_tiny_random"
#define GPT2 "golden/gpt2_tiny_random"

/* ---- helpers ------------------------------------------------------------------------------ */

/* dir/name in a fresh test directory (name must not exist: outputs are new directories). */
static const char *out_path(const char *tag, const char *name, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%s", test_tmpdir(tag), name);
    return buf;
}

static ftq_quantize_params qparams(int bits, int group, int asym, int search)
{
    ftq_quantize_params p = ftq_quantize_default_params();
    p.bits = bits;
    p.group = group;
    p.asym = asym;
    p.search = search;
    return p;
}

static int quantize(const char *src, const char *dst, const ftq_quantize_params *p, ftq_quantize_report *rep)
{
    ftq_quantize_report local;
    ftq_quantize_report *r = rep ? rep : &local;
    int rc = ftq_quantize_model(src, dst, p, r);
    if (rc != FTQ_OK)
        fprintf(stderr, "\n  quantize '%s': %s\n", src, ftq_last_error());
    if (!rep)
        ftq_quantize_report_free(&local);
    return rc;
}

/* A deterministic prompt of n ids below vocab (BOS-like 1 first). */
static void prompt_ids(int32_t *ids, int n, int vocab, uint64_t seed)
{
    ftq_rng r;
    ftq_rng_seed(&r, seed);
    for (int i = 0; i < n; i++)
        ids[i] = i == 0 ? 1 : (int32_t)(3 + ftq_rng_u64(&r) % (uint64_t)(vocab - 3));
}

/* All n rows of logits of the model in dir (malloc'd), NULL on failure. */
static float *logits_of(const char *dir, const int32_t *ids, int n, int *vocab)
{
    ftq_model *m = NULL;
    ftq_session *s = NULL;
    if (ftq_model_load(dir, &m) != FTQ_OK || ftq_session_new(m, n, &s) != FTQ_OK) {
        fprintf(stderr, "\n  load '%s': %s\n", dir, ftq_last_error());
        ftq_model_free(m);
        return NULL;
    }
    *vocab = ftq_model_get_config(m)->vocab_size;
    float *lg = malloc(sizeof(float) * (size_t)n * *vocab);
    if (lg && ftq_session_eval(s, ids, n, lg, 1) != FTQ_OK) {
        free(lg);
        lg = NULL;
    }
    ftq_session_free(s);
    ftq_model_free(m);
    return lg;
}

typedef struct {
    double rel;    /* ||a - b|| / ||b|| */
    double agree;  /* fraction of rows with the same argmax */
} cmp_t;

static cmp_t compare_logits(const float *a, const float *b, int rows, int V)
{
    double se = 0, sb = 0;
    int same = 0;
    for (int t = 0; t < rows; t++) {
        int ia = 0, ib = 0;
        for (int v = 0; v < V; v++) {
            size_t i = (size_t)t * V + v;
            se += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
            sb += (double)b[i] * b[i];
            ia = a[i] > a[(size_t)t * V + ia] ? v : ia;
            ib = b[i] > b[(size_t)t * V + ib] ? v : ib;
        }
        same += ia == ib;
    }
    cmp_t c = {sb > 0 ? sqrt(se / sb) : 0, (double)same / rows};
    return c;
}

/* Every quantized tensor of qdir, recomputed from its parts with the formula of
 * docs/quant-format.md section 4 (independently of the library's dequantizer), equals the
 * tensor of the same name in ddir (ftq dequantize --dtype f32) bit for bit, in the HF layout.
 * Returns the number of tensors checked. */
static int check_dequantized_exact(const char *qdir, const char *ddir)
{
    ftq_checkpoint *qc = NULL, *dc = NULL;
    ftq_qindex *ix = NULL;
    ASSERT_OK(ftq_checkpoint_open(qdir, &qc));
    ASSERT_OK(ftq_checkpoint_open(ddir, &dc));
    ASSERT_OK(ftq_qindex_open(qc, qdir, &ix));
    CU_ASSERT_PTR_NOT_NULL_FATAL(ix);
    int checked = 0, bad = 0;
    for (size_t i = 0; i < ix->n; i++) {
        const ftq_qentry *e = &ix->e[i];
        const ftq_tensor *d = ftq_checkpoint_find(dc, e->name);
        CU_ASSERT_PTR_NOT_NULL(d);
        if (!d || d->dtype != FTQ_DTYPE_F32) {
            bad++;
            continue;
        }
        const int rows = e->rows, cols = e->cols, G = e->group ? e->group : cols;
        const int ng = (cols + G - 1) / G, rb = e->scheme == FTQ_QSCHEME_Q8 ? cols : (cols + 1) / 2;
        CU_ASSERT(d->ndim == 2 && d->shape[0] == (e->transposed ? cols : rows) &&
                  d->shape[1] == (e->transposed ? rows : cols));
        const uint8_t *qw = e->qweight->data, *qz = e->qzero ? e->qzero->data : NULL;
        const uint16_t *qs = e->qscale->data;
        const float *dv = d->data;
        for (int r = 0; r < rows; r++)
            for (int k = 0; k < cols; k++) {
                int g = k / G, c, z;
                float s = ftq_f16_to_f32(qs[(size_t)r * ng + g]);
                if (e->scheme == FTQ_QSCHEME_Q8) {
                    c = (int8_t)qw[(size_t)r * rb + k];
                    z = 0;
                } else {
                    c = (qw[(size_t)r * rb + k / 2] >> (4 * (k & 1))) & 15;
                    z = qz ? qz[(size_t)r * ng + g] : 8;
                }
                float v = s * (float)(c - z);
                float got = e->transposed ? dv[(size_t)k * rows + r] : dv[(size_t)r * cols + k];
                bad += memcmp(&v, &got, sizeof v) != 0;
            }
        checked++;
    }
    ASSERT_INT_EQ(bad, 0);
    ftq_qindex_free(ix);
    ftq_checkpoint_close(dc);
    ftq_checkpoint_close(qc);
    return checked;
}

/* The loaded quantized model holds exactly the weights of its dequantized twin: every QMAT
 * tensor unpacked (ftq_qmat_dequantize) equals the twin's f32 tensor ([out, in] after the
 * loader's GPT-2 transposes and c_attn split). */
static void check_model_weights_exact(const char *qdir, const char *ddir)
{
    ftq_model *q = NULL, *d = NULL;
    ASSERT_OK(ftq_model_load(qdir, &q));
    ASSERT_OK(ftq_model_load(ddir, &d));
    CU_ASSERT(ftq_model_quantized_count(q) > 0);
    ASSERT_INT_EQ(ftq_model_quantized_count(d), 0);
    size_t per = sizeof(ftq_layer_weights) / sizeof(ftq_tensor);
    int bad = 0, n = 0;
    for (int l = 0; l < q->cfg.n_layers; l++) {
        const ftq_tensor *tq = (const ftq_tensor *)&q->layers[l], *td = (const ftq_tensor *)&d->layers[l];
        for (size_t i = 0; i < per; i++) {
            if (tq[i].dtype != FTQ_DTYPE_QMAT)
                continue;
            const ftq_qmat *m = tq[i].data;
            float *w = malloc(sizeof(float) * (size_t)m->rows * m->cols);
            ftq_qmat_dequantize(m, w);
            bad += memcmp(w, td[i].data, sizeof(float) * (size_t)m->rows * m->cols) != 0;
            free(w);
            n++;
        }
    }
    CU_ASSERT(n > 0);
    ASSERT_INT_EQ(bad, 0);
    ftq_model_free(q);
    ftq_model_free(d);
}

/* ---- quantize -> load -> logits vs the dequantized twin ------------------------------------ */

typedef struct {
    const char *label;
    int bits, group, asym, search;
    ftq_qpolicy emb, head;
} qcase;

static void roundtrip(const char *model, const char *tag, const qcase *cases, size_t ncases)
{
    int32_t ids[40];
    for (size_t k = 0; k < ncases; k++) {
        const qcase *qc = &cases[k];
        char base[1024], qd[1100], dd[1100], t1[128];
        snprintf(t1, sizeof t1, "%s_%zu", tag, k);
        snprintf(base, sizeof base, "%s", test_tmpdir(t1));
        snprintf(qd, sizeof qd, "%s/q", base);
        snprintf(dd, sizeof dd, "%s/d", base);
        ftq_quantize_params p = qparams(qc->bits, qc->group, qc->asym, qc->search);
        p.embeddings = qc->emb;
        p.head = qc->head;
        ftq_quantize_report rep;
        if (quantize(shared_path(model), qd, &p, &rep) != FTQ_OK) {
            CU_FAIL("quantize");
            continue;
        }
        CU_ASSERT(rep.n_tensors > 0 && rep.out_bytes > 0 && rep.out_bytes < rep.in_bytes + rep.in_bytes / 2);
        ASSERT_OK(ftq_dequantize_model(qd, dd, FTQ_DTYPE_F32));
        int nchk = check_dequantized_exact(qd, dd);
        ASSERT_INT_EQ(nchk, (long long)rep.n_tensors);
        check_model_weights_exact(qd, dd);
        int Vq = 0, Vd = 0;
        int n = strcmp(model, GPT2) == 0 ? 32 : 40;
        prompt_ids(ids, n, 512, 77 + k);
        float *lq = logits_of(qd, ids, n, &Vq), *ld = logits_of(dd, ids, n, &Vd);
        CU_ASSERT_PTR_NOT_NULL(lq);
        CU_ASSERT_PTR_NOT_NULL(ld);
        if (lq && ld && Vq == Vd) {
            cmp_t c = compare_logits(lq, ld, n, Vq);
            const double tol = 0.02;
            fprintf(stderr, "\n    %s %-22s weights rel %.3f %%, logits vs dequantized twin rel %.4f %%, "
                            "argmax agree %.0f %%",
                    model, qc->label, 100 * rep.rel_rmse, 100 * c.rel, 100 * c.agree);
            CU_ASSERT(c.rel <= tol);
            CU_ASSERT(c.agree >= 0.9);
        }
        free(lq);
        free(ld);
        ftq_quantize_report_free(&rep);
    }
}

static const qcase CASES[] = {
    {"int8 g32", 8, 32, 0, 0, FTQ_QPOLICY_KEEP, FTQ_QPOLICY_AUTO},
    {"int8 row", 8, 0, 0, 0, FTQ_QPOLICY_KEEP, FTQ_QPOLICY_AUTO},
    {"int4 g32", 4, 32, 0, 0, FTQ_QPOLICY_KEEP, FTQ_QPOLICY_AUTO},
    {"int4 g64 asym", 4, 64, 1, 0, FTQ_QPOLICY_KEEP, FTQ_QPOLICY_AUTO},
    {"int4 g128", 4, 128, 0, 0, FTQ_QPOLICY_KEEP, FTQ_QPOLICY_AUTO},
    {"int4 g128 asym search", 4, 128, 1, 1, FTQ_QPOLICY_KEEP, FTQ_QPOLICY_AUTO},
    {"int4 g32 search", 4, 32, 0, 1, FTQ_QPOLICY_KEEP, FTQ_QPOLICY_AUTO},
    {"int8 emb int8 (tied)", 8, 32, 0, 0, FTQ_QPOLICY_INT8, FTQ_QPOLICY_AUTO},
    {"int4 emb same head same", 4, 32, 1, 0, FTQ_QPOLICY_SAME, FTQ_QPOLICY_SAME},
    {"int4 head keep", 4, 64, 0, 0, FTQ_QPOLICY_KEEP, FTQ_QPOLICY_KEEP},
};

static void test_roundtrip_stories(void) { roundtrip(STORIES, "qm_rt_stories", CASES, sizeof CASES / sizeof CASES[0]); }
static void test_roundtrip_llama(void) { roundtrip(LLAMA, "qm_rt_llama", CASES, 7); }
static void test_roundtrip_gpt2(void)
{
    static const qcase g[] = {
        {"int8 g32", 8, 32, 0, 0, FTQ_QPOLICY_KEEP, FTQ_QPOLICY_AUTO},
        {"int4 g64 asym search", 4, 64, 1, 1, FTQ_QPOLICY_KEEP, FTQ_QPOLICY_AUTO},
        {"int4 g32 emb int8 head int4", 4, 32, 0, 0, FTQ_QPOLICY_INT8, FTQ_QPOLICY_INT4},
    };
    roundtrip(GPT2, "qm_rt_gpt2", g, sizeof g / sizeof g[0]);
}

/* ---- file contents ------------------------------------------------------------------------- */

static void test_metadata(void)
{
    char qd[1024];
    ftq_quantize_params p = qparams(8, 32, 0, 0);
    ASSERT_OK(quantize(shared_path(STORIES), out_path("qm_meta", "q", qd, sizeof qd), &p, NULL));
    ftq_checkpoint *ck = NULL;
    ASSERT_OK(ftq_checkpoint_open(qd, &ck));
    const ftq_st_file *f = ftq_checkpoint_file(ck, 0);
    CU_ASSERT_STRING_EQUAL(ftq_st_metadata_get(f, "format"), "pt");
    CU_ASSERT_STRING_EQUAL(ftq_st_metadata_get(f, "ftq.quant.version"), "1");
    cJSON *j = cJSON_Parse(ftq_st_metadata_get(f, "ftq.quant.tensors"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    ASSERT_INT_EQ(cJSON_GetArraySize(j), 5 * 7 + 1); /* every linear weight + the split head */
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "model.layers.2.mlp.down_proj.weight");
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(e, "scheme")->valuestring, "q8");
    ASSERT_INT_EQ(cJSON_GetObjectItem(e, "group")->valueint, 32);
    ASSERT_INT_EQ(cJSON_GetArrayItem(cJSON_GetObjectItem(e, "shape"), 0)->valueint, 64);
    ASSERT_INT_EQ(cJSON_GetArrayItem(cJSON_GetObjectItem(e, "shape"), 1)->valueint, 172);
    CU_ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(e, "transposed")));
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(e, "source_dtype")->valuestring, "F32");
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(j, "lm_head.weight");
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(h, "copied_from")->valuestring, "model.embed_tokens.weight");
    cJSON_Delete(j);
    /* parts: names, dtypes, shapes (172 columns: 6 groups, the last one partial) */
    const ftq_tensor *qw = ftq_checkpoint_find(ck, "model.layers.2.mlp.down_proj.qweight");
    const ftq_tensor *qs = ftq_checkpoint_find(ck, "model.layers.2.mlp.down_proj.qscale");
    CU_ASSERT_FATAL(qw && qs);
    CU_ASSERT(qw->dtype == FTQ_DTYPE_I8 && qw->shape[0] == 64 && qw->shape[1] == 172);
    CU_ASSERT(qs->dtype == FTQ_DTYPE_F16 && qs->shape[0] == 64 && qs->shape[1] == 6);
    CU_ASSERT_PTR_NULL(ftq_checkpoint_find(ck, "model.layers.2.mlp.down_proj.qzero"));
    CU_ASSERT_PTR_NULL(ftq_checkpoint_find(ck, "model.layers.2.mlp.down_proj.weight"));
    /* embeddings and norms kept as stored */
    const ftq_tensor *emb = ftq_checkpoint_find(ck, "model.embed_tokens.weight");
    CU_ASSERT(emb && emb->dtype == FTQ_DTYPE_F32);
    ftq_checkpoint_close(ck);
    /* tied head split off: config unties it, tokenizer files copied */
    ftq_model_config cfg;
    char path[1100];
    snprintf(path, sizeof path, "%s/config.json", qd);
    ASSERT_OK(ftq_config_load(path, &cfg));
    CU_ASSERT(!cfg.tie_word_embeddings);
    snprintf(path, sizeof path, "%s/tokenizer.json", qd);
    CU_ASSERT(ftq_is_file(path));
    CU_ASSERT(ftq_is_quantized_checkpoint(qd));
    CU_ASSERT(!ftq_is_quantized_checkpoint(shared_path(STORIES)));

    /* GPT-2: Conv1D weights are stored [out, in] (transposed: true); c_attn stays one tensor */
    char gd[1024];
    ASSERT_OK(quantize(shared_path(GPT2), out_path("qm_meta_gpt2", "q", gd, sizeof gd), &p, NULL));
    ASSERT_OK(ftq_checkpoint_open(gd, &ck));
    j = cJSON_Parse(ftq_st_metadata_get(ftq_checkpoint_file(ck, 0), "ftq.quant.tensors"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    const cJSON *ca = NULL;
    for (const cJSON *it = j->child; it; it = it->next)
        if (strstr(it->string, "h.0.attn.c_attn.weight"))
            ca = it;
    CU_ASSERT_PTR_NOT_NULL_FATAL(ca);
    CU_ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(ca, "transposed")));
    ASSERT_INT_EQ(cJSON_GetArrayItem(cJSON_GetObjectItem(ca, "shape"), 0)->valueint, 192);
    ASSERT_INT_EQ(cJSON_GetArrayItem(cJSON_GetObjectItem(ca, "shape"), 1)->valueint, 64);
    char qwn[256];
    snprintf(qwn, sizeof qwn, "%.*s.qweight", (int)(strlen(ca->string) - 7), ca->string);
    const ftq_tensor *cq = ftq_checkpoint_find(ck, qwn);
    CU_ASSERT(cq && cq->shape[0] == 192 && cq->shape[1] == 64);
    cJSON_Delete(j);
    ftq_checkpoint_close(ck);
}

/* Embeddings quantized like the head keep the model tied: one matrix, no lm_head. */
static void test_tied_kept(void)
{
    char qd[1024];
    ftq_quantize_params p = qparams(4, 32, 0, 0);
    p.embeddings = FTQ_QPOLICY_INT8; /* q8 g32, what the auto head gets too */
    ftq_quantize_report rep;
    ASSERT_OK(quantize(shared_path(STORIES), out_path("qm_tied", "q", qd, sizeof qd), &p, &rep));
    CU_ASSERT(!rep.head_split);
    ftq_quantize_report_free(&rep);
    ftq_model *m = NULL;
    ASSERT_OK(ftq_model_load(qd, &m));
    CU_ASSERT(m->cfg.tie_word_embeddings);
    CU_ASSERT(m->tok_emb.dtype == FTQ_DTYPE_QMAT && m->lm_head.data == m->tok_emb.data);
    CU_ASSERT_PTR_NULL(ftq_checkpoint_find(m->ck, "lm_head.qweight"));
    ftq_model_free(m);
}

/* ---- quality --------------------------------------------------------------------------------- */

static int32_t *story_tokens(size_t *n)
{
    ftq_tokenizer *tk = NULL;
    char *text = NULL;
    size_t len = 0;
    int32_t *ids = NULL;
    *n = 0;
    if (ftq_tokenizer_load(shared_path(STORIES), &tk) != FTQ_OK ||
        ftq_read_file(shared_path("data/tinystories/tinystories_sample.txt"), &text, &len) != FTQ_OK ||
        ftq_tokenizer_encode(tk, text, len, 0, &ids, n) != FTQ_OK)
        CU_FAIL("cannot tokenize the tinystories sample");
    free(text);
    ftq_tokenizer_free(tk);
    return ids;
}

static double ppl_of(const char *dir, const int32_t *ids, size_t n)
{
    ftq_model *m = NULL;
    ftq_ppl_result r;
    ftq_ppl_params p = ftq_ppl_default_params();
    p.n_ctx = 256;
    p.n_chunks = 32;
    p.add_bos = 1;
    p.bos_id = 1;
    if (ftq_model_load(dir, &m) != FTQ_OK || ftq_perplexity(m, ids, n, &p, &r) != FTQ_OK) {
        fprintf(stderr, "\n  %s\n", ftq_last_error());
        ftq_model_free(m);
        return NAN;
    }
    ftq_model_free(m);
    return r.ppl;
}

/* The goal: int8 within 0.5 % perplexity of f32 (32 chunks of 256, llama.cpp protocol). */
static void test_ppl_int8(void)
{
    size_t n = 0;
    int32_t *ids = story_tokens(&n);
    if (!ids)
        return;
    char q8[1024], q4[1024];
    ftq_quantize_params p = qparams(8, 32, 0, 0);
    ASSERT_OK(quantize(shared_path(STORIES), out_path("qm_ppl8", "q", q8, sizeof q8), &p, NULL));
    p = qparams(4, 32, 0, 1);
    ASSERT_OK(quantize(shared_path(STORIES), out_path("qm_ppl4", "q", q4, sizeof q4), &p, NULL));
    double f = ppl_of(shared_path(STORIES), ids, n), a = ppl_of(q8, ids, n), b = ppl_of(q4, ids, n);
    fprintf(stderr, "\n    stories260K ppl (32 x 256): f32 %.4f, int8 %.4f (%+.3f %%), int4 g32 search %.4f (%+.2f %%)", f,
            a, 100 * (a / f - 1), b, 100 * (b / f - 1));
    CU_ASSERT(fabs(a / f - 1) <= 0.005);
    /* int4 of a 64-wide model is far lossier: measured +8.27 % (SIMD and scalar paths agree
     * to 5e-4 relative); bound 12 % (was 25 %, which no plausible regression would cross),
     * and it must cost more than int8 */
    CU_ASSERT(b / f - 1 < 0.12);
    CU_ASSERT(b > a);
    free(ids);
}

/* A quantized perplexity agrees across dispatch paths: scalar (FTQ_CPU_MASK=0), AVX2+FMA
 * (0x3) and everything this CPU has, each in its own process, 1 and 2 threads. The int8 /
 * int4 matmuls are bit-identical on every path (test_qkernels); what differs is the f32
 * work around them: the SIMD attention, RMSNorm and SiLU sum in another order and the SIMD
 * SiLU uses a polynomial exp (Cephes, ~2 ulp). On the f32 model that moves the NLL by 1e-8;
 * with int8 activations a few values land on the other side of a rounding boundary and move
 * by a whole quantization step, so the scalar path's perplexity differs from the SIMD
 * paths': 1.7e-4 relative on 20 x 256 tokens (each f32 kernel alone moving it by 2e-4..4e-4
 * in either direction), 1.9e-3 (int8) and 9.6e-4 (int4) on the 8 x 128 tokens here, and the
 * thread count changes nothing: rounding, not a bug. The bar is 5e-3 relative, 2.6x the
 * largest gap measured; a broken kernel moves it by percents. */
static void test_paths_agree(void)
{
    char q8[1024], q4[1024], args[4096];
    ftq_quantize_params p = qparams(8, 32, 0, 0);
    ASSERT_OK(quantize(shared_path(STORIES), out_path("qm_paths8", "q", q8, sizeof q8), &p, NULL));
    p = qparams(4, 32, 0, 0);
    ASSERT_OK(quantize(shared_path(STORIES), out_path("qm_paths4", "q", q4, sizeof q4), &p, NULL));
    const char *models[2] = {q8, q4};
    static const struct {
        const char *mask, *threads; /* NULL mask: all this CPU has */
    } runs[] = {{"0", "1"}, {"0", "2"}, {"0x3", "2"}, {NULL, "1"}, {NULL, "2"}};
    for (int m = 0; m < 2; m++) {
        double ref = NAN;
        for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
            if (runs[k].mask)
                setenv("FTQ_CPU_MASK", runs[k].mask, 1);
            else
                unsetenv("FTQ_CPU_MASK");
            setenv("FTQ_THREADS", runs[k].threads, 1);
            snprintf(args, sizeof args, "perplexity -m '%s' -f '%s' -c 128 --chunks 8 --json", models[m],
                     shared_path("data/tinystories/tinystories_sample.txt"));
            cJSON *j = ftq_run_json(args);
            unsetenv("FTQ_CPU_MASK");
            unsetenv("FTQ_THREADS");
            double v = j ? cJSON_GetNumberValue(cJSON_GetObjectItem(j, "ppl")) : NAN;
            cJSON_Delete(j);
            if (isnan(ref))
                ref = v;
            fprintf(stderr, "\n    %s mask %-4s threads %s: ppl %.6f (%+.1e)", m ? "int4" : "int8",
                    runs[k].mask ? runs[k].mask : "all", runs[k].threads, v, v / ref - 1);
            CU_ASSERT(isfinite(v) && fabs(v / ref - 1) <= 5e-3);
        }
    }
}

/* The error-minimizing search lowers the total weight RMSE. */
static void test_search(void)
{
    const int cfg[][3] = {{4, 32, 0}, {4, 128, 1}, {8, 0, 0}};
    for (int i = 0; i < 3; i++) {
        char a[1024], b[1024], tag[64];
        snprintf(tag, sizeof tag, "qm_search_%d", i);
        ftq_quantize_params p = qparams(cfg[i][0], cfg[i][1], cfg[i][2], 0);
        ftq_quantize_report plain, srch;
        ASSERT_OK(quantize(shared_path(STORIES), out_path(tag, "plain", a, sizeof a), &p, &plain));
        p.search = 1;
        snprintf(b, sizeof b, "%.1000s/../search", a);
        ASSERT_OK(quantize(shared_path(STORIES), b, &p, &srch));
        fprintf(stderr, "\n    int%d g%d%s: weight rmse plain %.5g, search %.5g (%.1f %%)", cfg[i][0], cfg[i][1],
                cfg[i][2] ? " asym" : "", plain.rmse, srch.rmse, 100 * (srch.rmse / plain.rmse - 1));
        CU_ASSERT(srch.rmse < plain.rmse);
        ASSERT_INT_EQ(srch.q_out_bytes, plain.q_out_bytes); /* the file differs in metadata only */
        ftq_quantize_report_free(&plain);
        ftq_quantize_report_free(&srch);
    }
}

/* ---- malformed files --------------------------------------------------------------------------- */

typedef struct {
    ftq_tensor t[256];
    size_t n;
    char *key[16], *val[16];
    size_t nm;
    void *bufs[8];
    int nb;
} variant;

static void variant_load(variant *v, const ftq_checkpoint *ck)
{
    memset(v, 0, sizeof *v);
    v->n = ftq_checkpoint_count(ck);
    CU_ASSERT_FATAL(v->n < 250);
    for (size_t i = 0; i < v->n; i++)
        v->t[i] = *ftq_checkpoint_tensor(ck, i);
    const ftq_st_file *f = ftq_checkpoint_file(ck, 0);
    v->nm = ftq_st_metadata_count(f);
    for (size_t i = 0; i < v->nm; i++) {
        v->key[i] = strdup(ftq_st_metadata_key(f, i));
        v->val[i] = strdup(ftq_st_metadata_value(f, i));
    }
}

static ftq_tensor *vfind(variant *v, const char *name)
{
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->t[i].name, name) == 0)
            return &v->t[i];
    CU_FAIL("tensor not in the variant");
    return NULL;
}

static void vremove(variant *v, const char *name)
{
    ftq_tensor *t = vfind(v, name);
    if (t) {
        memmove(t, t + 1, sizeof *t * (size_t)(v->t + v->n - t - 1));
        v->n--;
    }
}

/* A writable copy of t's data. */
static void *vcopy(variant *v, ftq_tensor *t)
{
    void *b = malloc(t->nbytes ? t->nbytes : 1);
    memcpy(b, t->data, t->nbytes);
    v->bufs[v->nb++] = b;
    t->data = b;
    return b;
}

static char **vmeta(variant *v, const char *key)
{
    for (size_t i = 0; i < v->nm; i++)
        if (strcmp(v->key[i], key) == 0)
            return &v->val[i];
    return NULL;
}

/* Replace (or with value NULL delete) key `key` of entry `name` in ftq.quant.tensors; with
 * key NULL delete the whole entry. */
static void vedit(variant *v, const char *name, const char *key, cJSON *value)
{
    char **s = vmeta(v, "ftq.quant.tensors");
    cJSON *j = cJSON_Parse(*s);
    cJSON *e = cJSON_GetObjectItemCaseSensitive(j, name);
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    if (!key)
        cJSON_DeleteItemFromObjectCaseSensitive(j, name);
    else if (!value)
        cJSON_DeleteItemFromObjectCaseSensitive(e, key);
    else if (cJSON_GetObjectItemCaseSensitive(e, key))
        cJSON_ReplaceItemInObjectCaseSensitive(e, key, value);
    else
        cJSON_AddItemToObject(e, key, value);
    free(*s);
    *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
}

/* Write the variant as a model directory next to the source's config and tokenizer. */
static void variant_write(variant *v, const char *src, const char *dir)
{
    char path[1100];
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    const char *meta[40];
    size_t k = 0;
    for (size_t i = 0; i < v->nm; i++)
        if (v->val[i]) {
            meta[k++] = v->key[i];
            meta[k++] = v->val[i];
        }
    meta[k] = NULL;
    ASSERT_OK(ftq_st_write(path, v->t, v->n, meta));
    ASSERT_OK(ftq_copy_model_files(src, dir, 1));
}

static void variant_free(variant *v)
{
    for (size_t i = 0; i < v->nm; i++) {
        free(v->key[i]);
        free(v->val[i]);
    }
    for (int i = 0; i < v->nb; i++)
        free(v->bufs[i]);
}

/* Loading dir fails with a one-line message holding `want` (and so does listing / info). */
static void expect_load_error(const char *dir, const char *want)
{
    ftq_model *m = NULL;
    int rc = ftq_model_load(dir, &m);
    const char *msg = ftq_last_error();
    int ok = rc != FTQ_OK && m == NULL && strstr(msg, want) != NULL && strchr(msg, '\n') == NULL;
    if (!ok)
        fprintf(stderr, "\n  load '%s': rc %d, message '%s', expected '%s'\n", dir, rc, msg, want);
    CU_ASSERT(ok);
    CU_ASSERT(rc == FTQ_EFORMAT || rc == FTQ_EUNSUPPORTED);
    ftq_model_free(m);
}

#define DOWN "model.layers.1.mlp.down_proj"

static void test_malformed(void)
{
    char base[1024], q4[1100], q8[1100], dir[1100];
    snprintf(base, sizeof base, "%s", test_tmpdir("qm_bad"));
    snprintf(q4, sizeof q4, "%s/q4a", base);
    snprintf(q8, sizeof q8, "%s/q8", base);
    ftq_quantize_params p = qparams(4, 32, 1, 0);
    ASSERT_OK(quantize(shared_path(STORIES), q4, &p, NULL));
    p = qparams(8, 32, 0, 0);
    ASSERT_OK(quantize(shared_path(STORIES), q8, &p, NULL));
    ftq_checkpoint *c4 = NULL, *c8 = NULL;
    ASSERT_OK(ftq_checkpoint_open(q4, &c4));
    ASSERT_OK(ftq_checkpoint_open(q8, &c8));
    variant v;
    int k = 0;
#define CASE(ck, src, edit, want)                                  \
    do {                                                           \
        variant_load(&v, ck);                                      \
        edit;                                                      \
        snprintf(dir, sizeof dir, "%s/v%02d", base, k++);         \
        variant_write(&v, src, dir);                               \
        expect_load_error(dir, want);                              \
        variant_free(&v);                                          \
    } while (0)

    CASE(c4, q4, vedit(&v, DOWN ".weight", "scheme", cJSON_CreateString("q3")), "unknown scheme 'q3'");
    CASE(c4, q4, vedit(&v, DOWN ".weight", "group", cJSON_CreateNumber(48)), "group 48 is not valid");
    CASE(c8, q8, vedit(&v, DOWN ".weight", "group", cJSON_CreateNumber(0)); vedit(&v, DOWN ".weight", "scheme",
         cJSON_CreateString("q4")), "group 0 is not valid for scheme q4");
    /* consistent parts, but not the shape the config implies */
    CASE(c4, q4, vedit(&v, DOWN ".weight", "shape", cJSON_CreateIntArray((const int[]){64, 171}, 2)),
         "tensor '" DOWN ".weight' has shape [64, 171], expected [64, 172]");
    CASE(c4, q4, { ftq_tensor *t = vfind(&v, DOWN ".qscale"); t->shape[0] = 32; t->shape[1] = 12; },
         "'" DOWN ".qscale' has shape [32, 12], expected [64, 6]");
    CASE(c4, q4, {
        ftq_tensor *t = vfind(&v, DOWN ".qweight");
        void *b = malloc((size_t)64 * 87);
        memset(b, 0x88, (size_t)64 * 87);
        v.bufs[v.nb++] = b;
        t->data = b;
        t->shape[1] = 87;
        t->nbytes = (size_t)64 * 87;
    }, "'" DOWN ".qweight' has shape [64, 87], expected [64, 86]");
    CASE(c4, q4, { ftq_tensor *t = vfind(&v, DOWN ".qweight"); t->dtype = FTQ_DTYPE_I8; },
         "'" DOWN ".qweight' has dtype I8, expected U8");
    CASE(c4, q4, { uint8_t *z = vcopy(&v, vfind(&v, DOWN ".qzero")); z[7] = 16; }, "zero code 16 at row 1, group 1");
    CASE(c4, q4, { uint16_t *s = vcopy(&v, vfind(&v, DOWN ".qscale")); s[3] = 0x7c00; }, "non-finite scale");
    CASE(c8, q8, { int8_t *q = vcopy(&v, vfind(&v, DOWN ".qweight")); q[200] = -128; }, "q8 code -128 at row 1, column 28");
    CASE(c4, q4, { free(*vmeta(&v, "ftq.quant.version")); *vmeta(&v, "ftq.quant.version") = NULL; },
         "has no ftq.quant.version");
    CASE(c4, q4, { free(*vmeta(&v, "ftq.quant.version")); *vmeta(&v, "ftq.quant.version") = strdup("2"); },
         "unknown ftq.quant.version '2'");
    CASE(c4, q4, { free(*vmeta(&v, "ftq.quant.tensors")); *vmeta(&v, "ftq.quant.tensors") = strdup("{\"a\": "); },
         "ftq.quant.tensors: ");
    CASE(c4, q4, vremove(&v, DOWN ".qweight"), "missing tensor '" DOWN ".qweight'");
    CASE(c4, q4, vremove(&v, DOWN ".qzero"), "missing tensor '" DOWN ".qzero'");
    CASE(c4, q4, vedit(&v, DOWN ".weight", NULL, NULL), "tensor '" DOWN ".qweight' is not listed");
    CASE(c8, q8, {
        ftq_tensor *t = vfind(&v, DOWN ".qscale");
        v.t[v.n] = *t;
        v.t[v.n].name = DOWN ".qzero";
        v.t[v.n].dtype = FTQ_DTYPE_U8;
        v.t[v.n].nbytes /= 2;
        v.n++;
    }, "'" DOWN ".qzero' is present but scheme q8 has no zero codes");
    CASE(c8, q8, {
        ftq_tensor *t = vfind(&v, "model.embed_tokens.weight");
        v.t[v.n] = *t;
        v.t[v.n].name = DOWN ".weight";
        v.t[v.n].shape[0] = 64;
        v.t[v.n].shape[1] = 172;
        v.t[v.n].nbytes = 64 * 172 * 4;
        v.n++;
    }, "also stored unquantized");
    CASE(c8, q8, vedit(&v, "model.layers.0.self_attn.o_proj.weight", "transposed", cJSON_CreateTrue()),
         "is marked transposed, but a llama model stores it [out, in]");
    CASE(c8, q8, vedit(&v, "model.layers.0.self_attn.k_proj.weight", "shape", cJSON_CreateIntArray((const int[]){64, 32}, 2)),
         "k_proj.qweight' has shape [32, 64], expected [64, 32]");
    /* a norm weight in a quantized entry's place */
    CASE(c8, q8, {
        vfind(&v, "lm_head.qweight")->name = "model.norm.qweight";
        vfind(&v, "lm_head.qscale")->name = "model.norm.qscale";
        vremove(&v, "model.norm.weight");
        char **s = vmeta(&v, "ftq.quant.tensors");
        cJSON *j = cJSON_Parse(*s);
        cJSON *e = cJSON_DetachItemFromObject(j, "lm_head.weight");
        cJSON_AddItemToObject(j, "model.norm.weight", e);
        free(*s);
        *s = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
    }, "tensor 'model.norm.weight' has shape [512, 64], expected [64]");
#undef CASE
    /* dequantize and info refuse them too; nothing is left behind */
    snprintf(dir, sizeof dir, "%s/v%02d", base, 0);
    char out[1200];
    snprintf(out, sizeof out, "%s/deq", base);
    CU_ASSERT_NOT_EQUAL(ftq_dequantize_model(dir, out, FTQ_DTYPE_F32), FTQ_OK);
    CU_ASSERT(!ftq_is_dir(out));
    ftq_checkpoint *ck = NULL;
    ftq_quant_tensor_info *ql = NULL;
    size_t nq = 0;
    ASSERT_OK(ftq_checkpoint_open(dir, &ck));
    CU_ASSERT_EQUAL(ftq_quant_checkpoint_list(ck, &ql, &nq), FTQ_EFORMAT);
    CU_ASSERT(ql == NULL && nq == 0);
    ftq_checkpoint_close(ck);
    ftq_checkpoint_close(c4);
    ftq_checkpoint_close(c8);
}

/* ---- NaN refusal, parameter errors ------------------------------------------------------------ */

/* stories260K with tensor `name` element `at` set to `val`, written with ftq_st_write. */
static void poisoned_copy(const char *dir, const char *name, size_t at, float val)
{
    ftq_checkpoint *ck = NULL;
    ASSERT_OK(ftq_checkpoint_open(shared_path(STORIES), &ck));
    variant v;
    variant_load(&v, ck);
    float *w = vcopy(&v, vfind(&v, name));
    w[at] = val;
    variant_write(&v, shared_path(STORIES), dir);
    variant_free(&v);
    ftq_checkpoint_close(ck);
}

static void test_nan_refused(void)
{
    char base[1024], src[1100], out[1100];
    snprintf(base, sizeof base, "%s", test_tmpdir("qm_nan"));
    const struct {
        const char *name;
        size_t at;
        float val;
        const char *want;
    } cases[] = {
        {"model.layers.1.mlp.up_proj.weight", 70, NAN, "cannot quantize tensor 'model.layers.1.mlp.up_proj.weight': "
                                                        "non-finite value nan at row 1, column 6"},
        {"model.layers.3.self_attn.v_proj.weight", 5, -INFINITY, "'model.layers.3.self_attn.v_proj.weight'"},
        {"model.norm.weight", 3, INFINITY, "tensor 'model.norm.weight' holds a non-finite value inf at index 3"},
        {"model.embed_tokens.weight", 100, NAN, "'model.embed_tokens.weight'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(src, sizeof src, "%s/src%zu", base, i);
        snprintf(out, sizeof out, "%s/out%zu", base, i);
        poisoned_copy(src, cases[i].name, cases[i].at, cases[i].val);
        ftq_quantize_params p = qparams(4, 32, 0, 0);
        ftq_quantize_report rep;
        int rc = ftq_quantize_model(src, out, &p, &rep);
        const char *msg = ftq_last_error();
        if (rc != FTQ_ENUMERIC || !strstr(msg, cases[i].want))
            fprintf(stderr, "\n  rc %d, message '%s', expected '%s'\n", rc, msg, cases[i].want);
        CU_ASSERT_EQUAL(rc, FTQ_ENUMERIC);
        CU_ASSERT(strstr(msg, cases[i].want) != NULL);
        CU_ASSERT(!ftq_is_dir(out)); /* nothing written */
        CU_ASSERT(rep.n_tensors == 0 && rep.tensors == NULL);
    }
}

static void test_param_errors(void)
{
    char out[1024];
    out_path("qm_params", "out", out, sizeof out);
    const struct {
        int bits, group, asym;
        ftq_qpolicy emb, head;
        const char *want;
    } cases[] = {
        {5, 32, 0, FTQ_QPOLICY_KEEP, FTQ_QPOLICY_AUTO, "cannot quantize to 5 bits"},
        {8, 32, 1, FTQ_QPOLICY_KEEP, FTQ_QPOLICY_AUTO, "asymmetric scales are for int4 only"},
        {4, 0, 0, FTQ_QPOLICY_KEEP, FTQ_QPOLICY_AUTO, "per-row scales (group 0) need int8"},
        {4, 48, 0, FTQ_QPOLICY_KEEP, FTQ_QPOLICY_AUTO, "invalid group size 48"},
        {8, 32, 0, FTQ_QPOLICY_AUTO, FTQ_QPOLICY_AUTO, "invalid embeddings policy 4"},
        {8, 32, 0, FTQ_QPOLICY_KEEP, (ftq_qpolicy)9, "invalid head policy 9"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ftq_quantize_params p = qparams(cases[i].bits, cases[i].group, cases[i].asym, 0);
        p.embeddings = cases[i].emb;
        p.head = cases[i].head;
        ftq_quantize_report rep;
        CU_ASSERT_EQUAL(ftq_quantize_model(shared_path(STORIES), out, &p, &rep), FTQ_EINVAL);
        if (!strstr(ftq_last_error(), cases[i].want))
            fprintf(stderr, "\n  message '%s', expected '%s'\n", ftq_last_error(), cases[i].want);
        CU_ASSERT(strstr(ftq_last_error(), cases[i].want) != NULL);
        CU_ASSERT(!ftq_is_dir(out));
    }
    /* an existing output, an already quantized input, dequantizing an ordinary model */
    ftq_quantize_params p = qparams(8, 32, 0, 0);
    ftq_quantize_report rep;
    ASSERT_OK(quantize(shared_path(STORIES), out, &p, NULL));
    CU_ASSERT_NOT_EQUAL(ftq_quantize_model(shared_path(STORIES), out, &p, &rep), FTQ_OK);
    char out2[1100];
    snprintf(out2, sizeof out2, "%s2", out);
    CU_ASSERT_EQUAL(ftq_quantize_model(out, out2, &p, &rep), FTQ_EINVAL);
    CU_ASSERT(strstr(ftq_last_error(), "already quantized") != NULL);
    CU_ASSERT_EQUAL(ftq_dequantize_model(shared_path(STORIES), out2, FTQ_DTYPE_F32), FTQ_EINVAL);
    CU_ASSERT(strstr(ftq_last_error(), "not a quantized checkpoint") != NULL);
    CU_ASSERT_EQUAL(ftq_dequantize_model(out, out2, FTQ_DTYPE_I8), FTQ_EINVAL);
    CU_ASSERT(!ftq_is_dir(out2));

    /* the command: impossible options are one-line errors with exit status 2 */
    const char *bad[] = {"--type int8 --asym", "--type int4 --group 0", "--group 48", "--type int3",
                         "--head int2", "--embeddings auto"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char cmd[2600], *o = NULL;
        snprintf(cmd, sizeof cmd, "'%s' quantize -m '%s' -o '%s' %s 2>&1", ftq_binary(), shared_path(STORIES), out2,
                 bad[i]);
        int st = run_capture(cmd, &o);
        ASSERT_INT_EQ(st, 2);
        CU_ASSERT(strncmp(o, "ftq quantize: error: ", 21) == 0 && strchr(o, '\n') == o + strlen(o) - 1);
        free(o);
    }
}

/* ---- classify and generate on quantized models -------------------------------------------------- */

/* llama_tiny_random as a 3-label LlamaForSequenceClassification (score [3, 64] random). */
static void make_classifier(const char *dir)
{
    char path[1200], *text = NULL;
    ftq_checkpoint *ck = NULL;
    ASSERT_OK(ftq_checkpoint_open(shared_path(LLAMA), &ck));
    variant v;
    variant_load(&v, ck);
    vremove(&v, "lm_head.weight");
    float *score = malloc(sizeof(float) * 3 * 64);
    ftq_rng r;
    ftq_rng_seed(&r, 5);
    for (int i = 0; i < 3 * 64; i++)
        score[i] = 0.5f * ftq_rng_normal(&r);
    v.bufs[v.nb++] = score;
    ftq_tensor *t = &v.t[v.n++];
    memset(t, 0, sizeof *t);
    t->name = "score.weight";
    t->dtype = FTQ_DTYPE_F32;
    t->ndim = 2;
    t->shape[0] = 3;
    t->shape[1] = 64;
    t->nbytes = sizeof(float) * 3 * 64;
    t->data = score;
    variant_write(&v, shared_path(LLAMA), dir);
    variant_free(&v);
    ftq_checkpoint_close(ck);
    /* config: a classifier with 3 labels */
    size_t len = 0;
    snprintf(path, sizeof path, "%s/config.json", dir);
    ASSERT_OK(ftq_read_file(path, &text, &len));
    cJSON *j = cJSON_Parse(text);
    free(text);
    const char *arch = "LlamaForSequenceClassification";
    cJSON_ReplaceItemInObject(j, "architectures", cJSON_CreateStringArray(&arch, 1));
    cJSON *map = cJSON_CreateObject();
    cJSON_AddStringToObject(map, "0", "neg");
    cJSON_AddStringToObject(map, "1", "neu");
    cJSON_AddStringToObject(map, "2", "pos");
    cJSON_AddItemToObject(j, "id2label", map);
    char *out = cJSON_Print(j);
    FILE *f = fopen(path, "w");
    fputs(out, f);
    fclose(f);
    free(out);
    cJSON_Delete(j);
}

static int classify_all(const char *dir, float *lg /* [4][3] */)
{
    ftq_model *m = NULL;
    ftq_session *s = NULL;
    int rc = ftq_model_load(dir, &m);
    if (rc == FTQ_OK)
        rc = ftq_session_new(m, 32, &s);
    for (int b = 0; b < 4 && rc == FTQ_OK; b++) {
        int32_t ids[24];
        prompt_ids(ids, 24, 512, 900 + b);
        rc = ftq_model_classify(m, s, ids, 10 + 4 * b, lg + 3 * b);
    }
    if (rc != FTQ_OK)
        fprintf(stderr, "\n  classify '%s': %s\n", dir, ftq_last_error());
    ftq_session_free(s);
    ftq_model_free(m);
    return rc;
}

/* A quantized classifier classifies: the default keeps the score head (stored F32), --head
 * int8 quantizes it; both agree with their dequantized twins within the activation
 * rounding, and int8 with the f32 original. */
static void test_classifier(void)
{
    char base[1024], src[1100], q4[1100], q8h[1100], d4[1100], d8h[1100];
    snprintf(base, sizeof base, "%s", test_tmpdir("qm_cls"));
    snprintf(src, sizeof src, "%s/src", base);
    snprintf(q4, sizeof q4, "%s/q4", base);
    snprintf(q8h, sizeof q8h, "%s/q8head", base);
    snprintf(d4, sizeof d4, "%s/d4", base);
    snprintf(d8h, sizeof d8h, "%s/d8head", base);
    make_classifier(src);
    ftq_quantize_params p = qparams(4, 32, 1, 1);
    ASSERT_OK(quantize(src, q4, &p, NULL)); /* default: the score head is kept */
    p = qparams(8, 32, 0, 0);
    p.head = FTQ_QPOLICY_INT8;
    ASSERT_OK(quantize(src, q8h, &p, NULL));
    ASSERT_OK(ftq_dequantize_model(q4, d4, FTQ_DTYPE_F32));
    ASSERT_OK(ftq_dequantize_model(q8h, d8h, FTQ_DTYPE_F32));
    ftq_checkpoint *ck = NULL;
    ASSERT_OK(ftq_checkpoint_open(q4, &ck));
    const ftq_tensor *sc = ftq_checkpoint_find(ck, "score.weight");
    CU_ASSERT(sc && sc->dtype == FTQ_DTYPE_F32);
    ftq_checkpoint_close(ck);
    ASSERT_OK(ftq_checkpoint_open(q8h, &ck));
    CU_ASSERT_PTR_NOT_NULL(ftq_checkpoint_find(ck, "score.qweight"));
    ftq_checkpoint_close(ck);
    float f[12], a[12], da[12], b[12], db[12];
    ASSERT_OK(classify_all(src, f));
    ASSERT_OK(classify_all(q4, a));
    ASSERT_OK(classify_all(d4, da));
    ASSERT_OK(classify_all(q8h, b));
    ASSERT_OK(classify_all(d8h, db));
    double w4 = 0, w8 = 0, w8f = 0, mx = 0;
    for (int i = 0; i < 12; i++) {
        w4 = fmax(w4, fabs(a[i] - da[i]));
        w8 = fmax(w8, fabs(b[i] - db[i]));
        w8f = fmax(w8f, fabs(b[i] - f[i]));
        mx = fmax(mx, fabs(f[i]));
        CU_ASSERT(isfinite(a[i]) && isfinite(b[i]));
    }
    fprintf(stderr, "\n    classifier: max |d logit| int4 vs its twin %.3g, int8 (score int8) vs its twin %.3g, "
                    "vs f32 %.3g (|logits| up to %.3g)",
            w4, w8, w8f, mx);
    CU_ASSERT(w4 <= 0.02 * mx && w8 <= 0.02 * mx && w8f <= 0.05 * mx);
}

static void test_generate_int4(void)
{
    char q[1024], d[1100];
    ftq_quantize_params p = qparams(4, 32, 0, 0);
    ASSERT_OK(quantize(shared_path(STORIES), out_path("qm_gen", "q", q, sizeof q), &p, NULL));
    snprintf(d, sizeof d, "%s/../d", q);
    ASSERT_OK(ftq_dequantize_model(q, d, FTQ_DTYPE_F32));
    ftq_tokenizer *tk = NULL;
    ASSERT_OK(ftq_tokenizer_load(q, &tk));
    int32_t *ids = NULL;
    size_t n = 0;
    ASSERT_OK(ftq_tokenizer_encode(tk, "Once upon a time", 16, 1, &ids, &n));
    int32_t out[2][32];
    const char *dirs[2] = {q, d};
    for (int k = 0; k < 2; k++) {
        ftq_model *m = NULL;
        ftq_session *s = NULL;
        ASSERT_OK(ftq_model_load(dirs[k], &m));
        ASSERT_OK(ftq_session_new(m, 64, &s));
        float lg[512];
        ASSERT_OK(ftq_session_eval(s, ids, (int)n, lg, 0));
        for (int t = 0; t < 32; t++) {
            int best = 0;
            for (int v = 1; v < 512; v++)
                best = lg[v] > lg[best] ? v : best;
            out[k][t] = best;
            ASSERT_OK(ftq_session_eval(s, &out[k][t], 1, lg, 0));
        }
        ftq_session_free(s);
        ftq_model_free(m);
    }
    int same = 0;
    while (same < 32 && out[0][same] == out[1][same])
        same++;
    char *text = NULL;
    size_t tl = 0;
    ASSERT_OK(ftq_tokenizer_decode(tk, out[0], 32, 1, &text, &tl));
    fprintf(stderr, "\n    int4 greedy: \"%.60s...\" (first %d of 32 tokens as its dequantized twin)", text, same);
    CU_ASSERT(tl > 20);
    CU_ASSERT(same >= 8);
    free(text);
    free(ids);
    ftq_tokenizer_free(tk);
}

/* f16 / bf16 dequantization: the same names, the requested dtype everywhere, loads. */
static void test_dequantize_dtypes(void)
{
    char q[1024], d[1100];
    ftq_quantize_params p = qparams(4, 64, 1, 0);
    ASSERT_OK(quantize(shared_path(GPT2), out_path("qm_deq", "q", q, sizeof q), &p, NULL));
    const ftq_dtype dts[2] = {FTQ_DTYPE_F16, FTQ_DTYPE_BF16};
    for (int k = 0; k < 2; k++) {
        snprintf(d, sizeof d, "%s/../d%d", q, k);
        ASSERT_OK(ftq_dequantize_model(q, d, dts[k]));
        ftq_checkpoint *ck = NULL;
        ASSERT_OK(ftq_checkpoint_open(d, &ck));
        for (size_t i = 0; i < ftq_checkpoint_count(ck); i++)
            CU_ASSERT(ftq_checkpoint_tensor(ck, i)->dtype == dts[k]);
        const ftq_tensor *ca = ftq_checkpoint_find(ck, "transformer.h.0.attn.c_attn.weight");
        CU_ASSERT(ca && ca->shape[0] == 64 && ca->shape[1] == 192); /* Conv1D [in, out] again */
        ftq_checkpoint_close(ck);
        ftq_model *m = NULL;
        ASSERT_OK(ftq_model_load(d, &m));
        CU_ASSERT(!m->cfg.tie_word_embeddings); /* the split head stays split */
        CU_ASSERT_STRING_EQUAL(m->cfg.torch_dtype, k ? "bfloat16" : "float16");
        ftq_model_free(m);
    }
}

void test_register_quant_model(void)
{
    static const test_case cases[] = {
        {"roundtrip_stories", test_roundtrip_stories},
        {"roundtrip_llama", test_roundtrip_llama},
        {"roundtrip_gpt2", test_roundtrip_gpt2},
        {"metadata", test_metadata},
        {"tied_kept", test_tied_kept},
        {"ppl_int8", test_ppl_int8},
        {"paths_agree", test_paths_agree},
        {"search", test_search},
        {"malformed", test_malformed},
        {"nan_refused", test_nan_refused},
        {"param_errors", test_param_errors},
        {"classifier", test_classifier},
        {"generate_int4", test_generate_int4},
        {"dequantize_dtypes", test_dequantize_dtypes},
        {NULL, NULL},
    };
    test_add_suite("quant_model", cases);
}
