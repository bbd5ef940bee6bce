/* bert.c - BERT encoders: config, the tensor-name table (with or without "bert."), loading
 * into one contiguous parameter buffer, the batched forward (embeddings + LayerNorm, post-LN
 * blocks with bidirectional masked attention and erf GELU), pooling and the classifier.
 * Invariant: the forward writes only the workspace; with train = 1 it keeps every
 * activation the backward pass (finetune/bert_train.c) reads. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json_util.h"
#include "kernels/attention_enc.h"
#include "kernels/kernels.h"
#include "kernels/lora.h"
#include "kernels/quant.h"
#include "model/bert_internal.h"
#include "model/qcheckpoint.h"

/* ---- config ---------------------------------------------------------------------------- */

static int read_json(const char *path, cJSON **out)
{
    char *data = NULL;
    size_t n = 0;
    *out = NULL;
    int rc = ftq_read_file_max(path, FTQ_MAX_CONFIG_BYTES, &data, &n);
    if (rc)
        return rc;
    char why[128];
    *out = ftq_json_parse_strict(data, n, why, sizeof why, NULL);
    free(data);
    if (!*out || !cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return ftq_set_error(FTQ_EFORMAT, "cannot parse '%s': %s", path, why);
    }
    return FTQ_OK;
}

int ftq_bert_is_encoder_dir(const char *dir)
{
    char *p = ftq_path_join(dir, "config.json");
    cJSON *j = NULL;
    int yes = 0;
    if (p && ftq_is_file(p) && read_json(p, &j) == FTQ_OK) {
        const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
        yes = cJSON_IsString(mt) && strcmp(mt->valuestring, "bert") == 0;
    }
    cJSON_Delete(j);
    free(p);
    return yes;
}

static int cfg_int(const cJSON *j, const char *path, const char *key, int64_t dflt, int64_t lo, int64_t hi, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    int64_t x = dflt;
    if (v && !cJSON_IsNull(v) && !ftq_json_int(v, lo, hi, &x)) {
        char got[64];
        return ftq_set_error(FTQ_EFORMAT, "cannot load '%s': key \"%s\" must be an integer in [%lld, %lld], got %s",
                             path, key, (long long)lo, (long long)hi, ftq_json_describe(v, got, sizeof got));
    }
    if (x < lo)
        return ftq_set_error(FTQ_EFORMAT, "cannot load '%s': missing required key \"%s\"", path, key);
    *out = (int)x;
    return FTQ_OK;
}

static int parse_config(const char *path, ftq_bert_config *c)
{
    cJSON *j = NULL;
    int rc = read_json(path, &j);
    if (rc)
        return rc;
    memset(c, 0, sizeof *c);
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    if (!cJSON_IsString(mt) || strcmp(mt->valuestring, "bert") != 0)
        rc = ftq_set_error(FTQ_EUNSUPPORTED, "cannot load '%s': model_type is not \"bert\"", path);
    if (!rc)
        rc = cfg_int(j, path, "hidden_size", -1, 1, 1 << 16, &c->hidden);
    if (!rc)
        rc = cfg_int(j, path, "num_hidden_layers", -1, 1, 1024, &c->n_layers);
    if (!rc)
        rc = cfg_int(j, path, "num_attention_heads", -1, 1, 1024, &c->n_heads);
    if (!rc)
        rc = cfg_int(j, path, "intermediate_size", -1, 1, 1 << 18, &c->ffn);
    if (!rc)
        rc = cfg_int(j, path, "vocab_size", -1, 1, 1 << 24, &c->vocab_size);
    if (!rc)
        rc = cfg_int(j, path, "max_position_embeddings", 512, 1, 1 << 20, &c->max_position);
    if (!rc)
        rc = cfg_int(j, path, "type_vocab_size", 2, 1, 1 << 16, &c->type_vocab);
    if (!rc && c->hidden % c->n_heads)
        rc = ftq_set_error(FTQ_EFORMAT, "cannot load '%s': hidden_size %d is not a multiple of num_attention_heads %d",
                           path, c->hidden, c->n_heads);
    c->head_dim = c->n_heads ? c->hidden / c->n_heads : 0;
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(j, "layer_norm_eps");
    c->eps = 1e-12f;
    if (!rc && eps) {
        if (!cJSON_IsNumber(eps) || !(eps->valuedouble > 0) || eps->valuedouble > 1)
            rc = ftq_set_error(FTQ_EFORMAT, "cannot load '%s': layer_norm_eps must be a number in (0, 1]", path);
        else
            c->eps = (float)eps->valuedouble;
    }
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(j, "hidden_act");
    if (!rc && act && (!cJSON_IsString(act) || strcmp(act->valuestring, "gelu") != 0))
        rc = ftq_set_error(FTQ_EUNSUPPORTED, "cannot load '%s': hidden_act must be \"gelu\" (exact erf GELU)", path);
    const cJSON *pet = cJSON_GetObjectItemCaseSensitive(j, "position_embedding_type");
    if (!rc && pet && !cJSON_IsNull(pet) && (!cJSON_IsString(pet) || strcmp(pet->valuestring, "absolute") != 0))
        rc = ftq_set_error(FTQ_EUNSUPPORTED, "cannot load '%s': position_embedding_type must be \"absolute\"", path);
    const cJSON *arch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "architectures"), 0);
    int is_cls = cJSON_IsString(arch) && strstr(arch->valuestring, "ForSequenceClassification");
    if (!rc && is_cls) {
        const cJSON *id2 = cJSON_GetObjectItemCaseSensitive(j, "id2label");
        int n = cJSON_IsObject(id2) ? cJSON_GetArraySize(id2) : 2;
        rc = cfg_int(j, path, "num_labels", n, 1, 1 << 16, &c->num_labels);
    }
    const cJSON *pool = cJSON_GetObjectItemCaseSensitive(j, "ftq_pool");
    c->pool = FTQ_POOL_POOLER;
    if (!rc && pool) {
        const char *s = cJSON_IsString(pool) ? pool->valuestring : "";
        if (strcmp(s, "pooler") == 0)
            c->pool = FTQ_POOL_POOLER;
        else if (strcmp(s, "mean") == 0)
            c->pool = FTQ_POOL_MEAN;
        else if (strcmp(s, "cls") == 0)
            c->pool = FTQ_POOL_CLS;
        else
            rc = ftq_set_error(FTQ_EFORMAT, "cannot load '%s': ftq_pool must be \"pooler\", \"mean\" or \"cls\"", path);
    }
    cJSON_Delete(j);
    return rc;
}

