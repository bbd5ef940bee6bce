/* test_trainer_bert.c - the trainer on a BERT encoder (golden/bert_tiny_random, SST-2 rows):
 * a run stopped by the stop flag and resumed from its checkpoint ends with exactly the
 * weights of an uninterrupted run (full and head mode, with --save-every, --eval-every and
 * the log on), and head mode runs the encoder over the data once; gradient accumulation over
 * two micro-batches gives the loss, gradient norm and weights of one batch twice the size
 * (within float tolerance); truncated rows are counted (against an independent count with
 * ftq_bert_tokenize) and reported in the plan, the result and the log; malformed options are
 * errors that write nothing. */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "include/ftq_bert_train.h"
#include "tests/test_util.h"

static const char *TINY = "golden/bert_tiny_random";

typedef struct {
    double loss[64], gn[64];
    int n, evals;
    int64_t stop_at;
    volatile sig_atomic_t *stop;
} bert_log;

static int record(void *user, const ftq_train_progress *p)
{
    bert_log *l = user;
    if (p->event == FTQ_TRAIN_EVENT_STEP && l->n < 64) {
        l->loss[l->n] = p->loss;
        l->gn[l->n++] = p->grad_norm;
    }
    if (p->event == FTQ_TRAIN_EVENT_EVAL)
        l->evals++;
    if (l->stop_at && p->event == FTQ_TRAIN_EVENT_STEP && p->step == l->stop_at)
        *l->stop = 1;
    return 0;
}

static ftq_train_config bert_config(const char *out)
{
    ftq_train_config c = ftq_train_default_config();
    c.model_dir = shared_path(TINY);
    c.train_source = shared_path("data/sst2/train.tsv");
    c.output_dir = out;
    c.limit = 32;
    c.batch_size = 8;
    c.max_steps = 8;
    c.lr = 1e-3;
    c.seq_len = 32;
    return c;
}

static int train(const ftq_train_config *c, ftq_train_result *r, ftq_train_plan *plan)
{
    ftq_trainer *t = NULL;
    int rc = ftq_trainer_new(c, &t);
    if (rc != FTQ_OK) {
        fprintf(stderr, "\n  trainer_new: %s\n", ftq_last_error());
        memset(r, 0, sizeof *r);
        return rc;
    }
    if (plan)
        *plan = *ftq_trainer_plan(t);
    rc = ftq_trainer_run(t, r);
    if (rc != FTQ_OK && rc != FTQ_EINTERRUPTED)
        fprintf(stderr, "\n  trainer_run: %s\n", ftq_last_error());
    ftq_trainer_free(t);
    return rc;
}

static int same_weights(const char *d1, const char *d2)
{
    char *p1 = ftq_path_join(d1, "model.safetensors"), *p2 = ftq_path_join(d2, "model.safetensors");
    char *a = NULL, *b = NULL;
    size_t n1 = 0, n2 = 0;
    int same = p1 && p2 && ftq_read_file(p1, &a, &n1) == FTQ_OK && ftq_read_file(p2, &b, &n2) == FTQ_OK &&
               n1 == n2 && memcmp(a, b, n1) == 0;
    free(a);
    free(b);
    free(p1);
    free(p2);
    return same;
}

static int count_sub(const char *text, const char *s)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, s)); p++)
        n++;
    return n;
}

/* Tokens of the first n rows of src as the encoder sees them, counted independently. */
static int64_t data_tokens(const char *src, size_t n, int seq)
{
    ftq_dataset_params dp = ftq_dataset_default_params();
    dp.require_labels = 1;
    ftq_dataset *d = NULL;
    ftq_tokenizer *tok = NULL;
    int64_t total = 0;
    if (ftq_dataset_load(src, &dp, &d) == FTQ_OK && ftq_tokenizer_load(shared_path(TINY), &tok) == FTQ_OK)
        for (size_t i = 0; i < n && i < ftq_dataset_size(d); i++) {
            int32_t *ids = NULL, *ty = NULL;
            size_t k = 0;
            int tr = 0;
            if (ftq_bert_tokenize(tok, ftq_dataset_text(d, i), NULL, seq, &ids, &ty, &k, &tr) == FTQ_OK)
                total += (int64_t)k;
            free(ids);
            free(ty);
        }
    ftq_dataset_free(d);
    ftq_tokenizer_free(tok);
    return total;
}

