/* test_trainer.c - the trainer (finetune/): HF schedules, clipping, shuffling, metrics,
 * batching and packing, config.json edits, and whole runs on tiny data (loss goes down,
 * reproducibility, exact resume, frozen / head modes, NaN stop, stop flag, reload). */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "finetune/trainer_internal.h"
#include "tests/test_util.h"

/* ---- schedules ---------------------------------------------------------------------- */

/* Expected values from transformers' lr_lambda formulas (optimization.py) evaluated in
 * Python: warmup 10, total 110. */
static void test_schedules(void)
{
    const int64_t steps[] = {0, 3, 10, 35, 60, 97, 110, 120};
    const double linear[] = {0.0, 0.3, 1.0, 0.75, 0.5, 0.13, 0.0, 0.0};
    const double cosine[] = {0.0, 0.3, 1.0, 0.8535533905932737, 0.5, 0.04112268715800943, 0.0,
                             0.024471741852423234 /* HF's cosine rises again past the end */};
    for (int i = 0; i < 8; i++) {
        ASSERT_NEAR(ftq_schedule_factor(FTQ_SCHEDULE_LINEAR, steps[i], 10, 110), linear[i], 1e-15);
        ASSERT_NEAR(ftq_schedule_factor(FTQ_SCHEDULE_COSINE, steps[i], 10, 110), cosine[i], 1e-15);
        ASSERT_NEAR(ftq_schedule_factor(FTQ_SCHEDULE_CONSTANT, steps[i], 10, 110), steps[i] < 10 ? steps[i] / 10.0 : 1.0,
                    0);
    }
    /* no warmup: the first step uses the full lr; linear decays by 1/total per step */
    for (int s = 0; s < 4; s++)
        ASSERT_NEAR(ftq_schedule_factor(FTQ_SCHEDULE_LINEAR, s, 0, 4), (4 - s) / 4.0, 0);
    ASSERT_NEAR(ftq_schedule_factor(FTQ_SCHEDULE_COSINE, 0, 0, 4), 1.0, 0);
    /* warmup 1: step 0 has lr 0 (HF: 0 / max(1, 1)) */
    ASSERT_NEAR(ftq_schedule_factor(FTQ_SCHEDULE_LINEAR, 0, 1, 5), 0.0, 0);
    ASSERT_NEAR(ftq_schedule_factor(FTQ_SCHEDULE_LINEAR, 1, 1, 5), 1.0, 0);
    /* warmup_ratio: ceil(total * ratio) unless warmup steps are given */
    ASSERT_INT_EQ(ftq_schedule_warmup_steps(0, 0.06, 100), 6);
    ASSERT_INT_EQ(ftq_schedule_warmup_steps(0, 0.25, 10), 3);
    ASSERT_INT_EQ(ftq_schedule_warmup_steps(5, 0.5, 100), 5);
    ASSERT_INT_EQ(ftq_schedule_warmup_steps(0, 0.0, 100), 0);
    ftq_schedule s;
    ASSERT_OK(ftq_schedule_from_name("cosine", &s));
    ASSERT_INT_EQ(s, FTQ_SCHEDULE_COSINE);
    CU_ASSERT_EQUAL(ftq_schedule_from_name("exp", &s), FTQ_EINVAL);
    CU_ASSERT_STRING_EQUAL(ftq_schedule_name(FTQ_SCHEDULE_LINEAR), "linear");
}

/* ---- clipping ----------------------------------------------------------------------- */

static void test_clipping(void)
{
    float g[2] = {3, 4};
    ASSERT_NEAR(ftq_grad_clip(g, 2, 1.0), 5.0, 0);
    /* torch: coef = max_norm / (norm + 1e-6) */
    ASSERT_NEAR(g[0], 3.0 / (5.0 + 1e-6), 1e-7);
    ASSERT_NEAR(g[1], 4.0 / (5.0 + 1e-6), 1e-7);
    float h[2] = {3, 4};
    ftq_grad_clip(h, 2, 10.0); /* below the limit: untouched */
    CU_ASSERT(h[0] == 3 && h[1] == 4);
    ftq_grad_clip(h, 2, 0.0); /* 0 = off */
    CU_ASSERT(h[0] == 3 && h[1] == 4);
    float bad[3] = {1, NAN, 2};
    CU_ASSERT(isnan(ftq_grad_clip(bad, 3, 1.0)));
    CU_ASSERT(bad[0] == 1 && bad[2] == 2);

    /* many chunks: matches a double sum, and does not depend on the thread count */
    size_t n = 1000003;
    float *v = malloc(sizeof(float) * n);
    double ref = 0;
    for (size_t i = 0; i < n; i++) {
        v[i] = (float)((double)(i % 1000) / 1000.0 - 0.5) * 1e-3f;
        ref += (double)v[i] * v[i];
    }
    ref = sqrt(ref);
    int threads = ftq_get_threads();
    ftq_set_threads(1);
    double a = ftq_grad_norm(v, n);
    ftq_set_threads(2);
    double b = ftq_grad_norm(v, n);
    ftq_set_threads(threads);
    CU_ASSERT(a == b);
    ASSERT_NEAR(a / ref, 1.0, 1e-12);
    free(v);
}

/* ---- shuffling ---------------------------------------------------------------------- */

