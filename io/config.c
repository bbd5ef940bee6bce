/* config.c - config.json -> ftq_model_config for the llama family (llama, mistral, qwen2)
 * and gpt2. Invariant: a config that parses is usable as-is: sizes positive and bounded,
 * heads divide evenly, token ids inside the vocabulary, and every option ftq does not
 * implement (rope_scaling types other than linear / llama3, GPT-2 attention variants, ...)
 * is refused with the key named. */
#include "ftq.h"
#include "io/json_util.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DIM (1 << 24)
#define MAX_LABELS 65536 /* a stated limit: labels size a head, metrics and label tables */

typedef struct {
    const char *name; /* file name for messages */
    const cJSON *root;
} cfg_ctx;

#define CBAD(ctx, ...) ftq_wrap_error(ftq_set_error(FTQ_EFORMAT, __VA_ARGS__), "invalid config '%s'", (ctx)->name)
#define CUNSUP(ctx, ...) \
    ftq_wrap_error(ftq_set_error(FTQ_EUNSUPPORTED, __VA_ARGS__), "unsupported config '%s'", (ctx)->name)

/* The value of `key`, treating JSON null as absent (HF writes null for "use the default"). */
static const cJSON *get(const cfg_ctx *c, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->root, key);
    return cJSON_IsNull(v) ? NULL : v;
}

/* A size: integer in [1, max]. Absent -> *out = def, or an error if def < 0 (required). */
static int get_size(const cfg_ctx *c, const char *key, int def, int max, int *out)
{
    const cJSON *v = get(c, key);
    char got[64];
    int64_t i;
    if (!v) {
        if (def < 0)
            return CBAD(c, "missing required key \"%s\"", key);
        *out = def;
        return FTQ_OK;
    }
    if (!ftq_json_int(v, INT64_MIN / 2, INT64_MAX / 2, &i) || i <= 0)
        return CBAD(c, "key \"%s\" must be a positive integer, got %s", key, ftq_json_describe(v, got, sizeof got));
    if (i > max)
        return CUNSUP(c, "key \"%s\" is %lld, more than ftq supports (at most %d)", key, (long long)i, max);
    *out = (int)i;
    return FTQ_OK;
}

static int get_bool(const cfg_ctx *c, const char *key, int def, int *out)
{
    const cJSON *v = get(c, key);
    char got[64];
    if (!v) {
        *out = def;
        return FTQ_OK;
    }
    if (!cJSON_IsBool(v))
        return CBAD(c, "key \"%s\" must be true or false, got %s", key, ftq_json_describe(v, got, sizeof got));
    *out = cJSON_IsTrue(v);
    return FTQ_OK;
}

/* A positive finite float (eps, theta). */
static int get_pos_float(const cfg_ctx *c, const char *key, double def, float *out)
{
    const cJSON *v = get(c, key);
    char got[64];
    if (!v) {
        *out = (float)def;
        return FTQ_OK;
    }
    /* Range-check as a double: converting a double beyond FLT_MAX to float is UB. */
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= FLT_MIN && v->valuedouble <= FLT_MAX))
        return CBAD(c, "key \"%s\" must be a positive number, got %s", key, ftq_json_describe(v, got, sizeof got));
    *out = (float)v->valuedouble;
    return FTQ_OK;
}

static int get_string(const cfg_ctx *c, const char *key, const char **out)
{
    const cJSON *v = get(c, key);
    char got[64];
    *out = NULL;
    if (!v)
        return FTQ_OK;
    if (!cJSON_IsString(v))
        return CBAD(c, "key \"%s\" must be a string, got %s", key, ftq_json_describe(v, got, sizeof got));
    *out = v->valuestring;
    return FTQ_OK;
}

