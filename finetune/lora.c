/* lora.c - LoRA sites of the decoder families (one table per family: PEFT target name, HF
 * module path, llama.cpp tensor name, which linear and which output columns); the adapter
 * product itself is kernels/lora.c. */
#include <math.h>
#include <string.h>

#include "finetune/lora.h"

ftq_lora_params ftq_lora_default_params(void)
{
    ftq_lora_params p;
    memset(&p, 0, sizeof p);
    p.r = 8;
    p.alpha = 8;
    return p;
}

int ftq_lora_check(const ftq_lora_params *p)
{
    if (p->r < 1 || p->r > 4096)
        return ftq_set_error(FTQ_EINVAL, "lora rank must be in 1..4096, got %d", p->r);
    if (!(p->alpha > 0) || !isfinite(p->alpha))
        return ftq_set_error(FTQ_EINVAL, "lora alpha must be positive and finite, got %g", p->alpha);
    if (!(p->dropout >= 0 && p->dropout < 1))
        return ftq_set_error(FTQ_EINVAL, "lora dropout must be in [0, 1), got %g", p->dropout);
    return FTQ_OK;
}

float ftq_lora_scaling(const ftq_lora_params *p)
{
    return (float)(p->rslora ? p->alpha / sqrt((double)p->r) : p->alpha / p->r);
}

/* ---- the sites of each family ---------------------------------------------------------------- */

typedef struct {
    const char *target, *path, *gguf;
    int lin;
    int part; /* which part of a stacked output (0, 1, 2) */
    int is_default;
} site_row;

static const site_row llama_sites[] = {
    {"q_proj", "model.layers.%d.self_attn.q_proj", "blk.%d.attn_q", LORA_LIN_QKV, 0, 1},
    {"k_proj", "model.layers.%d.self_attn.k_proj", "blk.%d.attn_k", LORA_LIN_QKV, 1, 0},
    {"v_proj", "model.layers.%d.self_attn.v_proj", "blk.%d.attn_v", LORA_LIN_QKV, 2, 1},
    {"o_proj", "model.layers.%d.self_attn.o_proj", "blk.%d.attn_output", LORA_LIN_O, 0, 0},
    {"gate_proj", "model.layers.%d.mlp.gate_proj", "blk.%d.ffn_gate", LORA_LIN_FC, 0, 0},
    {"up_proj", "model.layers.%d.mlp.up_proj", "blk.%d.ffn_up", LORA_LIN_FC, 1, 0},
    {"down_proj", "model.layers.%d.mlp.down_proj", "blk.%d.ffn_down", LORA_LIN_DOWN, 0, 0},
};

/* GPT-2's Conv1D modules; PEFT matches "c_proj" in both the attention and the MLP. */
static const site_row gpt2_sites[] = {
    {"c_attn", "transformer.h.%d.attn.c_attn", "blk.%d.attn_qkv", LORA_LIN_QKV, 0, 1},
    {"c_proj", "transformer.h.%d.attn.c_proj", "blk.%d.attn_output", LORA_LIN_O, 0, 0},
    {"c_fc", "transformer.h.%d.mlp.c_fc", "blk.%d.ffn_up", LORA_LIN_FC, 0, 0},
    {"c_proj", "transformer.h.%d.mlp.c_proj", "blk.%d.ffn_down", LORA_LIN_DOWN, 0, 0},
};

int ftq_lora_sites(const ftq_model_config *c, const ftq_lora_params *p, ftq_lora_site *sites, int *n)
{
    const int gpt2 = c->arch == FTQ_ARCH_GPT2;
    const site_row *rows = gpt2 ? gpt2_sites : llama_sites;
    const int nrows = gpt2 ? (int)(sizeof gpt2_sites / sizeof gpt2_sites[0])
                           : (int)(sizeof llama_sites / sizeof llama_sites[0]);
    const int C = c->hidden_size, F = c->intermediate_size, Q = c->n_heads * c->head_dim;
    const int K = c->n_kv_heads * c->head_dim;
    const char *t = p->targets;
    const int all = t && strcmp(t, "all-linear") == 0;
    /* every listed name must name a site of this family */
    if (t && !all) {
        for (const char *q = t; *q;) {
            const char *e = strchr(q, ',');
            size_t len = e ? (size_t)(e - q) : strlen(q);
            int found = 0;
            for (int i = 0; i < nrows; i++)
                if (strlen(rows[i].target) == len && strncmp(rows[i].target, q, len) == 0)
                    found = 1;
            if (!found) {
                char known[256] = "";
                for (int i = 0; i < nrows; i++)
                    if (!strstr(known, rows[i].target))
                        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "",
                                 rows[i].target);
                return ftq_set_error(FTQ_EINVAL, "unknown lora target '%.*s' for a %s model (expected %s or "
                                     "all-linear)", (int)len, q, gpt2 ? "GPT-2" : "Llama-family", known);
            }
            if (!e)
                break;
            q = e + 1;
        }
    }
    int k = 0;
    for (int i = 0; i < nrows; i++) {
        const site_row *r = &rows[i];
        if (!(all || (t ? ftq_list_has(t, r->target) : r->is_default)))
            continue;
        ftq_lora_site *s = &sites[k++];
        s->target = r->target;
        s->path = r->path;
        s->gguf = r->gguf;
        s->lin = r->lin;
        switch (r->lin) {
        case LORA_LIN_QKV:
            s->in = C;
            s->o0 = gpt2 ? 0 : r->part == 0 ? 0 : r->part == 1 ? Q : Q + K;
            s->out = gpt2 ? 3 * C : r->part == 0 ? Q : K;
            break;
        case LORA_LIN_O:
            s->in = Q;
            s->o0 = 0;
            s->out = C;
            break;
        case LORA_LIN_FC:
            s->in = C;
            s->o0 = r->part * F;
            s->out = F;
            break;
        default:
            s->in = F;
            s->o0 = 0;
            s->out = C;
            break;
        }
    }
    if (k == 0)
        return ftq_set_error(FTQ_EINVAL, "lora targets '%s' select no module", t ? t : "");
    *n = k;
    return FTQ_OK;
}