/* ---- the tensor table ------------------------------------------------------------------- */

/* Dimensions: V vocab, P positions, Y token types, C hidden, F ffn, N labels, 0 none. The
 * role says what the quantizer and the pruner may do with a tensor (quant/quantize_arch_bert.c
 * and quant/prune_arch_bert.c read this table); input names the activation a block's linear
 * weight multiplies (Wanda's calibration statistic). */
typedef struct {
    const char *name;
    size_t field;
    char d0, d1;
    ftq_bert_role role;
    ftq_bert_input input;
} spec;

#define G(f) offsetof(ftq_bert_views, f)
#define LY(f) offsetof(ftq_bert_layer, f)
#define O FTQ_BERT_ROLE_OTHER, FTQ_BERT_IN_NONE
#define LIN(in) FTQ_BERT_ROLE_LINEAR, FTQ_BERT_IN_##in
static const spec EMB[] = {{"embeddings.word_embeddings.weight", G(wte), 'V', 'C', FTQ_BERT_ROLE_EMBED, FTQ_BERT_IN_NONE},
                           {"embeddings.position_embeddings.weight", G(wpe), 'P', 'C', FTQ_BERT_ROLE_EMBED, FTQ_BERT_IN_NONE},
                           {"embeddings.token_type_embeddings.weight", G(wtt), 'Y', 'C', FTQ_BERT_ROLE_EMBED, FTQ_BERT_IN_NONE},
                           {"embeddings.LayerNorm.weight", G(eln_w), 'C', 0, O},
                           {"embeddings.LayerNorm.bias", G(eln_b), 'C', 0, O}};
static const spec LAYER[] = {{"attention.self.query.weight", LY(wq), 'C', 'C', LIN(X)},
                             {"attention.self.query.bias", LY(bq), 'C', 0, O},
                             {"attention.self.key.weight", LY(wk), 'C', 'C', LIN(X)},
                             {"attention.self.key.bias", LY(bk), 'C', 0, O},
                             {"attention.self.value.weight", LY(wv), 'C', 'C', LIN(X)},
                             {"attention.self.value.bias", LY(bv), 'C', 0, O},
                             {"attention.output.dense.weight", LY(wo), 'C', 'C', LIN(ATT)},
                             {"attention.output.dense.bias", LY(bo), 'C', 0, O},
                             {"attention.output.LayerNorm.weight", LY(ln1_w), 'C', 0, O},
                             {"attention.output.LayerNorm.bias", LY(ln1_b), 'C', 0, O},
                             {"intermediate.dense.weight", LY(w1), 'F', 'C', LIN(H1)},
                             {"intermediate.dense.bias", LY(b1), 'F', 0, O},
                             {"output.dense.weight", LY(w2), 'C', 'F', LIN(G)},
                             {"output.dense.bias", LY(b2), 'C', 0, O},
                             {"output.LayerNorm.weight", LY(ln2_w), 'C', 0, O},
                             {"output.LayerNorm.bias", LY(ln2_b), 'C', 0, O}};
static const spec POOLER[] = {{"pooler.dense.weight", G(pool_w), 'C', 'C', FTQ_BERT_ROLE_HEAD, FTQ_BERT_IN_NONE},
                              {"pooler.dense.bias", G(pool_b), 'C', 0, O}};
static const spec HEAD[] = {{"classifier.weight", G(cls_w), 'N', 'C', FTQ_BERT_ROLE_HEAD, FTQ_BERT_IN_NONE},
                            {"classifier.bias", G(cls_b), 'N', 0, O}};
#undef G
#undef LY
#undef O
#undef LIN

/* ftq_bert_qlayer mirrors ftq_bert_layer pointer for pointer, so a field offset of one is
 * the same field of the other. */
_Static_assert(sizeof(ftq_bert_qlayer) == sizeof(ftq_bert_layer), "qlayer mirrors layer");
_Static_assert(offsetof(ftq_bert_qlayer, w2) == offsetof(ftq_bert_layer, w2), "qlayer mirrors layer");
_Static_assert(offsetof(ftq_bert_qlayer, ln2_b) == offsetof(ftq_bert_layer, ln2_b), "qlayer mirrors layer");

static int64_t dim_of(const ftq_bert_config *c, char d)
{
    switch (d) {
    case 'V': return c->vocab_size;
    case 'P': return c->max_position;
    case 'Y': return c->type_vocab;
    case 'C': return c->hidden;
    case 'F': return c->ffn;
    case 'N': return c->num_labels;
    default: return 0;
    }
}

static void add_tensor(ftq_bert *m, const spec *s, const char *prefix, int layer)
{
    ftq_bert_tensor *t = &m->tensors[m->n_tensors++];
    if (layer >= 0)
        snprintf(t->name, sizeof t->name, "%sencoder.layer.%d.%s", prefix, layer, s->name);
    else
        snprintf(t->name, sizeof t->name, "%s%s", prefix, s->name);
    t->ndim = s->d1 ? 2 : 1;
    t->shape[0] = dim_of(&m->cfg, s->d0);
    t->shape[1] = s->d1 ? dim_of(&m->cfg, s->d1) : 0;
    t->numel = (size_t)t->shape[0] * (size_t)(s->d1 ? t->shape[1] : 1);
    t->layer = layer;
    t->field = s->field;
    t->role = s->role;
    t->input = s->input;
}

void ftq_bert_bind(const ftq_bert *m, float *base, ftq_bert_views *v, ftq_bert_layer *L)
{
    memset(v, 0, sizeof *v);
    memset(L, 0, sizeof *L * (size_t)m->cfg.n_layers);
    v->L = L;
    for (int i = 0; i < m->n_tensors; i++) {
        const ftq_bert_tensor *t = &m->tensors[i];
        if (t->q.data) /* quantized: no slice of the buffer */
            continue;
        char *owner = t->layer >= 0 ? (char *)&L[t->layer] : (char *)v;
        *(float **)(owner + t->field) = base + t->off;
    }
}