static void test_shuffle(void)
{
    enum { N = 1000 };
    uint32_t *a = malloc(sizeof(uint32_t) * N), *b = malloc(sizeof(uint32_t) * N);
    ftq_rng r1, r2;
    for (int i = 0; i < N; i++)
        a[i] = b[i] = (uint32_t)i;
    ftq_rng_seed(&r1, 42);
    ftq_rng_seed(&r2, 42);
    ftq_shuffle(a, N, &r1);
    ftq_shuffle(b, N, &r2);
    CU_ASSERT(memcmp(a, b, sizeof(uint32_t) * N) == 0);
    CU_ASSERT(memcmp(&r1, &r2, sizeof r1) == 0);
    /* a permutation, and not the identity */
    char *seen = calloc(N, 1);
    int fixed = 0;
    for (int i = 0; i < N; i++) {
        seen[a[i]]++;
        fixed += a[i] == (uint32_t)i;
    }
    for (int i = 0; i < N; i++)
        CU_ASSERT_EQUAL(seen[i], 1);
    CU_ASSERT(fixed < 10);
    /* another seed, another order */
    for (int i = 0; i < N; i++)
        b[i] = (uint32_t)i;
    ftq_rng_seed(&r2, 43);
    ftq_shuffle(b, N, &r2);
    CU_ASSERT(memcmp(a, b, sizeof(uint32_t) * N) != 0);
    /* uniform over the 6 orders of 3 items: 60000 draws, each count within 5 sigma of 10000 */
    int counts[6] = {0};
    ftq_rng_seed(&r1, 7);
    for (int k = 0; k < 60000; k++) {
        uint32_t p[3] = {0, 1, 2};
        ftq_shuffle(p, 3, &r1);
        counts[p[0] * 2 + (p[1] > p[2])]++;
    }
    for (int i = 0; i < 6; i++)
        CU_ASSERT(abs(counts[i] - 10000) < 5 * 91);
    free(seen);
    free(a);
    free(b);
}

/* ---- metrics ------------------------------------------------------------------------ */

static void test_metrics(void)
{
    /* hand-computed: confusion [[1,1,0],[0,2,0],[1,0,2]]
     * label 0: tp 1, fp 1, fn 1 -> P 1/2, R 1/2, F1 1/2
     * label 1: tp 2, fp 1, fn 0 -> P 2/3, R 1,   F1 4/5
     * label 2: tp 2, fp 0, fn 1 -> P 1,   R 2/3, F1 4/5
     * accuracy 5/7, macro-F1 (0.5 + 0.8 + 0.8) / 3 = 0.7 */
    const int32_t gold[] = {0, 0, 1, 1, 2, 2, 2, -1};
    const int32_t pred[] = {0, 1, 1, 1, 2, 0, 2, 1};
    ftq_cls_metrics m;
    ASSERT_OK(ftq_cls_metrics_compute(gold, pred, 8, 3, &m));
    const int64_t want[9] = {1, 1, 0, 0, 2, 0, 1, 0, 2};
    for (int i = 0; i < 9; i++)
        ASSERT_INT_EQ(m.confusion[i], want[i]);
    ASSERT_INT_EQ(m.n, 7); /* the unlabeled row is skipped */
    ASSERT_NEAR(m.accuracy, 5.0 / 7.0, 1e-15);
    ASSERT_NEAR(m.precision[1], 2.0 / 3.0, 1e-15);
    ASSERT_NEAR(m.recall[2], 2.0 / 3.0, 1e-15);
    ASSERT_NEAR(m.f1[0], 0.5, 1e-15);
    ASSERT_NEAR(m.f1[1], 0.8, 1e-15);
    ASSERT_NEAR(m.f1[2], 0.8, 1e-15);
    ASSERT_NEAR(m.macro_f1, 0.7, 1e-15);
    ftq_cls_metrics_free(&m);

    /* a label that never occurs (neither gold nor predicted) is left out of the mean, as
     * sklearn does; one that is predicted but never gold counts with F1 0 */
    const int32_t g2[] = {0, 0, 1, 1};
    const int32_t p2[] = {0, 0, 1, 0};
    ASSERT_OK(ftq_cls_metrics_compute(g2, p2, 4, 4, &m));
    /* label 0: tp 2 fp 1 fn 0 -> F1 4/5; label 1: tp 1 fp 0 fn 1 -> F1 2/3 */
    ASSERT_NEAR(m.macro_f1, (0.8 + 2.0 / 3.0) / 2, 1e-15);
    ASSERT_NEAR(m.accuracy, 0.75, 1e-15);
    ftq_cls_metrics_free(&m);
    const int32_t p3[] = {0, 2, 1, 1};
    ASSERT_OK(ftq_cls_metrics_compute(g2, p3, 4, 3, &m));
    /* label 0: tp 1, fn 1 -> F1 2/3; label 1: tp 2 -> 1; label 2: predicted once, never gold -> 0 */
    ASSERT_NEAR(m.macro_f1, (2.0 / 3.0 + 1.0 + 0.0) / 3, 1e-15);
    ASSERT_INT_EQ(m.support[0], 2);
    ASSERT_INT_EQ(m.support[2], 0);
    ftq_cls_metrics_free(&m);
    /* 65536 labels (a model with that many classes): per-label counts only, the 32 GB
     * confusion matrix is not built (it used to be); the same metrics as the small case */
    ASSERT_OK(ftq_cls_metrics_compute(g2, p3, 4, 65536, &m));
    CU_ASSERT_PTR_NULL(m.confusion);
    ASSERT_NEAR(m.macro_f1, (2.0 / 3.0 + 1.0 + 0.0) / 3, 1e-15);
    ASSERT_NEAR(m.accuracy, 0.75, 1e-15);
    ASSERT_INT_EQ(m.support[1], 2);
    ftq_cls_metrics_free(&m);
    /* out of range */
    const int32_t g4[] = {0, 3};
    CU_ASSERT_EQUAL(ftq_cls_metrics_compute(g4, g4, 2, 2, &m), FTQ_EINVAL);
    /* argmax: lowest index on ties, NaN never wins */
    const float v[] = {NAN, 1.0f, 3.0f, 3.0f};
    ASSERT_INT_EQ(ftq_argmax(v, 4), 2);
}

