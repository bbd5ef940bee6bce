/* test_gguf_export.c - `ftq export`: round trips through GGUF keep the logits bit for bit,
 * and ftq int8 / int4 matrices land in Q8_0 / Q4_0 with the very codes and f16 scales the
 * quantized checkpoint stores (checked against the checkpoint's own parts, packed here
 * independently of model/gguf_export.c). Fixture: datasets/stories260K (llama, GQA 8/4,
 * tied embeddings, 64 wide, FFN 172 so down_proj falls back to F16 / F32). */
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

#define ST "datasets/stories260K"

static const int32_t IDS[] = {1, 403, 407, 261, 378, 260, 287, 306, 259, 412, 266, 373, 318, 289, 280, 46};
#define NIDS ((int)(sizeof IDS / sizeof IDS[0]))

static cJSON *export_to(const char *src, const char *out, const char *type)
{
    char args[2400];
    snprintf(args, sizeof args, "export -m '%s' -o '%s' --type %s --json", src, out, type);
    return ftq_run_json(args);
}

static int json_int(const cJSON *j, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsNumber(v) ? v->valueint : -1;
}

/* All NIDS rows of logits of the model at path (malloc'd), *V its vocabulary. */
static float *logits_of(const char *path, int *V)
{
    ftq_model *m = test_load_model(path);
    if (!m)
        return NULL;
    *V = ftq_model_get_config(m)->vocab_size;
    float *lg = malloc(sizeof(float) * (size_t)NIDS * (size_t)*V);
    ftq_session *s = NULL;
    ASSERT_OK(ftq_session_new(m, 64, &s));
    ASSERT_OK(ftq_session_eval(s, IDS, NIDS, lg, 1));
    ftq_session_free(s);
    ftq_model_free(m);
    return lg;
}

static void expect_same_logits(const char *a, const char *b)
{
    int va = 0, vb = 0;
    float *la = logits_of(a, &va), *lb = logits_of(b, &vb);
    CU_ASSERT_FATAL(la && lb);
    ASSERT_INT_EQ(vb, va);
    size_t n = (size_t)NIDS * (size_t)va, diff = 0;
    for (size_t i = 0; i < n; i++)
        diff += memcmp(&la[i], &lb[i], 4) != 0;
    if (diff)
        fprintf(stderr, "\n  %zu of %zu logits differ between '%s' and '%s'\n", diff, n, a, b);
    CU_ASSERT_EQUAL(diff, 0);
    free(la);
    free(lb);
}

/* GGUF -> ftq -> GGUF -> ftq: the q8_0 file ftq wrote, read back and written again (f32, and
 * q8_0 again), gives the same logits bit for bit; and HF -> f32 GGUF -> ftq equals the HF
 * directory itself. Re-quantizing a dequantized Q8_0 tensor is a fixed point: the second
 * q8_0 file holds the first one's bytes. */
static void test_roundtrip_logits(void)
{
    const char *tmp = test_tmpdir("gguf_export_rt");
    char a[1024], b[1024], c[1024], f[1024];
    snprintf(a, sizeof a, "%s/a_q8.gguf", tmp);
    snprintf(b, sizeof b, "%s/b_f32.gguf", tmp);
    snprintf(c, sizeof c, "%s/c_q8.gguf", tmp);
    snprintf(f, sizeof f, "%s/hf_f32.gguf", tmp);
    cJSON *j = export_to(source_path(ST), f, "f32");
    cJSON_Delete(j);
    expect_same_logits(source_path(ST), f);
    j = export_to(source_path(ST), a, "q8_0");
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    cJSON_Delete(j);
    j = export_to(a, b, "f32");
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    cJSON_Delete(j);
    expect_same_logits(a, b);
    j = export_to(b, c, "q8_0");
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    cJSON_Delete(j);
    expect_same_logits(a, c);
    ftq_gguf *ga = NULL, *gc = NULL;
    ASSERT_OK(ftq_gguf_open(a, &ga));
    ASSERT_OK(ftq_gguf_open(c, &gc));
    ASSERT_INT_EQ(ftq_gguf_tensor_count(gc), ftq_gguf_tensor_count(ga));
    int same = 0;
    for (size_t i = 0; i < ftq_gguf_tensor_count(ga); i++) {
        const ftq_gguf_tensor *ta = ftq_gguf_tensor_at(ga, i), *tc = ftq_gguf_find_tensor(gc, ta->name);
        same += tc && tc->type == ta->type && tc->nbytes == ta->nbytes && memcmp(tc->data, ta->data, ta->nbytes) == 0;
    }
    ASSERT_INT_EQ(same, (int)ftq_gguf_tensor_count(ga));
    ftq_gguf_close(gc);

    /* with --keep-quant the Q8_0 (and F16) matrices are never expanded: the keep file is the
     * source again, tensor for tensor, byte for byte */
    char args[2400];
    snprintf(args, sizeof args, "export -m '%s' -o '%s' --type keep --keep-quant --json", a, c);
    j = ftq_run_json(args);
    CU_ASSERT(j && json_int(j, "copied") == 31); /* 30 + token_embd; down_proj F16 as it was */
    cJSON_Delete(j);
    ASSERT_OK(ftq_gguf_open(c, &gc));
    same = 0;
    for (size_t i = 0; i < ftq_gguf_tensor_count(ga); i++) {
        const ftq_gguf_tensor *ta = ftq_gguf_tensor_at(ga, i), *tc = ftq_gguf_find_tensor(gc, ta->name);
        same += tc && tc->type == ta->type && tc->nbytes == ta->nbytes && memcmp(tc->data, ta->data, ta->nbytes) == 0;
    }
    ASSERT_INT_EQ(same, (int)ftq_gguf_tensor_count(ga));
    ftq_gguf_close(ga);
    ftq_gguf_close(gc);
}

