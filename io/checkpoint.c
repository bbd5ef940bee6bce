/* checkpoint.c - a Hugging Face checkpoint: one .safetensors file, a directory with
 * model.safetensors, or a directory whose model.safetensors.index.json maps tensors to shards.
 * Invariant: an open checkpoint has unique tensor names across all files, each shard holds
 * exactly the tensors the index assigns it, and `sorted` indexes all tensors by name. */
#include "ftq.h"
#include "io/checkpoint_internal.h"
#include "io/json_util.h"

#include <stdlib.h>
#include <string.h>

#define SINGLE_NAME "model.safetensors"
#define INDEX_NAME "model.safetensors.index.json"

/* Fill all/sorted/total_bytes once every file is open. Duplicate names across files are
 * an error here even though the index check already rules them out: belt and braces for
 * callers that build a checkpoint from several files in future. */
static int build_index(ftq_checkpoint *c, const char *path)
{
    size_t n = 0;
    for (size_t i = 0; i < c->nfiles; i++) {
        n += ftq_st_count(c->files[i]);
        c->total_bytes += ftq_st_file_size(c->files[i]);
    }
    c->all = malloc((n ? n : 1) * sizeof *c->all);
    c->sorted = malloc((n ? n : 1) * sizeof *c->sorted);
    if (!c->all || !c->sorted)
        return ftq_set_error(FTQ_ENOMEM, "cannot open checkpoint '%s': out of memory", path);
    size_t k = 0;
    for (size_t i = 0; i < c->nfiles; i++)
        for (size_t j = 0; j < ftq_st_count(c->files[i]); j++)
            c->all[k++] = ftq_st_tensor(c->files[i], j);
    c->n = n;
    memcpy(c->sorted, c->all, n * sizeof *c->sorted);
    qsort(c->sorted, n, sizeof *c->sorted, ftq_checkpoint_cmp_name);
    for (size_t i = 1; i < n; i++)
        if (strcmp(c->sorted[i - 1]->name, c->sorted[i]->name) == 0)
            return ftq_set_error(FTQ_EFORMAT, "cannot open checkpoint '%s': tensor '%s' is stored in two files",
                                 path, c->sorted[i]->name);
    return FTQ_OK;
}


static int open_single(const char *file, ftq_checkpoint *c)
{
    c->files = calloc(1, sizeof *c->files);
    if (!c->files)
        return ftq_set_error(FTQ_ENOMEM, "cannot open checkpoint '%s': out of memory", file);
    int rc = ftq_st_open(file, &c->files[0]);
    if (rc != FTQ_OK)
        return rc;
    c->nfiles = 1;
    return build_index(c, file);
}

/* ---- sharded checkpoints --------------------------------------------------------- */

typedef struct {
    const char *name;  /* tensor name (owned by the index JSON) */
    const char *shard; /* shard file name (owned by the index JSON) */
    size_t file;       /* index into shard_names / files */
} map_entry;

typedef struct {
    const char *dir;
    const char *index_path;
    map_entry *map; /* sorted by tensor name */
    size_t nmap;
    const char **shards; /* unique shard names, sorted */
    size_t nshards;
} shard_ctx;

#define IBAD(ctx, status, ...) ftq_wrap_error(ftq_set_error((status), __VA_ARGS__), "invalid index '%s'", (ctx)->index_path)

static int cmp_map_name(const void *a, const void *b)
{
    return strcmp(((const map_entry *)a)->name, ((const map_entry *)b)->name);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Shard names come from a file we do not trust: they must stay inside the directory. */
static int safe_shard_name(const char *s)
{
    return s[0] && !strchr(s, '/') && !strchr(s, '\\') && !strstr(s, "..");
}

static int read_weight_map(shard_ctx *s, const cJSON *root)
{
    char got[64];
    if (!cJSON_IsObject(root))
        return IBAD(s, FTQ_EFORMAT, "the file is %s (expected a JSON object with \"weight_map\")", ftq_json_type(root));
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!wm)
        return IBAD(s, FTQ_EFORMAT, "missing key \"weight_map\" (expected an object of tensor name -> shard file)");
    if (!cJSON_IsObject(wm))
        return IBAD(s, FTQ_EFORMAT, "key \"weight_map\" is %s (expected an object of tensor name -> shard file)",
                    ftq_json_describe(wm, got, sizeof got));
    const char *dup;
    if (ftq_json_find_duplicate(wm, &dup) != 0)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    if (dup)
        return IBAD(s, FTQ_EFORMAT, "tensor '%s' appears twice in \"weight_map\" (expected each tensor in one shard)", dup);
    s->nmap = (size_t)cJSON_GetArraySize(wm);
    if (s->nmap == 0)
        return IBAD(s, FTQ_EFORMAT, "\"weight_map\" is empty (expected at least one tensor)");
    s->map = calloc(s->nmap, sizeof *s->map);
    s->shards = calloc(s->nmap, sizeof *s->shards);
    if (!s->map || !s->shards)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    size_t k = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, wm)
    {
        if (!it->string[0])
            return IBAD(s, FTQ_EFORMAT, "\"weight_map\" has an empty tensor name (expected a non-empty name)");
        if (!cJSON_IsString(it))
            return IBAD(s, FTQ_EFORMAT, "tensor '%s' maps to %s (expected a shard file name)", it->string,
                        ftq_json_describe(it, got, sizeof got));
        if (!safe_shard_name(it->valuestring))
            return IBAD(s, FTQ_EFORMAT, "tensor '%s' maps to shard '%s' (expected a plain file name without '/' or '..')",
                        it->string, it->valuestring);
        s->map[k].name = it->string;
        s->map[k].shard = it->valuestring;
        s->shards[k] = it->valuestring;
        k++;
    }
    qsort(s->map, s->nmap, sizeof *s->map, cmp_map_name);
    qsort(s->shards, s->nmap, sizeof *s->shards, cmp_str);
    size_t u = 0;
    for (size_t i = 0; i < s->nmap; i++)
        if (u == 0 || strcmp(s->shards[u - 1], s->shards[i]) != 0)
            s->shards[u++] = s->shards[i];
    s->nshards = u;
    for (size_t i = 0; i < s->nmap; i++) {
        const char **p = bsearch(&s->map[i].shard, s->shards, u, sizeof *s->shards, cmp_str);
        s->map[i].file = (size_t)(p - s->shards);
    }
    return FTQ_OK;
}