void ftq_bert_free(ftq_bert *m)
{
    if (!m)
        return;
    for (int i = 0; m->tensors && i < m->n_tensors; i++)
        if (m->tensors[i].q.data) {
            ftq_qmat_free(m->tensors[i].q.data);
            free(m->tensors[i].q.data);
        }
    if (m->lora) {
        free(m->lora->off);
        free(m->lora->u);
        free(m->lora->du);
        free(m->lora->xd);
        free(m->lora);
    }
    if (m->bf16) {
        ftq_bf16_set_free(m->bf16);
        free(m->bf16);
    }
    free(m->params);
    free(m->tensors);
    free(m->w.L);
    free(m->qL);
    free(m);
}

int ftq_bert_quantized_count(const ftq_bert *m) { return m ? m->n_quantized : 0; }

/* A quantized entry into t->q: the file's codes and exact f16 scales packed for the kernels. */
static int bind_quantized(const char *dir, ftq_bert_tensor *t, const ftq_qentry *e)
{
    ftq_qmat *qm = calloc(1, sizeof *qm);
    if (!qm)
        return ftq_set_error(FTQ_ENOMEM, "model '%s': out of memory for tensor '%s'", dir, t->name);
    ftq_qtensor q;
    int rc = ftq_qentry_read(e, 0, e->rows, &q);
    if (rc == FTQ_OK)
        rc = ftq_qmat_pack(qm, &q, 0);
    ftq_qtensor_free(&q);
    if (rc != FTQ_OK) {
        free(qm);
        return ftq_wrap_error(rc, "model '%s': tensor '%s'", dir, t->name);
    }
    t->q.name = t->name;
    t->q.dtype = FTQ_DTYPE_QMAT;
    t->q.ndim = 2;
    t->q.shape[0] = e->rows;
    t->q.shape[1] = e->cols;
    t->q.nbytes = ftq_qmat_bytes(qm);
    t->q.data = qm;
    return FTQ_OK;
}

/* The quantized views: each layer's qlayer and the heads point at the tensors' QMATs. */
static int bind_qviews(ftq_bert *m)
{
    m->qL = calloc((size_t)m->cfg.n_layers, sizeof *m->qL);
    if (!m->qL)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    for (int i = 0; i < m->n_tensors; i++) {
        const ftq_bert_tensor *t = &m->tensors[i];
        if (!t->q.data)
            continue;
        if (t->layer >= 0)
            *(const ftq_tensor **)((char *)&m->qL[t->layer] + t->field) = &t->q;
        else if (t->field == offsetof(ftq_bert_views, pool_w))
            m->q_pool = &t->q;
        else if (t->field == offsetof(ftq_bert_views, cls_w))
            m->q_cls = &t->q;
    }
    return FTQ_OK;
}

static int is_known_buffer(const char *name, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(name, prefix, n) == 0 && strcmp(name + n, "embeddings.position_ids") == 0;
}

/* NAME stored as an ordinary tensor or as a quantized entry. */
static int present(const ftq_checkpoint *ck, const ftq_qindex *ix, const char *name)
{
    return ftq_checkpoint_find(ck, name) || (ix && ftq_qindex_find(ix, name));
}