/* Tensors of two checkpoints: same names and shapes, f32 values equal bit for bit. */
static void expect_same_values(const ftq_checkpoint *a, const ftq_checkpoint *b)
{
    ASSERT_INT_EQ(ftq_checkpoint_count(b), ftq_checkpoint_count(a));
    int bad = 0;
    for (size_t i = 0; i < ftq_checkpoint_count(a); i++) {
        const ftq_tensor *ta = ftq_checkpoint_tensor(a, i), *tb = ftq_checkpoint_find(b, ta->name);
        if (!tb || ftq_tensor_numel(tb) != ftq_tensor_numel(ta)) {
            if (bad++ < 3)
                fprintf(stderr, "\n  tensor '%s' missing or reshaped\n", ta->name);
            continue;
        }
        size_t n = (size_t)ftq_tensor_numel(ta);
        float *fa = malloc(4 * n), *fb = malloc(4 * n);
        ftq_tensor_to_f32(ta, fa);
        ftq_tensor_to_f32(tb, fb);
        if (memcmp(fa, fb, 4 * n) != 0 && bad++ < 3)
            fprintf(stderr, "\n  tensor '%s' differs\n", ta->name);
        free(fa);
        free(fb);
    }
    CU_ASSERT_EQUAL(bad, 0);
}

/* The Q8_0 / Q4_0 bytes of one row-block of a q8 / q4 g32 checkpoint tensor, packed from its
 * .qweight / .qscale parts as ggml lays the blocks out. */
static void pack_expected(const ftq_checkpoint *q, const char *base, int q4, int to_q8, unsigned char *out, int rows,
                          int cols)
{
    char name[256];
    snprintf(name, sizeof name, "%s.qweight", base);
    const ftq_tensor *qw = ftq_checkpoint_find(q, name);
    snprintf(name, sizeof name, "%s.qscale", base);
    const ftq_tensor *qs = ftq_checkpoint_find(q, name);
    CU_ASSERT_FATAL(qw && qs);
    const unsigned char *w = qw->data, *s = qs->data;
    size_t rb = q4 ? (size_t)cols / 2 : (size_t)cols, bs = to_q8 ? 34 : 18;
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < cols / 32; b++) {
            unsigned char *y = out + ((size_t)r * (size_t)(cols / 32) + (size_t)b) * bs;
            memcpy(y, s + 2 * ((size_t)r * (size_t)(cols / 32) + (size_t)b), 2);
            int code[32];
            for (int k = 0; k < 32; k++) {
                size_t at = (size_t)b * 32 + (size_t)k;
                code[k] = q4 ? ((w[(size_t)r * rb + at / 2] >> (4 * (at % 2))) & 15) - 8 : (int8_t)w[(size_t)r * rb + at];
            }
            for (int k = 0; k < 32 && to_q8; k++)
                y[2 + k] = (unsigned char)(int8_t)code[k];
            for (int k = 0; k < 16 && !to_q8; k++)
                y[2 + k] = (unsigned char)((code[k] + 8) | (code[k + 16] + 8) << 4);
        }
}

