/* dataset.c - labeled CSV / TSV / JSONL datasets and plain text, streamed from files or archive members.
 * Invariants: parsed block by block, only the current row is buffered and only texts are kept (one
 * arena, stable pointers); a row's line is where it starts; row errors read "SOURCE:LINE: expected". */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ftq.h"
#include "io/archive.h"
#include "io/json_util.h"
#include "io/unicode.h"

#define READ_BLOCK 65536
#define MAX_TEXT ((size_t)INT32_MAX / 2) /* what the tokenizer encodes at once: a larger text (a
                                            decompression bomb, say) stops here, not at 2 GB+ */
#define MAX_ROW ((size_t)64 << 20) /* a longer row is bad (and usually a runaway quote) */
#define MAX_LABEL_ID 65535         /* larger integer labels are treated as names */
#define ARENA_MIN ((size_t)64 << 10)
#define ARENA_MAX ((size_t)4 << 20)

/* ---- arena: every text in a few large blocks ---------------------------------------- */

typedef struct {
    char **blocks;
    size_t n, cap;
    char *cur; /* block being filled */
    size_t used, size;
    size_t bytes; /* allocated in all blocks */
} arena;

static int arena_push(arena *a, char *blk)
{
    if (a->n == a->cap) {
        size_t nc = a->cap ? 2 * a->cap : 16;
        char **nb = realloc(a->blocks, nc * sizeof *nb);
        if (!nb)
            return -1;
        a->blocks = nb;
        a->cap = nc;
    }
    a->blocks[a->n++] = blk;
    return 0;
}

static char *arena_dup(arena *a, const char *s, size_t len)
{
    size_t need = len + 1;
    char *p;
    if (need >= ARENA_MIN) { /* its own block, the current one keeps filling */
        p = malloc(need);
        if (!p || arena_push(a, p) != 0) {
            free(p);
            return NULL;
        }
        a->bytes += need;
    } else {
        if (!a->cur || a->size - a->used < need) {
            /* blocks grow with the arena so the unused tail stays under a quarter */
            size_t sz = a->bytes / 4 < ARENA_MIN ? ARENA_MIN : a->bytes / 4 > ARENA_MAX ? ARENA_MAX : a->bytes / 4;
            char *blk = malloc(sz);
            if (!blk || arena_push(a, blk) != 0) {
                free(blk);
                return NULL;
            }
            a->cur = blk;
            a->used = 0;
            a->size = sz;
            a->bytes += sz;
        }
        p = a->cur + a->used;
        a->used += need;
    }
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

static void arena_free(arena *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->blocks[i]);
    free(a->blocks);
    memset(a, 0, sizeof *a);
}

/* ---- label set: distinct strings -> index (open addressing) -------------------------- */

typedef struct {
    char **names;
    size_t n, cap;
    uint32_t *slots; /* index + 1, 0 = empty */
    size_t nslots;   /* power of two */
} label_set;