int ftq_bert_load(const char *dir, ftq_bert **out)
{
    if (!dir || !out)
        return ftq_set_error(FTQ_EINVAL, "ftq_bert_load: NULL argument");
    *out = NULL;
    ftq_bert *m = calloc(1, sizeof *m);
    char *cpath = ftq_path_join(dir, "config.json");
    ftq_checkpoint *ck = NULL;
    ftq_qindex *ix = NULL;
    int rc = m && cpath ? FTQ_OK : ftq_set_error(FTQ_ENOMEM, "out of memory");
    if (!rc)
        rc = parse_config(cpath, &m->cfg);
    free(cpath);
    if (!rc)
        rc = ftq_checkpoint_open(dir, &ck);
    if (!rc)
        rc = ftq_qindex_open(ck, dir, &ix);
    ftq_bert_config *c = m ? &m->cfg : NULL;
    if (!rc) {
        const char *pre = ftq_checkpoint_find(ck, "bert.embeddings.word_embeddings.weight") ? "bert." : "";
        snprintf(c->prefix, sizeof c->prefix, "%s", pre);
        char name[160];
        snprintf(name, sizeof name, "%spooler.dense.weight", pre);
        c->has_pooler = present(ck, ix, name);
        if (c->num_labels && !present(ck, ix, "classifier.weight"))
            rc = ftq_set_error(FTQ_ENOTFOUND, "model '%s': missing tensor 'classifier.weight' (a %d-label classifier)",
                               dir, c->num_labels);
    }
    /* config numbers size nothing before the file's tensors back them: the tables below are
     * bounded by the tensors the file holds (every layer has some), the parameter buffer is
     * sized only after every expected tensor was found with its shape */
    if (!rc && (size_t)c->n_layers > ftq_checkpoint_count(ck))
        rc = ftq_set_error(FTQ_EFORMAT, "model '%s': config.json says %d layers but the checkpoint holds only %zu "
                           "tensors", dir, c->n_layers, ftq_checkpoint_count(ck));
    if (!rc) {
        size_t cap = 5 + 16 * (size_t)c->n_layers + 4;
        m->tensors = calloc(cap, sizeof *m->tensors);
        m->w.L = calloc((size_t)c->n_layers, sizeof *m->w.L);
        if (!m->tensors || !m->w.L)
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
    }
    if (!rc) {
        for (size_t i = 0; i < sizeof EMB / sizeof EMB[0]; i++)
            add_tensor(m, &EMB[i], c->prefix, -1);
        for (int l = 0; l < c->n_layers; l++)
            for (size_t i = 0; i < sizeof LAYER / sizeof LAYER[0]; i++)
                add_tensor(m, &LAYER[i], c->prefix, l);
        for (size_t i = 0; c->has_pooler && i < 2; i++)
            add_tensor(m, &POOLER[i], c->prefix, -1);
        for (size_t i = 0; c->num_labels && i < 2; i++)
            add_tensor(m, &HEAD[i], "", -1);
    }
    /* every expected tensor present with its shape before the parameter buffer is sized */
    const ftq_qentry **qe = rc ? NULL : calloc((size_t)m->n_tensors + 1, sizeof *qe);
    if (!rc && !qe)
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < m->n_tensors; i++) {
        const ftq_bert_tensor *t = &m->tensors[i];
        const ftq_tensor *s = ftq_checkpoint_find(ck, t->name);
        if (!s && ix && (qe[i] = ftq_qindex_find(ix, t->name))) {
            if (t->role != FTQ_BERT_ROLE_LINEAR && t->role != FTQ_BERT_ROLE_HEAD) {
                rc = ftq_set_error(FTQ_EUNSUPPORTED, "model '%s': tensor '%s' is quantized, but only the linear "
                                   "weights of a bert model can be", dir, t->name);
                break;
            }
            if (qe[i]->transposed) {
                rc = ftq_set_error(FTQ_EFORMAT, "model '%s': quantized tensor '%s' is marked transposed, but a "
                                   "bert model stores it [out, in]", dir, t->name);
                break;
            }
            s = &qe[i]->view;
        }
        char ws[64], gs[64];
        ftq_shape_str(t->shape, t->ndim, ws, sizeof ws);
        if (!s) {
            rc = ftq_set_error(FTQ_ENOTFOUND, "model '%s': missing tensor '%s' (expected shape %s)", dir, t->name, ws);
            break;
        }
        int ok = s->ndim == t->ndim && s->shape[0] == t->shape[0] && (t->ndim == 1 || s->shape[1] == t->shape[1]);
        if (!ok)
            rc = ftq_set_error(FTQ_EFORMAT, "model '%s': tensor '%s' has shape %s, expected %s", dir, t->name,
                               ftq_shape_str(s->shape, s->ndim, gs, sizeof gs), ws);
    }
    size_t off = 0;
    for (int i = 0; !rc && i < m->n_tensors; i++) { /* 64-byte aligned slices of the f32 tensors */
        m->tensors[i].off = off;
        if (!qe[i])
            off += (m->tensors[i].numel + 15) & ~(size_t)15;
    }
    if (!rc)
        m->n_params = off;
    if (!rc && (m->n_params > ((size_t)1 << 33) ||
                !(m->params = aligned_alloc(64, (m->n_params * sizeof(float) + 63) & ~(size_t)63))))
        rc = ftq_set_error(FTQ_ENOMEM, "model '%s': out of memory for %zu parameters", dir, m->n_params);
    for (int i = 0; !rc && i < m->n_tensors; i++) { /* present and shaped: checked above */
        ftq_bert_tensor *t = &m->tensors[i];
        if (qe[i]) {
            rc = bind_quantized(dir, t, qe[i]);
            m->n_quantized += rc == FTQ_OK;
        } else if ((rc = ftq_tensor_to_f32(ftq_checkpoint_find(ck, t->name), m->params + t->off))) {
            rc = ftq_wrap_error(rc, "model '%s': tensor '%s'", dir, t->name);
        }
    }
    free(qe);
    if (!rc && m->n_quantized)
        rc = bind_qviews(m);
    for (size_t i = 0; !rc && i < ftq_checkpoint_count(ck); i++) {
        const char *name = ftq_checkpoint_tensor(ck, i)->name;
        int known = is_known_buffer(name, c->prefix) || (ix && ftq_qindex_is_part(ix, name));
        for (int k = 0; !known && k < m->n_tensors; k++)
            known = strcmp(m->tensors[k].name, name) == 0;
        if (!known)
            rc = ftq_set_error(FTQ_EFORMAT, "model '%s': unexpected tensor '%s' (not part of a bert model with %d layers)",
                               dir, name, c->n_layers);
    }
    ftq_qindex_free(ix);
    ftq_checkpoint_close(ck);
    if (rc) {
        ftq_bert_free(m);
        return rc;
    }
    ftq_bert_bind(m, m->params, &m->w, m->w.L);
    *out = m;
    return FTQ_OK;
}

const ftq_bert_config *ftq_bert_get_config(const ftq_bert *m) { return &m->cfg; }

int64_t ftq_bert_param_count(const ftq_bert *m)
{
    int64_t n = 0;
    for (int i = 0; i < m->n_tensors; i++)
        n += (int64_t)m->tensors[i].numel;
    return n;
}

/* ---- workspace -------------------------------------------------------------------------- */

void ftq_bert_ws_free(ftq_bert_ws *ws)
{
    if (!ws)
        return;
    free(ws->mem);
    free(ws->bwd);
    free(ws->qscratch);
    free(ws->wdeq);
    free(ws->lens);
    free(ws->ids);
    free(ws->types);
    free(ws);
}

