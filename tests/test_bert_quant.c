/* test_bert_quant.c - BERT encoders quantized and pruned: bert_tiny_random and MiniLM to
 * int8 / int4 (every block's linear weights, on the int8 / int4 kernels), checked against
 * the f32 model and against a reference that runs the same weights in f32 (the dequantized
 * checkpoint: the quantized forward may differ from it only by the activation rounding);
 * MiniLM's int8 sentence embeddings against the HF golden; pruning (magnitude per row, 2:4,
 * Wanda against statistics recomputed here for block 0); refusals; and `ftq pipeline` on
 * the tiny encoder. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/bert_internal.h"
#include "quant/qcalib.h"
#include "tests/test_util.h"

static const char *TINY = "golden/bert_tiny_random";
static const char *MINILM = "models/all-MiniLM-L6-v2";

/* The golden batch of bert_tiny_random: 3 rows of 13 ids, right-padded. */
static void tiny_batch(int32_t *ids, int *lens)
{
    cJSON *j = load_json(shared_path("golden/bert_tiny_random/golden.json"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    for (int b = 0; b < 3; b++) {
        size_t n = 0, nm = 0;
        int32_t *r = json_ints(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "input_ids"), b), &n);
        int32_t *mk = json_ints(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "attention_mask"), b), &nm);
        CU_ASSERT_FATAL(n == 13 && nm == 13);
        memcpy(ids + b * 13, r, sizeof *r * n);
        lens[b] = 0;
        for (size_t i = 0; i < nm; i++)
            lens[b] += mk[i];
        free(r);
        free(mk);
    }
    cJSON_Delete(j);
}

/* Forward rows of a model directory: hidden [B*T, C] (real rows meaningful) and logits. */
static void run_dir(const char *dir, const int32_t *ids, const int *lens, int B, int T, float *hidden, float *logits,
                    int *n_quantized)
{
    ftq_bert *m = NULL;
    ftq_bert_ws *ws = NULL;
    ASSERT_OK(ftq_bert_load(dir, &m));
    ASSERT_OK(ftq_bert_ws_new(m, B, T, 0, &ws));
    ASSERT_OK(ftq_bert_forward(m, ws, ids, NULL, lens, B, T));
    const ftq_bert_config *c = ftq_bert_get_config(m);
    memcpy(hidden, ftq_bert_hidden(m, ws), sizeof(float) * (size_t)B * T * c->hidden);
    if (logits)
        ASSERT_OK(ftq_bert_classify(m, ws, logits));
    if (n_quantized)
        *n_quantized = ftq_bert_quantized_count(m);
    ftq_bert_ws_free(ws);
    ftq_bert_free(m);
}

/* RMS of (a - b) over the real rows, relative to the RMS of b. */
static double rel_rms(const float *a, const float *b, const int *lens, int B, int T, int C)
{
    double se = 0, sr = 0;
    for (int r = 0; r < B; r++)
        for (int t = 0; t < lens[r]; t++)
            for (int d = 0; d < C; d++) {
                size_t i = ((size_t)r * T + t) * C + d;
                se += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
                sr += (double)b[i] * b[i];
            }
    return sqrt(se / sr);
}

static void quantize_dir(const char *in, const char *out, int bits)
{
    ftq_quantize_params qp = ftq_quantize_default_params();
    qp.bits = bits;
    ftq_quantize_report rep;
    ftq_remove_tree(out);
    ASSERT_OK(ftq_quantize_model(in, out, &qp, &rep));
    ftq_quantize_report_free(&rep);
}

/* int8 and int4 on the tiny classifier: 12 linear weights quantized; the forward equals the
 * f32 forward of the same (dequantized) weights up to the activation rounding, and the f32
 * model within the weight rounding; rows batched or alone give the same result. */