/* A token id: absent/null -> -1; a list (eos in newer configs) -> its first element. */
static int get_token_id(const cfg_ctx *c, const char *key, int vocab, int *out)
{
    const cJSON *v = get(c, key);
    char got[64];
    int64_t i;
    *out = -1;
    if (cJSON_IsArray(v)) {
        if (cJSON_GetArraySize(v) == 0)
            return FTQ_OK;
        v = cJSON_GetArrayItem(v, 0);
    }
    if (!v)
        return FTQ_OK;
    /* -1 is what some configs write for "no pad token". */
    if (!ftq_json_int(v, -1, (int64_t)vocab - 1, &i))
        return CBAD(c, "key \"%s\" must be a token id in [0, %d), got %s", key, vocab,
                    ftq_json_describe(v, got, sizeof got));
    *out = (int)i;
    return FTQ_OK;
}

static int get_num_labels(const cfg_ctx *c, int *out)
{
    int n = 0, rc = get_size(c, "num_labels", 0, MAX_LABELS, &n);
    const cJSON *id2label = get(c, "id2label");
    char got[64];
    if (rc != FTQ_OK)
        return rc;
    if (id2label && !cJSON_IsObject(id2label))
        return CBAD(c, "key \"id2label\" must be an object, got %s", ftq_json_describe(id2label, got, sizeof got));
    int m = id2label ? cJSON_GetArraySize(id2label) : 0;
    if (m > MAX_LABELS)
        return CBAD(c, "key \"id2label\" has %d entries (at most %d labels)", m, MAX_LABELS);
    if (get(c, "num_labels") && id2label && m != n)
        return CBAD(c, "key \"num_labels\" is %d but \"id2label\" has %d entries", n, m);
    *out = get(c, "num_labels") ? n : m;
    return FTQ_OK;
}

/* rope_scaling: "linear" and "llama3" (the type under "rope_type", or "type" in older
 * configs); "default" is none. Any other type changes the math in a way ftq does not
 * implement, and is refused rather than computed wrong. */
static int rope_num(const cfg_ctx *c, const cJSON *v, const char *type, const char *key, double *out)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(v, key);
    char got[64];
    if (!x)
        return CBAD(c, "key \"rope_scaling\" of type \"%s\" has no \"%s\"", type, key);
    if (!cJSON_IsNumber(x) || !(x->valuedouble > 0) || x->valuedouble > 1e9)
        return CBAD(c, "key \"rope_scaling\".\"%s\" must be a positive number, got %s", key,
                    ftq_json_describe(x, got, sizeof got));
    *out = x->valuedouble;
    return FTQ_OK;
}

static int parse_rope_scaling(const cfg_ctx *c, ftq_model_config *cfg)
{
    const cJSON *v = get(c, "rope_scaling");
    char got[64];
    cfg->rope_scaling = FTQ_ROPE_SCALING_NONE;
    if (!v)
        return FTQ_OK;
    if (!cJSON_IsObject(v))
        return CBAD(c, "key \"rope_scaling\" must be an object or null, got %s", ftq_json_describe(v, got, sizeof got));
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(v, "rope_type");
    if (!cJSON_IsString(t))
        t = cJSON_GetObjectItemCaseSensitive(v, "type");
    if (!cJSON_IsString(t))
        return CBAD(c, "key \"rope_scaling\" has no string \"rope_type\" or \"type\"");
    const char *ty = t->valuestring;
    double f = 0, lo = 0, hi = 0, orig = 0;
    int rc;
    if (strcmp(ty, "default") == 0)
        return FTQ_OK;
    if (cfg->head_dim / 2 > FTQ_ROPE_MAX_FREQS)
        return CUNSUP(c, "key \"rope_scaling\" with head_dim %d (at most %d)", cfg->head_dim, 2 * FTQ_ROPE_MAX_FREQS);
    if (strcmp(ty, "linear") == 0) {
        if ((rc = rope_num(c, v, ty, "factor", &f)) != FTQ_OK)
            return rc;
        cfg->rope_scaling = FTQ_ROPE_SCALING_LINEAR;
        cfg->rope_factor = (float)f;
        return FTQ_OK;
    }
    if (strcmp(ty, "llama3") == 0) {
        if ((rc = rope_num(c, v, ty, "factor", &f)) || (rc = rope_num(c, v, ty, "low_freq_factor", &lo)) ||
            (rc = rope_num(c, v, ty, "high_freq_factor", &hi)) ||
            (rc = rope_num(c, v, ty, "original_max_position_embeddings", &orig)))
            return rc;
        if (!(hi > lo))
            return CBAD(c, "key \"rope_scaling\": high_freq_factor %g must be above low_freq_factor %g", hi, lo);
        if (orig != (double)(int)orig)
            return CBAD(c, "key \"rope_scaling\".\"original_max_position_embeddings\" must be an integer, got %g",
                        orig);
        cfg->rope_scaling = FTQ_ROPE_SCALING_LLAMA3;
        cfg->rope_factor = (float)f;
        cfg->rope_low_freq_factor = (float)lo;
        cfg->rope_high_freq_factor = (float)hi;
        cfg->rope_original_max_position = (int)orig;
        return FTQ_OK;
    }
    return CUNSUP(c, "key \"rope_scaling\" (type %s) is not supported (expected linear or llama3)",
                  ftq_json_describe(t, got, sizeof got));
}