int ftq_bert_ws_new(const ftq_bert *m, int max_rows, int max_T, int train, ftq_bert_ws **out)
{
    const ftq_bert_config *c = &m->cfg;
    *out = NULL;
    if (max_rows < 1 || max_T < 1 || max_T > c->max_position || max_rows > (1 << 20))
        return ftq_set_error(FTQ_EINVAL, "bert workspace: %d rows of %d tokens (at most %d positions)", max_rows, max_T,
                             c->max_position);
    if (train && m->n_quantized && !m->lora)
        return ftq_set_error(FTQ_EUNSUPPORTED, "bert workspace: training needs f32 weights, but %d tensors of the "
                             "model are quantized (fine-tune before quantizing, dequantize first, or train lora "
                             "adapters on it)", m->n_quantized);
    if (train && m->q_cls)
        return ftq_set_error(FTQ_EUNSUPPORTED, "bert workspace: the classifier head is quantized, but training "
                             "updates it (dequantize the model first)");
    ftq_bert_ws *ws = calloc(1, sizeof *ws);
    if (!ws)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    size_t N = (size_t)max_rows * max_T, C = (size_t)c->hidden, F = (size_t)c->ffn, L = (size_t)c->n_layers;
    size_t nl = train ? L : 1, H = (size_t)c->n_heads;
    ws->max_rows = max_rows;
    ws->max_T = max_T;
    ws->train = train;
    ws->nc = N * C;
    ws->nf = N * F;
    size_t sizes[] = {
        train ? N * C : 0, N, N,                /* emb, emb_mean, emb_rstd */
        (train ? L + 1 : 2) * N * C,             /* x */
        nl * N * C, nl * N * C, nl * N * C, nl * N * C, nl * N * C, nl * N * C, nl * N * C, /* q k v att r1 h1 r2 */
        nl * N * F, nl * N * F,                  /* f g */
        nl * N, nl * N, nl * N, nl * N,          /* ln stats */
        train ? L * (size_t)max_rows * H * max_T * max_T : 0, /* probs (training only) */
        (size_t)max_rows * C, (size_t)max_rows * C, (size_t)max_rows * C, (size_t)max_rows * C,
        (size_t)max_rows * (size_t)(c->num_labels ? c->num_labels : 1)};
    float **ptrs[] = {&ws->emb, &ws->emb_mean, &ws->emb_rstd, &ws->x, &ws->q, &ws->k, &ws->v, &ws->att,
                      &ws->r1, &ws->h1, &ws->r2, &ws->f, &ws->g, &ws->ln1_mean, &ws->ln1_rstd, &ws->ln2_mean,
                      &ws->ln2_rstd, &ws->probs, &ws->cls_in, &ws->pool_pre, &ws->pooled, &ws->feat, &ws->logits};
    size_t n = sizeof sizes / sizeof sizes[0], total = 0;
    for (size_t i = 0; i < n; i++)
        total += (sizes[i] + 15) & ~(size_t)15;
    if (total > ((size_t)1 << 34)) {
        free(ws);
        return ftq_set_error(FTQ_ENOMEM, "bert workspace of %zu floats is too large", total);
    }
    ws->mem = aligned_alloc(64, total * sizeof(float));
    ws->lens = calloc((size_t)max_rows, sizeof *ws->lens);
    ws->ids = calloc(N, sizeof *ws->ids);
    ws->types = calloc(N, sizeof *ws->types);
    size_t qs = 0, qmax = 0;
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].q.data) {
            size_t b = ftq_linear_scratch_bytes(&m->tensors[i].q, (int)N);
            size_t ne = (size_t)ftq_tensor_numel(&m->tensors[i].q);
            qs = b > qs ? b : qs;
            qmax = ne > qmax ? ne : qmax;
        }
    if (qs)
        ws->qscratch = malloc(qs);
    if (train && qmax)
        ws->wdeq = malloc(sizeof(float) * qmax);
    if (!ws->mem || !ws->lens || !ws->ids || !ws->types || (qs && !ws->qscratch) || (train && qmax && !ws->wdeq)) {
        ftq_bert_ws_free(ws);
        return ftq_set_error(FTQ_ENOMEM, "out of memory for a bert workspace of %zu floats", total);
    }
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        *ptrs[i] = sizes[i] ? ws->mem + off : NULL;
        off += (sizes[i] + 15) & ~(size_t)15;
    }
    *out = ws;
    return FTQ_OK;
}

/* ---- forward ---------------------------------------------------------------------------- */

/* out = in W^T + b on the quantized weight q (int8 / int4 kernels) when there is one, else
 * on the f32 view w (on its bf16 copy when the model trains in bf16 and w is registered). */
static void lin(const ftq_bert *m, float *out, const float *in, const ftq_tensor *q, const float *w, const float *b,
                int N, int in_dim, int out_dim, void *scratch)
{
    if (q)
        ftq_linear_forward_ex(out, in, q, b, N, in_dim, out_dim, scratch);
    else
        ftq_bf16_linear_forward(m->bf16, out, in, w, b, N, in_dim, out_dim);
}

int ftq_bert_forward(const ftq_bert *m, ftq_bert_ws *ws, const int32_t *ids, const int32_t *type_ids,
                     const int *lens, int B, int T)
{
    return ftq_bert_forward_layers(m, ws, ids, type_ids, lens, B, T, m->cfg.n_layers);
}

