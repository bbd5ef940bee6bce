/* bench.c - ftq_bench: speed measurements that are reported, never asserted.
 *
 *   ftq_bench models [-o DIR]          write random-initialized checkpoints of real shapes
 *                                       (GPT-2 124M; a 110M Llama) with real tokenizers
 *   ftq_bench ppl [-o DIR] [--ctx N] [--chunks N] [--reps N] [--text FILE]
 *                                       perplexity throughput of both models next to the
 *                                       sgemm GFLOP/s OpenBLAS reaches in the same run
 *
 * Weights are normal(0, 0.02) (norm weights 1): speed does not depend on the values.
 * Every number is the median of --reps repetitions.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cblas.h>

#include "bench/bench.h"
#include "include/ftq.h"

#ifndef FTQ_SOURCE_DIR
#define FTQ_SOURCE_DIR "."
#endif

typedef struct {
    const char *name;   /* directory name */
    const char *family; /* "gpt2" or "llama" */
    int vocab, hidden, layers, heads, kv_heads, ffn, positions;
    const char *tok_dir; /* tokenizer files copied from ../shared/tokenizers/<tok_dir> */
} shape;

static const shape shapes[] = {
    {"gpt2-124m", "gpt2", 50257, 768, 12, 12, 12, 3072, 1024, "gpt2"},
    {"llama-110m", "llama", 32000, 768, 12, 12, 12, 2048, 2048, "llama2"},
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- random checkpoints ----------------------------------------------------------- */

typedef struct {
    ftq_tensor *t;
    size_t n, cap;
} tensor_list;

static int add_tensor(tensor_list *l, ftq_rng *rng, const char *name, int ndim, int64_t d0, int64_t d1,
                      float fill)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->t = realloc(l->t, sizeof(ftq_tensor) * l->cap);
    }
    ftq_tensor *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->dtype = FTQ_DTYPE_F32;
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = d1;
    size_t numel = (size_t)d0 * (size_t)(ndim > 1 ? d1 : 1);
    float *d = malloc(numel * sizeof(float));
    if (!d || !t->name)
        return ftq_set_error(FTQ_ENOMEM, "out of memory for '%s'", name);
    for (size_t i = 0; i < numel; i++)
        d[i] = fill != 0.0f ? fill : 0.02f * ftq_rng_normal(rng);
    t->data = d;
    t->nbytes = numel * sizeof(float);
    t->owned = 1;
    return FTQ_OK;
}

static void free_list(tensor_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->t[i].name);
        free(l->t[i].data);
    }
    free(l->t);
}

/* One tensor of layer i: "<prefix>.<i>.<suffix>". */
static int add_layer(tensor_list *l, ftq_rng *rng, const char *prefix, int i, const char *suffix, int ndim,
                     int64_t d0, int64_t d1, float fill)
{
    char name[160];
    snprintf(name, sizeof name, "%s.%d.%s", prefix, i, suffix);
    return add_tensor(l, rng, name, ndim, d0, d1, fill);
}

