/* checkpoint.c - the files of an output directory: config.json edited from the source (every
 * unknown key survives), tokenizer files, optimizer moments, JSON state, and the directory
 * plumbing for checkpoints. Every file is written atomically (temp + fsync + rename). */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "finetune/trainer_internal.h"

int ckpt_mkdir_p(const char *path, int *created)
{
    if (created)
        *created = 0;
    if (ftq_is_dir(path))
        return FTQ_OK;
    char *p = strdup(path);
    if (!p)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (!ftq_is_dir(p) && mkdir(p, 0777) != 0 && errno != EEXIST) {
            int rc = ftq_set_error(FTQ_EIO, "cannot create directory '%s': %s", p, strerror(errno));
            free(p);
            return rc;
        }
        *s = '/';
    }
    free(p);
    if (mkdir(path, 0777) != 0) {
        if (errno == EEXIST && ftq_is_dir(path))
            return FTQ_OK;
        return ftq_set_error(FTQ_EIO, "cannot create directory '%s': %s", path, strerror(errno));
    }
    if (created)
        *created = 1;
    return FTQ_OK;
}

void ckpt_fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

int ckpt_write_json(const char *path, const cJSON *j)
{
    char *text = cJSON_Print(j);
    if (!text)
        return ftq_set_error(FTQ_ENOMEM, "out of memory writing '%s'", path);
    /* HF's layout (json.dumps indent=2): cJSON indents with tabs and writes ":\t"; strings
     * never hold a raw tab (cJSON escapes it), so every tab is layout */
    size_t n = 0;
    for (const char *p = text; *p; p++)
        n += *p == '\t' ? 2 : 1;
    char *pretty = malloc(n + 1);
    if (!pretty) {
        cJSON_free(text);
        return ftq_set_error(FTQ_ENOMEM, "out of memory writing '%s'", path);
    }
    n = 0;
    for (const char *p = text; *p; p++) {
        if (*p != '\t')
            pretty[n++] = *p;
        else if (p > text && p[-1] == ':')
            pretty[n++] = ' ';
        else {
            pretty[n++] = ' ';
            pretty[n++] = ' ';
        }
    }
    pretty[n] = '\0';
    cJSON_free(text);
    text = pretty;
    ftq_atomic_file af;
    int rc = ftq_atomic_open(&af, path);
    if (rc == FTQ_OK) {
        if (fwrite(text, 1, n, af.fp) != n || fputc('\n', af.fp) == EOF) {
            rc = ftq_set_error(FTQ_EIO, "cannot write '%s': %s", path, strerror(errno));
            ftq_atomic_abort(&af);
        } else {
            rc = ftq_atomic_commit(&af);
        }
    }
    free(text);
    return rc;
}

int ckpt_read_json(const char *path, cJSON **out)
{
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    int rc = ftq_read_file_max(path, FTQ_MAX_TOKENIZER_BYTES, &text, &len);
    if (rc != FTQ_OK)
        return rc;
    *out = cJSON_ParseWithLength(text, len);
    free(text);
    if (!*out || !cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return ftq_set_error(FTQ_EFORMAT, "cannot parse '%s': not a JSON object", path);
    }
    return FTQ_OK;
}

static const char *family_prefix(const ftq_model_config *cfg)
{
    if (cfg->arch == FTQ_ARCH_GPT2)
        return "GPT2";
    if (strcmp(cfg->model_type, "mistral") == 0)
        return "Mistral";
    if (strcmp(cfg->model_type, "qwen2") == 0)
        return "Qwen2";
    return "Llama";
}

/* Set obj[key] = val, taking ownership of val (freed on failure). */
static int set_item(cJSON *obj, const char *key, cJSON *val)
{
    if (!val)
        return ftq_set_error(FTQ_ENOMEM, "out of memory editing config.json");
    cJSON_bool ok = cJSON_GetObjectItemCaseSensitive(obj, key) ? cJSON_ReplaceItemInObjectCaseSensitive(obj, key, val)
                                                               : cJSON_AddItemToObject(obj, key, val);
    if (!ok) {
        cJSON_Delete(val);
        return ftq_set_error(FTQ_ENOMEM, "out of memory editing config.json");
    }
    return FTQ_OK;
}

