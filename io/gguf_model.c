/* gguf_model.c - a GGUF file as a model source: `<arch>.*` keys -> ftq_model_config and
 * `blk.N.*` tensors -> the Hugging Face names the model loader binds, dequantized to f32,
 * with the Q/K row permutation of llama.cpp's converter undone. Both mappings are tables
 * (one per architecture); a name no table knows passes through unchanged, so the loader
 * reports it as an unexpected tensor. Invariant: the checkpoint owns every tensor it lists. */
#include "ftq.h"
#include "io/json_util.h" /* cJSON: the ftq.quant.tensors list of --keep-quant */
#include "io/checkpoint_src.h"
#include "io/tokenizer/internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DIM (1 << 24)

/* ---- hyper-parameters --------------------------------------------------------------- */

enum { F_INT, F_FLOAT };

typedef struct {
    const char *suffix; /* after "<arch>." */
    int kind;
    size_t offset;      /* into ftq_model_config */
    int required;
    double def;
} key_row;

#define CI(field) F_INT, offsetof(ftq_model_config, field)
#define CF(field) F_FLOAT, offsetof(ftq_model_config, field)

static const key_row llama_keys[] = {
    {"block_count", CI(n_layers), 1, 0},
    {"embedding_length", CI(hidden_size), 1, 0},
    {"feed_forward_length", CI(intermediate_size), 1, 0},
    {"attention.head_count", CI(n_heads), 1, 0},
    {"attention.head_count_kv", CI(n_kv_heads), 0, 0},   /* default: head_count */
    {"context_length", CI(max_position), 0, 2048},
    {"vocab_size", CI(vocab_size), 0, 0},                /* default: token_embd rows */
    {"attention.key_length", CI(head_dim), 0, 0},        /* default: embedding / heads */
    {"attention.layer_norm_rms_epsilon", CF(norm_eps), 1, 0},
    {"rope.freq_base", CF(rope_theta), 0, 10000.0},
    {NULL, 0, 0, 0, 0},
};

/* as llama.cpp's converter writes GPT-2 (convert_hf_to_gguf.py GPT2Model) */
static const key_row gpt2_keys[] = {
    {"block_count", CI(n_layers), 1, 0},
    {"embedding_length", CI(hidden_size), 1, 0},
    {"feed_forward_length", CI(intermediate_size), 0, 0}, /* default: 4 * embedding */
    {"attention.head_count", CI(n_heads), 1, 0},
    {"context_length", CI(max_position), 1, 0},
    {"vocab_size", CI(vocab_size), 0, 0},
    {"attention.layer_norm_epsilon", CF(norm_eps), 1, 0},
    {NULL, 0, 0, 0, 0},
};

/* GGUF tensor names -> HF names. "%d" is the layer. permute: 1 = rows of a Q projection
 * (n_heads groups), 2 = K projection (n_kv_heads groups), 3 = a GPT-2 Conv1D weight (HF
 * stores it [in, out], the converter transposes it to nn.Linear's [out, in]). */
enum { P_NONE, P_Q, P_K, P_T };
typedef struct {
    const char *gguf, *hf;
    int permute;
} name_row;

static const name_row llama_names[] = {
    {"token_embd.weight", "model.embed_tokens.weight", 0},
    {"output_norm.weight", "model.norm.weight", 0},
    {"output.weight", "lm_head.weight", 0},
    {"blk.%d.attn_norm.weight", "model.layers.%d.input_layernorm.weight", 0},
    {"blk.%d.attn_q.weight", "model.layers.%d.self_attn.q_proj.weight", 1},
    {"blk.%d.attn_k.weight", "model.layers.%d.self_attn.k_proj.weight", 2},
    {"blk.%d.attn_v.weight", "model.layers.%d.self_attn.v_proj.weight", 0},
    {"blk.%d.attn_output.weight", "model.layers.%d.self_attn.o_proj.weight", 0},
    {"blk.%d.attn_q.bias", "model.layers.%d.self_attn.q_proj.bias", 1},
    {"blk.%d.attn_k.bias", "model.layers.%d.self_attn.k_proj.bias", 2},
    {"blk.%d.attn_v.bias", "model.layers.%d.self_attn.v_proj.bias", 0},
    {"blk.%d.attn_output.bias", "model.layers.%d.self_attn.o_proj.bias", 0},
    {"blk.%d.ffn_norm.weight", "model.layers.%d.post_attention_layernorm.weight", 0},
    {"blk.%d.ffn_gate.weight", "model.layers.%d.mlp.gate_proj.weight", 0},
    {"blk.%d.ffn_up.weight", "model.layers.%d.mlp.up_proj.weight", 0},
    {"blk.%d.ffn_down.weight", "model.layers.%d.mlp.down_proj.weight", 0},
    {NULL, NULL, 0},
};

static const name_row gpt2_names[] = {
    {"token_embd.weight", "transformer.wte.weight", 0},
    {"position_embd.weight", "transformer.wpe.weight", 0},
    {"output_norm.weight", "transformer.ln_f.weight", 0},
    {"output_norm.bias", "transformer.ln_f.bias", 0},
    {"output.weight", "lm_head.weight", 0},
    {"blk.%d.attn_norm.weight", "transformer.h.%d.ln_1.weight", 0},
    {"blk.%d.attn_norm.bias", "transformer.h.%d.ln_1.bias", 0},
    {"blk.%d.attn_qkv.weight", "transformer.h.%d.attn.c_attn.weight", P_T},
    {"blk.%d.attn_qkv.bias", "transformer.h.%d.attn.c_attn.bias", 0},
    {"blk.%d.attn_output.weight", "transformer.h.%d.attn.c_proj.weight", P_T},
    {"blk.%d.attn_output.bias", "transformer.h.%d.attn.c_proj.bias", 0},
    {"blk.%d.ffn_norm.weight", "transformer.h.%d.ln_2.weight", 0},
    {"blk.%d.ffn_norm.bias", "transformer.h.%d.ln_2.bias", 0},
    {"blk.%d.ffn_up.weight", "transformer.h.%d.mlp.c_fc.weight", P_T},
    {"blk.%d.ffn_up.bias", "transformer.h.%d.mlp.c_fc.bias", 0},
    {"blk.%d.ffn_down.weight", "transformer.h.%d.mlp.c_proj.weight", P_T},
    {"blk.%d.ffn_down.bias", "transformer.h.%d.mlp.c_proj.bias", 0},
    {NULL, NULL, 0},
};

typedef struct arch_row arch_row;
struct arch_row {
    const char *arch;       /* general.architecture */
    const char *model_type; /* ftq_model_config.model_type */
    ftq_arch ftq_arch;
    const key_row *keys;
    const name_row *names;
    /* what the keys leave: defaults, checks, the architecture's fixed choices */
    int (*finish)(const ftq_gguf *g, const arch_row *a, ftq_model_config *cfg);
};

static int llama_finish(const ftq_gguf *g, const arch_row *a, ftq_model_config *cfg);
static int gpt2_finish(const ftq_gguf *g, const arch_row *a, ftq_model_config *cfg);

static const arch_row archs[] = {
    {"llama", "llama", FTQ_ARCH_LLAMA, llama_keys, llama_names, llama_finish},
    {"gpt2", "gpt2", FTQ_ARCH_GPT2, gpt2_keys, gpt2_names, gpt2_finish},
};

#define GBAD(path, status, ...) ftq_wrap_error(ftq_set_error((status), __VA_ARGS__), "cannot load '%s'", (path))