static uint64_t hash_str(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static long set_find(const label_set *ls, const char *s, size_t n)
{
    if (!ls->nslots)
        return -1;
    for (size_t i = hash_str(s, n) & (ls->nslots - 1);; i = (i + 1) & (ls->nslots - 1)) {
        uint32_t v = ls->slots[i];
        if (!v)
            return -1;
        const char *c = ls->names[v - 1];
        if (strncmp(c, s, n) == 0 && c[n] == '\0')
            return (long)(v - 1);
    }
}

static int set_rehash(label_set *ls, size_t nslots)
{
    uint32_t *ns = calloc(nslots, sizeof *ns);
    if (!ns)
        return -1;
    for (size_t k = 0; k < ls->n; k++) {
        size_t i = hash_str(ls->names[k], strlen(ls->names[k])) & (nslots - 1);
        while (ns[i])
            i = (i + 1) & (nslots - 1);
        ns[i] = (uint32_t)(k + 1);
    }
    free(ls->slots);
    ls->slots = ns;
    ls->nslots = nslots;
    return 0;
}

/* Index of s, inserting it if new; -1 if out of memory. */
static long set_add(label_set *ls, const char *s, size_t n)
{
    long f = set_find(ls, s, n);
    if (f >= 0)
        return f;
    if (ls->n >= INT32_MAX - 1)
        return -1;
    if (2 * (ls->n + 1) > ls->nslots && set_rehash(ls, ls->nslots ? 2 * ls->nslots : 16) != 0)
        return -1;
    if (ls->n == ls->cap) {
        size_t nc = ls->cap ? 2 * ls->cap : 8;
        char **nn = realloc(ls->names, nc * sizeof *nn);
        if (!nn)
            return -1;
        ls->names = nn;
        ls->cap = nc;
    }
    char *c = malloc(n + 1);
    if (!c)
        return -1;
    memcpy(c, s, n);
    c[n] = '\0';
    ls->names[ls->n] = c;
    size_t i = hash_str(s, n) & (ls->nslots - 1);
    while (ls->slots[i])
        i = (i + 1) & (ls->nslots - 1);
    ls->slots[i] = (uint32_t)(ls->n + 1);
    return (long)ls->n++;
}

static void set_free(label_set *ls)
{
    for (size_t i = 0; i < ls->n; i++)
        free(ls->names[i]);
    free(ls->names);
    free(ls->slots);
    memset(ls, 0, sizeof *ls);
}

/* ---- the dataset ---------------------------------------------------------------------- */

struct ftq_dataset {
    char *source;
    size_t n, cap;
    const char **texts; /* into the arena */
    int32_t *labels;
    size_t *lines;
    char **label_names; /* num_labels entries (NULL if none) */
    int num_labels;
    size_t bad_rows;
    size_t peak_load;
    arena ar;
};

ftq_dataset_params ftq_dataset_default_params(void)
{
    ftq_dataset_params p;
    memset(&p, 0, sizeof p);
    p.format = FTQ_DATA_AUTO;
    p.require_labels = 1;
    return p;
}

void ftq_dataset_free(ftq_dataset *d)
{
    if (!d)
        return;
    free(d->source);
    free(d->texts);
    free(d->labels);
    free(d->lines);
    if (d->label_names)
        for (int i = 0; i < d->num_labels; i++)
            free(d->label_names[i]);
    free(d->label_names);
    arena_free(&d->ar);
    free(d);
}

size_t ftq_dataset_size(const ftq_dataset *d) { return d ? d->n : 0; }
const char *ftq_dataset_text(const ftq_dataset *d, size_t i) { return d && i < d->n ? d->texts[i] : NULL; }
int ftq_dataset_label(const ftq_dataset *d, size_t i) { return d && i < d->n ? d->labels[i] : -1; }
size_t ftq_dataset_line(const ftq_dataset *d, size_t i) { return d && i < d->n ? d->lines[i] : 0; }
int ftq_dataset_num_labels(const ftq_dataset *d) { return d ? d->num_labels : 0; }
size_t ftq_dataset_bad_rows(const ftq_dataset *d) { return d ? d->bad_rows : 0; }
const char *ftq_dataset_source(const ftq_dataset *d) { return d ? d->source : NULL; }

const char *const *ftq_dataset_label_names(const ftq_dataset *d)
{
    return d ? (const char *const *)d->label_names : NULL;
}

size_t ftq_dataset_memory(const ftq_dataset *d, size_t *peak_load)
{
    if (peak_load)
        *peak_load = d ? d->peak_load : 0;
    if (!d)
        return 0;
    size_t b = sizeof *d + d->ar.bytes + d->ar.cap * sizeof(char *) +
               d->cap * (sizeof *d->texts + sizeof *d->labels + sizeof *d->lines);
    for (int i = 0; i < d->num_labels; i++)
        b += sizeof(char *) + strlen(d->label_names[i]) + 1;
    return b;
}

/* ---- the loader ----------------------------------------------------------------------- */

enum { S_ROW_START, S_FIELD_START, S_UNQUOTED, S_QUOTED, S_QUOTE_SEEN };

typedef struct {
    const ftq_dataset_params *p;
    ftq_dataset *d;
    const char *src; /* for messages */
    ftq_data_format fmt;
    char delim;
    int quoting;
    int fixed;          /* labels come from p->label_names */
    int by_index;       /* fixed names none of which is an integer: "0".."n-1" may name them */
    label_set labels;   /* fixed names, or the distinct labels seen */

    /* the current row: fields NUL-terminated one after another in rb; field i is
     * rb[fstart[i] .. fstart[i+1] - 1) */
    char *rb;
    size_t rlen, rcap;
    size_t *fstart;
    size_t nf, fcap;
    int overflow;
    int row_bad;
    char row_err[320];
    size_t line;     /* physical line being read, 1-based */
    size_t row_line; /* where the current row started */
    int state;
    int pending_cr;

    /* header (CSV/TSV) */
    int have_header;
    size_t hdr_nf;
    long text_idx, label_idx;
    char text_what[80], label_what[80]; /* "column 'sentence'" for messages */
    char expect[200]; /* "2 fields (text, label)" */
} loader;

static int oom(const loader *L) { return ftq_set_error(FTQ_ENOMEM, "cannot load '%s': out of memory", L->src); }

static void row_error(loader *L, const char *fmt, ...)
{
    if (L->row_bad)
        return;
    L->row_bad = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(L->row_err, sizeof L->row_err, fmt, ap);
    va_end(ap);
}

/* A bad data row: an error, or counted and skipped with skip_bad_rows. */
static int bad_row(loader *L, const char *fmt, ...)
{
    if (L->p->skip_bad_rows) {
        L->d->bad_rows++;
        return FTQ_OK;
    }
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ftq_set_error(FTQ_EFORMAT, "%s:%zu: %s", L->src, L->row_line, msg);
}

/* s[0..n) quoted for a message, cut after 40 bytes (at a UTF-8 boundary). */
static const char *quote_cut(const char *s, size_t n, char *buf, size_t cap)
{
    size_t k = n;
    if (k > 40) {
        k = 40;
        while (k > 0 && ((unsigned char)s[k] & 0xc0) == 0x80)
            k--;
    }
    snprintf(buf, cap, "'%.*s%s'", (int)k, s, k < n ? "..." : "");
    return buf;
}

/* "a, b, c" from the names, cut at about `cap` bytes with the total count. */
static void join_names(char *buf, size_t cap, char *const *names, size_t n)
{
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t k = strlen(names[i]);
        if (len + k + 40 > cap) {
            snprintf(buf + len, cap - len, "%s... (%zu in all)", i ? ", " : "", n);
            return;
        }
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", names[i]);
    }
}

static int row_append(loader *L, const char *s, size_t n)
{
    if (L->overflow)
        return FTQ_OK;
    if (L->rlen + n + 1 > MAX_ROW) {
        L->overflow = 1;
        return FTQ_OK;
    }
    if (L->rlen + n + 1 > L->rcap) {
        size_t nc = L->rcap ? L->rcap : 1024;
        while (nc < L->rlen + n + 1)
            nc *= 2;
        char *nb = realloc(L->rb, nc);
        if (!nb)
            return oom(L);
        L->rb = nb;
        L->rcap = nc;
    }
    memcpy(L->rb + L->rlen, s, n);
    L->rlen += n;
    return FTQ_OK;
}

