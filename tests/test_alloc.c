/* test_alloc.c - allocation failures: the test binary is linked with --wrap for malloc,
 * calloc, realloc, strdup, strndup, posix_memalign and aligned_alloc (CMakeLists.txt), so
 * a test can make the k-th allocation fail. Each operation below is run once to count its
 * allocations, then once per k with the k-th one failing: it must return an error with a
 * message (or succeed with a complete result, where a fallback exists), never crash, and
 * free what it allocated (the sanitizer build checks leaks). The long operations try every
 * n-th allocation; FTQ_TEST_ALLOC_ALL=1 tries them all. cJSON allocates through its own
 * hooks, pointed here as well. */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/quant.h"
#include "include/ftq_bert.h"
#include "tests/test_util.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
int __real_posix_memalign(void **p, size_t align, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);

/* 0: off; otherwise the allocation number (1-based, since arming) that fails */
static atomic_long fail_at;
static atomic_long n_allocs;
static atomic_int counting;

static int should_fail(void)
{
    if (!atomic_load_explicit(&counting, memory_order_relaxed))
        return 0;
    long k = atomic_fetch_add(&n_allocs, 1) + 1;
    long f = atomic_load(&fail_at);
    return f > 0 && k == f;
}

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
int __wrap_posix_memalign(void **p, size_t align, size_t n);
void *__wrap_aligned_alloc(size_t align, size_t n);

void *__wrap_malloc(size_t n) { return should_fail() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t m) { return should_fail() ? NULL : __real_calloc(n, m); }
void *__wrap_realloc(void *p, size_t n) { return should_fail() ? NULL : __real_realloc(p, n); }
char *__wrap_strdup(const char *s) { return should_fail() ? NULL : __real_strdup(s); }
char *__wrap_strndup(const char *s, size_t n) { return should_fail() ? NULL : __real_strndup(s, n); }
int __wrap_posix_memalign(void **p, size_t align, size_t n)
{
    return should_fail() ? 12 /* ENOMEM */ : __real_posix_memalign(p, align, n);
}

void *__wrap_aligned_alloc(size_t align, size_t n) { return should_fail() ? NULL : __real_aligned_alloc(align, n); }

static void *cjson_malloc(size_t n) { return __wrap_malloc(n); }

typedef int (*op_fn)(void);

/* outputs of the operations that write; removed before each run */
static char out_dir[4200], out_dir2[4200];

static void clear_out(void)
{
    char cmd[8600];
    if (out_dir[0] && snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", out_dir, out_dir2[0] ? out_dir2 : out_dir) <
                          (int)sizeof cmd &&
        system(cmd) != 0)
        fprintf(stderr, "\n  cannot remove %s\n", out_dir);
}

/* Run `op` with no failure (counting), then with single allocations failing: every one, or
 * (max_runs > 0) every stride-th from the first and the last, at most max_runs runs. */
static void sweep_n(const char *name, op_fn op, long max_runs)
{
    cJSON_Hooks hooks = {cjson_malloc, free};
    cJSON_InitHooks(&hooks);
    int saved = ftq_get_threads();
    ftq_set_threads(1); /* the k-th allocation is then the same one every run */
    atomic_store(&fail_at, 0);
    atomic_store(&n_allocs, 0);
    clear_out();
    atomic_store(&counting, 1);
    int rc = op();
    atomic_store(&counting, 0);
    long total = atomic_load(&n_allocs);
    if (rc != FTQ_OK)
        fprintf(stderr, "\n  %s: %s\n", name, ftq_last_error());
    CU_ASSERT_EQUAL_FATAL(rc, FTQ_OK);
    CU_ASSERT(total > 0);
    int bad = 0, failed = 0;
    if (getenv("FTQ_TEST_ALLOC_ALL")) /* every allocation, however long it takes */
        max_runs = 0;
    long stride = max_runs > 0 && total > max_runs ? (total + max_runs - 2) / (max_runs - 1) : 1;
    for (long k = 1; k <= total; k = k < total && k + stride > total ? total : k + stride) {
        clear_out();
        ftq_set_error(FTQ_OK, "%s", ""); /* so a missing message shows */
        atomic_store(&n_allocs, 0);
        atomic_store(&fail_at, k);
        atomic_store(&counting, 1);
        rc = op();
        atomic_store(&counting, 0);
        atomic_store(&fail_at, 0);
        if (rc != FTQ_OK) {
            failed++;
            if (rc > 0 || !ftq_last_error()[0]) {
                if (bad++ < 3)
                    fprintf(stderr, "\n  %s: allocation %ld of %ld failing -> %d, message '%s'"
                                    " (want a negative status with a message, or a complete success)\n",
                            name, k, total, rc, ftq_last_error());
            }
        }
    }
    ftq_set_threads(saved);
    cJSON_InitHooks(NULL);
    if (getenv("FTQ_TEST_VERBOSE"))
        printf("\n  %s: %ld allocations, %d refused cleanly", name, total, failed);
    ASSERT_INT_EQ(bad, 0);
    CU_ASSERT(failed > 0);
    clear_out();
    out_dir[0] = out_dir2[0] = '\0';
}