/* ---- documents, packing, batches ---------------------------------------------------- */

static void test_documents(void)
{
    const char *text = "first line\nsecond line\n\n  \n\nthird\r\n\r\nfourth\n";
    const char **st = NULL;
    size_t *ln = NULL, n = 0;
    ASSERT_OK(ex_split_documents(text, strlen(text), &st, &ln, &n));
    ASSERT_INT_EQ(n, 3);
    if (n == 3) {
        CU_ASSERT(ln[0] == strlen("first line\nsecond line") && strncmp(st[0], "first line\nsecond line", ln[0]) == 0);
        CU_ASSERT(ln[1] == 5 && strncmp(st[1], "third", 5) == 0);
        CU_ASSERT(ln[2] == 6 && strncmp(st[2], "fourth", 6) == 0);
    }
    free(st);
    free(ln);
    ASSERT_OK(ex_split_documents("", 0, &st, &ln, &n));
    ASSERT_INT_EQ(n, 0);
    free(st);
    free(ln);
    ASSERT_OK(ex_split_documents("no newline", 10, &st, &ln, &n));
    ASSERT_INT_EQ(n, 1);
    free(st);
    free(ln);
}

static void test_pack_lm(void)
{
    ftq_tokenizer *tok = NULL;
    ASSERT_OK(ftq_tokenizer_load(shared_path("models/stories260K"), &tok));
    const char *docs[] = {"Once upon a time", "Lily and Ben went to the park.", "The end"};
    size_t lens[3];
    int32_t want[256];
    size_t nw = 0;
    for (int i = 0; i < 3; i++) {
        lens[i] = strlen(docs[i]);
        int32_t *ids = NULL;
        size_t n = 0;
        ASSERT_OK(ftq_tokenizer_encode(tok, docs[i], lens[i], 1, &ids, &n));
        memcpy(want + nw, ids, sizeof(int32_t) * n);
        nw += n;
        want[nw++] = ftq_tokenizer_eos(tok); /* run_clm + EOS between documents */
        free(ids);
    }
    CU_ASSERT_EQUAL(want[0], 1); /* BOS */
    ex_set s;
    ASSERT_OK(ex_build_lm(docs, lens, 3, tok, 8, 0, 0, &s));
    ASSERT_INT_EQ(s.n, nw / 8); /* the tail is dropped (group_texts) */
    CU_ASSERT(memcmp(s.tok, want, sizeof(int32_t) * s.n * 8) == 0);
    ex_set_free(&s);
    ASSERT_OK(ex_build_lm(docs, lens, 3, tok, 8, 0, 1, &s)); /* dev keeps the tail */
    ASSERT_INT_EQ(s.n, nw / 8 + (nw % 8 >= 2));
    ASSERT_INT_EQ(s.off[s.n], nw % 8 >= 2 ? nw : nw / 8 * 8);
    uint64_t fp1 = ex_fingerprint(&s);
    ex_set_free(&s);
    ASSERT_OK(ex_build_lm(docs, lens, 3, tok, 8, 1, 1, &s)); /* limit 1 block */
    ASSERT_INT_EQ(s.n, 1);
    CU_ASSERT(ex_fingerprint(&s) != fp1);

    /* a batch of blocks: targets are the next token, the last position is not scored */
    uint32_t idx[1] = {0};
    int32_t ids[16], lns[1], tg[16];
    int T = 0;
    int64_t ntok = 0;
    batch_fill(&s, idx, 1, FTQ_TASK_LM, 0, ids, lns, tg, &T, &ntok);
    ASSERT_INT_EQ(T, 8);
    ASSERT_INT_EQ(ntok, 8);
    for (int t = 0; t < 7; t++)
        ASSERT_INT_EQ(tg[t], want[t + 1]);
    ASSERT_INT_EQ(tg[7], FTQ_IGNORE_INDEX);
    ex_set_free(&s);
    ftq_tokenizer_free(tok);
}

static void test_batch_classify(void)
{
    /* three rows of lengths 3, 1, 2 */
    size_t off[] = {0, 3, 4, 6};
    int32_t tok[] = {1, 10, 11, 1, 1, 20};
    int32_t lab[] = {1, 0, 1};
    ex_set s = {.n = 3, .off = off, .tok = tok, .label = lab, .max_len = 3};
    uint32_t idx[] = {2, 1, 0};
    int32_t ids[9], lens[3], tg[3];
    int T = 0;
    int64_t ntok = 0;
    batch_fill(&s, idx, 3, FTQ_TASK_CLASSIFY, 2, ids, lens, tg, &T, &ntok);
    ASSERT_INT_EQ(T, 3);
    ASSERT_INT_EQ(ntok, 6);
    const int32_t want[9] = {1, 20, 2, 1, 2, 2, 1, 10, 11}; /* right-padded with pad id 2 */
    for (int i = 0; i < 9; i++)
        ASSERT_INT_EQ(ids[i], want[i]);
    ASSERT_INT_EQ(lens[0], 2);
    ASSERT_INT_EQ(lens[1], 1);
    ASSERT_INT_EQ(lens[2], 3);
    ASSERT_INT_EQ(tg[0], 1);
    ASSERT_INT_EQ(tg[1], 0);
    ASSERT_INT_EQ(tg[2], 1);
}

