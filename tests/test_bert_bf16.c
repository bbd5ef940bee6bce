/* test_bert_bf16.c - bf16 mixed-precision training of BERT classifiers (finetune/bert_bf16.c
 * on kernels/linear_bf16.c): the loss and every gradient of bert_tiny_random against
 * PyTorch's (golden.json) within bf16 tolerances, and against fp32 (cosine); a loss curve
 * of all-MiniLM-L6-v2 on SST-2 rows against the fp32 curve; the SIMD path against the
 * scalar reference on the same model (SKIPPED where the CPU lacks it); the copies follow
 * the weights after an optimizer step; bit-identical on 1 and 2 threads; frozen mode; the
 * command line (full / frozen / head run, lora refused in one line). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "finetune/bert_bf16.h"
#include "finetune/tmodel.h"
#include "include/ftq_bert_train.h"
#include "model/bert_internal.h"
#include "tests/bert_tiny.h"
#include "tests/test_util.h"

#define TINY "golden/bert_tiny_random"

/* Attach a bf16 set for first_layer (the head is already there). */
static int attach(ftq_bert *m, int first_layer, int B, int T)
{
    int rc = ftq_bert_bf16_new(m, first_layer, B, T, &m->bf16);
    if (rc != FTQ_OK)
        fprintf(stderr, "\n  ftq_bert_bf16_new: %s\n", ftq_last_error());
    CU_ASSERT_EQUAL(rc, FTQ_OK);
    return rc == FTQ_OK;
}

static void detach(ftq_bert *m)
{
    if (m->bf16) {
        ftq_bf16_set_free(m->bf16);
        free(m->bf16);
        m->bf16 = NULL;
    }
}

/* Loss and gradients (into g, zeroed first) of one batch. */
static double loss_grads(ftq_bert *m, ftq_bert_ws *ws, const int32_t *ids, const int *lens, const int32_t *labels,
                         int B, int T, float *g, int first_layer)
{
    double loss = NAN;
    memset(g, 0, sizeof *g * ftq_bert_num_params(m));
    ASSERT_OK(ftq_bert_forward(m, ws, ids, NULL, lens, B, T));
    ASSERT_OK(ftq_bert_loss_grad(m, ws, labels, g, first_layer, &loss));
    return loss;
}

static double cosine(const float *a, const float *b, size_t n)
{
    double d = 0, na = 0, nb = 0;
    for (size_t i = 0; i < n; i++) {
        d += (double)a[i] * b[i];
        na += (double)a[i] * a[i];
        nb += (double)b[i] * b[i];
    }
    return d / sqrt(na * nb);
}

/* ---- against PyTorch's float32 gradients ------------------------------------------------------ */

/* bert_tiny_random's batch (golden.json: PyTorch fp32, 6 decimals; ftq's fp32 agrees to 3e-6,
 * bert_train:tiny_grads) in bf16, modes full and frozen (first block frozen). bf16 rounds
 * every matmul operand to 8 significant bits (relative error up to 2^-9 per value). The loss
 * is held to 1e-3 relative (measured 6.5e-6). Each tensor's gradient (L2 of the difference to
 * the golden) to 10 % of its own norm, plus 1e-3 of the whole gradient's norm (tensors whose
 * true gradient is ~0: the key biases' is exactly 0) plus the goldens' 6-decimal rounding.
 * Measured on AMX: 6.5 % for the pooler weight, 4.8 % for the classifier weight, 5.4 % for
 * the embeddings, 2-5 % for the rest: these gradients are sums over 3 rows that nearly cancel
 * (the random model gives the rows almost the same logits and the 3 labels differ), which
 * magnifies the operands' rounding. The gradient as a whole points where fp32's does (cosine
 * > 0.999, measured 0.99926) and is not fp32's bit for bit (the bf16 products ran). */