int ftq_bert_forward_layers(const ftq_bert *m, ftq_bert_ws *ws, const int32_t *ids, const int32_t *type_ids,
                            const int *lens, int B, int T, int n_layers)
{
    const ftq_bert_config *c = &m->cfg;
    const ftq_bert_views *w = &m->w;
    if (!ids || !lens || B < 1 || T < 1 || B > ws->max_rows || T > ws->max_T)
        return ftq_set_error(FTQ_EINVAL, "bert forward: %d x %d tokens do not fit the workspace (%d x %d)", B, T,
                             ws->max_rows, ws->max_T);
    int C = c->hidden, F = c->ffn, H = c->n_heads, N = B * T;
    for (int b = 0; b < B; b++)
        if (lens[b] < 1 || lens[b] > T)
            return ftq_set_error(FTQ_EINVAL, "bert forward: row %d has length %d (expected 1..%d)", b, lens[b], T);
    for (int i = 0; i < N; i++) {
        int32_t ty = type_ids ? type_ids[i] : 0;
        if (ids[i] < 0 || ids[i] >= c->vocab_size || ty < 0 || ty >= c->type_vocab)
            return ftq_set_error(FTQ_EINVAL, "bert forward: token %d has id %ld / type %ld (vocabulary %d, %d types)",
                                 i, (long)ids[i], (long)ty, c->vocab_size, c->type_vocab);
        ws->ids[i] = ids[i];
        ws->types[i] = ty;
    }
    memcpy(ws->lens, lens, sizeof *lens * (size_t)B);
    ws->B = B;
    ws->T = T;
    if (m->lora) { /* a fresh dropout mask per forward; its backward replays it */
        m->lora->drop.p = m->lora->training ? (float)m->lora->dropout : 0.0f;
        if (m->lora->training)
            m->lora->drop.counter++;
        int rc = m->lora->grow ? ftq_bert_lora_reserve(m, (size_t)B * T) : FTQ_OK;
        if (rc != FTQ_OK)
            return rc;
        if ((size_t)B * T > m->lora->rows_cap)
            return ftq_set_error(FTQ_EINVAL, "bert forward: %d x %d tokens exceed the lora buffers (%zu rows)", B, T,
                                 m->lora->rows_cap);
    }

    /* f32: matmuls on OpenBLAS's threads, the rest on this one; quantized and bf16: everything
     * on OpenMP's (the int8 / int4 and bf16 kernels never use OpenBLAS). bf16: the copies of
     * weights written since the last forward (an optimizer step) are converted here, once. */
    ftq_bf16_set_refresh(m->bf16);
    int solo = m->n_quantized || m->bf16 ? 0 : ftq_sgemm_stage_begin(N);
    if (n_layers > c->n_layers || n_layers < 0)
        n_layers = c->n_layers;
    float *emb = ws->emb ? ws->emb : ftq_bert_x(ws, 1); /* inference: slot 1 is free until layer 0 writes it */
    for (int i = 0; i < N; i++) {
        const float *a = w->wte + (size_t)ws->ids[i] * C, *p = w->wpe + (size_t)(i % T) * C,
                    *y = w->wtt + (size_t)ws->types[i] * C;
        float *e = emb + (size_t)i * C;
        for (int d = 0; d < C; d++)
            e[d] = a[d] + y[d] + p[d];
    }
    ftq_layernorm_forward(ftq_bert_x(ws, 0), ws->emb_mean, ws->emb_rstd, emb, w->eln_w, w->eln_b, c->eps, N, C);

    static const ftq_bert_qlayer f32 = {0};
    for (int l = 0; l < n_layers; l++) {
        const ftq_bert_layer *L = &w->L[l];
        const ftq_bert_qlayer *Q = m->qL ? &m->qL[l] : &f32;
        void *qs = ws->qscratch;
        size_t s = ftq_bert_slot(ws, l);
        float *x = ftq_bert_x(ws, l), *y = ftq_bert_x(ws, l + 1);
        float *q = ws->q + s * ws->nc, *k = ws->k + s * ws->nc, *v = ws->v + s * ws->nc, *att = ws->att + s * ws->nc;
        float *r1 = ws->r1 + s * ws->nc, *h1 = ws->h1 + s * ws->nc, *r2 = ws->r2 + s * ws->nc;
        float *f = ws->f + s * ws->nf, *g = ws->g + s * ws->nf;
        size_t pr = (size_t)ws->max_rows * H * ws->max_T * ws->max_T;
        lin(m, q, x, Q->wq, L->wq, L->bq, N, C, C, qs);
        lin(m, k, x, Q->wk, L->wk, L->bk, N, C, C, qs);
        lin(m, v, x, Q->wv, L->wv, L->bv, N, C, C, qs);
        if (m->lora) { /* adapters (mode lora): added to each product before it is used */
            ftq_bert_lora_forward(m, l, BERT_LIN_Q, q, C, x, C, N);
            ftq_bert_lora_forward(m, l, BERT_LIN_K, k, C, x, C, N);
            ftq_bert_lora_forward(m, l, BERT_LIN_V, v, C, x, C, N);
        }
        /* probs are laid out [B, H, T, T] for the current T */
        ftq_attention_enc_forward(att, ws->probs ? ws->probs + s * pr : NULL, q, k, v, C, lens, B, T, H, c->head_dim);
        lin(m, r1, att, Q->wo, L->wo, L->bo, N, C, C, qs);
        if (m->lora)
            ftq_bert_lora_forward(m, l, BERT_LIN_O, r1, C, att, C, N);
        ftq_add_inplace(r1, x, (size_t)N * C);
        ftq_layernorm_forward(h1, ws->ln1_mean + s * ws->nc / C, ws->ln1_rstd + s * ws->nc / C, r1, L->ln1_w,
                              L->ln1_b, c->eps, N, C);
        lin(m, f, h1, Q->w1, L->w1, L->b1, N, C, F, qs);
        if (m->lora)
            ftq_bert_lora_forward(m, l, BERT_LIN_FC1, f, F, h1, C, N);
        ftq_gelu_erf_forward(g, f, (size_t)N * F);
        lin(m, r2, g, Q->w2, L->w2, L->b2, N, F, C, qs);
        if (m->lora)
            ftq_bert_lora_forward(m, l, BERT_LIN_FC2, r2, C, g, F, N);
        ftq_add_inplace(r2, h1, (size_t)N * C);
        ftq_layernorm_forward(y, ws->ln2_mean + s * ws->nc / C, ws->ln2_rstd + s * ws->nc / C, r2, L->ln2_w,
                              L->ln2_b, c->eps, N, C);
    }
    ftq_sgemm_stage_end(solo);
    return FTQ_OK;
}

/* ---- pooling and the classifier --------------------------------------------------------- */

static const float *last_hidden(const ftq_bert *m, const ftq_bert_ws *ws) { return ftq_bert_x(ws, m->cfg.n_layers); }

const float *ftq_bert_hidden(const ftq_bert *m, const ftq_bert_ws *ws) { return last_hidden(m, ws); }

void ftq_bert_pool_rows(const ftq_bert *m, ftq_bert_ws *ws, ftq_pool pool, float *out)
{
    const ftq_bert_config *c = &m->cfg;
    int C = c->hidden, T = ws->T;
    const float *hs = last_hidden(m, ws);
    for (int b = 0; b < ws->B; b++) {
        float *o = out + (size_t)b * C;
        const float *h0 = hs + (size_t)b * T * C;
        if (pool == FTQ_POOL_MEAN) {
            for (int d = 0; d < C; d++) {
                double s = 0;
                for (int t = 0; t < ws->lens[b]; t++)
                    s += h0[(size_t)t * C + d];
                o[d] = (float)(s / ws->lens[b]);
            }
        } else if (pool == FTQ_POOL_MAX) {
            for (int d = 0; d < C; d++) {
                float mx = h0[d];
                for (int t = 1; t < ws->lens[b]; t++)
                    mx = h0[(size_t)t * C + d] > mx ? h0[(size_t)t * C + d] : mx;
                o[d] = mx;
            }
        } else if (pool == FTQ_POOL_CLS) {
            memcpy(o, h0, sizeof(float) * (size_t)C);
        } else { /* pooler: tanh(W h_cls + b) */
            memcpy(ws->cls_in + (size_t)b * C, h0, sizeof(float) * (size_t)C);
        }
    }
    if (pool == FTQ_POOL_POOLER) {
        lin(m, ws->pool_pre, ws->cls_in, m->q_pool, m->w.pool_w, m->w.pool_b, ws->B, C, C, ws->qscratch);
        for (size_t i = 0; i < (size_t)ws->B * C; i++)
            out[i] = tanhf(ws->pool_pre[i]);
    }
}

