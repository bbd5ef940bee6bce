/* test_prune.c - pruning: exact requested sparsity, the kept/pruned threshold property,
 * N:M masks against brute force, Wanda against a hand-computed case, ties, errors. */
#include <stdlib.h>
#include <string.h>

#include "include/ftq_prune.h"
#include "tests/test_util.h"

static float *random_matrix(int64_t n, uint64_t seed)
{
    ftq_rng r;
    ftq_rng_seed(&r, seed);
    float *w = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++)
        w[i] = ftq_rng_normal(&r);
    return w;
}

/* Every pruned |w| <= every kept |w| (scores = |w| * scale). */
static int threshold_ok(const float *orig, const float *w, int64_t n, const float *scale)
{
    float max_pruned = -1.0f, min_kept = INFINITY;
    for (int64_t i = 0; i < n; i++) {
        float s = fabsf(orig[i]) * (scale ? scale[i] : 1.0f);
        if (w[i] == 0.0f && orig[i] != 0.0f)
            max_pruned = s > max_pruned ? s : max_pruned;
        else if (w[i] != 0.0f)
            min_kept = s < min_kept ? s : min_kept;
    }
    return max_pruned <= min_kept;
}

static void test_magnitude_tensor(void)
{
    const int64_t R = 37, C = 53, n = R * C;
    const float sp[] = {0.0f, 0.1f, 0.5f, 0.77f, 1.0f};
    for (size_t k = 0; k < sizeof sp / sizeof sp[0]; k++) {
        float *orig = random_matrix(n, 1 + k), *w = malloc(sizeof(float) * n);
        memcpy(w, orig, sizeof(float) * n);
        ASSERT_OK(ftq_prune_magnitude(w, R, C, sp[k], FTQ_PRUNE_TENSOR));
        ASSERT_INT_EQ(ftq_count_zeros(w, n), llround(sp[k] * n));
        CU_ASSERT(threshold_ok(orig, w, n, NULL));
        for (int64_t i = 0; i < n; i++) /* kept values unchanged */
            if (w[i] != 0.0f && w[i] != orig[i])
                CU_FAIL("kept value changed");
        free(orig);
        free(w);
    }
}

static void test_magnitude_row(void)
{
    const int64_t R = 9, C = 100;
    float *orig = random_matrix(R * C, 42), *w = malloc(sizeof(float) * R * C);
    memcpy(w, orig, sizeof(float) * R * C);
    ASSERT_OK(ftq_prune_magnitude(w, R, C, 0.3f, FTQ_PRUNE_ROW));
    for (int64_t r = 0; r < R; r++) {
        ASSERT_INT_EQ(ftq_count_zeros(w + r * C, C), 30);
        CU_ASSERT(threshold_ok(orig + r * C, w + r * C, C, NULL));
    }
    free(orig);
    free(w);
}

/* Ties: equal magnitudes are pruned in index order, so the count is still exact. */
static void test_ties(void)
{
    float w[10] = {1, -1, 1, 2, -1, 2, 1, 3, -1, 1};
    ASSERT_OK(ftq_prune_magnitude(w, 1, 10, 0.4f, FTQ_PRUNE_TENSOR));
    const float want[10] = {0, 0, 0, 2, 0, 2, 1, 3, -1, 1};
    for (int i = 0; i < 10; i++)
        ASSERT_NEAR(w[i], want[i], 0);
    float v[10] = {1, -1, 1, 2, -1, 2, 1, 3, -1, 1};
    ASSERT_OK(ftq_prune_magnitude(v, 1, 10, 0.4f, FTQ_PRUNE_ROW));
    for (int i = 0; i < 10; i++)
        ASSERT_NEAR(v[i], want[i], 0);
}

