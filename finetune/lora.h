/* lora.h - LoRA adapters of the trainable decoder (internal): the sites of one block (which
 * of its linears, which output columns of a stacked q|k|v or gate|up product, the HF module
 * path PEFT names them by) and target parsing. A site's adapter adds to columns
 * [o0, o0 + out) of its linear's output (kernels/lora.h has the product). */
#ifndef FTQ_FINETUNE_LORA_H
#define FTQ_FINETUNE_LORA_H

#include "ftq.h"
#include "kernels/lora.h"

/* The linears of a decoder block, in forward order. */
enum { LORA_LIN_QKV = 0, LORA_LIN_O = 1, LORA_LIN_FC = 2, LORA_LIN_DOWN = 3, LORA_LIN_N = 4 };

#define FTQ_LORA_MAX_SITES 8

typedef struct {
    const char *target; /* PEFT target name: "q_proj", GPT-2 "c_attn" */
    const char *path;   /* HF module path with %d for the layer: "model.layers.%d.self_attn.q_proj" */
    const char *gguf;   /* llama.cpp tensor base with %d: "blk.%d.attn_q" (NULL: none) */
    int lin;            /* LORA_LIN_* */
    int o0, out, in;    /* output columns [o0, o0 + out) of that linear; its input width */
} ftq_lora_site;

/* The sites of one block of a decoder with config c selected by p->targets (NULL: PEFT's
 * default for the family), in forward order. FTQ_EINVAL naming an unknown target. */
int ftq_lora_sites(const ftq_model_config *c, const ftq_lora_params *p, ftq_lora_site *sites, int *n);

/* alpha / r, or alpha / sqrt(r) with rslora. */
float ftq_lora_scaling(const ftq_lora_params *p);

#endif
