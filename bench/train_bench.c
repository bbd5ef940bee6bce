/* train_bench.c - `ftq_bench train`: a full fine-tuning step (forward + backward + AdamW over
 * every parameter, causal LM loss) of the GPT-2 124M and 110M Llama shapes at B x T tokens,
 * reported as tokens/s, time per step, model-FLOPs utilization against the sgemm rate
 * measured in the same run, and peak RSS (each model and precision in its own process).
 * Medians. --precision both runs fp32 then bf16 per model and prints the bf16 / fp32 ratio
 * of tokens/s measured in the same run.
 * `--lora R`: a LoRA step instead (rank R on all linears, AdamW over the adapters only) on
 * the 110M Llama shape with an f32, int8 and int4 base (QLoRA); MFU then counts the full
 * model's FLOPs although no weight gradient of the base is computed. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench.h"
#include "include/ftq.h"
#include "kernels/gemm_bf16.h"

/* Model FLOPs of one training step on B*T tokens: 6 x (matmul parameters, incl. the
 * output layer) per token, plus the causal attention matmuls (forward 2 x layers x T x
 * hidden per token on average, backward twice that). */
static double step_flops(const ftq_model_config *c, int B, int T)
{
    double H = c->hidden_size, F = c->intermediate_size, q = (double)c->n_heads * c->head_dim;
    double kv = (double)c->n_kv_heads * c->head_dim;
    double per_layer = H * q + 2 * H * kv + q * H + (c->arch == FTQ_ARCH_GPT2 ? 2 * H * F : 3 * H * F);
    double matmul = c->n_layers * per_layer + H * c->vocab_size;
    double attn = 2.0 * c->n_layers * (double)T * q;
    return (double)B * T * (6.0 * matmul + 3.0 * attn);
}

/* Written by the child (one double: tokens/s) so the parent can print ratios. */
static int one_model(const char *dir, const char *name, int B, int T, int steps, double sg, int lora_r,
                     ftq_precision prec, int result_fd)
{
    ftq_model *m = NULL;
    ftq_tmodel *tm = NULL;
    if (ftq_model_load(dir, &m) != FTQ_OK) {
        fprintf(stderr, "ftq_bench train: %s (run 'ftq_bench models' first)\n", ftq_last_error());
        return 1;
    }
    ftq_tmodel_params tp = ftq_tmodel_default_params();
    tp.task = FTQ_TASK_LM;
    tp.mode = lora_r ? FTQ_TRAIN_LORA : FTQ_TRAIN_FULL;
    tp.lora.r = lora_r ? lora_r : 8;
    tp.lora.alpha = 2.0 * tp.lora.r;
    tp.lora.targets = "all-linear";
    tp.max_batch = B;
    tp.max_seq = T;
    tp.precision = prec;
    if (ftq_tmodel_new(m, &tp, &tm) != FTQ_OK) {
        fprintf(stderr, "ftq_bench train: %s\n", ftq_last_error());
        ftq_model_free(m);
        return 1;
    }
    const ftq_model_config *c = ftq_tmodel_config(tm);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)B * T), *tg = malloc(sizeof(int32_t) * (size_t)B * T);
    ftq_rng rng;
    ftq_rng_seed(&rng, 7);
    for (int i = 0; i < B * T; i++)
        ids[i] = (int32_t)(ftq_rng_u64(&rng) % (uint64_t)c->vocab_size);
    for (int i = 0; i < B * T; i++)
        tg[i] = (i + 1) % T ? ids[i + 1] : FTQ_IGNORE_INDEX;
    size_t np = 0, ng = 0;
    float *p = ftq_tmodel_param_buffer(tm, &np), *g = ftq_tmodel_grad_buffer(tm, &ng);
    size_t off = ftq_tmodel_trainable_offset(tm);
    float *mo = calloc(ng, sizeof(float)), *v = calloc(ng, sizeof(float));
    ftq_adamw_params ap = {0.9f, 0.999f, 1e-8f, 0.0f};
    double t[64], fwd[64];
    int rc = 0;
    if (steps > 64)
        steps = 64;
    for (int s = -1; s < steps && rc == 0; s++) { /* step -1 warms up */
        double t0 = ftq_time_sec();
        float loss = 0;
        ftq_tmodel_zero_grad(tm);
        rc |= ftq_tmodel_forward(tm, ids, NULL, B, T, tg, &loss, NULL);
        double t1 = ftq_time_sec();
        rc |= ftq_tmodel_backward(tm, 1.0f);
        ftq_adamw_update(p + off, g, mo, v, ng, 1e-5f, &ap, s + 2, 1);
        if (s >= 0) {
            t[s] = ftq_time_sec() - t0;
            fwd[s] = t1 - t0;
        }
    }
    if (rc) {
        fprintf(stderr, "ftq_bench train: %s\n", ftq_last_error());
    } else {
        double ts = ftq_bench_median(t, steps), tf = ftq_bench_median(fwd, steps), fl = step_flops(c, B, T);
        printf("%-12s %-5s %9.1fM %10.3f %8.3f %10.1f %10.1f %9.1f%% %10.0f\n", name, ftq_precision_name(prec),
               np / 1e6, ts, tf, B * T / ts, fl / ts / 1e9, 100.0 * fl / ts / 1e9 / sg, ftq_peak_rss_bytes() / 1e6);
        fflush(stdout); /* the caller _exits */
        double tps = B * T / ts;
        if (result_fd >= 0 && write(result_fd, &tps, sizeof tps) != (ssize_t)sizeof tps)
            rc = 1;
    }
    free(ids);
    free(tg);
    free(mo);
    free(v);
    ftq_tmodel_free(tm);
    ftq_model_free(m);
    return rc ? 1 : 0;
}

