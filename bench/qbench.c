/* qbench.c - ftq_bench qmatmul: speed of y = x W^T with W in f32 (the model's
 * ftq_linear_f32, and OpenBLAS sgemv / sgemm directly) and in the int8 / int4 formats of
 * kernels/qlinear.h, for the linear shapes of a 110M Llama. Per shape and T: median time
 * of --reps repetitions (each long enough to time), GFLOP/s (2 T in out / t) and GB/s of
 * weight bytes (what the product must stream: the bound that matters at T = 1).
 *
 * T = 1 is measured twice: "dram" cycles through enough copies of the weights to exceed
 * the last-level cache several times over (generation: every weight comes from memory once
 * per token), "hot" repeats one matrix (the upper bound when it fits in cache). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "bench/bench.h"
#include "include/ftq.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"

enum { M_F32_LINEAR, M_F32_BLAS, M_QUANT };

typedef struct {
    const char *name;
    int kind;
    ftq_qscheme scheme;
    int group, ab;
} method;

static const method methods[] = {
    {"f32 ftq_linear", M_F32_LINEAR, 0, 0, 0},
    {"f32 openblas", M_F32_BLAS, 0, 0, 0},
    {"q8 g32", M_QUANT, FTQ_QSCHEME_Q8, 32, 32},
    {"q8 g128 ab128", M_QUANT, FTQ_QSCHEME_Q8, 128, 128},
    {"q8 row ab128", M_QUANT, FTQ_QSCHEME_Q8, FTQ_QGROUP_ROW, 128},
    {"q4 g32", M_QUANT, FTQ_QSCHEME_Q4, 32, 32},
    {"q4a g32", M_QUANT, FTQ_QSCHEME_Q4A, 32, 32},
    {"q4a g128", M_QUANT, FTQ_QSCHEME_Q4A, 128, 32},
    {"q4a g128 ab128", M_QUANT, FTQ_QSCHEME_Q4A, 128, 128},
    {"q5 g32", M_QUANT, FTQ_QSCHEME_Q5, 32, 32},         /* on the q8 kernels */
    {"q6k", M_QUANT, FTQ_QSCHEME_Q6K, 256, 32},          /* super-blocks: in % 256 == 0 */
    {"q4k", M_QUANT, FTQ_QSCHEME_Q4K, 256, 32},
};
#define NMETHODS (int)(sizeof methods / sizeof methods[0])

#define DRAM_BYTES (256u << 20) /* rotate copies of W over at least this much memory */
#define MIN_REP_SEC 0.02

typedef struct {
    int ncopies;
    float **f32;   /* ncopies f32 matrices */
    ftq_qmat *q;   /* ncopies packed matrices (sharing nothing) */
    size_t bytes;  /* weight bytes of one copy */
} weights;

static void free_weights(weights *w)
{
    for (int i = 0; i < w->ncopies; i++) {
        if (w->f32)
            free(w->f32[i]);
        if (w->q)
            ftq_qmat_free(&w->q[i]);
    }
    free(w->f32);
    free(w->q);
    memset(w, 0, sizeof *w);
}

/* One copy from `src`, then enough clones to span DRAM_BYTES when dram is set. */
static int make_weights(weights *w, const method *me, const float *src, int out, int in, int dram)
{
    memset(w, 0, sizeof *w);
    ftq_qmat first;
    if (me->kind == M_QUANT) {
        ftq_quant_params p = ftq_quant_default_params();
        p.scheme = me->scheme;
        p.group = me->group;
        if (ftq_qmat_quantize(&first, src, out, in, &p, me->ab) != FTQ_OK)
            return -1;
        w->bytes = ftq_qmat_bytes(&first);
    } else {
        w->bytes = (size_t)out * in * sizeof(float);
    }
    w->ncopies = dram ? (int)((DRAM_BYTES + w->bytes - 1) / w->bytes) : 1;
    if (me->kind == M_QUANT) {
        w->q = calloc((size_t)w->ncopies, sizeof(ftq_qmat));
        if (!w->q)
            return -1;
        w->q[0] = first;
        for (int i = 1; i < w->ncopies; i++)
            if (ftq_qmat_clone(&w->q[i], &first) != FTQ_OK)
                return -1;
    } else {
        w->f32 = calloc((size_t)w->ncopies, sizeof(float *));
        if (!w->f32)
            return -1;
        for (int i = 0; i < w->ncopies; i++) {
            w->f32[i] = malloc(w->bytes);
            if (!w->f32[i])
                return -1;
            memcpy(w->f32[i], src, w->bytes);
        }
    }
    return 0;
}

