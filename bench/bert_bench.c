/* bert_bench.c - `ftq_bench bert`: a BERT encoder's forward (inference) and full training
 * step (forward, backward, AdamW over every parameter) on B x T random tokens, for the given
 * directory (default the shared all-MiniLM-L6-v2) or a bert-base-shaped model with random
 * weights (--shape base: 12 layers, hidden 768, 12 heads, FFN 3072, written once to -o DIR),
 * reported as tokens/s and as a fraction of the sgemm rate measured in the same run.
 * --quant also quantizes the model to int8 and int4 (ftq_quantize_model) and times their
 * forward in the same run (int8 / int4 kernels; no training on quantized weights).
 * Medians; nothing is asserted. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench/bench.h"
#include "include/ftq.h"
#include "include/ftq_bert_train.h"

/* A random bert-base-shaped BertModel in dir (weights normal(0, 0.02), LayerNorm 1 / 0, as
 * HF's _init_weights), unless dir already holds one. */
static int write_base(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (ftq_is_file(path))
        return FTQ_OK;
    if (!ftq_is_dir(dir) && mkdir(dir, 0777) != 0)
        return ftq_set_error(FTQ_EIO, "cannot create '%s'", dir);
    enum { L = 12, C = 768, F = 3072, V = 30522, P = 512, Y = 2 };
    static const struct {
        const char *name;
        int d0, d1, kind; /* kind 0 normal, 1 ones, 2 zeros */
    } emb[] = {{"embeddings.word_embeddings.weight", V, C, 0}, {"embeddings.position_embeddings.weight", P, C, 0},
               {"embeddings.token_type_embeddings.weight", Y, C, 0}, {"embeddings.LayerNorm.weight", C, 0, 1},
               {"embeddings.LayerNorm.bias", C, 0, 2}},
      lay[] = {{"attention.self.query.weight", C, C, 0}, {"attention.self.query.bias", C, 0, 2},
               {"attention.self.key.weight", C, C, 0}, {"attention.self.key.bias", C, 0, 2},
               {"attention.self.value.weight", C, C, 0}, {"attention.self.value.bias", C, 0, 2},
               {"attention.output.dense.weight", C, C, 0}, {"attention.output.dense.bias", C, 0, 2},
               {"attention.output.LayerNorm.weight", C, 0, 1}, {"attention.output.LayerNorm.bias", C, 0, 2},
               {"intermediate.dense.weight", F, C, 0}, {"intermediate.dense.bias", F, 0, 2},
               {"output.dense.weight", C, F, 0}, {"output.dense.bias", C, 0, 2},
               {"output.LayerNorm.weight", C, 0, 1}, {"output.LayerNorm.bias", C, 0, 2}},
      pool[] = {{"pooler.dense.weight", C, C, 0}, {"pooler.dense.bias", C, 0, 2}};
    size_t nt = 5 + 16 * L + 2;
    ftq_tensor *t = calloc(nt, sizeof *t);
    char (*names)[96] = calloc(nt, sizeof *names);
    if (!t || !names) {
        free(t);
        free(names);
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    }
    ftq_rng r;
    ftq_rng_seed(&r, 1234);
    size_t k = 0;
    int rc = FTQ_OK;
    for (int part = 0; part < 3 && rc == FTQ_OK; part++) {
        int reps = part == 1 ? L : 1, ns = part == 0 ? 5 : part == 1 ? 16 : 2;
        for (int l = 0; l < reps && rc == FTQ_OK; l++)
            for (int i = 0; i < ns && rc == FTQ_OK; i++) {
                const char *nm = part == 0 ? emb[i].name : part == 1 ? lay[i].name : pool[i].name;
                int d0 = part == 0 ? emb[i].d0 : part == 1 ? lay[i].d0 : pool[i].d0;
                int d1 = part == 0 ? emb[i].d1 : part == 1 ? lay[i].d1 : pool[i].d1;
                int kind = part == 0 ? emb[i].kind : part == 1 ? lay[i].kind : pool[i].kind;
                if (part == 1)
                    snprintf(names[k], sizeof names[k], "encoder.layer.%d.%s", l, nm);
                else
                    snprintf(names[k], sizeof names[k], "%s", nm);
                size_t n = (size_t)d0 * (size_t)(d1 ? d1 : 1);
                float *w = malloc(n * sizeof *w);
                if (!w) {
                    rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
                    break;
                }
                for (size_t j = 0; j < n; j++)
                    w[j] = kind == 0 ? 0.02f * ftq_rng_normal(&r) : kind == 1 ? 1.0f : 0.0f;
                t[k].name = names[k];
                t[k].dtype = FTQ_DTYPE_F32;
                t[k].ndim = d1 ? 2 : 1;
                t[k].shape[0] = d0;
                t[k].shape[1] = d1;
                t[k].nbytes = n * sizeof(float);
                t[k].data = w;
                k++;
            }
    }
    if (rc == FTQ_OK)
        rc = ftq_st_write(path, t, k, NULL);
    for (size_t i = 0; i < k; i++)
        free(t[i].data);
    free(t);
    free(names);
    if (rc != FTQ_OK)
        return rc;
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *fp = fopen(path, "w");
    if (!fp)
        return FTQ_EIO;
    fprintf(fp, "{\n  \"architectures\": [\"BertModel\"],\n  \"model_type\": \"bert\",\n  \"hidden_size\": %d,\n"
                "  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": 12,\n  \"intermediate_size\": %d,\n"
                "  \"vocab_size\": %d,\n  \"max_position_embeddings\": %d,\n  \"type_vocab_size\": %d,\n"
                "  \"hidden_act\": \"gelu\",\n  \"layer_norm_eps\": 1e-12\n}\n",
            C, L, F, V, P, Y);
    return fclose(fp) == 0 ? FTQ_OK : ftq_set_error(FTQ_EIO, "cannot write '%s'", path);
}

