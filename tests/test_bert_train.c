/* test_bert_train.c - BERT training: the loss and the gradient of every parameter of
 * bert_tiny_random (a right-padded batch of 3, pooler + classifier) against PyTorch
 * (golden.json) and those of all-MiniLM-L6-v2 (norm, max, samples per tensor; a fixture
 * from tools/make_minilm_grad_fixture.py); the masked attention backward against double-precision central finite
 * differences of an independent double forward; frozen/head modes leave the fixed
 * parameters' gradients at zero; a short training run lowers the loss and a saved
 * classifier loads back with the same logits. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "include/ftq_bert_train.h"
#include "kernels/attention_enc.h"
#include "model/bert_internal.h"
#include "tests/bert_tiny.h"
#include "tests/test_util.h"

static const char *TINY = "golden/bert_tiny_random";

void bert_tiny_inputs(const cJSON *j, bert_tiny_batch *tb)
{
    const cJSON *rows = cJSON_GetObjectItem(j, "input_ids");
    tb->B = cJSON_GetArraySize(rows);
    tb->T = cJSON_GetArraySize(cJSON_GetArrayItem(rows, 0));
    CU_ASSERT_FATAL(tb->B == 3 && tb->T == 13);
    for (int b = 0; b < tb->B; b++) {
        size_t n = 0, nm = 0;
        int32_t *r = json_ints(cJSON_GetArrayItem(rows, b), &n);
        int32_t *mk = json_ints(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "attention_mask"), b), &nm);
        memcpy(tb->ids + b * tb->T, r, sizeof *r * n);
        tb->lens[b] = 0;
        for (size_t i = 0; i < nm; i++)
            tb->lens[b] += mk[i];
        tb->labels[b] = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "labels"), b)->valueint;
        free(r);
        free(mk);
    }
}

static void test_tiny_grads(void)
{
    cJSON *j = load_json(shared_path("golden/bert_tiny_random/golden.json"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    bert_tiny_batch tb;
    bert_tiny_inputs(j, &tb);
    ftq_bert *m = NULL;
    ASSERT_OK(ftq_bert_load(shared_path(TINY), &m));
    ftq_bert_ws *ws = NULL;
    ASSERT_OK(ftq_bert_ws_new(m, tb.B, tb.T, 1, &ws));
    ASSERT_OK(ftq_bert_forward(m, ws, tb.ids, NULL, tb.lens, tb.B, tb.T));
    float *g = calloc(ftq_bert_num_params(m), sizeof *g);
    double loss = 0;
    ASSERT_OK(ftq_bert_loss_grad(m, ws, tb.labels, g, 0, &loss));
    ASSERT_NEAR(loss, cJSON_GetObjectItem(j, "loss")->valuedouble, 2e-6);
    const cJSON *grads = cJSON_GetObjectItem(j, "grads");
    double worst = 0;
    int n_checked = 0;
    size_t off, numel;
    const char *name;
    for (int i = 0; (name = ftq_bert_tensor_info(m, i, &off, &numel)); i++) {
        const cJSON *e = cJSON_GetObjectItem(grads, name);
        CU_ASSERT_PTR_NOT_NULL(e);
        if (!e)
            continue;
        const cJSON *rows = cJSON_GetObjectItem(e, "rows"), *vals = cJSON_GetObjectItem(e, "values");
        double d = 0;
        if (rows) { /* word embeddings: only the rows of the ids used */
            int C = ftq_bert_get_config(m)->hidden, r = 0;
            const cJSON *row;
            cJSON_ArrayForEach(row, rows)
            {
                size_t n = 0;
                double *v = json_doubles(cJSON_GetArrayItem(vals, r++), &n);
                for (size_t k = 0; k < n; k++)
                    d = fmax(d, fabs(g[off + (size_t)row->valueint * C + k] - v[k]));
                free(v);
            }
        } else {
            size_t n = 0;
            double *v = json_doubles(vals, &n);
            CU_ASSERT(n == numel);
            for (size_t k = 0; k < n && k < numel; k++)
                d = fmax(d, fabs(g[off + k] - v[k]));
            free(v);
        }
        if (d > 3e-6)
            fprintf(stderr, "\n  %s: max |grad diff| %.3g", name, d);
        worst = fmax(worst, d);
        n_checked++;
    }
    ASSERT_INT_EQ(n_checked, 41);
    printf("\n    tiny bert: loss %.8f, max |grad diff| over 41 tensors %.3g ", loss, worst);
    CU_ASSERT(worst <= 3e-6); /* golden values carry 6 decimals */

    /* frozen: the embeddings and block 0 get nothing; head: only the classifier */
    for (int first = 1; first <= 3; first += 2) {
        memset(g, 0, sizeof *g * ftq_bert_num_params(m));
        ASSERT_OK(ftq_bert_loss_grad(m, ws, tb.labels, g, first, &loss));
        for (int i = 0; (name = ftq_bert_tensor_info(m, i, &off, &numel)); i++) {
            int fixed = first == 3 ? strncmp(name, "classifier.", 11) != 0
                                   : strstr(name, "embeddings.") || strstr(name, "layer.0.");
            double mx = 0;
            for (size_t k = 0; k < numel; k++)
                mx = fmax(mx, fabs(g[off + k]));
            if (fixed != (mx == 0))
                fprintf(stderr, "\n  first_layer %d: %s has max |grad| %.3g", first, name, mx);
            CU_ASSERT(fixed == (mx == 0));
        }
    }
    free(g);
    ftq_bert_ws_free(ws);
    ftq_bert_free(m);
    cJSON_Delete(j);
}

