/* util.c - files (whole reads, atomic writes), time, peak memory, and the RNG.
 * Atomic writes never leave a partial file at the final path: temp file, fsync,
 * rename, fsync of the directory. */
#define _POSIX_C_SOURCE 200809L
#include "ftq.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int read_file_limited(const char *path, size_t max, char **data, size_t *len);

int ftq_read_file(const char *path, char **data, size_t *len) { return read_file_limited(path, SIZE_MAX - 1, data, len); }

int ftq_read_file_max(const char *path, size_t max, char **data, size_t *len)
{
    return read_file_limited(path, max, data, len);
}

static int read_file_limited(const char *path, size_t max, char **data, size_t *len)
{
    *data = NULL;
    if (len)
        *len = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return ftq_set_error(FTQ_EIO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return ftq_set_error(FTQ_EIO, "cannot read '%s': not a regular file", path);
    }
    if ((uint64_t)st.st_size > (uint64_t)max) {
        fclose(fp);
        return ftq_set_error(FTQ_EFORMAT, "cannot read '%s': %lld bytes is more than ftq reads for this kind of file "
                             "(at most %zu)", path, (long long)st.st_size, max);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(fp);
        return ftq_set_error(FTQ_ENOMEM, "cannot read '%s': out of memory for %zu bytes", path, n);
    }
    if (n && fread(buf, 1, n, fp) != n) {
        int e = errno;
        free(buf);
        fclose(fp);
        return ftq_set_error(FTQ_EIO, "cannot read '%s': %s", path, e ? strerror(e) : "short read");
    }
    fclose(fp);
    buf[n] = '\0';
    *data = buf;
    if (len)
        *len = n;
    return FTQ_OK;
}

int ftq_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int ftq_is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

char *ftq_path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/')
        p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

int ftq_atomic_open(ftq_atomic_file *af, const char *path)
{
    memset(af, 0, sizeof *af);
    size_t n = strlen(path) + 32;
    af->path = strdup(path);
    af->tmp_path = malloc(n);
    if (!af->path || !af->tmp_path) {
        free(af->path);
        free(af->tmp_path);
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    }
    snprintf(af->tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
    af->fp = fopen(af->tmp_path, "wb");
    if (!af->fp) {
        int e = errno;
        int rc = ftq_set_error(FTQ_EIO, "cannot create '%s': %s", af->tmp_path, strerror(e));
        free(af->path);
        free(af->tmp_path);
        memset(af, 0, sizeof *af);
        return rc;
    }
    return FTQ_OK;
}

static void fsync_parent_dir(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return;
    int fd = open(dirname(copy), O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

int ftq_atomic_commit(ftq_atomic_file *af)
{
    int rc = FTQ_OK;
    if (fflush(af->fp) != 0 || fsync(fileno(af->fp)) != 0)
        rc = ftq_set_error(FTQ_EIO, "cannot write '%s': %s", af->path, strerror(errno));
    if (fclose(af->fp) != 0 && rc == FTQ_OK)
        rc = ftq_set_error(FTQ_EIO, "cannot write '%s': %s", af->path, strerror(errno));
    af->fp = NULL;
    if (rc == FTQ_OK && rename(af->tmp_path, af->path) != 0)
        rc = ftq_set_error(FTQ_EIO, "cannot rename '%s' to '%s': %s", af->tmp_path, af->path,
                           strerror(errno));
    if (rc != FTQ_OK)
        remove(af->tmp_path);
    else
        fsync_parent_dir(af->path);
    free(af->path);
    free(af->tmp_path);
    memset(af, 0, sizeof *af);
    return rc;
}

void ftq_atomic_abort(ftq_atomic_file *af)
{
    if (af->fp)
        fclose(af->fp);
    if (af->tmp_path)
        remove(af->tmp_path);
    free(af->path);
    free(af->tmp_path);
    memset(af, 0, sizeof *af);
}

int ftq_copy_file(const char *src, const char *dst)
{
    FILE *in = fopen(src, "rb");
    if (!in)
        return ftq_set_error(FTQ_EIO, "cannot open '%s': %s", src, strerror(errno));
    ftq_atomic_file af;
    int rc = ftq_atomic_open(&af, dst);
    if (rc != FTQ_OK) {
        fclose(in);
        return rc;
    }
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) {
        if (fwrite(buf, 1, n, af.fp) != n) {
            rc = ftq_set_error(FTQ_EIO, "cannot write '%s': %s", dst, strerror(errno));
            break;
        }
    }
    if (rc == FTQ_OK && ferror(in))
        rc = ftq_set_error(FTQ_EIO, "cannot read '%s'", src);
    fclose(in);
    if (rc != FTQ_OK) {
        ftq_atomic_abort(&af);
        return rc;
    }
    return ftq_atomic_commit(&af);
}

double ftq_time_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

size_t ftq_peak_rss_bytes(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (size_t)ru.ru_maxrss * 1024; /* Linux reports KiB */
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void ftq_rng_seed(ftq_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t ftq_rng_u64(ftq_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float ftq_rng_uniform(ftq_rng *r) { return (float)(ftq_rng_u64(r) >> 40) * (1.0f / 16777216.0f); }

float ftq_rng_normal(ftq_rng *r)
{
    double u1 = ((double)(ftq_rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (double)(ftq_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void ftq_mapped_release(int map, const void *base, size_t size, const void *p, size_t n)
{
    const unsigned char *b = p, *lo_ok = base;
    if (!map || n == 0 || b < lo_ok || b + n > lo_ok + size)
        return; /* only pages of our own read-only file mapping can be dropped safely */
    long ps = sysconf(_SC_PAGESIZE);
    if (ps <= 0)
        return;
    uintptr_t lo = ((uintptr_t)b + (uintptr_t)ps - 1) & ~(uintptr_t)(ps - 1);
    uintptr_t hi = ((uintptr_t)b + n) & ~(uintptr_t)(ps - 1);
    if (hi > lo)
        madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

int ftq_list_has(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0)
            return 1;
        if (!e)
            break;
        p = e + 1;
    }
    return 0;
}