static int copy_str(const cfg_ctx *c, const char *key, const char *s, char *dst, size_t cap)
{
    if (strlen(s) >= cap)
        return CUNSUP(c, "key \"%s\" value \"%.40s\" is longer than %zu characters", key, s, cap - 1);
    memcpy(dst, s, strlen(s) + 1);
    return FTQ_OK;
}

/* architectures[0] ending in "ForSequenceClassification" (LlamaForSequenceClassification,
 * GPT2ForSequenceClassification, ...) marks a classifier checkpoint. HF omits id2label and
 * num_labels from config.json when they are its defaults (2 labels), hence the default. */
static int get_classifier(const cfg_ctx *c, ftq_model_config *cfg)
{
    const cJSON *a = get(c, "architectures");
    char got[64];
    if (!a)
        return FTQ_OK;
    if (!cJSON_IsArray(a))
        return CBAD(c, "key \"architectures\" must be an array of strings, got %s", ftq_json_describe(a, got, sizeof got));
    const cJSON *first = cJSON_GetArrayItem(a, 0);
    if (!first)
        return FTQ_OK;
    if (!cJSON_IsString(first))
        return CBAD(c, "key \"architectures\" must be an array of strings, got an element %s",
                    ftq_json_describe(first, got, sizeof got));
    static const char suffix[] = "ForSequenceClassification";
    size_t n = strlen(first->valuestring), k = sizeof suffix - 1;
    if (n < k || strcmp(first->valuestring + n - k, suffix) != 0)
        return FTQ_OK;
    cfg->is_classifier = 1;
    if (cfg->num_labels == 0)
        cfg->num_labels = 2;
    return FTQ_OK;
}

static int parse_common_tail(const cfg_ctx *c, ftq_model_config *cfg)
{
    int rc;
    const char *dt = NULL;
    if ((rc = get_token_id(c, "bos_token_id", cfg->vocab_size, &cfg->bos_token_id)) ||
        (rc = get_token_id(c, "eos_token_id", cfg->vocab_size, &cfg->eos_token_id)) ||
        (rc = get_token_id(c, "pad_token_id", cfg->vocab_size, &cfg->pad_token_id)) ||
        (rc = get_num_labels(c, &cfg->num_labels)) || (rc = get_classifier(c, cfg)))
        return rc;
    /* transformers >= 4.56 writes "dtype" instead of "torch_dtype". */
    const char *dkey = get(c, "torch_dtype") ? "torch_dtype" : "dtype";
    if ((rc = get_string(c, dkey, &dt)) != FTQ_OK)
        return rc;
    return dt ? copy_str(c, dkey, dt, cfg->torch_dtype, sizeof cfg->torch_dtype) : FTQ_OK;
}

/* ---- llama, mistral, qwen2 ------------------------------------------------------- */