/* ---- config.json and resume arguments ----------------------------------------------- */

static void test_config_edit(void)
{
    const char *dir = test_tmpdir("trainer_config");
    char dst[4200];
    snprintf(dst, sizeof dst, "%s/config.json", dir);
    ftq_model_config cfg;
    const char *src = shared_path("golden/llama_tiny_random/config.json");
    ASSERT_OK(ftq_config_load(src, &cfg));
    const char *labels[] = {"negative", "positive"};
    ASSERT_OK(ckpt_write_config(src, dst, &cfg, FTQ_TASK_CLASSIFY, labels, 2, 2));
    cJSON *j = load_json(dst);
    if (!j)
        return;
    CU_ASSERT_STRING_EQUAL(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "architectures"), 0)->valuestring,
                           "LlamaForSequenceClassification");
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "id2label"), "1")->valuestring, "positive");
    ASSERT_INT_EQ(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "label2id"), "negative")->valueint, 0);
    ASSERT_INT_EQ(cJSON_GetObjectItem(j, "num_labels")->valueint, 2);
    ASSERT_INT_EQ(cJSON_GetObjectItem(j, "pad_token_id")->valueint, 2);
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "problem_type")->valuestring, "single_label_classification");
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "torch_dtype")->valuestring, "float32");
    /* keys ftq does not interpret survive */
    ASSERT_INT_EQ(cJSON_GetObjectItem(j, "pretraining_tp")->valueint, 1);
    CU_ASSERT(cJSON_IsNull(cJSON_GetObjectItem(j, "rope_scaling")));
    CU_ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(j, "tie_word_embeddings")));
    ASSERT_NEAR(cJSON_GetObjectItem(j, "initializer_range")->valuedouble, 0.02, 0);
    cJSON_Delete(j);
    /* ftq reads it back as a classifier with those labels */
    ftq_model_config back;
    ASSERT_OK(ftq_config_load(dst, &back));
    CU_ASSERT(back.is_classifier);
    ASSERT_INT_EQ(back.num_labels, 2);
    char **names = NULL;
    int n = 0;
    ASSERT_OK(ftq_config_load_labels(dst, &names, &n));
    ASSERT_INT_EQ(n, 2);
    if (n == 2)
        CU_ASSERT_STRING_EQUAL(names[0], "negative");
    ftq_free_strings(names, n);
    /* lm keeps the causal architecture */
    ASSERT_OK(ckpt_write_config(src, dst, &cfg, FTQ_TASK_LM, NULL, 0, 2));
    j = load_json(dst);
    CU_ASSERT_STRING_EQUAL(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "architectures"), 0)->valuestring,
                           "LlamaForCausalLM");
    CU_ASSERT_PTR_NULL(cJSON_GetObjectItem(j, "id2label"));
    cJSON_Delete(j);
    /* GPT-2 */
    src = shared_path("golden/gpt2_tiny_random/config.json");
    ASSERT_OK(ftq_config_load(src, &cfg));
    ASSERT_OK(ckpt_write_config(src, dst, &cfg, FTQ_TASK_CLASSIFY, labels, 2, 0));
    j = load_json(dst);
    CU_ASSERT_STRING_EQUAL(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "architectures"), 0)->valuestring,
                           "GPT2ForSequenceClassification");
    cJSON_Delete(j);
}

static void test_resume_args(void)
{
    cJSON *a = cJSON_Parse("{\"lr\": 5e-05, \"batch\": 8, \"schedule\": \"linear\", \"_training data\": \"10 examples\"}");
    cJSON *b = cJSON_Duplicate(a, 1);
    ASSERT_OK(ckpt_check_args(a, b, "ck"));
    cJSON_ReplaceItemInObject(b, "lr", cJSON_CreateNumber(5.000000000000001e-05)); /* one ulp */
    CU_ASSERT_EQUAL(ckpt_check_args(a, b, "ck"), FTQ_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(ftq_last_error(), "--lr"));
    cJSON_ReplaceItemInObject(b, "lr", cJSON_CreateNumber(5e-05));
    cJSON_ReplaceItemInObject(b, "_training data", cJSON_CreateString("11 examples"));
    CU_ASSERT_EQUAL(ckpt_check_args(a, b, "ck"), FTQ_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(ftq_last_error(), "training data differs"));
    cJSON_Delete(a);
    cJSON_Delete(b);
}

/* ---- whole runs --------------------------------------------------------------------- */

typedef struct {
    double loss[256];
    int n;
    int64_t stop_at; /* set the stop flag after this step (0 = never) */
    volatile sig_atomic_t *stop;
} run_log;

static int record(void *user, const ftq_train_progress *p)
{
    run_log *l = user;
    if (p->event == FTQ_TRAIN_EVENT_STEP && l->n < 256)
        l->loss[l->n++] = p->loss;
    if (l->stop_at && p->event == FTQ_TRAIN_EVENT_STEP && p->step == l->stop_at)
        *l->stop = 1;
    return 0;
}

static ftq_train_config tiny_config(const char *model, const char *out)
{
    ftq_train_config c = ftq_train_default_config();
    c.model_dir = shared_path(model);
    c.train_source = shared_path("data/sst2/train.tsv");
    c.output_dir = out;
    c.limit = 32;
    c.batch_size = 8;
    c.max_steps = 8;
    c.lr = 1e-3;
    c.seq_len = 32;
    return c;
}