/* ---- all-MiniLM-L6-v2 against PyTorch ------------------------------------------------
 * tests/fixtures/minilm_grad/ref.json (tools/make_minilm_grad_fixture.py): the real model
 * with its pooler and the fixture's 2-label head, fp32, a right-padded batch of 3. Per
 * tensor the fixture has the gradient's L2 norm, max |g| and 8 elements; fp32 sums in a
 * different order over up to 1536-wide rows and 20 tokens differ by a few ulps of the
 * largest terms, so each tensor is compared at 1e-4 of its own max |g| (elements, max) and
 * 1e-4 relative (norm). The key biases' true gradient is 0 (see below). */
static void test_minilm_grads(void)
{
    cJSON *j = load_json(source_path("tests/fixtures/minilm_grad/ref.json"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    const cJSON *rows = cJSON_GetObjectItem(j, "input_ids");
    int B = cJSON_GetArraySize(rows), T = cJSON_GetArraySize(cJSON_GetArrayItem(rows, 0));
    CU_ASSERT_FATAL(B == 3 && T > 0 && T <= 64);
    int32_t ids[3 * 64], labels[3];
    int lens[3];
    for (int b = 0; b < B; b++) {
        size_t n = 0, nm = 0;
        int32_t *r = json_ints(cJSON_GetArrayItem(rows, b), &n);
        int32_t *mk = json_ints(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "attention_mask"), b), &nm);
        CU_ASSERT_FATAL(n == (size_t)T && nm == (size_t)T);
        memcpy(ids + b * T, r, sizeof *r * n);
        lens[b] = 0;
        for (size_t i = 0; i < nm; i++)
            lens[b] += mk[i];
        labels[b] = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "labels"), b)->valueint;
        free(r);
        free(mk);
    }
    ftq_bert *m = NULL;
    ASSERT_OK(ftq_bert_load(shared_path("models/all-MiniLM-L6-v2"), &m));
    ASSERT_OK(ftq_bert_add_head(m, 2, FTQ_POOL_POOLER, 1));
    size_t off, numel, hw_n = 0, hb_n = 0;
    double *hw = json_doubles(cJSON_GetObjectItem(j, "head_weight"), &hw_n);
    double *hb = json_doubles(cJSON_GetObjectItem(j, "head_bias"), &hb_n);
    int set = 0;
    const char *name;
    for (int i = 0; (name = ftq_bert_tensor_info(m, i, &off, &numel)); i++) {
        const double *src = !strcmp(name, "classifier.weight") ? hw : !strcmp(name, "classifier.bias") ? hb : NULL;
        size_t n = src == hw ? hw_n : hb_n;
        if (!src)
            continue;
        CU_ASSERT_FATAL(n == numel);
        for (size_t k = 0; k < numel; k++)
            ftq_bert_params(m)[off + k] = (float)src[k];
        set++;
    }
    ASSERT_INT_EQ(set, 2);
    free(hw);
    free(hb);

    ftq_bert_ws *ws = NULL;
    ASSERT_OK(ftq_bert_ws_new(m, B, T, 1, &ws));
    ASSERT_OK(ftq_bert_forward(m, ws, ids, NULL, lens, B, T));
    float *g = calloc(ftq_bert_num_params(m), sizeof *g);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    double loss = 0, ref_loss = cJSON_GetObjectItem(j, "loss")->valuedouble;
    ASSERT_OK(ftq_bert_loss_grad(m, ws, labels, g, 0, &loss));
    double dloss = fabs(loss - ref_loss) / fabs(ref_loss), dlogit = 0;
    CU_ASSERT(dloss <= 1e-5);
    for (int b = 0; b < B; b++) {
        size_t n = 0;
        double *z = json_doubles(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "logits"), b), &n);
        CU_ASSERT_FATAL(n == 2);
        for (int c = 0; c < 2; c++) /* logits ~1e-2: relative to the largest logit of the row */
            dlogit = fmax(dlogit, fabs(ws->logits[b * 2 + c] - z[c]) / fmax(fabs(z[0]), fabs(z[1])));
        free(z);
    }
    CU_ASSERT(dlogit <= 1e-5);

    const cJSON *grads = cJSON_GetObjectItem(j, "grads");
    double w_norm = 0, w_max = 0, w_el = 0, w_kb = 0;
    int n_checked = 0;
    for (int i = 0; (name = ftq_bert_tensor_info(m, i, &off, &numel)); i++) {
        /* the checkpoint's names have no "bert." prefix (HF's BertModel); the head has none */
        char hf[160];
        snprintf(hf, sizeof hf, "%s%s", strncmp(name, "classifier.", 11) && strncmp(name, "bert.", 5) ? "bert." : "",
                 name);
        const cJSON *e = cJSON_GetObjectItem(grads, hf);
        if (!e)
            fprintf(stderr, "\n  %s: not in the fixture", hf);
        CU_ASSERT_PTR_NOT_NULL(e);
        if (!e)
            continue;
        CU_ASSERT((size_t)cJSON_GetObjectItem(e, "numel")->valuedouble == numel);
        double ss = 0, mx = 0;
        for (size_t k = 0; k < numel; k++) {
            ss += (double)g[off + k] * g[off + k];
            mx = fmax(mx, fabs(g[off + k]));
        }
        double rnorm = cJSON_GetObjectItem(e, "norm")->valuedouble;
        double rmax = cJSON_GetObjectItem(e, "max_abs")->valuedouble;
        size_t hl = strlen(hf);
        if (hl > 4 && !strcmp(hf + hl - 4, "bias") && strstr(hf, "attention.self.key.")) {
            /* dL/d(key bias) is 0 exactly (q.(k + b) shifts a softmax row by a constant):
             * both sides hold rounding noise, so each must be tiny beside the key weight's */
            memcpy(hf + hl - 4, "weight", 7);
            const cJSON *kw = cJSON_GetObjectItem(grads, hf);
            CU_ASSERT_PTR_NOT_NULL_FATAL(kw);
            double scale = cJSON_GetObjectItem(kw, "max_abs")->valuedouble;
            CU_ASSERT(rmax <= 1e-6 * scale && mx <= 1e-6 * scale);
            w_kb = fmax(w_kb, mx / scale);
            n_checked++;
            continue;
        }
        CU_ASSERT_FATAL(rmax > 0);
        double dn = fabs(sqrt(ss) - rnorm) / rnorm, dm = fabs(mx - rmax) / rmax, de = 0;
        size_t ni = 0, nv = 0;
        int32_t *idx = json_ints(cJSON_GetObjectItem(e, "idx"), &ni);
        double *v = json_doubles(cJSON_GetObjectItem(e, "values"), &nv);
        CU_ASSERT(ni == 8 && nv == ni);
        for (size_t k = 0; k < ni && k < nv; k++) {
            CU_ASSERT_FATAL(idx[k] >= 0 && (size_t)idx[k] < numel);
            de = fmax(de, fabs(g[off + (size_t)idx[k]] - v[k]) / rmax);
        }
        free(idx);
        free(v);
        if (dn > 1e-4 || dm > 1e-4 || de > 1e-4)
            fprintf(stderr, "\n  %s: grad norm rel diff %.3g, max rel diff %.3g, element diff / max %.3g", name, dn,
                    dm, de);
        CU_ASSERT(dn <= 1e-4 && dm <= 1e-4 && de <= 1e-4);
        w_norm = fmax(w_norm, dn);
        w_max = fmax(w_max, dm);
        w_el = fmax(w_el, de);
        n_checked++;
    }
    ASSERT_INT_EQ(n_checked, cJSON_GetArraySize(grads));
    printf("\n    minilm: loss %.8f (rel diff %.2g), logits rel diff %.2g; over %d tensors max rel diff: "
           "grad norm %.2g, max |g| %.2g, elements / max |g| %.2g; key bias max |g| / key weight's %.2g ",
           loss, dloss, dlogit, n_checked, w_norm, w_max, w_el, w_kb);
    free(g);
    ftq_bert_ws_free(ws);
    ftq_bert_free(m);
    cJSON_Delete(j);
}

