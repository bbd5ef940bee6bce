/* quantize_model.c - a whole checkpoint to int8 / int4 (docs/quant-format.md): the model is
 * loaded (so every linear weight is [out, in] f32, GPT-2 Conv1D already transposed), each
 * selected weight is quantized row by row, and the file is written in the source's tensor
 * order with each quantized NAME replaced by its qweight / qscale / qzero parts and every
 * other tensor copied byte for byte. The output directory appears only when complete. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "model/model.h"
#include "model/qcheckpoint.h"
#include "quant/qcalib.h"
#include "quant/quantize_calib.h"
#include "quant/quantize_internal.h"

ftq_quantize_params ftq_quantize_default_params(void)
{
    ftq_quantize_params p;
    memset(&p, 0, sizeof p);
    p.bits = 8;
    p.group = 32;
    p.embeddings = FTQ_QPOLICY_KEEP;
    p.head = FTQ_QPOLICY_AUTO;
    p.calib_ctx = 512;
    p.calib_bos = -1;
    p.damp = 0.01;
    return p;
}

void ftq_quantize_report_free(ftq_quantize_report *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_tensors; i++)
        free(r->tensors[i].name);
    free(r->tensors);
    memset(r, 0, sizeof *r);
}

int ftq_model_quantized_count(const ftq_model *m) { return m ? m->n_quantized : 0; }

int ftq_is_quantized_checkpoint(const char *path)
{
    ftq_checkpoint *ck = NULL;
    if (!path || ftq_checkpoint_open(path, &ck) != FTQ_OK) {
        ftq_clear_error();
        return 0;
    }
    int q = 0;
    for (size_t i = 0; i < ftq_checkpoint_nfiles(ck) && !q; i++) {
        const ftq_st_file *f = ftq_checkpoint_file(ck, i);
        q = ftq_st_metadata_get(f, FTQ_QUANT_KEY_VERSION) || ftq_st_metadata_get(f, FTQ_QUANT_KEY_TENSORS);
    }
    ftq_checkpoint_close(ck);
    return q;
}

/* ---- parameters ---------------------------------------------------------------------- */

static int check_params(const ftq_quantize_params *p)
{
    if (p->bits != 8 && p->bits != 4)
        return ftq_set_error(FTQ_EINVAL, "cannot quantize to %d bits: expected 8 (int8) or 4 (int4)", p->bits);
    if (p->asym && p->bits == 8)
        return ftq_set_error(FTQ_EINVAL, "asymmetric scales are for int4 only: int8 is symmetric");
    if (p->group == 0 && p->bits == 4)
        return ftq_set_error(FTQ_EINVAL, "per-row scales (group 0) need int8: int4 takes a group of 32, 64 or 128");
    if (p->group != 0 && p->group != 32 && p->group != 64 && p->group != 128)
        return ftq_set_error(FTQ_EINVAL, "invalid group size %d: expected 32, 64 or 128 (or 0, one scale per row, "
                             "for int8)", p->group);
    if ((int)p->embeddings < FTQ_QPOLICY_KEEP || p->embeddings > FTQ_QPOLICY_SAME)
        return ftq_set_error(FTQ_EINVAL, "invalid embeddings policy %d: expected keep, int8, int4 or same",
                             (int)p->embeddings);
    if ((int)p->head < FTQ_QPOLICY_KEEP || p->head > FTQ_QPOLICY_AUTO)
        return ftq_set_error(FTQ_EINVAL, "invalid head policy %d: expected keep, int8, int4, same or auto", (int)p->head);
    if (p->method != FTQ_QMETHOD_RTN && p->method != FTQ_QMETHOD_GPTQ)
        return ftq_set_error(FTQ_EINVAL, "invalid method %d: expected rtn or gptq", (int)p->method);
    if (p->method == FTQ_QMETHOD_GPTQ && !p->calib)
        return ftq_set_error(FTQ_EINVAL, "gptq needs calibration text");
    if (p->awq && !p->calib)
        return ftq_set_error(FTQ_EINVAL, "awq needs calibration text");
    if (p->calib && p->group == 0)
        return ftq_set_error(FTQ_EINVAL, "calibrated quantization needs groups (32, 64 or 128), not one scale per row");
    if (p->sensitivity_from && !(p->target_bits > 0))
        return ftq_set_error(FTQ_EINVAL, "reusing sensitivities ('%s') needs mixed precision (a --bits budget)",
                             p->sensitivity_from);
    if (p->kquant && p->bits != 4)
        return ftq_set_error(FTQ_EINVAL, "k-quant super-blocks (kquant) apply to int4 only");
    if (p->target_bits != 0 && (!p->calib || p->bits != 4 || !(p->target_bits > 0 && p->target_bits <= 8.5)))
        return ftq_set_error(FTQ_EINVAL, "mixed precision (bits %g) needs int4, calibration text and a budget in "
                             "(0, 8.5] bits per weight", p->target_bits);
    if (!(p->damp >= 0 && p->damp < 1e6))
        return ftq_set_error(FTQ_EINVAL, "invalid GPTQ damping %g (expected >= 0)", p->damp);
    return FTQ_OK;
}