static void expect_block_copy(const char *qdir, const char *gguf_path, int q4, int to_q8)
{
    ftq_checkpoint *q = NULL;
    ftq_gguf *g = NULL;
    ASSERT_OK(ftq_checkpoint_open(qdir, &q));
    ASSERT_OK(ftq_gguf_open(gguf_path, &g));
    /* up_proj [172, 64]: no row permutation; v_proj [32, 64] of a GQA model */
    static const char *const pairs[][2] = {{"model.layers.2.mlp.up_proj", "blk.2.ffn_up.weight"},
                                           {"model.layers.0.self_attn.v_proj", "blk.0.attn_v.weight"}};
    for (int i = 0; i < 2; i++) {
        const ftq_gguf_tensor *t = ftq_gguf_find_tensor(g, pairs[i][1]);
        CU_ASSERT_FATAL(t != NULL);
        CU_ASSERT_EQUAL(t->type, to_q8 ? FTQ_GGML_Q8_0 : FTQ_GGML_Q4_0);
        int rows = (int)t->ne[1], cols = (int)t->ne[0];
        unsigned char *want = malloc(t->nbytes);
        pack_expected(q, pairs[i][0], q4, to_q8, want, rows, cols);
        CU_ASSERT(memcmp(want, t->data, t->nbytes) == 0);
        free(want);
    }
    ftq_gguf_close(g);
    ftq_checkpoint_close(q);
}

/* ftq int8 / int4 (g32) -> q8_0 / q4_0 / keep: the matrices are copied (codes and f16 scales
 * byte for byte, Q/K rows permuted), the file's values equal `ftq dequantize`'s bit for bit,
 * and so the GGUF model computes what the dequantized checkpoint computes. */
static void test_quantized_copy(void)
{
    const char *tmp = test_tmpdir("gguf_export_q");
    char q8[1024], q4[1024], q4a[1024], out[1024], deq[1024], args[2400];
    snprintf(q8, sizeof q8, "%s/q8", tmp);
    snprintf(q4, sizeof q4, "%s/q4", tmp);
    snprintf(q4a, sizeof q4a, "%s/q4a", tmp);
    snprintf(args, sizeof args, "quantize -m '%s' -o '%s' --type int8 --json", source_path(ST), q8);
    cJSON_Delete(ftq_run_json(args));
    snprintf(args, sizeof args, "quantize -m '%s' -o '%s' --type int4 --search --json", source_path(ST), q4);
    cJSON_Delete(ftq_run_json(args));
    snprintf(args, sizeof args, "quantize -m '%s' -o '%s' --type int4 --asym --json", source_path(ST), q4a);
    cJSON_Delete(ftq_run_json(args));

    /* int8 -> q8_0: 5 layers x 6 matrices with 64 inputs, + the split-off head; down_proj
     * (172 inputs) and the f32 embedding are converted */
    snprintf(out, sizeof out, "%s/q8.gguf", tmp);
    cJSON *j = export_to(q8, out, "q8_0");
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    int copied = json_int(j, "copied");
    CU_ASSERT(copied >= 30);
    cJSON_Delete(j);
    expect_block_copy(q8, out, 0, 1);

    /* int4 -> q4_0 and -> q8_0 (codes minus 8) */
    snprintf(out, sizeof out, "%s/q4.gguf", tmp);
    j = export_to(q4, out, "q4_0");
    CU_ASSERT(json_int(j, "copied") >= 30);
    cJSON_Delete(j);
    expect_block_copy(q4, out, 1, 0);
    snprintf(out, sizeof out, "%s/q4_8.gguf", tmp);
    cJSON_Delete(export_to(q4, out, "q8_0"));
    expect_block_copy(q4, out, 1, 1);

    /* keep: every value as ftq computes with it, for q8, q4 and q4a (q4a -> Q8_0) */
    const char *dirs[3] = {q8, q4, q4a};
    for (int i = 0; i < 3; i++) {
        snprintf(out, sizeof out, "%s/keep%d.gguf", tmp, i);
        snprintf(deq, sizeof deq, "%s/deq%d", tmp, i);
        j = export_to(dirs[i], out, "keep");
        CU_ASSERT(json_int(j, "copied") >= 30);
        cJSON_Delete(j);
        snprintf(args, sizeof args, "dequantize -m '%s' -o '%s'", dirs[i], deq);
        char *so = NULL, *se = NULL;
        ASSERT_INT_EQ(ftq_run(args, &so, &se), 0);
        free(so);
        free(se);
        ftq_checkpoint *a = NULL, *b = NULL;
        ASSERT_OK(ftq_checkpoint_open(deq, &a));
        ASSERT_OK(ftq_gguf_checkpoint_open(out, NULL, &b));
        expect_same_values(a, b);
        ftq_checkpoint_close(a);
        ftq_checkpoint_close(b);
        ftq_gguf *g = NULL;
        ASSERT_OK(ftq_gguf_open(out, &g));
        const ftq_gguf_tensor *t = ftq_gguf_find_tensor(g, "blk.1.attn_q.weight");
        CU_ASSERT(t && t->type == (i == 1 ? FTQ_GGML_Q4_0 : FTQ_GGML_Q8_0));
        ftq_gguf_close(g);
        if (i == 1)
            expect_same_logits(deq, out);
    }

    /* GPT-2 int8: the Conv1D matrices are stored [out, in] by ftq as GGUF wants them: copied
     * too, and the keep file holds ftq dequantize's values */
    char g8[1024];
    snprintf(g8, sizeof g8, "%s/g8", tmp);
    snprintf(args, sizeof args, "quantize -m '%s' -o '%s' --type int8 --json", shared_path("golden/gpt2_tiny_random"),
             g8);
    cJSON_Delete(ftq_run_json(args));
    snprintf(out, sizeof out, "%s/g8.gguf", tmp);
    snprintf(deq, sizeof deq, "%s/g8deq", tmp);
    j = export_to(g8, out, "keep");
    CU_ASSERT(json_int(j, "copied") >= 8);
    cJSON_Delete(j);
    snprintf(args, sizeof args, "dequantize -m '%s' -o '%s'", g8, deq);
    char *so = NULL, *se = NULL;
    ASSERT_INT_EQ(ftq_run(args, &so, &se), 0);
    free(so);
    free(se);
    expect_same_logits(deq, out);
}

