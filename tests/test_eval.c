/* test_eval.c - perplexity protocols against ../shared/golden/stories260K_ppl.json and the
 * sampler against exact softmax probabilities. */
#include <stdlib.h>
#include <string.h>

#include "include/ftq_prune.h"
#include "tests/test_util.h"

/* ---- sampler ----------------------------------------------------------------------- */

static void test_greedy(void)
{
    float logits[7] = {0.1f, 2.0f, -1.0f, 2.0f, 1.5f, 0.0f, -3.0f};
    ftq_sampler_params p = {0.0f, 0, 1.0f, 1};
    ftq_sampler *s = NULL;
    ASSERT_OK(ftq_sampler_new(&p, 7, &s));
    ASSERT_INT_EQ(ftq_sampler_sample(s, logits), 1); /* tie -> lowest id */
    ftq_sampler_free(s);
    /* top-k 1 with any temperature is greedy too */
    ftq_sampler_params p1 = {1.5f, 1, 1.0f, 9};
    ASSERT_OK(ftq_sampler_new(&p1, 7, &s));
    for (int i = 0; i < 20; i++)
        ASSERT_INT_EQ(ftq_sampler_sample(s, logits), 1);
    ftq_sampler_free(s);
}

/* Empirical frequencies against softmax(logits / T), renormalized over top-k / top-p. */
static void check_distribution(float T, int top_k, float top_p, const double *expected)
{
    float logits[6] = {1.0f, 0.5f, 2.0f, -0.5f, 0.0f, 1.2f};
    ftq_sampler_params p = {T, top_k, top_p, 12345};
    ftq_sampler *s = NULL;
    ASSERT_OK(ftq_sampler_new(&p, 6, &s));
    int counts[6] = {0};
    const int n = 200000;
    for (int i = 0; i < n; i++)
        counts[ftq_sampler_sample(s, logits)]++;
    for (int i = 0; i < 6; i++) {
        double f = (double)counts[i] / n;
        /* 5 standard deviations of a binomial proportion, plus exact zeros */
        double sd = sqrt(expected[i] * (1 - expected[i]) / n);
        if (expected[i] == 0.0)
            ASSERT_INT_EQ(counts[i], 0);
        else
            ASSERT_NEAR(f, expected[i], 5 * sd + 1e-9);
    }
    ftq_sampler_free(s);
}

static void softmax_ref(const float *x, const int *keep, int n, float T, double *out)
{
    double z = 0;
    for (int i = 0; i < n; i++) {
        out[i] = keep[i] ? exp(x[i] / T) : 0.0;
        z += out[i];
    }
    for (int i = 0; i < n; i++)
        out[i] /= z;
}

static void test_sampling_distribution(void)
{
    float logits[6] = {1.0f, 0.5f, 2.0f, -0.5f, 0.0f, 1.2f};
    int all[6] = {1, 1, 1, 1, 1, 1};
    double e[6];
    softmax_ref(logits, all, 6, 1.0f, e);
    check_distribution(1.0f, 0, 1.0f, e);
    softmax_ref(logits, all, 6, 0.5f, e);
    check_distribution(0.5f, 0, 1.0f, e);
    /* top-k 3 keeps ids 2 (2.0), 5 (1.2), 0 (1.0) */
    int k3[6] = {1, 0, 1, 0, 0, 1};
    softmax_ref(logits, k3, 6, 1.0f, e);
    check_distribution(1.0f, 3, 1.0f, e);
    /* top-p: probabilities at T=1 sorted: id2 .415, id5 .186, id0 .153, id1 .093, id4 .056, id3 .034;
     * p = 0.7 needs 2 + 5 + 0 (cumulative .754) */
    int p7[6] = {1, 0, 1, 0, 0, 1};
    softmax_ref(logits, p7, 6, 1.0f, e);
    check_distribution(1.0f, 0, 0.7f, e);
}