static void test_golden(void)
{
    cJSON *j = load_json(shared_path(TINY "/golden.json"));
    bert_tiny_batch tb;
    ftq_bert *m = NULL;
    ftq_bert_ws *ws = NULL;
    if (!j || (bert_tiny_inputs(j, &tb), 0) || ftq_bert_load(shared_path(TINY), &m) != FTQ_OK ||
        ftq_bert_ws_new(m, tb.B, tb.T, 1, &ws) != FTQ_OK) {
        CU_FAIL("cannot set up bert_tiny_random");
        goto done;
    }
    size_t np = ftq_bert_num_params(m);
    float *gf = malloc(sizeof(float) * np), *gb = malloc(sizeof(float) * np);
    for (int first = 0; first <= 1; first++) {
        double lf = loss_grads(m, ws, tb.ids, tb.lens, tb.labels, tb.B, tb.T, gf, first);
        if (!attach(m, first, tb.B, tb.T))
            break;
        double lb = loss_grads(m, ws, tb.ids, tb.lens, tb.labels, tb.B, tb.T, gb, first);
        detach(m);
        double want = cJSON_GetObjectItem(j, "loss")->valuedouble;
        ASSERT_NEAR(lb, want, 1e-3 * want);
        const cJSON *grads = cJSON_GetObjectItem(j, "grads");
        double gnorm = 0, worst = 0;
        for (size_t k = 0; k < np; k++)
            gnorm += (double)gf[k] * gf[k];
        gnorm = sqrt(gnorm);
        size_t off, numel;
        const char *name;
        int checked = 0;
        for (int i = 0; (name = ftq_bert_tensor_info(m, i, &off, &numel)); i++) {
            const cJSON *e = cJSON_GetObjectItem(grads, name);
            CU_ASSERT_PTR_NOT_NULL(e);
            if (!e || (first == 1 && (strstr(name, "embeddings.") || strstr(name, "layer.0."))))
                continue; /* frozen: no gradient (bert_train checks they stay zero) */
            const cJSON *rows = cJSON_GetObjectItem(e, "rows"), *vals = cJSON_GetObjectItem(e, "values");
            double d = 0, n = 0, cnt = 0;
            int C = ftq_bert_get_config(m)->hidden, r = 0;
            const cJSON *row;
            if (rows) { /* word embeddings: only the rows of the ids used */
                cJSON_ArrayForEach(row, rows)
                {
                    size_t nv = 0;
                    double *v = json_doubles(cJSON_GetArrayItem(vals, r++), &nv);
                    for (size_t k = 0; k < nv; k++, cnt++) {
                        double got = gb[off + (size_t)row->valueint * C + k];
                        d += (got - v[k]) * (got - v[k]);
                        n += v[k] * v[k];
                    }
                    free(v);
                }
            } else {
                size_t nv = 0;
                double *v = json_doubles(vals, &nv);
                CU_ASSERT(nv == numel);
                for (size_t k = 0; k < nv && k < numel; k++, cnt++) {
                    d += (gb[off + k] - v[k]) * (gb[off + k] - v[k]);
                    n += v[k] * v[k];
                }
                free(v);
            }
            double bound = 1e-1 * sqrt(n) + 1e-3 * gnorm + 5e-7 * sqrt(cnt);
            if (!(sqrt(d) <= bound))
                fprintf(stderr, "\n  first %d %s: |diff| %.3g, |g| %.3g, bound %.3g", first, name, sqrt(d), sqrt(n),
                        bound);
            CU_ASSERT(sqrt(d) <= bound);
            worst = fmax(worst, sqrt(d) / bound);
            checked++;
        }
        ASSERT_INT_EQ(checked, first ? 41 - 5 - 16 : 41);
        double cs = cosine(gb, gf, np);
        CU_ASSERT(cs > 0.999);
        CU_ASSERT(memcmp(gb, gf, sizeof(float) * np) != 0);
        fprintf(stderr, "[first %d, %s: loss rel %.1e (fp32 %.1e), worst tensor at %.2f of its bound, cosine %.6f] ",
                first, ftq_bf16_path_name(ftq_bf16_best_path()), fabs(lb - want) / want, fabs(lf - want) / want,
                worst, cs);
    }
    free(gf);
    free(gb);
done:
    ftq_bert_ws_free(ws);
    ftq_bert_free(m);
    cJSON_Delete(j);
}