/* The quantization a policy means; 0 for KEEP. */
int ftq_qpolicy_resolve(const ftq_quantize_params *p, ftq_qpolicy pol, ftq_quant_params *out)
{
    *out = ftq_quant_default_params();
    out->search = p->search;
    out->f16_scales = 1;
    ftq_qscheme lin = p->bits == 8 ? FTQ_QSCHEME_Q8 : p->asym ? FTQ_QSCHEME_Q4A : FTQ_QSCHEME_Q4;
    switch (pol) {
    case FTQ_QPOLICY_KEEP:
        return 0;
    case FTQ_QPOLICY_INT8:
    case FTQ_QPOLICY_AUTO:
        out->scheme = FTQ_QSCHEME_Q8;
        out->group = 32;
        return 1;
    case FTQ_QPOLICY_INT4:
        out->scheme = p->bits == 4 ? lin : FTQ_QSCHEME_Q4;
        out->group = p->bits == 4 ? p->group : 32;
        return 1;
    case FTQ_QPOLICY_SAME:
        out->scheme = lin;
        out->group = p->group;
        return 1;
    }
    return 0;
}

void ftq_qcalib_sens_label(const ftq_quantize_params *p, char *lab, size_t cap)
{
    ftq_quant_params q4;
    ftq_qpolicy_resolve(p, FTQ_QPOLICY_SAME, &q4);
    ftq_qscheme_label(q4.scheme, q4.group, lab, cap);
    if (p->kquant) /* 256k-wide layers' sensitivities were measured at q4k */
        strncat(lab, "+kquant", cap - strlen(lab) - 1);
}

/* ---- jobs: the tensors to quantize ---------------------------------------------------- */

typedef ftq_qjob job;
typedef ftq_qjobs jobs;

ftq_qjob *ftq_qjobs_add(ftq_qjobs *js)
{
    if (js->n == js->cap) {
        size_t cap = js->cap ? 2 * js->cap : 32;
        job *g = realloc(js->j, cap * sizeof *g);
        if (!g)
            return NULL;
        js->j = g;
        js->cap = cap;
    }
    job *j = &js->j[js->n++];
    memset(j, 0, sizeof *j);
    j->layer = -1;
    j->sensitivity = -1;
    j->out_err = -1;
    return j;
}

static void free_jobs(jobs *js)
{
    for (size_t i = 0; i < js->n; i++) {
        free(js->j[i].owned);
        free(js->j[i].scales16);
        ftq_qtensor_free(&js->j[i].q);
    }
    free(js->j);
}

static job *find_job(const jobs *js, const char *name)
{
    for (size_t i = 0; i < js->n; i++)
        if (strcmp(js->j[i].name, name) == 0)
            return &js->j[i];
    return NULL;
}

/* ---- checks and quantization ---------------------------------------------------------- */

static int ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

/* NaN / Inf anywhere in a floating-point tensor the output carries (the legacy buffers the
 * loader ignores, GPT-2's attention masks and Llama's rotary inv_freq, are not weights). */
