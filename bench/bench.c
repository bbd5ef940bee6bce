/* bench.c - ftq_bench: speed measurements that are reported, never asserted.
 *
 *   ftq_bench models [-o DIR]          write random-initialized checkpoints of real shapes
 *                                       (GPT-2 124M; a 110M Llama) with real tokenizers
 *   ftq_bench ppl [-o DIR] [--ctx N] [--chunks N] [--reps N] [--text FILE]
 *                                       perplexity throughput of both models next to the
 *                                       sgemm GFLOP/s OpenBLAS reaches in the same run
 *   ftq_bench quant [-o DIR] [--ctx N] [--chunks N] [--reps N] [--gen N] [--text FILE]
 *                                       the 110M Llama in f32, int8 and int4 side by side:
 *                                       perplexity throughput, greedy generation speed,
 *                                       file size and peak RSS (each model in its own process)
 *   ftq_bench smollm2 [-o DIR] [--ctx N] [--gen N] [--reps N] [--text FILE] [--only LIST] [--also QDIR]
 *                                       SmolLM2-135M (../shared, GGUF) in f32, bf16, int8 and int4
 *                                       as llama-bench measures it: pp512 and tg128 tokens/s,
 *                                       file size, peak RSS (each variant in its own process)
 *   ftq_bench qmatmul ...               the quantized matmul kernels (bench/qbench.c)
 *
 * Weights are normal(0, 0.02) (norm weights 1): speed does not depend on the values.
 * Every number is the median of --reps repetitions.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>


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
        double med = ftq_bench_median(tps, r), fpt = flops_per_token(c, ctx);
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
    double sg_sq = ftq_bench_sgemm_gflops(1024, 1024, 1024, reps * 2);
    double sg_lin = ftq_bench_sgemm_gflops(ctx, 3072, 768, reps * 2);
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

/* ---- f32 vs int8 vs int4 ------------------------------------------------------------ */

typedef struct {
    const char *label;  /* table row */
    const char *suffix; /* directory suffix, "" for the source */
    int bits, group, asym;
} qvariant;

static const qvariant qvariants[] = {
    {"f32", "", 0, 0, 0},
    {"int8 q8_g32", "-int8", 8, 32, 0},
    {"int4 q4_g32", "-int4", 4, 32, 0},
};
#define NQVARIANTS (int)(sizeof qvariants / sizeof qvariants[0])

typedef struct {
    double ppl_tps, gen_tps, ppl, file_mb, rss_mb;
} qresult;

/* Runs fn(arg) in a child process (so its peak RSS is its own); the child sends its
 * qresult back through a pipe. Returns 0 on success. */
static int in_child(int (*fn)(const void *, qresult *), const void *arg, qresult *out)
{
    int fd[2];
    if (pipe(fd) != 0)
        return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        qresult r;
        memset(&r, 0, sizeof r);
        int rc = fn(arg, &r);
        if (rc == 0 && write(fd[1], &r, sizeof r) != (ssize_t)sizeof r)
            rc = 1;
        close(fd[1]);
        _exit(rc);
    }
    close(fd[1]);
    int st = 0, ok = pid > 0 && read(fd[0], out, sizeof *out) == (ssize_t)sizeof *out;
    close(fd[0]);
    if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0 || !ok)
        return -1;
    return 0;
}

typedef struct {
    const char *src, *dst;
    const qvariant *v;
} qjob;

static int quantize_child(const void *arg, qresult *r)
{
    const qjob *j = arg;
    ftq_quantize_params p = ftq_quantize_default_params();
    p.bits = j->v->bits;
    p.group = j->v->group;
    p.asym = j->v->asym;
    ftq_quantize_report rep;
    if (ftq_quantize_model(j->src, j->dst, &p, &rep) != FTQ_OK) {
        fprintf(stderr, "ftq_bench: %s\n", ftq_last_error());
        return 1;
    }
    fprintf(stderr, "quantized %s in %.1f s (weights: relative RMSE %.3f %%)\n", j->dst, rep.seconds,
            100 * rep.rel_rmse);
    r->file_mb = rep.out_bytes / 1e6;
    ftq_quantize_report_free(&rep);
    return 0;
}

typedef struct {
    const char *dir;
    const char *text;
    size_t len;
    int ctx, chunks, reps, gen;
    unsigned load_flags; /* ftq_model_load_ex flags (smeasure_child) */
} qmeasure;

static int argmax(const float *v, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b])
            b = i;
    return b;
}