static int llama_sizes(const cfg_ctx *c, ftq_model_config *cfg)
{
    int rc;
    if ((rc = get_size(c, "vocab_size", -1, MAX_DIM, &cfg->vocab_size)) ||
        (rc = get_size(c, "hidden_size", -1, MAX_DIM, &cfg->hidden_size)) ||
        (rc = get_size(c, "intermediate_size", -1, MAX_DIM, &cfg->intermediate_size)) ||
        (rc = get_size(c, "num_hidden_layers", -1, MAX_DIM, &cfg->n_layers)) ||
        (rc = get_size(c, "num_attention_heads", -1, MAX_DIM, &cfg->n_heads)) ||
        (rc = get_size(c, "max_position_embeddings", -1, MAX_DIM, &cfg->max_position)))
        return rc;
    if ((rc = get_size(c, "num_key_value_heads", cfg->n_heads, MAX_DIM, &cfg->n_kv_heads)) != FTQ_OK)
        return rc;
    if (!get(c, "head_dim") && cfg->hidden_size % cfg->n_heads != 0)
        return CBAD(c, "key \"hidden_size\" (%d) must be divisible by \"num_attention_heads\" (%d)",
                    cfg->hidden_size, cfg->n_heads);
    if ((rc = get_size(c, "head_dim", cfg->hidden_size / cfg->n_heads, MAX_DIM, &cfg->head_dim)) != FTQ_OK)
        return rc;
    if (cfg->n_kv_heads > cfg->n_heads || cfg->n_heads % cfg->n_kv_heads != 0)
        return CBAD(c, "key \"num_attention_heads\" (%d) must be a multiple of \"num_key_value_heads\" (%d)",
                    cfg->n_heads, cfg->n_kv_heads);
    if (cfg->head_dim % 2 != 0)
        return CBAD(c, "key \"head_dim\" must be even for rotary embeddings, got %d", cfg->head_dim);
    return FTQ_OK;
}

static int llama_options(const cfg_ctx *c, ftq_model_config *cfg)
{
    int rc, attn_bias = 0, is_qwen2 = strcmp(cfg->model_type, "qwen2") == 0;
    const char *act = NULL;
    if ((rc = get_pos_float(c, "rms_norm_eps", 1e-6, &cfg->norm_eps)) ||
        (rc = get_pos_float(c, "rope_theta", 10000.0, &cfg->rope_theta)) || (rc = parse_rope_scaling(c, cfg)) ||
        (rc = get_string(c, "hidden_act", &act)) ||
        (rc = get_bool(c, "tie_word_embeddings", 0, &cfg->tie_word_embeddings)))
        return rc;
    if (act && strcmp(act, "silu") != 0)
        return CUNSUP(c, "key \"hidden_act\" is \"%.40s\" (expected \"silu\" for %s)", act, cfg->model_type);
    cfg->act = FTQ_ACT_SILU;
    if (is_qwen2) { /* Qwen2 always has q/k/v biases and never an o_proj bias */
        cfg->qkv_bias = 1;
        cfg->o_bias = 0;
    } else if (strcmp(cfg->model_type, "llama") == 0) {
        if ((rc = get_bool(c, "attention_bias", 0, &attn_bias)) || (rc = get_bool(c, "mlp_bias", 0, &cfg->mlp_bias)))
            return rc;
        cfg->qkv_bias = cfg->o_bias = attn_bias;
    }
    return FTQ_OK;
}

static int llama_window(const cfg_ctx *c, ftq_model_config *cfg)
{
    int rc, use = 1;
    if (strcmp(cfg->model_type, "llama") == 0)
        return FTQ_OK;
    if (strcmp(cfg->model_type, "qwen2") == 0 && (rc = get_bool(c, "use_sliding_window", 0, &use)) != FTQ_OK)
        return rc;
    if (!use)
        return FTQ_OK;
    if ((rc = get_size(c, "sliding_window", 0, INT32_MAX, &cfg->sliding_window)) != FTQ_OK)
        return rc;
    /* Qwen2 applies the window only to layers >= max_window_layers, which the config
     * struct cannot express; a window at least as long as the context is a no-op. */
    if (strcmp(cfg->model_type, "qwen2") == 0 && cfg->sliding_window < cfg->max_position)
        return CUNSUP(c, "key \"use_sliding_window\" is true with \"sliding_window\" %d (per-layer windows are not "
                      "supported)", cfg->sliding_window);
    if (cfg->sliding_window >= cfg->max_position)
        cfg->sliding_window = 0;
    return FTQ_OK;
}