static int field_end(loader *L)
{
    if (L->overflow)
        return FTQ_OK;
    int rc = row_append(L, "", 1);
    if (rc != FTQ_OK || L->overflow)
        return rc;
    if (L->nf + 2 > L->fcap) {
        size_t nc = L->fcap ? 2 * L->fcap : 16;
        size_t *nf = realloc(L->fstart, nc * sizeof *nf);
        if (!nf)
            return oom(L);
        L->fstart = nf;
        L->fcap = nc;
    }
    L->fstart[0] = 0; /* every row starts at rb[0] */
    L->fstart[++L->nf] = L->rlen;
    return FTQ_OK;
}

static void row_begin(loader *L)
{
    L->rlen = 0;
    L->nf = 0;
    L->overflow = 0;
    L->row_bad = 0;
    L->row_line = L->line;
}

static const char *field(const loader *L, size_t i, size_t *len)
{
    *len = L->fstart[i + 1] - L->fstart[i] - 1;
    return L->rb + L->fstart[i];
}

static const char *trim(const char *s, size_t *n)
{
    while (*n && (s[0] == ' ' || s[0] == '\t' || s[0] == '\r' || s[0] == '\n'))
        s++, (*n)--;
    while (*n && (s[*n - 1] == ' ' || s[*n - 1] == '\t' || s[*n - 1] == '\r' || s[*n - 1] == '\n'))
        (*n)--;
    return s;
}

/* 1 and *v if s[0..n) is a plain decimal non-negative integer (at most 9 digits). */
static int parse_uint(const char *s, size_t n, long *v)
{
    if (n == 0 || n > 9)
        return 0;
    long x = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        x = 10 * x + (s[i] - '0');
    }
    *v = x;
    return 1;
}

/* Map a (trimmed) label to its index: in the fixed set by name, then by integer index; else
 * the index of its distinct string (remapped in finish_labels). 1 ok, 0 bad row (reported),
 * -1 error (rc set). */
static int resolve_label(loader *L, const char *s, size_t n, int32_t *out, int *rc)
{
    *rc = FTQ_OK;
    if (L->fixed) {
        long k = set_find(&L->labels, s, n);
        long v;
        if (k < 0 && L->by_index && parse_uint(s, n, &v) && v < (long)L->labels.n)
            k = v;
        if (k >= 0) {
            *out = (int32_t)k;
            return 1;
        }
        char q[64], names[400];
        join_names(names, sizeof names, L->labels.names, L->labels.n);
        *rc = bad_row(L, "label %s is not one of: %s", quote_cut(s, n, q, sizeof q), names);
        return 0;
    }
    long k = set_add(&L->labels, s, n);
    if (k < 0) {
        *rc = oom(L);
        return -1;
    }
    *out = (int32_t)k;
    return 1;
}

/* Check a field for invalid UTF-8 and NUL bytes; 1 if clean, else reports the row. */
static int clean_field(loader *L, const char *s, size_t n, const char *what, int *rc)
{
    size_t bad = ftq_utf8_invalid_offset(s, n);
    if (bad < n) {
        *rc = bad_row(L, "invalid UTF-8 in %s at byte %zu (0x%02x)", what, bad, (unsigned char)s[bad]);
        return 0;
    }
    const char *z = memchr(s, '\0', n);
    if (z) {
        *rc = bad_row(L, "NUL byte in %s at byte %zu", what, (size_t)(z - s));
        return 0;
    }
    return 1;
}

static int store_row(loader *L, const char *text, size_t tlen, int32_t label)
{
    ftq_dataset *d = L->d;
    if (d->n == d->cap) {
        size_t nc = d->cap ? 2 * d->cap : 1024;
        const char **nt = realloc(d->texts, nc * sizeof *nt);
        if (nt)
            d->texts = nt;
        int32_t *nl = realloc(d->labels, nc * sizeof *nl);
        if (nl)
            d->labels = nl;
        size_t *nn = realloc(d->lines, nc * sizeof *nn);
        if (nn)
            d->lines = nn;
        if (!nt || !nl || !nn)
            return oom(L);
        d->cap = nc;
    }
    const char *t = arena_dup(&d->ar, text, tlen);
    if (!t)
        return oom(L);
    d->texts[d->n] = t;
    d->labels[d->n] = label;
    d->lines[d->n] = L->row_line;
    d->n++;
    return FTQ_OK;
}

/* ---- CSV / TSV ------------------------------------------------------------------------ */

static long header_find(loader *L, const char *name, int *dup)
{
    long found = -1;
    *dup = 0;
    for (size_t i = 0; i < L->nf; i++) {
        size_t n;
        const char *f = field(L, i, &n);
        f = trim(f, &n);
        if (strlen(name) == n && memcmp(f, name, n) == 0) {
            if (found >= 0)
                *dup = 1;
            else
                found = (long)i;
        }
    }
    return found;
}

static int header_columns(loader *L, char *buf, size_t cap)
{
    char **names = malloc((L->nf ? L->nf : 1) * sizeof *names);
    if (!names)
        return oom(L);
    for (size_t i = 0; i < L->nf; i++)
        names[i] = L->rb + L->fstart[i];
    join_names(buf, cap, names, L->nf);
    free(names);
    return FTQ_OK;
}

