/* bert_lora.c - LoRA adapters on a BERT encoder's block linears (query, key, value,
 * attention.output.dense, intermediate.dense, output.dense), as PEFT puts them on
 * BertForSequenceClassification: A [r, in] Kaiming-uniform, B [out, r] zero, stored in the
 * parameter buffer after the classifier so the trainer's flat AdamW covers them. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/bert_internal.h"
#include "ftq_lora.h"
#include "include/ftq_bert_train.h"

static const char *const paths[BERT_LIN_N] = {
    "encoder.layer.%d.attention.self.query", "encoder.layer.%d.attention.self.key",
    "encoder.layer.%d.attention.self.value", "encoder.layer.%d.attention.output.dense",
    "encoder.layer.%d.intermediate.dense",   "encoder.layer.%d.output.dense",
};
static const char *const targets[BERT_LIN_N] = {"query", "key", "value", "dense", "dense", "dense"};

const char *ftq_bert_lora_module(int l, int k, char *buf, size_t cap)
{
    snprintf(buf, cap, paths[k], l);
    return buf;
}

const char *ftq_bert_lora_target(int k) { return targets[k]; }

static int lora_make(ftq_bert *m, const int on[BERT_LIN_N], int r, float scale, double dropout, uint64_t seed,
                     size_t rows_cap);

int ftq_bert_add_lora(ftq_bert *m, const ftq_lora_params *p, uint64_t seed, size_t rows_cap)
{
    int rc = ftq_lora_check(p);
    if (rc != FTQ_OK)
        return rc;
    if (m->lora)
        return ftq_set_error(FTQ_EINVAL, "the model already has lora adapters");
    if (m->q_cls)
        return ftq_set_error(FTQ_EUNSUPPORTED, "lora on a BERT checkpoint with a quantized classifier is not "
                             "supported (the head is trained: dequantize the model first)");
    const char *t = p->targets;
    int all = t && strcmp(t, "all-linear") == 0;
    if (t && !all)
        for (const char *q = t; *q;) {
            const char *e = strchr(q, ',');
            size_t len = e ? (size_t)(e - q) : strlen(q);
            int ok = 0;
            for (int k = 0; k < BERT_LIN_N; k++)
                ok |= strlen(targets[k]) == len && strncmp(targets[k], q, len) == 0;
            if (!ok)
                return ftq_set_error(FTQ_EINVAL, "unknown lora target '%.*s' for a BERT model (expected query, key, "
                                     "value, dense or all-linear)", (int)len, q);
            if (!e)
                break;
            q = e + 1;
        }
    int on[BERT_LIN_N], any = 0;
    for (int k = 0; k < BERT_LIN_N; k++)
        any |= on[k] = all || (t ? ftq_list_has(t, targets[k]) : (k == BERT_LIN_Q || k == BERT_LIN_V));
    if (!any)
        return ftq_set_error(FTQ_EINVAL, "lora targets '%s' select no module", t ? t : "");
    return lora_make(m, on, p->r, (float)(p->rslora ? p->alpha / sqrt((double)p->r) : p->alpha / p->r), p->dropout,
                     seed, rows_cap);
}

/* The adapters of the linears on[k] of every block, rank r, after the current end of params:
 * A Kaiming-uniform from seed, B zero; products saved for rows_cap rows. */
static int lora_make(ftq_bert *m, const int on[BERT_LIN_N], int r, float scale, double dropout, uint64_t seed,
                     size_t rows_cap)
{
    ftq_bert_lora *lo = calloc(1, sizeof *lo);
    const int L = m->cfg.n_layers;
    if (!lo || !(lo->off = calloc((size_t)L * BERT_LIN_N * 2, sizeof *lo->off))) {
        free(lo);
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    }
    for (int k = 0; k < BERT_LIN_N; k++)
        lo->on[k] = on[k];
    lo->r = r;
    lo->scale = scale;
    lo->dropout = dropout;
    lo->drop.seed = seed;
    lo->rows_cap = rows_cap;
    /* the layout: every (layer, linear) A then B, 16-float aligned, after the current end */
    size_t off = (m->n_params + 15) & ~(size_t)15, start = off;
    int mx = m->cfg.ffn > m->cfg.hidden ? m->cfg.ffn : m->cfg.hidden;
    for (int l = 0; l < L; l++)
        for (int k = 0; k < BERT_LIN_N; k++) {
            if (!lo->on[k])
                continue;
            int in, out;
            ftq_bert_lin_dims(m, k, &in, &out);
            size_t *o = &lo->off[((size_t)l * BERT_LIN_N + k) * 2];
            o[0] = off;
            off += ((size_t)r * in + 15) & ~(size_t)15;
            o[1] = off;
            off += ((size_t)out * r + 15) & ~(size_t)15;
        }
    float *np = aligned_alloc(64, (off * sizeof(float) + 63) & ~(size_t)63);
    lo->u = malloc(sizeof(float) * (size_t)L * BERT_LIN_N * rows_cap * (size_t)r + 64);
    lo->du = malloc(sizeof(float) * rows_cap * (size_t)r + 64);
    lo->xd = malloc(sizeof(float) * rows_cap * (size_t)mx + 64);
    if (!np || !lo->u || !lo->du || !lo->xd) {
        free(np);
        free(lo->u);
        free(lo->du);
        free(lo->xd);
        free(lo->off);
        free(lo);
        return ftq_set_error(FTQ_ENOMEM, "out of memory for the lora adapters");
    }
    memcpy(np, m->params, m->n_params * sizeof(float));
    memset(np + m->n_params, 0, (off - m->n_params) * sizeof(float));
    free(m->params);
    m->params = np;
    m->n_params = off;
    ftq_bert_bind(m, m->params, &m->w, m->w.L);
    lo->start = start;
    ftq_rng rng;
    ftq_rng_seed(&rng, seed ^ 0x10a4ull);
    for (int l = 0; l < L; l++)
        for (int k = 0; k < BERT_LIN_N; k++) {
            if (!lo->on[k])
                continue;
            int in, out;
            ftq_bert_lin_dims(m, k, &in, &out);
            float *A = np + lo->off[((size_t)l * BERT_LIN_N + k) * 2], bound = 1.0f / sqrtf((float)in);
            for (size_t i = 0; i < (size_t)r * in; i++)
                A[i] = (2.0f * ftq_rng_uniform(&rng) - 1.0f) * bound;
        }
    m->lora = lo;
    return FTQ_OK;
}

