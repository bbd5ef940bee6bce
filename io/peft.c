/* peft.c - reading a PEFT LoRA adapter directory: adapter_config.json (the LoraConfig
 * fields plain LoRA needs; anything that changes the math is refused by key) and
 * adapter_model.safetensors (base_model.model.<module>.lora_A.weight [r, in] /
 * .lora_B.weight [out, r] pairs, plus full modules_to_save tensors). Invariants after
 * open: every module has both tensors with r matching the config. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ftq.h"
#include "ftq_lora.h"
#include "io/json_util.h"

#define PEFT_PREFIX "base_model.model."

struct ftq_peft {
    char *dir, *cfg_path, *st_path;
    ftq_st_file *st;
    int r, rslora, fan_in_fan_out;
    double alpha;
    char task_type[64];
    char *base_model;
    ftq_peft_module *mods;
    size_t n_mods;
    const ftq_tensor **extra;
    char **extra_names;
    size_t n_extra;
    char *names; /* storage of module names */
};

void ftq_peft_close(ftq_peft *ad)
{
    if (!ad)
        return;
    ftq_st_close(ad->st);
    free(ad->dir);
    free(ad->cfg_path);
    free(ad->st_path);
    free(ad->base_model);
    free(ad->mods);
    free(ad->extra);
    if (ad->extra_names)
        for (size_t i = 0; i < ad->n_extra; i++)
            free(ad->extra_names[i]);
    free(ad->extra_names);
    free(ad->names);
    free(ad);
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static int read_config(ftq_peft *ad)
{
    char *text = NULL;
    size_t len = 0;
    int rc = ftq_read_file_max(ad->cfg_path, (size_t)1 << 20, &text, &len);
    if (rc != FTQ_OK)
        return rc;
    char why[128];
    cJSON *j = ftq_json_parse_strict(text, len, why, sizeof why, NULL);
    free(text);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return ftq_set_error(FTQ_EFORMAT, "cannot read '%s': %s", ad->cfg_path, j ? "not a JSON object" : why);
    }
    rc = FTQ_OK;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "peft_type");
    int64_t r = 0;
    if (!cJSON_IsString(v) || strcmp(v->valuestring, "LORA") != 0) {
        rc = ftq_set_error(FTQ_EUNSUPPORTED, "cannot read '%s': peft_type is not \"LORA\"", ad->cfg_path);
        goto done;
    }
    if (!ftq_json_int(cJSON_GetObjectItemCaseSensitive(j, "r"), 1, 65536, &r)) {
        rc = ftq_set_error(FTQ_EFORMAT, "cannot read '%s': key 'r' must be an integer in 1..65536", ad->cfg_path);
        goto done;
    }
    ad->r = (int)r;
    v = cJSON_GetObjectItemCaseSensitive(j, "lora_alpha");
    ad->alpha = cJSON_IsNumber(v) ? v->valuedouble : 8.0; /* LoraConfig's default */
    if (!(ad->alpha > 0) || !isfinite(ad->alpha)) {
        rc = ftq_set_error(FTQ_EFORMAT, "cannot read '%s': lora_alpha must be positive", ad->cfg_path);
        goto done;
    }
    ad->rslora = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "use_rslora"));
    ad->fan_in_fan_out = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "fan_in_fan_out"));
    static const char *const refused_true[] = {"use_dora"};
    for (size_t i = 0; i < sizeof refused_true / sizeof refused_true[0]; i++)
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, refused_true[i]))) {
            rc = ftq_set_error(FTQ_EUNSUPPORTED, "cannot use adapter '%s': %s is not supported", ad->cfg_path,
                               refused_true[i]);
            goto done;
        }
    static const char *const refused_obj[] = {"rank_pattern", "alpha_pattern"};
    for (size_t i = 0; i < 2; i++) {
        v = cJSON_GetObjectItemCaseSensitive(j, refused_obj[i]);
        if (v && cJSON_IsObject(v) && v->child) {
            rc = ftq_set_error(FTQ_EUNSUPPORTED, "cannot use adapter '%s': a non-empty %s is not supported",
                               ad->cfg_path, refused_obj[i]);
            goto done;
        }
    }
    v = cJSON_GetObjectItemCaseSensitive(j, "bias");
    if (cJSON_IsString(v) && strcmp(v->valuestring, "none") != 0) {
        rc = ftq_set_error(FTQ_EUNSUPPORTED, "cannot use adapter '%s': bias \"%s\" is not supported (only \"none\")",
                           ad->cfg_path, v->valuestring);
        goto done;
    }
    v = cJSON_GetObjectItemCaseSensitive(j, "task_type");
    snprintf(ad->task_type, sizeof ad->task_type, "%s", cJSON_IsString(v) ? v->valuestring : "");
    v = cJSON_GetObjectItemCaseSensitive(j, "base_model_name_or_path");
    if (!(ad->base_model = strdup(cJSON_IsString(v) ? v->valuestring : "")))
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
done:
    cJSON_Delete(j);
    return rc;
}