/* Add v to the array or under key of obj; 0 (v freed) if v is NULL or cJSON runs out. */
static int add_item(cJSON *obj, const char *key, cJSON *v)
{
    if (v && (key ? cJSON_AddItemToObject(obj, key, v) : cJSON_AddItemToArray(obj, v)))
        return 1;
    cJSON_Delete(v);
    return 0;
}

/* ["s"], or NULL when out of memory. */
static cJSON *string_array1(const char *s)
{
    cJSON *a = cJSON_CreateArray();
    if (a && !add_item(a, NULL, cJSON_CreateString(s))) {
        cJSON_Delete(a);
        a = NULL;
    }
    return a;
}

int ckpt_write_config(const char *src_config, const char *dst, const ftq_model_config *cfg, int task,
                      const char *const *labels, int num_labels, int pad_id)
{
    cJSON *j = NULL;
    int rc = ckpt_read_json(src_config, &j);
    if (rc != FTQ_OK)
        return rc;
    char arch[64];
    if (task == FTQ_TASK_CLASSIFY) {
        snprintf(arch, sizeof arch, "%sForSequenceClassification", family_prefix(cfg));
        rc = set_item(j, "architectures", string_array1(arch));
        /* complete maps or none (a label missing from config.json would change the model) */
        cJSON *id2label = rc == FTQ_OK ? cJSON_CreateObject() : NULL;
        cJSON *label2id = rc == FTQ_OK ? cJSON_CreateObject() : NULL;
        int ok = id2label && label2id;
        for (int i = 0; ok && i < num_labels; i++) {
            char key[16];
            snprintf(key, sizeof key, "%d", i);
            ok &= add_item(id2label, key, cJSON_CreateString(labels[i]));
            ok &= add_item(label2id, labels[i], cJSON_CreateNumber(i));
        }
        if (rc == FTQ_OK && !ok) {
            cJSON_Delete(id2label);
            cJSON_Delete(label2id);
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory editing config.json");
        } else if (rc == FTQ_OK) {
            rc = set_item(j, "id2label", id2label); /* owns id2label from here */
            if (rc == FTQ_OK)
                rc = set_item(j, "label2id", label2id);
            else
                cJSON_Delete(label2id);
        }
        if (rc == FTQ_OK)
            rc = set_item(j, "num_labels", cJSON_CreateNumber(num_labels));
        if (rc == FTQ_OK)
            rc = set_item(j, "pad_token_id", cJSON_CreateNumber(pad_id));
        if (rc == FTQ_OK)
            rc = set_item(j, "problem_type", cJSON_CreateString("single_label_classification"));
    } else {
        /* a causal LM stays (or becomes again) the family's *ForCausalLM */
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "architectures");
        const cJSON *a0 = cJSON_IsArray(a) ? cJSON_GetArrayItem(a, 0) : NULL;
        int keep = cJSON_IsString(a0) && !strstr(a0->valuestring, "ForSequenceClassification");
        if (!keep) {
            snprintf(arch, sizeof arch, "%s", cfg->arch == FTQ_ARCH_GPT2 ? "GPT2LMHeadModel" : "");
            if (!arch[0])
                snprintf(arch, sizeof arch, "%sForCausalLM", family_prefix(cfg));
            rc = set_item(j, "architectures", string_array1(arch));
            const char *drop[] = {"id2label", "label2id", "num_labels", "problem_type"};
            for (int i = 0; i < 4; i++)
                cJSON_DeleteItemFromObjectCaseSensitive(j, drop[i]);
        }
    }
    if (rc == FTQ_OK)
        rc = set_item(j, "torch_dtype", cJSON_CreateString("float32"));
    if (rc == FTQ_OK)
        rc = ckpt_write_json(dst, j);
    cJSON_Delete(j);
    return rc;
}