/* ---- attention backward vs finite differences --------------------------------------- */

enum { AB = 2, AT = 5, AH = 2, AHD = 3, ALD = AH * AHD, AN = AB * AT * ALD };

/* An independent double forward: objective sum(out * R). */
static double attn_objective(const double *q, const double *k, const double *v, const double *R, const int *lens)
{
    double obj = 0, scale = 1.0 / sqrt((double)AHD);
    for (int b = 0; b < AB; b++)
        for (int h = 0; h < AH; h++)
            for (int i = 0; i < AT; i++) {
                double s[AT], mx = -1e300, z = 0;
                for (int j = 0; j < lens[b]; j++) {
                    s[j] = 0;
                    for (int d = 0; d < AHD; d++)
                        s[j] += q[(b * AT + i) * ALD + h * AHD + d] * k[(b * AT + j) * ALD + h * AHD + d];
                    s[j] *= scale;
                    mx = fmax(mx, s[j]);
                }
                for (int j = 0; j < lens[b]; j++)
                    z += exp(s[j] - mx);
                for (int d = 0; d < AHD; d++) {
                    double o = 0;
                    for (int j = 0; j < lens[b]; j++)
                        o += exp(s[j] - mx) / z * v[(b * AT + j) * ALD + h * AHD + d];
                    obj += o * R[(b * AT + i) * ALD + h * AHD + d];
                }
            }
    return obj;
}