static int take_header(loader *L)
{
    if (L->overflow)
        return ftq_set_error(FTQ_EFORMAT, "%s:%zu: header row longer than %zu bytes", L->src, L->row_line, MAX_ROW);
    if (L->row_bad)
        return ftq_set_error(FTQ_EFORMAT, "%s:%zu: %s", L->src, L->row_line, L->row_err);
    for (size_t i = 0; i < L->nf; i++) {
        size_t n;
        const char *f = field(L, i, &n);
        if (ftq_utf8_invalid_offset(f, n) < n)
            return ftq_set_error(FTQ_EFORMAT, "%s:%zu: invalid UTF-8 in header column %zu", L->src, L->row_line, i + 1);
    }
    const ftq_dataset_params *p = L->p;
    int dup = 0;
    const char *tname = p->text_col ? p->text_col : "text";
    L->text_idx = header_find(L, tname, &dup);
    if (L->text_idx < 0 && !p->text_col) {
        tname = "sentence";
        L->text_idx = header_find(L, tname, &dup);
    }
    char cols[600];
    int rc = header_columns(L, cols, sizeof cols);
    if (rc != FTQ_OK)
        return rc;
    if (L->text_idx < 0) {
        if (p->text_col)
            return ftq_set_error(FTQ_EFORMAT, "cannot load '%s': no text column '%s' in the header (columns: %s)",
                                 L->src, p->text_col, cols);
        return ftq_set_error(FTQ_EFORMAT,
                             "cannot load '%s': no text column 'text' or 'sentence' in the header (columns: %s)",
                             L->src, cols);
    }
    if (dup)
        return ftq_set_error(FTQ_EFORMAT, "cannot load '%s': column '%s' appears more than once in the header",
                             L->src, tname);
    const char *lname = p->label_col ? p->label_col : "label";
    L->label_idx = header_find(L, lname, &dup);
    if (L->label_idx < 0 && (p->require_labels || p->label_col))
        return ftq_set_error(FTQ_EFORMAT, "cannot load '%s': no label column '%s' in the header (columns: %s)", L->src,
                             lname, cols);
    if (dup)
        return ftq_set_error(FTQ_EFORMAT, "cannot load '%s': column '%s' appears more than once in the header",
                             L->src, lname);
    L->hdr_nf = L->nf;
    snprintf(L->text_what, sizeof L->text_what, "column '%.60s'", tname);
    snprintf(L->label_what, sizeof L->label_what, "column '%.60s'", lname);
    snprintf(L->expect, sizeof L->expect, "%zu field%s (%.160s)", L->nf, L->nf == 1 ? "" : "s", cols);
    L->have_header = 1;
    return FTQ_OK;
}

static int csv_row_end(loader *L)
{
    if (!L->have_header)
        return take_header(L);
    if (L->overflow)
        return bad_row(L, "row longer than %zu bytes (an unterminated quoted field?)", MAX_ROW);
    if (L->row_bad)
        return bad_row(L, "%s", L->row_err);
    if (L->nf != L->hdr_nf)
        return bad_row(L, "expected %s, got %zu", L->expect, L->nf);
    int rc = FTQ_OK;
    size_t tlen, llen = 0;
    const char *text = field(L, (size_t)L->text_idx, &tlen);
    const char *lab = L->label_idx >= 0 ? field(L, (size_t)L->label_idx, &llen) : NULL;
    if (!clean_field(L, text, tlen, L->text_what, &rc))
        return rc;
    if (lab && !clean_field(L, lab, llen, L->label_what, &rc))
        return rc;
    if (tlen == 0)
        return bad_row(L, "empty text");
    int32_t label = -1;
    if (lab)
        lab = trim(lab, &llen);
    if (!lab || llen == 0) {
        if (L->p->require_labels)
            return bad_row(L, "empty label");
    } else if (resolve_label(L, lab, llen, &label, &rc) != 1) {
        return rc;
    }
    return store_row(L, text, tlen, label);
}

/* One byte of CSV/TSV (after CR handling). */
static int csv_step(loader *L, char c)
{
    int rc = FTQ_OK;
    switch (L->state) {
    case S_ROW_START:
        if (c == '\n')
            return FTQ_OK; /* blank line */
        row_begin(L);
        L->state = S_FIELD_START;
        /* fall through */
    case S_FIELD_START:
        if (c == '"' && L->quoting) {
            L->state = S_QUOTED;
        } else if (c == L->delim) {
            rc = field_end(L);
        } else if (c == '\n') {
            if ((rc = field_end(L)) == FTQ_OK)
                rc = csv_row_end(L);
            L->state = S_ROW_START;
        } else {
            rc = row_append(L, &c, 1);
            L->state = S_UNQUOTED;
        }
        return rc;
    case S_UNQUOTED:
        if (c == L->delim) {
            rc = field_end(L);
            L->state = S_FIELD_START;
        } else if (c == '\n') {
            if ((rc = field_end(L)) == FTQ_OK)
                rc = csv_row_end(L);
            L->state = S_ROW_START;
        } else {
            rc = row_append(L, &c, 1);
        }
        return rc;
    case S_QUOTED:
        if (c == '"')
            L->state = S_QUOTE_SEEN;
        else
            rc = row_append(L, &c, 1);
        return rc;
    default: /* S_QUOTE_SEEN: an escaped quote or the closing one */
        if (c == '"') {
            rc = row_append(L, &c, 1);
            L->state = S_QUOTED;
        } else if (c == L->delim) {
            rc = field_end(L);
            L->state = S_FIELD_START;
        } else if (c == '\n') {
            if ((rc = field_end(L)) == FTQ_OK)
                rc = csv_row_end(L);
            L->state = S_ROW_START;
        } else {
            if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7f)
                row_error(L, "expected '%c' or the end of the line after a closing quote, got '%c'", L->delim, c);
            else
                row_error(L, "expected '%c' or the end of the line after a closing quote, got byte 0x%02x",
                          L->delim, (unsigned char)c);
            rc = row_append(L, &c, 1);
            L->state = S_UNQUOTED;
        }
        return rc;
    }
}