static void test_sampler_seed(void)
{
    float logits[50];
    for (int i = 0; i < 50; i++)
        logits[i] = (float)sin(i * 0.7);
    ftq_sampler_params p = {1.0f, 0, 1.0f, 77};
    ftq_sampler *a = NULL, *b = NULL, *c = NULL;
    ASSERT_OK(ftq_sampler_new(&p, 50, &a));
    ASSERT_OK(ftq_sampler_new(&p, 50, &b));
    p.seed = 78;
    ASSERT_OK(ftq_sampler_new(&p, 50, &c));
    int same = 1, diff = 0;
    for (int i = 0; i < 100; i++) {
        int32_t x = ftq_sampler_sample(a, logits), y = ftq_sampler_sample(b, logits);
        int32_t z = ftq_sampler_sample(c, logits);
        same &= x == y;
        diff += x != z;
    }
    CU_ASSERT(same);
    CU_ASSERT(diff > 0);
    ftq_sampler_free(a);
    ftq_sampler_free(b);
    ftq_sampler_free(c);
    ftq_sampler_params bad = {-1.0f, 0, 1.0f, 0};
    CU_ASSERT_EQUAL(ftq_sampler_new(&bad, 50, &a), FTQ_EINVAL);
    bad.temperature = 1.0f;
    bad.top_p = 0.0f;
    CU_ASSERT_EQUAL(ftq_sampler_new(&bad, 50, &a), FTQ_EINVAL);
}

/* ---- perplexity on stories260K ------------------------------------------------------ */

static ftq_model *model;
static int32_t *toks;
static size_t n_toks;

static int load_stories(void)
{
    if (model)
        return 1;
    ftq_tokenizer *tk = NULL;
    char *text = NULL;
    size_t len = 0;
    if (ftq_model_load(shared_path("models/stories260K"), &model) != FTQ_OK ||
        ftq_tokenizer_load(shared_path("models/stories260K"), &tk) != FTQ_OK ||
        ftq_read_file(shared_path("data/tinystories/tinystories_sample.txt"), &text, &len) != FTQ_OK ||
        ftq_tokenizer_encode(tk, text, len, 0, &toks, &n_toks) != FTQ_OK) {
        fprintf(stderr, "\n  %s\n", ftq_last_error());
        CU_FAIL("cannot load stories260K + sample");
        ftq_tokenizer_free(tk);
        free(text);
        return 0;
    }
    ftq_tokenizer_free(tk);
    free(text);
    return 1;
}

static void check_protocol(const char *key, ftq_ppl_protocol proto, int ctx)
{
    if (!load_stories())
        return;
    cJSON *g = load_json(shared_path("golden/stories260K_ppl.json"));
    if (!g)
        return;
    ASSERT_INT_EQ(n_toks, cJSON_GetObjectItem(g, "file_tokens_without_bos")->valueint);
    const cJSON *e = cJSON_GetObjectItem(cJSON_GetObjectItem(g, "protocols"), key);
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    ftq_ppl_params p = ftq_ppl_default_params();
    p.protocol = proto;
    p.n_ctx = ctx;
    p.add_bos = 1;
    p.bos_id = 1;
    ftq_ppl_result r;
    ASSERT_OK(ftq_perplexity(model, toks, n_toks, &p, &r));
    double ppl = cJSON_GetObjectItem(e, "ppl")->valuedouble;
    ASSERT_INT_EQ(r.tokens_scored, cJSON_GetObjectItem(e, "tokens_scored")->valueint);
    ASSERT_INT_EQ(r.chunks, cJSON_GetObjectItem(e, "n_chunks")->valueint);
    ASSERT_NEAR(r.ppl / ppl - 1.0, 0.0, 1e-4); /* float32 vs float64 reference: 1e-4 relative */
    ASSERT_NEAR(r.nll, cJSON_GetObjectItem(e, "mean_nll")->valuedouble, 1e-4);
    const cJSON *se = cJSON_GetObjectItem(e, "ppl_stderr_llamacpp");
    if (se)
        ASSERT_NEAR(r.ppl_stderr / se->valuedouble - 1.0, 0.0, 1e-3);
    cJSON_Delete(g);
}

static void test_ppl_llamacpp_128(void) { check_protocol("llamacpp_ctx128", FTQ_PPL_LLAMACPP, 128); }
static void test_ppl_llamacpp_256(void) { check_protocol("llamacpp_ctx256", FTQ_PPL_LLAMACPP, 256); }
static void test_ppl_no_leading_bos_128(void)
{
    check_protocol("llamacpp_no_leading_bos_ctx128", FTQ_PPL_LLAMACPP_NO_LEADING_BOS, 128);
}
static void test_ppl_no_leading_bos_256(void)
{
    check_protocol("llamacpp_no_leading_bos_ctx256", FTQ_PPL_LLAMACPP_NO_LEADING_BOS, 256);
}
static void test_ppl_full_window_128(void) { check_protocol("full_window_ctx128", FTQ_PPL_FULL_WINDOW, 128); }
static void test_ppl_full_window_256(void) { check_protocol("full_window_ctx256", FTQ_PPL_FULL_WINDOW, 256); }

