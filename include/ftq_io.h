/* ftq_io.h - safetensors files, Hugging Face checkpoints (single or sharded) and
 * config.json.
 *
 *     ftq_checkpoint *ck = NULL;
 *     if (ftq_checkpoint_open("path/to/model_dir", &ck) != FTQ_OK) { ... ftq_last_error() ... }
 *     const ftq_tensor *w = ftq_checkpoint_find(ck, "model.embed_tokens.weight");
 *     ftq_checkpoint_close(ck);
 *
 * Reading is zero-copy: tensors point into a read-only mmap of the file and stay valid
 * until the file/checkpoint is closed. Every header is validated strictly before any
 * tensor is exposed (see docs/safetensors.md for the exact rules). Handles are not
 * thread-safe for concurrent open/close, but tensor data may be read from any thread.
 */
#ifndef FTQ_IO_H
#define FTQ_IO_H

#include "ftq_core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- one safetensors file -------------------------------------------------------- */

#define FTQ_ST_MAX_HEADER (100u * 1024u * 1024u) /* 100 MB, as the reference reader */

typedef struct ftq_st_file ftq_st_file;

/* Open, mmap and validate. On error *out is NULL and the message names the file. */
int ftq_st_open(const char *path, ftq_st_file **out);

/* Validate an in-memory image of a file (same rules as ftq_st_open; `name` is used in
 * messages). The buffer must outlive the handle. Used by tests and fuzzers. */
int ftq_st_open_memory(const void *data, size_t len, const char *name, ftq_st_file **out);

void ftq_st_close(ftq_st_file *f); /* NULL is fine */

const char *ftq_st_path(const ftq_st_file *f);
size_t ftq_st_file_size(const ftq_st_file *f);
size_t ftq_st_header_size(const ftq_st_file *f); /* the JSON header length (8-byte prefix excluded) */

/* Tensors in file order (ascending data offset). */
size_t ftq_st_count(const ftq_st_file *f);
const ftq_tensor *ftq_st_tensor(const ftq_st_file *f, size_t i);
const ftq_tensor *ftq_st_find(const ftq_st_file *f, const char *name); /* NULL if absent */

/* The optional "__metadata__" string map. */
size_t ftq_st_metadata_count(const ftq_st_file *f);
const char *ftq_st_metadata_key(const ftq_st_file *f, size_t i);
const char *ftq_st_metadata_value(const ftq_st_file *f, size_t i);
const char *ftq_st_metadata_get(const ftq_st_file *f, const char *key); /* NULL if absent */

/* Drop the resident pages of bytes [p, p + n) of the file mapping (whole pages inside the
 * range only); touching them again reads them back from the file. A no-op for memory that
 * is not this file's mapping (ftq_st_open_memory images included). For tensor data the
 * caller has copied or transformed and will not read again, so peak memory stays near the
 * model's own size. */
void ftq_st_release(const ftq_st_file *f, const void *p, size_t n);

/* Write tensors to `path` atomically (temp file, fsync, rename): the header is padded
 * with spaces to a multiple of 8 bytes, tensors are stored in the given order, back to
 * back. `metadata` is NULL or a NULL-terminated array of key, value, key, value, ...
 * Names must be unique; nbytes must match dtype x shape. */
int ftq_st_write(const char *path, const ftq_tensor *tensors, size_t n,
                 const char *const *metadata);

/* ---- a checkpoint: one file, a directory, or a sharded directory ----------------- */

typedef struct ftq_checkpoint ftq_checkpoint;

/* `path` is a .safetensors file, or a directory holding model.safetensors or
 * model.safetensors.index.json (whose weight_map names the shards; every shard must exist
 * and hold exactly the tensors the map assigns it). */
int ftq_checkpoint_open(const char *path, ftq_checkpoint **out);
void ftq_checkpoint_close(ftq_checkpoint *c);

size_t ftq_checkpoint_count(const ftq_checkpoint *c);
const ftq_tensor *ftq_checkpoint_tensor(const ftq_checkpoint *c, size_t i);
const ftq_tensor *ftq_checkpoint_find(const ftq_checkpoint *c, const char *name);
size_t ftq_checkpoint_nfiles(const ftq_checkpoint *c);
const ftq_st_file *ftq_checkpoint_file(const ftq_checkpoint *c, size_t i);
size_t ftq_checkpoint_total_bytes(const ftq_checkpoint *c); /* sum of file sizes */
/* ftq_st_release on whichever file of the checkpoint holds [p, p + n). */
void ftq_checkpoint_release(const ftq_checkpoint *c, const void *p, size_t n);