static int parse_llama(const cfg_ctx *c, ftq_model_config *cfg)
{
    int rc;
    cfg->arch = FTQ_ARCH_LLAMA;
    if ((rc = llama_sizes(c, cfg)) || (rc = llama_options(c, cfg)) || (rc = llama_window(c, cfg)))
        return rc;
    return parse_common_tail(c, cfg);
}

/* ---- gpt2 ------------------------------------------------------------------------ */

static int gpt2_act(const cfg_ctx *c, ftq_model_config *cfg)
{
    const char *a = NULL;
    int rc = get_string(c, "activation_function", &a);
    if (rc != FTQ_OK)
        return rc;
    if (!a || strcmp(a, "gelu_new") == 0 || strcmp(a, "gelu_pytorch_tanh") == 0)
        cfg->act = FTQ_ACT_GELU_TANH;
    else if (strcmp(a, "gelu") == 0)
        cfg->act = FTQ_ACT_GELU;
    else if (strcmp(a, "relu") == 0)
        cfg->act = FTQ_ACT_RELU;
    else
        return CUNSUP(c, "key \"activation_function\" is \"%.40s\" (expected gelu_new, gelu_pytorch_tanh, gelu or relu)",
                      a);
    return FTQ_OK;
}

/* GPT-2 attention variants that change the math: refuse rather than compute wrong logits. */
static int gpt2_attention(const cfg_ctx *c)
{
    int inv = 0, reorder = 0, scale = 1, rc;
    if ((rc = get_bool(c, "scale_attn_by_inverse_layer_idx", 0, &inv)) ||
        (rc = get_bool(c, "reorder_and_upcast_attn", 0, &reorder)) ||
        (rc = get_bool(c, "scale_attn_weights", 1, &scale)))
        return rc;
    if (inv)
        return CUNSUP(c, "key \"scale_attn_by_inverse_layer_idx\" is true (expected false)");
    if (reorder)
        return CUNSUP(c, "key \"reorder_and_upcast_attn\" is true (expected false)");
    if (!scale)
        return CUNSUP(c, "key \"scale_attn_weights\" is false (expected true)");
    return FTQ_OK;
}

static int parse_gpt2(const cfg_ctx *c, ftq_model_config *cfg)
{
    int rc;
    cfg->arch = FTQ_ARCH_GPT2;
    const char *pos_key = get(c, "n_positions") || !get(c, "n_ctx") ? "n_positions" : "n_ctx";
    if ((rc = get_size(c, "vocab_size", -1, MAX_DIM, &cfg->vocab_size)) ||
        (rc = get_size(c, "n_embd", -1, MAX_DIM, &cfg->hidden_size)) ||
        (rc = get_size(c, "n_layer", -1, MAX_DIM, &cfg->n_layers)) ||
        (rc = get_size(c, "n_head", -1, MAX_DIM, &cfg->n_heads)) ||
        (rc = get_size(c, pos_key, -1, MAX_DIM, &cfg->max_position)))
        return rc;
    if (cfg->hidden_size % cfg->n_heads != 0)
        return CBAD(c, "key \"n_embd\" (%d) must be divisible by \"n_head\" (%d)", cfg->hidden_size, cfg->n_heads);
    int inner_max = cfg->hidden_size <= MAX_DIM / 4 ? 4 * cfg->hidden_size : MAX_DIM;
    if ((rc = get_size(c, "n_inner", inner_max, MAX_DIM, &cfg->intermediate_size)) ||
        (rc = get_pos_float(c, "layer_norm_epsilon", 1e-5, &cfg->norm_eps)) || (rc = gpt2_act(c, cfg)) ||
        (rc = gpt2_attention(c)) || (rc = get_bool(c, "tie_word_embeddings", 1, &cfg->tie_word_embeddings)))
        return rc;
    cfg->n_kv_heads = cfg->n_heads;
    cfg->head_dim = cfg->hidden_size / cfg->n_heads;
    cfg->rope_theta = 0.0f; /* learned absolute positions */
    cfg->qkv_bias = cfg->o_bias = cfg->mlp_bias = 1; /* GPT-2 has biases everywhere */
    return parse_common_tail(c, cfg);
}