static void test_nm_exact(void)
{
    const int64_t R = 13, C = 64;
    const int nm[][2] = {{2, 4}, {1, 4}, {4, 8}, {3, 8}};
    for (size_t t = 0; t < 4; t++) {
        int n = nm[t][0], m = nm[t][1];
        float *orig = random_matrix(R * C, 7 + t), *w = malloc(sizeof(float) * R * C);
        memcpy(w, orig, sizeof(float) * R * C);
        ASSERT_OK(ftq_prune_nm(w, R, C, n, m));
        int bad = 0;
        for (int64_t g = 0; g < R * C; g += m) {
            /* brute force: element j is kept iff fewer than n others beat it */
            for (int j = 0; j < m; j++) {
                int better = 0;
                for (int i = 0; i < m; i++) {
                    float a = fabsf(orig[g + i]), b = fabsf(orig[g + j]);
                    better += a > b || (a == b && i < j);
                }
                int kept = w[g + j] != 0.0f;
                bad += kept != (better < n);
            }
        }
        ASSERT_INT_EQ(bad, 0);
        ASSERT_INT_EQ(ftq_count_zeros(w, R * C), R * C / m * (m - n));
        free(orig);
        free(w);
    }
}

/* A hand-computed Wanda case. W = [[4, -1, 2, 0.5], [1, 3, -2, 1]], ||X|| = [0.1, 2, 1, 4].
 * Scores row 0: 0.4, 2, 2, 2 -> 50 % prunes 0.4 (col 0) and the first tie, col 1.
 * Scores row 1: 0.1, 6, 2, 4 -> prunes col 0 and col 2. Magnitude would prune cols 1, 3 of
 * row 0 and cols 0, 3 of row 1. */
static void test_wanda_hand(void)
{
    float w[8] = {4, -1, 2, 0.5f, 1, 3, -2, 1};
    const float a[4] = {0.1f, 2, 1, 4};
    ASSERT_OK(ftq_prune_wanda(w, 2, 4, a, 0.5f, 0, 0));
    const float want[8] = {0, 0, 2, 0.5f, 0, 3, 0, 1};
    for (int i = 0; i < 8; i++)
        ASSERT_NEAR(w[i], want[i], 0);
    float m[8] = {4, -1, 2, 0.5f, 1, 3, -2, 1};
    ASSERT_OK(ftq_prune_magnitude(m, 2, 4, 0.5f, FTQ_PRUNE_ROW));
    const float want_m[8] = {4, 0, 2, 0, 0, 3, -2, 0};
    for (int i = 0; i < 8; i++)
        ASSERT_NEAR(m[i], want_m[i], 0);
    /* Wanda 2:4 on the same: row 0 keeps the two best of {0.4, 2, 2, 2} -> cols 1, 2 */
    float v[8] = {4, -1, 2, 0.5f, 1, 3, -2, 1};
    ASSERT_OK(ftq_prune_wanda(v, 2, 4, a, 0.0f, 2, 4));
    const float want_nm[8] = {0, -1, 2, 0, 0, 3, 0, 1};
    for (int i = 0; i < 8; i++)
        ASSERT_NEAR(v[i], want_nm[i], 0);
}

/* With equal activation norms Wanda is row-wise magnitude pruning. */
static void test_wanda_uniform(void)
{
    const int64_t R = 5, C = 48;
    float *a = random_matrix(R * C, 3), *b = malloc(sizeof(float) * R * C), *norm = malloc(sizeof(float) * C);
    memcpy(b, a, sizeof(float) * R * C);
    for (int j = 0; j < C; j++)
        norm[j] = 0.7f;
    ASSERT_OK(ftq_prune_wanda(a, R, C, norm, 0.5f, 0, 0));
    ASSERT_OK(ftq_prune_magnitude(b, R, C, 0.5f, FTQ_PRUNE_ROW));
    CU_ASSERT_EQUAL(memcmp(a, b, sizeof(float) * R * C), 0);
    free(a);
    free(b);
    free(norm);
}