/* ---- the fastest path against the scalar reference --------------------------------------------- */

/* The same tiny batch with the set's products on the scalar reference and on the best path
 * this CPU has. AVX512-BF16 adds in the reference's order: bit for bit. AMX adds each tile's
 * pairs in an order of its own (fp32 summation error over at most 64 terms, carried through
 * two blocks): loss within 1e-6, the whole gradient within 1e-5 relative (L2; measured
 * 7e-7), each tensor within 1e-4 of its own norm plus 1e-6 of the whole gradient's (the key
 * biases' true gradient is 0). Without a SIMD path both sides are the same code: SKIPPED. */
static void test_path_vs_scalar(void)
{
    ftq_bf16_path best = ftq_bf16_best_path();
    if (best == FTQ_BF16_SCALAR) {
        test_skip("bf16 SIMD path: this cpu (after FTQ_CPU_MASK) has neither amx-bf16 nor avx512-bf16 (has: %s)",
                  ftq_cpu_features_str());
        return;
    }
    cJSON *j = load_json(shared_path(TINY "/golden.json"));
    bert_tiny_batch tb;
    ftq_bert *m = NULL;
    ftq_bert_ws *ws = NULL;
    if (!j || (bert_tiny_inputs(j, &tb), 0) || ftq_bert_load(shared_path(TINY), &m) != FTQ_OK ||
        ftq_bert_ws_new(m, tb.B, tb.T, 1, &ws) != FTQ_OK || !attach(m, 0, tb.B, tb.T)) {
        CU_FAIL("cannot set up bert_tiny_random");
        goto done;
    }
    size_t np = ftq_bert_num_params(m);
    float *gs = malloc(sizeof(float) * np), *gp = malloc(sizeof(float) * np);
    m->bf16->path = FTQ_BF16_SCALAR;
    double ls = loss_grads(m, ws, tb.ids, tb.lens, tb.labels, tb.B, tb.T, gs, 0);
    m->bf16->path = best;
    double lp = loss_grads(m, ws, tb.ids, tb.lens, tb.labels, tb.B, tb.T, gp, 0);
    size_t off, numel;
    double worst = 0, dd = 0, ss = 0;
    for (size_t k = 0; k < np; k++) {
        dd += ((double)gp[k] - gs[k]) * ((double)gp[k] - gs[k]);
        ss += (double)gs[k] * gs[k];
    }
    const char *name;
    for (int i = 0; (name = ftq_bert_tensor_info(m, i, &off, &numel)); i++) {
        double d = 0, n = 0;
        for (size_t k = 0; k < numel; k++) {
            d += ((double)gp[off + k] - gs[off + k]) * ((double)gp[off + k] - gs[off + k]);
            n += (double)gs[off + k] * gs[off + k];
        }
        /* per tensor: 1e-4 of its own norm, plus 1e-6 of the whole gradient's (the key biases'
         * true gradient is 0: softmax ignores a constant added to every score) */
        int ok = sqrt(d) <= 1e-4 * sqrt(n) + 1e-6 * sqrt(ss);
        if (!ok)
            fprintf(stderr, "\n  %s: |diff| %.3g, |g| %.3g", name, sqrt(d), sqrt(n));
        CU_ASSERT(ok);
        worst = fmax(worst, sqrt(d) / (1e-4 * sqrt(n) + 1e-6 * sqrt(ss)));
    }
    double rel = sqrt(dd / ss);
    if (best == FTQ_BF16_AMX) {
        ASSERT_NEAR(lp, ls, 1e-6);
        CU_ASSERT(rel <= 1e-5);
    } else {
        CU_ASSERT(memcmp(&lp, &ls, sizeof lp) == 0);
        CU_ASSERT(memcmp(gs, gp, sizeof(float) * np) == 0);
    }
    fprintf(stderr, "[%s vs scalar: loss %.2g, gradient %.2g relative, worst tensor at %.2g of its bound] ",
            ftq_bf16_path_name(best),
            fabs(lp - ls), rel, worst);
    free(gs);
    free(gp);
done:
    ftq_bert_ws_free(ws);
    ftq_bert_free(m);
    cJSON_Delete(j);
}