/* ---- entry points ---------------------------------------------------------------- */

static int parse_root(const cfg_ctx *c, ftq_model_config *cfg)
{
    const char *dup, *mt = NULL;
    int rc;
    if (ftq_json_find_duplicate(c->root, &dup) != 0)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    if (dup)
        return CBAD(c, "key \"%s\" appears twice", dup);
    if ((rc = get_string(c, "model_type", &mt)) != FTQ_OK)
        return rc;
    if (!mt)
        return CBAD(c, "missing required key \"model_type\"");
    if (strcmp(mt, "llama") != 0 && strcmp(mt, "mistral") != 0 && strcmp(mt, "qwen2") != 0 &&
        strcmp(mt, "gpt2") != 0)
        return CUNSUP(c, "key \"model_type\" is \"%.40s\" (expected llama, mistral, qwen2 or gpt2)", mt);
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", mt);
    return strcmp(mt, "gpt2") == 0 ? parse_gpt2(c, cfg) : parse_llama(c, cfg);
}

int ftq_config_parse(const char *json, size_t len, const char *name, ftq_model_config *cfg)
{
    cfg_ctx c = {name ? name : "config.json", NULL};
    ftq_model_config tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.bos_token_id = tmp.eos_token_id = tmp.pad_token_id = -1;
    char why[96];
    cJSON *root = ftq_json_parse_strict(json, len, why, sizeof why, NULL);
    if (!root)
        return CBAD(&c, "%s (expected a JSON object)", why);
    c.root = root;
    int rc = cJSON_IsObject(root) ? parse_root(&c, &tmp) : CBAD(&c, "the file is %s (expected a JSON object)",
                                                               ftq_json_type(root));
    cJSON_Delete(root);
    if (rc == FTQ_OK)
        *cfg = tmp; /* the caller's struct is untouched on failure */
    return rc;
}

int ftq_config_load(const char *path, ftq_model_config *cfg)
{
    char *text = NULL, *file = NULL;
    size_t len = 0;
    /* A model directory is the common argument: read its config.json. */
    if (ftq_is_dir(path) && !(file = ftq_path_join(path, "config.json")))
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    const char *p = file ? file : path;
    int rc = ftq_read_file_max(p, FTQ_MAX_CONFIG_BYTES, &text, &len);
    if (rc == FTQ_OK)
        rc = ftq_config_parse(text, len, p, cfg);
    free(text);
    free(file);
    return rc;
}

/* ---- parameter count ------------------------------------------------------------- */

/* Saturating arithmetic: absurd-but-accepted configs must not overflow int64. */
static int64_t sat_mul(int64_t a, int64_t b)
{
    int64_t r;
    return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}

static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}

static int64_t llama_layer_params(const ftq_model_config *c)
{
    int64_t H = c->hidden_size, I = c->intermediate_size;
    int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    int64_t n = sat_mul(H, sat_add(q, 2 * kv));           /* q, k, v */
    n = sat_add(n, sat_mul(q, H));                         /* o */
    n = sat_add(n, sat_mul(3, sat_mul(H, I)));             /* gate, up, down */
    n = sat_add(n, 2 * H);                                 /* two RMSNorms */
    if (c->qkv_bias)
        n = sat_add(n, q + 2 * kv);
    if (c->o_bias)
        n = sat_add(n, H);
    if (c->mlp_bias)
        n = sat_add(n, 2 * I + H);
    return n;
}

static int64_t gpt2_layer_params(const ftq_model_config *c)
{
    int64_t H = c->hidden_size, I = c->intermediate_size;
    int64_t n = sat_add(sat_mul(H, 3 * H), 3 * H);       /* c_attn */
    n = sat_add(n, sat_add(sat_mul(H, H), H));            /* attn.c_proj */
    n = sat_add(n, sat_add(sat_mul(H, I), I));            /* c_fc */
    n = sat_add(n, sat_add(sat_mul(I, H), H));            /* mlp.c_proj */
    return sat_add(n, 4 * H);                             /* ln_1, ln_2 */
}