static void run(const method *me, const weights *w, int c, ftq_qpath path, float *y, const float *x,
                int T, int out, int in, void *scratch)
{
    switch (me->kind) {
    case M_F32_LINEAR:
        ftq_linear_f32(y, x, w->f32[c], NULL, T, in, out);
        break;
    case M_F32_BLAS:
        if (T == 1)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, w->f32[c], in, x, 1, 0.0f, y, 1);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, out, in, 1.0f, x, in, w->f32[c], in,
                        0.0f, y, out);
        break;
    default:
        ftq_qmat_mul_path(path, y, x, &w->q[c], NULL, T, scratch);
        break;
    }
}

/* Calls per repetition so that one repetition lasts about MIN_REP_SEC (and, cycling
 * copies, touches every copy). */
static int calls_per_rep(const method *me, const weights *w, ftq_qpath path, float *y, const float *x,
                         int T, int out, int in, void *scratch)
{
    run(me, w, 0, path, y, x, T, out, in, scratch); /* warm up (page faults, thread pools) */
    double t0 = ftq_time_sec();
    run(me, w, 0, path, y, x, T, out, in, scratch);
    double one = ftq_time_sec() - t0;
    int n = one > 0.0 ? (int)(MIN_REP_SEC / one) + 1 : 1000;
    return n < w->ncopies ? w->ncopies : n;
}

/* Seconds per product of one repetition of n calls, cycling through the copies. */
static double time_rep(const method *me, const weights *w, int *c, int n, ftq_qpath path, float *y,
                       const float *x, int T, int out, int in, void *scratch)
{
    double t0 = ftq_time_sec();
    for (int i = 0; i < n; i++) {
        *c = *c + 1 < w->ncopies ? *c + 1 : 0;
        run(me, w, *c, path, y, x, T, out, in, scratch);
    }
    return (ftq_time_sec() - t0) / n;
}

static int parse_int(const char *opt, const char *v, int lo, int hi, int *out)
{
    char *end = NULL;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < lo || x > hi) {
        fprintf(stderr, "ftq_bench qmatmul: %s expects an integer in [%d, %d], got '%s'\n", opt, lo, hi, v);
        return -1;
    }
    *out = (int)x;
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: ftq_bench qmatmul [--reps N] [--threads N] [--path auto|scalar|avx2|avxvnni|avx512vnni]\n"
                    "                         [--T 1,512] [--shapes 768x768,2048x768,768x2048,32000x768] [--json]\n"
                    "W is [out, in] (nn.Linear); y[T, out] = x[T, in] W^T. Every number is a median of --reps.\n");
}

