/* test_bert.c - the BERT encoder against HF transformers: all-MiniLM-L6-v2's
 * last_hidden_state (1e-4), pooler output and sentence-transformers embedding (1e-5) for
 * every golden sentence, the sentence pair with token types, the right-padded batch equal
 * to one-at-a-time; bert_tiny_random's classifier logits ("bert." prefix); the bidirectional
 * masked attention kernel against its double reference; and refusal of bad checkpoints. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attention_enc.h"
#include "model/bert_internal.h"
#include "tests/test_util.h"

static const char *MINILM = "models/all-MiniLM-L6-v2";

static double max_diff_json(const float *got, const cJSON *rows, int C)
{
    double mx = 0;
    int r = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, rows)
    {
        if (cJSON_IsNumber(row)) { /* a flat vector */
            mx = fmax(mx, fabs(got[r++] - row->valuedouble));
            continue;
        }
        int d = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, row) mx = fmax(mx, fabs(got[(size_t)r * C + d++] - x->valuedouble));
        r++;
    }
    return mx;
}

static ftq_bert *load_minilm(void)
{
    ftq_bert *m = NULL;
    int rc = ftq_bert_load(shared_path(MINILM), &m);
    if (rc)
        fprintf(stderr, "\n  %s\n", ftq_last_error());
    CU_ASSERT_EQUAL_FATAL(rc, FTQ_OK);
    return m;
}

static void test_minilm_config(void)
{
    ftq_bert *m = load_minilm();
    const ftq_bert_config *c = ftq_bert_get_config(m);
    ASSERT_INT_EQ(c->hidden, 384);
    ASSERT_INT_EQ(c->n_layers, 6);
    ASSERT_INT_EQ(c->n_heads, 12);
    ASSERT_INT_EQ(c->ffn, 1536);
    ASSERT_INT_EQ(c->has_pooler, 1);
    ASSERT_INT_EQ(c->num_labels, 0);
    CU_ASSERT_STRING_EQUAL(c->prefix, "");
    ASSERT_INT_EQ(ftq_bert_param_count(m), 22713216); /* sentence-transformers' count */
    ftq_pool pool;
    int norm, max_seq;
    ASSERT_OK(ftq_bert_st_pooling(shared_path(MINILM), &pool, &norm, &max_seq));
    ASSERT_INT_EQ(max_seq, 256);
    CU_ASSERT_EQUAL(pool, FTQ_POOL_MEAN);
    CU_ASSERT_EQUAL(norm, 1);
    ftq_bert_free(m);
}