/* ---- the copies follow the weights; threads ------------------------------------------------------ */

/* B x T ids of a synthetic batch for the tiny model (lengths T, T - 5, ...). */
static void synth(int32_t *ids, int *lens, int32_t *labels, int B, int T)
{
    for (int b = 0; b < B; b++) {
        lens[b] = T - 5 * b;
        labels[b] = b % 3;
        for (int t = 0; t < T; t++)
            ids[b * T + t] = t < lens[b] ? (t == 0 ? 101 : (b * 7919 + t * 104729) % 30000 + 100) : 0;
    }
}

/* The tiny model with a bf16 set and a workspace for a synthetic B x T batch. */
static int open_synth(int B, int T, int32_t *ids, int *lens, int32_t *labels, ftq_bert **m, ftq_bert_ws **ws)
{
    synth(ids, lens, labels, B, T);
    if (ftq_bert_load(shared_path(TINY), m) != FTQ_OK || ftq_bert_ws_new(*m, B, T, 1, ws) != FTQ_OK ||
        !attach(*m, 0, B, T)) {
        CU_FAIL("cannot set up bert_tiny_random");
        return 0;
    }
    return 1;
}

/* After a backward and an AdamW step the next forward is that of a new bf16 set made from
 * the updated weights, bit for bit (the trainable copies were refreshed, once: a second
 * forward gives the same bits). */
static void test_refresh(void)
{
    enum { B = 4, T = 40 };
    int32_t ids[B * T], labels[B];
    int lens[B];
    ftq_bert *m = NULL;
    ftq_bert_ws *ws = NULL;
    if (!open_synth(B, T, ids, lens, labels, &m, &ws))
        goto done;
    size_t np = ftq_bert_num_params(m);
    float *g = malloc(sizeof(float) * np), *mo = calloc(np, sizeof(float)), *v = calloc(np, sizeof(float));
    float z1[B * 3], z2[B * 3], z3[B * 3];
    loss_grads(m, ws, ids, lens, labels, B, T, g, 0);
    ftq_adamw_params ap = {0.9f, 0.999f, 1e-8f, 0.0f};
    ftq_adamw_update(ftq_bert_params(m), g, mo, v, np, 1e-2f, &ap, 1, 0);
    ASSERT_OK(ftq_bert_forward(m, ws, ids, NULL, lens, B, T));
    ASSERT_OK(ftq_bert_classify(m, ws, z1));
    ASSERT_OK(ftq_bert_forward(m, ws, ids, NULL, lens, B, T));
    ASSERT_OK(ftq_bert_classify(m, ws, z2));
    detach(m);
    if (attach(m, 0, B, T)) { /* fresh copies of the updated weights */
        ASSERT_OK(ftq_bert_forward(m, ws, ids, NULL, lens, B, T));
        ASSERT_OK(ftq_bert_classify(m, ws, z3));
        CU_ASSERT(memcmp(z1, z3, sizeof z1) == 0);
    }
    CU_ASSERT(memcmp(z1, z2, sizeof z1) == 0);
    free(g);
    free(mo);
    free(v);
done:
    ftq_bert_ws_free(ws);
    ftq_bert_free(m);
}

/* Loss and every gradient bit for bit on 1 and 2 threads (a bf16 output block is one
 * thread's, in one order; the fp32 kernels between are row- or column-parallel). */
