/* prune.c - magnitude, N:M and Wanda pruning with exact, deterministic selection: exactly
 * round(s * n) entries are zeroed, lowest score first, ties broken by position. Tensor and
 * global scopes use a two-pass radix select on the float bit patterns of |w| (no copy of
 * the weights); row-wise scopes sort (score, index) pairs per row. */
#include "include/ftq.h"
#include "include/ftq_prune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* For non-negative finite floats the IEEE bit pattern orders like the value. */
static uint32_t abs_key(float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    return u & 0x7fffffffu;
}

static int check_finite(const float *w, int64_t n, const char *what)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(w[i]))
            return ftq_set_error(FTQ_ENUMERIC, "cannot prune: %s has a non-finite value at index %lld", what,
                                 (long long)i);
    return FTQ_OK;
}

static int check_sparsity(float s)
{
    if (!(s >= 0.0f && s <= 1.0f))
        return ftq_set_error(FTQ_EINVAL, "cannot prune: sparsity %g outside [0, 1]", (double)s);
    return FTQ_OK;
}

static int64_t target_count(float s, int64_t n) { return (int64_t)llround((double)s * (double)n); }

/* ---- radix select over spans ------------------------------------------------------- */

/* The key of the k-th smallest |w| (1-based k) over all spans: the high 16 bits first,
 * then the low 16 bits among those that share the high half. */
static uint32_t kth_key(const ftq_prune_span *sp, size_t ns, int64_t k)
{
    int64_t *hist = calloc(65536, sizeof(int64_t));
    uint32_t hi = 0, lo = 0;
    if (!hist)
        return 0;
    for (size_t s = 0; s < ns; s++)
        for (int64_t i = 0; i < sp[s].n; i++)
            hist[abs_key(sp[s].w[i]) >> 16]++;
    int64_t acc = 0;
    for (hi = 0; hi < 65536; hi++) {
        if (acc + hist[hi] >= k)
            break;
        acc += hist[hi];
    }
    memset(hist, 0, 65536 * sizeof(int64_t));
    for (size_t s = 0; s < ns; s++)
        for (int64_t i = 0; i < sp[s].n; i++) {
            uint32_t key = abs_key(sp[s].w[i]);
            if ((key >> 16) == hi)
                hist[key & 0xffff]++;
        }
    int64_t need = k - acc;
    for (lo = 0; lo < 65536; lo++) {
        if (hist[lo] >= need)
            break;
        need -= hist[lo];
    }
    free(hist);
    return (hi << 16) | lo;
}

/* Zero exactly k entries: every key below the k-th key, then entries equal to it in span
 * order until k are gone. */
static int prune_spans(ftq_prune_span *sp, size_t ns, int64_t k)
{
    if (k <= 0)
        return FTQ_OK;
    int64_t total = 0;
    for (size_t s = 0; s < ns; s++)
        total += sp[s].n;
    if (k >= total) {
        for (size_t s = 0; s < ns; s++)
            memset(sp[s].w, 0, sizeof(float) * (size_t)sp[s].n);
        return FTQ_OK;
    }
    uint32_t t = kth_key(sp, ns, k);
    int64_t below = 0;
    for (size_t s = 0; s < ns; s++)
        for (int64_t i = 0; i < sp[s].n; i++)
            below += abs_key(sp[s].w[i]) < t;
    int64_t ties = k - below;
    for (size_t s = 0; s < ns; s++)
        for (int64_t i = 0; i < sp[s].n; i++) {
            uint32_t key = abs_key(sp[s].w[i]);
            if (key < t || (key == t && ties-- > 0))
                sp[s].w[i] = 0.0f;
        }
    return FTQ_OK;
}

int ftq_prune_global(ftq_prune_span *spans, size_t n_spans, float sparsity)
{
    int rc = check_sparsity(sparsity);
    int64_t total = 0;
    for (size_t s = 0; s < n_spans && rc == FTQ_OK; s++) {
        rc = check_finite(spans[s].w, spans[s].n, "a weight matrix");
        total += spans[s].n;
    }
    if (rc != FTQ_OK)
        return rc;
    return prune_spans(spans, n_spans, target_count(sparsity, total));
}

/* ---- per-row selection -------------------------------------------------------------- */

typedef struct {
    float score;
    int32_t idx;
} scored;