/* Each golden sentence alone: ids from the tokenizer, hidden states, pooler, embedding. */
static void test_minilm_single(void)
{
    cJSON *j = load_json(shared_path("golden/minilm/outputs.json"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    ftq_bert *m = load_minilm();
    ftq_tokenizer *tk = NULL;
    ASSERT_OK(ftq_tokenizer_load(shared_path(MINILM), &tk));
    ftq_bert_ws *ws = NULL;
    ASSERT_OK(ftq_bert_ws_new(m, 1, 128, 0, &ws));
    float pooled[384], emb[384];
    double worst_h = 0, worst_p = 0, worst_e = 0;
    const cJSON *s;
    int n = 0;
    cJSON_ArrayForEach(s, cJSON_GetObjectItem(j, "single"))
    {
        const char *text = cJSON_GetObjectItem(s, "text")->valuestring;
        size_t ng = 0, nt = 0;
        int32_t *want = json_ints(cJSON_GetObjectItem(s, "ids"), &ng), *ids = NULL;
        ASSERT_OK(ftq_tokenizer_encode(tk, text, strlen(text), 1, &ids, &nt));
        CU_ASSERT(nt == ng && memcmp(ids, want, nt * sizeof *ids) == 0);
        int len = (int)nt;
        ASSERT_OK(ftq_bert_forward(m, ws, ids, NULL, &len, 1, len));
        worst_h = fmax(worst_h, max_diff_json(ftq_bert_hidden(m, ws), cJSON_GetObjectItem(s, "last_hidden_state"), 384));
        ASSERT_OK(ftq_bert_pool(m, ws, FTQ_POOL_POOLER, 0, pooled));
        worst_p = fmax(worst_p, max_diff_json(pooled, cJSON_GetObjectItem(s, "pooler_output"), 384));
        ASSERT_OK(ftq_bert_pool(m, ws, FTQ_POOL_MEAN, 1, emb));
        worst_e = fmax(worst_e, max_diff_json(emb, cJSON_GetObjectItem(s, "embedding"), 384));
        free(want);
        free(ids);
        n++;
    }
    ASSERT_INT_EQ(n, 5);
    printf("\n    minilm max |diff|: hidden %.3g, pooler %.3g, embedding %.3g ", worst_h, worst_p, worst_e);
    CU_ASSERT(worst_h <= 1e-4);
    CU_ASSERT(worst_p <= 1e-5);
    CU_ASSERT(worst_e <= 1e-5);
    ftq_bert_ws_free(ws);
    ftq_tokenizer_free(tk);
    ftq_bert_free(m);
    cJSON_Delete(j);
}

static void test_minilm_pair(void)
{
    cJSON *j = load_json(shared_path("golden/minilm/outputs.json"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    const cJSON *p = cJSON_GetObjectItem(j, "pair");
    ftq_bert *m = load_minilm();
    ftq_bert_ws *ws = NULL;
    size_t n = 0, nt = 0;
    int32_t *ids = json_ints(cJSON_GetObjectItem(p, "ids"), &n), *types = json_ints(cJSON_GetObjectItem(p, "token_type_ids"), &nt);
    int len = (int)n;
    ASSERT_OK(ftq_bert_ws_new(m, 1, len, 0, &ws));
    ASSERT_OK(ftq_bert_forward(m, ws, ids, types, &len, 1, len));
    double dh = max_diff_json(ftq_bert_hidden(m, ws), cJSON_GetObjectItem(p, "last_hidden_state"), 384);
    float pooled[384];
    ASSERT_OK(ftq_bert_pool(m, ws, FTQ_POOL_POOLER, 0, pooled));
    double dp = max_diff_json(pooled, cJSON_GetObjectItem(p, "pooler_output"), 384);
    printf("\n    pair max |diff|: hidden %.3g, pooler %.3g ", dh, dp);
    CU_ASSERT(dh <= 1e-4);
    CU_ASSERT(dp <= 1e-5);
    free(ids);
    free(types);
    ftq_bert_ws_free(ws);
    ftq_bert_free(m);
    cJSON_Delete(j);
}

/* The 5 sentences right-padded in one batch: the golden embeddings, and (to 1e-5) the same
 * as each sentence alone. */
static void test_minilm_batch(void)
{
    cJSON *j = load_json(shared_path("golden/minilm/outputs.json"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    const cJSON *bt = cJSON_GetObjectItem(j, "batch");
    ftq_bert *m = load_minilm();
    int B = cJSON_GetArraySize(cJSON_GetObjectItem(bt, "ids"));
    int T = cJSON_GetArraySize(cJSON_GetArrayItem(cJSON_GetObjectItem(bt, "ids"), 0));
    CU_ASSERT_FATAL(B == 5 && T > 0 && T <= 128);
    int32_t *ids = calloc((size_t)B * T, sizeof *ids);
    int lens[5];
    for (int b = 0; b < B; b++) {
        size_t n = 0, nm = 0;
        int32_t *row = json_ints(cJSON_GetArrayItem(cJSON_GetObjectItem(bt, "ids"), b), &n);
        int32_t *mask = json_ints(cJSON_GetArrayItem(cJSON_GetObjectItem(bt, "attention_mask"), b), &nm);
        memcpy(ids + (size_t)b * T, row, n * sizeof *row);
        lens[b] = 0;
        for (size_t i = 0; i < nm; i++)
            lens[b] += mask[i];
        free(row);
        free(mask);
    }
    ftq_bert_ws *ws = NULL, *one = NULL;
    ASSERT_OK(ftq_bert_ws_new(m, B, T, 0, &ws));
    ASSERT_OK(ftq_bert_ws_new(m, 1, T, 0, &one));
    float *emb = malloc(sizeof(float) * (size_t)B * 384), single[384];
    ASSERT_OK(ftq_bert_forward(m, ws, ids, NULL, lens, B, T));
    ASSERT_OK(ftq_bert_pool(m, ws, FTQ_POOL_MEAN, 1, emb));
    double dg = max_diff_json(emb, cJSON_GetObjectItem(bt, "embeddings"), 384), ds = 0;
    for (int b = 0; b < B; b++) {
        ASSERT_OK(ftq_bert_forward(m, one, ids + (size_t)b * T, NULL, &lens[b], 1, lens[b]));
        ASSERT_OK(ftq_bert_pool(m, one, FTQ_POOL_MEAN, 1, single));
        for (int d = 0; d < 384; d++)
            ds = fmax(ds, fabs(single[d] - emb[(size_t)b * 384 + d]));
    }
    printf("\n    batch max |diff|: vs golden %.3g, vs one at a time %.3g ", dg, ds);
    CU_ASSERT(dg <= 1e-5);
    CU_ASSERT(ds <= 1e-5);
    free(emb);
    free(ids);
    ftq_bert_ws_free(ws);
    ftq_bert_ws_free(one);
    ftq_bert_free(m);
    cJSON_Delete(j);
}

/* bert_tiny_random: BertForSequenceClassification with the "bert." prefix, 3 labels. */
static void test_tiny_classifier_logits(void)
{
    cJSON *j = load_json(shared_path("golden/bert_tiny_random/golden.json"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    ftq_bert *m = NULL;
    ASSERT_OK(ftq_bert_load(shared_path("golden/bert_tiny_random"), &m));
    const ftq_bert_config *c = ftq_bert_get_config(m);
    CU_ASSERT_STRING_EQUAL(c->prefix, "bert.");
    ASSERT_INT_EQ(c->num_labels, 3);
    const cJSON *rows = cJSON_GetObjectItem(j, "input_ids");
    int B = cJSON_GetArraySize(rows), T = cJSON_GetArraySize(cJSON_GetArrayItem(rows, 0));
    int32_t ids[3 * 13];
    int lens[3];
    CU_ASSERT_FATAL(B == 3 && T == 13);
    for (int b = 0; b < B; b++) {
        size_t n = 0, nm = 0;
        int32_t *r = json_ints(cJSON_GetArrayItem(rows, b), &n);
        int32_t *mk = json_ints(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "attention_mask"), b), &nm);
        memcpy(ids + b * T, r, sizeof *r * n);
        lens[b] = 0;
        for (size_t i = 0; i < nm; i++)
            lens[b] += mk[i];
        free(r);
        free(mk);
    }
    ftq_bert_ws *ws = NULL;
    ASSERT_OK(ftq_bert_ws_new(m, B, T, 0, &ws));
    ASSERT_OK(ftq_bert_forward(m, ws, ids, NULL, lens, B, T));
    float logits[9];
    ASSERT_OK(ftq_bert_classify(m, ws, logits));
    double d = max_diff_json(logits, cJSON_GetObjectItem(j, "logits"), 3);
    CU_ASSERT(d <= 2e-6); /* golden logits carry 6 decimals */
    if (d > 2e-6)
        fprintf(stderr, "\n  tiny logits max |diff| %.3g\n", d);
    ftq_bert_ws_free(ws);
    ftq_bert_free(m);
    cJSON_Delete(j);
}

/* The attention kernel against its double-precision reference, with padding. */
static void test_attention_kernel(void)
{
    enum { B = 3, T = 7, H = 3, HD = 5, LD = H * HD };
    int lens[B] = {7, 3, 1};
    float q[B * T * LD], k[B * T * LD], v[B * T * LD], o1[B * T * LD], o2[B * T * LD];
    float p1[B * H * T * T], p2[B * H * T * T];
    uint32_t s = 12345;
    for (int i = 0; i < B * T * LD; i++) {
        s = s * 1664525u + 1013904223u;
        q[i] = (float)((s >> 8) & 0xffff) / 32768.0f - 1.0f;
        k[i] = (float)((s >> 4) & 0xffff) / 32768.0f - 1.0f;
        v[i] = (float)((s >> 12) & 0xffff) / 32768.0f - 1.0f;
    }
    ftq_attention_enc_forward(o1, p1, q, k, v, LD, lens, B, T, H, HD);
    ftq_attention_enc_forward_ref(o2, p2, q, k, v, LD, lens, B, T, H, HD);
    double d = 0;
    for (int i = 0; i < B * T * LD; i++)
        d = fmax(d, fabs(o1[i] - o2[i]));
    for (int i = 0; i < B * H * T * T; i++)
        d = fmax(d, fabs(p1[i] - p2[i]));
    CU_ASSERT(d <= 1e-5);
    float o3[B * T * LD]; /* inference path: probabilities not kept, same output */
    ftq_attention_enc_forward(o3, NULL, q, k, v, LD, lens, B, T, H, HD);
    CU_ASSERT(memcmp(o1, o3, sizeof o1) == 0);
    /* masked keys get exactly zero probability */
    CU_ASSERT(p1[((1 * H + 0) * T + 0) * T + 3] == 0.0f && p1[((2 * H + 2) * T + 6) * T + 1] == 0.0f);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
}

static void test_bad_checkpoints(void)
{
    const char *dir = test_tmpdir("bert_bad");
    ftq_bert *m = NULL;
    /* the tiny model's weights under a config that wants 3 layers */
    char *cfg = NULL;
    size_t n = 0;
    ASSERT_OK(ftq_read_file(shared_path("golden/bert_tiny_random/config.json"), &cfg, &n));
    char *p = strstr(cfg, "\"num_hidden_layers\": 2");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    p[21] = '3';
    write_text(dir, "config.json", cfg);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s/'", shared_path("golden/bert_tiny_random/model.safetensors"), dir);
    CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
    CU_ASSERT_EQUAL(ftq_bert_load(dir, &m), FTQ_ENOTFOUND);
    CU_ASSERT(strstr(ftq_last_error(), "bert.encoder.layer.2.attention.self.query.weight") != NULL);
    CU_ASSERT_PTR_NULL(m);
    /* one layer: layer 1's tensors are unexpected */
    p[21] = '1';
    write_text(dir, "config.json", cfg);
    CU_ASSERT_EQUAL(ftq_bert_load(dir, &m), FTQ_EFORMAT);
    CU_ASSERT(strstr(ftq_last_error(), "unexpected tensor 'bert.encoder.layer.1.") != NULL);
    /* a wrong hidden size and an unsupported activation */
    p[21] = '2';
    char *h = strstr(cfg, "\"hidden_size\": 32");
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    memcpy(h + 15, "64", 2);
    write_text(dir, "config.json", cfg);
    CU_ASSERT_EQUAL(ftq_bert_load(dir, &m), FTQ_EFORMAT);
    CU_ASSERT(strstr(ftq_last_error(), "has shape") != NULL);
    memcpy(h + 15, "32", 2);
    char *a = strstr(cfg, "\"gelu\"");
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    memcpy(a, "\"relu\"", 6);
    write_text(dir, "config.json", cfg);
    CU_ASSERT_EQUAL(ftq_bert_load(dir, &m), FTQ_EUNSUPPORTED);
    CU_ASSERT(strstr(ftq_last_error(), "hidden_act") != NULL);
    free(cfg);
}

/* `ftq embed -d FILE --json` on the golden sentences (one per line), in input order. */
static void test_cli_embed(void)
{
    cJSON *j = load_json(shared_path("golden/minilm/outputs.json"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    const char *dir = test_tmpdir("bert_embed");
    char path[1024], args[4096];
    snprintf(path, sizeof path, "%s/texts.txt", dir);
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    const cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItem(j, "single")) fprintf(f, "%s\n", cJSON_GetObjectItem(s, "text")->valuestring);
    fclose(f);
    snprintf(args, sizeof args, "embed -m '%s' -d '%s' --batch 2 --json", shared_path(MINILM), path);
    cJSON *out = ftq_run_json(args);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    ASSERT_INT_EQ(cJSON_GetObjectItem(out, "dim")->valueint, 384);
    const cJSON *embs = cJSON_GetObjectItem(out, "embeddings");
    ASSERT_INT_EQ(cJSON_GetArraySize(embs), 5);
    double worst = 0;
    int i = 0;
    cJSON_ArrayForEach(s, cJSON_GetObjectItem(j, "single"))
    {
        size_t n = 0;
        double *got = json_doubles(cJSON_GetArrayItem(embs, i++), &n);
        CU_ASSERT_FATAL(n == 384);
        float g[384];
        for (int d = 0; d < 384; d++)
            g[d] = (float)got[d];
        worst = fmax(worst, max_diff_json(g, cJSON_GetObjectItem(s, "embedding"), 384));
        free(got);
    }
    CU_ASSERT(worst <= 1e-5);
    cJSON_Delete(out);
    snprintf(args, sizeof args, "embed -m '%s' -d '%s' --similarity --json", shared_path(MINILM), path);
    out = ftq_run_json(args);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    const cJSON *m = cJSON_GetObjectItem(out, "similarity");
    ASSERT_INT_EQ(cJSON_GetArraySize(m), 5);
    ASSERT_NEAR(cJSON_GetArrayItem(cJSON_GetArrayItem(m, 2), 2)->valuedouble, 1.0, 1e-5);
    cJSON_Delete(out);
    snprintf(args, sizeof args, "embed -m '%s' -p hello", shared_path("models/stories260K"));
    ftq_expect_error(args, "not an encoder", NULL);
    cJSON_Delete(j);
}

static void test_cli_info_tokenize(void)
{
    char args[2048];
    snprintf(args, sizeof args, "info -m '%s' --json --no-tensors", shared_path(MINILM));
    cJSON *j = ftq_run_json(args);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "architecture")->valuestring, "BertModel");
    ASSERT_INT_EQ((long long)cJSON_GetObjectItem(j, "parameters")->valuedouble, 22713216);
    cJSON_Delete(j);
    snprintf(args, sizeof args, "info -m '%s' --json", shared_path("golden/bert_tiny_random"));
    j = ftq_run_json(args);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    ASSERT_INT_EQ(cJSON_GetObjectItem(j, "num_labels")->valueint, 3);
    ASSERT_INT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(j, "tensors")), 41);
    cJSON_Delete(j);
    /* ftq tokenize adds [CLS]/[SEP] as HF does, --no-special leaves them out */
    snprintf(args, sizeof args, "tokenize -m '%s' -p 'Hello, world!' --json", shared_path(MINILM));
    j = ftq_run_json(args);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    ASSERT_INT_EQ(cJSON_GetObjectItem(j, "count")->valueint, 6);
    ASSERT_INT_EQ(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "ids"), 0)->valueint, 101);
    cJSON_Delete(j);
    snprintf(args, sizeof args, "tokenize -m '%s' -p 'Hello, world!' --no-special --json", shared_path(MINILM));
    j = ftq_run_json(args);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    ASSERT_INT_EQ(cJSON_GetObjectItem(j, "count")->valueint, 4);
    cJSON_Delete(j);
}

void test_register_bert(void)
{
    static const test_case cases[] = {{"minilm_config", test_minilm_config},
                                      {"minilm_single", test_minilm_single},
                                      {"minilm_pair", test_minilm_pair},
                                      {"minilm_batch", test_minilm_batch},
                                      {"tiny_classifier_logits", test_tiny_classifier_logits},
                                      {"attention_kernel", test_attention_kernel},
                                      {"bad_checkpoints", test_bad_checkpoints},
                                      {"cli_embed", test_cli_embed},
                                      {"cli_info_tokenize", test_cli_info_tokenize},
                                      {NULL, NULL}};
    test_add_suite("bert", cases);
}