/* The running per-chunk values llama.cpp prints, first 8 chunks of ctx 128. */
static void test_ppl_running_chunks(void)
{
    if (!load_stories())
        return;
    cJSON *g = load_json(shared_path("golden/stories260K_ppl.json"));
    if (!g)
        return;
    const cJSON *e = cJSON_GetObjectItem(cJSON_GetObjectItem(g, "protocols"), "llamacpp_ctx128");
    size_t n = 0;
    double *chunk = json_doubles(cJSON_GetObjectItem(e, "chunk_mean_nll"), &n);
    for (int c = 1; c <= 8; c++) {
        ftq_ppl_params p = ftq_ppl_default_params();
        p.n_ctx = 128;
        p.n_chunks = c;
        ftq_ppl_result r;
        ASSERT_OK(ftq_perplexity(model, toks, n_toks, &p, &r));
        double mean = 0;
        for (int i = 0; i < c; i++)
            mean += chunk[i];
        mean /= c; /* equal tokens per chunk, so the mean of means is the mean */
        ASSERT_NEAR(r.nll, mean, 1e-4);
    }
    free(chunk);
    cJSON_Delete(g);
}

/* HF sliding window: with stride == ctx and no BOS it is the full-window protocol without
 * BOS; with a smaller stride every token after the first is scored exactly once. */
static void test_ppl_stride(void)
{
    if (!load_stories())
        return;
    size_t n = 4000;
    ftq_ppl_params p = ftq_ppl_default_params();
    p.add_bos = 0;
    p.n_ctx = 128;
    p.protocol = FTQ_PPL_FULL_WINDOW;
    ftq_ppl_result full, st;
    ASSERT_OK(ftq_perplexity(model, toks, n, &p, &full));
    p.protocol = FTQ_PPL_STRIDE;
    p.stride = 128;
    p.n_chunks = full.chunks;
    ASSERT_OK(ftq_perplexity(model, toks, n, &p, &st));
    ASSERT_INT_EQ(st.tokens_scored, full.tokens_scored);
    ASSERT_NEAR(st.nll, full.nll, 1e-9);
    p.n_chunks = 0;
    p.stride = 50;
    p.add_bos = 1;
    ASSERT_OK(ftq_perplexity(model, toks, n, &p, &st));
    ASSERT_INT_EQ(st.tokens_scored, (long long)n); /* stream of n + 1 tokens, all but the first */
    /* overlapping context can only help a model this good on in-distribution text */
    CU_ASSERT(st.ppl < full.ppl);
}

static void test_ppl_errors(void)
{
    if (!load_stories())
        return;
    ftq_ppl_params p = ftq_ppl_default_params();
    ftq_ppl_result r;
    p.n_ctx = 2;
    CU_ASSERT_EQUAL(ftq_perplexity(model, toks, n_toks, &p, &r), FTQ_EINVAL);
    p.n_ctx = 100000;
    CU_ASSERT_EQUAL(ftq_perplexity(model, toks, n_toks, &p, &r), FTQ_EINVAL);
    CU_ASSERT(strstr(ftq_last_error(), "exceeds") != NULL);
    p.n_ctx = 128;
    CU_ASSERT_EQUAL(ftq_perplexity(model, toks, 50, &p, &r), FTQ_EINVAL);
    CU_ASSERT(strstr(ftq_last_error(), "too few") != NULL);
    p.protocol = FTQ_PPL_STRIDE;
    p.stride = 0;
    CU_ASSERT_EQUAL(ftq_perplexity(model, toks, n_toks, &p, &r), FTQ_EINVAL);
}

/* KL and top-1 agreement on logits small enough to do by hand. Float logits such as ln 2
 * are rounded (relative 3e-8), which moves the probabilities by about that much: tol 1e-7.
 *   row 0: P = softmax(0, ln 2, 0) = (1/4, 1/2, 1/4), Q = softmax(0, 0, 0) = (1/3, 1/3, 1/3)
 *          KL = 2 (1/4) ln(3/4) + (1/2) ln(3/2) = (1/2) ln(9/8); argmax 1 vs 0 (tie -> 0)
 *   row 1: P = softmax(ln 3, 0, 0) = (3/5, 1/5, 1/5), Q = softmax(ln 2, 0, ln 2)
 *          = (2/5, 1/5, 2/5); KL = (3/5) ln(3/2) + (1/5) ln(1/2); argmax 0 vs 0 (tie -> 0)
 *   row 2: P = Q + 1000 (exact in float): the same distribution, KL 0 (exp(1000) would
 *          overflow without the max shift), argmax equal
 * mean KL = ((1/2) ln(9/8) + (3/5) ln(3/2) - (1/5) ln 2) / 3, agreement 2/3. */