static int open_shards(shard_ctx *s, ftq_checkpoint *c)
{
    c->files = calloc(s->nshards, sizeof *c->files);
    if (!c->files)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    for (size_t i = 0; i < s->nshards; i++) {
        char *p = ftq_path_join(s->dir, s->shards[i]);
        if (!p)
            return ftq_set_error(FTQ_ENOMEM, "out of memory");
        int rc = FTQ_OK;
        if (!ftq_is_file(p))
            rc = IBAD(s, FTQ_ENOTFOUND, "shard '%s' does not exist (expected the file '%s')", s->shards[i], p);
        else
            rc = ftq_st_open(p, &c->files[i]);
        free(p);
        if (rc != FTQ_OK)
            return rc;
        c->nfiles = i + 1;
    }
    return FTQ_OK;
}

/* Each shard must hold exactly the tensors the map assigns it: check both directions. */
static int check_assignment(shard_ctx *s, const ftq_checkpoint *c)
{
    for (size_t f = 0; f < c->nfiles; f++) {
        for (size_t j = 0; j < ftq_st_count(c->files[f]); j++) {
            map_entry key = {ftq_st_tensor(c->files[f], j)->name, NULL, 0};
            const map_entry *m = bsearch(&key, s->map, s->nmap, sizeof *s->map, cmp_map_name);
            if (!m)
                return IBAD(s, FTQ_EFORMAT, "shard '%s' holds tensor '%s' that \"weight_map\" does not list "
                            "(expected exactly the tensors the map assigns to it)", s->shards[f], key.name);
            if (m->file != f)
                return IBAD(s, FTQ_EFORMAT, "shard '%s' holds tensor '%s' that \"weight_map\" assigns to '%s' "
                            "(expected each tensor in one shard)", s->shards[f], key.name, m->shard);
        }
    }
    for (size_t i = 0; i < s->nmap; i++)
        if (!ftq_st_find(c->files[s->map[i].file], s->map[i].name))
            return IBAD(s, FTQ_EFORMAT, "tensor '%s' is not in shard '%s' (\"weight_map\" assigns it there)",
                        s->map[i].name, s->map[i].shard);
    return FTQ_OK;
}

static int open_sharded(const char *dir, const char *index_path, ftq_checkpoint *c)
{
    char *text = NULL;
    size_t len = 0;
    int rc = ftq_read_file_max(index_path, FTQ_MAX_INDEX_BYTES, &text, &len);
    if (rc != FTQ_OK)
        return rc;
    shard_ctx s = {dir, index_path, NULL, 0, NULL, 0};
    char why[96];
    cJSON *root = ftq_json_parse_strict(text, len, why, sizeof why, NULL);
    free(text);
    if (!root)
        rc = IBAD(&s, FTQ_EFORMAT, "%s (expected a JSON object with \"weight_map\")", why);
    if (rc == FTQ_OK)
        rc = read_weight_map(&s, root);
    if (rc == FTQ_OK)
        rc = open_shards(&s, c);
    if (rc == FTQ_OK)
        rc = check_assignment(&s, c);
    if (rc == FTQ_OK)
        rc = build_index(c, dir);
    free(s.map);
    free(s.shards);
    cJSON_Delete(root);
    return rc;
}

static int open_dir(const char *dir, ftq_checkpoint *c)
{
    char *single = ftq_path_join(dir, SINGLE_NAME), *index = ftq_path_join(dir, INDEX_NAME);
    int rc;
    if (!single || !index)
        rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
    else if (ftq_is_file(single)) /* the order transformers tries them in */
        rc = open_single(single, c);
    else if (ftq_is_file(index))
        rc = open_sharded(dir, index, c);
    else
        rc = ftq_set_error(FTQ_ENOTFOUND, "cannot open checkpoint '%s': no %s or %s in the directory", dir,
                           SINGLE_NAME, INDEX_NAME);
    free(single);
    free(index);
    return rc;
}

int ftq_checkpoint_open(const char *path, ftq_checkpoint **out)
{
    *out = NULL;
    ftq_checkpoint *c = calloc(1, sizeof *c);
    if (!c)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    int rc;
    if (ftq_gguf_is_file(path)) { /* a GGUF model file: dequantized, Hugging Face names */
        free(c);
        return ftq_gguf_checkpoint_open(path, NULL, out);
    }
    if (ftq_is_dir(path))
        rc = open_dir(path, c);
    else if (ftq_is_file(path))
        rc = open_single(path, c);
    else
        rc = ftq_set_error(FTQ_ENOTFOUND, "cannot open checkpoint '%s': no such file or directory", path);
    if (rc != FTQ_OK) {
        ftq_checkpoint_close(c);
        return rc;
    }
    *out = c;
    return FTQ_OK;
}