static int read_keys(const ftq_gguf *g, const arch_row *a, ftq_model_config *cfg)
{
    const char *path = ftq_gguf_path(g);
    char key[128];
    for (const key_row *k = a->keys; k->suffix; k++) {
        snprintf(key, sizeof key, "%s.%s", a->arch, k->suffix);
        void *field = (char *)cfg + k->offset;
        int rc;
        if (k->kind == F_INT) {
            int64_t v = (int64_t)k->def;
            rc = ftq_gguf_get_int(g, key, &v);
            if (rc == FTQ_ENOTFOUND && k->required)
                return GBAD(path, FTQ_EFORMAT, "missing key '%s' (expected a positive integer)", key);
            if (rc != FTQ_OK && rc != FTQ_ENOTFOUND)
                return rc;
            if (rc == FTQ_OK && (v < 1 || v > MAX_DIM))
                return GBAD(path, FTQ_EFORMAT, "key '%s' is %" PRId64 " (expected 1..%d)", key, v, MAX_DIM);
            *(int *)field = (int)v;
        } else {
            double v = k->def;
            rc = ftq_gguf_get_float(g, key, &v);
            if (rc == FTQ_ENOTFOUND && k->required)
                return GBAD(path, FTQ_EFORMAT, "missing key '%s' (expected a positive number)", key);
            if (rc != FTQ_OK && rc != FTQ_ENOTFOUND)
                return rc;
            if (!(v > 0 && v < 1e30))
                return GBAD(path, FTQ_EFORMAT, "key '%s' is %g (expected a positive number)", key, v);
            *(float *)field = (float)v;
        }
    }
    return FTQ_OK;
}

static int32_t token_id(const ftq_gguf *g, const char *key)
{
    int64_t v;
    return ftq_gguf_get_int(g, key, &v) == FTQ_OK && v >= 0 && v < INT32_MAX ? (int32_t)v : -1;
}

/* 1 if the file's output.weight is token_embd.weight again (GPT-2's converter writes the
 * tied head out): then the model stays tied and output.weight is not loaded. */
static int output_is_embedding(const ftq_gguf *g)
{
    const ftq_gguf_tensor *o = ftq_gguf_find_tensor(g, "output.weight"), *e = ftq_gguf_find_tensor(g, "token_embd.weight");
    return o && e && o->type == e->type && o->nbytes == e->nbytes && memcmp(o->ne, e->ne, sizeof o->ne) == 0 &&
           memcmp(o->data, e->data, o->nbytes) == 0;
}

/* RoPE scaling as llama.cpp's converter writes it: rope.scaling.type "linear" with
 * rope.scaling.factor (HF "linear"), or a rope_freqs tensor of head_dim / 2 divisors (HF
 * "llama3", whose factors the converter computes). Other types (yarn, ...) are refused. */
static int read_rope_scaling(const ftq_gguf *g, const arch_row *a, ftq_model_config *cfg)
{
    const char *path = ftq_gguf_path(g), *s;
    char key[128], fkey[128];
    size_t len;
    double f = 0;
    cfg->rope_scaling = FTQ_ROPE_SCALING_NONE;
    snprintf(key, sizeof key, "%s.rope.scaling.type", a->arch);
    int rc = ftq_gguf_get_str(g, key, &s, &len);
    if (rc != FTQ_OK && rc != FTQ_ENOTFOUND)
        return rc;
    if (rc == FTQ_OK && len == 6 && memcmp(s, "linear", 6) == 0) {
        snprintf(fkey, sizeof fkey, "%s.rope.scaling.factor", a->arch);
        if ((rc = ftq_gguf_get_float(g, fkey, &f)) == FTQ_ENOTFOUND || (rc == FTQ_OK && !(f > 0 && f < 1e9)))
            return GBAD(path, FTQ_EFORMAT, "key '%s' is linear but '%s' is %s (expected a positive number)", key, fkey,
                        rc == FTQ_ENOTFOUND ? "missing" : "not positive");
        if (rc)
            return rc;
        cfg->rope_scaling = FTQ_ROPE_SCALING_LINEAR;
        cfg->rope_factor = (float)f;
    } else if (rc == FTQ_OK && !(len == 4 && memcmp(s, "none", 4) == 0)) {
        return GBAD(path, FTQ_EUNSUPPORTED, "key '%s' is '%.*s': rope scaling of this type is not supported "
                    "(expected none or linear)", key, (int)(len > 32 ? 32 : len), s);
    }
    const ftq_gguf_tensor *rf = ftq_gguf_find_tensor(g, "rope_freqs.weight");
    if (!rf)
        return FTQ_OK;
    int half = cfg->head_dim / 2;
    if (rf->n_dims != 1 || rf->ne[0] != half || half > FTQ_ROPE_MAX_FREQS)
        return GBAD(path, FTQ_EFORMAT, "tensor 'rope_freqs.weight' has %" PRId64 " elements (expected head_dim / 2 = "
                    "%d, at most %d)", rf->numel, half, FTQ_ROPE_MAX_FREQS);
    if (cfg->rope_scaling != FTQ_ROPE_SCALING_NONE)
        return GBAD(path, FTQ_EUNSUPPORTED, "rope_freqs.weight together with '%s' linear is not supported", key);
    if ((rc = ftq_gguf_tensor_to_f32(rf, cfg->rope_freq_factors)) != FTQ_OK)
        return rc;
    for (int i = 0; i < half; i++)
        if (!(cfg->rope_freq_factors[i] > 0) || !isfinite(cfg->rope_freq_factors[i]))
            return GBAD(path, FTQ_EFORMAT, "tensor 'rope_freqs.weight' holds %g at %d (expected a positive factor)",
                        (double)cfg->rope_freq_factors[i], i);
    cfg->rope_scaling = FTQ_ROPE_SCALING_FREQS;
    return FTQ_OK;
}

static int llama_finish(const ftq_gguf *g, const arch_row *a, ftq_model_config *cfg)
{
    const char *path = ftq_gguf_path(g);
    int rc;
    cfg->act = FTQ_ACT_SILU;
    if (!cfg->n_kv_heads)
        cfg->n_kv_heads = cfg->n_heads;
    if (!cfg->head_dim) {
        if (cfg->hidden_size % cfg->n_heads)
            return GBAD(path, FTQ_EFORMAT, "embedding_length %d is not a multiple of head_count %d",
                        cfg->hidden_size, cfg->n_heads);
        cfg->head_dim = cfg->hidden_size / cfg->n_heads;
    }
    if (cfg->n_heads % cfg->n_kv_heads)
        return GBAD(path, FTQ_EFORMAT, "head_count %d is not a multiple of head_count_kv %d", cfg->n_heads,
                    cfg->n_kv_heads);
    char key[128];
    int64_t rot;
    snprintf(key, sizeof key, "%s.rope.dimension_count", a->arch);
    if ((rc = ftq_gguf_get_int(g, key, &rot)) == FTQ_OK && rot != cfg->head_dim)
        return GBAD(path, FTQ_EUNSUPPORTED, "key '%s' is %" PRId64 ": partial rotary embeddings are not supported "
                    "(expected the head size %d)", key, rot, cfg->head_dim);
    if (rc != FTQ_OK && rc != FTQ_ENOTFOUND)
        return rc;
    if ((rc = read_rope_scaling(g, a, cfg)) != FTQ_OK)
        return rc;
    snprintf(key, sizeof key, "%s.expert_count", a->arch);
    int64_t experts;
    if (ftq_gguf_get_int(g, key, &experts) == FTQ_OK && experts > 0)
        return GBAD(path, FTQ_EUNSUPPORTED, "mixture of experts ('%s' is %" PRId64 ") is not supported", key, experts);
    cfg->tie_word_embeddings = ftq_gguf_find_tensor(g, "output.weight") == NULL;
    cfg->qkv_bias = ftq_gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL;
    cfg->o_bias = ftq_gguf_find_tensor(g, "blk.0.attn_output.bias") != NULL;
    return FTQ_OK;
}

/* GPT-2: LayerNorm, gelu (llama.cpp's GPT-2 graph uses the tanh approximation, as HF's
 * gelu_new), learned positions, biases everywhere, one fused qkv projection. */
