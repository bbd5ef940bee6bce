/* peft_gguf.c - a PEFT LoRA adapter as llama.cpp's LoRA GGUF (what its
 * convert_lora_to_gguf.py writes): adapter metadata, blk.N.* names with .lora_a / .lora_b,
 * F32, and the Q/K row permutation of llama.cpp's converter applied to lora_b. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ftq.h"
#include "ftq_lora.h"

enum { NOPERM = 0, PERM_Q = 1, PERM_K = 2 };
typedef struct {
    const char *suffix, *gguf;
    int perm;
} gguf_row;

static const gguf_row llama_rows[] = {
    {"self_attn.q_proj", "attn_q", PERM_Q},     {"self_attn.k_proj", "attn_k", PERM_K},
    {"self_attn.v_proj", "attn_v", NOPERM},     {"self_attn.o_proj", "attn_output", NOPERM},
    {"mlp.gate_proj", "ffn_gate", NOPERM},      {"mlp.up_proj", "ffn_up", NOPERM},
    {"mlp.down_proj", "ffn_down", NOPERM},      {NULL, NULL, 0},
};
static const gguf_row gpt2_rows[] = {
    {"attn.c_attn", "attn_qkv", NOPERM}, {"attn.c_proj", "attn_output", NOPERM},
    {"mlp.c_fc", "ffn_up", NOPERM},      {"mlp.c_proj", "ffn_down", NOPERM},
    {NULL, NULL, 0},
};

/* "…layers.N.<suffix>" / "…h.N.<suffix>" -> layer and row; -1 if not a known module. */
static int lookup(const char *mod, const gguf_row *rows, int *layer, const gguf_row **row)
{
    const char *keys[] = {"layers.", "h."};
    for (int k = 0; k < 2; k++) {
        const char *p = strstr(mod, keys[k]);
        if (!p || (p != mod && p[-1] != '.'))
            continue;
        p += strlen(keys[k]);
        char *end;
        long l = strtol(p, &end, 10);
        if (end == p || *end != '.' || l < 0 || l > 1 << 20)
            continue;
        for (const gguf_row *r = rows; r->suffix; r++)
            if (strcmp(end + 1, r->suffix) == 0) {
                *layer = (int)l;
                *row = r;
                return 0;
            }
    }
    return -1;
}

/* llama.cpp's converter: gguf row h*hd + 2j + i holds HF row h*hd + i*hd/2 + j. */
static int permute_rows(float *w, int64_t rows, int64_t cols, int heads)
{
    if (heads < 1 || rows % heads || (rows / heads) % 2)
        return ftq_set_error(FTQ_EFORMAT, "cannot permute %lld rows into %d heads", (long long)rows, heads);
    int64_t hd = rows / heads, half = hd / 2;
    float *tmp = malloc(sizeof(float) * (size_t)(hd * cols));
    if (!tmp)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    for (int h = 0; h < heads; h++) {
        float *blk = w + (int64_t)h * hd * cols;
        for (int64_t j = 0; j < half; j++)
            for (int i = 0; i < 2; i++)
                memcpy(tmp + (2 * j + i) * cols, blk + (i * half + j) * cols, sizeof(float) * (size_t)cols);
        memcpy(blk, tmp, sizeof(float) * (size_t)(hd * cols));
    }
    free(tmp);
    return FTQ_OK;
}

