/* adapter.c - merging a PEFT LoRA adapter into a loaded decoder: each adapted module's
 * weight (found by its HF module path's layer number and suffix, so the model may come
 * from safetensors or GGUF) becomes a model-owned copy of W + scaling * B A; a
 * modules_to_save head (score.weight) replaces or adds the classification head. */
#include <stdlib.h>
#include <string.h>

#include "ftq_lora.h"
#include "model/model.h"

typedef struct {
    const char *suffix;
    int n;
    size_t field[3]; /* offsets of ftq_tensor fields of ftq_layer_weights */
} module_row;

#define F_(x) offsetof(ftq_layer_weights, x)
static const module_row rows[] = {
    {"self_attn.q_proj", 1, {F_(wq)}},     {"self_attn.k_proj", 1, {F_(wk)}},
    {"self_attn.v_proj", 1, {F_(wv)}},     {"self_attn.o_proj", 1, {F_(wo)}},
    {"mlp.gate_proj", 1, {F_(w_gate)}},    {"mlp.up_proj", 1, {F_(w_up)}},
    {"mlp.down_proj", 1, {F_(w_down)}},    {"attn.c_attn", 3, {F_(wq), F_(wk), F_(wv)}},
    {"attn.c_proj", 1, {F_(wo)}},          {"mlp.c_fc", 1, {F_(w_up)}},
    {"mlp.c_proj", 1, {F_(w_down)}},
};
#undef F_

/* The layer and row of a module path "…layers.N.<suffix>" / "…h.N.<suffix>"; -1 if none. */
static int find_module(const ftq_model *m, const char *mod, int *layer, const module_row **row)
{
    const char *keys[] = {"layers.", "h."};
    for (size_t k = 0; k < 2; k++) {
        const char *p = strstr(mod, keys[k]);
        if (!p || (p != mod && p[-1] != '.'))
            continue;
        p += strlen(keys[k]);
        char *end;
        long l = strtol(p, &end, 10);
        if (end == p || *end != '.' || l < 0 || l >= m->cfg.n_layers)
            continue;
        for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
            if (strcmp(end + 1, rows[i].suffix) == 0) {
                *layer = (int)l;
                *row = &rows[i];
                return 0;
            }
    }
    return -1;
}

/* A quantized base cannot take W + s B A without requantizing it: the adapter stays beside
 * the weight (f32 A and this part's rows of B, model-owned), and every product with it adds
 * s (x A^T) B^T (model/forward.c), as PEFT's forward computes it. */
static int keep_beside(ftq_model *m, const ftq_peft *ad, const ftq_peft_module *pm, ftq_tensor *const *ts, int n)
{
    const int r = (int)pm->A->shape[0];
    if (!m->side) { /* room for every linear of every layer */
        size_t cap = (size_t)m->cfg.n_layers * 7 + 1;
        if (!(m->side = ftq_model_alloc(m, cap * sizeof *m->side)))
            return ftq_set_error(FTQ_ENOMEM, "out of memory");
    }
    float *A = ftq_model_alloc(m, sizeof(float) * (size_t)r * (size_t)pm->in);
    float *B = ftq_model_alloc(m, sizeof(float) * (size_t)pm->out * (size_t)r);
    if (!A || !B)
        return ftq_set_error(FTQ_ENOMEM, "out of memory for adapter '%s'", pm->module);
    int rc = ftq_tensor_to_f32(pm->A, A);
    if (rc == FTQ_OK)
        rc = ftq_tensor_to_f32(pm->B, B);
    int64_t row0 = 0;
    for (int k = 0; rc == FTQ_OK && k < n; k++) {
        if (m->n_side >= (size_t)m->cfg.n_layers * 7 + 1)
            return ftq_set_error(FTQ_EUNSUPPORTED, "adapter module '%s': more adapted weights than linear layers",
                                 pm->module);
        ftq_side_lora *s = &m->side[m->n_side++];
        s->w = ts[k];
        s->A = A;
        s->B = B + (size_t)row0 * (size_t)r;
        s->r = r;
        s->in = (int)pm->in;
        s->out = (int)ts[k]->shape[0];
        s->scale = ftq_peft_scaling(ad);
        row0 += ts[k]->shape[0];
    }
    return rc;
}