static void test_kl_by_hand(void)
{
    const float l2 = (float)log(2.0), l3 = (float)log(3.0);
    const float P[3][3] = {{0, l2, 0}, {l3, 0, 0}, {1000.5f, 999, 1002}};
    const float Q[3][3] = {{0, 0, 0}, {l2, 0, l2}, {0.5f, -1, 2}};
    const double kl_want[3] = {0.5 * log(9.0 / 8.0), 0.6 * log(1.5) - 0.2 * log(2.0), 0.0};
    const int agree_want[3] = {0, 1, 1};
    double kl_sum = 0.0;
    int agree = 0;
    for (int r = 0; r < 3; r++) {
        double kl = ftq_logits_kl(P[r], Q[r], 3);
        ASSERT_NEAR(kl, kl_want[r], 1e-7);
        int a = ftq_logits_argmax(P[r], 3) == ftq_logits_argmax(Q[r], 3);
        ASSERT_INT_EQ(a, agree_want[r]);
        kl_sum += kl;
        agree += a;
    }
    ASSERT_NEAR(kl_sum / 3, (0.5 * log(1.125) + 0.6 * log(1.5) - 0.2 * log(2.0)) / 3, 1e-7);
    ASSERT_NEAR(kl_sum / 3, 0.0545137155, 1e-7); /* the same, evaluated: (0.0588915 + 0.1046496) / 3 */
    ASSERT_NEAR((double)agree / 3, 2.0 / 3.0, 0.0);
    ASSERT_INT_EQ(ftq_logits_argmax(P[0], 3), 1);
    ASSERT_INT_EQ(ftq_logits_argmax(Q[0], 3), 0);
    /* KL is not symmetric: KL(Q || P) of row 0 = (2/3) ln(4/3) + (1/3) ln(2/3) */
    ASSERT_NEAR(ftq_logits_kl(Q[0], P[0], 3), 2.0 / 3 * log(4.0 / 3) + 1.0 / 3 * log(2.0 / 3), 1e-7);
}

/* Against itself: KL 0, full agreement, the same perplexity. Against a pruned copy: KL > 0,
 * less agreement, and ref_ppl is the original's perplexity on the same positions. */
