/* ftq_gguf.h - GGUF files (llama.cpp / ggml): a strict reader, ggml's tensor types with
 * bit-exact scalar dequantization, and the model source that turns a GGUF file into an
 * ftq checkpoint + config (so `ftq_model_load("x.gguf")` and `ftq_tokenizer_load("x.gguf")`
 * work like a model directory).
 *
 *     ftq_gguf *g = NULL;
 *     if (ftq_gguf_open("model.gguf", &g) != FTQ_OK) { ... ftq_last_error() ... }
 *     int64_t n_layers;
 *     ftq_gguf_get_int(g, "llama.block_count", &n_layers);
 *     const ftq_gguf_tensor *t = ftq_gguf_find_tensor(g, "blk.0.attn_q.weight");
 *     float *w = malloc(sizeof(float) * t->numel);
 *     ftq_gguf_tensor_to_f32(t, w);
 *     ftq_gguf_close(g);
 *
 * Reading is zero-copy over a read-only mmap (or a caller's buffer with
 * ftq_gguf_open_memory). The whole header (every key, every value including nested
 * arrays, every tensor descriptor) is validated before a handle exists, so walking the
 * metadata afterwards cannot fail. Handles are immutable: reads may run from any thread.
 */
#ifndef FTQ_GGUF_H
#define FTQ_GGUF_H

#include "ftq_io.h"
#include "ftq_tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- ggml tensor types ------------------------------------------------------------ */

/* ggml's numbering (ggml.h enum ggml_type); only the types below are read. */
enum {
    FTQ_GGML_F32 = 0,
    FTQ_GGML_F16 = 1,
    FTQ_GGML_Q4_0 = 2,
    FTQ_GGML_Q4_1 = 3,
    FTQ_GGML_Q5_0 = 6,
    FTQ_GGML_Q5_1 = 7,
    FTQ_GGML_Q8_0 = 8,
    FTQ_GGML_Q2_K = 10,
    FTQ_GGML_Q3_K = 11,
    FTQ_GGML_Q4_K = 12,
    FTQ_GGML_Q5_K = 13,
    FTQ_GGML_Q6_K = 14,
    FTQ_GGML_BF16 = 30,
    FTQ_GGML_TYPE_LIMIT = 64 /* ids at or above this are never valid */
};

typedef void (*ftq_ggml_to_f32_fn)(const void *src, float *dst, size_t nblocks);

typedef struct {
    const char *name;          /* ggml spelling: "Q4_K", "F16", ... */
    size_t block_size;         /* elements per block */
    size_t type_size;          /* bytes per block */
    ftq_ggml_to_f32_fn to_f32; /* scalar reference dequantization of whole blocks */
} ftq_ggml_traits;

/* Traits of ggml type id `type`; NULL if ftq does not read it. */
const ftq_ggml_traits *ftq_ggml_type_info(uint32_t type);

/* ---- the file --------------------------------------------------------------------- */

typedef enum {
    FTQ_GGUF_UINT8 = 0,
    FTQ_GGUF_INT8 = 1,
    FTQ_GGUF_UINT16 = 2,
    FTQ_GGUF_INT16 = 3,
    FTQ_GGUF_UINT32 = 4,
    FTQ_GGUF_INT32 = 5,
    FTQ_GGUF_FLOAT32 = 6,
    FTQ_GGUF_BOOL = 7,
    FTQ_GGUF_STRING = 8,
    FTQ_GGUF_ARRAY = 9,
    FTQ_GGUF_UINT64 = 10,
    FTQ_GGUF_INT64 = 11,
    FTQ_GGUF_FLOAT64 = 12,
    FTQ_GGUF_NTYPES
} ftq_gguf_type;

#define FTQ_GGUF_MAX_DEPTH 8 /* nesting of arrays in arrays */
#define FTQ_GGUF_MAX_NAME 64 /* tensor names are shorter (ggml's GGML_MAX_NAME) */

/* A metadata value: a view into the file. Scalars: `p` points at the little-endian value.
 * STRING: p/len are the bytes (not NUL-terminated). ARRAY: elem_type and n, and p points
 * at the first element (walk it with ftq_gguf_array_next). */
typedef struct {
    ftq_gguf_type type;
    ftq_gguf_type elem_type; /* ARRAY only */
    uint64_t n;              /* ARRAY: element count */
    const unsigned char *p;
    size_t len;              /* bytes of the value (STRING: of the text) */
} ftq_gguf_value;