static int merge_module(ftq_model *m, const ftq_peft *ad, size_t i, const char *dir)
{
    const ftq_peft_module *pm = ftq_peft_module_at(ad, i);
    int l;
    const module_row *row;
    if (find_module(m, pm->module, &l, &row) != 0)
        return ftq_set_error(FTQ_EUNSUPPORTED, "cannot apply adapter '%s': module '%s' is not a linear layer of this "
                             "model", dir, pm->module);
    ftq_tensor *ts[3];
    int64_t rows_total = 0;
    for (int k = 0; k < row->n; k++) {
        ts[k] = (ftq_tensor *)((char *)&m->layers[l] + row->field[k]);
        if (!ts[k]->data)
            return ftq_set_error(FTQ_EUNSUPPORTED, "cannot apply adapter '%s': the model has no '%s'", dir, pm->module);
        if (ts[k]->dtype != FTQ_DTYPE_F32 && ts[k]->dtype != FTQ_DTYPE_QMAT)
            return ftq_set_error(FTQ_EUNSUPPORTED, "cannot apply adapter '%s' to '%s': its base weight is %s", dir,
                                 pm->module, ftq_dtype_info(ts[k]->dtype)->name);
        if (ts[k]->ndim != 2 || ts[k]->shape[1] != pm->in)
            return ftq_set_error(FTQ_EFORMAT, "cannot apply adapter '%s': module '%s' takes %lld inputs, the model's "
                                 "weight %lld", dir, pm->module, (long long)pm->in, (long long)ts[k]->shape[1]);
        rows_total += ts[k]->shape[0];
    }
    if (rows_total != pm->out)
        return ftq_set_error(FTQ_EFORMAT, "cannot apply adapter '%s': module '%s' has %lld outputs, the model's "
                             "weight %lld", dir, pm->module, (long long)pm->out, (long long)rows_total);
    if (ts[0]->dtype == FTQ_DTYPE_QMAT)
        return keep_beside(m, ad, pm, ts, row->n);
    float *delta = malloc(sizeof(float) * (size_t)pm->out * (size_t)pm->in);
    if (!delta)
        return ftq_set_error(FTQ_ENOMEM, "out of memory merging '%s'", pm->module);
    int rc = ftq_peft_delta(ad, i, delta);
    const float *d = delta;
    for (int k = 0; rc == FTQ_OK && k < row->n; k++) {
        ftq_tensor *t = ts[k];
        size_t n = (size_t)t->shape[0] * (size_t)t->shape[1];
        float *w = ftq_model_alloc(m, sizeof(float) * n); /* never write into the mmap */
        if (!w) {
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory merging '%s'", pm->module);
            break;
        }
        const float *src = t->data;
        for (size_t e = 0; e < n; e++)
            w[e] = src[e] + d[e];
        /* a tied lm_head never aliases a block weight; only the embedding is shared */
        t->data = w;
        t->owned = 1;
        d += n;
    }
    free(delta);
    return rc;
}

static int set_head(ftq_model *m, const ftq_tensor *t, const char *dir)
{
    const int64_t C = m->cfg.hidden_size;
    if (t->ndim != 2 || t->shape[1] != C || t->shape[0] < 1 || t->shape[0] > 1 << 20)
        return ftq_set_error(FTQ_EFORMAT, "cannot apply adapter '%s': score.weight is not [labels, %lld]", dir,
                             (long long)C);
    size_t n = (size_t)t->shape[0] * (size_t)C;
    float *w = ftq_model_alloc(m, sizeof(float) * n);
    if (!w)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    int rc = ftq_tensor_to_f32(t, w);
    if (rc != FTQ_OK)
        return rc;
    memset(&m->score, 0, sizeof m->score);
    m->score.name = "score.weight";
    m->score.dtype = FTQ_DTYPE_F32;
    m->score.ndim = 2;
    m->score.shape[0] = t->shape[0];
    m->score.shape[1] = C;
    m->score.nbytes = n * sizeof(float);
    m->score.data = w;
    m->score.owned = 1;
    m->cfg.is_classifier = 1;
    m->cfg.num_labels = (int)t->shape[0];
    return FTQ_OK;
}

int ftq_model_apply_adapter(ftq_model *m, const char *dir)
{
    if (!m || !dir)
        return ftq_set_error(FTQ_EINVAL, "ftq_model_apply_adapter: NULL argument");
    ftq_peft *ad = NULL;
    int rc = ftq_peft_open(dir, &ad);
    for (size_t i = 0; rc == FTQ_OK && i < ftq_peft_module_count(ad); i++)
        rc = merge_module(m, ad, i, dir);
    for (size_t i = 0; rc == FTQ_OK && i < ftq_peft_extra_count(ad); i++) {
        const char *name;
        const ftq_tensor *t = ftq_peft_extra_at(ad, i, &name);
        if (strcmp(name, "score.weight") == 0)
            rc = set_head(m, t, dir);
        else
            rc = ftq_set_error(FTQ_EUNSUPPORTED, "cannot apply adapter '%s': saved module '%s' is not supported (only "
                               "score.weight)", dir, name);
    }
    ftq_peft_close(ad);
    return rc;
}