static unsigned char *slurp(const char *dir, const char *name, size_t *n)
{
    char *p = ftq_path_join(dir, name), *d = NULL;
    *n = 0;
    int rc = p ? ftq_read_file(p, &d, n) : FTQ_ENOMEM;
    free(p);
    return rc == FTQ_OK ? (unsigned char *)d : NULL;
}

static int same_file(const char *d1, const char *d2, const char *name)
{
    size_t n1 = 0, n2 = 0;
    unsigned char *a = slurp(d1, name, &n1), *b = slurp(d2, name, &n2);
    int same = a && b && n1 == n2 && memcmp(a, b, n1) == 0;
    free(a);
    free(b);
    return same;
}

static int train(const ftq_train_config *c, ftq_train_result *r)
{
    ftq_trainer *t = NULL;
    int rc = ftq_trainer_new(c, &t);
    if (rc != FTQ_OK) {
        fprintf(stderr, "\n  trainer_new: %s\n", ftq_last_error());
        memset(r, 0, sizeof *r);
        return rc;
    }
    rc = ftq_trainer_run(t, r);
    if (rc != FTQ_OK && rc != FTQ_EINTERRUPTED && rc != FTQ_ENUMERIC)
        fprintf(stderr, "\n  trainer_run: %s\n", ftq_last_error());
    ftq_trainer_free(t);
    return rc;
}

static void test_loss_decreases(void)
{
    const char *models[] = {"golden/llama_tiny_random", "models/stories260K"};
    for (int k = 0; k < 2; k++) {
        char out[4200];
        snprintf(out, sizeof out, "%s", test_tmpdir(k ? "trainer_loss_s" : "trainer_loss_l"));
        ftq_train_config c = tiny_config(models[k], out);
        c.limit = 8; /* one batch, seen every step: the loss must fall */
        c.schedule = FTQ_SCHEDULE_CONSTANT;
        run_log l = {{0}, 0, 0, NULL};
        c.progress = record;
        c.progress_user = &l;
        ftq_train_result r;
        ASSERT_OK(train(&c, &r));
        ASSERT_INT_EQ(l.n, 8);
        if (l.n == 8) {
            if (!(l.loss[7] < l.loss[0] * 0.9))
                fprintf(stderr, "\n  %s: loss %g -> %g\n", models[k], l.loss[0], l.loss[7]);
            CU_ASSERT(l.loss[7] < l.loss[0] * 0.9);
        }
        ASSERT_INT_EQ(r.steps, 8);
        ASSERT_NEAR(r.epochs, 8.0, 0);
        CU_ASSERT(r.tokens_per_second > 0);
        ftq_train_result_free(&r);
    }
}

/* Same seed twice: identical weights; another seed: different. */
static void test_reproducible(void)
{
    char a[4200], b[4200], d[4200];
    snprintf(a, sizeof a, "%s", test_tmpdir("trainer_rep_a"));
    snprintf(b, sizeof b, "%s", test_tmpdir("trainer_rep_b"));
    snprintf(d, sizeof d, "%s", test_tmpdir("trainer_rep_d"));
    ftq_train_result r;
    ftq_train_config c = tiny_config("models/stories260K", a);
    c.grad_accum = 2;
    c.epochs = 2;
    c.max_steps = 0;
    ASSERT_OK(train(&c, &r));
    ASSERT_INT_EQ(r.steps, 4); /* 32 rows / 8 = 4 micro-batches = 2 steps per epoch */
    ftq_train_result_free(&r);
    c.output_dir = b;
    ASSERT_OK(train(&c, &r));
    ftq_train_result_free(&r);
    c.output_dir = d;
    c.seed = 7;
    ASSERT_OK(train(&c, &r));
    ftq_train_result_free(&r);
    CU_ASSERT(same_file(a, b, "model.safetensors"));
    CU_ASSERT(!same_file(a, d, "model.safetensors"));
    CU_ASSERT(same_file(a, b, "config.json"));
}

