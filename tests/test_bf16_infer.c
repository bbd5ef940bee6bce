/* test_bf16_infer.c - bf16 inference (FTQ_LOAD_BF16, `--precision bf16`): the packed bf16
 * kernels of kernels/bmat.c against an independent double product of the same bf16 values and
 * the AVX512-BF16 GEMV against the scalar reference bit for bit; a loaded model's matrices
 * equal round-to-nearest-even bf16 of the f32 model's; a BF16 safetensors checkpoint is packed
 * without widening (its bits, and the same logits as the f32 file rounded at load); logits
 * against the f32 model within a stated bound (stories260K and the tiny Llama / GPT-2
 * goldens); 1 and 2 threads identical; the command line. A SIMD path this CPU lacks (or that
 * FTQ_CPU_MASK hides) is SKIPPED. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/bmat.h"
#include "model/model.h"
#include "tests/test_util.h"

#define LLAMA_DIR "golden/llama_tiny_random"
#define GPT2_DIR "golden/gpt2_tiny_random"
#define STORIES_DIR "models/stories260K"

static void fill(float *x, size_t n, uint64_t seed, float scale)
{
    ftq_rng r;
    ftq_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++)
        x[i] = scale * (float)((double)(ftq_rng_u64(&r) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static float bf(float x) { return ftq_bf16_to_f32(ftq_f32_to_bf16(x)); }

static ftq_bmat *bmat_new(const float *w, int rows, int cols)
{
    ftq_bmat *m = malloc(sizeof *m);
    m->rows = rows;
    m->cols = cols;
    m->b = malloc(2 * ftq_bmat_elems(rows, cols));
    ftq_bmat_pack_f32(m, w, (size_t)cols, 1);
    return m;
}

static void bmat_free(ftq_bmat *m)
{
    if (m)
        free(m->b);
    free(m);
}

/* ---- kernels --------------------------------------------------------------------------- */

/* Every path and row count (GEMV and GEMM sizes, tails in rows and columns) against the
 * product of the bf16-rounded values in double: an fp32 sum of K exact products is within
 * (K + 2) u sum|products| of it (u = 2^-24; 2K + 2 allows AMX's rounding of pair sums). Packing
 * from stored bf16 gives the same bits as packing from f32, and rows read back as bf16(W). */
static void test_reference(void)
{
    const int O = 37, I = 70, Ts[] = {1, 2, 3, 4, 5, 45};
    float *w = malloc(sizeof(float) * O * I), *x = malloc(sizeof(float) * 45 * I), *bias = malloc(sizeof(float) * O);
    float *y = malloc(sizeof(float) * 45 * O), *row = malloc(sizeof(float) * I);
    fill(w, (size_t)O * I, 1, 0.5f);
    fill(x, (size_t)45 * I, 2, 2.0f);
    fill(bias, (size_t)O, 3, 1.0f);
    ftq_bmat *m = bmat_new(w, O, I);
    int bad = 0;
    /* from stored bf16 bits (row-major and transposed strides) */
    uint16_t *h = malloc(sizeof(uint16_t) * O * I), *ht = malloc(sizeof(uint16_t) * O * I);
    for (int o = 0; o < O; o++)
        for (int i = 0; i < I; i++)
            h[o * I + i] = ht[i * O + o] = ftq_f32_to_bf16(w[o * I + i]);
    ftq_bmat m2 = {O, I, malloc(2 * ftq_bmat_elems(O, I))}, m3 = {O, I, malloc(2 * ftq_bmat_elems(O, I))};
    ftq_bmat_pack_bf16(&m2, h, (size_t)I, 1);
    ftq_bmat_pack_bf16(&m3, ht, 1, (size_t)O);
    CU_ASSERT(memcmp(m2.b, m->b, 2 * ftq_bmat_elems(O, I)) == 0);
    CU_ASSERT(memcmp(m3.b, m->b, 2 * ftq_bmat_elems(O, I)) == 0);
    for (int o = 0; o < O; o++) {
        ftq_bmat_row(m, o, row);
        for (int i = 0; i < I; i++)
            bad += row[i] != bf(w[o * I + i]) || ftq_bmat_at(m, o, i) != bf(w[o * I + i]);
    }
    ASSERT_INT_EQ(bad, 0);
    const ftq_bf16_path paths[] = {FTQ_BF16_SCALAR, FTQ_BF16_AUTO};
    const double u = ldexp(1.0, -24);
    for (int pi = 0; pi < 2; pi++)
        for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
            int T = Ts[ti];
            ASSERT_OK(ftq_bmat_mul_path(paths[pi], y, x, m, ti % 2 ? bias : NULL, T, NULL));
            for (int t = 0; t < T; t++)
                for (int o = 0; o < O; o++) {
                    double s = ti % 2 ? bias[o] : 0.0, g = fabs(s);
                    for (int i = 0; i < I; i++) {
                        double p = (double)bf(x[t * I + i]) * bf(w[o * I + i]);
                        s += p;
                        g += fabs(p);
                    }
                    bad += !(fabs(y[t * O + o] - s) <= (2.0 * I + 2) * u * g);
                }
        }
    ASSERT_INT_EQ(bad, 0);
    free(m2.b);
    free(m3.b);
    free(h);
    free(ht);
    bmat_free(m);
    free(w);
    free(x);
    free(bias);
    free(y);
    free(row);
}