/* GPT-2 from GGUF as llama.cpp's converter writes it (tests/fixtures/gguf/gpt2_tiny.gguf,
 * tools/make_gguf_fixtures.py: the golden tiny random GPT-2 with its vocabulary cut to 512
 * tokens): the config, and logits equal to the safetensors model's first 512 logits bit for
 * bit at every position. */
static void test_gpt2_read(void)
{
    const char *path = source_path("tests/fixtures/gguf/gpt2_tiny.gguf");
    ftq_model *g = test_load_model(path), *h = test_load_model(shared_path("golden/gpt2_tiny_random"));
    CU_ASSERT_FATAL(g && h);
    const ftq_model_config *cg = ftq_model_get_config(g), *ch = ftq_model_get_config(h);
    CU_ASSERT(cg->arch == FTQ_ARCH_GPT2 && cg->n_layers == ch->n_layers && cg->hidden_size == ch->hidden_size &&
              cg->n_heads == ch->n_heads && cg->intermediate_size == ch->intermediate_size &&
              cg->max_position == ch->max_position && cg->norm_eps == ch->norm_eps && cg->act == ch->act &&
              cg->tie_word_embeddings && cg->vocab_size == 512);
    static const int32_t ids[] = {83, 258, 269, 265, 287, 262, 289, 265, 11, 40, 511, 0, 256, 300, 46, 198};
    int n = (int)(sizeof ids / sizeof ids[0]), Vh = ch->vocab_size;
    float *lg = malloc(sizeof(float) * (size_t)n * 512), *lh = malloc(sizeof(float) * (size_t)n * (size_t)Vh);
    ftq_session *s = NULL;
    ASSERT_OK(ftq_session_new(g, 32, &s));
    ASSERT_OK(ftq_session_eval(s, ids, n, lg, 1));
    ftq_session_free(s);
    ASSERT_OK(ftq_session_new(h, 32, &s));
    ASSERT_OK(ftq_session_eval(s, ids, n, lh, 1));
    ftq_session_free(s);
    int diff = 0;
    for (int t = 0; t < n; t++)
        diff += memcmp(lg + (size_t)t * 512, lh + (size_t)t * (size_t)Vh, 512 * sizeof(float)) != 0;
    ASSERT_INT_EQ(diff, 0);
    free(lg);
    free(lh);
    ftq_model_free(g);
    ftq_model_free(h);
}

/* GPT-2 export: the golden tiny GPT-2 (HF directory) -> f32 GGUF -> ftq computes the same
 * logits bit for bit and tokenizes the same; q8_0 loads and runs. */
static void test_gpt2_export(void)
{
    const char *dir = shared_path("golden/gpt2_tiny_random");
    char out[1024];
    snprintf(out, sizeof out, "%s/g.gguf", test_tmpdir("gguf_export_gpt2"));
    cJSON *j = export_to(dir, out, "f32");
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    cJSON_Delete(j);
    expect_same_logits(dir, out);
    ftq_tokenizer *ta = NULL, *tb = NULL;
    ASSERT_OK(ftq_tokenizer_load(dir, &ta));
    ASSERT_OK(ftq_tokenizer_load(out, &tb));
    const char *text = "Hello world, the cat's 1997 hat!  It isn't  here.\n\nOK <|endoftext|> done";
    int32_t *ia = NULL, *ib = NULL;
    size_t na = 0, nb = 0;
    ASSERT_OK(ftq_tokenizer_encode(ta, text, strlen(text), 1, &ia, &na));
    ASSERT_OK(ftq_tokenizer_encode(tb, text, strlen(text), 1, &ib, &nb));
    CU_ASSERT(na == nb && na > 10 && memcmp(ia, ib, na * sizeof *ia) == 0);
    free(ia);
    free(ib);
    ftq_tokenizer_free(ta);
    ftq_tokenizer_free(tb);
    ftq_gguf *g = NULL;
    ASSERT_OK(ftq_gguf_open(out, &g));
    const ftq_gguf_tensor *qkv = ftq_gguf_find_tensor(g, "blk.1.attn_qkv.weight"), *o = ftq_gguf_find_tensor(g, "output.weight");
    CU_ASSERT(qkv && qkv->ne[0] == 64 && qkv->ne[1] == 192 && o != NULL);
    ftq_gguf_close(g);
    j = export_to(dir, out, "q8_0");
    CU_ASSERT_PTR_NOT_NULL(j);
    cJSON_Delete(j);
    ftq_model *m = test_load_model(out);
    CU_ASSERT(m && ftq_model_get_config(m)->tie_word_embeddings);
    ftq_model_free(m);
}