/* --save-every k then resume from checkpoint-k == the uninterrupted run, bit for bit. */
static void test_resume_exact(void)
{
    const char *models[] = {"models/stories260K", "golden/llama_tiny_random"};
    for (int k = 0; k < 2; k++) {
        char a[4200], b[4200], cdir[4200], ck[4300];
        snprintf(a, sizeof a, "%s", test_tmpdir(k ? "trainer_res_a2" : "trainer_res_a"));
        snprintf(b, sizeof b, "%s", test_tmpdir(k ? "trainer_res_b2" : "trainer_res_b"));
        snprintf(cdir, sizeof cdir, "%s", test_tmpdir(k ? "trainer_res_c2" : "trainer_res_c"));
        ftq_train_result r;
        ftq_train_config c = tiny_config(models[k], a);
        c.limit = 40;            /* 5 micro-batches: epochs end mid-accumulation */
        c.grad_accum = 2;        /* 3 steps per epoch */
        c.max_steps = 7;         /* crosses two epoch boundaries */
        c.warmup_steps = 2;
        c.weight_decay = 0.01;
        c.mode = k ? FTQ_TRAIN_FROZEN : FTQ_TRAIN_FULL;
        c.freeze_layers = k ? 1 : -1;
        ASSERT_OK(train(&c, &r));
        double loss_a = r.train_loss;
        ftq_train_result_free(&r);
        c.output_dir = b;
        c.save_every = 4;
        ASSERT_OK(train(&c, &r));
        ftq_train_result_free(&r);
        CU_ASSERT(same_file(a, b, "model.safetensors")); /* saving does not perturb the run */
        snprintf(ck, sizeof ck, "%s/checkpoint-4", b);
        CU_ASSERT(ftq_is_file(ck) == 0 && ftq_is_dir(ck));
        c.output_dir = cdir;
        c.save_every = 0;
        c.resume_dir = ck;
        ASSERT_OK(train(&c, &r));
        ASSERT_INT_EQ(r.steps, 7);
        ASSERT_NEAR(r.train_loss, loss_a, 0); /* the loss history travels with the checkpoint */
        ftq_train_result_free(&r);
        if (!same_file(a, cdir, "model.safetensors"))
            fprintf(stderr, "\n  %s: resumed weights differ from the uninterrupted run\n", models[k]);
        CU_ASSERT(same_file(a, cdir, "model.safetensors"));
        CU_ASSERT(same_file(a, cdir, "config.json"));
        /* a different argument is refused, naming it */
        c.lr = 2e-3;
        ftq_trainer *t = NULL;
        CU_ASSERT_EQUAL(ftq_trainer_new(&c, &t), FTQ_EINVAL);
        CU_ASSERT_PTR_NOT_NULL(strstr(ftq_last_error(), "--lr"));
        c.lr = 1e-3;
        c.limit = 48;
        CU_ASSERT_EQUAL(ftq_trainer_new(&c, &t), FTQ_EINVAL);
        CU_ASSERT_PTR_NOT_NULL(strstr(ftq_last_error(), "--limit"));
        ftq_trainer_free(t);
    }
}

/* Compare every tensor of an output checkpoint with the source: `changed(name)` says which
 * may differ; all others must be bit-identical. Returns the number of changed tensors. */
static int compare_tensors(const char *src_dir, const char *out_dir, int (*may_change)(const char *name))
{
    ftq_checkpoint *a = NULL, *b = NULL;
    if (ftq_checkpoint_open(src_dir, &a) != FTQ_OK || ftq_checkpoint_open(out_dir, &b) != FTQ_OK) {
        CU_FAIL("cannot open checkpoints");
        ftq_checkpoint_close(a);
        return -1;
    }
    int changed = 0;
    for (size_t i = 0; i < ftq_checkpoint_count(a); i++) {
        const ftq_tensor *ta = ftq_checkpoint_tensor(a, i);
        const ftq_tensor *tb = ftq_checkpoint_find(b, ta->name);
        if (!tb) {
            fprintf(stderr, "\n  %s missing from the output\n", ta->name);
            CU_FAIL("tensor missing");
            continue;
        }
        int same = ta->nbytes == tb->nbytes && memcmp(ta->data, tb->data, ta->nbytes) == 0;
        if (!same && !may_change(ta->name)) {
            fprintf(stderr, "\n  frozen tensor %s changed\n", ta->name);
            CU_FAIL("frozen tensor changed");
        }
        changed += !same;
    }
    ftq_checkpoint_close(a);
    ftq_checkpoint_close(b);
    return changed;
}

static int head_only(const char *name) { return strcmp(name, "score.weight") == 0; }
static int after_block0(const char *name)
{
    return strncmp(name, "model.layers.0.", 15) != 0 && strcmp(name, "model.embed_tokens.weight") != 0;
}

static void test_frozen_and_head(void)
{
    char out[4200];
    snprintf(out, sizeof out, "%s", test_tmpdir("trainer_frozen"));
    const char *src = shared_path("models/stories260K");
    ftq_train_config c = tiny_config("models/stories260K", out);
    c.mode = FTQ_TRAIN_FROZEN;
    c.freeze_layers = 1;
    ftq_train_result r;
    ASSERT_OK(train(&c, &r));
    ftq_train_result_free(&r);
    CU_ASSERT(compare_tensors(src, out, after_block0) > 5); /* blocks 1.. and the final norm moved */

    snprintf(out, sizeof out, "%s", test_tmpdir("trainer_head"));
    c = tiny_config("models/stories260K", out);
    c.mode = FTQ_TRAIN_HEAD;
    ASSERT_OK(train(&c, &r));
    ftq_train_result_free(&r);
    /* every source tensor is frozen in head mode: none may change (score.weight is new) */
    ASSERT_INT_EQ(compare_tensors(src, out, head_only), 0);
    ftq_checkpoint *ck = NULL;
    ASSERT_OK(ftq_checkpoint_open(out, &ck));
    const ftq_tensor *head = ftq_checkpoint_find(ck, "score.weight");
    CU_ASSERT_PTR_NOT_NULL(head);
    if (head) { /* the trained head: [2, dim], finite, not all zero */
        ASSERT_INT_EQ(head->ndim, 2);
        ASSERT_INT_EQ(head->shape[0], 2);
        CU_ASSERT(head->dtype == FTQ_DTYPE_F32);
        int finite = 1, nonzero = 0;
        if (head->dtype == FTQ_DTYPE_F32)
            for (size_t i = 0; i < head->nbytes / sizeof(float); i++) {
                float v = ((const float *)head->data)[i];
                finite &= isfinite(v) != 0;
                nonzero |= v != 0.0f;
            }
        CU_ASSERT(finite && nonzero);
    }
    ftq_checkpoint_close(ck);
}

/* The output directory is an HF classifier: ftq_model_load + ftq_model_classify agree with
 * the dev metrics computed during training. */