static int check_finite(const ftq_tensor *t)
{
    const ftq_dtype_traits *tr = ftq_dtype_info(t->dtype);
    if (!tr || !tr->is_float || !tr->to_f32 || tr->block_size != 1)
        return FTQ_OK;
    if (ends_with(t->name, ".attn.bias") || ends_with(t->name, ".attn.masked_bias") ||
        ends_with(t->name, ".rotary_emb.inv_freq"))
        return FTQ_OK;
    size_t n = (size_t)ftq_tensor_numel(t), chunk = 4096;
    float buf[4096];
    for (size_t i0 = 0; i0 < n; i0 += chunk) {
        size_t k = n - i0 < chunk ? n - i0 : chunk;
        tr->to_f32((const char *)t->data + i0 * tr->block_bytes, buf, k);
        for (size_t i = 0; i < k; i++)
            if (!isfinite(buf[i]))
                return ftq_set_error(FTQ_ENUMERIC, "cannot quantize: tensor '%s' holds a non-finite value %g at "
                                     "index %zu", t->name, (double)buf[i], i0 + i);
    }
    return FTQ_OK;
}

static int quantize_job(job *j)
{
    if (!j->quantize)
        return FTQ_OK;
    int rc;
    if (j->gptq && j->gram) {
        ftq_gptq_params gp = ftq_gptq_default_params();
        gp.damp = j->damp;
        gp.act_order = j->act_order;
        rc = ftq_qtensor_quantize_gptq(&j->q, j->w, j->rows, j->cols, &j->qp, j->gram, j->ntok, &gp);
    } else if (j->imp) {
        rc = ftq_qtensor_quantize_weighted(&j->q, j->w, j->rows, j->cols, &j->qp, j->imp);
    } else {
        rc = ftq_qtensor_quantize(&j->q, j->w, j->rows, j->cols, &j->qp);
    }
    if (rc != FTQ_OK) {
        if (j->transposed) /* name the file's coordinates: row r, column c of [out, in] is [c][r] */
            return ftq_wrap_error(rc, "cannot quantize tensor '%s' (its [out, in] transpose)", j->name);
        return ftq_wrap_error(rc, "cannot quantize tensor '%s'", j->name);
    }
    rc = ftq_qtensor_error(&j->q, j->w, &j->err);
    if (rc == FTQ_OK && j->gram)
        rc = ftq_qtensor_output_error(&j->q, j->w, j->gram, j->ntok, &j->out_err);
    if (rc != FTQ_OK)
        return rc;
    size_t ns = (size_t)j->q.rows * j->q.ngroups;
    j->scales16 = malloc(2 * (ns ? ns : 1));
    if (!j->scales16)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    for (size_t i = 0; i < ns; i++)
        j->scales16[i] = ftq_f32_to_f16(j->q.scales[i]); /* exact: the scales are f16 values */
    return FTQ_OK;
}

/* ---- writing ---------------------------------------------------------------------------- */

typedef struct {
    ftq_tensor *t;
    size_t n, cap;
    char **names; /* owned part names */
    size_t n_names;
} outlist;

static ftq_tensor *out_add(outlist *o)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 64;
        ftq_tensor *g = realloc(o->t, cap * sizeof *g);
        char **gn = realloc(o->names, 3 * cap * sizeof *gn);
        if (g)
            o->t = g;
        if (gn)
            o->names = gn;
        if (!g || !gn)
            return NULL;
        o->cap = cap;
    }
    ftq_tensor *t = &o->t[o->n++];
    memset(t, 0, sizeof *t);
    return t;
}

static void out_free(outlist *o)
{
    for (size_t i = 0; i < o->n_names; i++)
        free(o->names[i]);
    free(o->names);
    free(o->t);
}

static int add_part(outlist *o, const char *name, const char *suffix, ftq_dtype dt, int64_t d0, int64_t d1,
                    void *data, size_t *bytes)
{
    ftq_tensor *t = out_add(o);
    char *pn = ftq_qpart_name(name, suffix);
    if (!t || !pn) {
        free(pn);
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    }
    o->names[o->n_names++] = pn;
    t->name = pn;
    t->dtype = dt;
    t->ndim = 2;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->nbytes = (size_t)d0 * (size_t)d1 * ftq_dtype_info(dt)->block_bytes;
    t->data = data;
    *bytes += t->nbytes;
    return FTQ_OK;
}

/* The tensors of one job: its parts, or (a split head kept in floating point) a copy of
 * the source tensor under the job's name. */