/* ---- applying a PEFT adapter to a loaded encoder ------------------------------------------ */

/* "ftq_pool" of dir/config.json (ftq writes it for its classifiers), else pooler. */
static ftq_pool adapter_pool(const char *dir)
{
    ftq_pool p = FTQ_POOL_POOLER;
    char *path = ftq_path_join(dir, "config.json"), *text = NULL;
    size_t len = 0;
    if (path && ftq_is_file(path) && ftq_read_file_max(path, (size_t)1 << 20, &text, &len) == FTQ_OK) {
        cJSON *j = cJSON_ParseWithLength(text, len);
        const cJSON *v = j ? cJSON_GetObjectItemCaseSensitive(j, "ftq_pool") : NULL;
        if (cJSON_IsString(v) && strcmp(v->valuestring, "mean") == 0)
            p = FTQ_POOL_MEAN;
        else if (cJSON_IsString(v) && strcmp(v->valuestring, "cls") == 0)
            p = FTQ_POOL_CLS;
        cJSON_Delete(j);
    }
    ftq_clear_error();
    free(text);
    free(path);
    return p;
}

/* Block l and linear k of an adapter module path without "bert." ("encoder.layer.0.attention.self.query"). */
static int block_linear(const ftq_bert *m, const char *mod, int *l, int *k)
{
    char buf[128];
    for (int ll = 0; ll < m->cfg.n_layers; ll++)
        for (int kk = 0; kk < BERT_LIN_N; kk++)
            if (strcmp(ftq_bert_lora_module(ll, kk, buf, sizeof buf), mod) == 0) {
                *l = ll;
                *k = kk;
                return 0;
            }
    return -1;
}

/* A quantized base cannot take W + s B A without requantizing it: the adapter stays beside
 * the weights as the lora adapters of training do (A, B in params after the head, dropout
 * off), and every adapted product adds s (x A^T) B^T in the forward (ftq_bert_lora_forward,
 * as on the int8 / int4 kernels of LoRA training). Blocks the adapter leaves out get A = B =
 * 0, which adds exactly nothing. */
static int keep_beside(ftq_bert *m, const ftq_peft *ad, const char *dir)
{
    if (m->lora)
        return ftq_set_error(FTQ_EUNSUPPORTED, "cannot apply adapter '%s': the model already has lora adapters", dir);
    if (m->bf16)
        return ftq_set_error(FTQ_EUNSUPPORTED, "cannot apply adapter '%s' to a quantized base with bf16 weights", dir);
    int on[BERT_LIN_N] = {0}, l = 0, k = 0;
    for (size_t i = 0; i < ftq_peft_module_count(ad); i++) {
        const char *mod = ftq_peft_module_at(ad, i)->module;
        mod += strncmp(mod, "bert.", 5) == 0 ? 5 : 0;
        if (block_linear(m, mod, &l, &k) != 0)
            return ftq_set_error(FTQ_EUNSUPPORTED, "cannot apply adapter '%s' to a quantized base: module '%s' is not "
                                 "a block linear (merge the adapter into the float base, then quantize)", dir, mod);
        on[k] = 1;
    }
    int rc = lora_make(m, on, ftq_peft_rank(ad), ftq_peft_scaling(ad), 0.0, 0, 64);
    if (rc != FTQ_OK)
        return rc;
    ftq_bert_lora *lo = m->lora;
    memset(m->params + lo->start, 0, (m->n_params - lo->start) * sizeof(float));
    for (size_t i = 0; rc == FTQ_OK && i < ftq_peft_module_count(ad); i++) {
        const ftq_peft_module *pm = ftq_peft_module_at(ad, i);
        block_linear(m, pm->module + (strncmp(pm->module, "bert.", 5) == 0 ? 5 : 0), &l, &k);
        const size_t *o = &lo->off[((size_t)l * BERT_LIN_N + k) * 2];
        rc = ftq_tensor_to_f32(pm->A, m->params + o[0]);
        if (rc == FTQ_OK)
            rc = ftq_tensor_to_f32(pm->B, m->params + o[1]);
    }
    lo->grow = 1;
    return rc;
}

