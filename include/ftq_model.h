/* ftq_model.h - Llama-family and GPT-2-family causal language models: loading from a
 * Hugging Face checkpoint directory (or an ftq int8 / int4 quantized one) and the forward
 * pass with a KV cache (fp32 activations; int8 / int4 weights on their own kernels).
 *
 *     ftq_model *m = NULL;
 *     ftq_model_load("models/stories260K", &m);
 *     ftq_session *s = NULL;
 *     ftq_session_new(m, 256, &s);                    // KV cache for 256 positions
 *     float *logits = malloc(sizeof(float) * n * vocab);
 *     ftq_session_eval(s, ids, n, logits, 1);         // all n rows of logits
 *     ftq_session_eval(s, &next, 1, logits, 0);       // one more token, last row only
 *     ftq_session_free(s);
 *     ftq_model_free(m);
 *
 * Internal layout (model/model.h): every linear weight is an ftq_tensor of shape
 * [out, in] (nn.Linear convention); GPT-2 Conv1D weights, stored [in, out] in the file,
 * are transposed once at load. F32 tensors whose data are 4-byte aligned stay zero-copy
 * views of the mmap'd file; F16/BF16/F64 tensors are converted to f32 at load.
 * A model is immutable after loading; sessions are per-thread.
 */
#ifndef FTQ_MODEL_H
#define FTQ_MODEL_H

#include "ftq_io.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ftq_model ftq_model;
typedef struct ftq_session ftq_session;

/* Load config.json + safetensors from a directory. Validates that every tensor the
 * config implies is present with the right shape (and reports the first mismatch by
 * name, expected and actual shape); unknown extra tensors are an error too except the
 * legacy GPT-2 attn.bias / attn.masked_bias buffers. */
int ftq_model_load(const char *dir, ftq_model **out);
/* The same with flags. FTQ_LOAD_KEEP_QUANT: a GGUF file's quantized matrices run on ftq's
 * int8 / int4 kernels instead of being expanded to f32 (ftq_gguf_checkpoint_open_ex:
 * Q8_0 / Q4_0 / Q4_1 as they are, other quantized types via Q8_0); no effect on a directory. */
/* FTQ_LOAD_BF16: linear weights, embeddings and heads are held as packed bf16 only (round to
 * nearest even of the f32 values; a BF16 tensor of the file is copied exactly, never widened)
 * and multiply on the bf16 kernels (kernels/bmat.h); norms, attention and softmax stay fp32.
 * The checkpoint's copies of those tensors are released after packing. */
enum { FTQ_LOAD_KEEP_QUANT = 1, FTQ_LOAD_BF16 = 2 };
int ftq_model_load_ex(const char *dir, unsigned flags, ftq_model **out);
void ftq_model_free(ftq_model *m);

const ftq_model_config *ftq_model_get_config(const ftq_model *m);
const ftq_checkpoint *ftq_model_get_checkpoint(const ftq_model *m);
int64_t ftq_model_param_count(const ftq_model *m);

/* Check a checkpoint against a config without building a model: every expected tensor
 * present with the expected shape. Accepts both GPT-2 namings. */
int ftq_model_validate(const ftq_model_config *cfg, const ftq_checkpoint *ck);

/* A session holds the KV cache for up to n_ctx positions and scratch buffers. */
int ftq_session_new(const ftq_model *m, int n_ctx, ftq_session **out);
void ftq_session_free(ftq_session *s);
void ftq_session_reset(ftq_session *s);   /* forget all positions */
int ftq_session_pos(const ftq_session *s); /* tokens in the cache */
int ftq_session_ctx(const ftq_session *s);

/* Run n tokens at positions pos..pos+n-1 (a whole chunk per layer, batched matmuls) and
 * append them to the cache. logits: NULL, or n x vocab floats if all_logits, else vocab
 * floats for the last token. FTQ_EINVAL if the cache would overflow or an id is out of
 * range. */
int ftq_session_eval(ftq_session *s, const int32_t *ids, int n, float *logits, int all_logits);

/* Sequence classification with a classifier checkpoint (config architectures
 * *ForSequenceClassification and a `score.weight` [num_labels, hidden] head, as HF saves
 * LlamaForSequenceClassification / GPT2ForSequenceClassification): runs the n ids through
 * a reset session and writes num_labels logits, pooled at the last token (HF pools at the
 * last non-padding token). FTQ_EINVAL if the model has no head. */
int ftq_model_classify(const ftq_model *m, ftq_session *s, const int32_t *ids, int n, float *logits);
int ftq_model_num_labels(const ftq_model *m); /* 0 if the model has no classification head */

#ifdef __cplusplus
}
#endif

#endif