int ftq_peft_export_gguf(const char *adapter_dir, const ftq_model_config *cfg, const char *path)
{
    if (!adapter_dir || !cfg || !path)
        return ftq_set_error(FTQ_EINVAL, "ftq_peft_export_gguf: NULL argument");
    if (cfg->arch != FTQ_ARCH_LLAMA && cfg->arch != FTQ_ARCH_GPT2)
        return ftq_set_error(FTQ_EUNSUPPORTED, "a llama.cpp LoRA GGUF needs a llama-family or GPT-2 base");
    const int gpt2 = cfg->arch == FTQ_ARCH_GPT2;
    ftq_peft *ad = NULL;
    ftq_gguf_writer *w = NULL;
    float **bufs = NULL;
    char **names = NULL;
    size_t nm = 0;
    int rc = ftq_peft_open(adapter_dir, &ad);
    if (rc == FTQ_OK)
        rc = ftq_gguf_writer_new(&w);
    if (rc != FTQ_OK)
        goto done;
    nm = ftq_peft_module_count(ad);
    bufs = calloc(2 * nm, sizeof *bufs);
    names = calloc(2 * nm, sizeof *names);
    if (!bufs || !names) {
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        goto done;
    }
    if (ftq_peft_extra_count(ad) > 0) {
        const char *en;
        ftq_peft_extra_at(ad, 0, &en);
        rc = ftq_set_error(FTQ_EUNSUPPORTED, "cannot write '%s': llama.cpp LoRA adapters hold no full tensors "
                           "('%s' of modules_to_save)", path, en);
        goto done;
    }
    const int r = ftq_peft_rank(ad);
    double alpha = ftq_peft_alpha(ad);
    if (ftq_peft_scaling(ad) != (float)(alpha / r)) /* rsLoRA: the same scaling under alpha / r */
        alpha *= sqrt((double)r);
    ftq_gguf_writer_str(w, "general.architecture", gpt2 ? "gpt2" : "llama");
    ftq_gguf_writer_str(w, "general.type", "adapter");
    ftq_gguf_writer_str(w, "adapter.type", "lora");
    ftq_gguf_writer_f32(w, "adapter.lora.alpha", (float)alpha);
    for (size_t i = 0; rc == FTQ_OK && i < nm; i++) {
        const ftq_peft_module *pm = ftq_peft_module_at(ad, i);
        int layer;
        const gguf_row *row;
        if (lookup(pm->module, gpt2 ? gpt2_rows : llama_rows, &layer, &row) != 0 || layer >= cfg->n_layers) {
            rc = ftq_set_error(FTQ_EUNSUPPORTED, "cannot write '%s': module '%s' has no llama.cpp tensor", path,
                               pm->module);
            break;
        }
        float *A = bufs[2 * i] = malloc(sizeof(float) * (size_t)r * (size_t)pm->in);
        float *B = bufs[2 * i + 1] = malloc(sizeof(float) * (size_t)pm->out * (size_t)r);
        char *na = names[2 * i] = malloc(96), *nb = names[2 * i + 1] = malloc(96);
        if (!A || !B || !na || !nb) {
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
            break;
        }
        if ((rc = ftq_tensor_to_f32(pm->A, A)) != FTQ_OK || (rc = ftq_tensor_to_f32(pm->B, B)) != FTQ_OK)
            break;
        if (row->perm && (rc = permute_rows(B, pm->out, r, row->perm == PERM_Q ? cfg->n_heads : cfg->n_kv_heads)) !=
                             FTQ_OK)
            break;
        snprintf(na, 96, "blk.%d.%s.weight.lora_a", layer, row->gguf);
        snprintf(nb, 96, "blk.%d.%s.weight.lora_b", layer, row->gguf);
        const int64_t nea[2] = {pm->in, r}, neb[2] = {r, pm->out};
        if ((rc = ftq_gguf_writer_tensor(w, na, FTQ_GGML_F32, 2, nea, A, sizeof(float) * (size_t)(r * pm->in))) !=
            FTQ_OK)
            break;
        rc = ftq_gguf_writer_tensor(w, nb, FTQ_GGML_F32, 2, neb, B, sizeof(float) * (size_t)(r * pm->out));
    }
    if (rc == FTQ_OK)
        rc = ftq_gguf_writer_write(w, path);
done:
    if (bufs)
        for (size_t i = 0; i < 2 * nm; i++) {
            free(bufs[i]);
            free(names[i]);
        }
    free(bufs);
    free(names);
    ftq_gguf_writer_free(w);
    ftq_peft_close(ad);
    return rc;
}