/* The AVX512-BF16 GEMV (1 to 3 rows) against the scalar reference: bit-identical (the same
 * pair order, odd product first), on a matrix whose panels take both the 4- and 2-panel
 * kernels and a row tail. */
static void test_gemv_avx512(void)
{
    if (!test_require_cpu(FTQ_CPU_AVX512F | FTQ_CPU_AVX512BW | FTQ_CPU_AVX512BF16, "bf16 gemv"))
        return;
    const int O = 100, I = 333;
    float *w = malloc(sizeof(float) * O * I), *x = malloc(sizeof(float) * 3 * I), *bias = malloc(sizeof(float) * O);
    float *y1 = malloc(sizeof(float) * 3 * O), *y2 = malloc(sizeof(float) * 3 * O);
    fill(w, (size_t)O * I, 10, 1.0f);
    fill(x, (size_t)3 * I, 11, 1.0f);
    fill(bias, (size_t)O, 12, 1.0f);
    ftq_bmat *m = bmat_new(w, O, I);
    for (int T = 1; T < FTQ_BMAT_GEMV_T; T++) {
        ASSERT_OK(ftq_bmat_mul_path(FTQ_BF16_SCALAR, y1, x, m, T == 2 ? NULL : bias, T, NULL));
        ASSERT_OK(ftq_bmat_mul_path(FTQ_BF16_AVX512, y2, x, m, T == 2 ? NULL : bias, T, NULL));
        CU_ASSERT(memcmp(y1, y2, sizeof(float) * (size_t)T * O) == 0);
    }
    bmat_free(m);
    free(w);
    free(x);
    free(bias);
    free(y1);
    free(y2);
}

/* ---- models ---------------------------------------------------------------------------- */

static ftq_model *load(const char *dir, unsigned flags)
{
    ftq_model *m = NULL;
    if (ftq_model_load_ex(dir, flags, &m) != FTQ_OK) {
        CU_FAIL("cannot load the model");
        fprintf(stderr, "\n  %s\n", ftq_last_error());
        return NULL;
    }
    return m;
}

/* Every matrix of the bf16 model (tensor by tensor of the layer table, embeddings, heads) is
 * BMAT and holds exactly ftq_f32_to_bf16 of the f32 model's; everything else stays F32 and
 * equal. Returns the number of mismatching values; *held = bytes of the BMAT matrices,
 * *f32 = bytes of the same matrices in f32. */
static long compare_tensor(const ftq_tensor *b, const ftq_tensor *f, size_t *held, size_t *f32)
{
    if (!f->data)
        return b->data != NULL;
    if (f->ndim != 2)
        return b->dtype != FTQ_DTYPE_F32 || memcmp(b->data, f->data, f->nbytes) != 0;
    if (b->dtype != FTQ_DTYPE_BMAT || b->shape[0] != f->shape[0] || b->shape[1] != f->shape[1])
        return 1;
    const ftq_bmat *bm = b->data;
    const float *w = f->data;
    long bad = 0;
    for (int o = 0; o < bm->rows; o++)
        for (int i = 0; i < bm->cols; i++) {
            float want = bf(w[(size_t)o * bm->cols + i]), got = ftq_bmat_at(bm, o, i);
            bad += memcmp(&want, &got, 4) != 0;
        }
    *held += b->nbytes;
    *f32 += f->nbytes;
    return bad;
}