static int csv_feed(loader *L, const char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = buf[i];
        int rc;
        if (L->pending_cr) {
            L->pending_cr = 0;
            if (c != '\n' && (rc = csv_step(L, '\r')) != FTQ_OK) /* a lone CR is data */
                return rc;
        }
        if (c == '\r' && L->state != S_QUOTED) {
            L->pending_cr = 1;
            continue;
        }
        if ((rc = csv_step(L, c)) != FTQ_OK)
            return rc;
        if (c == '\n')
            L->line++;
    }
    return FTQ_OK;
}

static int csv_finish(loader *L)
{
    L->pending_cr = 0; /* a final CR ends the last line */
    switch (L->state) {
    case S_ROW_START:
        return FTQ_OK;
    case S_QUOTED:
        L->row_bad = 0;
        row_error(L, "unterminated quoted field");
        L->overflow = 0;
        if (!L->have_header)
            return ftq_set_error(FTQ_EFORMAT, "%s:%zu: %s", L->src, L->row_line, L->row_err);
        return bad_row(L, "%s", L->row_err);
    default: {
        int rc = field_end(L);
        L->state = S_ROW_START;
        return rc == FTQ_OK ? csv_row_end(L) : rc;
    }
    }
}

/* ---- JSONL ---------------------------------------------------------------------------- */

/* The value of key in obj; *dup if the key occurs twice. */
static cJSON *json_key(cJSON *obj, const char *key, int *dup)
{
    cJSON *found = NULL;
    *dup = 0;
    for (cJSON *c = obj->child; c; c = c->next)
        if (c->string && strcmp(c->string, key) == 0) {
            if (found)
                *dup = 1;
            else
                found = c;
        }
    return found;
}

static int jsonl_line(loader *L)
{
    const char *s = L->rb;
    size_t n = L->rlen;
    if (n && s[n - 1] == '\r')
        n--;
    size_t tn = n;
    trim(s, &tn);
    if (tn == 0 && !L->overflow)
        return FTQ_OK; /* blank line */
    if (L->overflow)
        return bad_row(L, "line longer than %zu bytes", MAX_ROW);
    size_t bad = ftq_utf8_invalid_offset(s, n);
    if (bad < n)
        return bad_row(L, "invalid UTF-8 at byte %zu (0x%02x)", bad, (unsigned char)s[bad]);
    bad = ftq_json_check_text(s, n);
    if (bad < n)
        return bad_row(L, "invalid JSON: control byte 0x%02x at byte %zu", (unsigned char)s[bad], bad);
    char why[128];
    cJSON *root = ftq_json_parse_strict(s, n, why, sizeof why, NULL);
    if (!root)
        return strncmp(why, "invalid JSON", 12) == 0 ? bad_row(L, "%s", why) : bad_row(L, "invalid JSON: %s", why);
    int rc = FTQ_OK, dup = 0;
    const ftq_dataset_params *p = L->p;
    if (!cJSON_IsObject(root)) {
        rc = bad_row(L, "expected a JSON object, got %s", ftq_json_type(root));
        goto done;
    }
    const char *tkey = p->text_col ? p->text_col : "text";
    cJSON *t = json_key(root, tkey, &dup);
    if (!t && !p->text_col) {
        tkey = "sentence";
        t = json_key(root, tkey, &dup);
    }
    if (!t) {
        rc = p->text_col ? bad_row(L, "missing key \"%s\"", p->text_col)
                         : bad_row(L, "missing key \"text\" (or \"sentence\")");
        goto done;
    }
    if (dup) {
        rc = bad_row(L, "duplicate key \"%s\"", tkey);
        goto done;
    }
    char desc[64];
    if (!cJSON_IsString(t) || !t->valuestring) {
        rc = bad_row(L, "\"%s\" must be a string, got %s", tkey, ftq_json_describe(t, desc, sizeof desc));
        goto done;
    }
    size_t tlen = strlen(t->valuestring);
    if (tlen == 0) {
        rc = bad_row(L, "empty text");
        goto done;
    }
    const char *lkey = p->label_col ? p->label_col : "label";
    cJSON *l = json_key(root, lkey, &dup);
    if (dup) {
        rc = bad_row(L, "duplicate key \"%s\"", lkey);
        goto done;
    }
    int32_t label = -1;
    char num[32];
    const char *ls = NULL;
    size_t ln = 0;
    if (l && cJSON_IsString(l) && l->valuestring) {
        ln = strlen(l->valuestring);
        ls = trim(l->valuestring, &ln);
    } else if (l && cJSON_IsNumber(l)) {
        int64_t v;
        if (!ftq_json_int(l, INT64_MIN / 2, INT64_MAX / 2, &v)) {
            rc = bad_row(L, "\"%s\" must be a string or an integer, got %s", lkey,
                         ftq_json_describe(l, desc, sizeof desc));
            goto done;
        }
        ln = (size_t)snprintf(num, sizeof num, "%lld", (long long)v);
        ls = num;
    } else if (l && !cJSON_IsNull(l)) {
        rc = bad_row(L, "\"%s\" must be a string or an integer, got %s", lkey, ftq_json_describe(l, desc, sizeof desc));
        goto done;
    }
    if (!ls || ln == 0) {
        if (p->require_labels) {
            rc = !l ? bad_row(L, "missing key \"%s\"", lkey) : bad_row(L, "empty label");
            goto done;
        }
    } else if (resolve_label(L, ls, ln, &label, &rc) != 1) {
        goto done;
    }
    rc = store_row(L, t->valuestring, tlen, label);
done:
    cJSON_Delete(root);
    return rc;
}

