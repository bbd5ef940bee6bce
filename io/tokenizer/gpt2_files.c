/* tok_gpt2.c - GPT-2 vocab.json + merges.txt loader (OpenAI encoder.json / vocab.bpe): a
 * byte-level BPE with the GPT-2 regex, merge rank = line order after the "#version" line.
 * Invariant: every merge's two parts and their concatenation are vocabulary tokens, so the
 * merge engine never has to look strings up. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "io/tokenizer/internal.h"

static int load_vocab(ftq_tokenizer *t, const char *path)
{
    char *data = NULL;
    size_t size = 0;
    int rc = ftq_read_file_max(path, FTQ_MAX_TOKENIZER_BYTES, &data, &size);
    if (rc)
        return rc;
    cJSON *root = cJSON_ParseWithLength(data, size);
    free(data);
    if (!cJSON_IsObject(root) || !root->child) {
        cJSON_Delete(root);
        return ftq_set_error(FTQ_EFORMAT, "cannot parse '%s': not a non-empty json object", path);
    }
    const cJSON *it;
    rc = ftq_tok_allow_ids(t, path, (size_t)cJSON_GetArraySize(root));
    cJSON_ArrayForEach(it, root)
    {
        if (rc)
            break;
        double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
        if (v < 0 || v >= INT32_MAX - 1 || v != (double)(int32_t)v) {
            rc = ftq_set_error(FTQ_EFORMAT, "cannot load '%s': entry '%s' has no valid id", path, it->string);
            break;
        }
        if ((rc = ftq_tok_add_vocab(t, (int32_t)v, it->string, strlen(it->string))))
            break;
    }
    cJSON_Delete(root);
    return rc;
}

static int load_merges(ftq_tokenizer *t, const char *path)
{
    char *data = NULL;
    size_t size = 0;
    int rc = ftq_read_file_max(path, FTQ_MAX_TOKENIZER_BYTES, &data, &size);
    if (rc)
        return rc;
    int32_t rank = 0;
    size_t lineno = 0;
    char *cat = NULL;
    size_t cat_cap = 0;
    for (size_t p = 0; p < size && !rc;) {
        char *line = data + p;
        char *nl = memchr(line, '\n', size - p);
        size_t len = nl ? (size_t)(nl - line) : size - p;
        p += len + 1;
        lineno++;
        if (len == 0 || (lineno == 1 && len >= 8 && memcmp(line, "#version", 8) == 0))
            continue;
        char *sp = memchr(line, ' ', len);
        if (!sp || sp == line || sp == line + len - 1 || memchr(sp + 1, ' ', len - (size_t)(sp + 1 - line))) {
            rc = ftq_set_error(FTQ_EFORMAT, "cannot load '%s': line %zu is not two tokens separated by a space", path,
                               lineno);
            break;
        }
        size_t al = (size_t)(sp - line), bl = len - al - 1;
        if (al + bl > cat_cap) {
            cat_cap = 2 * (al + bl);
            char *c = realloc(cat, cat_cap);
            if (!c) {
                rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
                break;
            }
            cat = c;
        }
        memcpy(cat, line, al);
        memcpy(cat + al, sp + 1, bl);
        int32_t ia, ib, im;
        if (!ftq_strmap_get(&t->vocab, line, al, &ia) || !ftq_strmap_get(&t->vocab, sp + 1, bl, &ib) ||
            !ftq_strmap_get(&t->vocab, cat, al + bl, &im)) {
            rc = ftq_set_error(FTQ_EFORMAT, "cannot load '%s': line %zu merges tokens that are not in the vocabulary",
                               path, lineno);
            break;
        }
        if (rank >= (1 << 24)) {
            rc = ftq_set_error(FTQ_EFORMAT, "cannot load '%s': more than 2^24 merges", path);
            break;
        }
        rc = ftq_pairmap_put(&t->merges, ia, ib, rank++, im);
    }
    free(cat);
    free(data);
    return rc;
}

int ftq_tok_load_gpt2_files(ftq_tokenizer *t, const char *dir)
{
    char *vpath = ftq_path_join(dir, "vocab.json"), *mpath = ftq_path_join(dir, "merges.txt");
    int rc = vpath && mpath ? FTQ_OK : ftq_set_error(FTQ_ENOMEM, "out of memory");
    for (int i = 0; i < 2 && !rc; i++)
        if (!ftq_is_file(i ? mpath : vpath))
            rc = ftq_set_error(FTQ_ENOTFOUND, "cannot load tokenizer: '%s' not found", i ? mpath : vpath);
    if (!rc)
        rc = load_vocab(t, vpath);
    if (!rc)
        rc = load_merges(t, mpath);
    if (!rc) {
        t->model = TOK_MODEL_BPE_RANK;
        t->pretok = TOK_PRE_BYTELEVEL;
        t->bl_use_regex = 1;
        t->decoder = TOK_DEC_CHAIN;
        ftq_tok_op op = {.op = TOK_DEC_BYTELEVEL};
        t->dec_ops = malloc(sizeof op);
        if (!t->dec_ops) {
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
        } else {
            t->dec_ops[0] = op;
            t->n_dec_ops = 1;
        }
        snprintf(t->name, sizeof t->name, "vocab.json + merges.txt (GPT-2 byte-level BPE)");
    }
    free(vpath);
    free(mpath);
    return rc;
}