static int build_tensors(const shape *s, tensor_list *l)
{
    ftq_rng rng;
    ftq_rng_seed(&rng, 1234);
    int rc = 0;
    const int H = s->hidden, F = s->ffn, hd = s->hidden / s->heads, kv = s->kv_heads * hd;
    if (strcmp(s->family, "gpt2") == 0) {
        const char *p = "transformer.h";
        rc |= add_tensor(l, &rng, "transformer.wte.weight", 2, s->vocab, H, 0);
        rc |= add_tensor(l, &rng, "transformer.wpe.weight", 2, s->positions, H, 0);
        for (int i = 0; i < s->layers && !rc; i++) {
            rc |= add_layer(l, &rng, p, i, "ln_1.weight", 1, H, 0, 1.0f);
            rc |= add_layer(l, &rng, p, i, "ln_1.bias", 1, H, 0, 1e-3f);
            rc |= add_layer(l, &rng, p, i, "attn.c_attn.weight", 2, H, 3 * H, 0);
            rc |= add_layer(l, &rng, p, i, "attn.c_attn.bias", 1, 3 * H, 0, 1e-3f);
            rc |= add_layer(l, &rng, p, i, "attn.c_proj.weight", 2, H, H, 0);
            rc |= add_layer(l, &rng, p, i, "attn.c_proj.bias", 1, H, 0, 1e-3f);
            rc |= add_layer(l, &rng, p, i, "ln_2.weight", 1, H, 0, 1.0f);
            rc |= add_layer(l, &rng, p, i, "ln_2.bias", 1, H, 0, 1e-3f);
            rc |= add_layer(l, &rng, p, i, "mlp.c_fc.weight", 2, H, F, 0);
            rc |= add_layer(l, &rng, p, i, "mlp.c_fc.bias", 1, F, 0, 1e-3f);
            rc |= add_layer(l, &rng, p, i, "mlp.c_proj.weight", 2, F, H, 0);
            rc |= add_layer(l, &rng, p, i, "mlp.c_proj.bias", 1, H, 0, 1e-3f);
        }
        rc |= add_tensor(l, &rng, "transformer.ln_f.weight", 1, H, 0, 1.0f);
        rc |= add_tensor(l, &rng, "transformer.ln_f.bias", 1, H, 0, 1e-3f);
    } else {
        const char *p = "model.layers";
        rc |= add_tensor(l, &rng, "model.embed_tokens.weight", 2, s->vocab, H, 0);
        for (int i = 0; i < s->layers && !rc; i++) {
            rc |= add_layer(l, &rng, p, i, "input_layernorm.weight", 1, H, 0, 1.0f);
            rc |= add_layer(l, &rng, p, i, "self_attn.q_proj.weight", 2, H, H, 0);
            rc |= add_layer(l, &rng, p, i, "self_attn.k_proj.weight", 2, kv, H, 0);
            rc |= add_layer(l, &rng, p, i, "self_attn.v_proj.weight", 2, kv, H, 0);
            rc |= add_layer(l, &rng, p, i, "self_attn.o_proj.weight", 2, H, H, 0);
            rc |= add_layer(l, &rng, p, i, "post_attention_layernorm.weight", 1, H, 0, 1.0f);
            rc |= add_layer(l, &rng, p, i, "mlp.gate_proj.weight", 2, F, H, 0);
            rc |= add_layer(l, &rng, p, i, "mlp.up_proj.weight", 2, F, H, 0);
            rc |= add_layer(l, &rng, p, i, "mlp.down_proj.weight", 2, H, F, 0);
        }
        rc |= add_tensor(l, &rng, "model.norm.weight", 1, H, 0, 1.0f);
        /* tied output layer, as llama2.c's stories110M: 110M parameters */
    }
    return rc ? FTQ_ENOMEM : FTQ_OK;
}

static int write_text(const char *path, const char *text)
{
    ftq_atomic_file af;
    int rc = ftq_atomic_open(&af, path);
    if (rc != FTQ_OK)
        return rc;
    fputs(text, af.fp);
    return ftq_atomic_commit(&af);
}

static int write_config(const shape *s, const char *dir)
{
    char buf[2048], *path = ftq_path_join(dir, "config.json");
    if (strcmp(s->family, "gpt2") == 0)
        snprintf(buf, sizeof buf,
                 "{\n  \"architectures\": [\"GPT2LMHeadModel\"],\n  \"model_type\": \"gpt2\",\n"
                 "  \"vocab_size\": %d,\n  \"n_positions\": %d,\n  \"n_ctx\": %d,\n  \"n_embd\": %d,\n"
                 "  \"n_layer\": %d,\n  \"n_head\": %d,\n  \"n_inner\": null,\n"
                 "  \"activation_function\": \"gelu_new\",\n  \"layer_norm_epsilon\": 1e-05,\n"
                 "  \"bos_token_id\": 50256,\n  \"eos_token_id\": 50256,\n  \"torch_dtype\": \"float32\"\n}\n",
                 s->vocab, s->positions, s->positions, s->hidden, s->layers, s->heads);
    else
        snprintf(buf, sizeof buf,
                 "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n"
                 "  \"vocab_size\": %d,\n  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n"
                 "  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n"
                 "  \"num_key_value_heads\": %d,\n  \"max_position_embeddings\": %d,\n"
                 "  \"rms_norm_eps\": 1e-05,\n  \"rope_theta\": 10000.0,\n  \"hidden_act\": \"silu\",\n"
                 "  \"tie_word_embeddings\": true,\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2,\n"
                 "  \"torch_dtype\": \"float32\"\n}\n",
                 s->vocab, s->hidden, s->ffn, s->layers, s->heads, s->kv_heads, s->positions);
    int rc = write_text(path, buf);
    free(path);
    return rc;
}

static int copy_tokenizer(const shape *s, const char *dir)
{
    static const char *files[] = {"tokenizer.json", "tokenizer_config.json", "tokenizer.model",
                                  "special_tokens_map.json", "vocab.json", "merges.txt"};
    char src_dir[1024];
    snprintf(src_dir, sizeof src_dir, "%s/../shared/tokenizers/%s", FTQ_SOURCE_DIR, s->tok_dir);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *src = ftq_path_join(src_dir, files[i]), *dst = ftq_path_join(dir, files[i]);
        int rc = ftq_is_file(src) ? ftq_copy_file(src, dst) : FTQ_OK;
        free(src);
        free(dst);
        if (rc != FTQ_OK)
            return rc;
    }
    return FTQ_OK;
}