static void test_global(void)
{
    float *a = random_matrix(1000, 11), *b = random_matrix(333, 12), *c = random_matrix(77, 13);
    for (int i = 0; i < 333; i++)
        b[i] *= 3.0f; /* b has larger weights: pruned less */
    float *all = malloc(sizeof(float) * 1410), *orig = malloc(sizeof(float) * 1410);
    memcpy(orig, a, 4000);
    memcpy(orig + 1000, b, 333 * 4);
    memcpy(orig + 1333, c, 77 * 4);
    ftq_prune_span sp[3] = {{a, 1000}, {b, 333}, {c, 77}};
    ASSERT_OK(ftq_prune_global(sp, 3, 0.6f));
    memcpy(all, a, 4000);
    memcpy(all + 1000, b, 333 * 4);
    memcpy(all + 1333, c, 77 * 4);
    ASSERT_INT_EQ(ftq_count_zeros(all, 1410), llround(0.6 * 1410));
    CU_ASSERT(threshold_ok(orig, all, 1410, NULL));
    CU_ASSERT(ftq_count_zeros(b, 333) < ftq_count_zeros(a, 1000) * 333 / 1000);
    free(a);
    free(b);
    free(c);
    free(all);
    free(orig);
}

static void test_errors(void)
{
    float w[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    CU_ASSERT_EQUAL(ftq_prune_magnitude(w, 2, 4, 1.5f, FTQ_PRUNE_ROW), FTQ_EINVAL);
    CU_ASSERT_EQUAL(ftq_prune_magnitude(w, 2, 4, -0.1f, FTQ_PRUNE_ROW), FTQ_EINVAL);
    CU_ASSERT_EQUAL(ftq_prune_nm(w, 2, 4, 2, 3), FTQ_EINVAL); /* 4 % 3 */
    CU_ASSERT(strstr(ftq_last_error(), "multiple of 3") != NULL);
    CU_ASSERT_EQUAL(ftq_prune_nm(w, 2, 4, 4, 4), FTQ_EINVAL);
    float a[4] = {1, -1, 1, 1};
    CU_ASSERT_EQUAL(ftq_prune_wanda(w, 2, 4, a, 0.5f, 0, 0), FTQ_EINVAL);
    w[5] = NAN;
    CU_ASSERT_EQUAL(ftq_prune_magnitude(w, 2, 4, 0.5f, FTQ_PRUNE_TENSOR), FTQ_ENUMERIC);
    CU_ASSERT(strstr(ftq_last_error(), "index 5") != NULL);
}

/* ---- whole checkpoints ------------------------------------------------------------ */

static int is_linear_name(const char *name)
{
    const char *keys[] = {"q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight",
                          "gate_proj.weight", "up_proj.weight", "down_proj.weight", "c_attn.weight",
                          "attn.c_proj.weight", "c_fc.weight", "mlp.c_proj.weight"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        size_t a = strlen(name), b = strlen(keys[i]);
        if (a >= b && strcmp(name + a - b, keys[i]) == 0)
            return 1;
    }
    return 0;
}

/* Prune src into a fresh dir; check every linear tensor reached `want` exactly (columns
 * `blocks` wide for GPT-2 c_attn), kept values equal the source, other tensors identical. */
static void check_pruned_checkpoint(const char *src, const char *name, ftq_prune_params *p, double want)
{
    char out[4096];
    snprintf(out, sizeof out, "%s/out", test_tmpdir(name));
    ftq_prune_report rep;
    ASSERT_OK(ftq_prune_model(src, out, p, &rep));
    ftq_checkpoint *a = NULL, *b = NULL;
    ASSERT_OK(ftq_checkpoint_open(src, &a));
    ASSERT_OK(ftq_checkpoint_open(out, &b));
    ASSERT_INT_EQ(ftq_checkpoint_count(b), ftq_checkpoint_count(a));
    size_t n_lin = 0;
    for (size_t i = 0; i < ftq_checkpoint_count(a); i++) {
        const ftq_tensor *ta = ftq_checkpoint_tensor(a, i), *tb = ftq_checkpoint_find(b, ta->name);
        CU_ASSERT_PTR_NOT_NULL_FATAL(tb);
        ASSERT_INT_EQ(tb->nbytes, ta->nbytes);
        if (!is_linear_name(ta->name) || ta->ndim != 2) {
            CU_ASSERT_EQUAL(memcmp(ta->data, tb->data, ta->nbytes), 0);
            continue;
        }
        n_lin++;
        const float *x = ta->data, *y = tb->data;
        int64_t n = ftq_tensor_numel(ta), changed = 0;
        for (int64_t k = 0; k < n; k++)
            changed += y[k] != 0.0f && y[k] != x[k];
        ASSERT_INT_EQ(changed, 0);
        ASSERT_NEAR((double)ftq_count_zeros(y, n) / n, want, 0.5 / ta->shape[0]);
    }
    CU_ASSERT(n_lin > 0);
    ASSERT_INT_EQ(rep.n_tensors, n_lin);
    ASSERT_NEAR((double)rep.pruned_zeros / rep.pruned_numel, want, 1e-3);
    /* the output is a loadable model */
    ftq_model *m = NULL;
    ASSERT_OK(ftq_model_load(out, &m));
    ftq_model_free(m);
    ftq_checkpoint_close(a);
    ftq_checkpoint_close(b);
    ftq_prune_report_free(&rep);
}

static void test_model_magnitude(void)
{
    ftq_prune_params p = ftq_prune_default_params();
    p.sparsity = 0.5f;
    p.scope = FTQ_PRUNE_TENSOR;
    check_pruned_checkpoint(shared_path("models/stories260K"), "prune_mag_llama", &p, 0.5);
    check_pruned_checkpoint(shared_path("golden/gpt2_tiny_random"), "prune_mag_gpt2", &p, 0.5);
    p.method = FTQ_PRUNE_NM;
    p.n = 2;
    p.m = 4;
    check_pruned_checkpoint(shared_path("golden/llama_tiny_random"), "prune_nm_llama", &p, 0.5);
}

/* GPT-2 c_attn [in, 3C] holds q | k | v column blocks: 2:4 runs along the input
 * dimension, which is the file's first axis, so every 4 consecutive rows of one column
 * keep exactly 2. */
static void test_model_gpt2_nm_layout(void)
{
    ftq_prune_params p = ftq_prune_default_params();
    p.method = FTQ_PRUNE_NM;
    p.n = 2;
    p.m = 4;
    char out[4096];
    snprintf(out, sizeof out, "%s/out", test_tmpdir("prune_gpt2_nm"));
    ftq_prune_report rep;
    ASSERT_OK(ftq_prune_model(shared_path("golden/gpt2_tiny_random"), out, &p, &rep));
    ftq_checkpoint *b = NULL;
    ASSERT_OK(ftq_checkpoint_open(out, &b));
    const ftq_tensor *t = ftq_checkpoint_find(b, "transformer.h.1.attn.c_attn.weight");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    const float *w = t->data;
    int64_t in = t->shape[0], outd = t->shape[1], bad = 0;
    for (int64_t col = 0; col < outd; col++)
        for (int64_t g = 0; g < in; g += 4) {
            int z = 0;
            for (int k = 0; k < 4; k++)
                z += w[(g + k) * outd + col] == 0.0f;
            bad += z != 2;
        }
    ASSERT_INT_EQ(bad, 0);
    ftq_checkpoint_close(b);
    ftq_prune_report_free(&rep);
}

static void test_model_wanda(void)
{
    ftq_tokenizer *tok = NULL;
    char *text = NULL;
    size_t len = 0, n = 0;
    int32_t *ids = NULL;
    ASSERT_OK(ftq_tokenizer_load(shared_path("models/stories260K"), &tok));
    ASSERT_OK(ftq_read_file(shared_path("data/tinyshakespeare/input.txt"), &text, &len));
    ASSERT_OK(ftq_tokenizer_encode(tok, text, 20000, 0, &ids, &n)); /* the first 20 KB */
    ftq_prune_params p = ftq_prune_default_params();
    p.method = FTQ_PRUNE_WANDA;
    p.sparsity = 0.5f;
    p.calib = ids;
    p.n_calib = n;
    p.calib_ctx = 128;
    p.calib_bos = 1;
    check_pruned_checkpoint(shared_path("models/stories260K"), "prune_wanda", &p, 0.5);
    /* wanda and row-wise magnitude choose different weights */
    char out[4096];
    snprintf(out, sizeof out, "%s/out", test_tmpdir("prune_wanda_vs_mag"));
    ftq_prune_report rep;
    ASSERT_OK(ftq_prune_model(shared_path("models/stories260K"), out, &p, &rep));
    CU_ASSERT(rep.calib_tokens >= 128 * (int64_t)(n / 127) - 1);
    ftq_prune_report_free(&rep);
    ftq_checkpoint *w = NULL, *mag = NULL;
    ASSERT_OK(ftq_checkpoint_open(out, &w));
    char out2[4096];
    snprintf(out2, sizeof out2, "%s/mag", test_tmpdir("prune_wanda_vs_mag2"));
    ftq_prune_params pm = ftq_prune_default_params();
    pm.scope = FTQ_PRUNE_ROW;
    ASSERT_OK(ftq_prune_model(shared_path("models/stories260K"), out2, &pm, &rep));
    ftq_prune_report_free(&rep);
    ASSERT_OK(ftq_checkpoint_open(out2, &mag));
    const ftq_tensor *a = ftq_checkpoint_find(w, "model.layers.2.mlp.down_proj.weight");
    const ftq_tensor *b = ftq_checkpoint_find(mag, "model.layers.2.mlp.down_proj.weight");
    CU_ASSERT(memcmp(a->data, b->data, a->nbytes) != 0);
    ftq_checkpoint_close(w);
    ftq_checkpoint_close(mag);
    free(ids);
    free(text);
    ftq_tokenizer_free(tok);
}

static void test_model_errors(void)
{
    char out[4096];
    snprintf(out, sizeof out, "%s", test_tmpdir("prune_exists")); /* exists already */
    ftq_prune_params p = ftq_prune_default_params();
    ftq_prune_report rep;
    CU_ASSERT_EQUAL(ftq_prune_model(shared_path("models/stories260K"), out, &p, &rep), FTQ_EINVAL);
    CU_ASSERT(strstr(ftq_last_error(), "already exists") != NULL);
    snprintf(out, sizeof out, "%s/new", test_tmpdir("prune_errs"));
    p.method = FTQ_PRUNE_WANDA;
    CU_ASSERT_EQUAL(ftq_prune_model(shared_path("models/stories260K"), out, &p, &rep), FTQ_EINVAL);
    p.method = FTQ_PRUNE_NM;
    p.n = 3;
    p.m = 5; /* 64 is not a multiple of 5 */
    CU_ASSERT_EQUAL(ftq_prune_model(shared_path("models/stories260K"), out, &p, &rep), FTQ_EINVAL);
    CU_ASSERT(strstr(ftq_last_error(), "q_proj") != NULL);
    CU_ASSERT(!ftq_is_dir(out)); /* nothing half-written */
    /* a quantized checkpoint is refused, not read as floats */
    char q[4096];
    snprintf(q, sizeof q, "%s/q8", test_tmpdir("prune_quantized"));
    ftq_quantize_params qp = ftq_quantize_default_params();
    ftq_quantize_report qr;
    ASSERT_OK(ftq_quantize_model(shared_path("models/stories260K"), q, &qp, &qr));
    ftq_quantize_report_free(&qr);
    p = ftq_prune_default_params();
    CU_ASSERT_EQUAL(ftq_prune_model(q, out, &p, &rep), FTQ_EUNSUPPORTED);
    CU_ASSERT(strstr(ftq_last_error(), "quantized") != NULL);
    CU_ASSERT(!ftq_is_dir(out));
}

void test_register_prune(void)
{
    static const test_case cases[] = {
        {"magnitude_tensor", test_magnitude_tensor},
        {"magnitude_row", test_magnitude_row},
        {"ties", test_ties},
        {"nm_exact", test_nm_exact},
        {"wanda_hand", test_wanda_hand},
        {"wanda_uniform", test_wanda_uniform},
        {"global", test_global},
        {"errors", test_errors},
        {"model_magnitude", test_model_magnitude},
        {"model_gpt2_nm_layout", test_model_gpt2_nm_layout},
        {"model_wanda", test_model_wanda},
        {"model_errors", test_model_errors},
        {NULL, NULL},
    };
    test_add_suite("prune", cases);
}
