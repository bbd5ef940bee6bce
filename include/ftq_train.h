/* ftq_train.h - fine-tuning: the trainable model (forward with saved activations, hand-
 * written backward, flat parameter / gradient buffers), AdamW, and the trainer.
 *
 * Layout (llm.c style): all parameters live in ONE float buffer in the order
 *   embeddings (tok, pos) | block 0 | block 1 | ... | block L-1 | final norm | lm_head
 *   (untied LM only) | score (classification head, classify only)
 * so the trainable parameters of every mode are a contiguous suffix of it:
 *   full    everything (offset 0)
 *   frozen  blocks K.. onward (embeddings and the first K blocks frozen; with tied
 *           embeddings the output layer is the frozen embedding matrix)
 *   head    only the classification head `score` (task classify)
 * Gradients and the AdamW moments are allocated for that suffix only, and the backward
 * pass stops at the lowest trainable block. Linear weights are [out, in] (GPT-2 Conv1D
 * weights are transposed on the way in and out).
 *
 *     ftq_tmodel_params tp = ftq_tmodel_default_params();
 *     tp.task = FTQ_TASK_CLASSIFY; tp.num_labels = 2; tp.mode = FTQ_TRAIN_FULL;
 *     ftq_tmodel *tm = NULL;
 *     ftq_tmodel_new(model, &tp, &tm);
 *     ftq_tmodel_zero_grad(tm);
 *     ftq_tmodel_forward(tm, ids, lengths, B, T, labels, &loss, NULL);
 *     ftq_tmodel_backward(tm, 1.0f);
 *     // optimizer over ftq_tmodel_param_buffer() / ftq_tmodel_grad_buffer() ...
 *
 * Determinism: for the same inputs and thread count every function here gives bit-identical
 * results (no floating-point atomics, no OpenMP reductions whose order can vary).
 */
#ifndef FTQ_TRAIN_H
#define FTQ_TRAIN_H

#include "ftq_model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { FTQ_TASK_LM = 0, FTQ_TASK_CLASSIFY = 1 } ftq_task;
typedef enum { FTQ_TRAIN_FULL = 0, FTQ_TRAIN_FROZEN = 1, FTQ_TRAIN_HEAD = 2 } ftq_train_mode;

#define FTQ_IGNORE_INDEX (-100) /* LM target that is not scored (HF's ignore_index) */

typedef struct {
    ftq_task task;
    int num_labels;       /* classify: size of the head */
    ftq_train_mode mode;
    int freeze_layers;    /* frozen: K */
    int init_random;      /* re-initialize every weight as HF's _init_weights does
                             (normal(0, initializer_range) matrices and embeddings, norms 1,
                             biases 0) instead of using the pretrained values */
    uint64_t seed;        /* for the new head and for init_random */
    float init_std;       /* initializer_range (default 0.02) */
    int max_batch;        /* activation buffers are sized for max_batch x max_seq */
    int max_seq;
} ftq_tmodel_params;

ftq_tmodel_params ftq_tmodel_default_params(void);

typedef struct ftq_tmodel ftq_tmodel;

/* Copy the weights of `m` into the flat buffer and add a head as the task needs. If `m`
 * is a sequence classifier checkpoint (config architectures *ForSequenceClassification,
 * tensor score.weight) its head is used; otherwise a new head is drawn from
 * normal(0, init_std) with `seed`. */
int ftq_tmodel_new(const ftq_model *m, const ftq_tmodel_params *p, ftq_tmodel **out);
void ftq_tmodel_free(ftq_tmodel *tm);

/* Forward on B rows of T ids (row-major [B, T]).
 *   LM:       targets [B*T], FTQ_IGNORE_INDEX = not scored; loss = mean cross-entropy over
 *             scored targets (HF: labels shifted by the caller: targets[t] = ids[t+1]).
 *   classify: targets [B] labels; row b is pooled at position lengths[b] - 1 (the last
 *             non-padding token, right padding); loss = mean cross-entropy over rows.
 * lengths may be NULL (every row T long). logits (optional): classify [B, num_labels]. */
int ftq_tmodel_forward(ftq_tmodel *tm, const int32_t *ids, const int32_t *lengths, int B, int T,
                       const int32_t *targets, float *loss, float *logits);

/* Backward of the last forward: grads += scale * d loss / d param for the trainable
 * parameters (scale = 1 / grad_accum for accumulation). */
int ftq_tmodel_backward(ftq_tmodel *tm, float scale);
void ftq_tmodel_zero_grad(ftq_tmodel *tm);

/* The flat buffers. params has n entries; the trainable ones are params[offset ..
 * offset + n_trainable), and grads has n_trainable entries. */
float *ftq_tmodel_param_buffer(ftq_tmodel *tm, size_t *n);
float *ftq_tmodel_grad_buffer(ftq_tmodel *tm, size_t *n_trainable);
size_t ftq_tmodel_trainable_offset(const ftq_tmodel *tm);

/* The trainable range as named segments (one per HF tensor), for weight decay (decay = 0
 * for norms, biases and embeddings), logging and tests. Offsets are into params. */
typedef struct {
    const char *name; /* HF tensor name */
    size_t offset, size;
    int decay;
} ftq_param_segment;
size_t ftq_tmodel_segment_count(const ftq_tmodel *tm);          /* trainable segments */
const ftq_param_segment *ftq_tmodel_segment(const ftq_tmodel *tm, size_t i);

const ftq_model_config *ftq_tmodel_config(const ftq_tmodel *tm);

/* Write every parameter as an HF checkpoint file (names and layouts exactly as HF's
 * *ForCausalLM / *ForSequenceClassification state dict; Conv1D transposed back; tied
 * output omitted), atomically. */
int ftq_tmodel_save_weights(const ftq_tmodel *tm, const char *path);

/* ---- AdamW ------------------------------------------------------------------------- */

typedef struct {
    float beta1, beta2, eps, weight_decay;
} ftq_adamw_params;

/* One AdamW step (PyTorch semantics: decoupled decay p -= lr*wd*p, bias-corrected
 * moments; step counts from 1) on n elements. */
void ftq_adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr,
                      const ftq_adamw_params *ap, int64_t step, int decay);

#ifdef __cplusplus
}
#endif

#endif