typedef struct {
    const ftq_gguf_value *arr;
    uint64_t i;
    size_t off;
} ftq_gguf_cursor;

typedef struct {
    const char *name;        /* NUL-terminated copy */
    uint32_t type;           /* ggml type id (traits: ftq_ggml_type_info) */
    int n_dims;              /* 1..4 */
    int64_t ne[4];           /* ggml order: ne[0] is contiguous; unused dims are 1 */
    uint64_t offset;         /* from the start of the data section */
    size_t nbytes;
    int64_t numel;
    const void *data;        /* inside the file image */
} ftq_gguf_tensor;

typedef struct ftq_gguf ftq_gguf;

/* Open, mmap and validate. On error *out is NULL and the message names the file and
 * the byte offset of the problem. */
int ftq_gguf_open(const char *path, ftq_gguf **out);
/* The same over a caller's buffer (must outlive the handle); `name` is used in messages. */
int ftq_gguf_open_memory(const void *data, size_t len, const char *name, ftq_gguf **out);
void ftq_gguf_close(ftq_gguf *g); /* NULL is fine */

/* 1 if `path` is a regular file that starts with the GGUF magic. */
int ftq_gguf_is_file(const char *path);

const char *ftq_gguf_path(const ftq_gguf *g);
uint32_t ftq_gguf_version(const ftq_gguf *g);
size_t ftq_gguf_alignment(const ftq_gguf *g);
size_t ftq_gguf_data_offset(const ftq_gguf *g);
size_t ftq_gguf_file_size(const ftq_gguf *g);

/* Metadata in file order. */
size_t ftq_gguf_kv_count(const ftq_gguf *g);
const char *ftq_gguf_kv_key(const ftq_gguf *g, size_t i);
const ftq_gguf_value *ftq_gguf_kv_value(const ftq_gguf *g, size_t i);
const ftq_gguf_value *ftq_gguf_find(const ftq_gguf *g, const char *key); /* NULL if absent */

/* Next element of an array value: 1 and *elem, or 0 after the last. */
void ftq_gguf_cursor_init(ftq_gguf_cursor *c, const ftq_gguf_value *arr);
int ftq_gguf_array_next(ftq_gguf_cursor *c, ftq_gguf_value *elem);

/* Typed reads of a scalar value: an integer of any width (range-checked into int64), a
 * float32/float64, a bool, a string. FTQ_EFORMAT (message names the key) on a type
 * mismatch. */
int ftq_gguf_value_int(const ftq_gguf_value *v, int64_t *out);
int ftq_gguf_value_float(const ftq_gguf_value *v, double *out);

/* By key: FTQ_ENOTFOUND (no message) if absent, FTQ_EFORMAT (message) on a wrong type. */
int ftq_gguf_get_int(const ftq_gguf *g, const char *key, int64_t *out);
int ftq_gguf_get_float(const ftq_gguf *g, const char *key, double *out);
int ftq_gguf_get_bool(const ftq_gguf *g, const char *key, int *out);
int ftq_gguf_get_str(const ftq_gguf *g, const char *key, const char **s, size_t *len);

/* Tensors in file order. */
size_t ftq_gguf_tensor_count(const ftq_gguf *g);
const ftq_gguf_tensor *ftq_gguf_tensor_at(const ftq_gguf *g, size_t i);
const ftq_gguf_tensor *ftq_gguf_find_tensor(const ftq_gguf *g, const char *name);

/* Dequantize a whole tensor into dst (numel floats), bit-exactly as ggml does. */
int ftq_gguf_tensor_to_f32(const ftq_gguf_tensor *t, float *dst);

/* Drop the resident pages of bytes [p, p + n) of the file mapping (whole pages inside the
 * range; a no-op for ftq_gguf_open_memory images): for tensor data already converted. */
void ftq_gguf_release(const ftq_gguf *g, const void *p, size_t n);

/* Name of a value type ("uint32", "array", ...). */
const char *ftq_gguf_type_name(ftq_gguf_type t);

/* ---- writing ------------------------------------------------------------------------ */

/* A GGUF v3 file in the making: metadata is copied as added, tensor data is borrowed until
 * ftq_gguf_writer_write (which writes atomically, tensors aligned to 32 bytes). Adders other
 * than ftq_gguf_writer_tensor record an out-of-memory failure for write to report. */