static int jsonl_feed(loader *L, const char *buf, size_t n)
{
    while (n) {
        const char *nl = memchr(buf, '\n', n);
        size_t k = nl ? (size_t)(nl - buf) : n;
        if (L->state == S_ROW_START) {
            row_begin(L);
            L->state = S_UNQUOTED;
        }
        int rc = row_append(L, buf, k);
        if (rc != FTQ_OK)
            return rc;
        if (!nl)
            return FTQ_OK;
        L->state = S_ROW_START;
        if ((rc = jsonl_line(L)) != FTQ_OK)
            return rc;
        L->line++;
        buf += k + 1;
        n -= k + 1;
    }
    return FTQ_OK;
}

static int jsonl_finish(loader *L)
{
    if (L->state == S_ROW_START)
        return FTQ_OK;
    L->state = S_ROW_START;
    return jsonl_line(L);
}

/* ---- labels and the whole load -------------------------------------------------------- */

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Turn the collected distinct labels into ids (all small non-negative integers) or sorted
 * names, and move the names into the dataset. */
static int finish_labels(loader *L)
{
    ftq_dataset *d = L->d;
    label_set *ls = &L->labels;
    size_t nl = ls->n;
    if (nl == 0)
        return FTQ_OK;
    if (L->fixed) {
        d->label_names = ls->names; /* copied names, in the given order */
        d->num_labels = (int)nl;
        ls->names = NULL;
        ls->n = 0;
        return FTQ_OK;
    }
    int32_t *map = malloc(nl * sizeof *map);
    if (!map)
        return oom(L);
    long maxv = -1, v;
    int all_int = 1;
    for (size_t i = 0; i < nl && all_int; i++) {
        if (!parse_uint(ls->names[i], strlen(ls->names[i]), &v) || v > MAX_LABEL_ID)
            all_int = 0;
        else if (v > maxv)
            maxv = v;
    }
    if (all_int) {
        for (size_t i = 0; i < nl; i++) {
            parse_uint(ls->names[i], strlen(ls->names[i]), &v);
            map[i] = (int32_t)v;
        }
        d->label_names = calloc((size_t)maxv + 1, sizeof *d->label_names);
        if (!d->label_names) {
            free(map);
            return oom(L);
        }
        d->num_labels = (int)maxv + 1;
        for (long k = 0; k <= maxv; k++) {
            char b[24];
            snprintf(b, sizeof b, "%ld", k);
            if (!(d->label_names[k] = strdup(b))) {
                free(map);
                return oom(L);
            }
        }
    } else {
        char **sorted = malloc(nl * sizeof *sorted);
        if (!sorted) {
            free(map);
            return oom(L);
        }
        memcpy(sorted, ls->names, nl * sizeof *sorted);
        qsort(sorted, nl, sizeof *sorted, cmp_name);
        for (size_t r = 0; r < nl; r++)
            map[set_find(ls, sorted[r], strlen(sorted[r]))] = (int32_t)r;
        d->label_names = sorted; /* takes the strings over from the set */
        d->num_labels = (int)nl;
        free(ls->names);
        ls->names = NULL;
        ls->n = 0;
    }
    for (size_t i = 0; i < d->n; i++)
        if (d->labels[i] >= 0)
            d->labels[i] = map[d->labels[i]];
    free(map);
    return FTQ_OK;
}

static ftq_data_format format_from_name(const char *name)
{
    size_t n = strlen(name);
    static const struct {
        const char *ext;
        ftq_data_format f;
    } exts[] = {{".csv", FTQ_DATA_CSV}, {".tsv", FTQ_DATA_TSV}, {".jsonl", FTQ_DATA_JSONL}, {".json", FTQ_DATA_JSONL}};
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        size_t e = strlen(exts[i].ext);
        if (n > e && strcasecmp(name + n - e, exts[i].ext) == 0)
            return exts[i].f;
    }
    return FTQ_DATA_TEXT;
}

static int check_params(const char *source, const ftq_dataset_params *p)
{
    if (p->format < FTQ_DATA_AUTO || p->format > FTQ_DATA_TEXT)
        return ftq_set_error(FTQ_EINVAL, "cannot load '%s': invalid format %d", source, (int)p->format);
    if (p->text_col && !*p->text_col)
        return ftq_set_error(FTQ_EINVAL, "cannot load '%s': empty text column name", source);
    if (p->label_col && !*p->label_col)
        return ftq_set_error(FTQ_EINVAL, "cannot load '%s': empty label column name", source);
    if (!p->label_names)
        return FTQ_OK;
    if (p->n_label_names <= 0)
        return ftq_set_error(FTQ_EINVAL, "cannot load '%s': label_names given with n_label_names = %d", source,
                             p->n_label_names);
    for (int i = 0; i < p->n_label_names; i++)
        if (!p->label_names[i] || !p->label_names[i][0])
            return ftq_set_error(FTQ_EINVAL, "cannot load '%s': label name %d is empty", source, i);
    return FTQ_OK;
}