static void test_attention_backward_fd(void)
{
    int lens[AB] = {5, 3};
    double qd[AN], kd[AN], vd[AN], R[AN];
    float q[AN], k[AN], v[AN], dout[AN], out[AN], probs[AB * AH * AT * AT], dq[AN], dk[AN], dv[AN];
    ftq_rng r;
    ftq_rng_seed(&r, 7);
    for (int i = 0; i < AN; i++) {
        q[i] = ftq_rng_normal(&r);
        k[i] = ftq_rng_normal(&r);
        v[i] = ftq_rng_normal(&r);
        dout[i] = ftq_rng_normal(&r);
        qd[i] = q[i];
        kd[i] = k[i];
        vd[i] = v[i];
        R[i] = dout[i];
    }
    ftq_attention_enc_forward(out, probs, q, k, v, ALD, lens, AB, AT, AH, AHD);
    ftq_attention_enc_backward(dq, dk, dv, dout, probs, q, k, v, ALD, lens, AB, AT, AH, AHD);
    double worst = 0, h = 1e-6;
    double *xs[3] = {qd, kd, vd};
    float *gs[3] = {dq, dk, dv};
    for (int which = 0; which < 3; which++)
        for (int i = 0; i < AN; i++) {
            double keep = xs[which][i];
            xs[which][i] = keep + h;
            double fp = attn_objective(qd, kd, vd, R, lens);
            xs[which][i] = keep - h;
            double fm = attn_objective(qd, kd, vd, R, lens);
            xs[which][i] = keep;
            worst = fmax(worst, fabs((fp - fm) / (2 * h) - gs[which][i]));
        }
    printf("\n    attention backward vs FD: max |diff| %.3g ", worst);
    CU_ASSERT(worst <= 1e-5);
    /* rows past a sequence's length are padding: no gradient reaches their keys / values */
    CU_ASSERT(dk[(1 * AT + 4) * ALD] == 0.0f && dv[(1 * AT + 3) * ALD + 5] == 0.0f);
}

/* A few epochs on 16 SST-2 rows lower the loss; the saved BertForSequenceClassification
 * directory loads back ("bert." names, labels) and `ftq classify` scores it with the same
 * predictions as the in-memory model. */
