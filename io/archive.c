/* archive.c - byte streams over plain files and archive members (see archive.h).
 * Only tar and zip are enabled (with every compression filter), so a text file is never taken for
 * an exotic archive; data goes out in caller-sized blocks, buffered only in libarchive's block. */
#include "io/archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "ftq.h"

#define ARCHIVE_BLOCK 65536
#define LIST_CAP 600 /* bytes of member names quoted in a message */

struct ftq_source {
    char *spec;   /* as given */
    char *path;   /* the file opened: plain file or archive */
    char *member; /* requested member, NULL for a plain file or a single-member archive */
    char *name;   /* member path found, or path */
    FILE *fp;
    struct archive *ar;
    int64_t size;
    int single;  /* archive without a member: no other regular file may follow */
    int at_end;  /* the member's data is consumed (or abandoned by check_single) */
    int checked; /* check_single ran */
};

static const char *const archive_exts[] = {".tar", ".tar.gz", ".tgz", ".zip", ".tar.bz2", ".tbz2",
                                           ".tar.xz", ".txz", ".tar.zst"};

int ftq_source_is_archive_name(const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof archive_exts / sizeof archive_exts[0]; i++) {
        size_t e = strlen(archive_exts[i]);
        if (n > e && strcasecmp(name + n - e, archive_exts[i]) == 0)
            return 1;
    }
    return 0;
}