static int gpt2_finish(const ftq_gguf *g, const arch_row *a, ftq_model_config *cfg)
{
    (void)a;
    const char *path = ftq_gguf_path(g);
    cfg->act = FTQ_ACT_GELU_TANH;
    if (cfg->hidden_size % cfg->n_heads)
        return GBAD(path, FTQ_EFORMAT, "embedding_length %d is not a multiple of head_count %d", cfg->hidden_size,
                    cfg->n_heads);
    if (!cfg->intermediate_size)
        cfg->intermediate_size = 4 * cfg->hidden_size;
    cfg->n_kv_heads = cfg->n_heads;
    cfg->head_dim = cfg->hidden_size / cfg->n_heads;
    cfg->rope_theta = 0.0f;
    cfg->qkv_bias = cfg->o_bias = cfg->mlp_bias = 1;
    cfg->tie_word_embeddings = ftq_gguf_find_tensor(g, "output.weight") == NULL || output_is_embedding(g);
    return FTQ_OK;
}

static int make_config(const ftq_gguf *g, const arch_row *a, ftq_model_config *cfg)
{
    const char *path = ftq_gguf_path(g);
    memset(cfg, 0, sizeof *cfg);
    cfg->arch = a->ftq_arch;
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", a->model_type);
    int rc = read_keys(g, a, cfg);
    if (rc || (rc = a->finish(g, a, cfg)) != FTQ_OK)
        return rc;
    if (!cfg->vocab_size) {
        const ftq_gguf_tensor *emb = ftq_gguf_find_tensor(g, "token_embd.weight");
        if (!emb || emb->ne[1] < 1 || emb->ne[1] > MAX_DIM)
            return GBAD(path, FTQ_EFORMAT, "no '%s.vocab_size' and no token_embd.weight to take it from", a->arch);
        cfg->vocab_size = (int)emb->ne[1];
    }
    cfg->bos_token_id = token_id(g, "tokenizer.ggml.bos_token_id");
    cfg->eos_token_id = token_id(g, "tokenizer.ggml.eos_token_id");
    cfg->pad_token_id = token_id(g, "tokenizer.ggml.padding_token_id");
    snprintf(cfg->torch_dtype, sizeof cfg->torch_dtype, "float32");
    return FTQ_OK;
}

/* ---- tensors ------------------------------------------------------------------------ */

/* Match `name` against a pattern with at most one "%d"; *layer = that number (or -1). */
static int match(const char *pat, const char *name, int *layer)
{
    const char *pd = strstr(pat, "%d");
    *layer = -1;
    if (!pd)
        return strcmp(pat, name) == 0;
    size_t pre = (size_t)(pd - pat);
    if (strncmp(pat, name, pre) != 0)
        return 0;
    const char *s = name + pre;
    if (*s < '0' || *s > '9' || (*s == '0' && s[1] >= '0' && s[1] <= '9'))
        return 0;
    long v = 0;
    while (*s >= '0' && *s <= '9' && v < 1000000)
        v = v * 10 + (*s++ - '0');
    if (strcmp(s, pd + 2) != 0)
        return 0;
    *layer = (int)v;
    return 1;
}

/* llama.cpp's converter reorders each head's rows from HF's [two halves of hd/2] to
 * interleaved pairs: gguf row h*hd + 2j + i holds HF row h*hd + i*hd/2 + j. Undo it. */
static int unpermute(float *w, int64_t rows, int64_t cols, int heads, const char *path, const char *name)
{
    if (heads < 1 || rows % heads || (rows / heads) % 2)
        return GBAD(path, FTQ_EFORMAT, "tensor '%s' has %" PRId64 " rows, not %d heads of an even size", name, rows,
                    heads);
    int64_t hd = rows / heads, half = hd / 2;
    float *tmp = malloc(sizeof(float) * (size_t)(hd * cols));
    if (!tmp)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    for (int h = 0; h < heads; h++) {
        float *blk = w + (int64_t)h * hd * cols;
        for (int64_t j = 0; j < half; j++)
            for (int i = 0; i < 2; i++)
                memcpy(tmp + (i * half + j) * cols, blk + (2 * j + i) * cols, sizeof(float) * (size_t)cols);
        memcpy(blk, tmp, sizeof(float) * (size_t)(hd * cols));
    }
    free(tmp);
    return FTQ_OK;
}

/* *data [rows, cols] -> a new [cols, rows] buffer (the old one freed). */
static int transpose_f32(void **data, int64_t rows, int64_t cols)
{
    const float *a = *data;
    size_t n = (size_t)(rows * cols);
    float *b = malloc(sizeof(float) * (n ? n : 1));
    if (!b)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            b[c * rows + r] = a[r * cols + c];
    free(*data);
    *data = b;
    return FTQ_OK;
}

static int convert_tensor(const ftq_gguf *g, const arch_row *a, const ftq_model_config *cfg,
                          const ftq_gguf_tensor *src, ftq_tensor *dst)
{
    const char *path = ftq_gguf_path(g);
    char hf[256];
    int permute = 0, layer = -1;
    snprintf(hf, sizeof hf, "%s", src->name);
    for (const name_row *r = a->names; r->gguf; r++) {
        if (match(r->gguf, src->name, &layer)) {
            if (layer >= 0)
                snprintf(hf, sizeof hf, r->hf, layer);
            else
                snprintf(hf, sizeof hf, "%s", r->hf);
            permute = r->permute;
            break;
        }
    }
    memset(dst, 0, sizeof *dst);
    if (!(dst->name = strdup(hf)))
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    dst->dtype = FTQ_DTYPE_F32;
    dst->ndim = src->n_dims;
    for (int i = 0; i < src->n_dims; i++)
        dst->shape[i] = src->ne[src->n_dims - 1 - i];
    if ((uint64_t)src->numel > SIZE_MAX / sizeof(float))
        return GBAD(path, FTQ_EFORMAT, "tensor '%s' is too large", src->name);
    dst->nbytes = sizeof(float) * (size_t)src->numel;
    float *d = malloc(dst->nbytes ? dst->nbytes : 1);
    if (!d)
        return GBAD(path, FTQ_ENOMEM, "out of memory dequantizing tensor '%s' (%zu bytes)", src->name, dst->nbytes);
    dst->data = d;
    dst->owned = 1;
    int rc = ftq_gguf_tensor_to_f32(src, d);
    ftq_gguf_release(g, src->data, src->nbytes); /* keeps peak memory near the f32 model's size */
    if (!rc && permute == P_T) {
        if (src->n_dims != 2)
            return GBAD(path, FTQ_EFORMAT, "tensor '%s' has %d dimensions (expected 2)", src->name, src->n_dims);
        rc = transpose_f32(&dst->data, src->ne[1], src->ne[0]);
        dst->shape[0] = src->ne[0];
        dst->shape[1] = src->ne[1];
    } else if (!rc && permute) {
        int64_t rows = src->ne[1], cols = src->n_dims > 1 ? src->ne[0] : 1;
        if (src->n_dims == 1)
            rows = src->ne[0];
        rc = unpermute(d, rows, cols, permute == 1 ? cfg->n_heads : cfg->n_kv_heads, path, src->name);
    }
    return rc;
}

/* ---- --keep-quant: quantized matrices as an ftq-quantized checkpoint holds them ------------ */

/* A 2-D matrix of a quantized ggml type that the loader may bind quantized: linear weights,
 * token embeddings and heads (not GPT-2's position table). */
static int keeps_quant(const arch_row *a, const ftq_gguf_tensor *t)
{
    const ftq_ggml_traits *tr = ftq_ggml_type_info(t->type);
    if (t->n_dims != 2 || !tr || tr->block_size == 1 || t->ne[0] % 32 || t->ne[0] > INT32_MAX || t->ne[1] > INT32_MAX)
        return 0;
    int layer;
    for (const name_row *r = a->names; r->gguf; r++)
        if (match(r->gguf, t->name, &layer))
            return strcmp(r->gguf, "position_embd.weight") != 0;
    return 0;
}