static void weights_case(const char *path)
{
    ftq_model *f = load(path, 0), *b = load(path, FTQ_LOAD_BF16);
    if (!f || !b)
        goto done;
    size_t held = 0, f32 = 0;
    long bad = compare_tensor(&b->tok_emb, &f->tok_emb, &held, &f32) + compare_tensor(&b->pos_emb, &f->pos_emb, &held, &f32) +
               compare_tensor(&b->norm_w, &f->norm_w, &held, &f32) + compare_tensor(&b->norm_b, &f->norm_b, &held, &f32);
    if (!f->cfg.tie_word_embeddings)
        bad += compare_tensor(&b->lm_head, &f->lm_head, &held, &f32);
    else
        bad += b->lm_head.data != b->tok_emb.data;
    for (int l = 0; l < f->cfg.n_layers; l++) {
        const ftq_tensor *tb = (const ftq_tensor *)&b->layers[l], *tf = (const ftq_tensor *)&f->layers[l];
        for (size_t i = 0; i < sizeof(ftq_layer_weights) / sizeof(ftq_tensor); i++)
            bad += compare_tensor(&tb[i], &tf[i], &held, &f32);
    }
    ASSERT_INT_EQ(bad, 0);
    /* half the bytes, up to the padding of rows and columns to 32 */
    CU_ASSERT(held >= f32 / 2 && held <= f32 / 2 + f32 / 4);
    CU_ASSERT(b->layers[0].wq.dtype == FTQ_DTYPE_BMAT && b->layers[0].norm1_w.dtype == FTQ_DTYPE_F32);
done:
    ftq_model_free(f);
    ftq_model_free(b);
}

/* The tiny Llama / GPT-2 safetensors, stories260K, and a GGUF file (narrowed to BF16 at open,
 * its Conv1D matrices transposed on the way). */
static void test_weights(void)
{
    weights_case(shared_path(LLAMA_DIR));
    weights_case(shared_path(GPT2_DIR));
    weights_case(shared_path(STORIES_DIR));
    weights_case(source_path("tests/fixtures/gguf/gpt2_tiny.gguf"));
}

/* Logits of n ids (all rows, one chunk) and the same ids one token at a time (the GEMV path);
 * logits [n][V] and step [n][V]. */
static int run_logits(ftq_model *m, const int32_t *ids, int n, float *logits, float *step)
{
    ftq_session *s = NULL;
    int V = m->cfg.vocab_size, rc = ftq_session_new(m, n, &s);
    if (rc == FTQ_OK)
        rc = ftq_session_eval(s, ids, n, logits, 1);
    ftq_session_reset(s);
    for (int t = 0; rc == FTQ_OK && step && t < n; t++)
        rc = ftq_session_eval(s, ids + t, 1, step + (size_t)t * V, 0);
    ftq_session_free(s);
    return rc;
}

/* bf16 logits against f32: bf16 rounds every weight and matmul input to 8 significant bits
 * (relative error up to 2^-9 each, random in sign), so each logit moves by a small fraction
 * of the logits' spread. Bound: max |dlogit| <= 0.015 * (max - min of the f32 row) and the
 * mean KL(f32 || bf16) of the next-token distributions <= 5e-4 nats, for the chunk (GEMM) and
 * the token-at-a-time (GEMV) logits. Measured (AMX and scalar): worst 0.0036 / 0.0027 /
 * 0.0047 of the range, KL 1.9e-7 / 1.7e-7 / 1.2e-4 for tiny Llama / tiny GPT-2 / stories260K. */
static void logits_case(const char *dir, int n, double *worst_rel, double *mean_kl)
{
    ftq_model *f = load(shared_path(dir), 0), *b = load(shared_path(dir), FTQ_LOAD_BF16);
    float *lf = NULL, *lb = NULL, *sb = NULL;
    *worst_rel = *mean_kl = INFINITY;
    if (!f || !b)
        goto done;
    int V = f->cfg.vocab_size;
    int32_t *ids = malloc(sizeof(int32_t) * n);
    for (int t = 0; t < n; t++)
        ids[t] = (int32_t)((t * 7919 + 13) % V);
    lf = malloc(sizeof(float) * (size_t)n * V);
    lb = malloc(sizeof(float) * (size_t)n * V);
    sb = malloc(sizeof(float) * (size_t)n * V);
    ASSERT_OK(run_logits(f, ids, n, lf, NULL));
    ASSERT_OK(run_logits(b, ids, n, lb, sb));
    double worst = 0, kl = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int t = 0; t < n; t++) {
            const float *r = lf + (size_t)t * V, *q = (pass ? sb : lb) + (size_t)t * V;
            double mx = r[0], mn = r[0], mq = q[0], d = 0;
            for (int v = 0; v < V; v++) {
                mx = r[v] > mx ? r[v] : mx;
                mn = r[v] < mn ? r[v] : mn;
                mq = q[v] > mq ? q[v] : mq;
                d = fabs(r[v] - q[v]) > d ? fabs(r[v] - q[v]) : d;
            }
            double zr = 0, zq = 0, e = 0;
            for (int v = 0; v < V; v++) {
                zr += exp(r[v] - mx);
                zq += exp(q[v] - mq);
            }
            for (int v = 0; v < V; v++) {
                double pr = exp(r[v] - mx) / zr;
                e += pr * ((r[v] - mx - log(zr)) - (q[v] - mq - log(zq)));
            }
            worst = d / (mx - mn) > worst ? d / (mx - mn) : worst;
            kl += e / (2.0 * n);
        }
    *worst_rel = worst;
    *mean_kl = kl;
    free(ids);