static void test_tiny_quantized_forward(void)
{
    const char *tmp = test_tmpdir("bert_quant");
    int32_t ids[39];
    int lens[3];
    tiny_batch(ids, lens);
    const int B = 3, T = 13, C = 32;
    float hf[39 * 32], hq[39 * 32], hd[39 * 32], lf[9], lq[9], ld[9];
    int nq = -1;
    run_dir(shared_path(TINY), ids, lens, B, T, hf, lf, &nq);
    ASSERT_INT_EQ(nq, 0);
    for (int bits = 8; bits >= 4; bits -= 4) {
        char qdir[4096], ddir[4096];
        snprintf(qdir, sizeof qdir, "%s/int%d", tmp, bits);
        snprintf(ddir, sizeof ddir, "%s/int%d-f32", tmp, bits);
        quantize_dir(shared_path(TINY), qdir, bits);
        ftq_remove_tree(ddir);
        ASSERT_OK(ftq_dequantize_model(qdir, ddir, FTQ_DTYPE_F32));
        run_dir(qdir, ids, lens, B, T, hq, lq, &nq);
        ASSERT_INT_EQ(nq, 12); /* 2 blocks x (q, k, v, o, intermediate, output); pooler, classifier kept */
        run_dir(ddir, ids, lens, B, T, hd, ld, NULL);
        double e_act = rel_rms(hq, hd, lens, B, T, C), e_f32 = rel_rms(hq, hf, lens, B, T, C);
        double e_w = rel_rms(hd, hf, lens, B, T, C), dl = 0, dla = 0;
        for (int i = 0; i < 9; i++) {
            dl = fmax(dl, fabs(lq[i] - lf[i]));
            dla = fmax(dla, fabs(lq[i] - ld[i]));
        }
        printf("\n    int%d hidden rel rms: vs same weights in f32 %.2e, vs f32 model %.2e (weights alone %.2e); "
               "logits max |diff| vs f32 %.2e, vs same weights %.2e ", bits, e_act, e_f32, e_w, dl, dla);
        /* measured (the random blocks add little to the residual stream, so errors are small):
         * int8 1.37e-4 / 1.96e-4, logits 4.4e-6; int4 1.34e-4 / 2.59e-3, logits 4.2e-5; every
         * kernel path computes the same bits, so the bounds (3x) do not depend on the CPU */
        CU_ASSERT(e_act > 0 && e_act < 4e-4); /* the activation rounding only */
        CU_ASSERT(e_f32 < (bits == 8 ? 6e-4 : 8e-3));
        CU_ASSERT(dl < (bits == 8 ? 1.5e-5 : 1.5e-4));
        /* one row at a time: the same values (per-row activation scales, per-row kernels) */
        for (int b = 0; b < B; b++) {
            float h1[13 * 32];
            run_dir(qdir, ids + b * T, &lens[b], 1, T, h1, NULL, NULL);
            double d = 0;
            for (int i = 0; i < lens[b] * C; i++)
                d = fmax(d, fabs(h1[i] - hq[(size_t)b * T * C + i]));
            CU_ASSERT(d <= 1e-5);
        }
        /* the scalar path (FTQ_CPU_MASK=0: scalar int8 / int4 kernels, scalar f32 kernels)
         * gives the same embeddings as the SIMD path: the quantized products are the same
         * bits on every path, the f32 parts round differently */
        {
            char cmd[8192], *o1 = NULL, *o2 = NULL;
            const char *text = "a charming and often affecting journey";
            snprintf(cmd, sizeof cmd, "FTQ_CPU_MASK=0 '%s' embed -m '%s' -p '%s' --json", ftq_binary(), qdir, text);
            int s1 = run_capture(cmd, &o1);
            snprintf(cmd, sizeof cmd, "'%s' embed -m '%s' -p '%s' --json", ftq_binary(), qdir, text);
            int s2 = run_capture(cmd, &o2);
            cJSON *j1 = s1 == 0 ? cJSON_Parse(o1) : NULL, *j2 = s2 == 0 ? cJSON_Parse(o2) : NULL;
            CU_ASSERT_FATAL(j1 && j2);
            const cJSON *e1 = cJSON_GetArrayItem(cJSON_GetObjectItem(j1, "embeddings"), 0),
                        *e2 = cJSON_GetArrayItem(cJSON_GetObjectItem(j2, "embeddings"), 0);
            CU_ASSERT_FATAL(cJSON_GetArraySize(e1) == C && cJSON_GetArraySize(e2) == C);
            double d = 0;
            for (int i = 0; i < C; i++)
                d = fmax(d, fabs(cJSON_GetArrayItem(e1, i)->valuedouble - cJSON_GetArrayItem(e2, i)->valuedouble));
            printf("scalar vs simd embedding max |diff| %.2e ", d);
            CU_ASSERT(d < 1e-5);
            cJSON_Delete(j1);
            cJSON_Delete(j2);
            free(o1);
            free(o2);
        }
        /* training needs f32 weights; pruning too */
        ftq_bert *m = NULL;
        ftq_bert_ws *ws = NULL;
        ASSERT_OK(ftq_bert_load(qdir, &m));
        CU_ASSERT(ftq_bert_ws_new(m, 1, 8, 1, &ws) == FTQ_EUNSUPPORTED);
        CU_ASSERT(strstr(ftq_last_error(), "quantized") != NULL);
        ftq_bert_free(m);
        char pdir[4096];
        snprintf(pdir, sizeof pdir, "%s/pruned-q", tmp);
        ftq_prune_params pp = ftq_prune_default_params();
        ftq_prune_report pr;
        CU_ASSERT(ftq_prune_model(qdir, pdir, &pp, &pr) == FTQ_EUNSUPPORTED);
        CU_ASSERT(!ftq_is_dir(pdir));
    }
    /* --head int8 quantizes the pooler and the classifier too; embeddings stay */
    char hdir[4096], args[8192];
    snprintf(hdir, sizeof hdir, "%s/head8", tmp);
    ftq_quantize_params qp = ftq_quantize_default_params();
    qp.head = FTQ_QPOLICY_INT8;
    ftq_quantize_report rep;
    ftq_remove_tree(hdir);
    ASSERT_OK(ftq_quantize_model(shared_path(TINY), hdir, &qp, &rep));
    ASSERT_INT_EQ(rep.n_tensors, 14);
    ftq_quantize_report_free(&rep);
    run_dir(hdir, ids, lens, B, T, hq, lq, &nq);
    ASSERT_INT_EQ(nq, 14);
    for (int i = 0; i < 9; i++)
        ASSERT_NEAR(lq[i], lf[i], 5e-4);
    snprintf(args, sizeof args, "quantize -m '%s' -o '%s/emb8' --embeddings int8", shared_path(TINY), tmp);
    ftq_expect_error(args, "embeddings", NULL);
}