int ftq_bert_pool(const ftq_bert *m, ftq_bert_ws *ws, ftq_pool pool, int normalize, float *out)
{
    if (pool == FTQ_POOL_POOLER && !m->cfg.has_pooler)
        return ftq_set_error(FTQ_EINVAL, "bert pooling: the model has no pooler");
    if (ws->B < 1)
        return ftq_set_error(FTQ_EINVAL, "bert pooling: no forward pass yet");
    int C = m->cfg.hidden;
    ftq_bert_pool_rows(m, ws, pool, out);
    for (int b = 0; normalize && b < ws->B; b++) {
        float *o = out + (size_t)b * C;
        double s = 0;
        for (int d = 0; d < C; d++)
            s += (double)o[d] * o[d];
        float inv = (float)(1.0 / fmax(sqrt(s), 1e-12)); /* torch F.normalize eps */
        for (int d = 0; d < C; d++)
            o[d] *= inv;
    }
    return FTQ_OK;
}

int ftq_bert_classify(const ftq_bert *m, ftq_bert_ws *ws, float *logits)
{
    const ftq_bert_config *c = &m->cfg;
    if (!c->num_labels)
        return ftq_set_error(FTQ_EINVAL, "bert classify: the model has no classifier head");
    int rc = ftq_bert_pool(m, ws, c->pool, 0, ws->feat);
    if (rc)
        return rc;
    lin(m, logits, ws->feat, m->q_cls, m->w.cls_w, m->w.cls_b, ws->B, c->hidden, c->num_labels, ws->qscratch);
    return FTQ_OK;
}

/* ---- sentence-transformers pooling ------------------------------------------------------ */

int ftq_bert_st_pooling(const char *dir, ftq_pool *pool, int *normalize, int *max_seq)
{
    *pool = FTQ_POOL_MEAN;
    *normalize = 1;
    if (max_seq) {
        *max_seq = 0;
        char *sp = ftq_path_join(dir, "sentence_bert_config.json");
        cJSON *sj = NULL;
        if (sp && ftq_is_file(sp)) {
            int rc = read_json(sp, &sj);
            int64_t v;
            if (!rc && ftq_json_int(cJSON_GetObjectItemCaseSensitive(sj, "max_seq_length"), 1, 1 << 20, &v))
                *max_seq = (int)v;
            cJSON_Delete(sj);
            if (rc) {
                free(sp);
                return rc;
            }
        }
        free(sp);
    }
    char *mp = ftq_path_join(dir, "modules.json");
    if (!mp)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    if (!ftq_is_file(mp)) {
        free(mp);
        return FTQ_OK;
    }
    cJSON *pc = NULL;
    char *data = NULL;
    size_t n = 0;
    int rc = ftq_read_file_max(mp, FTQ_MAX_CONFIG_BYTES, &data, &n);
    char why[128];
    cJSON *list = rc ? NULL : ftq_json_parse_strict(data, n, why, sizeof why, NULL);
    free(data);
    if (!rc && !cJSON_IsArray(list))
        rc = ftq_set_error(FTQ_EFORMAT, "cannot parse '%s': expected a json list of modules", mp);
    const char *pool_path = NULL;
    *normalize = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, list)
    {
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(it, "type"), *p = cJSON_GetObjectItemCaseSensitive(it, "path");
        if (!cJSON_IsString(ty))
            continue;
        if (strstr(ty->valuestring, "models.Normalize"))
            *normalize = 1;
        if (strstr(ty->valuestring, "models.Pooling") && cJSON_IsString(p))
            pool_path = p->valuestring;
    }
    if (!rc && pool_path) {
        char rel[512];
        snprintf(rel, sizeof rel, "%s/config.json", pool_path);
        char *pp = ftq_path_join(dir, rel);
        rc = pp ? read_json(pp, &pc) : ftq_set_error(FTQ_ENOMEM, "out of memory");
        if (!rc) {
            int mean = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pc, "pooling_mode_mean_tokens"));
            int cls = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pc, "pooling_mode_cls_token"));
            int mx = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pc, "pooling_mode_max_tokens"));
            int other = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pc, "pooling_mode_mean_sqrt_len_tokens")) ||
                        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pc, "pooling_mode_weightedmean_tokens")) ||
                        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pc, "pooling_mode_lasttoken"));
            if (mean + cls + mx != 1 || other)
                rc = ftq_set_error(FTQ_EUNSUPPORTED, "'%s': only one of mean, cls or max pooling is supported", pp);
            *pool = mean ? FTQ_POOL_MEAN : cls ? FTQ_POOL_CLS : FTQ_POOL_MAX;
        }
        free(pp);
    }
    cJSON_Delete(list);
    cJSON_Delete(pc);
    free(mp);
    return rc;
}

/* ---- labels ------------------------------------------------------------------------------ */

int ftq_bert_load_labels(const char *dir, int n_labels, char ***names)
{
    *names = NULL;
    char *p = ftq_path_join(dir, "config.json");
    cJSON *j = NULL;
    int rc = p ? read_json(p, &j) : ftq_set_error(FTQ_ENOMEM, "out of memory");
    char **out = rc ? NULL : calloc((size_t)(n_labels > 0 ? n_labels : 1), sizeof *out);
    if (!rc && !out)
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
    const cJSON *id2 = rc ? NULL : cJSON_GetObjectItemCaseSensitive(j, "id2label");
    for (int i = 0; !rc && i < n_labels; i++) {
        char key[16], buf[32];
        snprintf(key, sizeof key, "%d", i);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(id2, key);
        snprintf(buf, sizeof buf, "LABEL_%d", i);
        out[i] = strdup(cJSON_IsString(v) ? v->valuestring : buf);
        if (!out[i])
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
    }
    if (rc && out) {
        for (int i = 0; i < n_labels; i++)
            free(out[i]);
        free(out);
        out = NULL;
    }
    *names = out;
    cJSON_Delete(j);
    free(p);
    return rc;
}