static int emit_job(outlist *o, const job *j, size_t *bytes)
{
    *bytes = 0;
    if (!j->quantize) {
        ftq_tensor *t = out_add(o);
        if (!t)
            return ftq_set_error(FTQ_ENOMEM, "out of memory");
        *t = *j->src;
        t->name = (char *)j->name;
        t->owned = 0;
        if (j->replace) { /* folded values, f32 in the source's shape */
            t->dtype = FTQ_DTYPE_F32;
            t->data = (void *)j->w;
            t->nbytes = sizeof(float) * (size_t)j->cols;
        }
        *bytes = t->nbytes;
        return FTQ_OK;
    }
    const ftq_qtensor *q = &j->q;
    int rc = add_part(o, j->name, ".qweight", q->scheme == FTQ_QSCHEME_Q8 ? FTQ_DTYPE_I8 : FTQ_DTYPE_U8, q->rows,
                      (int64_t)q->row_bytes, q->qs, bytes);
    if (rc == FTQ_OK)
        rc = add_part(o, j->name, ".qscale", FTQ_DTYPE_F16, q->rows, q->ngroups, j->scales16, bytes);
    if (rc == FTQ_OK && q->zeros)
        rc = add_part(o, j->name, ".qzero", FTQ_DTYPE_U8, q->rows, q->ngroups, q->zeros, bytes);
    return rc;
}

/* Add v under key (or to the array with key NULL); 0 if v is NULL or cJSON runs out of
 * memory, v freed then (cJSON_AddItem* leave a failed item to the caller). */
static int add_item(cJSON *o, const char *key, cJSON *v)
{
    if (v && (key ? cJSON_AddItemToObject(o, key, v) : cJSON_AddItemToArray(o, v)))
        return 1;
    cJSON_Delete(v);
    return 0;
}

static const char *job_method(const job *j)
{
    if (j->awq && j->imp)
        return j->gptq && j->gram ? "awq+gptq" : "awq";
    return j->gptq && j->gram ? "gptq" : j->imp ? "imatrix" : j->qp.search ? "search" : "rtn";
}

static cJSON *entry_json(const job *j)
{
    cJSON *e = cJSON_CreateObject(), *sh = cJSON_CreateArray();
    const ftq_dtype_traits *tr = ftq_dtype_info(j->src ? j->src->dtype : FTQ_DTYPE_F32);
    if (!e || !sh) {
        cJSON_Delete(e);
        cJSON_Delete(sh);
        return NULL;
    }
    /* every add is made (and frees what it could not attach): no leak on a failed one */
    int ok = add_item(sh, NULL, cJSON_CreateNumber(j->rows));
    ok &= add_item(sh, NULL, cJSON_CreateNumber(j->cols));
    ok &= add_item(e, "scheme", cJSON_CreateString(ftq_qscheme_info(j->q.scheme)->name));
    ok &= add_item(e, "group", cJSON_CreateNumber(j->q.group));
    ok &= add_item(e, "shape", sh);
    ok &= add_item(e, "transposed", cJSON_CreateBool(j->transposed));
    ok &= add_item(e, "search", cJSON_CreateBool(j->qp.search || j->imp));
    ok &= add_item(e, "method", cJSON_CreateString(job_method(j)));
    ok &= add_item(e, "source_dtype", cJSON_CreateString(tr ? tr->name : "F32"));
    if (j->copied_from)
        ok &= add_item(e, "copied_from", cJSON_CreateString(j->copied_from));
    if (!ok) {
        cJSON_Delete(e);
        return NULL;
    }
    return e;
}

int ftq_qconfig_write(const char *src, const char *dst, int untie, const char *torch_dtype)
{
    char *text = NULL;
    size_t len = 0;
    int rc = ftq_read_file_max(src, FTQ_MAX_CONFIG_BYTES, &text, &len);
    if (rc != FTQ_OK)
        return rc;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return ftq_set_error(FTQ_EFORMAT, "cannot rewrite '%s': not a JSON object", src);
    }
    int ok = 1;
    if (untie) {
        cJSON_DeleteItemFromObjectCaseSensitive(j, "tie_word_embeddings");
        ok = cJSON_AddBoolToObject(j, "tie_word_embeddings", 0) != NULL;
    }
    if (ok && torch_dtype) {
        cJSON_DeleteItemFromObjectCaseSensitive(j, "torch_dtype");
        ok = cJSON_AddStringToObject(j, "torch_dtype", torch_dtype) != NULL;
    }
    char *out = ok ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    if (!out)
        return ftq_set_error(FTQ_ENOMEM, "out of memory writing '%s'", dst);
    ftq_atomic_file af;
    rc = ftq_atomic_open(&af, dst);
    if (rc == FTQ_OK) {
        /* cJSON indents with tabs and writes ":\t"; strings never hold a raw tab */
        for (const char *p = out; *p; p++) {
            if (*p != '\t')
                fputc(*p, af.fp);
            else
                fputs(p > out && p[-1] == ':' ? " " : "  ", af.fp);
        }
        fputc('\n', af.fp);
        rc = ftq_atomic_commit(&af);
    }
    cJSON_free(out);
    return rc;
}