static void test_threads(void)
{
    enum { B = 4, T = 48 };
    int32_t ids[B * T], labels[B];
    int lens[B];
    ftq_bert *m = NULL;
    ftq_bert_ws *ws = NULL;
    int saved = ftq_get_threads();
    if (!open_synth(B, T, ids, lens, labels, &m, &ws))
        goto done;
    size_t np = ftq_bert_num_params(m);
    float *g1 = malloc(sizeof(float) * np), *g2 = malloc(sizeof(float) * np);
    ftq_set_threads(1);
    double l1 = loss_grads(m, ws, ids, lens, labels, B, T, g1, 0);
    ftq_set_threads(2);
    double l2 = loss_grads(m, ws, ids, lens, labels, B, T, g2, 0);
    ftq_set_threads(saved);
    CU_ASSERT(memcmp(&l1, &l2, sizeof l1) == 0);
    CU_ASSERT(memcmp(g1, g2, sizeof(float) * np) == 0);
    free(g1);
    free(g2);
done:
    ftq_bert_ws_free(ws);
    ftq_bert_free(m);
}

/* ---- a loss curve on all-MiniLM-L6-v2 ------------------------------------------------------------- */

/* The first n rows of the shipped SST-2 sample ("sentence\tlabel"), tokenized to at most T. */
static int sst2_rows(const ftq_tokenizer *tk, int n, int T, int32_t *ids, int *lens, int32_t *labels)
{
    FILE *f = fopen(source_path("datasets/sst2_train_4k.tsv"), "r");
    char line[4096];
    int r = -1; /* the header */
    while (f && r < n && fgets(line, sizeof line, f)) {
        char *tab = strrchr(line, '\t');
        if (r++ < 0 || !tab)
            continue;
        *tab = 0;
        int32_t *t = NULL, *ty = NULL;
        size_t len = 0;
        int trunc = 0;
        if (ftq_bert_tokenize(tk, line, NULL, T, &t, &ty, &len, &trunc) != FTQ_OK) {
            r = -1;
            break;
        }
        memset(ids + (size_t)(r - 1) * T, 0, sizeof *ids * T);
        memcpy(ids + (size_t)(r - 1) * T, t, sizeof *t * len);
        lens[r - 1] = (int)len;
        labels[r - 1] = atoi(tab + 1);
        free(t);
        free(ty);
    }
    if (f)
        fclose(f);
    return r == n;
}

/* STEPS AdamW steps (lr 3e-4, mode frozen: the top FIRST.. blocks, pooler and a new head
 * train, which keeps the optimizer off the 11.7 M embedding floats and the test short) of
 * MiniLM, each on the next B rows of SST-2, fp32 and bf16 from the same weights: the bf16
 * loss is within 1 % of the fp32 loss at every step (measured 0.08 % on AMX) and both fall
 * by the same amount to within 0.02 nats. */