static int q8_block_ok(const unsigned char *b)
{
    uint16_t h;
    memcpy(&h, b, 2);
    if (!isfinite(ftq_f16_to_f32(h)))
        return 0;
    for (int j = 0; j < 32; j++)
        if (b[2 + j] == 0x80) /* -128: outside ftq's symmetric int8 grid */
            return 0;
    return 1;
}

/* The tensor as NAME.qweight / NAME.qscale (docs/quant-format.md 4.1, group 32; q4m also
 * NAME.qmin) and its entry in `list`; *nparts = the parts written (2 or 3). Q8_0 -> q8,
 * Q4_0 -> q4 and Q4_1 -> q4m code for code, scale for scale, minimum for minimum (the f32
 * values are then ggml's); any other quantized type is first requantized to Q8_0 by ggml's reference
 * quantizer (from its exact dequantization): 8.5 bits instead of 32. Q/K rows are
 * un-permuted; GPT-2's Conv1D weights become entries with "transposed" (the GGUF matrix is
 * already [out, in]). */
static int keep_quant_tensor(const ftq_gguf *g, const arch_row *a, const ftq_model_config *cfg,
                             const ftq_gguf_tensor *src, ftq_tensor *parts, cJSON *list, int *nparts)
{
    const char *path = ftq_gguf_path(g);
    char hf[256];
    int permute = 0, layer = -1;
    for (const name_row *r = a->names; r->gguf; r++)
        if (match(r->gguf, src->name, &layer)) {
            snprintf(hf, sizeof hf, r->hf, layer);
            permute = r->permute;
            break;
        }
    int64_t rows = src->ne[1], cols = src->ne[0], nb = cols / 32;
    uint32_t type = src->type;
    const unsigned char *blocks = src->data;
    unsigned char *requant = NULL;
    if (type == FTQ_GGML_Q8_0) { /* a -128 code or a non-finite scale: requantize like the others */
        for (int64_t i = 0; i < rows * nb && blocks; i++)
            if (!q8_block_ok(blocks + 34 * i))
                blocks = NULL;
        if (!blocks)
            type = 0;
    }
    if ((type == FTQ_GGML_Q4_K || type == FTQ_GGML_Q6_K) && cols % 256 == 0) {
        /* ftq's q4k / q6k hold these blocks as they are: only finite d (and dmin) */
        const size_t kb = type == FTQ_GGML_Q6_K ? 210 : 144;
        for (int64_t i = 0; i < rows * (cols / 256) && blocks; i++) {
            uint16_t h0, h1;
            memcpy(&h0, blocks + kb * (size_t)i + (type == FTQ_GGML_Q6_K ? 208 : 0), 2);
            memcpy(&h1, blocks + kb * (size_t)i + 2, 2);
            if (!isfinite(ftq_f16_to_f32(h0)) || (type == FTQ_GGML_Q4_K && !isfinite(ftq_f16_to_f32(h1))))
                blocks = NULL;
        }
        if (!blocks)
            type = 0;
    }
    if (type == FTQ_GGML_Q5_0) /* ftq's q5: the same grid; only finite scales */
        for (int64_t i = 0; i < rows * nb && blocks; i++) {
            uint16_t h;
            memcpy(&h, blocks + 22 * (size_t)i, 2);
            if (!isfinite(ftq_f16_to_f32(h)))
                blocks = NULL, type = 0;
        }
    const int kq = (type == FTQ_GGML_Q4_K || type == FTQ_GGML_Q6_K) && cols % 256 == 0, kq6 = kq && type == FTQ_GGML_Q6_K;
    const int q5 = type == FTQ_GGML_Q5_0;
    if (type != FTQ_GGML_Q8_0 && type != FTQ_GGML_Q4_0 && type != FTQ_GGML_Q4_1 && !kq && !q5) {
        float *f = malloc(sizeof(float) * (size_t)(rows * cols));
        requant = malloc((size_t)(rows * nb) * 34);
        int rc = f && requant ? ftq_gguf_tensor_to_f32(src, f) : ftq_set_error(FTQ_ENOMEM, "out of memory");
        for (int64_t i = 0; !rc && i < rows * cols; i++)
            if (!isfinite(f[i]))
                rc = GBAD(path, FTQ_ENUMERIC, "tensor '%s' holds a non-finite value", src->name);
        if (!rc)
            ftq_ggml_quantize_q8_0(f, requant, (size_t)(rows * nb));
        free(f);
        if (rc) {
            free(requant);
            return rc;
        }
        blocks = requant;
        type = FTQ_GGML_Q8_0;
    }
    ftq_gguf_release(g, src->data, src->nbytes);
    int q8 = type == FTQ_GGML_Q8_0, qm = type == FTQ_GGML_Q4_1;
    size_t bs = q8 ? 34 : qm ? 20 : 18, row_bytes = q8 ? (size_t)cols : (size_t)cols / 2, qoff = qm ? 4 : 2;
    if (kq) { /* one f16 d per super-block of 256; the rest of the block in .qweight */
        nb = cols / 256;
        bs = kq6 ? 210 : 144;
        row_bytes = (size_t)nb * (bs - 2);
    } else if (q5) {
        bs = 22;
        row_bytes = (size_t)nb * 20;
    }
    char *wname = malloc(strlen(hf) + 16), *sname = malloc(strlen(hf) + 16), *mname = qm ? malloc(strlen(hf) + 16) : NULL;
    size_t wbytes = row_bytes * (size_t)rows, nscales = (size_t)(rows * nb);
    uint8_t *qw = malloc(wbytes ? wbytes : 1);
    uint16_t *qs = malloc(sizeof(uint16_t) * (nscales ? nscales : 1));
    uint16_t *qmin = qm ? malloc(sizeof(uint16_t) * (nscales ? nscales : 1)) : NULL;
    *nparts = qm ? 3 : 2;
    memset(parts, 0, (size_t)*nparts * sizeof *parts);
    parts[0].name = wname;
    parts[1].name = sname;
    parts[0].data = qw;
    parts[1].data = qs;
    parts[0].owned = parts[1].owned = 1;
    if (qm) {
        parts[2].name = mname;
        parts[2].data = qmin;
        parts[2].owned = 1;
    }
    if (!wname || !sname || !qw || !qs || (qm && (!mname || !qmin))) {
        free(requant);
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    }
    size_t blen = strlen(hf);
    if (blen > 7 && strcmp(hf + blen - 7, ".weight") == 0)
        blen -= 7;
    snprintf(wname, strlen(hf) + 16, "%.*s.qweight", (int)blen, hf);
    snprintf(sname, strlen(hf) + 16, "%.*s.qscale", (int)blen, hf);
    if (qm)
        snprintf(mname, strlen(hf) + 16, "%.*s.qmin", (int)blen, hf);
    int heads = permute == P_Q ? cfg->n_heads : permute == P_K ? cfg->n_kv_heads : 0;
    if (heads && (rows % heads || (rows / heads) % 2)) {
        free(requant);
        return GBAD(path, FTQ_EFORMAT, "tensor '%s' has %" PRId64 " rows, not %d heads of an even size", src->name,
                    rows, heads);
    }
    int64_t hd = heads ? rows / heads : 0;
    for (int64_t r = 0; r < rows; r++) {
        int64_t gr = r; /* the GGUF row holding HF row r (llama.cpp's permutation) */
        if (heads) {
            int64_t h = r / hd, k = r % hd, i = k / (hd / 2), j = k % (hd / 2);
            gr = h * hd + 2 * j + i;
        }
        const unsigned char *b = blocks + (size_t)gr * (size_t)nb * bs;
        uint8_t *w = qw + (size_t)r * row_bytes;
        for (int64_t k = 0; k < nb; k++, b += bs) {
            if (kq) { /* Q6_K: d last; Q4_K: d first */
                memcpy(&qs[r * nb + k], b + (kq6 ? bs - 2 : 0), 2);
                memcpy(w + (bs - 2) * (size_t)k, b + (kq6 ? 0 : 2), bs - 2);
                continue;
            }
            memcpy(&qs[r * nb + k], b, 2);
            if (qm) /* Q4_1: f16 d, f16 m, then the nibbles */
                memcpy(&qmin[r * nb + k], b + 2, 2);
            if (q5) { /* ggml: qh (bit j: fifth bit of code j), qs[j] = j | j + 16 << 4; ftq: q4's nibble
                       * order (2i low, 2i + 1 high), then the fifth bits in qh's own byte order */
                uint8_t c[32], *o = w + 20 * k;
                for (int j = 0; j < 16; j++) {
                    c[j] = b[6 + j] & 15;
                    c[j + 16] = b[6 + j] >> 4;
                }
                for (int j = 0; j < 16; j++)
                    o[j] = (uint8_t)(c[2 * j] | c[2 * j + 1] << 4);
                memcpy(o + 16, b + 2, 4);
                continue;
            }
            if (q8) {
                memcpy(w + 32 * k, b + 2, 32);
            } else { /* ggml: element j low nibble of byte j, j + 16 high; ftq: 2i low, 2i + 1 high */
                uint8_t c[32];
                for (int j = 0; j < 16; j++) {
                    c[j] = b[qoff + j] & 15;
                    c[j + 16] = b[qoff + j] >> 4;
                }
                for (int j = 0; j < 16; j++)
                    w[16 * k + j] = (uint8_t)(c[2 * j] | c[2 * j + 1] << 4);
            }
        }
    }
    free(requant);
    parts[0].dtype = q8 && !kq ? FTQ_DTYPE_I8 : FTQ_DTYPE_U8;
    parts[0].ndim = parts[1].ndim = 2;
    parts[0].shape[0] = parts[1].shape[0] = rows;
    parts[0].shape[1] = (int64_t)row_bytes;
    parts[0].nbytes = row_bytes * (size_t)rows;
    parts[1].dtype = FTQ_DTYPE_F16;
    parts[1].shape[1] = nb;
    parts[1].nbytes = sizeof(uint16_t) * (size_t)(rows * nb);
    if (qm) {
        parts[2].dtype = FTQ_DTYPE_F16;
        parts[2].ndim = 2;
        parts[2].shape[0] = rows;
        parts[2].shape[1] = nb;
        parts[2].nbytes = parts[1].nbytes;
    }
    cJSON *e = cJSON_CreateObject(), *shape = cJSON_CreateArray();
    if (!e || !shape || !cJSON_AddItemToObject(list, hf, e)) {
        cJSON_Delete(e);
        cJSON_Delete(shape);
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    }
    cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)rows));
    cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)cols));
    if (!cJSON_AddStringToObject(e, "scheme", kq ? (kq6 ? "q6k" : "q4k") : q5 ? "q5" : q8 ? "q8" : qm ? "q4m" : "q4") ||
        !cJSON_AddNumberToObject(e, "group", kq ? 256 : 32) ||
        !cJSON_AddItemToObject(e, "shape", shape) || !cJSON_AddBoolToObject(e, "transposed", permute == P_T) ||
        !cJSON_AddStringToObject(e, "source_dtype", ftq_ggml_type_info(src->type)->name))
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    return FTQ_OK;
}