/* Median forward seconds of a model directory on ids (reps after one warm-up). */
static int time_forward(const char *dir, const int32_t *ids, const int *lens, int B, int T, int reps, double *med)
{
    ftq_bert *m = NULL;
    ftq_bert_ws *ws = NULL;
    double t[16];
    int rc = ftq_bert_load(dir, &m);
    if (rc == FTQ_OK)
        rc = ftq_bert_ws_new(m, B, T, 0, &ws);
    for (int k = 0; k <= reps && rc == FTQ_OK; k++) {
        double t0 = ftq_time_sec();
        rc = ftq_bert_forward(m, ws, ids, NULL, lens, B, T);
        if (k)
            t[k - 1] = ftq_time_sec() - t0;
    }
    if (rc == FTQ_OK)
        *med = ftq_bench_median(t, reps);
    ftq_bert_ws_free(ws);
    ftq_bert_free(m);
    return rc;
}

int ftq_bench_bert(int argc, char **argv)
{
    static char dflt[1024];
    snprintf(dflt, sizeof dflt, "%s/../shared/models/all-MiniLM-L6-v2", FTQ_SOURCE_DIR);
    const char *dir = dflt, *shape = NULL, *out = "/tmp/ftq_bench_bert_base";
    int B = 32, T = 64, reps = 5, quant = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quant") == 0)
            quant = 1;
        else if (i + 1 >= argc)
            break;
        else if (strcmp(argv[i], "-m") == 0)
            dir = argv[++i];
        else if (strcmp(argv[i], "--shape") == 0)
            shape = argv[++i];
        else if (strcmp(argv[i], "-o") == 0)
            out = argv[++i];
        else if (strcmp(argv[i], "--batch") == 0)
            B = atoi(argv[++i]);
        else if (strcmp(argv[i], "--seq") == 0)
            T = atoi(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0)
            reps = atoi(argv[++i]);
    }
    if (B < 1 || T < 2 || reps < 1 || reps > 16 || (shape && strcmp(shape, "base") != 0)) {
        fprintf(stderr, "ftq_bench bert: bad --batch / --seq / --reps / --shape (base)\n");
        return 2;
    }
    if (shape) {
        int wr = write_base(out);
        if (wr != FTQ_OK) {
            fprintf(stderr, "ftq_bench bert: cannot write the bert-base-shaped model to '%s': %s\n", out,
                    ftq_last_error());
            return 1;
        }
        dir = out;
    }
    ftq_bert *m = NULL;
    ftq_bert_ws *inf = NULL, *tr = NULL;
    if (ftq_bert_load(dir, &m) != FTQ_OK || ftq_bert_add_head(m, 2, FTQ_POOL_POOLER, 1) != FTQ_OK ||
        ftq_bert_ws_new(m, B, T, 0, &inf) != FTQ_OK || ftq_bert_ws_new(m, B, T, 1, &tr) != FTQ_OK) {
        fprintf(stderr, "ftq_bench bert: %s\n", ftq_last_error());
        return 1;
    }
    const ftq_bert_config *c = ftq_bert_get_config(m);
    int32_t *ids = malloc(sizeof *ids * (size_t)B * T), *lab = malloc(sizeof *lab * (size_t)B);
    int *lens = malloc(sizeof *lens * (size_t)B);
    size_t np = ftq_bert_num_params(m);
    float *g = calloc(np, sizeof *g), *mo = calloc(np, sizeof *mo), *vo = calloc(np, sizeof *vo);
    ftq_rng r;
    ftq_rng_seed(&r, 7);
    for (int i = 0; i < B * T; i++)
        ids[i] = (int32_t)(ftq_rng_u64(&r) % (uint64_t)c->vocab_size);
    for (int b = 0; b < B; b++) {
        lens[b] = T;
        lab[b] = b % 2;
    }
    double tf[16], tt[16], loss = 0;
    ftq_adamw_params ap = {0.9f, 0.999f, 1e-8f, 0.0f};
    int rc = 0;
    for (int k = 0; k <= reps && !rc; k++) { /* k = 0 warms up */
        double t0 = ftq_time_sec();
        rc = ftq_bert_forward(m, inf, ids, NULL, lens, B, T);
        double t1 = ftq_time_sec();
        memset(g, 0, sizeof *g * np);
        if (!rc)
            rc = ftq_bert_forward(m, tr, ids, NULL, lens, B, T);
        if (!rc)
            rc = ftq_bert_loss_grad(m, tr, lab, g, 0, &loss);
        ftq_grad_clip(g, np, 1.0);
        ftq_adamw_update(ftq_bert_params(m), g, mo, vo, np, 1e-6f, &ap, k + 1, 1);
        double t2 = ftq_time_sec();
        if (k) {
            tf[k - 1] = t1 - t0;
            tt[k - 1] = t2 - t1;
        }
    }
    double N = (double)B * T, C = c->hidden, F = c->ffn;
    double matmul = c->n_layers * (4 * C * C + 2 * C * F), attn = 2.0 * c->n_layers * T * C;
    double fl_f = N * (2 * matmul + 2 * attn), fl_t = 3 * fl_f;
    double mf = 0, mt = 0, sg = 0;
    if (rc) {
        fprintf(stderr, "ftq_bench bert: %s\n", ftq_last_error());
    } else {
        sg = ftq_bench_sgemm_gflops(B * T, c->hidden, c->hidden, 5);
        mf = ftq_bench_median(tf, reps);
        mt = ftq_bench_median(tt, reps);
        printf("bert %s: L %d, hidden %d, heads %d, ffn %d; B %d x T %d, %d threads\n", dir, c->n_layers, c->hidden,
               c->n_heads, c->ffn, B, T, ftq_get_threads());
        printf("  forward: %.3f s (%.0f tokens/s, %.1f GFLOP/s = %.2f of sgemm %.1f GFLOP/s)\n", mf, N / mf,
               fl_f / mf / 1e9, fl_f / mf / 1e9 / sg, sg);
        printf("  train step: %.3f s (%.0f tokens/s, %.1f GFLOP/s = %.2f of sgemm)\n", mt, N / mt, fl_t / mt / 1e9,
               fl_t / mt / 1e9 / sg);
    }
    free(g);
    free(mo);
    free(vo);
    ftq_bert_ws_free(inf);
    ftq_bert_ws_free(tr);
    ftq_bert_free(m);
    for (int q = 0; quant && !rc && q < 2; q++) {
        char qdir[4200];
        snprintf(qdir, sizeof qdir, "%s.bench-int%d", shape ? out : "/tmp/ftq_bench_bert", q ? 4 : 8);
        ftq_remove_tree(qdir);
        ftq_quantize_params qp = ftq_quantize_default_params();
        qp.bits = q ? 4 : 8;
        ftq_quantize_report rep;
        double mq = 0;
        rc = ftq_quantize_model(dir, qdir, &qp, &rep);
        if (!rc) {
            ftq_quantize_report_free(&rep);
            rc = time_forward(qdir, ids, lens, B, T, reps, &mq);
        }
        ftq_remove_tree(qdir);
        if (rc)
            fprintf(stderr, "ftq_bench bert: int%d: %s\n", q ? 4 : 8, ftq_last_error());
        else
            printf("  forward int%d: %.3f s (%.0f tokens/s, %.2fx f32)\n", q ? 4 : 8, mq, N / mq, mf / mq);
    }
    free(ids);
    free(lab);
    free(lens);
    return rc ? 1 : 0;
}
