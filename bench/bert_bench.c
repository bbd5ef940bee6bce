/* bert_bench.c - `ftq_bench bert`: a BERT encoder's forward (inference) and full training
 * step (forward, backward, AdamW over every parameter) on B x T random tokens, for the given
 * directory (default the shared all-MiniLM-L6-v2), reported as tokens/s and as a fraction of
 * the sgemm rate measured in the same run. Medians; nothing is asserted. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "include/ftq.h"
#include "include/ftq_bert_train.h"

int ftq_bench_bert(int argc, char **argv)
{
    static char dflt[1024];
    snprintf(dflt, sizeof dflt, "%s/../shared/models/all-MiniLM-L6-v2", FTQ_SOURCE_DIR);
    const char *dir = dflt;
    int B = 32, T = 64, reps = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "-m") == 0)
            dir = argv[i + 1];
        else if (strcmp(argv[i], "--batch") == 0)
            B = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--seq") == 0)
            T = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--reps") == 0)
            reps = atoi(argv[i + 1]);
    }
    if (B < 1 || T < 2 || reps < 1 || reps > 16) {
        fprintf(stderr, "ftq_bench bert: bad --batch / --seq / --reps\n");
        return 2;
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
    if (rc) {
        fprintf(stderr, "ftq_bench bert: %s\n", ftq_last_error());
    } else {
        double N = (double)B * T, C = c->hidden, F = c->ffn;
        double matmul = c->n_layers * (4 * C * C + 2 * C * F), attn = 2.0 * c->n_layers * T * C;
        double fl_f = N * (2 * matmul + 2 * attn), fl_t = 3 * fl_f;
        double sg = ftq_bench_sgemm_gflops(B * T, c->hidden, c->hidden, 5);
        double mf = ftq_bench_median(tf, reps), mt = ftq_bench_median(tt, reps);
        printf("bert %s: B %d x T %d, %d threads\n", dir, B, T, ftq_get_threads());
        printf("  forward: %.3f s (%.0f tokens/s, %.1f GFLOP/s = %.2f of sgemm %.1f GFLOP/s)\n", mf, N / mf,
               fl_f / mf / 1e9, fl_f / mf / 1e9 / sg, sg);
        printf("  train step: %.3f s (%.0f tokens/s, %.1f GFLOP/s = %.2f of sgemm)\n", mt, N / mt, fl_t / mt / 1e9,
               fl_t / mt / 1e9 / sg);
    }
    free(ids);
    free(lab);
    free(lens);
    free(g);
    free(mo);
    free(vo);
    ftq_bert_ws_free(inf);
    ftq_bert_ws_free(tr);
    ftq_bert_free(m);
    return rc ? 1 : 0;
}