/* Stopped after step 3 (the Ctrl-C path: the stop flag), resumed: bit-identical weights. */
static void test_resume_bit_identical(void)
{
    static const ftq_train_mode modes[] = {FTQ_TRAIN_FULL, FTQ_TRAIN_HEAD};
    for (int k = 0; k < 2; k++) {
        const char *w = test_tmpdir(k ? "trainer_bert_resume_h" : "trainer_bert_resume_f");
        char a[4200], b[4200], lg[4300];
        snprintf(a, sizeof a, "%s/a", w);
        snprintf(b, sizeof b, "%s/b", w);
        snprintf(lg, sizeof lg, "%s/a.jsonl", w);
        /* uninterrupted, with a checkpoint every 4 steps, a dev evaluation every 4 and the log */
        ftq_train_config c = bert_config(a);
        c.mode = modes[k];
        c.dev_source = shared_path("data/sst2/dev.tsv");
        c.dev_limit = 16;
        c.eval_every = 4;
        c.save_every = 4;
        c.log_path = lg;
        bert_log la = {{0}, {0}, 0, 0, 0, NULL};
        c.progress = record;
        c.progress_user = &la;
        ftq_train_result r;
        ftq_train_plan plan;
        ASSERT_OK(train(&c, &r, &plan));
        CU_ASSERT_STRING_EQUAL(plan.arch, "bert");
        ASSERT_INT_EQ(r.steps, 8);
        /* 8 steps of 8 rows = 2 epochs of the 32 rows: full mode runs the encoder over them
         * twice, head mode once (the feature cache) */
        ASSERT_INT_EQ(r.train_tokens, (k ? 1 : 2) * data_tokens(c.train_source, 32, c.seq_len));
        ASSERT_INT_EQ(la.evals, 2); /* step 4 and the final one */
        CU_ASSERT(r.has_dev && r.dev.n == 16);
        ftq_train_result_free(&r);
        char ck4[4300];
        snprintf(ck4, sizeof ck4, "%s/checkpoint-4", a);
        ftq_bert *m = NULL; /* a checkpoint is a BertForSequenceClassification directory */
        ASSERT_OK(ftq_bert_load(ck4, &m));
        if (m)
            ASSERT_INT_EQ(ftq_bert_get_config(m)->num_labels, 2);
        ftq_bert_free(m);
        char *text = NULL;
        size_t len = 0;
        ASSERT_OK(ftq_read_file(lg, &text, &len));
        ASSERT_INT_EQ(count_sub(text ? text : "", "\"event\": \"step\""), 8);
        ASSERT_INT_EQ(count_sub(text ? text : "", "\"event\": \"eval\""), 2);
        free(text);

        /* the same run stopped after step 3, then resumed from its checkpoint */
        volatile sig_atomic_t stop = 0;
        c.output_dir = b;
        c.log_path = NULL;
        bert_log lb = {{0}, {0}, 0, 0, 3, &stop};
        c.progress_user = &lb;
        c.stop = &stop;
        CU_ASSERT_EQUAL(train(&c, &r, NULL), FTQ_EINTERRUPTED);
        ASSERT_INT_EQ(r.steps, 3);
        char ck[4400];
        snprintf(ck, sizeof ck, "%s", r.checkpoint ? r.checkpoint : "");
        ftq_train_result_free(&r);
        CU_ASSERT_PTR_NOT_NULL(strstr(ck, "checkpoint-3"));
        stop = 0;
        c.stop = NULL;
        c.resume_dir = ck;
        bert_log lc = {{0}, {0}, 0, 0, 0, NULL};
        c.progress_user = &lc;
        ftq_train_plan pc;
        ASSERT_OK(train(&c, &r, &pc));
        ASSERT_INT_EQ(pc.start_step, 3);
        ASSERT_INT_EQ(r.steps, 8);
        ftq_train_result_free(&r);
        CU_ASSERT(same_weights(a, b));
        /* and the loss of every step after the resume is the uninterrupted run's */
        ASSERT_INT_EQ(lc.n, 5);
        for (int i = 0; i < lc.n && i + 3 < la.n; i++)
            CU_ASSERT(lc.loss[i] == la.loss[i + 3]);
        /* another pooling than the checkpoint's head is refused, naming the flag */
        c.pool = "mean";
        ftq_trainer *t = NULL;
        CU_ASSERT_EQUAL(ftq_trainer_new(&c, &t), FTQ_EINVAL);
        CU_ASSERT_PTR_NOT_NULL(strstr(ftq_last_error(), "--pool mean differs from the checkpoint's pooler"));
        CU_ASSERT_PTR_NULL(t);
    }
}