int ftq_bench_qmatmul(int argc, char **argv)
{
    const char *env = getenv("FTQ_THREADS");
    int reps = 7, threads = env ? atoi(env) : 0, json = 0;
    ftq_qpath path = FTQ_QPATH_AUTO;
    int Ts[8] = {1, 512}, nT = 2;
    int shapes[16][2] = {{768, 768}, {2048, 768}, {768, 2048}, {32000, 768}}, nshapes = 4;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) {
            json = 1;
            continue;
        }
        if (!v || strncmp(a, "--", 2) != 0) {
            usage();
            return 2;
        }
        i++;
        if (strcmp(a, "--reps") == 0) {
            if (parse_int(a, v, 1, 1000, &reps))
                return 2;
        } else if (strcmp(a, "--threads") == 0) {
            if (parse_int(a, v, 0, 1024, &threads))
                return 2;
        } else if (strcmp(a, "--path") == 0) {
            int p = 0;
            while (p < FTQ_QPATH_COUNT && strcmp(ftq_qpath_name((ftq_qpath)p), v) != 0)
                p++;
            if (p == FTQ_QPATH_COUNT) {
                fprintf(stderr, "ftq_bench qmatmul: unknown path '%s'\n", v);
                return 2;
            }
            path = (ftq_qpath)p;
        } else if (strcmp(a, "--T") == 0 || strcmp(a, "--shapes") == 0) {
            char buf[256];
            snprintf(buf, sizeof buf, "%s", v);
            int n = 0;
            for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
                if (a[2] == 'T') {
                    if (n == 8 || parse_int(a, tok, 1, 1 << 16, &Ts[n]))
                        return 2;
                } else {
                    char *x = strchr(tok, 'x');
                    if (n == 16 || !x) {
                        fprintf(stderr, "ftq_bench qmatmul: --shapes expects OUTxIN, got '%s'\n", tok);
                        return 2;
                    }
                    *x = '\0';
                    if (parse_int(a, tok, 1, 1 << 20, &shapes[n][0]) || parse_int(a, x + 1, 1, 1 << 20, &shapes[n][1]))
                        return 2;
                }
                n++;
            }
            *(a[2] == 'T' ? &nT : &nshapes) = n;
        } else {
            usage();
            return 2;
        }
    }
    if (!ftq_qpath_supported(path)) {
        fprintf(stderr, "ftq_bench qmatmul: path '%s' is not supported by this cpu (%s)\n", ftq_qpath_name(path),
                ftq_cpu_features_str());
        return 2;
    }
    ftq_set_threads(threads);
    const ftq_qpath used = path == FTQ_QPATH_AUTO ? ftq_qpath_best() : path;
    if (!json)
        printf("qmatmul: cpu [%s], quantized path %s, %d threads, median of %d reps\n"
               "%-11s %5s %-5s %-15s %10s %9s %9s %7s\n",
               ftq_cpu_features_str(), ftq_qpath_name(used), ftq_get_threads(), reps, "W[out,in]", "T", "mode",
               "method", "ms", "GFLOP/s", "GB/s(W)", "vs f32");
    ftq_rng rng;
    ftq_rng_seed(&rng, 99);
    int rc = 0;
    for (int si = 0; si < nshapes && rc == 0; si++) {
        const int out = shapes[si][0], in = shapes[si][1];
        float *W = malloc(sizeof(float) * (size_t)out * in);
        if (!W)
            return 1;
        for (size_t i = 0; i < (size_t)out * in; i++)
            W[i] = 0.02f * ftq_rng_normal(&rng);
        for (int ti = 0; ti < nT && rc == 0; ti++) {
            const int T = Ts[ti];
            float *x = malloc(sizeof(float) * (size_t)T * in), *y = malloc(sizeof(float) * (size_t)T * out);
            for (size_t i = 0; i < (size_t)T * in; i++)
                x[i] = ftq_rng_normal(&rng);
            for (int mode = 0; mode < (T == 1 ? 2 : 1) && rc == 0; mode++) {
                const int dram = T == 1 && mode == 0;
                weights w[NMETHODS];
                void *scratch[NMETHODS] = {0};
                int calls[NMETHODS], cur[NMETHODS] = {0};
                double *t = malloc(sizeof(double) * NMETHODS * (size_t)reps);
                memset(w, 0, sizeof w);
                for (int mi = 0; mi < NMETHODS && rc == 0; mi++) {
                    const method *me = &methods[mi];
                    if (make_weights(&w[mi], me, W, out, in, dram) != 0) {
                        fprintf(stderr, "ftq_bench qmatmul: cannot prepare %s %dx%d: %s\n", me->name, out, in,
                                ftq_last_error());
                        rc = 1;
                        break;
                    }
                    if (me->kind == M_QUANT)
                        scratch[mi] = malloc(ftq_qmat_scratch_bytes(&w[mi].q[0], T));
                    calls[mi] = calls_per_rep(me, &w[mi], path, y, x, T, out, in, scratch[mi]);
                }
                /* methods interleaved within each repetition, so a change in machine load
                 * hits all of them alike */
                for (int r = 0; r < reps && rc == 0; r++)
                    for (int mi = 0; mi < NMETHODS; mi++)
                        t[mi * reps + r] = time_rep(&methods[mi], &w[mi], &cur[mi], calls[mi], path, y, x, T, out,
                                                    in, scratch[mi]);
                double f32_sec = 0.0;
                for (int mi = 0; mi < NMETHODS && rc == 0; mi++) {
                    const method *me = &methods[mi];
                    double sec = ftq_bench_median(t + mi * reps, reps);
                    if (mi == 0)
                        f32_sec = sec;
                    double gflops = 2.0 * T * (double)out * in / sec * 1e-9, gbs = (double)w[mi].bytes / sec * 1e-9;
                    const char *mname = T == 1 ? (dram ? "dram" : "hot") : "-";
                    if (json)
                        printf("{\"out\": %d, \"in\": %d, \"T\": %d, \"mode\": \"%s\", \"method\": \"%s\", \"path\": \"%s\", "
                               "\"ms\": %.6f, \"gflops\": %.3f, \"weight_gbs\": %.3f, \"weight_bytes\": %zu, "
                               "\"speedup_vs_f32\": %.3f}\n",
                               out, in, T, mname, me->name, me->kind == M_QUANT ? ftq_qpath_name(used) : "f32",
                               sec * 1e3, gflops, gbs, w[mi].bytes, f32_sec / sec);
                    else
                        printf("%5dx%-5d %5d %-5s %-15s %10.4f %9.1f %9.1f %6.2fx\n", out, in, T, mname, me->name,
                               sec * 1e3, gflops, gbs, f32_sec / sec);
                }
                fflush(stdout);
                for (int mi = 0; mi < NMETHODS; mi++) {
                    free(scratch[mi]);
                    free_weights(&w[mi]);
                }
                free(t);
            }
            free(x);
            free(y);
        }
        free(W);
    }
    return rc;
}