/* Logits of a model loaded with flags, all positions of `ids` (malloc'd; *V the vocabulary,
 * *nq its quantized tensors). */
static float *logits_flags(const char *path, unsigned flags, const int32_t *ids, int n, int *V, int *nq)
{
    ftq_model *m = NULL;
    if (ftq_model_load_ex(path, flags, &m) != FTQ_OK) {
        fprintf(stderr, "\n  cannot load '%s': %s\n", path, ftq_last_error());
        CU_FAIL("load");
        return NULL;
    }
    *V = ftq_model_get_config(m)->vocab_size;
    *nq = ftq_model_quantized_count(m);
    float *lg = malloc(sizeof(float) * (size_t)n * (size_t)*V);
    ftq_session *s = NULL;
    ASSERT_OK(ftq_session_new(m, n, &s));
    ASSERT_OK(ftq_session_eval(s, ids, n, lg, 1));
    ftq_session_free(s);
    ftq_model_free(m);
    return lg;
}

/* --keep-quant: an ftq int4 / int8 directory -> GGUF (keep: Q4_0 / Q8_0 copies) -> loaded with
 * FTQ_LOAD_KEEP_QUANT runs the very same int4 / int8 matrices on the same kernels: logits
 * bit for bit those of the directory (every matrix of tests/fixtures/rope/linear has a
 * multiple of 32 inputs, so all are copies; its split-off head is int8; linear, not llama3:
 * llama3 reaches GGUF as f32 rope_freqs factors, whose rounding moves the last bits). Without
 * the flag nothing is quantized. */
static void test_keep_quant(void)
{
    const char *tmp = test_tmpdir("gguf_keep_quant");
    ftq_tokenizer *tok = NULL; /* the fixture has none; it does not enter the logits */
    ASSERT_OK(ftq_tokenizer_load_kind(source_path(ST), FTQ_TOKENIZER_SPM, &tok));
    static const char *const types[] = {"int4", "int8"};
    int32_t ids[40];
    for (int i = 0; i < 40; i++)
        ids[i] = (i * 37 + 5) % 64;
    for (int k = 0; k < 2; k++) {
        char q[1024], out[1024], args[2400];
        snprintf(q, sizeof q, "%s/%s", tmp, types[k]);
        snprintf(out, sizeof out, "%s/%s.gguf", tmp, types[k]);
        snprintf(args, sizeof args, "quantize -m '%s' -o '%s' --type %s --json", source_path("tests/fixtures/rope/linear"),
                 q, types[k]);
        cJSON_Delete(ftq_run_json(args));
        ftq_model_config cfg;
        ftq_checkpoint *ck = NULL;
        char cfgp[1100];
        snprintf(cfgp, sizeof cfgp, "%s/config.json", q);
        ASSERT_OK(ftq_config_load(cfgp, &cfg));
        ASSERT_OK(ftq_checkpoint_open(q, &ck));
        ftq_gguf_export_stats st;
        ASSERT_OK(ftq_model_export_gguf(&cfg, ck, tok, FTQ_GGUF_EXPORT_KEEP, out, &st));
        ftq_checkpoint_close(ck);
        ASSERT_INT_EQ(st.copied, 15);
        int va = 0, vb = 0, vc = 0, qa = 0, qb = 0, qc = 0;
        float *la = logits_flags(q, 0, ids, 40, &va, &qa), *lb = logits_flags(out, FTQ_LOAD_KEEP_QUANT, ids, 40, &vb, &qb),
              *lc = logits_flags(out, 0, ids, 40, &vc, &qc);
        CU_ASSERT_FATAL(la && lb && lc && va == vb);
        ASSERT_INT_EQ(qa, 15);
        ASSERT_INT_EQ(qb, qa);
        ASSERT_INT_EQ(qc, 0);
        CU_ASSERT(memcmp(la, lb, sizeof(float) * 40 * (size_t)va) == 0);
        free(la);
        free(lb);
        free(lc);
    }
    ftq_tokenizer_free(tok);
}