/* --keep-quant also keeps F16 / BF16 tensors as they are (the loader converts them as it
 * does a safetensors file's): rows un-permuted for Q/K. FTQ_ENOTFOUND (no message): not
 * kept (a GPT-2 Conv1D matrix, which needs a transposition), convert it as usual. */
static int keep_half_tensor(const ftq_gguf *g, const arch_row *a, const ftq_model_config *cfg,
                            const ftq_gguf_tensor *src, ftq_tensor *dst)
{
    char hf[256];
    int permute = 0, layer = -1;
    snprintf(hf, sizeof hf, "%s", src->name);
    for (const name_row *r = a->names; r->gguf; r++)
        if (match(r->gguf, src->name, &layer)) {
            snprintf(hf, sizeof hf, r->hf, layer);
            permute = r->permute;
            break;
        }
    memset(dst, 0, sizeof *dst);
    if (!(dst->name = strdup(hf)))
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    if (permute == P_T)
        return FTQ_ENOTFOUND;
    int64_t rows = src->n_dims > 1 ? src->ne[1] : src->ne[0], cols = src->n_dims > 1 ? src->ne[0] : 1;
    int heads = permute == P_Q ? cfg->n_heads : permute == P_K ? cfg->n_kv_heads : 0;
    if (heads && (rows % heads || (rows / heads) % 2))
        return GBAD(ftq_gguf_path(g), FTQ_EFORMAT, "tensor '%s' has %" PRId64 " rows, not %d heads of an even size",
                    src->name, rows, heads);
    unsigned char *d = malloc(src->nbytes ? src->nbytes : 1);
    if (!d)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    if (heads) {
        size_t rb = 2 * (size_t)cols;
        int64_t hd = rows / heads, half = hd / 2;
        for (int h = 0; h < heads; h++)
            for (int64_t j = 0; j < half; j++)
                for (int i = 0; i < 2; i++)
                    memcpy(d + (size_t)(h * hd + i * half + j) * rb,
                           (const unsigned char *)src->data + (size_t)(h * hd + 2 * j + i) * rb, rb);
    } else {
        memcpy(d, src->data, src->nbytes);
    }
    ftq_gguf_release(g, src->data, src->nbytes);
    dst->dtype = src->type == FTQ_GGML_F16 ? FTQ_DTYPE_F16 : FTQ_DTYPE_BF16;
    dst->ndim = src->n_dims;
    for (int i = 0; i < src->n_dims; i++)
        dst->shape[i] = src->ne[src->n_dims - 1 - i];
    dst->nbytes = src->nbytes;
    dst->data = d;
    dst->owned = 1;
    return FTQ_OK;
}

/* FTQ_GGUF_BF16: an F32 tensor replaced by its BF16 rounding. */
static int narrow_bf16(ftq_tensor *t)
{
    size_t n = (size_t)ftq_tensor_numel(t);
    void *h = malloc(2 * (n ? n : 1));
    if (!h)
        return ftq_set_error(FTQ_ENOMEM, "out of memory narrowing tensor '%s' to bf16", t->name);
    ftq_dtype_info(FTQ_DTYPE_BF16)->from_f32(t->data, h, n);
    if (t->owned)
        free(t->data);
    t->data = h;
    t->owned = 1;
    t->dtype = FTQ_DTYPE_BF16;
    t->nbytes = 2 * n;
    return FTQ_OK;
}

int ftq_gguf_checkpoint_open(const char *path, ftq_model_config *cfg_out, ftq_checkpoint **out)
{
    return ftq_gguf_checkpoint_open_ex(path, 0, cfg_out, out);
}