done:
    free(lf);
    free(lb);
    free(sb);
    ftq_model_free(f);
    ftq_model_free(b);
}

static void test_logits(void)
{
    const char *dirs[] = {LLAMA_DIR, GPT2_DIR, STORIES_DIR};
    const int ns[] = {40, 40, 64};
    for (int d = 0; d < 3; d++) {
        double rel, kl;
        logits_case(dirs[d], ns[d], &rel, &kl);
        if (getenv("FTQ_TEST_VERBOSE") || rel > 0.015 || kl > 5e-4)
            fprintf(stderr, "\n  %s: worst |dlogit| / range %.3g, mean KL %.3g\n", dirs[d], rel, kl);
        CU_ASSERT(rel <= 0.015);
        CU_ASSERT(kl <= 5e-4);
    }
}

/* A BF16 safetensors checkpoint (the tiny Llama's matrices rounded to bf16 and written here)
 * loads with FTQ_LOAD_BF16 as packed bf16 holding the file's bits, gives the same logits bit
 * for bit as the f32 file loaded with FTQ_LOAD_BF16 (whose rounding makes the same values),
 * and without the flag is widened to F32 as before. */
static void test_bf16_checkpoint(void)
{
    const char *src = shared_path(LLAMA_DIR);
    const char *dir = test_tmpdir("bf16_ckpt");
    ftq_checkpoint *ck = NULL;
    ASSERT_OK(ftq_checkpoint_open(src, &ck));
    size_t n = ftq_checkpoint_count(ck);
    ftq_tensor *ts = calloc(n, sizeof *ts);
    for (size_t i = 0; i < n; i++) {
        const ftq_tensor *t = ftq_checkpoint_tensor(ck, i);
        ts[i] = *t;
        if (t->ndim != 2) { /* norms stay F32 (so both models below have the same norms) */
            ts[i].data = malloc(t->nbytes);
            memcpy(ts[i].data, t->data, t->nbytes);
            continue;
        }
        ts[i].dtype = FTQ_DTYPE_BF16;
        ts[i].nbytes = t->nbytes / 2;
        ts[i].data = malloc(ts[i].nbytes);
        ftq_dtype_info(FTQ_DTYPE_BF16)->from_f32(t->data, ts[i].data, (size_t)ftq_tensor_numel(t));
    }
    char path[1024], cfg[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(cfg, sizeof cfg, "%s/config.json", src);
    ASSERT_OK(ftq_st_write(path, ts, n, NULL));
    char *text = NULL;
    size_t len = 0;
    ASSERT_OK(ftq_read_file(cfg, &text, &len));
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    FILE *fp = fopen(cfg, "wb");
    CU_ASSERT_FATAL(fp != NULL);
    fwrite(text, 1, len, fp);
    fclose(fp);
    free(text);
    ftq_model *mb = load(dir, FTQ_LOAD_BF16), *mw = load(dir, 0), *mf = load(src, FTQ_LOAD_BF16);
    if (!mb || !mw || !mf)
        goto done;
    /* q_proj of layer 1: BMAT with the file's bits; widened to F32 without the flag */
    const ftq_tensor *fq = ftq_checkpoint_find(ck, "model.layers.1.self_attn.q_proj.weight");
    const ftq_bmat *bq = mb->layers[1].wq.data;
    CU_ASSERT(mb->layers[1].wq.dtype == FTQ_DTYPE_BMAT && mw->layers[1].wq.dtype == FTQ_DTYPE_F32);
    CU_ASSERT(mb->layers[1].wq.nbytes == 2 * ftq_bmat_elems(bq->rows, bq->cols));
    long bad = 0;
    for (int o = 0; o < bq->rows; o++)
        for (int i = 0; i < bq->cols; i++)
            bad += ftq_f32_to_bf16(ftq_bmat_at(bq, o, i)) != ftq_f32_to_bf16(((const float *)fq->data)[o * bq->cols + i]);
    ASSERT_INT_EQ(bad, 0);
    int V = mb->cfg.vocab_size, T = 24;
    int32_t ids[24];
    for (int t = 0; t < T; t++)
        ids[t] = (t * 37 + 5) % V;
    float *l1 = malloc(sizeof(float) * T * V), *l2 = malloc(sizeof(float) * T * V);
    ASSERT_OK(run_logits(mb, ids, T, l1, NULL));
    ASSERT_OK(run_logits(mf, ids, T, l2, NULL));
    CU_ASSERT(memcmp(l1, l2, sizeof(float) * T * V) == 0);
    free(l1);
    free(l2);
done:
    ftq_model_free(mb);
    ftq_model_free(mw);
    ftq_model_free(mf);
    for (size_t i = 0; i < n; i++)
        free(ts[i].data);
    free(ts);
    ftq_checkpoint_close(ck);
}

/* 1 and 2 threads: identical logits (a chunk on the GEMM path and single tokens on the GEMV). */
static void test_threads(void)
{
    ftq_model *m = load(shared_path(STORIES_DIR), FTQ_LOAD_BF16);
    if (!m)
        return;
    int V = m->cfg.vocab_size, T = 48;
    int32_t ids[48];
    for (int t = 0; t < T; t++)
        ids[t] = (t * 101 + 3) % V;
    float *a = malloc(sizeof(float) * T * V), *b = malloc(sizeof(float) * T * V);
    float *sa = malloc(sizeof(float) * T * V), *sb = malloc(sizeof(float) * T * V);
    int saved = ftq_get_threads();
    ftq_set_threads(1);
    ASSERT_OK(run_logits(m, ids, T, a, sa));
    ftq_set_threads(2);
    ASSERT_OK(run_logits(m, ids, T, b, sb));
    ftq_set_threads(saved);
    CU_ASSERT(memcmp(a, b, sizeof(float) * T * V) == 0);
    CU_ASSERT(memcmp(sa, sb, sizeof(float) * T * V) == 0);
    free(a);
    free(b);
    free(sa);
    free(sb);
    ftq_model_free(m);
}

/* The commands: perplexity and generate run with --precision bf16 (perplexity within 1 % of
 * fp32's on stories260K); bad values and bf16 with an adapter are one-line errors. */
static void test_cli(void)
{
    char args[2048];
    const char *m = shared_path(STORIES_DIR), *f = shared_path("data/tinystories/tinystories_sample.txt");
    double ppl[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        snprintf(args, sizeof args, "perplexity -m '%s' -f '%s' -c 128 --chunks 4 --json --precision %s", m, f,
                 i ? "bf16" : "fp32");
        cJSON *j = ftq_run_json(args);
        if (!j)
            return;
        ppl[i] = cJSON_GetObjectItem(j, "ppl")->valuedouble;
        cJSON_Delete(j);
    }
    CU_ASSERT(fabs(ppl[1] / ppl[0] - 1) < 0.01);
    snprintf(args, sizeof args, "generate -m '%s' -p 'Once upon a time' -n 8 --temperature 0 --json --precision bf16", m);
    cJSON *g = ftq_run_json(args);
    CU_ASSERT(g && cJSON_IsString(cJSON_GetObjectItem(g, "text")));
    cJSON_Delete(g);
    snprintf(args, sizeof args, "perplexity -m '%s' -f '%s' --precision fp16", m, f);
    ftq_expect_error(args, "unknown --precision 'fp16' (expected fp32 or bf16)", NULL);
    snprintf(args, sizeof args, "generate -m '%s' -p hi --precision half", m);
    ftq_expect_error(args, "unknown --precision 'half'", NULL);
    snprintf(args, sizeof args, "generate -m '%s' -p hi --precision bf16 --adapter '%s'", m, m);
    ftq_expect_error(args, "--precision bf16 cannot merge --adapter", NULL);
}

void test_register_bf16_infer(void)
{
    static const test_case cases[] = {
        {"reference", test_reference}, {"gemv_avx512", test_gemv_avx512}, {"weights", test_weights},
        {"logits", test_logits},       {"bf16_checkpoint", test_bf16_checkpoint}, {"threads", test_threads},
        {"cli", test_cli},             {NULL, NULL},
    };
    test_add_suite("bf16_infer", cases);
}