static void sweep(const char *name, op_fn op) { sweep_n(name, op, 0); }

static int op_config(void)
{
    ftq_model_config c;
    return ftq_config_load(shared_path("models/stories260K"), &c);
}

static int op_model(void)
{
    ftq_model *m = NULL;
    int rc = ftq_model_load(shared_path("models/stories260K"), &m);
    ftq_model_free(m);
    return rc;
}

static int op_tokenizer(void)
{
    ftq_tokenizer *t = NULL;
    int rc = ftq_tokenizer_load(shared_path("models/stories260K"), &t);
    if (rc == FTQ_OK) {
        int32_t *ids = NULL;
        size_t n = 0;
        const char *s = "Once upon a time, a little girl found a shiny stone.";
        rc = ftq_tokenizer_encode(t, s, strlen(s), 1, &ids, &n);
        free(ids);
    }
    ftq_tokenizer_free(t);
    return rc;
}

/* tokenizer.json stages (normalizers, pre-tokenizer stages, Unigram, Split regexes): encode and
 * decode with a tokenizer loaded before the sweep, and loading one. */
static ftq_tokenizer *enc_tok;
static const char *json_dir;

static int op_tokenizer_json_encode(void)
{
    static const char *const texts[] = {"<|im_start|>user\n\u00c5 caf\xc3\xa9 12345  x\ty!!", "  Hello  world ",
                                        "\xef\xac\x81ne \xe2\x85\xa7 </s> a\xcc\x81"};
    int rc = FTQ_OK;
    for (int k = 0; k < 3 && rc == FTQ_OK; k++) {
        int32_t *ids = NULL;
        size_t n = 0;
        rc = ftq_tokenizer_encode_flags(enc_tok, texts[k], strlen(texts[k]), (unsigned)(k & 1) * 3u, &ids, &n);
        if (rc == FTQ_OK) {
            char *out = NULL;
            rc = ftq_tokenizer_decode(enc_tok, ids, n, 0, &out, NULL);
            free(out);
        }
        free(ids);
    }
    return rc;
}

static int op_tokenizer_json_load(void)
{
    ftq_tokenizer *t = NULL;
    int rc = ftq_tokenizer_load(json_dir, &t);
    ftq_tokenizer_free(t);
    return rc;
}

static void test_tokenizer_json(void)
{
    static const char *const names[] = {"qwen2", "unigram", "unigram_bytes", "split_b", "split_c", "metaspace_bpe",
                                        "bpe_affixes", "wordpiece_split", "../spm_unigram/plain",
                                        "../spm_unigram/bytes"};
    char rel[128];
    for (int i = 0; i < 10; i++) {
        snprintf(rel, sizeof rel, "tests/fixtures/tokenizer_json/%s", names[i]);
        json_dir = source_path(rel);
        ASSERT_OK(ftq_tokenizer_load(json_dir, &enc_tok));
        sweep(names[i], op_tokenizer_json_encode);
        ftq_tokenizer_free(enc_tok);
        enc_tok = NULL;
        sweep_n(names[i], op_tokenizer_json_load, 60);
    }
}

