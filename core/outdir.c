/* outdir.c - whole output directories that appear complete or not at all: everything is
 * written into "<path>.tmp.<pid>" and the directory is renamed to <path> at the end. */
#define _XOPEN_SOURCE 700
#include "include/ftq.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int ftq_remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return FTQ_OK;
    if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return ftq_set_error(FTQ_EIO, "cannot remove '%s': %s", path, strerror(errno));
    return FTQ_OK;
}

/* "STEM.tmp.PID" / "STEM.old.PID" -> PID (0 if name is not of that form or not of stem) */
static long stale_pid(const char *name, const char *stem)
{
    const char *dot = NULL;
    for (const char *p = name; *p; p++)
        if (strncmp(p, ".tmp.", 5) == 0 || strncmp(p, ".old.", 5) == 0)
            dot = p; /* the last one: STEM may itself contain ".tmp." */
    if (!dot || !dot[5] || strspn(dot + 5, "0123456789") != strlen(dot + 5) || strlen(dot + 5) > 9)
        return 0;
    if (stem && ((size_t)(dot - name) != strlen(stem) || strncmp(name, stem, strlen(stem)) != 0))
        return 0;
    return strtol(dot + 5, NULL, 10);
}

int ftq_sweep_stale(const char *dir, const char *stem, char ***removed, int *n_removed)
{
    *removed = NULL;
    *n_removed = 0;
    DIR *d = opendir(dir);
    if (!d)
        return FTQ_OK;
    int rc = FTQ_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && rc == FTQ_OK) {
        long pid = stale_pid(e->d_name, stem);
        if (pid <= 0 || pid == (long)getpid() || pid > INT32_MAX)
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) /* alive, or not ours to judge */
            continue;
        char *p = ftq_path_join(dir, e->d_name);
        char **nr = p ? realloc(*removed, (size_t)(*n_removed + 1) * sizeof *nr) : NULL;
        if (!nr) {
            free(p);
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
            break;
        }
        *removed = nr;
        if ((rc = ftq_remove_tree(p)) != FTQ_OK) {
            free(p);
            break;
        }
        nr[(*n_removed)++] = p;
    }
    closedir(d);
    return rc;
}

int ftq_outdir_begin(const char *path, int replace, char **tmp_dir)
{
    *tmp_dir = NULL;
    struct stat st;
    if (!replace && stat(path, &st) == 0)
        return ftq_set_error(FTQ_EINVAL, "output '%s' already exists (remove it or choose another)", path);
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    ftq_remove_tree(tmp);
    if (mkdir(tmp, 0777) != 0) {
        int rc = ftq_set_error(FTQ_EIO, "cannot create '%s': %s", tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    *tmp_dir = tmp;
    return FTQ_OK;
}

int ftq_outdir_commit(char *tmp_dir, const char *path, int replace)
{
    int rc = FTQ_OK;
    struct stat st;
    char *old = NULL;
    if (stat(path, &st) == 0) {
        if (!replace) {
            rc = ftq_set_error(FTQ_EINVAL, "output '%s' appeared while writing it", path);
            goto fail;
        }
        size_t n = strlen(path) + 32;
        old = malloc(n);
        if (!old) {
            rc = ftq_set_error(FTQ_ENOMEM, "out of memory");
            goto fail;
        }
        snprintf(old, n, "%s.old.%ld", path, (long)getpid());
        if (rename(path, old) != 0) {
            rc = ftq_set_error(FTQ_EIO, "cannot move '%s' aside: %s", path, strerror(errno));
            goto fail;
        }
    }
    if (rename(tmp_dir, path) != 0) {
        rc = ftq_set_error(FTQ_EIO, "cannot rename '%s' to '%s': %s", tmp_dir, path, strerror(errno));
        if (old)
            rename(old, path);
        goto fail;
    }
    if (old)
        ftq_remove_tree(old);
    free(old);
    free(tmp_dir);
    return FTQ_OK;
fail:
    free(old);
    ftq_outdir_abort(tmp_dir);
    return rc;
}

void ftq_outdir_abort(char *tmp_dir)
{
    if (!tmp_dir)
        return;
    ftq_remove_tree(tmp_dir);
    free(tmp_dir);
}

int ftq_copy_model_files(const char *src_dir, const char *dst_dir, int with_config)
{
    static const char *files[] = {"config.json", "generation_config.json", "tokenizer.json",
                                  "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                                  "vocab.json", "merges.txt", "added_tokens.json", "LICENSE"};
    for (size_t i = with_config ? 0 : 1; i < sizeof files / sizeof files[0]; i++) {
        char *src = ftq_path_join(src_dir, files[i]), *dst = ftq_path_join(dst_dir, files[i]);
        int rc = !src || !dst ? ftq_set_error(FTQ_ENOMEM, "out of memory")
                              : ftq_is_file(src) ? ftq_copy_file(src, dst) : FTQ_OK;
        free(src);
        free(dst);
        if (rc != FTQ_OK)
            return rc;
    }
    return FTQ_OK;
}