int ftq_gguf_checkpoint_open_ex(const char *path, unsigned flags, ftq_model_config *cfg_out, ftq_checkpoint **out)
{
    if (!path || !out)
        return ftq_set_error(FTQ_EINVAL, "ftq_gguf_checkpoint_open: NULL argument");
    *out = NULL;
    ftq_gguf *g = NULL;
    int rc = ftq_gguf_open(path, &g);
    if (rc)
        return rc;
    const char *arch;
    size_t alen;
    const arch_row *a = NULL;
    rc = ftq_gguf_get_str(g, "general.architecture", &arch, &alen);
    if (rc == FTQ_ENOTFOUND)
        rc = GBAD(path, FTQ_EFORMAT, "missing key 'general.architecture' (expected a string such as \"llama\")");
    for (size_t i = 0; !rc && i < sizeof archs / sizeof archs[0]; i++)
        if (strlen(archs[i].arch) == alen && memcmp(archs[i].arch, arch, alen) == 0)
            a = &archs[i];
    if (!rc && !a)
        rc = GBAD(path, FTQ_EUNSUPPORTED, "architecture '%.*s' is not supported (expected llama or gpt2)",
                  (int)(alen > 64 ? 64 : alen), arch);
    ftq_model_config cfg;
    if (!rc)
        rc = make_config(g, a, &cfg);
    size_t n = ftq_gguf_tensor_count(g);
    ftq_tensor *ts = NULL;
    if (!rc && !(ts = calloc(n ? n : 1, sizeof *ts)))
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
    size_t done = 0;
    cJSON *qlist = (flags & FTQ_GGUF_KEEP_QUANT) ? cJSON_CreateObject() : NULL;
    if (!rc && (flags & FTQ_GGUF_KEEP_QUANT) && !qlist)
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
    if (!rc && qlist) { /* room for three parts per tensor */
        ftq_tensor *grown = realloc(ts, 3 * (n ? n : 1) * sizeof *ts);
        if (!grown)
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        else
            memset((ts = grown) + n, 0, 2 * n * sizeof *ts);
    }
    for (size_t i = 0; !rc && i < n; i++) {
        const ftq_gguf_tensor *t = ftq_gguf_tensor_at(g, i);
        if (cfg.tie_word_embeddings && strcmp(t->name, "output.weight") == 0)
            continue; /* the embedding again (output_is_embedding) */
        if (strcmp(t->name, "rope_freqs.weight") == 0)
            continue; /* in the config (read_rope_scaling) */
        if (qlist && keeps_quant(a, t)) {
            int np = 2;
            rc = keep_quant_tensor(g, a, &cfg, t, &ts[done], qlist, &np);
            done += (size_t)np; /* on failure too: the parts may hold names or data to free */
            continue;
        }
        if (qlist && (t->type == FTQ_GGML_F16 || t->type == FTQ_GGML_BF16)) {
            rc = keep_half_tensor(g, a, &cfg, t, &ts[done]);
            done++;
            if (rc != FTQ_ENOTFOUND)
                continue;
            rc = FTQ_OK; /* not kept: converted below into the same slot */
            free(ts[--done].name);
            memset(&ts[done], 0, sizeof ts[done]);
        }
        rc = convert_tensor(g, a, &cfg, t, &ts[done]);
        if (!rc && (flags & FTQ_GGUF_BF16) && ts[done].ndim == 2)
            rc = narrow_bf16(&ts[done]);
        done++; /* on failure too: convert_tensor may have set a name or data to free */
    }
    size_t file_bytes = g ? ftq_gguf_file_size(g) : 0;
    ftq_gguf_close(g); /* every tensor is a copy now */
    char *qjson = qlist && !rc ? cJSON_PrintUnformatted(qlist) : NULL;
    if (qlist && !rc && !qjson)
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
    cJSON_Delete(qlist);
    if (!rc)
        rc = ftq_checkpoint_from_tensors(ts, done, file_bytes, path, out);
    else if (ts)
        ftq_tensors_free(ts, done);
    if (!rc && qjson && strcmp(qjson, "{}") != 0 &&
        ((rc = ftq_checkpoint_set_metadata(*out, "ftq.quant.version", "1")) != FTQ_OK ||
         (rc = ftq_checkpoint_set_metadata(*out, "ftq.quant.tensors", qjson)) != FTQ_OK)) {
        ftq_checkpoint_close(*out);
        *out = NULL;
    }
    free(qjson);
    if (!rc && cfg_out)
        *cfg_out = cfg;
    return rc;
}

/* ---- the reverse: a checkpoint as a GGUF file ----------------------------------------- */

/* HF name -> GGUF name through the same table (*layer >= 0 when the pattern has "%d"). */
static const name_row *to_gguf_name(const arch_row *a, const char *hf, char *out, size_t cap)
{
    int layer;
    for (const name_row *r = a->names; r->gguf; r++)
        if (match(r->hf, hf, &layer)) {
            if (layer >= 0)
                snprintf(out, cap, r->gguf, layer);
            else
                snprintf(out, cap, "%s", r->gguf);
            return r;
        }
    return NULL;
}

/* llama.cpp's converter permutation (the inverse of unpermute), on rows of row_bytes bytes:
 * the same for f32 values and for rows of ggml blocks (blocks never cross rows). */
static void permute_rows(const void *src, void *dst, int64_t rows, size_t row_bytes, int heads)
{
    int64_t hd = rows / heads, half = hd / 2;
    const unsigned char *s = src;
    unsigned char *d = dst;
    for (int h = 0; h < heads; h++)
        for (int64_t j = 0; j < half; j++)
            for (int i = 0; i < 2; i++)
                memcpy(d + (size_t)(h * hd + 2 * j + i) * row_bytes, s + (size_t)(h * hd + i * half + j) * row_bytes,
                       row_bytes);
}

/* general.file_type (llama.cpp's llama_ftype) of a file whose matrices are `type`. */
static uint32_t file_type_of(uint32_t type)
{
    switch (type) {
    case FTQ_GGML_F16: return 1;
    case FTQ_GGML_Q4_0: return 2;
    case FTQ_GGML_Q4_1: return 3;
    case FTQ_GGML_Q8_0: return 7;
    case FTQ_GGML_Q5_0: return 8;
    case FTQ_GGML_Q4_K: return 14; /* llama.cpp's MOSTLY_Q4_K_S */
    case FTQ_GGML_Q6_K: return 18;
    case FTQ_GGML_BF16: return 32;
    default: return 0;
    }
}

static int writes_type(uint32_t type)
{
    return type == FTQ_GGML_F32 || type == FTQ_GGML_F16 || type == FTQ_GGML_BF16 || type == FTQ_GGML_Q8_0 ||
           type == FTQ_GGML_Q4_0 || type == FTQ_GGML_Q4_1;
}

uint32_t ftq_gguf_export_type_of(uint32_t type, int ndim, int64_t cols)
{
    if (ndim != 2 || type == FTQ_GGUF_EXPORT_KEEP)
        return FTQ_GGML_F32;
    const ftq_ggml_traits *gt = ftq_ggml_type_info(type);
    return gt && cols % (int64_t)gt->block_size == 0 ? type : FTQ_GGML_F16;
}

/* Encode n f32 values as ggml type tt into a new buffer (*out). */
static int encode(const float *f, size_t n, uint32_t tt, void **out, size_t *nbytes)
{
    const ftq_ggml_traits *gt = ftq_ggml_type_info(tt);
    *nbytes = n / gt->block_size * gt->type_size;
    void *q = malloc(*nbytes ? *nbytes : 1);
    if (!q)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    switch (tt) {
    case FTQ_GGML_F32: memcpy(q, f, *nbytes); break;
    case FTQ_GGML_F16: ftq_dtype_info(FTQ_DTYPE_F16)->from_f32(f, q, n); break;
    case FTQ_GGML_BF16: ftq_dtype_info(FTQ_DTYPE_BF16)->from_f32(f, q, n); break;
    case FTQ_GGML_Q8_0: ftq_ggml_quantize_q8_0(f, q, n / 32); break;
    case FTQ_GGML_Q4_0: ftq_ggml_quantize_q4_0(f, q, n / 32); break;
    default: ftq_ggml_quantize_q4_1(f, q, n / 32); break;
    }
    *out = q;
    return FTQ_OK;
}

/* One tensor of the file: its bytes in *data (a new buffer, or NULL when src->t's own F32
 * data is written as it is; then *view points at it). */