static int op_dataset(void)
{
    ftq_dataset *d = NULL;
    ftq_dataset_params p = ftq_dataset_default_params();
    int rc = ftq_dataset_load(source_path("datasets/sst2_dev.tsv"), &p, &d);
    ftq_dataset_free(d);
    return rc;
}

static int op_quantize(void)
{
    enum { R = 40, C = 96 };
    static float w[R * C];
    for (int i = 0; i < R * C; i++)
        w[i] = (float)((i * 37) % 101 - 50) * 0.01f;
    ftq_quant_params p = ftq_quant_default_params();
    p.scheme = FTQ_QSCHEME_Q4A;
    p.search = 1;
    ftq_qmat m;
    int rc = ftq_qmat_quantize(&m, w, R, C, &p, 0);
    if (rc == FTQ_OK)
        ftq_qmat_free(&m);
    return rc;
}

static int op_perplexity(void)
{
    ftq_model *m = NULL;
    int rc = ftq_model_load(shared_path("models/stories260K"), &m);
    if (rc != FTQ_OK)
        return rc;
    int32_t toks[80];
    for (int i = 0; i < 80; i++)
        toks[i] = 3 + (i * 7) % 500;
    ftq_ppl_params p = ftq_ppl_default_params();
    p.n_ctx = 32;
    p.n_chunks = 2;
    p.ref = m;
    ftq_ppl_result r;
    rc = ftq_perplexity(m, toks, 80, &p, &r);
    ftq_model_free(m);
    return rc;
}

static int op_prune(void)
{
    ftq_prune_params p = ftq_prune_default_params();
    p.method = FTQ_PRUNE_NM;
    p.n = 2;
    p.m = 4;
    ftq_prune_report rep;
    int rc = ftq_prune_model(shared_path("golden/llama_tiny_random"), out_dir, &p, &rep);
    if (rc == FTQ_OK) { /* success means a complete report (1 is flagged by sweep_n) */
        for (size_t i = 0; i < rep.n_tensors; i++)
            if (!rep.tensors[i].name)
                rc = 1;
        ftq_prune_report_free(&rep);
    }
    return rc;
}

static int op_train(void)
{
    ftq_train_config c = ftq_train_default_config();
    c.model_dir = shared_path("golden/llama_tiny_random");
    c.train_source = shared_path("data/sst2/train.tsv");
    c.dev_source = shared_path("data/sst2/dev.tsv");
    c.dev_limit = 8;
    c.output_dir = out_dir;
    c.limit = 8;
    c.batch_size = 4;
    c.max_steps = 2;
    c.seq_len = 16;
    ftq_trainer *t = NULL;
    int rc = ftq_trainer_new(&c, &t);
    if (rc == FTQ_OK) {
        ftq_train_result r;
        rc = ftq_trainer_run(t, &r);
        if (rc == FTQ_OK && !r.output_dir) /* success means a complete result */
            rc = 1;
        ftq_train_result_free(&r);
    }
    ftq_trainer_free(t);
    return rc;
}

/* quantize (int4 g32, search), load and run the quantized model, dequantize to BF16 */
static int op_quant_model(void)
{
    ftq_quantize_params p = ftq_quantize_default_params();
    p.bits = 4;
    p.group = 32;
    p.search = 1;
    ftq_quantize_report rep;
    int rc = ftq_quantize_model(shared_path("golden/llama_tiny_random"), out_dir, &p, &rep);
    if (rc != FTQ_OK)
        return rc;
    ftq_quantize_report_free(&rep);
    ftq_model *m = NULL;
    ftq_session *s = NULL;
    if ((rc = ftq_model_load(out_dir, &m)) == FTQ_OK && (rc = ftq_session_new(m, 16, &s)) == FTQ_OK) {
        int32_t ids[5] = {1, 7, 9, 11, 13};
        float *logits = malloc(sizeof(float) * 5 * (size_t)ftq_model_get_config(m)->vocab_size);
        rc = logits ? ftq_session_eval(s, ids, 5, logits, 1) : ftq_set_error(FTQ_ENOMEM, "out of memory");
        free(logits);
    }
    ftq_session_free(s);
    ftq_model_free(m);
    if (rc == FTQ_OK)
        rc = ftq_dequantize_model(out_dir, out_dir2, FTQ_DTYPE_BF16);
    return rc;
}