/* --keep-quant on Q4_1: every Q4_1 matrix becomes an ftq q4m matrix (d * c + m) code for code,
 * scale for scale, minimum for minimum; exported back with --type keep, every tensor of the
 * file is the source's, type and bytes. stories260K: 30 matrices with 64 inputs and the
 * embedding are Q4_1; down_proj (172 inputs) is F16. The logits run on the q4m kernels
 * (int8 activations), so they are close to, not equal to, the f32 load of the same file. */
static void test_keep_quant_q4_1(void)
{
    const char *tmp = test_tmpdir("gguf_keep_q41");
    char q41[1024], back[1024];
    snprintf(q41, sizeof q41, "%s/q41.gguf", tmp);
    snprintf(back, sizeof back, "%s/back.gguf", tmp);
    cJSON_Delete(export_to(source_path(ST), q41, "q4_1"));
    ftq_model_config cfg;
    ftq_checkpoint *ck = NULL;
    ASSERT_OK(ftq_gguf_checkpoint_open_ex(q41, FTQ_GGUF_KEEP_QUANT, &cfg, &ck));
    ftq_quant_tensor_info *ql = NULL;
    size_t nq = 0;
    ASSERT_OK(ftq_quant_checkpoint_list(ck, &ql, &nq));
    ASSERT_INT_EQ((int)nq, 31);
    for (size_t i = 0; i < nq; i++)
        CU_ASSERT(strcmp(ql[i].scheme, "q4m_g32") == 0);
    ftq_quant_tensor_info_free(ql, nq);
    ftq_tokenizer *tok = NULL;
    ASSERT_OK(ftq_tokenizer_load(q41, &tok));
    ftq_gguf_export_stats st;
    ASSERT_OK(ftq_model_export_gguf(&cfg, ck, tok, FTQ_GGUF_EXPORT_KEEP, back, &st));
    ftq_tokenizer_free(tok);
    ftq_checkpoint_close(ck);
    ASSERT_INT_EQ(st.copied, 31);
    ftq_gguf *ga = NULL, *gb = NULL;
    ASSERT_OK(ftq_gguf_open(q41, &ga));
    ASSERT_OK(ftq_gguf_open(back, &gb));
    ASSERT_INT_EQ((int)ftq_gguf_tensor_count(gb), (int)ftq_gguf_tensor_count(ga));
    int same = 0;
    for (size_t i = 0; i < ftq_gguf_tensor_count(ga); i++) {
        const ftq_gguf_tensor *ta = ftq_gguf_tensor_at(ga, i), *tb = ftq_gguf_find_tensor(gb, ta->name);
        CU_ASSERT_FATAL(tb != NULL);
        CU_ASSERT(ta->type == tb->type && ta->nbytes == tb->nbytes);
        if (ta->nbytes == tb->nbytes && memcmp(ta->data, tb->data, ta->nbytes) == 0 && ta->type == tb->type)
            same++;
        else
            fprintf(stderr, "\n  '%s' differs after the round trip\n", ta->name);
    }
    ASSERT_INT_EQ(same, (int)ftq_gguf_tensor_count(ga));
    ftq_gguf_close(ga);
    ftq_gguf_close(gb);
    int va = 0, vc = 0, qa = 0, qc = 0;
    float *la = logits_flags(q41, FTQ_LOAD_KEEP_QUANT, IDS, NIDS, &va, &qa), *lc = logits_flags(q41, 0, IDS, NIDS, &vc, &qc);
    CU_ASSERT_FATAL(la && lc && va == vc);
    ASSERT_INT_EQ(qa, 31);
    ASSERT_INT_EQ(qc, 0);
    double se = 0.0, sr = 0.0;
    for (size_t i = 0; i < (size_t)NIDS * (size_t)va; i++) {
        se += ((double)la[i] - lc[i]) * ((double)la[i] - lc[i]);
        sr += (double)lc[i] * lc[i];
    }
    CU_ASSERT(sqrt(se / sr) < 0.02); /* int8 activations only: the weights are the same values */
    free(la);
    free(lc);
}

/* A small GGUF made with ftq's writer: `arch` keys for a 1-layer, 16-wide, 2-head model, an
 * extra key / tensor as the case needs. */