static int read_tensors(ftq_peft *ad)
{
    int rc = ftq_st_open(ad->st_path, &ad->st);
    if (rc != FTQ_OK)
        return rc;
    size_t n = ftq_st_count(ad->st), names_len = 0;
    for (size_t i = 0; i < n; i++)
        names_len += strlen(ftq_st_tensor(ad->st, i)->name) + 1;
    ad->mods = calloc(n ? n : 1, sizeof *ad->mods);
    ad->extra = calloc(n ? n : 1, sizeof *ad->extra);
    ad->extra_names = calloc(n ? n : 1, sizeof *ad->extra_names);
    ad->names = malloc(names_len + 1);
    if (!ad->mods || !ad->extra || !ad->names || !ad->extra_names)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        const ftq_tensor *t = ftq_st_tensor(ad->st, i);
        const char *nm = t->name;
        if (strncmp(nm, PEFT_PREFIX, strlen(PEFT_PREFIX)) != 0)
            return ftq_set_error(FTQ_EFORMAT, "cannot read '%s': tensor '%s' lacks PEFT's prefix '" PEFT_PREFIX "'",
                                 ad->st_path, nm);
        const char *rest = nm + strlen(PEFT_PREFIX);
        if (ends_with(rest, ".lora_B.weight"))
            continue; /* found through its A */
        if (!ends_with(rest, ".lora_A.weight")) {
            if (strstr(rest, "lora_") || strstr(rest, "magnitude"))
                return ftq_set_error(FTQ_EUNSUPPORTED, "cannot use adapter '%s': tensor '%s' is not plain LoRA",
                                     ad->st_path, nm);
            ad->extra[ad->n_extra] = t;
            if (!(ad->extra_names[ad->n_extra] = strdup(rest)))
                return ftq_set_error(FTQ_ENOMEM, "out of memory");
            ad->n_extra++;
            continue;
        }
        size_t mlen = strlen(rest) - strlen(".lora_A.weight");
        char *mod = ad->names + used;
        memcpy(mod, rest, mlen);
        mod[mlen] = '\0';
        used += mlen + 1;
        char bname[1024];
        snprintf(bname, sizeof bname, PEFT_PREFIX "%s.lora_B.weight", mod);
        const ftq_tensor *B = ftq_st_find(ad->st, bname);
        if (!B)
            return ftq_set_error(FTQ_EFORMAT, "cannot read '%s': '%s' has no '%s'", ad->st_path, nm, bname);
        if (t->ndim != 2 || B->ndim != 2 || t->shape[0] != ad->r || B->shape[1] != ad->r)
            return ftq_set_error(FTQ_EFORMAT, "cannot read '%s': module '%s' has lora_A [%lld, %lld] and lora_B "
                                 "[%lld, %lld], expected [r, in] and [out, r] with r = %d", ad->st_path, mod,
                                 (long long)t->shape[0], (long long)(t->ndim > 1 ? t->shape[1] : 0),
                                 (long long)B->shape[0], (long long)(B->ndim > 1 ? B->shape[1] : 0), ad->r);
        ftq_peft_module *pm = &ad->mods[ad->n_mods++];
        pm->module = mod;
        pm->A = t;
        pm->B = B;
        pm->in = t->shape[1];
        pm->out = B->shape[0];
    }
    /* every B has its A */
    for (size_t i = 0; i < n; i++) {
        const char *nm = ftq_st_tensor(ad->st, i)->name;
        if (!ends_with(nm, ".lora_B.weight"))
            continue;
        char aname[1024];
        snprintf(aname, sizeof aname, "%.*s.lora_A.weight", (int)(strlen(nm) - strlen(".lora_B.weight")), nm);
        if (!ftq_st_find(ad->st, aname))
            return ftq_set_error(FTQ_EFORMAT, "cannot read '%s': '%s' has no '%s'", ad->st_path, nm, aname);
    }
    if (ad->n_mods == 0)
        return ftq_set_error(FTQ_EFORMAT, "cannot read '%s': no lora_A / lora_B tensors", ad->st_path);
    return FTQ_OK;
}