static void test_minilm_curve(void)
{
    enum { B = 8, T = 24, STEPS = 6, FIRST = 3 };
    ftq_bert *m = NULL;
    ftq_tokenizer *tk = NULL;
    ftq_bert_ws *ws = NULL;
    static int32_t ids[B * STEPS * T], labels[B * STEPS];
    static int lens[B * STEPS];
    if (ftq_bert_load(shared_path("models/all-MiniLM-L6-v2"), &m) != FTQ_OK ||
        ftq_tokenizer_load(shared_path("models/all-MiniLM-L6-v2"), &tk) != FTQ_OK ||
        ftq_bert_add_head(m, 2, FTQ_POOL_POOLER, 7) != FTQ_OK || ftq_bert_ws_new(m, B, T, 1, &ws) != FTQ_OK ||
        !sst2_rows(tk, B * STEPS, T, ids, lens, labels)) {
        CU_FAIL("cannot set up MiniLM and the SST-2 rows");
        goto done;
    }
    size_t np = ftq_bert_num_params(m), from = np, off, numel;
    const char *name;
    for (int i = 0; (name = ftq_bert_tensor_info(m, i, &off, &numel)); i++)
        if (strstr(name, "layer.3.") && off < from)
            from = off; /* the first trained float */
    float *w0 = malloc(sizeof(float) * np), *g = calloc(np, sizeof(float));
    float *mo = malloc(sizeof(float) * np), *v = malloc(sizeof(float) * np);
    memcpy(w0, ftq_bert_params(m), sizeof(float) * np);
    double curve[2][STEPS];
    ftq_adamw_params ap = {0.9f, 0.999f, 1e-8f, 0.0f};
    for (int prec = 0; prec < 2; prec++) {
        memcpy(ftq_bert_params(m), w0, sizeof(float) * np);
        memset(mo, 0, sizeof(float) * np);
        memset(v, 0, sizeof(float) * np);
        if (prec && !attach(m, FIRST, B, T))
            break;
        for (int s = 0; s < STEPS; s++) {
            int Tb = 1;
            for (int b = 0; b < B; b++)
                Tb = lens[s * B + b] > Tb ? lens[s * B + b] : Tb;
            int32_t bid[B * T];
            for (int b = 0; b < B; b++)
                memcpy(bid + b * Tb, ids + (size_t)(s * B + b) * T, sizeof *bid * Tb);
            memset(g + from, 0, sizeof(float) * (np - from));
            ASSERT_OK(ftq_bert_forward(m, ws, bid, NULL, lens + s * B, B, Tb));
            ASSERT_OK(ftq_bert_loss_grad(m, ws, labels + s * B, g, FIRST, &curve[prec][s]));
            ftq_adamw_update(ftq_bert_params(m) + from, g + from, mo, v, np - from, 3e-4f, &ap, s + 1, 0);
        }
        detach(m);
    }
    test_curves_agree(curve[0], curve[1], STEPS, 1e-2, 0.02);
    free(w0);
    free(g);
    free(mo);
    free(v);
done:
    ftq_bert_ws_free(ws);
    ftq_tokenizer_free(tk);
    ftq_bert_free(m);
}

/* ---- the command line ---------------------------------------------------------------------------- */

/* bf16 runs of the tiny encoder in modes full, frozen and head finish, report bf16 and a
 * finite loss; lora is refused in one line (the library refuses it too). */
static void test_cli(void)
{
    static const char *const modes[] = {"full", "frozen", "head"};
    char args[2048];
    for (int i = 0; i < 3; i++) {
        snprintf(args, sizeof args,
                 "finetune -m '%s' -d '%s' --dev '%s' --mode %s --precision bf16 --limit 48 --dev-limit 32 "
                 "--epochs 1 --batch 16 --seq 32 -o '%s/out' --json",
                 shared_path(TINY), source_path("datasets/sst2_train_4k.tsv"), source_path("datasets/sst2_dev.tsv"),
                 modes[i], test_tmpdir(modes[i]));
        cJSON *j = ftq_run_json(args);
        const cJSON *loss = cJSON_GetObjectItem(j, "final_loss"), *acc = cJSON_GetObjectItem(j, "accuracy");
        CU_ASSERT(cJSON_IsNumber(loss) && isfinite(loss->valuedouble) && loss->valuedouble > 0);
        CU_ASSERT(cJSON_IsNumber(acc));
        cJSON_Delete(j);
    }
    snprintf(args, sizeof args, "finetune -m '%s' -d '%s' --mode lora --precision bf16 -o '%s/out'", shared_path(TINY),
             source_path("datasets/sst2_dev.tsv"), test_tmpdir("bf16_lora"));
    ftq_expect_error(args, "--precision bf16 does not apply to --mode lora yet", NULL);
}

void test_register_bert_bf16(void)
{
    static const test_case cases[] = {
        {"golden", test_golden},
        {"path_vs_scalar", test_path_vs_scalar},
        {"refresh", test_refresh},
        {"threads", test_threads},
        {"minilm_curve", test_minilm_curve},
        {"cli", test_cli},
        {NULL, NULL},
    };
    test_add_suite("bert_bf16", cases);
}