/* Perplexity throughput (median over reps) and greedy generation: `gen` tokens one at a
 * time after an 8-token prompt; tokens/s of the generated tokens (median over reps). */
static int measure_child(const void *arg, qresult *r)
{
    const qmeasure *q = arg;
    ftq_model *m = NULL;
    ftq_tokenizer *tk = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    if (ftq_model_load(q->dir, &m) != FTQ_OK || ftq_tokenizer_load(q->dir, &tk) != FTQ_OK ||
        ftq_tokenizer_encode(tk, q->text, q->len, 0, &ids, &n) != FTQ_OK) {
        fprintf(stderr, "ftq_bench: %s\n", ftq_last_error());
        ftq_model_free(m);
        ftq_tokenizer_free(tk);
        free(ids);
        return 1;
    }
    int rc = 0, V = ftq_model_get_config(m)->vocab_size;
    ftq_ppl_params p = ftq_ppl_default_params();
    p.n_ctx = q->ctx;
    p.n_chunks = q->chunks;
    p.add_bos = ftq_tokenizer_adds_bos(tk);
    p.bos_id = ftq_tokenizer_bos(tk) >= 0 ? ftq_tokenizer_bos(tk) : 0;
    double tps[32], gts[32];
    int reps = q->reps < 32 ? q->reps : 32;
    for (int i = 0; i < reps && rc == 0; i++) {
        ftq_ppl_result res;
        if (ftq_perplexity(m, ids, n, &p, &res) != FTQ_OK) {
            fprintf(stderr, "ftq_bench: %s\n", ftq_last_error());
            rc = 1;
            break;
        }
        tps[i] = res.tokens_per_second;
        r->ppl = res.ppl;
    }
    enum { N_PROMPT = 8 };
    ftq_session *s = NULL;
    float *logits = malloc(sizeof(float) * (size_t)V);
    if (rc == 0 && (!logits || n < N_PROMPT || ftq_session_new(m, N_PROMPT + q->gen, &s) != FTQ_OK)) {
        fprintf(stderr, "ftq_bench: cannot set up generation: %s\n", ftq_last_error());
        rc = 1;
    }
    for (int i = 0; i < reps && rc == 0; i++) {
        int32_t prompt[N_PROMPT];
        prompt[0] = p.bos_id;
        memcpy(prompt + 1, ids, sizeof(int32_t) * (N_PROMPT - 1));
        ftq_session_reset(s);
        rc = ftq_session_eval(s, prompt, N_PROMPT, logits, 0) != FTQ_OK;
        double t0 = ftq_time_sec();
        for (int k = 0; k < q->gen && rc == 0; k++) {
            int32_t next = argmax(logits, V);
            rc = ftq_session_eval(s, &next, 1, logits, 0) != FTQ_OK;
        }
        gts[i] = q->gen / (ftq_time_sec() - t0);
    }
    if (rc == 0) {
        r->ppl_tps = ftq_bench_median(tps, reps);
        r->gen_tps = ftq_bench_median(gts, reps);
        r->file_mb = ftq_checkpoint_total_bytes(ftq_model_get_checkpoint(m)) / 1e6;
        r->rss_mb = ftq_peak_rss_bytes() / 1e6;
    }
    ftq_session_free(s);
    free(logits);
    free(ids);
    ftq_tokenizer_free(tk);
    ftq_model_free(m);
    return rc;
}