int ftq_bert_apply_adapter(ftq_bert *m, const char *dir)
{
    if (!m || !dir)
        return ftq_set_error(FTQ_EINVAL, "ftq_bert_apply_adapter: NULL argument");
    ftq_peft *ad = NULL;
    int rc = ftq_peft_open(dir, &ad), quantized = 0;
    size_t pl = strlen(m->cfg.prefix), nmod = rc == FTQ_OK ? ftq_peft_module_count(ad) : 0;
    const ftq_bert_tensor **found = calloc(nmod + 1, sizeof *found);
    if (rc == FTQ_OK && !found)
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
    for (size_t i = 0; rc == FTQ_OK && i < nmod; i++) {
        const ftq_peft_module *pm = ftq_peft_module_at(ad, i);
        const char *mod = strncmp(pm->module, "bert.", 5) == 0 ? pm->module + 5 : pm->module;
        const ftq_bert_tensor *t = NULL;
        for (int k = 0; k < m->n_tensors && !t; k++) {
            const char *nm = m->tensors[k].name + (strncmp(m->tensors[k].name, m->cfg.prefix, pl) == 0 ? pl : 0);
            size_t ml = strlen(mod);
            if (strncmp(nm, mod, ml) == 0 && strcmp(nm + ml, ".weight") == 0)
                t = &m->tensors[k];
        }
        if (!t) {
            rc = ftq_set_error(FTQ_EUNSUPPORTED, "cannot apply adapter '%s': module '%s' is not in the model", dir,
                               pm->module);
            break;
        }
        if (t->ndim != 2 || t->shape[0] != pm->out || t->shape[1] != pm->in) {
            rc = ftq_set_error(FTQ_EFORMAT, "cannot apply adapter '%s': module '%s' is [%lld, %lld], the model's "
                               "weight [%lld, %lld]", dir, pm->module, (long long)pm->out, (long long)pm->in,
                               (long long)t->shape[0], (long long)t->shape[1]);
            break;
        }
        quantized |= t->q.data != NULL;
        found[i] = t;
    }
    /* a classifier saved with the adapter (modules_to_save); first, as a new head drops
     * whatever params follow the old one */
    const ftq_tensor *cw = NULL, *cb = NULL;
    for (size_t e = 0; rc == FTQ_OK && e < ftq_peft_extra_count(ad); e++) {
        const char *nm;
        const ftq_tensor *t = ftq_peft_extra_at(ad, e, &nm);
        if (strcmp(nm, "classifier.weight") == 0)
            cw = t;
        else if (strcmp(nm, "classifier.bias") == 0)
            cb = t;
        else
            rc = ftq_set_error(FTQ_EUNSUPPORTED, "cannot apply adapter '%s': saved module '%s' is not supported", dir,
                               nm);
    }
    if (rc == FTQ_OK && (cw || cb)) {
        if (!cw || !cb || cw->ndim != 2 || cw->shape[1] != m->cfg.hidden || cb->shape[0] != cw->shape[0])
            rc = ftq_set_error(FTQ_EFORMAT, "cannot apply adapter '%s': classifier.weight / .bias missing or "
                               "misshapen", dir);
        else if (m->lora)
            rc = ftq_set_error(FTQ_EUNSUPPORTED, "cannot apply adapter '%s': the model already has lora adapters",
                               dir);
        else if ((rc = ftq_bert_add_head(m, (int)cw->shape[0], adapter_pool(dir), 0)) == FTQ_OK &&
                 (rc = ftq_tensor_to_f32(cw, m->w.cls_w)) == FTQ_OK)
            rc = ftq_tensor_to_f32(cb, m->w.cls_b);
    }
    if (rc == FTQ_OK && quantized)
        rc = keep_beside(m, ad, dir);
    for (size_t i = 0; rc == FTQ_OK && !quantized && i < nmod; i++) {
        const ftq_bert_tensor *t = found[i];
        float *d = malloc(sizeof(float) * t->numel);
        if (!d) {
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
            break;
        }
        if ((rc = ftq_peft_delta(ad, i, d)) == FTQ_OK)
            for (size_t e = 0; e < t->numel; e++)
                m->params[t->off + e] += d[e];
        free(d);
    }
    free(found);
    ftq_peft_close(ad);
    return rc;
}