static void write_small(const char *path, const char *arch, const char *scaling, int with_factor, const float *freqs,
                        int64_t n_freqs, int skip_eps)
{
    ftq_gguf_writer *w = NULL;
    ASSERT_OK(ftq_gguf_writer_new(&w));
    char k[128];
    ftq_gguf_writer_str(w, "general.architecture", arch);
#define U(sfx, v) (snprintf(k, sizeof k, "%s." sfx, arch), ftq_gguf_writer_u32(w, k, (v)))
    U("block_count", 1);
    U("embedding_length", 16);
    U("feed_forward_length", 32);
    U("attention.head_count", 2);
    U("context_length", 64);
#undef U
    if (!skip_eps) {
        snprintf(k, sizeof k, "%s.attention.%s", arch, strcmp(arch, "gpt2") == 0 ? "layer_norm_epsilon"
                                                                                   : "layer_norm_rms_epsilon");
        ftq_gguf_writer_f32(w, k, 1e-5f);
    }
    if (scaling)
        ftq_gguf_writer_str(w, "llama.rope.scaling.type", scaling);
    if (with_factor)
        ftq_gguf_writer_f32(w, "llama.rope.scaling.factor", 2.0f);
    static float emb[16 * 32];
    for (int i = 0; i < 16 * 32; i++)
        emb[i] = (float)(i % 7) - 3.0f;
    int64_t ne[2] = {16, 32};
    ASSERT_OK(ftq_gguf_writer_tensor(w, "token_embd.weight", FTQ_GGML_F32, 2, ne, emb, sizeof emb));
    if (freqs)
        ASSERT_OK(ftq_gguf_writer_tensor(w, "rope_freqs.weight", FTQ_GGML_F32, 1, &n_freqs, freqs,
                                         sizeof(float) * (size_t)n_freqs));
    ASSERT_OK(ftq_gguf_writer_write(w, path));
    ftq_gguf_writer_free(w);
}

static void expect_open_error(const char *path, int status, const char *phrase)
{
    ftq_model_config c;
    ftq_checkpoint *ck = NULL;
    int rc = ftq_gguf_checkpoint_open(path, &c, &ck);
    CU_ASSERT_EQUAL(rc, status);
    const char *e = ftq_last_error();
    if (!strstr(e, phrase) || !strstr(e, path) || strchr(e, '\n'))
        fprintf(stderr, "\n  got '%s', expected '%s'\n", e, phrase);
    CU_ASSERT(strstr(e, phrase) && strstr(e, path) && !strchr(e, '\n'));
    ftq_checkpoint_close(ck);
}

/* The new read paths refuse bad files with one line naming the file; the good ones parse. */
static void test_read_errors(void)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/x.gguf", test_tmpdir("gguf_read_err"));
    write_small(p, "llama", "yarn", 1, NULL, 0, 0);
    expect_open_error(p, FTQ_EUNSUPPORTED, "key 'llama.rope.scaling.type' is 'yarn': rope scaling of this type is not "
                                           "supported (expected none or linear)");
    write_small(p, "llama", "linear", 0, NULL, 0, 0);
    expect_open_error(p, FTQ_EFORMAT, "is linear but 'llama.rope.scaling.factor' is missing");
    static const float bad3[3] = {1, 2, 4}, zero4[4] = {1, 0, 2, 4}, good4[4] = {1, 1.5f, 4, 4};
    write_small(p, "llama", NULL, 0, bad3, 3, 0);
    expect_open_error(p, FTQ_EFORMAT, "tensor 'rope_freqs.weight' has 3 elements (expected head_dim / 2 = 4");
    write_small(p, "llama", NULL, 0, zero4, 4, 0);
    expect_open_error(p, FTQ_EFORMAT, "tensor 'rope_freqs.weight' holds 0 at 1 (expected a positive factor)");
    write_small(p, "llama", "linear", 1, good4, 4, 0);
    expect_open_error(p, FTQ_EUNSUPPORTED, "rope_freqs.weight together with 'llama.rope.scaling.type' linear");
    write_small(p, "gpt2", NULL, 0, NULL, 0, 1);
    expect_open_error(p, FTQ_EFORMAT, "missing key 'gpt2.attention.layer_norm_epsilon'");

    ftq_model_config c;
    ftq_checkpoint *ck = NULL;
    write_small(p, "llama", NULL, 0, good4, 4, 0);
    ASSERT_OK(ftq_gguf_checkpoint_open(p, &c, &ck));
    CU_ASSERT(c.rope_scaling == FTQ_ROPE_SCALING_FREQS && c.rope_freq_factors[1] == 1.5f);
    CU_ASSERT(ftq_checkpoint_find(ck, "rope_freqs.weight") == NULL); /* in the config, not a weight */
    ftq_checkpoint_close(ck);
    write_small(p, "llama", "linear", 1, NULL, 0, 0);
    ASSERT_OK(ftq_gguf_checkpoint_open(p, &c, &ck));
    CU_ASSERT(c.rope_scaling == FTQ_ROPE_SCALING_LINEAR && c.rope_factor == 2.0f);
    ftq_checkpoint_close(ck);
    write_small(p, "gpt2", NULL, 0, NULL, 0, 0);
    ASSERT_OK(ftq_gguf_checkpoint_open(p, &c, &ck));
    CU_ASSERT(c.arch == FTQ_ARCH_GPT2 && c.intermediate_size == 32 && c.head_dim == 8 && c.tie_word_embeddings &&
              c.act == FTQ_ACT_GELU_TANH && c.qkv_bias && c.o_bias && c.mlp_bias);
    ftq_checkpoint_close(ck);
}