static int bench_quant(const char *out_dir, const char *text_path, int ctx, int chunks, int reps, int gen)
{
    const shape *sh = &shapes[1]; /* llama-110m */
    char *text = NULL;
    size_t len = 0;
    if (make_model(sh, out_dir) != FTQ_OK || ftq_read_file(text_path, &text, &len) != FTQ_OK) {
        fprintf(stderr, "ftq_bench: %s\n", ftq_last_error());
        return 1;
    }
    char dirs[NQVARIANTS][1024];
    qresult res[NQVARIANTS];
    int rc = 0;
    for (int i = 0; i < NQVARIANTS && rc == 0; i++) {
        snprintf(dirs[i], sizeof dirs[i], "%s/%s%s", out_dir, sh->name, qvariants[i].suffix);
        if (!qvariants[i].bits)
            continue;
        if (ftq_is_dir(dirs[i])) /* always from the current source, with this build's quantizer */
            ftq_remove_tree(dirs[i]);
        qjob j = {dirs[0], dirs[i], &qvariants[i]};
        qresult qr;
        if (in_child(quantize_child, &j, &qr) != 0)
            rc = 1;
    }
    printf("cpu: %s; threads %d; %s; perplexity ctx %d x %d chunks; generation %d tokens after 8 (greedy); "
           "medians of %d\n",
           ftq_cpu_features_str(), ftq_get_threads(), sh->name, ctx, chunks, gen, reps);
    printf("%-12s %9s %10s %8s %10s %8s %9s %10s\n", "model", "file MB", "ppl tok/s", "x f32", "gen tok/s", "x f32",
           "peak MB", "ppl");
    for (int i = 0; i < NQVARIANTS && rc == 0; i++) {
        qmeasure q = {dirs[i], text, len, ctx, chunks, reps, gen, 0};
        if (in_child(measure_child, &q, &res[i]) != 0) {
            rc = 1;
            break;
        }
        printf("%-12s %9.1f %10.1f %7.2fx %10.2f %7.2fx %9.0f %10.4g\n", qvariants[i].label, res[i].file_mb,
               res[i].ppl_tps, res[i].ppl_tps / res[0].ppl_tps, res[i].gen_tps, res[i].gen_tps / res[0].gen_tps,
               res[i].rss_mb, res[i].ppl);
        fflush(stdout);
    }
    if (rc == 0)
        printf("goals: int8 generation >= 2x f32: %.2fx (%s); int4 >= 3x: %.2fx (%s); int8 prompt processing "
               ">= f32: %.2fx (%s)\n",
               res[1].gen_tps / res[0].gen_tps, res[1].gen_tps >= 2 * res[0].gen_tps ? "met" : "not met",
               res[2].gen_tps / res[0].gen_tps, res[2].gen_tps >= 3 * res[0].gen_tps ? "met" : "not met",
               res[1].ppl_tps / res[0].ppl_tps, res[1].ppl_tps >= res[0].ppl_tps ? "met" : "not met");
    free(text);
    return rc;
}

/* ---- ftq_bench smollm2: the real model of ../shared, as llama-bench measures it ---------- */

#define SMOLLM2_GGUF "/../shared/models/SmolLM2-135M-Instruct-Q4_1/SmolLM2-135M-Instruct.Q4_1.gguf"

typedef struct {
    const char *label, *suffix;
    int bits, search, kquant;
    unsigned load_flags;
    const char *key; /* --only */
} svariant;

/* int8 / int4 g32 with the embedding (and the tied head) at q8_g32: the layout of llama.cpp's
 * Q8_0 / Q4_0 files, which keep token_embd at q8_0 */
static const svariant svariants[] = {
    {"f32 (GGUF)", "", 0, 0, 0, 0, "f32"},
    {"bf16 (GGUF)", "", 0, 0, 0, FTQ_LOAD_BF16, "bf16"}, /* packed bf16 weights, AMX / AVX512-BF16 products */
    {"int8 q8_g32", "smollm2-int8", 8, 0, 0, 0, "int8"},
    {"int4 q4_g32", "smollm2-int4", 4, 0, 0, 0, "int4"}, /* speed does not depend on --search */
    {"int4 kquant", "smollm2-int4k", 4, 0, 1, 0, "int4k"}, /* down_proj (1536 wide) q4k, the rest q4_g32 */
};
#define NSVARIANTS (int)(sizeof svariants / sizeof svariants[0])

typedef struct {
    const char *src, *dst;
    const svariant *v;
} sjob;

static int squantize_child(const void *arg, qresult *r)
{
    const sjob *j = arg;
    ftq_quantize_params p = ftq_quantize_default_params();
    p.bits = j->v->bits;
    p.group = 32;
    p.search = j->v->search;
    p.kquant = j->v->kquant;
    p.embeddings = FTQ_QPOLICY_INT8;
    p.head = FTQ_QPOLICY_INT8;
    ftq_quantize_report rep;
    if (ftq_quantize_model(j->src, j->dst, &p, &rep) != FTQ_OK) {
        fprintf(stderr, "ftq_bench: %s\n", ftq_last_error());
        return 1;
    }
    r->file_mb = rep.out_bytes / 1e6;
    ftq_quantize_report_free(&rep);
    return 0;
}

/* pp: one eval of the first `ctx` tokens of the text (llama-bench pp512); tg: `gen` tokens
 * one at a time from an empty context, greedy (tg128). One warm-up, then medians of reps.
 * ppl_tps carries pp, gen_tps tg. */