/* Stream the source through the parser. *parse_err = 1 if the failure is about the data
 * rather than reading it. */
static int load_stream(loader *L, ftq_source *s, int *parse_err)
{
    *parse_err = 0;
    char *blk = malloc(READ_BLOCK);
    if (!blk)
        return oom(L);
    int rc = FTQ_OK, first = 1;
    for (;;) {
        size_t got = 0, off = 0;
        if ((rc = ftq_source_read(s, blk, READ_BLOCK, &got)) != FTQ_OK)
            break;
        if (first && got) {
            /* the first read may be short in an archive: top it up so a BOM is whole */
            while (got < 3) {
                size_t more = 0;
                if ((rc = ftq_source_read(s, blk + got, READ_BLOCK - got, &more)) != FTQ_OK || !more)
                    break;
                got += more;
            }
            if (rc != FTQ_OK)
                break;
            if (got >= 3 && memcmp(blk, "\xEF\xBB\xBF", 3) == 0)
                off = 3;
            if (got >= 2 && ((unsigned char)blk[0] + (unsigned char)blk[1] == 0xff + 0xfe) &&
                ((unsigned char)blk[0] == 0xff || (unsigned char)blk[0] == 0xfe)) {
                rc = ftq_set_error(FTQ_EFORMAT,
                                   "cannot load '%s': the text is UTF-16 (byte order mark 0x%02x 0x%02x); "
                                   "convert it to UTF-8",
                                   L->src, (unsigned char)blk[0], (unsigned char)blk[1]);
                *parse_err = 1;
                break;
            }
            first = 0;
        }
        if (!got) {
            rc = L->fmt == FTQ_DATA_JSONL ? jsonl_finish(L) : csv_finish(L);
            *parse_err = rc != FTQ_OK;
            break;
        }
        rc = L->fmt == FTQ_DATA_JSONL ? jsonl_feed(L, blk + off, got - off) : csv_feed(L, blk + off, got - off);
        if (rc != FTQ_OK) {
            *parse_err = 1;
            break;
        }
    }
    free(blk);
    size_t peak = READ_BLOCK + L->rcap + L->fcap * sizeof *L->fstart;
    if (peak > L->d->peak_load)
        L->d->peak_load = peak;
    return rc;
}

int ftq_dataset_load(const char *source, const ftq_dataset_params *params, ftq_dataset **out)
{
    if (!out)
        return ftq_set_error(FTQ_EINVAL, "ftq_dataset_load: out is NULL");
    *out = NULL;
    if (!source)
        return ftq_set_error(FTQ_EINVAL, "ftq_dataset_load: source is NULL");
    ftq_dataset_params defaults = ftq_dataset_default_params();
    const ftq_dataset_params *p = params ? params : &defaults;
    int rc = check_params(source, p);
    if (rc != FTQ_OK)
        return rc;

    ftq_source *s = NULL;
    if ((rc = ftq_source_open(source, &s)) != FTQ_OK)
        return rc;
    loader L;
    memset(&L, 0, sizeof L);
    L.p = p;
    L.src = source;
    L.line = 1;
    L.state = S_ROW_START;
    L.fmt = p->format == FTQ_DATA_AUTO ? format_from_name(ftq_source_name(s)) : p->format;
    if (L.fmt == FTQ_DATA_TEXT) {
        rc = ftq_source_check_single(s);
        if (rc == FTQ_OK)
            rc = p->format == FTQ_DATA_TEXT
                     ? ftq_set_error(FTQ_EINVAL, "cannot load '%s' as a labeled dataset: the format is plain text",
                                     source)
                     : ftq_set_error(FTQ_EFORMAT,
                                     "cannot load '%s': unknown dataset format (expected a .csv, .tsv, .jsonl or "
                                     ".json name, or an explicit format)",
                                     source);
        ftq_source_close(s);
        return rc;
    }
    L.delim = L.fmt == FTQ_DATA_TSV ? '\t' : ',';
    L.quoting = L.fmt == FTQ_DATA_CSV;

    ftq_dataset *d = calloc(1, sizeof *d);
    L.d = d;
    if (!d || !(d->source = strdup(source))) {
        free(d);
        ftq_source_close(s);
        return ftq_set_error(FTQ_ENOMEM, "cannot load '%s': out of memory", source);
    }
    if (p->label_names) {
        /* an integer in the data names a class by index only when no class name is itself
         * an integer: with names {"-1", "0"}, a "1" is an unknown label, not class "0" */
        L.fixed = L.by_index = 1;
        for (int i = 0; i < p->n_label_names && rc == FTQ_OK; i++) {
            size_t before = L.labels.n;
            const char *nm = p->label_names[i];
            const char *digits = nm[0] == '-' || nm[0] == '+' ? nm + 1 : nm;
            if (digits[0] && strspn(digits, "0123456789") == strlen(digits))
                L.by_index = 0;
            if (set_add(&L.labels, nm, strlen(nm)) < 0)
                rc = oom(&L);
            else if (L.labels.n == before)
                rc = ftq_set_error(FTQ_EINVAL, "cannot load '%s': label name '%s' is given twice", source, nm);
        }
    }
    if (rc == FTQ_OK) {
        int parse_err = 0;
        rc = load_stream(&L, s, &parse_err);
        if (parse_err) { /* in a single-member archive, "it holds N files" wins */
            int rc2 = ftq_source_check_single(s);
            if (rc2 != FTQ_OK)
                rc = rc2;
        }
    }
    if (rc == FTQ_OK && L.fmt != FTQ_DATA_JSONL && !L.have_header)
        rc = ftq_set_error(FTQ_EFORMAT, "cannot load '%s': no data rows (the file is empty)", source);
    if (rc == FTQ_OK && d->n == 0) {
        if (d->bad_rows)
            rc = ftq_set_error(FTQ_EFORMAT, "cannot load '%s': no data rows (%zu bad row%s skipped)", source,
                               d->bad_rows, d->bad_rows == 1 ? "" : "s");
        else
            rc = ftq_set_error(FTQ_EFORMAT, "cannot load '%s': no data rows%s", source,
                               L.fmt == FTQ_DATA_JSONL ? "" : " (only a header)");
    }
    if (rc == FTQ_OK)
        rc = finish_labels(&L);
    if (rc == FTQ_OK && d->n < d->cap) { /* give back the doubling slack of the row arrays */
        const char **nt = realloc(d->texts, d->n * sizeof *nt);
        int32_t *nl = realloc(d->labels, d->n * sizeof *nl);
        size_t *nn = realloc(d->lines, d->n * sizeof *nn);
        d->texts = nt ? nt : d->texts;
        d->labels = nl ? nl : d->labels;
        d->lines = nn ? nn : d->lines;
        if (nt && nl && nn)
            d->cap = d->n;
    }
    free(L.rb);
    free(L.fstart);
    set_free(&L.labels);
    ftq_source_close(s);
    if (rc != FTQ_OK) {
        ftq_dataset_free(d);
        return rc;
    }
    *out = d;
    return FTQ_OK;
}