static size_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

/* The calibration and mixed-precision plan as the metadata value FTQ_QUANT_KEY_CALIB. */
static char *calib_json(const ftq_quantize_params *p, const jobs *js, const ftq_qsource *src)
{
    cJSON *o = cJSON_CreateObject(), *plan = p->target_bits > 0 ? cJSON_CreateObject() : NULL;
    if (!o)
        return NULL;
    int ok = add_item(o, "file", cJSON_CreateString(p->calib_name ? p->calib_name : ""));
    ok &= add_item(o, "tokens", cJSON_CreateNumber((double)src->calib_tokens));
    ok &= add_item(o, "ctx", cJSON_CreateNumber(p->calib_ctx));
    ok &= add_item(o, "bos", cJSON_CreateBool(p->calib_bos >= 0));
    ok &= add_item(o, "method", cJSON_CreateString(p->method == FTQ_QMETHOD_GPTQ ? (p->awq ? "awq+gptq" : "gptq")
                                                   : p->awq ? "awq" : "imatrix"));
    if (p->method == FTQ_QMETHOD_GPTQ) {
        ok &= add_item(o, "damp", cJSON_CreateNumber(p->damp));
        ok &= add_item(o, "act_order", cJSON_CreateBool(p->act_order));
    }
    if (p->awq && src->awq_alpha) {
        /* per block: the alpha of q/k/v, o, gate/up, down (-1: not applied) */
        cJSON *al = cJSON_CreateArray();
        for (int l = 0; al && l < src->awq_layers; l++) {
            cJSON *row = cJSON_CreateArray();
            for (int k = 0; row && k < 4; k++)
                ok &= add_item(row, NULL, cJSON_CreateNumber(src->awq_alpha[l * 4 + k]));
            ok &= add_item(al, NULL, row);
        }
        ok &= add_item(o, "awq_alpha", al);
    }
    if (p->target_bits > 0) {
        ok &= add_item(o, "target_bits", cJSON_CreateNumber(p->target_bits));
        for (size_t i = 0; plan && i < js->n; i++) {
            const job *j = &js->j[i];
            if (j->layer < 0)
                continue;
            char lab[24];
            ftq_qscheme_label(j->qp.scheme, j->qp.group, lab, sizeof lab);
            ok &= add_item(plan, j->name, cJSON_CreateString(lab));
        }
        ok &= add_item(o, "plan", plan);
        plan = NULL;
        /* what --sensitivity FROM reuses: each layer's KL and how it was measured */
        cJSON *sens = cJSON_CreateObject();
        char lab[24] = "";
        for (size_t i = 0; sens && i < js->n; i++) {
            const job *j = &js->j[i];
            if (j->layer < 0 || j->sensitivity < 0)
                continue;
            char num[40]; /* 17 digits: read back to the same double (cJSON prints 15 when close) */
            snprintf(num, sizeof num, "%.17g", j->sensitivity);
            ok &= add_item(sens, j->name, cJSON_CreateRaw(num));
        }
        ok &= add_item(o, "sensitivity", sens);
        ok &= add_item(o, "awq", cJSON_CreateBool(p->awq));
        ftq_qcalib_sens_label(p, lab, sizeof lab);
        ok &= add_item(o, "sensitivity_scheme", cJSON_CreateString(lab));
    }
    cJSON_Delete(plan);
    char *t = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return t;
}