static int smeasure_child(const void *arg, qresult *r)
{
    const qmeasure *q = arg;
    ftq_model *m = NULL;
    ftq_tokenizer *tk = NULL;
    ftq_session *s = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    float *logits = NULL;
    int rc = 0;
    if (ftq_model_load_ex(q->dir, q->load_flags, &m) != FTQ_OK || ftq_tokenizer_load(q->dir, &tk) != FTQ_OK ||
        ftq_tokenizer_encode(tk, q->text, q->len, 0, &ids, &n) != FTQ_OK ||
        ftq_session_new(m, q->ctx > q->gen + 1 ? q->ctx : q->gen + 1, &s) != FTQ_OK) {
        fprintf(stderr, "ftq_bench: %s\n", ftq_last_error());
        rc = 1;
    }
    int V = m ? ftq_model_get_config(m)->vocab_size : 0;
    if (rc == 0 && (n < (size_t)q->ctx || !(logits = malloc(sizeof(float) * (size_t)V)))) {
        fprintf(stderr, "ftq_bench: the text has %zu tokens (need %d)\n", n, q->ctx);
        rc = 1;
    }
    double pps[33], tgs[33];
    int reps = q->reps < 32 ? q->reps : 32;
    for (int i = 0; i <= reps && rc == 0; i++) { /* i == 0: warm-up */
        ftq_session_reset(s);
        double t0 = ftq_time_sec();
        rc = ftq_session_eval(s, ids, q->ctx, logits, 0) != FTQ_OK;
        pps[i] = q->ctx / (ftq_time_sec() - t0);
        ftq_session_reset(s);
        int32_t next = ids[0];
        t0 = ftq_time_sec();
        for (int k = 0; k < q->gen && rc == 0; k++) {
            rc = ftq_session_eval(s, &next, 1, logits, 0) != FTQ_OK;
            next = argmax(logits, V);
        }
        tgs[i] = q->gen / (ftq_time_sec() - t0);
    }
    if (rc == 0) {
        r->ppl_tps = ftq_bench_median(pps + 1, reps);
        r->gen_tps = ftq_bench_median(tgs + 1, reps);
        r->file_mb = ftq_checkpoint_total_bytes(ftq_model_get_checkpoint(m)) / 1e6;
        r->rss_mb = ftq_peak_rss_bytes() / 1e6;
    } else {
        fprintf(stderr, "ftq_bench: %s\n", ftq_last_error());
    }
    ftq_session_free(s);
    free(logits);
    free(ids);
    ftq_tokenizer_free(tk);
    ftq_model_free(m);
    return rc;
}

/* only: NULL (all variants) or a comma list of keys; f32 always runs (the ratios' base).
 * also: NULL or one more quantized directory to measure beside them. */
static int bench_smollm2(const char *out_dir, const char *text_path, int ctx, int reps, int gen, const char *only,
                         const char *also)
{
    char gguf[1024], dirs[NSVARIANTS][1024];
    snprintf(gguf, sizeof gguf, "%s" SMOLLM2_GGUF, FTQ_SOURCE_DIR);
    char *text = NULL;
    size_t len = 0;
    if (ftq_read_file(text_path, &text, &len) != FTQ_OK || (!ftq_is_dir(out_dir) && mkdir(out_dir, 0777) != 0)) {
        fprintf(stderr, "ftq_bench: %s\n", ftq_last_error());
        free(text);
        return 1;
    }
    int rc = 0;
    int skip[NSVARIANTS];
    for (int i = 0; i < NSVARIANTS; i++)
        skip[i] = i > 0 && only && !ftq_list_has(only, svariants[i].key);
    for (int i = 0; i < NSVARIANTS && rc == 0; i++) {
        if (!svariants[i].bits || skip[i]) {
            snprintf(dirs[i], sizeof dirs[i], "%s", gguf);
            continue;
        }
        snprintf(dirs[i], sizeof dirs[i], "%s/%s", out_dir, svariants[i].suffix);
        if (ftq_is_dir(dirs[i])) /* always from this build's quantizer */
            ftq_remove_tree(dirs[i]);
        sjob j = {gguf, dirs[i], &svariants[i]};
        qresult qr;
        if (in_child(squantize_child, &j, &qr) != 0)
            rc = 1;
    }
    printf("cpu: %s; threads %d; SmolLM2-135M-Instruct; pp%d (one eval of %d tokens), tg%d (one token at a time); "
           "medians of %d after a warm-up\n",
           ftq_cpu_features_str(), ftq_get_threads(), ctx, ctx, gen, reps);
    printf("%-12s %9s %10s %8s %10s %8s %9s\n", "model", "file MB", "pp tok/s", "x f32", "tg tok/s", "x f32",
           "peak MB");
    qresult res[NSVARIANTS];
    for (int i = 0; i < NSVARIANTS && rc == 0; i++) {
        if (skip[i])
            continue;
        qmeasure q = {dirs[i], text, len, ctx, 0, reps, gen, svariants[i].load_flags};
        if (in_child(smeasure_child, &q, &res[i]) != 0) {
            rc = 1;
            break;
        }
        printf("%-12s %9.1f %10.1f %7.2fx %10.2f %7.2fx %9.0f\n", svariants[i].label, res[i].file_mb, res[i].ppl_tps,
               res[i].ppl_tps / res[0].ppl_tps, res[i].gen_tps, res[i].gen_tps / res[0].gen_tps, res[i].rss_mb);
        fflush(stdout);
    }
    if (rc == 0 && also) { /* --also DIR: any quantized model (e.g. a --kquant --bits mix) in the same run */
        qmeasure q = {also, text, len, ctx, 0, reps, gen, 0};
        qresult ra;
        if (in_child(smeasure_child, &q, &ra) != 0)
            rc = 1;
        else
            printf("%-12s %9.1f %10.1f %7.2fx %10.2f %7.2fx %9.0f  (%s)\n", "--also", ra.file_mb, ra.ppl_tps,
                   ra.ppl_tps / res[0].ppl_tps, ra.gen_tps, ra.gen_tps / res[0].gen_tps, ra.rss_mb, also);
    }
    free(text);
    return rc;
}