static int make_model(const shape *s, const char *out_dir)
{
    char dir[1024], cmd[1100];
    snprintf(dir, sizeof dir, "%s/%s", out_dir, s->name);
    char *st_path = ftq_path_join(dir, "model.safetensors");
    if (ftq_is_file(st_path)) {
        free(st_path);
        return FTQ_OK; /* already there (delete the directory to rebuild) */
    }
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    if (system(cmd) != 0) {
        free(st_path);
        return ftq_set_error(FTQ_EIO, "cannot create '%s'", dir);
    }
    tensor_list l = {0};
    int rc = build_tensors(s, &l);
    const char *meta[] = {"format", "pt", "ftq_bench", "random normal(0, 0.02), seed 1234", NULL};
    if (rc == FTQ_OK)
        rc = ftq_st_write(st_path, l.t, l.n, meta);
    free_list(&l);
    free(st_path);
    if (rc == FTQ_OK)
        rc = write_config(s, dir);
    if (rc == FTQ_OK)
        rc = copy_tokenizer(s, dir);
    if (rc == FTQ_OK)
        fprintf(stderr, "wrote %s\n", dir);
    return rc;
}

/* ---- measurements ------------------------------------------------------------------ */

/* GFLOP/s of C[M,N] = A[M,K] B[K,N]^T-style sgemm (the shape of a linear layer), median. */
static double sgemm_gflops(int M, int N, int K, int reps)
{
    float *A = malloc(sizeof(float) * (size_t)M * K), *B = malloc(sizeof(float) * (size_t)N * K);
    float *C = malloc(sizeof(float) * (size_t)M * N);
    for (size_t i = 0; i < (size_t)M * K; i++)
        A[i] = (float)(i % 7) * 0.01f;
    for (size_t i = 0; i < (size_t)N * K; i++)
        B[i] = (float)(i % 5) * 0.01f;
    double t[32];
    if (reps > 32)
        reps = 32;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N); /* warm */
    for (int r = 0; r < reps; r++) {
        double t0 = ftq_time_sec();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
        t[r] = ftq_time_sec() - t0;
    }
    double med = median(t, reps);
    free(A);
    free(B);
    free(C);
    return 2.0 * M * N * K / med / 1e9;
}

/* Forward FLOPs per token at context T: 2 x (every matmul weight, incl. the output
 * layer) + causal attention 2 x layers x T x hidden (QK^T and AV over T/2 positions on
 * average). */
static double flops_per_token(const ftq_model_config *c, int T)
{
    double H = c->hidden_size, F = c->intermediate_size, kv = (double)c->n_kv_heads * c->head_dim;
    double q = (double)c->n_heads * c->head_dim;
    double per_layer = H * q + 2 * H * kv + q * H + (c->arch == FTQ_ARCH_GPT2 ? 2 * H * F : 3 * H * F);
    double linear = c->n_layers * per_layer + H * c->vocab_size;
    return 2.0 * linear + 2.0 * c->n_layers * (double)T * q;
}

/* Perplexity throughput of one model: prints one table row. Returns an exit code. */
static int ppl_one(const shape *s, const char *out_dir, const char *text, size_t len, int ctx, int chunks,
                   int reps, double sg)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", out_dir, s->name);
    ftq_model *m = NULL;
    ftq_tokenizer *tk = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    if (ftq_model_load(dir, &m) != FTQ_OK || ftq_tokenizer_load(dir, &tk) != FTQ_OK ||
        ftq_tokenizer_encode(tk, text, len, 0, &ids, &n) != FTQ_OK) {
        fprintf(stderr, "ftq_bench: %s\n", ftq_last_error());
        ftq_model_free(m);
        ftq_tokenizer_free(tk);
        return 1;
    }
    ftq_ppl_params p = ftq_ppl_default_params();
    p.n_ctx = ctx;
    p.n_chunks = chunks;
    p.add_bos = ftq_tokenizer_adds_bos(tk);
    p.bos_id = ftq_tokenizer_bos(tk) >= 0 ? ftq_tokenizer_bos(tk) : 0;
    double tps[32];
    int r, rc = 0;
    for (r = 0; r < reps && r < 32; r++) {
        ftq_ppl_result res;
        if (ftq_perplexity(m, ids, n, &p, &res) != FTQ_OK) {
            fprintf(stderr, "ftq_bench: %s\n", ftq_last_error());
            rc = 1;
            break;
        }
        tps[r] = res.tokens_per_second;
    }
    if (rc == 0) {
        const ftq_model_config *c = ftq_model_get_config(m);
        double med = median(tps, r), fpt = flops_per_token(c, ctx);
        double gf = med * fpt / 1e9;
        printf("%-12s %9.1fM %12.1f %10.1f %12.3f %9.1f %8.1f%% %10.0f\n", s->name,
               ftq_model_param_count(m) / 1e6, ftq_checkpoint_total_bytes(ftq_model_get_checkpoint(m)) / 1e6,
               med, fpt / 1e9, gf, 100.0 * gf / sg, ftq_peak_rss_bytes() / 1e6);
        fflush(stdout);
    }
    free(ids);
    ftq_tokenizer_free(tk);
    ftq_model_free(m);
    return rc;
}