static int cmp_scored(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Zero the k lowest-scoring entries of row w[0..n) (scores from |w| * scale[j], scale NULL
 * = 1), using buf of n entries. */
static void prune_row(float *w, const float *scale, int64_t n, int64_t k, scored *buf)
{
    if (k <= 0)
        return;
    for (int64_t j = 0; j < n; j++) {
        buf[j].score = fabsf(w[j]) * (scale ? scale[j] : 1.0f);
        buf[j].idx = (int32_t)j;
    }
    qsort(buf, (size_t)n, sizeof(scored), cmp_scored);
    for (int64_t j = 0; j < k && j < n; j++)
        w[buf[j].idx] = 0.0f;
}

/* In every group of m, keep the n highest scores (ties: lower index kept). */
static void prune_row_nm(float *w, const float *scale, int64_t cols, int n, int m, scored *buf)
{
    for (int64_t g = 0; g < cols; g += m) {
        for (int j = 0; j < m; j++) {
            buf[j].score = fabsf(w[g + j]) * (scale ? scale[g + j] : 1.0f);
            buf[j].idx = j;
        }
        /* insertion sort: m is small; descending score, ascending index */
        for (int a = 1; a < m; a++) {
            scored v = buf[a];
            int b = a - 1;
            while (b >= 0 && (buf[b].score < v.score || (buf[b].score == v.score && buf[b].idx > v.idx))) {
                buf[b + 1] = buf[b];
                b--;
            }
            buf[b + 1] = v;
        }
        for (int j = n; j < m; j++)
            w[g + buf[j].idx] = 0.0f;
    }
}

static int check_shape(int64_t rows, int64_t cols)
{
    if (rows < 0 || cols < 0 || cols > INT32_MAX)
        return ftq_set_error(FTQ_EINVAL, "cannot prune: bad shape [%lld, %lld]", (long long)rows,
                             (long long)cols);
    return FTQ_OK;
}

static int check_nm(int64_t cols, int n, int m)
{
    if (m < 2 || m > 64 || n < 1 || n >= m)
        return ftq_set_error(FTQ_EINVAL, "cannot prune: N:M must have 0 < N < M <= 64, got %d:%d", n, m);
    if (cols % m != 0)
        return ftq_set_error(FTQ_EINVAL, "cannot prune %d:%d: the row length %lld is not a multiple of %d",
                             n, m, (long long)cols, m);
    return FTQ_OK;
}

int ftq_prune_magnitude(float *w, int64_t rows, int64_t cols, float sparsity, ftq_prune_scope scope)
{
    int rc = check_shape(rows, cols);
    if (rc == FTQ_OK)
        rc = check_sparsity(sparsity);
    if (rc == FTQ_OK)
        rc = check_finite(w, rows * cols, "the matrix");
    if (rc != FTQ_OK)
        return rc;
    if (scope == FTQ_PRUNE_TENSOR) {
        ftq_prune_span sp = {w, rows * cols};
        return prune_spans(&sp, 1, target_count(sparsity, rows * cols));
    }
    scored *buf = malloc(sizeof(scored) * (size_t)(cols ? cols : 1));
    if (!buf)
        return ftq_set_error(FTQ_ENOMEM, "cannot prune: out of memory");
    int64_t k = target_count(sparsity, cols);
    for (int64_t r = 0; r < rows; r++)
        prune_row(w + r * cols, NULL, cols, k, buf);
    free(buf);
    return FTQ_OK;
}

int ftq_prune_nm(float *w, int64_t rows, int64_t cols, int n, int m)
{
    int rc = check_shape(rows, cols);
    if (rc == FTQ_OK)
        rc = check_nm(cols, n, m);
    if (rc == FTQ_OK)
        rc = check_finite(w, rows * cols, "the matrix");
    if (rc != FTQ_OK)
        return rc;
    scored buf[64];
    for (int64_t r = 0; r < rows; r++)
        prune_row_nm(w + r * cols, NULL, cols, n, m, buf);
    return FTQ_OK;
}

int ftq_prune_wanda(float *w, int64_t rows, int64_t cols, const float *act_norm, float sparsity, int n,
                    int m)
{
    int rc = check_shape(rows, cols);
    if (rc == FTQ_OK && m > 0)
        rc = check_nm(cols, n, m);
    else if (rc == FTQ_OK)
        rc = check_sparsity(sparsity);
    if (rc == FTQ_OK)
        rc = check_finite(w, rows * cols, "the matrix");
    if (rc == FTQ_OK)
        rc = check_finite(act_norm, cols, "the activation norm");
    for (int64_t j = 0; j < cols && rc == FTQ_OK; j++)
        if (act_norm[j] < 0.0f)
            rc = ftq_set_error(FTQ_EINVAL, "cannot prune: negative activation norm at input %lld", (long long)j);
    if (rc != FTQ_OK)
        return rc;
    if (m > 0) {
        scored buf[64];
        for (int64_t r = 0; r < rows; r++)
            prune_row_nm(w + r * cols, act_norm, cols, n, m, buf);
        return FTQ_OK;
    }
    scored *buf = malloc(sizeof(scored) * (size_t)(cols ? cols : 1));
    if (!buf)
        return ftq_set_error(FTQ_ENOMEM, "cannot prune: out of memory");
    int64_t k = target_count(sparsity, cols);
    for (int64_t r = 0; r < rows; r++)
        prune_row(w + r * cols, act_norm, cols, k, buf);
    free(buf);
    return FTQ_OK;
}

int64_t ftq_count_zeros(const float *w, int64_t n)
{
    int64_t z = 0;
    for (int64_t i = 0; i < n; i++)
        z += w[i] == 0.0f;
    return z;
}
