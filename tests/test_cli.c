/* test_cli.c - the ftq binary end to end: goldens through the commands, --help, and the
 * bad-input contract (non-zero exit, exactly one line on stderr naming the problem). */
#include <stdlib.h>
#include <string.h>

#include "tests/test_util.h"

static void test_help(void)
{
    char *a = NULL, *b = NULL, *e1 = NULL, *e2 = NULL;
    CU_ASSERT_EQUAL(ftq_run("--help", &a, &e1), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(a, "perplexity"));
    CU_ASSERT_PTR_NOT_NULL(strstr(a, "generate"));
    free(a);
    free(e1);
    const char *cmds[] = {"info", "tokenize", "perplexity", "generate"};
    for (int i = 0; i < 4; i++) {
        char args[64];
        snprintf(args, sizeof args, "%s --help", cmds[i]);
        CU_ASSERT_EQUAL(ftq_run(args, &a, &e1), 0);
        snprintf(args, sizeof args, "help %s", cmds[i]);
        CU_ASSERT_EQUAL(ftq_run(args, &b, &e2), 0);
        CU_ASSERT_STRING_EQUAL(a, b);
        CU_ASSERT_PTR_NOT_NULL(strstr(a, "--json"));
        free(a);
        free(b);
        free(e1);
        free(e2);
    }
    char *out = NULL, *err = NULL;
    CU_ASSERT_EQUAL(ftq_run("perplexity --help", &out, &err), 0);
    const char *flags[] = {"--model", "--file", "--ctx", "--chunks", "--stride", "--json"};
    for (int i = 0; i < 6; i++)
        CU_ASSERT_PTR_NOT_NULL(strstr(out, flags[i]));
    free(out);
    free(err);
    CU_ASSERT_EQUAL(ftq_run("generate --help", &out, &err), 0);
    const char *gflags[] = {"--prompt", "--n-predict", "--temperature", "--top-k", "--top-p", "--seed"};
    for (int i = 0; i < 6; i++)
        CU_ASSERT_PTR_NOT_NULL(strstr(out, gflags[i]));
    free(out);
    free(err);
}

static void test_info(void)
{
    char args[16384];
    snprintf(args, sizeof args, "info -m '%s' --json", shared_path("models/stories260K"));
    cJSON *j = ftq_run_json(args);
    if (!j)
        return;
    ASSERT_INT_EQ(cJSON_GetObjectItem(j, "parameters")->valuedouble, 260032);
    ASSERT_INT_EQ(cJSON_GetObjectItem(j, "tensor_count")->valueint, 47);
    ASSERT_INT_EQ(cJSON_GetObjectItem(j, "file_bytes")->valuedouble, 1044984);
    const cJSON *cfg = cJSON_GetObjectItem(j, "config");
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(cfg, "model_type")->valuestring, "llama");
    ASSERT_INT_EQ(cJSON_GetObjectItem(cfg, "num_key_value_heads")->valueint, 4);
    ASSERT_INT_EQ(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "dtypes"), "F32")->valueint, 47);
    cJSON_Delete(j);
    /* a single file: tensors and metadata, no config */
    snprintf(args, sizeof args, "info -m '%s' --json", shared_path("golden/gpt2_tiny_random/model.safetensors"));
    j = ftq_run_json(args);
    if (!j)
        return;
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "kind")->valuestring, "safetensors");
    CU_ASSERT_PTR_NULL(cJSON_GetObjectItem(j, "config"));
    ASSERT_INT_EQ(cJSON_GetObjectItem(j, "tensor_count")->valueint, 28);
    cJSON_Delete(j);
    snprintf(args, sizeof args, "info -m '%s' --json --no-tensors", shared_path("golden/gpt2_tiny_random"));
    j = ftq_run_json(args);
    if (!j)
        return;
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "config"), "model_type")->valuestring, "gpt2");
    cJSON_Delete(j);
}