int ftq_peft_open(const char *dir, ftq_peft **out)
{
    if (!out || !dir)
        return ftq_set_error(FTQ_EINVAL, "ftq_peft_open: NULL argument");
    *out = NULL;
    ftq_peft *ad = calloc(1, sizeof *ad);
    if (!ad)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    ad->dir = strdup(dir);
    ad->cfg_path = ftq_path_join(dir, "adapter_config.json");
    ad->st_path = ftq_path_join(dir, "adapter_model.safetensors");
    int rc = ad->dir && ad->cfg_path && ad->st_path ? FTQ_OK : ftq_set_error(FTQ_ENOMEM, "out of memory");
    if (rc == FTQ_OK && !ftq_is_file(ad->cfg_path))
        rc = ftq_set_error(FTQ_ENOTFOUND, "'%s' is not a PEFT adapter: no adapter_config.json", dir);
    if (rc == FTQ_OK)
        rc = read_config(ad);
    if (rc == FTQ_OK)
        rc = read_tensors(ad);
    if (rc != FTQ_OK) {
        ftq_peft_close(ad);
        return rc;
    }
    *out = ad;
    return FTQ_OK;
}

int ftq_peft_rank(const ftq_peft *ad) { return ad->r; }
double ftq_peft_alpha(const ftq_peft *ad) { return ad->alpha; }
float ftq_peft_scaling(const ftq_peft *ad)
{
    return (float)(ad->rslora ? ad->alpha / sqrt((double)ad->r) : ad->alpha / ad->r);
}
const char *ftq_peft_task_type(const ftq_peft *ad) { return ad->task_type; }
const char *ftq_peft_base_model(const ftq_peft *ad) { return ad->base_model; }
int ftq_peft_fan_in_fan_out(const ftq_peft *ad) { return ad->fan_in_fan_out; }
size_t ftq_peft_module_count(const ftq_peft *ad) { return ad->n_mods; }
const ftq_peft_module *ftq_peft_module_at(const ftq_peft *ad, size_t i) { return i < ad->n_mods ? &ad->mods[i] : NULL; }
size_t ftq_peft_extra_count(const ftq_peft *ad) { return ad->n_extra; }
const ftq_tensor *ftq_peft_extra_at(const ftq_peft *ad, size_t i, const char **hf_name)
{
    if (i >= ad->n_extra)
        return NULL;
    if (hf_name)
        *hf_name = ad->extra_names[i];
    return ad->extra[i];
}

int ftq_peft_delta(const ftq_peft *ad, size_t i, float *delta)
{
    if (i >= ad->n_mods)
        return ftq_set_error(FTQ_EINVAL, "ftq_peft_delta: module %zu of %zu", i, ad->n_mods);
    const ftq_peft_module *pm = &ad->mods[i];
    const int r = ad->r;
    const size_t out = (size_t)pm->out, in = (size_t)pm->in;
    float *A = malloc(sizeof(float) * r * in), *B = malloc(sizeof(float) * out * r);
    int rc = A && B ? FTQ_OK : ftq_set_error(FTQ_ENOMEM, "out of memory for the adapter of '%s'", pm->module);
    if (rc == FTQ_OK && (rc = ftq_tensor_to_f32(pm->A, A)) == FTQ_OK)
        rc = ftq_tensor_to_f32(pm->B, B);
    if (rc == FTQ_OK) {
        const double s = ftq_peft_scaling(ad);
        for (size_t o = 0; o < out; o++)
            for (size_t c = 0; c < in; c++) {
                double acc = 0;
                for (int k = 0; k < r; k++)
                    acc += (double)B[o * r + k] * A[(size_t)k * in + c];
                delta[o * in + c] = (float)(s * acc);
            }
    }
    free(A);
    free(B);
    return rc;
}