static int write_output(const ftq_checkpoint *ck, jobs *js, int split, const char *dir, const char *calib,
                        ftq_quantize_report *r)
{
    size_t nt = ftq_checkpoint_count(ck);
    outlist o = {0};
    cJSON *list = cJSON_CreateObject();
    r->tensors = calloc(js->n ? js->n : 1, sizeof *r->tensors);
    int rc = list && r->tensors ? FTQ_OK : ftq_set_error(FTQ_ENOMEM, "out of memory");
    int64_t lin_numel = 0;
    for (size_t i = 0; i <= nt && rc == FTQ_OK; i++) {
        const ftq_tensor *ft = i < nt ? ftq_checkpoint_tensor(ck, i) : NULL;
        job *j = NULL;
        if (ft) {
            j = find_job(js, ft->name);
            if (split && !j && strcmp(ft->name, "lm_head.weight") == 0)
                continue; /* a stored copy of the tied head: replaced by the split-off one */
            if (!j) {
                ftq_tensor *t = out_add(&o);
                if (!t) {
                    rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
                    break;
                }
                *t = *ft;
                t->owned = 0;
                continue;
            }
            if (j->copied_from) /* the split head is emitted last */
                continue;
        } else {
            for (size_t k = 0; k < js->n; k++)
                if (js->j[k].copied_from)
                    j = &js->j[k];
            if (!j)
                break;
        }
        size_t bytes = 0;
        rc = emit_job(&o, j, &bytes);
        if (rc != FTQ_OK || !j->quantize)
            continue;
        cJSON *e = entry_json(j);
        if (!e || !cJSON_AddItemToObject(list, j->name, e)) {
            cJSON_Delete(e);
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
            break;
        }
        ftq_quantize_tensor_report *tr = &r->tensors[r->n_tensors++];
        tr->name = strdup(j->name);
        ftq_qscheme_label(j->q.scheme, j->q.group, tr->scheme, sizeof tr->scheme);
        tr->rmse = j->err.rmse;
        tr->max_abs = j->err.max_abs;
        tr->rel_rmse = j->err.rel_rmse;
        tr->bytes = bytes;
        tr->numel = (int64_t)j->rows * j->cols;
        snprintf(tr->method, sizeof tr->method, "%s", job_method(j));
        tr->sensitivity = j->sensitivity;
        tr->out_err = j->out_err;
        if (j->layer >= 0) {
            r->linear_bits += 8.0 * (double)bytes; /* bits for now */
            lin_numel += tr->numel;
        }
        if (!tr->name)
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        /* totals over every quantized element */
        double se = j->err.rmse * j->err.rmse * (double)tr->numel;
        double ref = j->err.rel_rmse > 0 ? se / (j->err.rel_rmse * j->err.rel_rmse) : 0;
        r->rmse += se;       /* sum of squared errors for now */
        r->rel_rmse += ref;  /* sum of squared references for now */
        r->numel += tr->numel;
        r->max_abs = j->err.max_abs > r->max_abs ? j->err.max_abs : r->max_abs;
        r->q_out_bytes += bytes;
        r->q_in_bytes += j->copied_from ? (size_t)j->rows * j->cols * (j->src ? ftq_dtype_info(j->src->dtype)->block_bytes : 4)
                                        : (j->src ? j->src->nbytes : 0);
    }
    r->linear_bits = lin_numel > 0 ? r->linear_bits / (double)lin_numel : 0;
    if (r->numel > 0) {
        double se = r->rmse, sr = r->rel_rmse;
        r->rmse = sqrt(se / (double)r->numel);
        r->rel_rmse = sr > 0 ? sqrt(se / sr) : 0;
    }
    char *path = ftq_path_join(dir, "model.safetensors");
    char *list_text = rc == FTQ_OK ? cJSON_PrintUnformatted(list) : NULL;
    if (rc == FTQ_OK && (!path || !list_text))
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
    if (rc == FTQ_OK) {
        /* the source's metadata, then ours */
        size_t k = 0;
        const char **meta = ftq_qmeta_carry(ck, 3, &k);
        if (!meta) {
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        } else {
            meta[k++] = FTQ_QUANT_KEY_VERSION;
            meta[k++] = FTQ_QUANT_VERSION;
            meta[k++] = FTQ_QUANT_KEY_TENSORS;
            meta[k++] = list_text;
            if (calib) {
                meta[k++] = FTQ_QUANT_KEY_CALIB;
                meta[k++] = calib;
            }
            rc = ftq_st_write(path, o.t, o.n, (const char *const *)meta);
            free(meta);
        }
    }
    if (rc == FTQ_OK)
        r->out_bytes = file_size(path);
    cJSON_free(list_text);
    free(path);
    cJSON_Delete(list);
    out_free(&o);
    return rc;
}