static void test_tokenize(void)
{
    char args[16384];
    snprintf(args, sizeof args, "tokenize -m '%s' -p 'Once upon a time' --json", shared_path("models/stories260K"));
    cJSON *j = ftq_run_json(args);
    if (!j)
        return;
    size_t n = 0;
    int32_t *ids = json_ints(cJSON_GetObjectItem(j, "ids"), &n);
    const int32_t want[] = {1, 403, 407, 261, 378};
    ASSERT_INT_EQ(n, 5);
    ASSERT_INT_EQ(cJSON_GetObjectItem(j, "count")->valueint, 5);
    for (size_t i = 0; i < n && i < 5; i++)
        ASSERT_INT_EQ(ids[i], want[i]);
    free(ids);
    cJSON_Delete(j);
    snprintf(args, sizeof args, "tokenize -m '%s' -p 'Hello, my dog is cute' --json", shared_path("tokenizers/gpt2"));
    j = ftq_run_json(args);
    if (!j)
        return;
    ids = json_ints(cJSON_GetObjectItem(j, "ids"), &n);
    const int32_t want2[] = {15496, 11, 616, 3290, 318, 13779};
    ASSERT_INT_EQ(n, 6);
    for (size_t i = 0; i < n && i < 6; i++)
        ASSERT_INT_EQ(ids[i], want2[i]);
    free(ids);
    cJSON_Delete(j);
    /* the whole sample file with --no-bos: the golden token count */
    snprintf(args, sizeof args, "tokenize -m '%s' -f '%s' --no-bos --json", shared_path("models/stories260K"),
             shared_path("data/tinystories/tinystories_sample.txt"));
    j = ftq_run_json(args);
    if (!j)
        return;
    ASSERT_INT_EQ(cJSON_GetObjectItem(j, "count")->valueint, 100707);
    cJSON_Delete(j);
}

static void test_perplexity(void)
{
    cJSON *g = load_json(shared_path("golden/stories260K_ppl.json"));
    if (!g)
        return;
    const cJSON *e = cJSON_GetObjectItem(cJSON_GetObjectItem(g, "protocols"), "llamacpp_ctx128");
    size_t n = 0;
    double *running = json_doubles(cJSON_GetObjectItem(e, "running_ppl_first_8_chunks"), &n);
    char args[16384];
    snprintf(args, sizeof args, "perplexity -m '%s' -f '%s' -c 128 --chunks 8 --json",
             shared_path("models/stories260K"), shared_path("data/tinystories/tinystories_sample.txt"));
    cJSON *j = ftq_run_json(args);
    if (j && n == 8) {
        ASSERT_NEAR(cJSON_GetObjectItem(j, "ppl")->valuedouble / running[7] - 1, 0, 2e-4);
        ASSERT_INT_EQ(cJSON_GetObjectItem(j, "chunks")->valueint, 8);
        ASSERT_INT_EQ(cJSON_GetObjectItem(j, "tokens_scored")->valueint, 8 * 63);
        ASSERT_INT_EQ(cJSON_GetObjectItem(j, "ctx")->valueint, 128);
        CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "protocol")->valuestring, "llamacpp");
        CU_ASSERT(cJSON_GetObjectItem(j, "ppl_stderr")->valuedouble > 0);
        CU_ASSERT(cJSON_GetObjectItem(j, "tokens_per_second")->valuedouble > 0);
        CU_ASSERT(cJSON_GetObjectItem(j, "nll")->valuedouble > 0);
    }
    cJSON_Delete(j);
    free(running);
    /* --stride selects HF's sliding window */
    snprintf(args, sizeof args, "perplexity -m '%s' -f '%s' -c 128 --stride 64 --chunks 3 --json",
             shared_path("models/stories260K"), shared_path("data/tinystories/tinystories_sample.txt"));
    j = ftq_run_json(args);
    if (j) {
        CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "protocol")->valuestring, "stride");
        ASSERT_INT_EQ(cJSON_GetObjectItem(j, "tokens_scored")->valueint, 127 + 64 + 64);
    }
    cJSON_Delete(j);
    cJSON_Delete(g);
}