int64_t ftq_config_param_count(const ftq_model_config *c)
{
    int64_t H = c->hidden_size, emb = sat_mul(c->vocab_size, H);
    int64_t n = emb;
    if (c->arch == FTQ_ARCH_GPT2) {
        n = sat_add(n, sat_mul(c->max_position, H));      /* wpe */
        n = sat_add(n, sat_mul(c->n_layers, gpt2_layer_params(c)));
        n = sat_add(n, 2 * H);                            /* ln_f */
    } else {
        n = sat_add(n, sat_mul(c->n_layers, llama_layer_params(c)));
        n = sat_add(n, H);                                /* final norm */
    }
    if (c->is_classifier)
        n = sat_add(n, sat_mul(c->num_labels, H));        /* score, no lm_head */
    else if (!c->tie_word_embeddings)
        n = sat_add(n, emb);                              /* lm_head */
    return n;
}

/* ---- label names ------------------------------------------------------------------ */

void ftq_free_strings(char **strings, int n)
{
    if (!strings)
        return;
    for (int i = 0; i < n; i++)
        free(strings[i]);
    free(strings);
}

/* id2label keys are decimal ids ("0", "1", ...) in [0, n). */
static int label_id(const char *key, int n)
{
    if (!*key || strlen(key) > 9)
        return -1;
    int v = 0;
    for (const char *p = key; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
    }
    if (key[0] == '0' && key[1])
        return -1; /* no leading zeros: "01" would alias "1" */
    return v < n ? v : -1;
}

int ftq_config_load_labels(const char *path, char ***names, int *n)
{
    if (!path || !names || !n)
        return ftq_set_error(FTQ_EINVAL, "ftq_config_load_labels: NULL argument");
    *names = NULL;
    *n = 0;
    ftq_model_config cfg;
    int rc = ftq_config_load(path, &cfg);
    if (rc != FTQ_OK)
        return rc;
    char *text = NULL, *file = NULL;
    size_t len = 0;
    if (ftq_is_dir(path) && !(file = ftq_path_join(path, "config.json")))
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    const char *p = file ? file : path;
    cJSON *root = NULL;
    char **out = NULL;
    int count = cfg.num_labels;
    if ((rc = ftq_read_file_max(p, FTQ_MAX_CONFIG_BYTES, &text, &len)) != FTQ_OK)
        goto done;
    char why[96];
    if (!(root = ftq_json_parse_strict(text, len, why, sizeof why, NULL))) {
        rc = ftq_set_error(FTQ_EFORMAT, "invalid config '%s': %s", p, why);
        goto done;
    }
    if (count > 0 && !(out = calloc((size_t)count, sizeof *out))) {
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        goto done;
    }
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "id2label"), *it;
    cfg_ctx ctx = {p, root};
    if (!cJSON_IsObject(map))
        map = NULL; /* ftq_config_load has checked it is an object or absent */
    cJSON_ArrayForEach(it, map)
    {
        int id = label_id(it->string, count);
        char got[64];
        if (id < 0) {
            rc = CBAD(&ctx, "key \"id2label\" has the key \"%.40s\" (expected label ids 0..%d)", it->string,
                      count - 1);
            goto done;
        }
        if (!cJSON_IsString(it)) {
            rc = CBAD(&ctx, "key \"id2label\" maps \"%s\" to %s (expected a string)", it->string,
                      ftq_json_describe(it, got, sizeof got));
            goto done;
        }
        if (out[id]) {
            rc = CBAD(&ctx, "key \"id2label\" names label %d twice", id);
            goto done;
        }
        if (!(out[id] = strdup(it->valuestring))) {
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
            goto done;
        }
    }
    for (int i = 0; i < count; i++) {
        char buf[32];
        if (out[i])
            continue;
        snprintf(buf, sizeof buf, "LABEL_%d", i);
        if (!(out[i] = strdup(buf))) {
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
            goto done;
        }
    }
    *names = out;
    *n = count;
    out = NULL;
done:
    ftq_free_strings(out, count);
    cJSON_Delete(root);
    free(text);
    free(file);
    return rc;
}