/* ---- config.json ----------------------------------------------------------------- */

typedef enum {
    FTQ_ARCH_LLAMA = 0, /* llama, mistral, qwen2 */
    FTQ_ARCH_GPT2 = 1,
} ftq_arch;

typedef enum {
    FTQ_ACT_SILU = 0,
    FTQ_ACT_GELU_TANH = 1, /* gelu_new / gelu_pytorch_tanh */
    FTQ_ACT_GELU = 2,      /* exact erf GELU */
    FTQ_ACT_RELU = 3,
} ftq_act;

/* rope_scaling (llama family): how each rotary frequency theta^(-2i/head_dim) is scaled. */
typedef enum {
    FTQ_ROPE_SCALING_NONE = 0,
    FTQ_ROPE_SCALING_LINEAR = 1, /* every frequency / factor (HF "linear", GGUF rope.scaling.type linear) */
    FTQ_ROPE_SCALING_LLAMA3 = 2, /* HF "llama3" (Llama 3.1 / 3.2): wavelengths above
                                    original_max_position / low_freq_factor / factor, below
                                    original_max_position / high_freq_factor kept, smooth between */
    FTQ_ROPE_SCALING_FREQS = 3,  /* frequency i / rope_freq_factors[i] (GGUF rope_freqs tensor) */
} ftq_rope_scaling;

#define FTQ_ROPE_MAX_FREQS 256 /* head_dim / 2 of a model with FTQ_ROPE_SCALING_FREQS */

typedef struct ftq_model_config {
    ftq_arch arch;
    char model_type[32];     /* as in config.json: "llama", "mistral", "qwen2", "gpt2" */
    int vocab_size;
    int hidden_size;         /* llama hidden_size, gpt2 n_embd */
    int intermediate_size;   /* gpt2: n_inner or 4 * n_embd */
    int n_layers;
    int n_heads;
    int n_kv_heads;          /* == n_heads when absent / gpt2 */
    int head_dim;            /* hidden_size / n_heads unless config says */
    int max_position;        /* max_position_embeddings / n_positions */
    float norm_eps;          /* rms_norm_eps / layer_norm_epsilon */
    float rope_theta;        /* llama family */
    ftq_act act;
    int tie_word_embeddings;
    int qkv_bias;            /* q/k/v projections have biases (qwen2, llama attention_bias) */
    int o_bias;              /* o_proj has a bias (llama attention_bias) */
    int mlp_bias;            /* llama mlp_bias */
    int sliding_window;      /* mistral; 0 = none */
    int bos_token_id;        /* -1 if absent */
    int eos_token_id;        /* -1 if absent (first of a list) */
    int pad_token_id;        /* -1 if absent */
    char torch_dtype[16];    /* "" if absent */
    /* sequence classification (issue: fine-tuning); 0 when not a classifier */
    int num_labels;
    int is_classifier;       /* architectures[0] is *ForSequenceClassification */
    /* rope_scaling (llama family); NONE when absent, null or "default" */
    ftq_rope_scaling rope_scaling;
    float rope_factor;              /* LINEAR, LLAMA3 */
    float rope_low_freq_factor;     /* LLAMA3 */
    float rope_high_freq_factor;    /* LLAMA3 */
    int rope_original_max_position; /* LLAMA3 */
    float rope_freq_factors[FTQ_ROPE_MAX_FREQS]; /* FREQS: head_dim / 2 divisors */
} ftq_model_config;

/* Parse config.json text (`name` is used in messages). Unknown model_type or an option
 * ftq does not implement (rope_scaling, ...) is FTQ_EUNSUPPORTED with a message naming
 * the key. */
int ftq_config_parse(const char *json, size_t len, const char *name, ftq_model_config *cfg);
int ftq_config_load(const char *path, ftq_model_config *cfg);

/* The label names of a classifier config (id2label ordered by id; "LABEL_<i>" where
 * absent). *names is a malloc'd array of malloc'd strings; free with ftq_free_strings. */
int ftq_config_load_labels(const char *path, char ***names, int *n);
void ftq_free_strings(char **strings, int n);

/* Number of parameters the config implies (embeddings counted once when tied). */
int64_t ftq_config_param_count(const ftq_model_config *cfg);

#ifdef __cplusplus
}
#endif

#endif