/* --keep-quant on a Q8_0 block holding the code -128 (which ftq's int8 grid excludes): the
 * tensor goes through ggml's requantization instead, so the q8 codes stay within +-127;
 * a Q4_0 tensor is copied code for code. */
static void test_keep_quant_codes(void)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/k.gguf", test_tmpdir("gguf_keep_codes"));
    float x[32 * 32];
    for (int i = 0; i < 32 * 32; i++)
        x[i] = (float)((i * 29) % 17) - 8.0f;
    unsigned char q8[32 * 34], q4[32 * 18];
    ftq_ggml_quantize_q8_0(x, q8, 32);
    ftq_ggml_quantize_q4_0(x, q4, 32);
    q8[2 + 5] = 0x80; /* block 0, code 5: -128 */
    ftq_gguf_writer *w = NULL;
    ASSERT_OK(ftq_gguf_writer_new(&w));
    ftq_gguf_writer_str(w, "general.architecture", "llama");
    ftq_gguf_writer_u32(w, "llama.block_count", 1);
    ftq_gguf_writer_u32(w, "llama.embedding_length", 32);
    ftq_gguf_writer_u32(w, "llama.feed_forward_length", 32);
    ftq_gguf_writer_u32(w, "llama.attention.head_count", 2);
    ftq_gguf_writer_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    int64_t ne[2] = {32, 32};
    ASSERT_OK(ftq_gguf_writer_tensor(w, "token_embd.weight", FTQ_GGML_Q8_0, 2, ne, q8, sizeof q8));
    ASSERT_OK(ftq_gguf_writer_tensor(w, "blk.0.ffn_up.weight", FTQ_GGML_Q4_0, 2, ne, q4, sizeof q4));
    ASSERT_OK(ftq_gguf_writer_write(w, p));
    ftq_gguf_writer_free(w);
    ftq_checkpoint *ck = NULL;
    ASSERT_OK(ftq_gguf_checkpoint_open_ex(p, FTQ_GGUF_KEEP_QUANT, NULL, &ck));
    const ftq_tensor *ew = ftq_checkpoint_find(ck, "model.embed_tokens.qweight"),
                     *uw = ftq_checkpoint_find(ck, "model.layers.0.mlp.up_proj.qweight"),
                     *us = ftq_checkpoint_find(ck, "model.layers.0.mlp.up_proj.qscale");
    CU_ASSERT_FATAL(ew && uw && us && ew->dtype == FTQ_DTYPE_I8 && uw->dtype == FTQ_DTYPE_U8 && uw->shape[1] == 16);
    int m128 = 0;
    for (size_t i = 0; i < ew->nbytes; i++)
        m128 += ((const int8_t *)ew->data)[i] == -128;
    ASSERT_INT_EQ(m128, 0);
    int bad = 0; /* q4: ftq nibble 2i | 2i+1 of each row = ggml's element 2i, 2i+1 */
    for (int r = 0; r < 32; r++) {
        uint16_t d;
        memcpy(&d, q4 + 18 * r, 2);
        bad += memcmp(&d, (const uint16_t *)us->data + r, 2) != 0;
        for (int k = 0; k < 32; k++) {
            int g = k < 16 ? q4[18 * r + 2 + k] & 15 : q4[18 * r + 2 + k - 16] >> 4;
            int f = (((const uint8_t *)uw->data)[16 * r + k / 2] >> (4 * (k % 2))) & 15;
            bad += g != f;
        }
    }
    ASSERT_INT_EQ(bad, 0);
    ftq_checkpoint_close(ck);
}

static void test_errors(void)
{
    const char *tmp = test_tmpdir("gguf_export_err");
    char out[1024], args[2400];
    snprintf(out, sizeof out, "%s/x.gguf", tmp);
    snprintf(args, sizeof args, "export -m '%s' -o '%s' --type q5_k", source_path(ST), out);
    ftq_expect_error(args, "unknown --type 'q5_k'", out);
}

void test_register_gguf_export(void)
{
    static const test_case cases[] = {
        {"roundtrip_logits", test_roundtrip_logits},
        {"quantized_copy", test_quantized_copy},
        {"gpt2_read", test_gpt2_read},
        {"gpt2_export", test_gpt2_export},
        {"keep_quant", test_keep_quant},
        {"keep_quant_q4_1", test_keep_quant_q4_1},
        {"read_errors", test_read_errors},
        {"keep_quant_codes", test_keep_quant_codes},
        {"errors", test_errors},
        {NULL, NULL},
    };
    test_add_suite("gguf_export", cases);
}