int ftq_dataset_detect_format(const char *source, ftq_data_format *fmt)
{
    if (!fmt)
        return ftq_set_error(FTQ_EINVAL, "ftq_dataset_detect_format: fmt is NULL");
    *fmt = FTQ_DATA_AUTO;
    if (!source)
        return ftq_set_error(FTQ_EINVAL, "ftq_dataset_detect_format: source is NULL");
    ftq_source *s = NULL;
    int rc = ftq_source_open(source, &s);
    if (rc != FTQ_OK)
        return rc;
    *fmt = format_from_name(ftq_source_name(s));
    ftq_source_close(s);
    return FTQ_OK;
}

/* ---- plain text ----------------------------------------------------------------------- */

int ftq_text_load(const char *source, char **text, size_t *len)
{
    if (!text)
        return ftq_set_error(FTQ_EINVAL, "ftq_text_load: text is NULL");
    *text = NULL;
    if (len)
        *len = 0;
    if (!source)
        return ftq_set_error(FTQ_EINVAL, "ftq_text_load: source is NULL");
    ftq_source *s = NULL;
    int rc = ftq_source_open(source, &s);
    if (rc != FTQ_OK)
        return rc;
    int64_t size = ftq_source_size_hint(s); /* an archive member's claimed size is capped */
    size_t cap = size >= 0 && (uint64_t)size < SIZE_MAX - 2 ? (size_t)size + 1 : READ_BLOCK;
    size_t n = 0;
    char *buf = NULL;
    if (cap > MAX_TEXT + 1)
        rc = ftq_set_error(FTQ_EFORMAT, "cannot load '%s': %lld bytes exceed %zu (the most ftq tokenizes at once)",
                           source, (long long)size, MAX_TEXT);
    else if (!(buf = malloc(cap)))
        rc = ftq_set_error(FTQ_ENOMEM, "cannot load '%s': out of memory for %zu bytes", source, cap);
    while (rc == FTQ_OK) {
        size_t got = 0;
        if (n + 1 < cap) {
            rc = ftq_source_read(s, buf + n, cap - n - 1, &got);
            if (rc != FTQ_OK || got == 0)
                break;
            n += got;
            continue;
        }
        /* full: probe for more before growing, so a file of the recorded size is read into
         * exactly size + 1 bytes */
        char probe[4096];
        rc = ftq_source_read(s, probe, sizeof probe, &got);
        if (rc != FTQ_OK || got == 0)
            break;
        if (n + got > MAX_TEXT) {
            rc = ftq_set_error(FTQ_EFORMAT, "cannot load '%s': the text exceeds %zu bytes (the most ftq tokenizes "
                               "at once)", source, MAX_TEXT);
            break;
        }
        size_t nc = 2 * cap > n + got + 1 ? 2 * cap : n + got + 1;
        char *nb = nc > cap ? realloc(buf, nc) : NULL;
        if (!nb) {
            rc = ftq_set_error(FTQ_ENOMEM, "cannot load '%s': out of memory", source);
            break;
        }
        buf = nb;
        cap = nc;
        memcpy(buf + n, probe, got);
        n += got;
    }
    ftq_source_close(s);
    if (rc == FTQ_OK) {
        size_t bad = ftq_utf8_invalid_offset(buf, n);
        if (bad < n) {
            size_t line = 1;
            for (size_t i = 0; i < bad; i++)
                line += buf[i] == '\n';
            rc = ftq_set_error(FTQ_EFORMAT, "cannot load '%s': invalid UTF-8 at byte %zu (line %zu, byte 0x%02x)",
                               source, bad, line, (unsigned char)buf[bad]);
        }
    }
    if (rc != FTQ_OK) {
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *text = buf;
    if (len)
        *len = n;
    return FTQ_OK;
}