typedef struct ftq_gguf_writer ftq_gguf_writer;
int ftq_gguf_writer_new(ftq_gguf_writer **out);
void ftq_gguf_writer_free(ftq_gguf_writer *w);
void ftq_gguf_writer_str(ftq_gguf_writer *w, const char *key, const char *v);
void ftq_gguf_writer_u32(ftq_gguf_writer *w, const char *key, uint32_t v);
void ftq_gguf_writer_f32(ftq_gguf_writer *w, const char *key, float v);
void ftq_gguf_writer_bool(ftq_gguf_writer *w, const char *key, int v);
/* lens NULL: NUL-terminated strings. */
void ftq_gguf_writer_str_array(ftq_gguf_writer *w, const char *key, const char *const *s, const size_t *lens,
                               size_t n);
/* elem: FTQ_GGUF_INT32, FTQ_GGUF_UINT32 or FTQ_GGUF_FLOAT32. */
void ftq_gguf_writer_array(ftq_gguf_writer *w, const char *key, ftq_gguf_type elem, const void *v, size_t n);
/* ne in ggml order (ne[0] contiguous); nbytes must match type and shape. */
int ftq_gguf_writer_tensor(ftq_gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *ne,
                           const void *data, size_t nbytes);
int ftq_gguf_writer_write(const ftq_gguf_writer *w, const char *path);

/* ggml's reference quantizers (quantize_row_q8_0_ref / _q4_0_ref / _q4_1_ref): nblocks
 * blocks of 32. */
void ftq_ggml_quantize_q8_0(const float *x, void *dst, size_t nblocks);
void ftq_ggml_quantize_q4_0(const float *x, void *dst, size_t nblocks);
void ftq_ggml_quantize_q4_1(const float *x, void *dst, size_t nblocks);

/* ---- GGUF as a model source --------------------------------------------------------- */

/* Read a GGUF model: the config from its `<arch>.*` keys and a checkpoint whose tensors
 * carry Hugging Face names and f32 data (dequantized; Q/K rows un-permuted), as the model
 * loader expects from a safetensors directory. cfg may be NULL. Architectures: llama. */
int ftq_gguf_checkpoint_open(const char *path, ftq_model_config *cfg, ftq_checkpoint **out);

/* Flags of ftq_gguf_checkpoint_open_ex. FTQ_GGUF_KEEP_QUANT: quantized weight matrices
 * (linear layers, token embeddings, heads) are not expanded: the checkpoint holds them as an
 * ftq-quantized checkpoint does (NAME.qweight / NAME.qscale, group 32, the ftq.quant.*
 * metadata of docs/quant-format.md), which the model loader binds to ftq's int8 / int4
 * kernels. Q8_0 -> q8, Q4_0 -> q4, Q5_0 -> q5 and (rows a multiple of 256) Q6_K -> q6k,
 * Q4_K -> q4k, Q4_1 -> q4m keep every code and scale (the same values as the dequantized load); other
 * types (Q5_1, other K-quants) are converted to Q8_0 by ggml's reference quantizer
 * first. */
/* FTQ_GGUF_BF16: 2-D tensors not kept quantized are held as BF16 (round to nearest even of
 * their f32 dequantization, one tensor widened at a time) instead of F32: half the memory,
 * for a model loaded with FTQ_LOAD_BF16. */
enum { FTQ_GGUF_KEEP_QUANT = 1, FTQ_GGUF_BF16 = 2 };
int ftq_gguf_checkpoint_open_ex(const char *path, unsigned flags, ftq_model_config *cfg, ftq_checkpoint **out);

/* The model config of an open GGUF file's `<arch>.*` keys (as ftq_gguf_checkpoint_open
 * reads it, without touching tensor data). */
int ftq_gguf_model_config(const ftq_gguf *g, ftq_model_config *cfg);

/* Make a model directory's side files from a GGUF file's metadata, into the existing
 * directory `dir`: config.json (LlamaForCausalLM), tokenizer.json (byte-level BPE: vocab,
 * merges, added tokens from the token types, the pre-tokenizer tokenizer.ggml.pre names,
 * ByteLevel decoder, BOS/EOS post-processor) and tokenizer_config.json (special tokens,
 * chat_template). Hugging Face transformers and ftq load them with the GGUF's own token ids.
 * Sentencepiece (tokenizer.ggml.model "llama") tokenizers are refused (FTQ_EUNSUPPORTED). */