int ftq_quantize_model(const char *in_dir, const char *out_dir, const ftq_quantize_params *p,
                       ftq_quantize_report *report)
{
    if (!report)
        return ftq_set_error(FTQ_EINVAL, "ftq_quantize_model: NULL report");
    memset(report, 0, sizeof *report);
    if (!in_dir || !out_dir || !p)
        return ftq_set_error(FTQ_EINVAL, "ftq_quantize_model: NULL argument");
    int rc = check_params(p);
    if (rc != FTQ_OK)
        return rc;
    double t0 = ftq_time_sec();
    if (ftq_is_quantized_checkpoint(in_dir))
        return ftq_set_error(FTQ_EINVAL, "cannot quantize '%s': it is already quantized (dequantize it first)", in_dir);
    static const ftq_quant_arch *const archs[] = {&ftq_quant_arch_bert, &ftq_quant_arch_decoder};
    const ftq_quant_arch *arch = archs[0];
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (!archs[i]->match || archs[i]->match(in_dir)) {
            arch = archs[i];
            break;
        }
    ftq_qsource src;
    memset(&src, 0, sizeof src);
    char *tmp = NULL;
    jobs js = {0};
    if (arch != &ftq_quant_arch_decoder && p->calib && (p->method != FTQ_QMETHOD_RTN || p->awq || p->target_bits > 0))
        rc = ftq_set_error(FTQ_EUNSUPPORTED, "cannot quantize '%s': gptq, awq and --bits are for decoders (this is a "
                           "%s; its calibration takes the importance-weighted search only)", in_dir, arch->name);
    else
        rc = arch->open(in_dir, p, &src, &js);
    if (rc == FTQ_OK)
        rc = ftq_outdir_begin(out_dir, 0, &tmp);
    /* NaN / Inf: in the weights to quantize (named by the quantizer) and in all others */
    for (size_t i = 0; rc == FTQ_OK && i < ftq_checkpoint_count(src.ck); i++) {
        const ftq_tensor *t = ftq_checkpoint_tensor(src.ck, i);
        if (!find_job(&js, t->name))
            rc = check_finite(t);
    }
    for (size_t i = 0; i < js.n && rc == FTQ_OK; i++)
        rc = quantize_job(&js.j[i]);
    char *calib = NULL;
    if (rc == FTQ_OK && p->calib && !(calib = calib_json(p, &js, &src)))
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
    if (rc == FTQ_OK)
        rc = write_output(src.ck, &js, src.split, tmp, calib, report);
    cJSON_free(calib);
    /* tokenizer files (and a GGUF source's config.json, written from its metadata) */
    int gguf = ftq_gguf_is_file(in_dir);
    if (rc == FTQ_OK)
        rc = ftq_model_files_copy(in_dir, tmp, 0);
    if (rc == FTQ_OK) {
        char *sp = ftq_path_join(gguf ? tmp : in_dir, "config.json"), *dst = ftq_path_join(tmp, "config.json");
        rc = !sp || !dst   ? ftq_set_error(FTQ_ENOMEM, "out of memory")
             : src.split ? ftq_qconfig_write(sp, dst, 1, NULL)
             : gguf      ? FTQ_OK
                         : ftq_copy_file(sp, dst);
        free(sp);
        free(dst);
    }
    if (rc == FTQ_OK) {
        rc = ftq_outdir_commit(tmp, out_dir, 0);
        tmp = NULL;
    }
    ftq_outdir_abort(tmp);
    if (rc == FTQ_OK) {
        report->in_bytes = ftq_checkpoint_total_bytes(src.ck);
        report->head_split = src.split;
        report->calib_tokens = src.calib_tokens;
        report->calib_seconds = src.calib_seconds;
        report->seconds = ftq_time_sec() - t0;
    }
    free_jobs(&js);
    if (src.release)
        src.release(src.owner);
    if (rc != FTQ_OK)
        ftq_quantize_report_free(report);
    return rc;
}