/* a BERT encoder: quantize int4, load and classify on the quantized weights, Wanda-prune */
static int op_bert_quant(void)
{
    ftq_quantize_params p = ftq_quantize_default_params();
    p.bits = 4;
    ftq_quantize_report rep;
    int rc = ftq_quantize_model(shared_path("golden/bert_tiny_random"), out_dir, &p, &rep);
    if (rc != FTQ_OK)
        return rc;
    ftq_quantize_report_free(&rep);
    ftq_bert *m = NULL;
    ftq_bert_ws *ws = NULL;
    if ((rc = ftq_bert_load(out_dir, &m)) == FTQ_OK && (rc = ftq_bert_ws_new(m, 2, 8, 0, &ws)) == FTQ_OK) {
        int32_t ids[16] = {101, 1996, 2143, 2003, 1037, 12208, 102, 0, 101, 2009, 2003, 1037, 3185, 102, 0, 0};
        int lens[2] = {7, 6};
        float logits[6];
        rc = ftq_bert_forward(m, ws, ids, NULL, lens, 2, 8);
        if (rc == FTQ_OK)
            rc = ftq_bert_classify(m, ws, logits);
    }
    ftq_bert_ws_free(ws);
    ftq_bert_free(m);
    if (rc != FTQ_OK)
        return rc;
    int32_t calib[64];
    for (int i = 0; i < 64; i++)
        calib[i] = 1000 + i * 37;
    ftq_prune_params pp = ftq_prune_default_params();
    pp.method = FTQ_PRUNE_WANDA;
    pp.calib = calib;
    pp.n_calib = 64;
    pp.calib_ctx = 16;
    ftq_prune_report pr;
    rc = ftq_prune_model(shared_path("golden/bert_tiny_random"), out_dir2, &pp, &pr);
    if (rc == FTQ_OK)
        ftq_prune_report_free(&pr);
    return rc;
}

static void test_config(void) { sweep("config", op_config); }
static void test_model(void) { sweep("model", op_model); }
static void test_tokenizer(void) { sweep("tokenizer", op_tokenizer); }
static void test_dataset(void) { sweep("dataset", op_dataset); }
static void test_quantize(void) { sweep("quantize", op_quantize); }
static void test_perplexity(void) { sweep("perplexity", op_perplexity); }
static void test_prune(void)
{
    snprintf(out_dir, sizeof out_dir, "%s/out", test_tmpdir("alloc_prune"));
    sweep_n("prune", op_prune, 300);
}
static void test_quant_model(void)
{
    const char *d = test_tmpdir("alloc_quant_model");
    snprintf(out_dir, sizeof out_dir, "%s/q", d);
    snprintf(out_dir2, sizeof out_dir2, "%s/d", d);
    sweep_n("quant_model", op_quant_model, 120); /* ~0.1 s a run */
}
static void test_bert_quant(void)
{
    const char *d = test_tmpdir("alloc_bert_quant");
    snprintf(out_dir, sizeof out_dir, "%s/q", d);
    snprintf(out_dir2, sizeof out_dir2, "%s/p", d);
    sweep_n("bert_quant", op_bert_quant, 150);
}
static void test_train(void)
{
    snprintf(out_dir, sizeof out_dir, "%s/out", test_tmpdir("alloc_train"));
    sweep_n("train", op_train, 300);
}

void test_register_alloc(void)
{
    static const test_case cases[] = {
        {"config", test_config},
        {"model", test_model},
        {"tokenizer", test_tokenizer},
        {"tokenizer_json", test_tokenizer_json},
        {"dataset", test_dataset},
        {"quantize", test_quantize},
        {"perplexity", test_perplexity},
        {"prune", test_prune},
        {"quant_model", test_quant_model},
        {"bert_quant", test_bert_quant},
        {"train", test_train},
        {NULL, NULL},
    };
    test_add_suite("alloc", cases);
}