int ftq_gguf_write_model_files(const char *gguf_path, const char *dir);

/* The model files an output directory copies from its source `src` into `dst`: a GGUF file's
 * are written as above (config.json always); a directory's are copied (config.json only when
 * with_config), as ftq_copy_model_files. */
int ftq_model_files_copy(const char *src, const char *dst, int with_config);

/* ftq_gguf_write_model_files into a new private temporary directory (*dir, malloc'd; remove
 * it with ftq_remove_tree and free it). */
int ftq_gguf_model_files_tmpdir(const char *gguf_path, char **dir);

/* Write a llama-family model (config + checkpoint with Hugging Face names, as ftq loads it)
 * and its tokenizer as a GGUF file llama.cpp reads: the general.* / llama.* /
 * tokenizer.ggml.* keys, blk.N.* names, Q/K rows permuted as llama.cpp's converter does.
 * type: FTQ_GGML_F32, F16, BF16, Q8_0, Q4_0 or Q4_1 for the 2-D weights (1-D tensors stay
 * F32; a matrix whose rows are not a multiple of the type's block falls back to F16, see
 * ftq_gguf_export_type_of). The checkpoint's tensors must be floating point (an
 * ftq-quantized checkpoint goes through ftq_model_export_gguf). */
int ftq_gguf_export(const ftq_model_config *cfg, const ftq_checkpoint *ck, const ftq_tokenizer *tok,
                    uint32_t type, const char *path);

/* A tensor to export: `t` gives the Hugging Face name and shape, and the values (any float
 * dtype) unless `blocks` is set; then `blocks` holds the [rows, cols] matrix already encoded
 * as rows of ggml `blocks_type` blocks (in Hugging Face row order; for a GPT-2 Conv1D
 * tensor, t's shape is [in, out] and the blocks hold the [out, in] matrix), written as it is
 * (Q/K rows permuted) whatever `type` the file has: what lets an ftq int8 / int4 tensor be
 * copied into Q8_0 / Q4_0 without requantizing. */
typedef struct {
    const ftq_tensor *t;
    uint32_t blocks_type;
    const void *blocks;
    size_t blocks_nbytes;
} ftq_gguf_export_tensor;

typedef struct {
    int copied;  /* matrices written from given blocks (bit-exact copies) */
    int encoded; /* matrices converted from values to the file's types */
} ftq_gguf_export_stats;

/* `type` of a file whose matrices keep what they are: F16 / BF16 as stored, F32 otherwise,
 * and given blocks as given (an ftq-quantized model exported without any rounding). */
#define FTQ_GGUF_EXPORT_KEEP 0xffffffffu

/* ftq_gguf_export over a list of tensors (borrowed until it returns). stats may be NULL. */
int ftq_gguf_export_tensors(const ftq_model_config *cfg, const ftq_gguf_export_tensor *ts, size_t n,
                            const ftq_tokenizer *tok, uint32_t type, const char *path,
                            ftq_gguf_export_stats *stats);

/* The ggml type a tensor of `ndim` dimensions and rows of `cols` gets in a file of `type`:
 * F32 for 1-D tensors (and for KEEP), F16 when cols is not a multiple of the type's block,
 * else type. */
uint32_t ftq_gguf_export_type_of(uint32_t type, int ndim, int64_t cols);

/* ---- whole models (model/gguf_export.c) ---------------------------------------------- */

/* ftq_gguf_export of any checkpoint ftq loads, including an ftq-quantized one
 * (docs/quant-format.md): a quantized matrix whose codes and f16 scales are exactly a
 * Q8_0 / Q4_0 tensor of the file's type (q8, q4 or q4a -> Q8_0, q4 -> Q4_0; with
 * FTQ_GGUF_EXPORT_KEEP each gets its own: q8, q4a -> Q8_0, q4 -> Q4_0, q4m g32 -> Q4_1 (also
 * for type Q4_1); rows a multiple of 32) is copied without requantizing; any other is dequantized (the values
 * ftq computes with) and converted like a float tensor. */
int ftq_model_export_gguf(const ftq_model_config *cfg, const ftq_checkpoint *ck, const ftq_tokenizer *tok,
                          uint32_t type, const char *path, ftq_gguf_export_stats *stats);

#ifdef __cplusplus
}
#endif

#endif