int ftq_bench_train(int argc, char **argv)
{
    const char *dir = "bench-models";
    int B = 4, T = 256, steps = 5, lora_r = 0;
    const char *prec_s = "fp32";
    for (int i = 1; i + 1 < argc; i += 2) {
        char *end = NULL;
        long x = strtol(argv[i + 1], &end, 10);
        if (strcmp(argv[i], "-o") == 0) {
            dir = argv[i + 1];
            continue;
        }
        if (strcmp(argv[i], "--precision") == 0) {
            prec_s = argv[i + 1];
            continue;
        }
        if (*end || x < 1 || x > 1 << 16) {
            fprintf(stderr, "ftq_bench train: %s expects a positive integer, got '%s'\n", argv[i], argv[i + 1]);
            return 2;
        }
        if (strcmp(argv[i], "--batch") == 0)
            B = (int)x;
        else if (strcmp(argv[i], "--seq") == 0)
            T = (int)x;
        else if (strcmp(argv[i], "--steps") == 0)
            steps = (int)x;
        else if (strcmp(argv[i], "--lora") == 0)
            lora_r = (int)x;
        else {
            fprintf(stderr, "usage: ftq_bench train [-o DIR] [--batch B] [--seq T] [--steps N] [--lora R] "
                            "[--precision fp32|bf16|both]\n");
            return 2;
        }
    }
    ftq_precision precs[2] = {FTQ_PRECISION_FP32, FTQ_PRECISION_BF16};
    int np = 2;
    if (strcmp(prec_s, "both") != 0) {
        if (ftq_precision_from_name(prec_s, &precs[0]) != FTQ_OK) {
            fprintf(stderr, "ftq_bench train: unknown --precision '%s' (expected fp32, bf16 or both)\n", prec_s);
            return 2;
        }
        np = 1;
    }
    double sg1 = ftq_bench_sgemm_gflops(1024, 1024, 1024, 5), sg2 = ftq_bench_sgemm_gflops(B * T, 3072, 768, 5);
    double sg = sg1 > sg2 ? sg1 : sg2;
    printf("cpu: %s; threads %d; B=%d T=%d; %d timed steps (median); bf16 products: %s\n", ftq_cpu_features_str(),
           ftq_get_threads(), B, T, steps, ftq_bf16_path_name(ftq_bf16_best_path()));
    printf("sgemm: 1024^3 %.1f GFLOP/s, %dx3072x768 %.1f GFLOP/s -> reference %.1f GFLOP/s\n", sg1, B * T, sg2, sg);
    printf("%-12s %-5s %10s %10s %8s %10s %10s %10s %10s\n", "model", "prec", "params", "s/step", "fwd s", "tok/s",
           "GFLOP/s", "MFU", "peak MB");
    const char *full_names[] = {"gpt2-124m", "llama-110m"};
    const char *lora_names[] = {"llama-110m", "llama-110m-int8", "llama-110m-int4"};
    const char **names = lora_r ? lora_names : full_names;
    int n_models = lora_r ? 3 : 2, rc = 0;
    if (lora_r)
        printf("LoRA r=%d on all linears (q,k,v,o,gate,up,down)\n", lora_r);
    for (int k = 0; k < n_models; k++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        if (lora_r && k > 0 && !ftq_is_dir(path)) { /* the QLoRA bases, quantized once, in a child:
                                                       the parent must not start an OpenMP pool, or
                                                       the forked measuring children hang in it */
            fflush(stdout);
            pid_t qpid = fork();
            if (qpid == 0) {
                char src[4096];
                snprintf(src, sizeof src, "%s/%s", dir, names[0]);
                ftq_quantize_params qp = ftq_quantize_default_params();
                qp.bits = k == 1 ? 8 : 4;
                qp.group = 32;
                ftq_quantize_report rep;
                memset(&rep, 0, sizeof rep);
                int q = ftq_quantize_model(src, path, &qp, &rep);
                ftq_quantize_report_free(&rep);
                if (q != FTQ_OK)
                    fprintf(stderr, "ftq_bench train: %s\n", ftq_last_error());
                _exit(q != FTQ_OK);
            }
            int qst = 0;
            if (qpid < 0 || waitpid(qpid, &qst, 0) < 0 || !WIFEXITED(qst) || WEXITSTATUS(qst) != 0)
                return 1;
        }
        double tps[2] = {0, 0};
        for (int q = 0; q < np; q++) {
            int fds[2];
            if (pipe(fds) != 0)
                return 1;
            fflush(stdout);
            pid_t pid = fork();
            if (pid == 0) {
                close(fds[0]);
                _exit(one_model(path, names[k], B, T, steps, sg, lora_r, precs[q], fds[1]));
            }
            close(fds[1]);
            if (pid > 0 && read(fds[0], &tps[q], sizeof tps[q]) != (ssize_t)sizeof tps[q])
                tps[q] = 0;
            close(fds[0]);
            int st = 0;
            if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
                rc = 1;
        }
        if (np == 2 && tps[0] > 0 && tps[1] > 0)
            printf("%-12s bf16 / fp32 tokens/s: %.2fx\n", names[k], tps[1] / tps[0]);
    }
    return rc;
}