static int export_one(const ftq_model_config *cfg, const name_row *r, const ftq_gguf_export_tensor *src,
                      uint32_t type, const char *path, uint32_t *tt_out, void **data, const void **view,
                      size_t *nbytes, int64_t ne[2], ftq_gguf_export_stats *st)
{
    const ftq_tensor *t = src->t;
    int64_t rows = t->ndim == 2 ? t->shape[0] : 1, cols = t->shape[t->ndim - 1];
    /* GPT-2 Conv1D: t is [in, out]; the file wants [out, in] (given blocks already are) */
    int conv1d = r->permute == P_T && t->ndim == 2, transpose = conv1d && !src->blocks;
    ne[0] = conv1d ? rows : cols;
    ne[1] = conv1d ? cols : rows;
    size_t numel = (size_t)(rows * cols);
    int heads = r->permute == 1 ? cfg->n_heads : r->permute == 2 ? cfg->n_kv_heads : 0;
    int64_t prow = t->ndim == 2 ? rows : cols; /* a bias is a column of rows */
    if (heads && (prow % heads || (prow / heads) % 2))
        return ftq_set_error(FTQ_EFORMAT, "cannot export '%s': tensor '%s' has %" PRId64 " rows, not %d heads of "
                             "an even size", path, t->name, prow, heads);
    *data = NULL;
    *view = NULL;
    if (src->blocks) { /* already encoded: written as given, rows permuted for Q/K */
        const ftq_ggml_traits *gt = ftq_ggml_type_info(src->blocks_type);
        if (!gt || t->ndim != 2 || ne[0] % (int64_t)gt->block_size ||
            src->blocks_nbytes != numel / gt->block_size * gt->type_size)
            return ftq_set_error(FTQ_EINVAL, "cannot export '%s': encoded tensor '%s' does not match its shape",
                                 path, t->name);
        *tt_out = src->blocks_type;
        *nbytes = src->blocks_nbytes;
        if (!heads) { /* (never both heads and conv1d) */
            *view = src->blocks;
        } else {
            if (!(*data = malloc(*nbytes ? *nbytes : 1)))
                return ftq_set_error(FTQ_ENOMEM, "out of memory");
            permute_rows(src->blocks, *data, rows, *nbytes / (size_t)rows, heads);
        }
        st->copied++;
        return FTQ_OK;
    }
    const ftq_dtype_traits *tr = ftq_dtype_info(t->dtype);
    if (!tr || !tr->to_f32 || tr->block_size != 1 || !t->data)
        return ftq_set_error(FTQ_EUNSUPPORTED, "cannot export '%s': tensor '%s' of dtype %s", path, t->name,
                             tr ? tr->name : "?");
    /* f32 values: the checkpoint's own when F32 and aligned, else a converted copy; Q and K
     * rows permuted into a second copy */
    const float *f = t->data;
    float *conv = NULL, *perm = NULL;
    if (t->dtype != FTQ_DTYPE_F32 || ((uintptr_t)t->data & 3)) {
        if (!(conv = malloc(sizeof(float) * (numel ? numel : 1))))
            return ftq_set_error(FTQ_ENOMEM, "out of memory");
        ftq_tensor_to_f32(t, conv);
        f = conv;
    }
    if (heads) {
        if (!(perm = malloc(sizeof(float) * (numel ? numel : 1)))) {
            free(conv);
            return ftq_set_error(FTQ_ENOMEM, "out of memory");
        }
        permute_rows(f, perm, prow, sizeof(float) * (size_t)(numel / (size_t)prow), heads);
        free(conv);
        conv = perm;
        f = perm;
    }
    if (transpose) { /* to nn.Linear's [out, in], as the converter writes it */
        if (!(perm = malloc(sizeof(float) * (numel ? numel : 1)))) {
            free(conv);
            return ftq_set_error(FTQ_ENOMEM, "out of memory");
        }
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++)
                perm[j * rows + i] = f[i * cols + j];
        free(conv);
        conv = perm;
        f = perm;
        cols = ne[0];
    }
    for (size_t k = 0; k < numel; k++)
        if (!isfinite(f[k])) {
            free(conv);
            return ftq_set_error(FTQ_ENUMERIC, "cannot export '%s': tensor '%s' holds a non-finite value at %zu",
                                 path, t->name, k);
        }
    uint32_t tt = ftq_gguf_export_type_of(type, t->ndim, cols);
    if (type == FTQ_GGUF_EXPORT_KEEP && t->ndim == 2 && (t->dtype == FTQ_DTYPE_F16 || t->dtype == FTQ_DTYPE_BF16))
        tt = t->dtype == FTQ_DTYPE_F16 ? FTQ_GGML_F16 : FTQ_GGML_BF16; /* exact */
    *tt_out = tt;
    int rc = FTQ_OK;
    if (tt == FTQ_GGML_F32 && conv) {
        *data = conv;
        *nbytes = sizeof(float) * numel;
    } else if (tt == FTQ_GGML_F32) {
        *view = f;
        *nbytes = sizeof(float) * numel;
    } else {
        rc = encode(f, numel, tt, data, nbytes);
        free(conv);
    }
    if (!rc && t->ndim == 2)
        st->encoded++;
    return rc;
}

/* The rope_freqs tensor llama.cpp's converter writes for a llama3-scaled model
 * (LlamaModel.generate_extra_tensors: per frequency 1 (kept), factor (divided), or
 * 1 / ((1 - smooth) / factor + smooth)); a FREQS model's own factors. */
static int rope_freqs_of(const ftq_model_config *cfg, float **out)
{
    int half = cfg->head_dim / 2;
    if (half > FTQ_ROPE_MAX_FREQS)
        return ftq_set_error(FTQ_EUNSUPPORTED, "rope scaling with head_dim %d is not supported", cfg->head_dim);
    float *f = malloc(sizeof(float) * (size_t)(half ? half : 1));
    if (!f)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    for (int i = 0; i < half; i++) {
        if (cfg->rope_scaling == FTQ_ROPE_SCALING_FREQS) {
            f[i] = cfg->rope_freq_factors[i];
            continue;
        }
        double freq = pow((double)cfg->rope_theta, -2.0 * i / (double)cfg->head_dim);
        double factor = cfg->rope_factor, lo = cfg->rope_low_freq_factor, hi = cfg->rope_high_freq_factor;
        double old_ctx = cfg->rope_original_max_position, wavelen = 2.0 * M_PI / freq;
        if (wavelen < old_ctx / hi)
            f[i] = 1.0f;
        else if (wavelen > old_ctx / lo)
            f[i] = (float)factor;
        else {
            double smooth = (old_ctx / wavelen - lo) / (hi - lo);
            f[i] = (float)(1.0 / ((1.0 - smooth) / factor + smooth));
        }
    }
    *out = f;
    return FTQ_OK;
}