static void test_ppl_ref_model(void)
{
    if (!load_stories())
        return;
    ftq_ppl_params p = ftq_ppl_default_params();
    p.n_ctx = 128;
    p.n_chunks = 20;
    ftq_ppl_result a, b;
    ASSERT_OK(ftq_perplexity(model, toks, n_toks, &p, &a));
    p.ref = model;
    ASSERT_OK(ftq_perplexity(model, toks, n_toks, &p, &b));
    ASSERT_NEAR(b.kl, 0.0, 1e-9);
    ASSERT_NEAR(b.top1_agree, 1.0, 0);
    ASSERT_NEAR(b.ref_ppl / a.ppl - 1, 0, 1e-12);
    ASSERT_NEAR(b.ppl / a.ppl - 1, 0, 1e-12);

    char out[4096];
    snprintf(out, sizeof out, "%s/pruned", test_tmpdir("eval_ref"));
    ftq_prune_params pp = ftq_prune_default_params();
    pp.sparsity = 0.3f;
    ftq_prune_report rep;
    ASSERT_OK(ftq_prune_model(shared_path("models/stories260K"), out, &pp, &rep));
    ftq_prune_report_free(&rep);
    ftq_model *pruned = NULL;
    ASSERT_OK(ftq_model_load(out, &pruned));
    ftq_ppl_result c;
    ASSERT_OK(ftq_perplexity(pruned, toks, n_toks, &p, &c));
    CU_ASSERT(c.kl > 1e-4);
    CU_ASSERT(c.kl_stderr > 0);
    CU_ASSERT(c.top1_agree < 1.0 && c.top1_agree > 0.3);
    ASSERT_NEAR(c.ref_ppl / a.ppl - 1, 0, 1e-12);
    CU_ASSERT(c.ppl > a.ppl); /* pruning 30 % costs something */
    /* the same numbers computed here from the two models' logits: llama.cpp protocol, each
     * chunk of 128 stream tokens with BOS first, positions 64..126 scored; KL in double
     * with a plain softmax (no shared code with eval/perplexity.c) */
    {
        const int N = 128, V = ftq_model_get_config(model)->vocab_size;
        ftq_session *sm = NULL, *sr = NULL;
        ASSERT_OK(ftq_session_new(pruned, N, &sm));
        ASSERT_OK(ftq_session_new(model, N, &sr));
        float *lm = malloc(sizeof(float) * N * V), *lr = malloc(sizeof(float) * N * V);
        double *pr = malloc(sizeof(double) * V), *pm = malloc(sizeof(double) * V);
        int32_t win[128];
        double kl_sum = 0.0, kl_max = 0.0;
        long n = 0, agree = 0;
        for (int ch = 0; ch < c.chunks; ch++) {
            for (int j = 0; j < N; j++) /* stream = BOS + tokens */
                win[j] = (size_t)ch * N + j == 0 ? 1 : toks[(size_t)ch * N + j - 1];
            win[0] = 1;
            ftq_session_reset(sm);
            ftq_session_reset(sr);
            ASSERT_OK(ftq_session_eval(sm, win, N, lm, 1));
            ASSERT_OK(ftq_session_eval(sr, win, N, lr, 1));
            for (int j = N / 2; j <= N - 2; j++) {
                const float *a1 = lr + (size_t)j * V, *b1 = lm + (size_t)j * V;
                double ma = -INFINITY, mb = -INFINITY, za = 0, zb = 0, kl = 0;
                int ia = 0, ib = 0;
                for (int i = 0; i < V; i++) {
                    ia = a1[i] > a1[ia] ? i : ia;
                    ib = b1[i] > b1[ib] ? i : ib;
                    ma = a1[i] > ma ? a1[i] : ma;
                    mb = b1[i] > mb ? b1[i] : mb;
                }
                for (int i = 0; i < V; i++) {
                    za += (pr[i] = exp(a1[i] - ma));
                    zb += (pm[i] = exp(b1[i] - mb));
                }
                for (int i = 0; i < V; i++)
                    if (pr[i] > 0)
                        kl += pr[i] / za * log((pr[i] / za) / (pm[i] / zb));
                kl_sum += kl;
                kl_max = kl > kl_max ? kl : kl_max;
                agree += ia == ib;
                n++;
            }
        }
        ASSERT_INT_EQ(n, c.tokens_scored);
        ASSERT_NEAR(c.kl / (kl_sum / n) - 1, 0, 1e-9); /* double sums, different order */
        ASSERT_NEAR(c.top1_agree, (double)agree / n, 0.0);
        ASSERT_NEAR(c.kl_max / kl_max - 1, 0, 1e-9);
        /* binomial standard error of the agreement, as llama.cpp's "Same top p" */
        double fa = (double)agree / n;
        ASSERT_NEAR(c.top1_stderr, sqrt(fa * (1 - fa) / (n - 1)), 1e-12);
        free(lm);
        free(lr);
        free(pr);
        free(pm);
        ftq_session_free(sm);
        ftq_session_free(sr);
    }
    ftq_model_free(pruned);

    ftq_model *gpt2 = NULL;
    ASSERT_OK(ftq_model_load(shared_path("golden/gpt2_tiny_random"), &gpt2));
    p.ref = gpt2;
    CU_ASSERT_EQUAL(ftq_perplexity(model, toks, n_toks, &p, &c), FTQ_EINVAL);
    CU_ASSERT(strstr(ftq_last_error(), "vocabulary") != NULL);
    ftq_model_free(gpt2);
}

/* Suite cleanup (not a test: it asserts nothing): frees what load_stories shared. */
static void suite_cleanup(void)
{
    ftq_model_free(model);
    model = NULL;
    free(toks);
    toks = NULL;
}

void test_register_eval(void)
{
    static const test_case cases[] = {
        {"greedy", test_greedy},
        {"sampling_distribution", test_sampling_distribution},
        {"sampler_seed", test_sampler_seed},
        {"ppl_llamacpp_128", test_ppl_llamacpp_128},
        {"ppl_llamacpp_256", test_ppl_llamacpp_256},
        {"ppl_no_leading_bos_128", test_ppl_no_leading_bos_128},
        {"ppl_no_leading_bos_256", test_ppl_no_leading_bos_256},
        {"ppl_full_window_128", test_ppl_full_window_128},
        {"ppl_full_window_256", test_ppl_full_window_256},
        {"ppl_running_chunks", test_ppl_running_chunks},
        {"ppl_stride", test_ppl_stride},
        {"ppl_errors", test_ppl_errors},
        {"kl_by_hand", test_kl_by_hand},
        {"ppl_ref_model", test_ppl_ref_model},
        {NULL, NULL},
    };
    test_add_suite_cleanup("eval", cases, suite_cleanup);
}