static void test_output_loads(void)
{
    char out[4200];
    snprintf(out, sizeof out, "%s", test_tmpdir("trainer_load"));
    ftq_train_config c = tiny_config("models/stories260K", out);
    c.dev_source = shared_path("data/sst2/dev.tsv");
    c.dev_limit = 40;
    c.batch_size = 4;
    ftq_train_result r;
    ASSERT_OK(train(&c, &r));
    CU_ASSERT(r.has_dev);
    ASSERT_INT_EQ(r.dev.n, 40);
    ftq_model *m = NULL;
    ftq_tokenizer *tok = NULL;
    ftq_dataset *ds = NULL;
    ASSERT_OK(ftq_model_load(out, &m));
    ASSERT_OK(ftq_tokenizer_load(out, &tok));
    ASSERT_INT_EQ(ftq_model_num_labels(m), 2);
    ftq_dataset_params dp = ftq_dataset_default_params();
    ASSERT_OK(ftq_dataset_load(c.dev_source, &dp, &ds));
    ftq_session *s = NULL;
    ASSERT_OK(ftq_session_new(m, 64, &s));
    int64_t conf[4] = {0};
    for (size_t i = 0; i < 40; i++) {
        const char *text = ftq_dataset_text(ds, i);
        int32_t *ids = NULL;
        size_t n = 0;
        float logits[2];
        ASSERT_OK(ftq_tokenizer_encode(tok, text, strlen(text), 1, &ids, &n));
        if (n > 32)
            n = 32;
        ASSERT_OK(ftq_model_classify(m, s, ids, (int)n, logits));
        conf[ftq_dataset_label(ds, i) * 2 + ftq_argmax(logits, 2)]++;
        free(ids);
    }
    /* the same predictions (padding and batching do not change the pooled logits beyond
     * float rounding; allow one row that sits on a near-tie) */
    int64_t diff = 0;
    for (int i = 0; i < 4; i++)
        diff += llabs(conf[i] - r.dev.confusion[i]);
    CU_ASSERT(diff <= 2);
    /* pad_token_id recorded (stories260K has none: EOS 2) */
    char cfgp[4300];
    snprintf(cfgp, sizeof cfgp, "%s/config.json", out);
    ftq_model_config mc;
    ASSERT_OK(ftq_config_load(cfgp, &mc));
    ASSERT_INT_EQ(mc.pad_token_id, 2);
    ftq_session_free(s);
    ftq_dataset_free(ds);
    ftq_tokenizer_free(tok);
    ftq_model_free(m);
    ftq_train_result_free(&r);
}

/* A second run into the same OUTDIR replaces the model and drops the first model's
 * tokenizer files that would shadow the new ones. */
static void test_outdir_reuse(void)
{
    char out[4200], p[4400];
    snprintf(out, sizeof out, "%s", test_tmpdir("trainer_reuse"));
    ftq_train_config c = tiny_config("golden/gpt2_tiny_random", out);
    c.max_steps = 1;
    ftq_train_result r;
    ASSERT_OK(train(&c, &r));
    ftq_train_result_free(&r);
    snprintf(p, sizeof p, "%s/vocab.json", out);
    CU_ASSERT(ftq_is_file(p));
    c = tiny_config("models/stories260K", out);
    c.max_steps = 1;
    ASSERT_OK(train(&c, &r));
    ftq_train_result_free(&r);
    CU_ASSERT(!ftq_is_file(p));
    const char *want[] = {"model.safetensors", "config.json", "tokenizer.model", "tokenizer.json"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", out, want[i]);
        CU_ASSERT(ftq_is_file(p));
    }
    ftq_model *m = NULL;
    ftq_tokenizer *tok = NULL;
    ASSERT_OK(ftq_model_load(out, &m));
    ASSERT_OK(ftq_tokenizer_load(out, &tok));
    CU_ASSERT_EQUAL(ftq_tokenizer_get_kind(tok), FTQ_TOKENIZER_HF_JSON);
    ASSERT_INT_EQ(ftq_model_get_config(m)->arch, FTQ_ARCH_LLAMA);
    ftq_tokenizer_free(tok);
    ftq_model_free(m);
}

static void test_lm_run(void)
{
    char out[4200];
    snprintf(out, sizeof out, "%s", test_tmpdir("trainer_lm"));
    ftq_train_config c = ftq_train_default_config();
    c.model_dir = shared_path("models/stories260K");
    c.train_source = shared_path("data/tinyshakespeare/input.txt");
    c.output_dir = out;
    c.task = FTQ_TASK_LM;
    c.seq_len = 64;
    c.limit = 32;
    c.dev_limit = 8;
    c.max_steps = 8;
    c.lr = 1e-3;
    ftq_train_result r;
    ASSERT_OK(train(&c, &r));
    CU_ASSERT(r.has_dev);
    CU_ASSERT(isfinite(r.ppl_before) && isfinite(r.ppl_after));
    if (!(r.ppl_after < r.ppl_before))
        fprintf(stderr, "\n  ppl %g -> %g\n", r.ppl_before, r.ppl_after);
    CU_ASSERT(r.ppl_after < r.ppl_before); /* Shakespeare is new to a TinyStories model */
    ftq_train_result_free(&r);
    /* the output is a causal LM that ftq loads and evaluates */
    ftq_model *m = NULL;
    ASSERT_OK(ftq_model_load(out, &m));
    ASSERT_INT_EQ(ftq_model_num_labels(m), 0);
    ftq_model_free(m);
}