/* ---- the LoRA terms of the block linears (adapters made and loaded in model/bert_lora.c) ---- */

int ftq_bert_lora_reserve(const ftq_bert *m, size_t rows)
{
    ftq_bert_lora *lo = m->lora;
    if (!lo || rows <= lo->rows_cap)
        return FTQ_OK;
    const size_t L = (size_t)m->cfg.n_layers, r = (size_t)lo->r;
    const size_t mx = (size_t)(m->cfg.ffn > m->cfg.hidden ? m->cfg.ffn : m->cfg.hidden);
    if (rows > ((size_t)1 << 40) / (L * BERT_LIN_N * r * mx + 1))
        return ftq_set_error(FTQ_ENOMEM, "lora buffers for %zu rows are too large", rows);
    float *u = malloc(sizeof(float) * L * BERT_LIN_N * rows * r + 64), *du = malloc(sizeof(float) * rows * r + 64),
          *xd = malloc(sizeof(float) * rows * mx + 64);
    if (!u || !du || !xd) {
        free(u);
        free(du);
        free(xd);
        return ftq_set_error(FTQ_ENOMEM, "out of memory for the lora buffers (%zu rows)", rows);
    }
    free(lo->u);
    free(lo->du);
    free(lo->xd);
    lo->u = u;
    lo->du = du;
    lo->xd = xd;
    lo->rows_cap = rows;
    return FTQ_OK;
}

void ftq_bert_lora_forward(const ftq_bert *m, int l, int k, float *y, int ldy, const float *x, int ldx, int N)
{
    ftq_bert_lora *lo = m->lora;
    if (!lo || !lo->on[k] || (size_t)N > lo->rows_cap)
        return;
    int in, out;
    ftq_bert_lin_dims(m, k, &in, &out);
    const size_t *o = &lo->off[((size_t)l * BERT_LIN_N + k) * 2];
    float *u = lo->u + ((size_t)l * BERT_LIN_N + k) * lo->rows_cap * (size_t)lo->r;
    ftq_lora_forward(y, ldy, x, ldx, m->params + o[0], m->params + o[1], u, lo->xd, N, in, out, lo->r, lo->scale,
                     &lo->drop, (uint64_t)l * BERT_LIN_N + k);
}

void ftq_bert_lora_backward(const ftq_bert *m, int l, int k, float *grads, float *dx, int lddx, const float *dy,
                            int lddy, const float *x, int ldx, int N)
{
    ftq_bert_lora *lo = m->lora;
    if (!lo || !lo->on[k])
        return;
    int in, out;
    ftq_bert_lin_dims(m, k, &in, &out);
    const size_t *o = &lo->off[((size_t)l * BERT_LIN_N + k) * 2];
    const float *u = lo->u + ((size_t)l * BERT_LIN_N + k) * lo->rows_cap * (size_t)lo->r;
    ftq_lora_backward(dx, lddx, grads + o[0], grads + o[1], dy, lddy, x, ldx, m->params + o[0], m->params + o[1], u,
                      lo->du, lo->xd, N, in, out, lo->r, lo->scale, &lo->drop, (uint64_t)l * BERT_LIN_N + k);
}

/* ---- a classifier head (ftq_bert_add_head, include/ftq_bert.h) ----------------------------- */

int ftq_bert_add_head(ftq_bert *m, int n_labels, ftq_pool pool, uint64_t seed)
{
    ftq_bert_config *c = &m->cfg;
    if (n_labels < 1 || n_labels > (1 << 16))
        return ftq_set_error(FTQ_EINVAL, "classifier with %d labels", n_labels);
    if (pool == FTQ_POOL_POOLER && !c->has_pooler)
        return ftq_set_error(FTQ_EINVAL, "pooling 'pooler' on a model without a pooler (use mean or cls)");
    if (pool == FTQ_POOL_MAX)
        return ftq_set_error(FTQ_EINVAL, "max pooling is not offered for classification (use pooler, mean or cls)");
    int keep = m->n_tensors; /* drop an existing head: it is always the last two tensors */
    if (c->num_labels)
        keep -= 2;
    size_t off = keep ? m->tensors[keep - 1].off + ((m->tensors[keep - 1].numel + 15) & ~(size_t)15) : 0;
    size_t C = (size_t)c->hidden, nw = (size_t)n_labels * C, total = off + ((nw + 15) & ~(size_t)15) +
                                                                          (((size_t)n_labels + 15) & ~(size_t)15);
    float *p = aligned_alloc(64, (total * sizeof(float) + 63) & ~(size_t)63);
    if (!p)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    memcpy(p, m->params, off * sizeof(float));
    free(m->params);
    m->params = p;
    m->n_params = total;
    m->n_tensors = keep;
    m->q_cls = NULL; /* a dropped quantized head: the new one is f32 */
    c->num_labels = n_labels;
    c->pool = pool;
    static const char *const names[2] = {"classifier.weight", "classifier.bias"};
    for (int k = 0; k < 2; k++) {
        ftq_bert_tensor *t = &m->tensors[m->n_tensors++];
        memset(t, 0, sizeof *t);
        snprintf(t->name, sizeof t->name, "%s", names[k]);
        t->ndim = 2 - k;
        t->shape[0] = n_labels;
        t->shape[1] = k ? 0 : (int64_t)C;
        t->numel = k ? (size_t)n_labels : nw;
        t->off = k ? off + ((nw + 15) & ~(size_t)15) : off;
        t->layer = -1;
        t->field = k ? offsetof(ftq_bert_views, cls_b) : offsetof(ftq_bert_views, cls_w);
    }
    ftq_bert_bind(m, m->params, &m->w, m->w.L);
    ftq_rng r;
    ftq_rng_seed(&r, seed);
    for (size_t i = 0; i < nw; i++)
        m->w.cls_w[i] = 0.02f * ftq_rng_normal(&r);
    memset(m->w.cls_b, 0, sizeof(float) * (size_t)n_labels);
    return FTQ_OK;
}