/* Batch 8 in one micro-batch vs 2 x 4 accumulated: the same rows per step, so the loss (the
 * mean of the micro-batch means), the gradient norm and the weights agree within float
 * rounding. The gradient norm is what catches an unscaled accumulation (it would double). */
static void test_grad_accum_equivalence(void)
{
    const char *w = test_tmpdir("trainer_bert_accum");
    char dir[2][4200];
    bert_log l[2] = {{{0}, {0}, 0, 0, 0, NULL}, {{0}, {0}, 0, 0, 0, NULL}};
    for (int k = 0; k < 2; k++) {
        snprintf(dir[k], sizeof dir[k], "%s/%d", w, k);
        ftq_train_config c = bert_config(dir[k]);
        c.limit = 16;
        c.max_steps = 2;
        c.schedule = FTQ_SCHEDULE_CONSTANT;
        c.batch_size = k ? 4 : 8;
        c.grad_accum = k ? 2 : 1;
        c.progress = record;
        c.progress_user = &l[k];
        ftq_train_result r;
        ASSERT_OK(train(&c, &r, NULL));
        ftq_train_result_free(&r);
    }
    ASSERT_INT_EQ(l[0].n, 2);
    ASSERT_INT_EQ(l[1].n, 2);
    for (int i = 0; i < 2 && i < l[0].n && i < l[1].n; i++) {
        ASSERT_NEAR(l[1].loss[i], l[0].loss[i], 1e-5);
        ASSERT_NEAR(l[1].gn[i], l[0].gn[i], 1e-4 * l[0].gn[i]);
        CU_ASSERT(l[0].gn[i] > 0);
    }
    ftq_bert *m[2] = {NULL, NULL};
    ASSERT_OK(ftq_bert_load(dir[0], &m[0]));
    ASSERT_OK(ftq_bert_load(dir[1], &m[1]));
    if (m[0] && m[1]) {
        size_t n = ftq_bert_num_params(m[0]);
        ASSERT_INT_EQ(ftq_bert_num_params(m[1]), n);
        const float *a = ftq_bert_params(m[0]), *b = ftq_bert_params(m[1]);
        double mx = 0;
        size_t off = 0, numel = 0, seen = 0;
        for (int i = 0; ftq_bert_tensor_info(m[0], i, &off, &numel); i++, seen += numel) /* not the padding */
            for (size_t e = off; e < off + numel; e++)
                mx = fmax(mx, fabs((double)a[e] - b[e]));
        ASSERT_INT_EQ((int64_t)seen, ftq_bert_param_count(m[0])); /* every tensor was compared */
        if (mx > 1e-5)
            fprintf(stderr, "\n  accumulated vs one batch: max |weight diff| %g\n", mx);
        CU_ASSERT(mx <= 1e-5);
    }
    ftq_bert_free(m[0]);
    ftq_bert_free(m[1]);
}

/* --seq 12 on SST-2 rows: the trainer's count of truncated rows equals an independent one
 * (rows whose untruncated encoding is longer than 12), in the plan, the result and the log. */