static int bench_ppl(const char *out_dir, const char *text_path, int ctx, int chunks, int reps)
{
    char *text = NULL;
    size_t len = 0;
    if (ftq_read_file(text_path, &text, &len) != FTQ_OK) {
        fprintf(stderr, "ftq_bench: %s\n", ftq_last_error());
        return 1;
    }
    int threads = ftq_get_threads();
    printf("cpu: %s; threads %d; ctx %d; %d chunks x %d reps (medians)\n", ftq_cpu_features_str(), threads,
           ctx, chunks, reps);
    double sg_sq = sgemm_gflops(1024, 1024, 1024, reps * 2);
    double sg_lin = sgemm_gflops(ctx, 3072, 768, reps * 2);
    double sg = sg_sq > sg_lin ? sg_sq : sg_lin;
    printf("sgemm (OpenBLAS %s): 1024^3 %.1f GFLOP/s, %dx3072x768 %.1f GFLOP/s -> reference %.1f GFLOP/s\n",
           openblas_get_config(), sg_sq, ctx, sg_lin, sg);
    printf("%-12s %10s %12s %10s %12s %9s %9s %10s\n", "model", "params", "file MB", "tok/s", "GFLOP/tok",
           "GFLOP/s", "of sgemm", "peak MB");
    int rc = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0] && rc == 0; i++) {
        if (make_model(&shapes[i], out_dir) != FTQ_OK) {
            fprintf(stderr, "ftq_bench: %s\n", ftq_last_error());
            rc = 1;
            break;
        }
        /* each model in its own process, so peak RSS is that model's */
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0)
            _exit(ppl_one(&shapes[i], out_dir, text, len, ctx, chunks, reps, sg));
        int st = 0;
        if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            rc = 1;
    }
    free(text);
    return rc;
}

static void usage(void)
{
    fprintf(stderr, "usage: ftq_bench models [-o DIR]\n"
                    "       ftq_bench ppl [-o DIR] [--ctx N] [--chunks N] [--reps N] [--text FILE]\n"
                    "       ftq_bench train [-o DIR] [--batch B] [--seq T] [--steps N]\n"
                    "DIR defaults to ./bench-models; FILE to ../shared/data/wikitext-2-raw/wiki.test.raw;\n"
                    "$FTQ_THREADS sets the thread count.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage();
        return 2;
    }
    if (strcmp(argv[1], "train") == 0) {
        const char *env = getenv("FTQ_THREADS");
        ftq_set_threads(env ? atoi(env) : 0);
        return ftq_bench_train(argc - 1, argv + 1);
    }
    const char *out = "bench-models";
    static char text_default[1024];
    snprintf(text_default, sizeof text_default, "%s/../shared/data/wikitext-2-raw/wiki.test.raw", FTQ_SOURCE_DIR);
    const char *text = text_default;
    int ctx = 512, chunks = 4, reps = 3;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!v) {
            usage();
            return 2;
        }
        i++;
        if (strcmp(a, "-o") == 0)
            out = v;
        else if (strcmp(a, "--text") == 0)
            text = v;
        else if (strcmp(a, "--ctx") == 0 || strcmp(a, "--chunks") == 0 || strcmp(a, "--reps") == 0) {
            long x = strtol(v, &end, 10);
            if (!*v || *end || x < 1 || x > 1 << 20) {
                fprintf(stderr, "ftq_bench: %s expects a positive integer, got '%s'\n", a, v);
                return 2;
            }
            *(strcmp(a, "--ctx") == 0 ? &ctx : strcmp(a, "--chunks") == 0 ? &chunks : &reps) = (int)x;
        } else {
            usage();
            return 2;
        }
    }
    const char *env = getenv("FTQ_THREADS");
    ftq_set_threads(env ? atoi(env) : 0);
    if (strcmp(argv[1], "models") == 0) {
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
            if (make_model(&shapes[i], out) != FTQ_OK) {
                fprintf(stderr, "ftq_bench: %s\n", ftq_last_error());
                return 1;
            }
        return 0;
    }
    if (strcmp(argv[1], "ppl") == 0)
        return bench_ppl(out, text, ctx, chunks, reps);
    usage();
    return 2;
}
