/* ftq_lora.h - PEFT LoRA adapter directories (adapter_config.json +
 * adapter_model.safetensors): reading one, the merged weight delta of each adapted
 * module, applying an adapter to a loaded model, and writing llama.cpp's LoRA GGUF.
 *
 *     ftq_peft *ad = NULL;
 *     if (ftq_peft_open("out/adapter", &ad) != FTQ_OK) { ... ftq_last_error() ... }
 *     for (size_t i = 0; i < ftq_peft_module_count(ad); i++) {
 *         const ftq_peft_module *pm = ftq_peft_module_at(ad, i); // "model.layers.0.self_attn.q_proj"
 *         float *d = malloc(sizeof(float) * pm->out * pm->in);
 *         ftq_peft_delta(ad, i, d);                             // scaling * B A, [out, in]
 *     }
 *     ftq_peft_close(ad);
 *
 * Only what PEFT's LoraConfig writes for plain LoRA is accepted: peft_type LORA, no DoRA,
 * no rank_pattern / alpha_pattern, bias "none"; anything else is FTQ_EUNSUPPORTED naming
 * the key. Handles are read-only after open and may be shared between threads. */
#ifndef FTQ_LORA_H
#define FTQ_LORA_H

#include "ftq_core.h"
#include "ftq_model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ftq_peft ftq_peft;

typedef struct {
    const char *module; /* HF module path without PEFT's prefix: "model.layers.0.self_attn.q_proj" */
    int64_t out, in;    /* lora_B rows, lora_A columns */
    const ftq_tensor *A, *B; /* [r, in], [out, r] */
} ftq_peft_module;

int ftq_peft_open(const char *dir, ftq_peft **out);
void ftq_peft_close(ftq_peft *ad);
int ftq_peft_rank(const ftq_peft *ad);
double ftq_peft_alpha(const ftq_peft *ad);
float ftq_peft_scaling(const ftq_peft *ad);   /* alpha / r, or alpha / sqrt(r) with use_rslora */
const char *ftq_peft_task_type(const ftq_peft *ad); /* "CAUSAL_LM", "SEQ_CLS", ... or "" */
const char *ftq_peft_base_model(const ftq_peft *ad); /* base_model_name_or_path or "" */
int ftq_peft_fan_in_fan_out(const ftq_peft *ad);
size_t ftq_peft_module_count(const ftq_peft *ad);
const ftq_peft_module *ftq_peft_module_at(const ftq_peft *ad, size_t i);
/* delta [out, in] = scaling * B A (float64 sums). */
int ftq_peft_delta(const ftq_peft *ad, size_t i, float *delta);
/* Full tensors saved beside the adapters (modules_to_save, e.g. "score.weight" without
 * PEFT's prefix): count and i-th (name is the HF name). */
size_t ftq_peft_extra_count(const ftq_peft *ad);
const ftq_tensor *ftq_peft_extra_at(const ftq_peft *ad, size_t i, const char **hf_name);

/* Merge the adapter in dir into a loaded decoder (Llama family, GPT-2): every adapted
 * module's f32 weight becomes W + scaling * B A (a copy the model owns; the mmap is not
 * touched) and modules_to_save heads replace or add the model's (score.weight). On a
 * quantized weight (an ftq int8 / int4 checkpoint, a GGUF loaded with FTQ_LOAD_KEEP_QUANT)
 * the adapter is kept beside it instead (f32 A and B; every product adds scaling (x A^T) B^T,
 * as PEFT's forward). A module the model does not have is an error naming it. */
int ftq_model_apply_adapter(ftq_model *m, const char *dir);

/* Write the merged model of base_dir (an HF model directory of f32 / f16 / bf16
 * safetensors) and the adapter in adapter_dir as an HF model directory out_dir
 * (model.safetensors + config.json + tokenizer files), through a temporary directory
 * renamed into place. Tensors are matched by name (<module>.weight), so every
 * architecture whose HF names the adapter uses works, GPT-2's Conv1D ([in, out]) included
 * when the adapter says fan_in_fan_out. */
int ftq_peft_merge_dir(const char *base_dir, const char *adapter_dir, const char *out_dir);

/* Write the adapter as llama.cpp's LoRA GGUF (facts of its convert_lora_to_gguf.py):
 * general.architecture (llama / gpt2, from cfg), general.type = "adapter", adapter.type =
 * "lora", adapter.lora.alpha (llama.cpp scales by alpha / r; an rsLoRA adapter is written
 * with alpha * sqrt(r) so the scaling is the same); tensors blk.N.<name>.weight.lora_a (ggml
 * ne [in, r]) and .lora_b (ne [r, out]) in F32; lora_b rows of attn_q / attn_k permuted as
 * the converter permutes the base weights' rows. Atomic. */
int ftq_peft_export_gguf(const char *adapter_dir, const ftq_model_config *cfg, const char *path);

#ifdef __cplusplus
}
#endif

#endif