static void test_train_save_classify(void)
{
    const char *dir = test_tmpdir("bert_train");
    char data[1024], out[1024], args[4096];
    snprintf(data, sizeof data, "%s/train.tsv", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    char *text = NULL;
    size_t len = 0;
    ASSERT_OK(ftq_read_file(shared_path("data/sst2/dev.tsv"), &text, &len));
    FILE *f = fopen(data, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    for (size_t i = 0, lines = 0; i < len && lines < 17; i++) {
        fputc(text[i], f);
        lines += text[i] == '\n';
    }
    fclose(f);
    free(text);
    snprintf(args, sizeof args,
             "finetune -m '%s' -d '%s' --dev '%s' -o '%s' --epochs 8 --batch 4 --seq 32 --lr 1e-3 --pool mean --json",
             shared_path(TINY), data, data, out);
    cJSON *j = ftq_run_json(args);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    double final = cJSON_GetObjectItem(j, "final_loss")->valuedouble;
    double dev_acc = cJSON_GetObjectItem(j, "accuracy")->valuedouble;
    ASSERT_INT_EQ(cJSON_GetObjectItem(j, "steps")->valueint, 32);
    CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(j, "arch")), "bert");
    /* train and dev are the same 16 rows: the same rows are cut to 32 tokens in both */
    ASSERT_INT_EQ(cJSON_GetObjectItem(j, "truncated")->valueint, cJSON_GetObjectItem(j, "dev_truncated")->valueint);
    CU_ASSERT(final < 0.69); /* below chance (ln 2) after fitting 16 rows */
    cJSON_Delete(j);

    ftq_bert *m = NULL;
    ASSERT_OK(ftq_bert_load(out, &m));
    const ftq_bert_config *c = ftq_bert_get_config(m);
    CU_ASSERT_STRING_EQUAL(c->prefix, "bert.");
    ASSERT_INT_EQ(c->num_labels, 2);
    CU_ASSERT_EQUAL(c->pool, FTQ_POOL_MEAN);
    ftq_bert_free(m);
    snprintf(args, sizeof args, "classify -m '%s' -d '%s' --json", out, data);
    j = ftq_run_json(args);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    ASSERT_NEAR(cJSON_GetObjectItem(j, "accuracy")->valuedouble, dev_acc, 1e-9);
    cJSON_Delete(j);
    /* options an encoder cannot take, each a one-line error naming it */
    snprintf(args, sizeof args, "finetune -m '%s' -d '%s' -o '%s/bad' --pool max", shared_path(TINY), data, dir);
    ftq_expect_error(args, "unknown pooling 'max'", NULL);
    snprintf(args, sizeof args, "finetune -m '%s' -d '%s' -o '%s/bad' --task lm", shared_path(TINY), data, dir);
    ftq_expect_error(args, "is an encoder", NULL);
    snprintf(args, sizeof args, "finetune -m '%s' -d '%s' -o '%s/bad' --pool mean", shared_path("models/stories260K"),
             data, dir);
    ftq_expect_error(args, "pooling 'mean' is for encoders", NULL);
    char bad[1100];
    snprintf(bad, sizeof bad, "%s/bad", dir);
    CU_ASSERT(!ftq_is_dir(bad)); /* nothing was written */
}

/* Sentence pairs: --text-col A --text2-col B train on [CLS] A [SEP] B [SEP]. */
static void test_train_pairs(void)
{
    const char *dir = test_tmpdir("bert_pairs");
    char data[1024], out[1024], args[4096];
    snprintf(data, sizeof data, "%s/pairs.tsv", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    FILE *f = fopen(data, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("premise\thypothesis\tlabel\n", f);
    static const char *const rows[][3] = {{"a man plays a guitar", "someone plays music", "yes"},
                                          {"a man plays a guitar", "nobody is playing", "no"},
                                          {"the cat sleeps", "an animal rests", "yes"},
                                          {"the cat sleeps", "the cat is running", "no"},
                                          {"children are in a park", "kids are outside", "yes"},
                                          {"children are in a park", "the children are asleep at home", "no"}};
    for (int i = 0; i < 6; i++)
        fprintf(f, "%s\t%s\t%s\n", rows[i][0], rows[i][1], rows[i][2]);
    fclose(f);
    snprintf(args, sizeof args,
             "finetune -m '%s' -d '%s' --dev '%s' -o '%s' --text-col premise --text2-col hypothesis --epochs 10 "
             "--batch 2 --seq 24 --lr 1e-3 --json",
             shared_path(TINY), data, data, out);
    cJSON *j = ftq_run_json(args);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    ASSERT_INT_EQ(cJSON_GetObjectItem(j, "steps")->valueint, 30);
    CU_ASSERT(isfinite(cJSON_GetObjectItem(j, "final_loss")->valuedouble));
    double acc = cJSON_GetObjectItem(j, "accuracy")->valuedouble;
    cJSON_Delete(j);
    snprintf(args, sizeof args, "classify -m '%s' -d '%s' --text-col premise --text2-col hypothesis --json", out, data);
    j = ftq_run_json(args);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    ASSERT_NEAR(cJSON_GetObjectItem(j, "accuracy")->valuedouble, acc, 1e-9);
    cJSON_Delete(j);
}

void test_register_bert_train(void)
{
    static const test_case cases[] = {{"tiny_grads", test_tiny_grads},
                                      {"minilm_grads", test_minilm_grads},
                                      {"attention_backward_fd", test_attention_backward_fd},
                                      {"train_save_classify", test_train_save_classify},
                                      {"train_pairs", test_train_pairs},
                                      {NULL, NULL}};
    test_add_suite("bert_train", cases);
}