static void usage(void)
{
    fprintf(stderr, "usage: ftq_bench models [-o DIR]\n"
                    "       ftq_bench ppl [-o DIR] [--ctx N] [--chunks N] [--reps N] [--text FILE]\n"
                    "       ftq_bench train [-o DIR] [--batch B] [--seq T] [--steps N] [--lora R]\n"
                    "       ftq_bench bert [-m DIR | --shape base [-o DIR]] [--batch B] [--seq T] [--reps N] [--quant]\n"
                    "       ftq_bench quant [-o DIR] [--ctx N] [--chunks N] [--reps N] [--gen N] [--text FILE]\n"
                    "       ftq_bench smollm2 [-o DIR] [--ctx N] [--gen N] [--reps N] [--text FILE] [--only f32,bf16,int8,int4,int4k] [--also QDIR]\n"
                    "       ftq_bench qmatmul [--reps N] [--path P] [--T LIST] [--shapes LIST] [--json]\n"
                    "       ftq_bench tokenize [--reps N]\n"
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
    if (strcmp(argv[1], "bert") == 0) {
        const char *env = getenv("FTQ_THREADS");
        ftq_set_threads(env ? atoi(env) : 0);
        return ftq_bench_bert(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "qmatmul") == 0)
        return ftq_bench_qmatmul(argc - 1, argv + 1);
    if (strcmp(argv[1], "tokenize") == 0)
        return ftq_bench_tokenize(argc - 1, argv + 1);
    const char *out = "bench-models";
    static char text_default[1024];
    snprintf(text_default, sizeof text_default, "%s/../shared/data/wikitext-2-raw/wiki.test.raw", FTQ_SOURCE_DIR);
    const char *text = text_default, *only = NULL, *also = NULL;
    int ctx = 512, chunks = 4, reps = 3, gen = 128, chunks_set = 0;
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
        else if (strcmp(a, "--only") == 0)
            only = v;
        else if (strcmp(a, "--also") == 0 && strcmp(argv[1], "smollm2") == 0)
            also = v;
        else if (strcmp(a, "--ctx") == 0 || strcmp(a, "--chunks") == 0 || strcmp(a, "--reps") == 0 ||
                 strcmp(a, "--gen") == 0) {
            long x = strtol(v, &end, 10);
            if (!*v || *end || x < 1 || x > 1 << 20) {
                fprintf(stderr, "ftq_bench: %s expects a positive integer, got '%s'\n", a, v);
                return 2;
            }
            *(strcmp(a, "--ctx") == 0      ? &ctx
              : strcmp(a, "--chunks") == 0 ? &chunks
              : strcmp(a, "--gen") == 0    ? &gen
                                           : &reps) = (int)x;
            chunks_set |= strcmp(a, "--chunks") == 0;
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
    if (strcmp(argv[1], "quant") == 0)
        return bench_quant(out, text, ctx, chunks_set ? chunks : 2, reps, gen);
    if (strcmp(argv[1], "smollm2") == 0)
        return bench_smollm2(out, text, ctx, reps, gen, only, also);
    usage();
    return 2;
}