static void test_truncation_counted(void)
{
    const char *w = test_tmpdir("trainer_bert_trunc");
    char out[4200], lg[4300];
    snprintf(out, sizeof out, "%s/out", w);
    snprintf(lg, sizeof lg, "%s/log.jsonl", w);
    enum { N = 40, SEQ = 12 };
    ftq_dataset_params dp = ftq_dataset_default_params();
    dp.require_labels = 1;
    ftq_dataset *d = NULL;
    ftq_tokenizer *tok = NULL;
    ASSERT_OK(ftq_dataset_load(shared_path("data/sst2/dev.tsv"), &dp, &d));
    ASSERT_OK(ftq_tokenizer_load(shared_path(TINY), &tok));
    if (!d || !tok) {
        ftq_dataset_free(d);
        ftq_tokenizer_free(tok);
        return;
    }
    int64_t expect = 0;
    for (size_t i = 0; i < N; i++) {
        int32_t *ids = NULL, *ty = NULL;
        size_t n = 0;
        int tr = 0;
        ASSERT_OK(ftq_bert_tokenize(tok, ftq_dataset_text(d, i), NULL, 512, &ids, &ty, &n, &tr));
        expect += n > SEQ;
        free(ids);
        free(ty);
    }
    ftq_dataset_free(d);
    ftq_tokenizer_free(tok);
    CU_ASSERT(expect > 5 && expect < N); /* the fixture is a real mix */

    ftq_train_config c = bert_config(out);
    c.train_source = shared_path("data/sst2/dev.tsv");
    c.limit = N;
    c.seq_len = SEQ;
    c.max_steps = 1;
    c.log_path = lg;
    ftq_train_result r;
    ftq_train_plan plan;
    ASSERT_OK(train(&c, &r, &plan));
    ASSERT_INT_EQ(plan.truncated, expect);
    ASSERT_INT_EQ(r.truncated, expect);
    ftq_train_result_free(&r);
    char *text = NULL, want[64];
    size_t len = 0;
    snprintf(want, sizeof want, "\"truncated\": %lld", (long long)expect);
    ASSERT_OK(ftq_read_file(lg, &text, &len));
    CU_ASSERT_PTR_NOT_NULL(text ? strstr(text, want) : NULL);
    free(text);
    /* a sequence length beyond max_position_embeddings (64) is refused, not overflowed */
    c.seq_len = 65;
    ftq_trainer *t = NULL;
    CU_ASSERT_EQUAL(ftq_trainer_new(&c, &t), FTQ_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(ftq_last_error(), "64 positions"));
    CU_ASSERT_PTR_NULL(t);
}

/* Options an encoder (or a decoder) cannot take: an error naming them; nothing written. */
static void test_bad_options(void)
{
    char out[4200];
    snprintf(out, sizeof out, "%s/never", test_tmpdir("trainer_bert_bad"));
    ftq_trainer *t = NULL;
    ftq_train_config c = bert_config(out);
    c.pool = "max";
    CU_ASSERT_EQUAL(ftq_trainer_new(&c, &t), FTQ_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(ftq_last_error(), "unknown pooling 'max'"));
    c = bert_config(out);
    c.task = FTQ_TASK_LM;
    CU_ASSERT_EQUAL(ftq_trainer_new(&c, &t), FTQ_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(ftq_last_error(), "encoder"));
    c = bert_config(out);
    c.init_random = 1;
    CU_ASSERT_EQUAL(ftq_trainer_new(&c, &t), FTQ_EUNSUPPORTED);
    c = bert_config(out);
    c.model_dir = shared_path("models/stories260K");
    c.text2_col = "sentence";
    CU_ASSERT_NOT_EQUAL(ftq_trainer_new(&c, &t), FTQ_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(ftq_last_error(), "sentence pairs need an encoder"));
    c = bert_config(out);
    c.text2_col = "no_such_column";
    CU_ASSERT_NOT_EQUAL(ftq_trainer_new(&c, &t), FTQ_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(ftq_last_error(), "no_such_column"));
    CU_ASSERT_PTR_NULL(t);
    CU_ASSERT(!ftq_is_dir(out));
}

void test_register_trainer_bert(void)
{
    static const test_case cases[] = {{"resume_bit_identical", test_resume_bit_identical},
                                      {"grad_accum_equivalence", test_grad_accum_equivalence},
                                      {"truncation_counted", test_truncation_counted},
                                      {"bad_options", test_bad_options},
                                      {NULL, NULL}};
    test_add_suite("trainer_bert", cases);
}