static void test_generate(void)
{
    cJSON *g = load_json(shared_path("golden/stories260K_logits.json"));
    if (!g)
        return;
    size_t n = 0, m = 0;
    int32_t *want = json_ints(cJSON_GetObjectItem(cJSON_GetObjectItem(g, "greedy"), "new_ids"), &n);
    char args[16384];
    snprintf(args, sizeof args, "generate -m '%s' -p 'Once upon a time' -n 64 --temperature 0 --json",
             shared_path("models/stories260K"));
    cJSON *j = ftq_run_json(args);
    if (j) {
        int32_t *got = json_ints(cJSON_GetObjectItem(j, "new_ids"), &m);
        ASSERT_INT_EQ(m, n);
        for (size_t i = 0; i < n && i < m; i++)
            ASSERT_INT_EQ(got[i], want[i]);
        const char *text = cJSON_GetObjectItem(cJSON_GetObjectItem(g, "greedy"), "text")->valuestring;
        CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "text")->valuestring, text);
        CU_ASSERT(cJSON_GetObjectItem(j, "tokens_per_second")->valuedouble > 0);
        free(got);
    }
    cJSON_Delete(j);
    free(want);
    cJSON_Delete(g);
    /* same seed -> same ids; another seed -> different ids */
    char *o1 = NULL, *o2 = NULL, *o3 = NULL, *e = NULL;
    snprintf(args, sizeof args, "generate -m '%s' -p 'Lily' -n 40 --temperature 1 --seed 5",
             shared_path("models/stories260K"));
    CU_ASSERT_EQUAL(ftq_run(args, &o1, &e), 0);
    free(e);
    CU_ASSERT_EQUAL(ftq_run(args, &o2, &e), 0);
    free(e);
    snprintf(args, sizeof args, "generate -m '%s' -p 'Lily' -n 40 --temperature 1 --seed 6",
             shared_path("models/stories260K"));
    CU_ASSERT_EQUAL(ftq_run(args, &o3, &e), 0);
    free(e);
    CU_ASSERT_STRING_EQUAL(o1, o2);
    CU_ASSERT(strcmp(o1, o3) != 0);
    free(o1);
    free(o2);
    free(o3);
}

static void test_bad_input(void)
{
    char args[16384];
    const char *st = shared_path("models/stories260K");
    ftq_expect_error("frobnicate", "unknown command 'frobnicate'", NULL);
    ftq_expect_error("perplexity --bogus", "unknown option '--bogus'", NULL);
    snprintf(args, sizeof args, "perplexity -m '%s' -f x -c abc", st);
    ftq_expect_error(args, "--ctx expects an integer, got 'abc'", NULL);
    snprintf(args, sizeof args, "perplexity -m '%s' -c 1 -f x", st);
    ftq_expect_error(args, "--ctx must be in", NULL);
    snprintf(args, sizeof args, "perplexity -m '%s'", st);
    ftq_expect_error(args, "missing required option --file", NULL);
    snprintf(args, sizeof args, "perplexity -m '%s' -f /nonexistent/text.txt", st);
    ftq_expect_error(args, "'/nonexistent/text.txt'", NULL);
    snprintf(args, sizeof args, "perplexity -m '%s' -f '%s' -c 4096", st,
             shared_path("data/tinystories/tinystories_sample.txt"));
    ftq_expect_error(args, "exceeds the model's 512 positions", NULL);
    snprintf(args, sizeof args, "perplexity -m '%s' -f '%s' --protocol fancy", st,
             shared_path("data/tinystories/tinystories_sample.txt"));
    ftq_expect_error(args, "unknown --protocol 'fancy'", NULL);
    ftq_expect_error("info -m /nonexistent/model", "/nonexistent/model", NULL);
    snprintf(args, sizeof args, "generate -m '%s' -p hi --top-p 2", st);
    ftq_expect_error(args, "--top-p must be in", NULL);
    snprintf(args, sizeof args, "generate -m '%s' -p hi --seed -3", st);
    ftq_expect_error(args, "--seed expects a non-negative integer", NULL);
    snprintf(args, sizeof args, "tokenize -m '%s'", st);
    ftq_expect_error(args, "exactly one of -f FILE or -p TEXT", NULL);
    /* a model directory whose tokenizer files are missing */
    char dir[4096]; /* test_tmpdir's buffer is reused by ftq_run */
    snprintf(dir, sizeof dir, "%s", test_tmpdir("cli_notok"));
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "cp '%s/config.json' '%s/model.safetensors' '%s/'", st, st, dir);
    CU_ASSERT_EQUAL(system(cmd), 0);
    snprintf(args, sizeof args, "generate -m '%s' -p hi", dir);
    ftq_expect_error(args, "tokenizer", NULL);
    /* a truncated safetensors file */
    snprintf(cmd, sizeof cmd, "head -c 3000 '%s/model.safetensors' > '%s/model.safetensors'", st, dir);
    CU_ASSERT_EQUAL(system(cmd), 0);
    snprintf(args, sizeof args, "info -m '%s'", dir);
    ftq_expect_error(args, "model.safetensors", NULL);
}

void test_register_cli(void)
{
    static const test_case cases[] = {
        {"help", test_help},
        {"info", test_info},
        {"tokenize", test_tokenize},
        {"perplexity", test_perplexity},
        {"generate", test_generate},
        {"bad_input", test_bad_input},
        {NULL, NULL},
    };
    test_add_suite("cli", cases);
}