int ckpt_write_optimizer(const char *path, const float *m, const float *v, size_t n, int64_t step)
{
    ftq_tensor t[2];
    memset(t, 0, sizeof t);
    const char *names[2] = {"exp_avg", "exp_avg_sq"};
    const float *data[2] = {m, v};
    for (int i = 0; i < 2; i++) {
        t[i].name = (char *)names[i];
        t[i].dtype = FTQ_DTYPE_F32;
        t[i].ndim = 1;
        t[i].shape[0] = (int64_t)n;
        t[i].nbytes = n * sizeof(float);
        t[i].data = (void *)data[i];
    }
    char stepbuf[32];
    snprintf(stepbuf, sizeof stepbuf, "%lld", (long long)step);
    const char *meta[] = {"format", "ftq-adamw", "step", stepbuf, NULL};
    return ftq_st_write(path, t, 2, meta);
}

int ckpt_read_optimizer(const char *path, float *m, float *v, size_t n)
{
    ftq_st_file *f = NULL;
    int rc = ftq_st_open(path, &f);
    if (rc != FTQ_OK)
        return rc;
    const char *names[2] = {"exp_avg", "exp_avg_sq"};
    float *dst[2] = {m, v};
    for (int i = 0; rc == FTQ_OK && i < 2; i++) {
        const ftq_tensor *t = ftq_st_find(f, names[i]);
        if (!t || t->dtype != FTQ_DTYPE_F32 || t->ndim != 1 || t->shape[0] != (int64_t)n)
            rc = ftq_set_error(FTQ_EFORMAT, "cannot resume from '%s': expected an F32 tensor '%s' of %zu elements "
                               "(the trainable parameters of this run)", path, names[i], n);
        else
            memcpy(dst[i], t->data, n * sizeof(float));
    }
    ftq_st_close(f);
    return rc;
}

static void describe(const cJSON *v, char *buf, size_t cap)
{
    if (!v)
        snprintf(buf, cap, "(absent)");
    else if (cJSON_IsString(v))
        snprintf(buf, cap, "%s", v->valuestring);
    else if (cJSON_IsNumber(v))
        snprintf(buf, cap, "%.10g", v->valuedouble);
    else if (cJSON_IsBool(v))
        snprintf(buf, cap, "%s", cJSON_IsTrue(v) ? "true" : "false");
    else {
        char *s = cJSON_PrintUnformatted(v);
        snprintf(buf, cap, "%.60s", s ? s : "?");
        cJSON_free(s);
    }
}

int ckpt_check_args(const cJSON *saved, const cJSON *now, const char *dir)
{
    if (!cJSON_IsObject(saved))
        return ftq_set_error(FTQ_EFORMAT, "cannot resume from '%s': trainer_state.json has no \"args\" object", dir);
    const cJSON *it;
    cJSON_ArrayForEach(it, now)
    {
        const cJSON *old = cJSON_GetObjectItemCaseSensitive(saved, it->string);
        if (old && cJSON_IsNumber(old) && cJSON_IsNumber(it)) {
            if (old->valuedouble == it->valuedouble) /* exact: cJSON_Compare allows an epsilon */
                continue;
        } else if (old && cJSON_Compare(old, it, 1)) {
            continue;
        }
        char a[80], b[80];
        describe(it, a, sizeof a);
        describe(old, b, sizeof b);
        if (!old && it->string[0] != '_')
            return ftq_set_error(FTQ_EINVAL, "cannot resume from '%s': --%s %s was not an argument of the "
                                 "checkpoint's run", dir, it->string, a);
        if (it->string[0] == '_') /* derived values name what they come from */
            return ftq_set_error(FTQ_EINVAL, "cannot resume from '%s': %s differs from the checkpoint's (%s vs %s)",
                                 dir, it->string + 1, a, b);
        return ftq_set_error(FTQ_EINVAL, "cannot resume from '%s': --%s %s differs from the checkpoint's %s", dir,
                             it->string, a, b);
    }
    return FTQ_OK;
}