static int is_regular(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static const char *strip_dot_slash(const char *s)
{
    while (s[0] == '.' && s[1] == '/')
        s += 2;
    return s;
}

static const char *entry_name(struct archive_entry *e)
{
    /* UTF-8 first: the process may run in the C locale, where the multibyte form of a
     * non-ASCII name is not available */
    const char *n = archive_entry_pathname_utf8(e);
    if (!n)
        n = archive_entry_pathname(e);
    return n ? n : "";
}

/* A comma-separated list of names that stops growing at LIST_CAP bytes but keeps counting. */
typedef struct {
    char buf[LIST_CAP + 32];
    size_t len, count, shown;
} name_list;

static void list_add(name_list *l, const char *name)
{
    l->count++;
    size_t n = strlen(name);
    if (l->len + n + 2 > LIST_CAP)
        return;
    if (l->len) {
        memcpy(l->buf + l->len, ", ", 2);
        l->len += 2;
    }
    memcpy(l->buf + l->len, name, n);
    l->len += n;
    l->buf[l->len] = '\0';
    l->shown++;
}

static const char *list_str(name_list *l)
{
    if (l->count > l->shown) {
        int k = snprintf(l->buf + l->len, sizeof l->buf - l->len, "%s... (%zu in all)",
                         l->len ? ", " : "", l->count);
        if (k > 0)
            l->len += (size_t)k < sizeof l->buf - l->len ? (size_t)k : sizeof l->buf - l->len - 1;
    }
    l->buf[l->len] = '\0';
    return l->buf;
}

static int archive_fail(ftq_source *s, int status, const char *what)
{
    const char *why = s->ar ? archive_error_string(s->ar) : NULL;
    return ftq_set_error(status, "cannot read archive '%s': %s", s->path, why ? why : what);
}

/* Advance to the requested member (or the first regular file). */
static int open_archive(ftq_source *s)
{
    s->ar = archive_read_new();
    if (!s->ar)
        return ftq_set_error(FTQ_ENOMEM, "cannot read archive '%s': out of memory", s->path);
    archive_read_support_filter_all(s->ar);
    archive_read_support_format_tar(s->ar);
    archive_read_support_format_zip(s->ar);
    if (archive_read_open_filename(s->ar, s->path, ARCHIVE_BLOCK) != ARCHIVE_OK)
        return archive_fail(s, FTQ_EFORMAT, "cannot open");
    name_list names = {.len = 0};
    names.buf[0] = '\0';
    const char *want = s->member ? strip_dot_slash(s->member) : NULL;
    for (;;) {
        struct archive_entry *e;
        int r = archive_read_next_header(s->ar, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r < ARCHIVE_WARN)
            return archive_fail(s, FTQ_EFORMAT, "corrupt header");
        if (archive_entry_filetype(e) != AE_IFREG)
            continue;
        const char *pn = entry_name(e);
        if (!want || strcmp(strip_dot_slash(pn), want) == 0) {
            s->name = strdup(pn);
            if (!s->name)
                return ftq_set_error(FTQ_ENOMEM, "cannot read archive '%s': out of memory", s->path);
            s->size = archive_entry_size_is_set(e) ? (int64_t)archive_entry_size(e) : -1;
            return FTQ_OK;
        }
        list_add(&names, pn);
    }
    if (!want)
        return ftq_set_error(FTQ_EFORMAT, "cannot read archive '%s': it holds no regular file", s->path);
    if (names.count == 0)
        return ftq_set_error(FTQ_ENOTFOUND, "cannot find member '%s' in '%s': the archive holds no regular file",
                             s->member, s->path);
    return ftq_set_error(FTQ_ENOTFOUND, "cannot find member '%s' in '%s'; it holds: %s", s->member, s->path,
                         list_str(&names));
}

static int open_plain(ftq_source *s)
{
    s->fp = fopen(s->path, "rb");
    if (!s->fp) {
        int e = errno;
        return ftq_set_error(e == ENOENT ? FTQ_ENOTFOUND : FTQ_EIO, "cannot open '%s': %s", s->path, strerror(e));
    }
    struct stat st;
    if (fstat(fileno(s->fp), &st) != 0 || !S_ISREG(st.st_mode))
        return ftq_set_error(FTQ_EIO, "cannot read '%s': not a regular file", s->path);
    s->size = (int64_t)st.st_size;
    s->name = strdup(s->path);
    return s->name ? FTQ_OK : ftq_set_error(FTQ_ENOMEM, "cannot read '%s': out of memory", s->path);
}

/* Decide what `spec` names: path, member and whether it is an archive. */
static int resolve(ftq_source *s, int *is_archive)
{
    const char *spec = s->spec;
    *is_archive = 0;
    if (is_regular(spec) || !strchr(spec, ':')) {
        s->path = strdup(spec);
        *is_archive = s->path && ftq_source_is_archive_name(spec) && is_regular(spec);
        return s->path ? FTQ_OK : FTQ_ENOMEM;
    }
    /* the longest prefix before a ':' that is an existing file is the archive */
    for (size_t n = strlen(spec); n-- > 1;) {
        const char *c = spec + n;
        if (*c != ':')
            continue;
        char *p = malloc(n + 1);
        if (!p)
            return FTQ_ENOMEM;
        memcpy(p, spec, n);
        p[n] = '\0';
        if (is_regular(p)) {
            s->path = p;
            if (c[1] == '\0') /* "data.zip:" - no member named */
                return FTQ_OK;
            s->member = strdup(c + 1);
            *is_archive = 1;
            return s->member ? FTQ_OK : FTQ_ENOMEM;
        }
        free(p);
    }
    s->path = strdup(spec); /* nothing exists: let fopen report it */
    return s->path ? FTQ_OK : FTQ_ENOMEM;
}

int ftq_source_open(const char *spec, ftq_source **out)
{
    *out = NULL;
    if (!spec || !*spec)
        return ftq_set_error(FTQ_EINVAL, "cannot open a data source: empty name");
    ftq_source *s = calloc(1, sizeof *s);
    if (!s || !(s->spec = strdup(spec))) {
        free(s);
        return ftq_set_error(FTQ_ENOMEM, "cannot open '%s': out of memory", spec);
    }
    int is_archive = 0;
    int rc = resolve(s, &is_archive);
    if (rc == FTQ_ENOMEM)
        rc = ftq_set_error(FTQ_ENOMEM, "cannot open '%s': out of memory", spec);
    else if (rc == FTQ_OK && !is_archive && s->path && strcmp(s->path, spec) != 0)
        is_archive = 1; /* "ARCHIVE:" with an empty member: the single file inside */
    if (rc == FTQ_OK) {
        s->single = is_archive && !s->member;
        rc = is_archive ? open_archive(s) : open_plain(s);
    }
    if (rc != FTQ_OK) {
        ftq_source_close(s);
        return rc;
    }
    *out = s;
    return FTQ_OK;
}

int ftq_source_check_single(ftq_source *s)
{
    if (!s || !s->ar || !s->single || s->checked)
        return FTQ_OK;
    s->checked = 1;
    s->at_end = 1;
    name_list names = {.len = 0};
    names.buf[0] = '\0';
    list_add(&names, s->name);
    for (;;) {
        struct archive_entry *e;
        int r = archive_read_next_header(s->ar, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r < ARCHIVE_WARN)
            return archive_fail(s, FTQ_EFORMAT, "corrupt header");
        if (archive_entry_filetype(e) == AE_IFREG)
            list_add(&names, entry_name(e));
    }
    if (names.count == 1)
        return FTQ_OK;
    return ftq_set_error(FTQ_EFORMAT, "cannot read archive '%s': it holds %zu files (%s); name one as '%s:MEMBER'",
                         s->path, names.count, list_str(&names), s->path);
}

int ftq_source_read(ftq_source *s, void *buf, size_t cap, size_t *got)
{
    *got = 0;
    if (s->fp) {
        size_t n = fread(buf, 1, cap, s->fp);
        if (n == 0 && ferror(s->fp))
            return ftq_set_error(FTQ_EIO, "cannot read '%s': %s", s->spec, strerror(errno));
        *got = n;
        return FTQ_OK;
    }
    if (s->at_end || cap == 0)
        return FTQ_OK;
    la_ssize_t r = archive_read_data(s->ar, buf, cap);
    if (r < 0) {
        const char *why = archive_error_string(s->ar);
        return ftq_set_error(FTQ_EFORMAT, "cannot read '%s': %s", s->spec, why ? why : "corrupt archive data");
    }
    if (r == 0) {
        s->at_end = 1;
        return ftq_source_check_single(s);
    }
    *got = (size_t)r;
    return FTQ_OK;
}

const char *ftq_source_name(const ftq_source *s) { return s->name; }
const char *ftq_source_spec(const ftq_source *s) { return s->spec; }
int64_t ftq_source_size(const ftq_source *s) { return s->size; }

int64_t ftq_source_size_hint(const ftq_source *s)
{
    return s->ar && s->size > FTQ_SOURCE_HINT_MAX ? FTQ_SOURCE_HINT_MAX : s->size;
}

void ftq_source_close(ftq_source *s)
{
    if (!s)
        return;
    if (s->fp)
        fclose(s->fp);
    if (s->ar)
        archive_read_free(s->ar);
    free(s->spec);
    free(s->path);
    free(s->member);
    free(s->name);
    free(s);
}