int ftq_gguf_export_tensors(const ftq_model_config *cfg, const ftq_gguf_export_tensor *ts, size_t n,
                            const ftq_tokenizer *tok, uint32_t type, const char *path, ftq_gguf_export_stats *stats)
{
    if (!cfg || (!ts && n) || !tok || !path)
        return ftq_set_error(FTQ_EINVAL, "ftq_gguf_export: NULL argument");
    ftq_gguf_export_stats st = {0, 0};
    if (!writes_type(type) && type != FTQ_GGUF_EXPORT_KEEP)
        return ftq_set_error(FTQ_EINVAL, "cannot export '%s': tensor type %u is not one ftq writes "
                             "(f32, f16, bf16, q8_0, q4_0, q4_1)", path, type);
    const arch_row *a = NULL;
    if (cfg->arch == FTQ_ARCH_LLAMA && strcmp(cfg->model_type, "llama") == 0 && !cfg->sliding_window &&
        !cfg->mlp_bias)
        a = &archs[0];
    else if (cfg->arch == FTQ_ARCH_GPT2)
        a = &archs[1];
    if (!a || cfg->is_classifier)
        return ftq_set_error(FTQ_EUNSUPPORTED, "cannot export '%s': only plain llama and gpt2 causal LMs are "
                             "written as GGUF (this is a %s%s model)", path, cfg->model_type,
                             cfg->is_classifier ? " sequence classifier" : "");
    ftq_gguf_writer *w = NULL;
    int rc = ftq_gguf_writer_new(&w);
    if (rc)
        return rc;
    ftq_gguf_writer_str(w, "general.architecture", a->arch);
    ftq_gguf_writer_str(w, "general.type", "model");
    if (type != FTQ_GGUF_EXPORT_KEEP)
        ftq_gguf_writer_u32(w, "general.file_type", file_type_of(type));
    ftq_gguf_writer_u32(w, "general.quantization_version", 2);
    size_t type_bytes[FTQ_GGML_TYPE_LIMIT] = {0}; /* of the matrices: the file type of KEEP */
    char key[128];
    /* the architecture's keys from the same table the reader uses */
    for (const key_row *k = a->keys; k->suffix; k++) {
        snprintf(key, sizeof key, "%s.%s", a->arch, k->suffix);
        const void *field = (const char *)cfg + k->offset;
        if (strcmp(k->suffix, "attention.key_length") == 0 && cfg->head_dim * cfg->n_heads == cfg->hidden_size)
            continue; /* the default */
        if (k->kind == F_INT)
            ftq_gguf_writer_u32(w, key, (uint32_t)*(const int *)field);
        else
            ftq_gguf_writer_f32(w, key, *(const float *)field);
    }
    float *rope_freqs = NULL;
    if (a->ftq_arch == FTQ_ARCH_LLAMA) {
        snprintf(key, sizeof key, "%s.rope.dimension_count", a->arch);
        ftq_gguf_writer_u32(w, key, (uint32_t)cfg->head_dim);
        if (cfg->rope_scaling == FTQ_ROPE_SCALING_LINEAR) {
            snprintf(key, sizeof key, "%s.rope.scaling.type", a->arch);
            ftq_gguf_writer_str(w, key, "linear");
            snprintf(key, sizeof key, "%s.rope.scaling.factor", a->arch);
            ftq_gguf_writer_f32(w, key, cfg->rope_factor);
        } else if (cfg->rope_scaling != FTQ_ROPE_SCALING_NONE) {
            rc = rope_freqs_of(cfg, &rope_freqs);
            int64_t ne = cfg->head_dim / 2;
            if (!rc)
                rc = ftq_gguf_writer_tensor(w, "rope_freqs.weight", FTQ_GGML_F32, 1, &ne, rope_freqs,
                                            sizeof(float) * (size_t)ne);
        }
    }
    if (rc) {
        free(rope_freqs);
        ftq_gguf_writer_free(w);
        return rc;
    }
    rc = ftq_tok_gguf_describe(tok, w);
    if (cfg->pad_token_id >= 0 && cfg->pad_token_id < cfg->vocab_size)
        ftq_gguf_writer_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)cfg->pad_token_id);
    void **bufs = calloc(n ? n : 1, sizeof *bufs);
    size_t nbuf = 0;
    if (!rc && !bufs)
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < n; i++) {
        const ftq_tensor *t = ts[i].t;
        char gname[FTQ_GGUF_MAX_NAME + 8], pref[300];
        const name_row *r = to_gguf_name(a, t->name, gname, sizeof gname);
        if (!r && a->ftq_arch == FTQ_ARCH_GPT2) { /* GPT-2 checkpoints without "transformer." */
            snprintf(pref, sizeof pref, "transformer.%s", t->name);
            r = to_gguf_name(a, pref, gname, sizeof gname);
        }
        size_t nl = strlen(t->name);
        if (!r && (strstr(t->name, "rotary_emb.inv_freq") || (nl > 10 && strcmp(t->name + nl - 10, ".attn.bias") == 0) ||
                   (nl > 17 && strcmp(t->name + nl - 17, ".attn.masked_bias") == 0)))
            continue; /* buffers, not parameters */
        if (r && strcmp(r->hf, "lm_head.weight") == 0 && cfg->tie_word_embeddings)
            continue; /* tied: llama.cpp uses token_embd */
        if (!r) {
            rc = ftq_set_error(FTQ_EUNSUPPORTED, "cannot export '%s': tensor '%s' has no GGUF name", path, t->name);
            break;
        }
        if (t->ndim < 1 || t->ndim > 2) {
            rc = ftq_set_error(FTQ_EUNSUPPORTED, "cannot export '%s': tensor '%s' has %d dimensions (expected 1 or 2)",
                               path, t->name, t->ndim);
            break;
        }
        uint32_t tt = 0;
        void *data = NULL;
        const void *view = NULL;
        size_t nbytes = 0;
        int64_t ne[2];
        rc = export_one(cfg, r, &ts[i], type, path, &tt, &data, &view, &nbytes, ne, &st);
        if (data)
            bufs[nbuf++] = data;
        if (rc)
            break;
        rc = ftq_gguf_writer_tensor(w, gname, tt, t->ndim, ne, data ? data : view, nbytes);
        if (t->ndim == 2)
            type_bytes[tt] += nbytes;
        /* GPT-2's converter writes the tied head out as output.weight (older llama.cpp
         * builds require it) */
        if (!rc && a->ftq_arch == FTQ_ARCH_GPT2 && cfg->tie_word_embeddings && strcmp(gname, "token_embd.weight") == 0)
            rc = ftq_gguf_writer_tensor(w, "output.weight", tt, t->ndim, ne, data ? data : view, nbytes);
    }
    if (type == FTQ_GGUF_EXPORT_KEEP) { /* llama.cpp's "mostly X": the type holding most bytes */
        uint32_t most = FTQ_GGML_F32;
        for (uint32_t k = 0; k < FTQ_GGML_TYPE_LIMIT; k++)
            most = type_bytes[k] > type_bytes[most] ? k : most;
        ftq_gguf_writer_u32(w, "general.file_type", file_type_of(most));
    }
    if (!rc)
        rc = ftq_gguf_writer_write(w, path);
    for (size_t i = 0; i < nbuf; i++)
        free(bufs[i]);
    free(bufs);
    free(rope_freqs);
    ftq_gguf_writer_free(w);
    if (!rc && stats)
        *stats = st;
    return rc;
}

int ftq_gguf_export(const ftq_model_config *cfg, const ftq_checkpoint *ck, const ftq_tokenizer *tok, uint32_t type,
                    const char *path)
{
    if (!cfg || !ck || !tok || !path)
        return ftq_set_error(FTQ_EINVAL, "ftq_gguf_export: NULL argument");
    size_t n = ftq_checkpoint_count(ck);
    ftq_gguf_export_tensor *ts = calloc(n ? n : 1, sizeof *ts);
    if (!ts)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        ts[i].t = ftq_checkpoint_tensor(ck, i);
    int rc = ftq_gguf_export_tensors(cfg, ts, n, tok, type, path, NULL);
    free(ts);
    return rc;
}

int ftq_gguf_model_config(const ftq_gguf *g, ftq_model_config *cfg)
{
    const char *path = ftq_gguf_path(g), *arch;
    size_t alen;
    int rc = ftq_gguf_get_str(g, "general.architecture", &arch, &alen);
    if (rc == FTQ_ENOTFOUND)
        return GBAD(path, FTQ_EFORMAT, "missing key 'general.architecture' (expected a string such as \"llama\")");
    if (rc)
        return rc;
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (strlen(archs[i].arch) == alen && memcmp(archs[i].arch, arch, alen) == 0)
            return make_config(g, &archs[i], cfg);
    return GBAD(path, FTQ_EUNSUPPORTED, "architecture '%.*s' is not supported", (int)(alen > 64 ? 64 : alen), arch);
}