/* MiniLM int8: the sentence embeddings of the golden sentences within cosine 0.99 of HF's
 * f32 ones (the goal). (int4 g32, measured outside the suite: worst cosine 0.90.) */
static void test_minilm_embeddings(void)
{
    const char *tmp = test_tmpdir("bert_quant_minilm");
    cJSON *g = load_json(shared_path("golden/minilm/outputs.json"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    const cJSON *single = cJSON_GetObjectItem(g, "single");
    for (int bits = 8; bits == 8; bits -= 4) {
        char qdir[4096];
        snprintf(qdir, sizeof qdir, "%s/int%d", tmp, bits);
        quantize_dir(shared_path(MINILM), qdir, bits);
        ftq_bert *m = NULL;
        ftq_bert_ws *ws = NULL;
        ASSERT_OK(ftq_bert_load(qdir, &m));
        ASSERT_INT_EQ(ftq_bert_quantized_count(m), 36);
        ASSERT_OK(ftq_bert_ws_new(m, 1, 64, 0, &ws));
        double worst = 1;
        const cJSON *s;
        cJSON_ArrayForEach(s, single)
        {
            size_t n = 0, ne = 0;
            int32_t *ids = json_ints(cJSON_GetObjectItem(s, "ids"), &n);
            double *want = json_doubles(cJSON_GetObjectItem(s, "embedding"), &ne);
            CU_ASSERT_FATAL(ids && want && ne == 384 && n <= 64);
            int len = (int)n;
            float emb[384];
            ASSERT_OK(ftq_bert_forward(m, ws, ids, NULL, &len, 1, len));
            ASSERT_OK(ftq_bert_pool(m, ws, FTQ_POOL_MEAN, 1, emb));
            double dot = 0, nw = 0;
            for (int d = 0; d < 384; d++) {
                dot += emb[d] * want[d];
                nw += want[d] * want[d];
            }
            worst = fmin(worst, dot / sqrt(nw)); /* emb is unit length */
            free(ids);
            free(want);
        }
        printf("\n    MiniLM int%d: worst cosine to the HF embedding over %d sentences %.5f ", bits,
               cJSON_GetArraySize(single), worst);
        /* measured: int8 0.99908 */
        CU_ASSERT(worst > 0.99);
        ftq_bert_ws_free(ws);
        ftq_bert_free(m);
        ftq_remove_tree(qdir);
    }
    cJSON_Delete(g);
}

/* The f32 weights of tensor `suffix` of a model, as loaded. */
static const float *weight(const ftq_bert *m, const char *name, int64_t *rows, int64_t *cols)
{
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) {
            *rows = m->tensors[i].shape[0];
            *cols = m->tensors[i].ndim > 1 ? m->tensors[i].shape[1] : 1;
            return m->params + m->tensors[i].off;
        }
    CU_FAIL("tensor not found");
    return NULL;
}

/* Pruning the tiny encoder: magnitude per row leaves exactly half of every row of every
 * linear weight and nothing else changed; 2:4 keeps two of every four; Wanda's block 0
 * equals ftq_prune_wanda on statistics recomputed here from the unpruned model. */
static void test_tiny_prune(void)
{
    const char *tmp = test_tmpdir("bert_prune");
    ftq_bert *f = NULL;
    ASSERT_OK(ftq_bert_load(shared_path(TINY), &f));
    const char *lin[] = {"attention.self.query.weight", "attention.self.key.weight", "attention.self.value.weight",
                         "attention.output.dense.weight", "intermediate.dense.weight", "output.dense.weight"};
    /* calibration: 32 windows of 16 pseudo-random ids */
    enum { CTX = 16, NW = 32 };
    int32_t calib[CTX * NW];
    ftq_rng r;
    ftq_rng_seed(&r, 11);
    for (int i = 0; i < CTX * NW; i++)
        calib[i] = 1000 + (int32_t)(ftq_rng_u64(&r) % 20000);
    for (int method = 0; method < 3; method++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/m%d", tmp, method);
        ftq_remove_tree(dir);
        ftq_prune_params pp = ftq_prune_default_params();
        pp.method = method == 0 ? FTQ_PRUNE_MAGNITUDE : method == 1 ? FTQ_PRUNE_NM : FTQ_PRUNE_WANDA;
        pp.scope = FTQ_PRUNE_ROW;
        pp.n = 2;
        pp.m = method == 1 ? 4 : 0;
        pp.calib = calib;
        pp.n_calib = CTX * NW;
        pp.calib_ctx = CTX;
        ftq_prune_report rep;
        ASSERT_OK(ftq_prune_model(shared_path(TINY), dir, &pp, &rep));
        ASSERT_INT_EQ(rep.n_tensors, 12);
        ASSERT_INT_EQ(rep.pruned_zeros * 2, rep.pruned_numel);
        if (method == 2)
            ASSERT_INT_EQ(rep.calib_tokens, CTX * NW);
        ftq_prune_report_free(&rep);
        ftq_bert *p = NULL;
        ASSERT_OK(ftq_bert_load(dir, &p));
        /* every tensor: pruned linear weights have half of each row (or 2 of 4) zero and keep
         * the others; everything else is bit-identical */
        for (int i = 0; i < f->n_tensors; i++) {
            const ftq_bert_tensor *t = &f->tensors[i];
            const float *a = f->params + t->off, *b = p->params + p->tensors[i].off;
            if (t->role != FTQ_BERT_ROLE_LINEAR) {
                CU_ASSERT(memcmp(a, b, sizeof(float) * t->numel) == 0);
                continue;
            }
            int64_t rows = t->shape[0], cols = t->shape[1], bad = 0;
            for (int64_t o = 0; o < rows; o++) {
                int64_t z = 0;
                for (int64_t k = 0; k < cols; k++) {
                    float v = b[o * cols + k];
                    z += v == 0.0f;
                    bad += v != 0.0f && v != a[o * cols + k];
                    if (method == 1 && k % 4 == 3) {
                        int zz = 0;
                        for (int q = 0; q < 4; q++)
                            zz += b[o * cols + k - q] == 0.0f;
                        bad += zz != 2;
                    }
                }
                bad += z * 2 != cols;
            }
            ASSERT_INT_EQ(bad, 0);
        }
        if (method == 2) {
            /* block 0 from statistics of the unpruned model, computed here */
            ftq_bert_ws *ws = NULL;
            ASSERT_OK(ftq_bert_ws_new(f, NW, CTX, 0, &ws));
            int lens[NW];
            for (int b = 0; b < NW; b++)
                lens[b] = CTX;
            ASSERT_OK(ftq_bert_forward_layers(f, ws, calib, NULL, lens, NW, CTX, 1));
            const float *in[] = {ftq_bert_x(ws, 0), ftq_bert_x(ws, 0), ftq_bert_x(ws, 0), ws->att, ws->h1, ws->g};
            for (int k = 0; k < 6; k++) {
                char name[160];
                snprintf(name, sizeof name, "bert.encoder.layer.0.%s", lin[k]);
                int64_t rows = 0, cols = 0, r2 = 0, c2 = 0;
                const float *w = weight(f, name, &rows, &cols), *got = weight(p, name, &r2, &c2);
                float *norm = malloc(sizeof(float) * (size_t)cols), *ref = malloc(sizeof(float) * (size_t)(rows * cols));
                for (int64_t j = 0; j < cols; j++) {
                    double s = 0;
                    for (int t = 0; t < NW * CTX; t++)
                        s += (double)in[k][(size_t)t * cols + j] * in[k][(size_t)t * cols + j];
                    norm[j] = (float)sqrt(s / (NW * CTX));
                }
                memcpy(ref, w, sizeof(float) * (size_t)(rows * cols));
                ASSERT_OK(ftq_prune_wanda(ref, rows, cols, norm, 0.5f, 0, 0));
                /* which entries are zeroed differs from magnitude pruning for some rows */
                CU_ASSERT(memcmp(ref, got, sizeof(float) * (size_t)(rows * cols)) == 0);
                free(norm);
                free(ref);
            }
            ftq_bert_ws_free(ws);
        }
        ftq_bert_free(p);
    }
    ftq_bert_free(f);
}

/* `ftq pipeline` on the tiny encoder: five stages; perplexity null (no LM head) and "n/a"
 * in the table; accuracy for the fine-tuned stages (equal to `ftq classify` on the saved
 * int8 stage); speed and size for every stage. */
static void test_pipeline_encoder(void)
{
    char out[4096], dev[4096], args[16384];
    snprintf(out, sizeof out, "%s/run", test_tmpdir("bert_pipeline"));
    snprintf(dev, sizeof dev, "%s/dev.tsv", test_tmpdir("bert_pipeline"));
    ftq_remove_tree(out);
    /* the first 200 dev rows keep the five stages' evaluations short */
    snprintf(args, sizeof args, "head -n 201 '%s' > '%s'", source_path("datasets/sst2_dev.tsv"), dev);
    CU_ASSERT_FATAL(system(args) == 0);
    snprintf(args, sizeof args,
             "pipeline -m '%s' -d '%s' --dev '%s' -o '%s' --limit 64 --batch 32 --lr 1e-3 --prune nm --json",
             shared_path(TINY), source_path("datasets/sst2_train_4k.tsv"), dev, out);
    cJSON *j = ftq_run_json(args);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    const cJSON *stages = cJSON_GetObjectItem(j, "stages");
    ASSERT_INT_EQ(cJSON_GetArraySize(stages), 5);
    const char *names[] = {"base", "finetuned", "pruned", "int8", "int4"};
    double size[5] = {0}, acc[5] = {0};
    for (int i = 0; i < 5 && i < cJSON_GetArraySize(stages); i++) {
        const cJSON *s = cJSON_GetArrayItem(stages, i);
        CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(s, "stage")->valuestring, names[i]);
        CU_ASSERT(cJSON_IsNull(cJSON_GetObjectItem(s, "ppl")));
        CU_ASSERT(cJSON_GetObjectItem(s, "tokens_per_second")->valuedouble > 0);
        size[i] = cJSON_GetObjectItem(s, "file_bytes")->valuedouble;
        const cJSON *a = cJSON_GetObjectItem(s, "accuracy");
        if (i == 0) {
            CU_ASSERT(cJSON_IsNull(a)); /* its own head is not the task's */
        } else {
            CU_ASSERT(cJSON_IsNumber(a));
            acc[i] = cJSON_IsNumber(a) ? a->valuedouble : -1;
            ASSERT_INT_EQ(cJSON_GetObjectItem(s, "dev_examples")->valueint, 200);
        }
    }
    cJSON_Delete(j);
    CU_ASSERT(size[3] < size[2] && size[4] < size[3]);
    snprintf(args, sizeof args, "classify -m '%s/int8' -d '%s' --seq 64 --json", out, dev);
    cJSON *c = ftq_run_json(args);
    if (c) {
        ASSERT_NEAR(cJSON_GetObjectItem(c, "accuracy")->valuedouble, acc[3], 1e-6);
        cJSON_Delete(c);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/report.svg", out);
    CU_ASSERT(ftq_is_file(path));
}

/* Calibrated int4 on the tiny classifier (random calibration ids, 6 windows of 24 with a
 * CLS first): every block linear weight equals the importance-weighted search on the sums
 * of x_j^2 of its input computed here from the unquantized encoder (the hidden state, the
 * attention output, the post-LN state, the GELU output of that block), in both blocks; the
 * report and the metadata name the method; gptq / awq / --bits are refused in one line. */
static void test_tiny_calib(void)
{
    enum { NW = 6, CTX = 24 };
    const char *tmp = test_tmpdir("bert_quant_calib");
    char qdir[4096], ddir[4096];
    snprintf(qdir, sizeof qdir, "%s/q", tmp);
    snprintf(ddir, sizeof ddir, "%s/deq", tmp);
    ftq_remove_tree(qdir);
    ftq_remove_tree(ddir);
    ftq_bert *f = NULL;
    ASSERT_OK(ftq_bert_load(shared_path(TINY), &f));
    const int V = ftq_bert_get_config(f)->vocab_size;
    int32_t text[NW * (CTX - 1)], calib[NW * CTX];
    ftq_rng r;
    ftq_rng_seed(&r, 9);
    for (int i = 0; i < NW * (CTX - 1); i++)
        text[i] = 1000 % V + (int32_t)(ftq_rng_uniform(&r) * (float)(V - 1000 % V - 1));
    for (int w = 0; w < NW; w++) {
        calib[w * CTX] = 101 % V;
        memcpy(calib + w * CTX + 1, text + w * (CTX - 1), sizeof(int32_t) * (CTX - 1));
    }
    ftq_quantize_params qp = ftq_quantize_default_params();
    qp.bits = 4;
    qp.calib = text;
    qp.n_calib = NW * (CTX - 1);
    qp.calib_ctx = CTX;
    qp.calib_bos = 101 % V;
    qp.calib_name = "random";
    ftq_quantize_report rep;
    qp.method = FTQ_QMETHOD_GPTQ;
    CU_ASSERT_EQUAL(ftq_quantize_model(shared_path(TINY), qdir, &qp, &rep), FTQ_EUNSUPPORTED);
    CU_ASSERT(strstr(ftq_last_error(), "are for decoders") != NULL);
    qp.method = FTQ_QMETHOD_RTN;
    qp.awq = 1;
    CU_ASSERT_EQUAL(ftq_quantize_model(shared_path(TINY), qdir, &qp, &rep), FTQ_EUNSUPPORTED);
    qp.awq = 0;
    ASSERT_OK(ftq_quantize_model(shared_path(TINY), qdir, &qp, &rep));
    ASSERT_INT_EQ(rep.calib_tokens, NW * CTX);
    int n_imp = 0;
    for (size_t i = 0; i < rep.n_tensors; i++)
        n_imp += strcmp(rep.tensors[i].method, "imatrix") == 0;
    ASSERT_INT_EQ(n_imp, 12);
    ftq_quantize_report_free(&rep);
    ftq_checkpoint *ck = NULL;
    ASSERT_OK(ftq_checkpoint_open(qdir, &ck));
    cJSON *cj = cJSON_Parse(ftq_st_metadata_get(ftq_checkpoint_file(ck, 0), "ftq.quant.calibration"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(cj);
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(cj, "method")->valuestring, "imatrix");
    cJSON_Delete(cj);
    ftq_checkpoint_close(ck);
    ASSERT_OK(ftq_dequantize_model(qdir, ddir, FTQ_DTYPE_F32));
    ftq_bert *d = NULL;
    ASSERT_OK(ftq_bert_load(ddir, &d));
    const char *lin[] = {"attention.self.query.weight", "attention.self.key.weight", "attention.self.value.weight",
                         "attention.output.dense.weight", "intermediate.dense.weight", "output.dense.weight"};
    ftq_bert_ws *ws = NULL;
    ASSERT_OK(ftq_bert_ws_new(f, NW, CTX, 0, &ws));
    int lens[NW];
    for (int b = 0; b < NW; b++)
        lens[b] = CTX;
    int bad = 0;
    for (int l = 0; l < 2; l++) {
        ASSERT_OK(ftq_bert_forward_layers(f, ws, calib, NULL, lens, NW, CTX, l + 1));
        const float *in[] = {ftq_bert_x(ws, l), ftq_bert_x(ws, l), ftq_bert_x(ws, l), ws->att, ws->h1, ws->g};
        for (int k = 0; k < 6; k++) {
            char name[160];
            snprintf(name, sizeof name, "bert.encoder.layer.%d.%s", l, lin[k]);
            int64_t rows = 0, cols = 0, r2 = 0, c2 = 0;
            const float *w = weight(f, name, &rows, &cols), *got = weight(d, name, &r2, &c2);
            double *imp = calloc((size_t)cols, sizeof(double));
            for (int64_t j = 0; j < cols; j++)
                for (int t = 0; t < NW * CTX; t++)
                    imp[j] += (double)in[k][(size_t)t * cols + j] * in[k][(size_t)t * cols + j];
            ftq_quant_params p4 = ftq_quant_default_params();
            p4.scheme = FTQ_QSCHEME_Q4;
            p4.group = 32;
            p4.f16_scales = 1;
            ftq_qtensor q;
            ASSERT_OK(ftq_qtensor_quantize_weighted(&q, w, (int)rows, (int)cols, &p4, imp));
            float *ref = malloc(sizeof(float) * (size_t)(rows * cols));
            ftq_qtensor_dequantize(&q, ref);
            bad += memcmp(ref, got, sizeof(float) * (size_t)(rows * cols)) != 0;
            ftq_qtensor_free(&q);
            free(ref);
            free(imp);
        }
    }
    ASSERT_INT_EQ(bad, 0);
    ftq_bert_ws_free(ws);
    ftq_bert_free(d);
    ftq_bert_free(f);
    ftq_remove_tree(qdir);
    ftq_remove_tree(ddir);
}

void test_register_bert_quant(void)
{
    static const test_case cases[] = {{"tiny_quantized_forward", test_tiny_quantized_forward},
                                      {"minilm_embeddings", test_minilm_embeddings},
                                      {"tiny_prune", test_tiny_prune},
                                      {"tiny_calib", test_tiny_calib},
                                      {"pipeline_encoder", test_pipeline_encoder},
                                      {NULL, NULL}};
    test_add_suite("bert_quant", cases);
}