static void test_nan_stops(void)
{
    char out[4200], ck[4300];
    snprintf(out, sizeof out, "%s", test_tmpdir("trainer_nan"));
    ftq_train_config c = tiny_config("models/stories260K", out);
    c.lr = 1e30;
    c.max_grad_norm = 0;
    c.save_every = 1;
    c.max_steps = 20;
    ftq_train_result r;
    int rc = train(&c, &r);
    CU_ASSERT_EQUAL(rc, FTQ_ENUMERIC);
    const char *msg = ftq_last_error();
    CU_ASSERT(strstr(msg, "nan") || strstr(msg, "inf") || strstr(msg, "non-finite"));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "step"));
    CU_ASSERT(r.steps < 20);
    /* no final model, the last good checkpoint complete, no temp files */
    snprintf(ck, sizeof ck, "%s/model.safetensors", out);
    CU_ASSERT(!ftq_is_file(ck));
    if (r.checkpoint) {
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, r.checkpoint));
        char p[4400];
        snprintf(p, sizeof p, "%s/trainer_state.json", r.checkpoint);
        CU_ASSERT(ftq_is_file(p));
        ftq_model *m = NULL;
        ASSERT_OK(ftq_model_load(r.checkpoint, &m));
        ftq_model_free(m);
    }
    char cmd[4400], *o = NULL;
    CU_ASSERT(ftq_is_dir(out)); /* else find fails and wc still prints 0 */
    snprintf(cmd, sizeof cmd, "find '%s' -name '*.tmp*' | wc -l", out);
    ASSERT_INT_EQ(run_capture(cmd, &o), 0);
    CU_ASSERT(atoi(o) == 0);
    free(o);
    ftq_train_result_free(&r);
}

static void test_stop_flag(void)
{
    char out[4200], a[4200];
    snprintf(out, sizeof out, "%s", test_tmpdir("trainer_stop"));
    snprintf(a, sizeof a, "%s", test_tmpdir("trainer_stop_ref"));
    static volatile sig_atomic_t stop;
    stop = 0;
    run_log l = {{0}, 0, 3, &stop};
    ftq_train_config c = tiny_config("golden/llama_tiny_random", out);
    c.stop = &stop;
    c.progress = record;
    c.progress_user = &l;
    ftq_train_result r;
    CU_ASSERT_EQUAL(train(&c, &r), FTQ_EINTERRUPTED);
    ASSERT_INT_EQ(r.steps, 3);
    CU_ASSERT_PTR_NOT_NULL(r.checkpoint);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.checkpoint, "checkpoint-3"));
    char *ck = r.checkpoint ? strdup(r.checkpoint) : NULL;
    ftq_train_result_free(&r);
    if (!ck)
        return;
    /* resume from the interrupt checkpoint == uninterrupted */
    ftq_train_config c2 = tiny_config("golden/llama_tiny_random", out);
    c2.resume_dir = ck;
    ASSERT_OK(train(&c2, &r));
    ftq_train_result_free(&r);
    c2 = tiny_config("golden/llama_tiny_random", a);
    ASSERT_OK(train(&c2, &r));
    ftq_train_result_free(&r);
    CU_ASSERT(same_file(a, out, "model.safetensors"));
    free(ck);
}

static void test_bad_options(void)
{
    char out[4200];
    snprintf(out, sizeof out, "%s/never", test_tmpdir("trainer_bad"));
    ftq_trainer *t = NULL;
    ftq_train_config c = tiny_config("models/stories260K", out);
    c.task = FTQ_TASK_LM;
    c.mode = FTQ_TRAIN_HEAD;
    CU_ASSERT_EQUAL(ftq_trainer_new(&c, &t), FTQ_EINVAL);
    c = tiny_config("models/stories260K", out);
    c.mode = FTQ_TRAIN_FROZEN;
    c.freeze_layers = 6;
    CU_ASSERT_EQUAL(ftq_trainer_new(&c, &t), FTQ_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(ftq_last_error(), "5"));
    c = tiny_config("models/stories260K", out);
    c.freeze_layers = 1; /* without mode frozen */
    CU_ASSERT_EQUAL(ftq_trainer_new(&c, &t), FTQ_EINVAL);
    c = tiny_config("golden/llama_tiny_random", out);
    c.seq_len = 129;
    CU_ASSERT_EQUAL(ftq_trainer_new(&c, &t), FTQ_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(ftq_last_error(), "128"));
    c = tiny_config("models/stories260K", out);
    c.batch_size = -1; /* 0 is the model family's default */
    CU_ASSERT_EQUAL(ftq_trainer_new(&c, &t), FTQ_EINVAL);
    CU_ASSERT_PTR_NULL(t);
    CU_ASSERT(!ftq_is_dir(out)); /* nothing was written */
}

void test_register_trainer(void)
{
    static const test_case cases[] = {
        {"schedules", test_schedules},
        {"clipping", test_clipping},
        {"shuffle", test_shuffle},
        {"metrics", test_metrics},
        {"documents", test_documents},
        {"pack_lm", test_pack_lm},
        {"batch_classify", test_batch_classify},
        {"config_edit", test_config_edit},
        {"resume_args", test_resume_args},
        {"bad_options", test_bad_options},
        {"loss_decreases", test_loss_decreases},
        {"reproducible", test_reproducible},
        {"resume_exact", test_resume_exact},
        {"frozen_and_head", test_frozen_and_head},
        {"output_loads", test_output_loads},
        {"outdir_reuse", test_outdir_reuse},
        {"lm_run", test_lm_run},
        {"nan_stops", test_nan_stops},
        {"stop_flag", test_stop_flag},
        {NULL, NULL},
    };
    test_add_suite("trainer", cases);
}
