/* fuzz_common.h - helpers shared by the libFuzzer targets tests/fuzz/fuzz_*.c: a private
 * scratch directory per process (removed at exit) for parsers that only read paths, and a
 * splitter that cuts one input into several files at NUL bytes (JSON and text never hold a
 * raw NUL, so seeds stay readable). Everything here is deterministic: same bytes, same run. */
#ifndef FTQ_FUZZ_COMMON_H
#define FTQ_FUZZ_COMMON_H

#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ftq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fz_dir_buf[512];

static inline void fz_cleanup(void)
{
    DIR *d = opendir(fz_dir_buf);
    if (d) {
        struct dirent *e;
        char p[1024];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(p, sizeof p, "%s/%s", fz_dir_buf, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(fz_dir_buf);
}

/* The scratch directory of this process, created on first use. */
static inline const char *fz_dir(void)
{
    if (fz_dir_buf[0])
        return fz_dir_buf;
    const char *base = getenv("TMPDIR");
    struct stat st;
    if (!base || !*base)
        base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0 ? "/dev/shm"
                                                                                                  : "/tmp";
    snprintf(fz_dir_buf, sizeof fz_dir_buf, "%s/ftq-fuzz.XXXXXX", base);
    if (!mkdtemp(fz_dir_buf)) {
        perror("ftq fuzz: mkdtemp");
        abort();
    }
    atexit(fz_cleanup);
    return fz_dir_buf;
}

/* DIR/name in buf. */
static inline const char *fz_path(const char *name, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%s", fz_dir(), name);
    return buf;
}

/* Write bytes to DIR/name (replacing it); returns the path in buf. Aborts on I/O errors:
 * those are the harness failing, not the parser. */
static inline const char *fz_write(const char *name, const void *data, size_t len, char *buf, size_t cap)
{
    fz_path(name, buf, cap);
    FILE *fp = fopen(buf, "wb");
    if (!fp || (len && fwrite(data, 1, len, fp) != len) || fclose(fp) != 0) {
        perror("ftq fuzz: write");
        abort();
    }
    return buf;
}

/* Remove DIR/name if present. */
static inline void fz_remove(const char *name)
{
    char p[1024];
    unlink(fz_path(name, p, sizeof p));
}

/* Cut data at the first n - 1 NUL bytes into n parts; missing parts are empty (len 0,
 * pointer to the end of the input). Returns the number of parts actually present. */
static inline int fz_split(const uint8_t *data, size_t size, int n, const uint8_t **part, size_t *len)
{
    int k = 0;
    size_t start = 0;
    for (; k < n - 1; k++) {
        const uint8_t *z = size > start ? memchr(data + start, 0, size - start) : NULL;
        if (!z)
            break;
        part[k] = data + start;
        len[k] = (size_t)(z - (data + start));
        start = (size_t)(z - data) + 1;
    }
    part[k] = data + start;
    len[k] = size - start;
    int present = k + 1;
    for (k++; k < n; k++) {
        part[k] = data + size;
        len[k] = 0;
    }
    return present;
}

/* Touch every byte of a NUL-terminated string, so ASan sees a read past a bad terminator. */
static inline size_t fz_touch(const char *s)
{
    return s ? strlen(s) : 0;
}

/* The library refused the input: touch its message, and print it when FTQ_FUZZ_VERBOSE is
 * set (to see why a seed is rejected: FTQ_FUZZ_VERBOSE=1 ./fuzz_x seed_file). */
static inline void fz_refused(void)
{
    static int verbose = -1;
    if (verbose < 0)
        verbose = getenv("FTQ_FUZZ_VERBOSE") != NULL;
    const char *m = ftq_last_error();
    fz_touch(m);
    if (verbose)
        fprintf(stderr, "refused: %s\n", m ? m : "(no message)");
}

#endif
