/* linear_bf16.c - registered weight matrices with packed bf16 copies, and the three
 * products of a linear layer on them (see linear_bf16.h). */
#include <stdlib.h>
#include <string.h>

#include "ftq.h"
#include "kernels/gemm_bf16.h"
#include "kernels/kernels.h"
#include "kernels/linear_bf16.h"

int ftq_bf16_set_init(ftq_bf16_set *s, size_t cap)
{
    memset(s, 0, sizeof *s);
    s->mats = calloc(cap ? cap : 1, sizeof *s->mats);
    if (!s->mats)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    s->cap = cap;
    return FTQ_OK;
}

void ftq_bf16_set_add(ftq_bf16_set *s, const float *w, int out, int in, int rows, int trainable, int need_bwd)
{
    if (!w || s->n >= s->cap)
        return;
    ftq_bf16_mat *m = &s->mats[s->n++];
    m->w = w;
    m->out = out;
    m->in = in;
    m->rows = rows;
    m->trainable = trainable;
    m->need_bwd = need_bwd;
    m->fwd = m->bwd = NULL;
}

/* OpenBLAS is linked by the library; its thread count functions are declared here (as in
 * core/cpu.c) to keep cblas.h out of this file. */
int openblas_get_num_threads(void);
void openblas_set_num_threads(int num_threads);

int ftq_bf16_stage_begin(void)
{
    int saved = openblas_get_num_threads();
    if (saved > 1)
        openblas_set_num_threads(1);
    return saved;
}

void ftq_bf16_stage_end(int saved)
{
    if (saved > 1)
        openblas_set_num_threads(saved);
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

int ftq_bf16_set_alloc(ftq_bf16_set *s)
{
    size_t na = 1, nb = 1, total = 0;
    for (size_t i = 0; i < s->n; i++) {
        const ftq_bf16_mat *m = &s->mats[i];
        na = max_sz(na, ftq_bf16_a_elems(m->rows, m->in));
        if (m->need_bwd)
            na = max_sz(na, ftq_bf16_a_elems(m->rows, m->out));
        if (m->trainable) { /* dW: dY^T X, or (X^T dY)^T when in < out */
            na = max_sz(na, ftq_bf16_a_elems(m->in < m->out ? m->in : m->out, m->rows));
            nb = max_sz(nb, ftq_bf16_b_elems(m->in < m->out ? m->out : m->in, m->rows));
        }
        total += ftq_bf16_b_elems(m->out, m->in) * (m->need_bwd ? 2 : 1);
    }
    s->a = aligned_alloc(64, (na * sizeof(uint16_t) + 63) & ~(size_t)63);
    s->b = aligned_alloc(64, (nb * sizeof(uint16_t) + 63) & ~(size_t)63);
    int ok = s->a && s->b;
    for (size_t i = 0; ok && i < s->n; i++) {
        ftq_bf16_mat *m = &s->mats[i];
        size_t bytes = (ftq_bf16_b_elems(m->out, m->in) * sizeof(uint16_t) + 63) & ~(size_t)63;
        m->fwd = aligned_alloc(64, bytes);
        m->bwd = m->need_bwd ? aligned_alloc(64, bytes) : NULL;
        ok = m->fwd && (m->bwd || !m->need_bwd);
    }
    if (!ok)
        return ftq_set_error(FTQ_ENOMEM, "out of memory allocating %.1f MB of bf16 weights and activations",
                             (double)(total + na + nb) * 2 / 1e6);
    s->stale = 2;
    return FTQ_OK;
}

void ftq_bf16_set_free(ftq_bf16_set *s)
{
    for (size_t i = 0; s->mats && i < s->n; i++) {
        free(s->mats[i].fwd);
        free(s->mats[i].bwd);
    }
    free(s->mats);
    free(s->a);
    free(s->b);
    memset(s, 0, sizeof *s);
}

void ftq_bf16_set_mark(ftq_bf16_set *s, int level)
{
    if (s && s->mats && s->stale < level)
        s->stale = level;
}

void ftq_bf16_set_refresh(ftq_bf16_set *s)
{
    if (!s || !s->mats || !s->stale)
        return;
    for (size_t i = 0; i < s->n; i++) {
        ftq_bf16_mat *m = &s->mats[i];
        if (s->stale < 2 && !m->trainable)
            continue;
        ftq_bf16_pack_b(m->fwd, m->w, m->out, m->in, (size_t)m->in, 1);
        if (m->bwd)
            ftq_bf16_pack_b(m->bwd, m->w, m->in, m->out, 1, (size_t)m->in);
    }
    s->stale = 0;
}

static const ftq_bf16_mat *find(const ftq_bf16_set *s, const float *w)
{
    for (size_t i = 0; s && s->mats && i < s->n; i++)
        if (s->mats[i].w == w)
            return &s->mats[i];
    return NULL;
}

void ftq_bf16_linear_forward(ftq_bf16_set *s, float *out, const float *in, const float *w, const float *bias, int N,
                             int in_dim, int out_dim)
{
    const ftq_bf16_mat *m = find(s, w);
    if (!m || N > m->rows) {
        ftq_linear_f32(out, in, w, bias, N, in_dim, out_dim);
        return;
    }
    ftq_bf16_pack_a(s->a, in, N, in_dim, (size_t)in_dim, 1);
    ftq_gemm_bf16(s->path, out, (size_t)out_dim, s->a, m->fwd, N, out_dim, in_dim, bias, 0);
}

void ftq_bf16_linear_backward(ftq_bf16_set *s, float *dinp, float *dweight, float *dbias, const float *dout,
                              const float *inp, const float *w, int N, int in_dim, int out_dim, int accumulate_dinp)
{
    const ftq_bf16_mat *m = find(s, w);
    if (!m || N > m->rows || (dinp && !m->bwd) || (dweight && !m->trainable)) {
        ftq_linear_backward(dinp, dweight, dbias, dout, inp, w, N, in_dim, out_dim, accumulate_dinp);
        return;
    }
    if (dinp) {
        ftq_bf16_pack_a(s->a, dout, N, out_dim, (size_t)out_dim, 1);
        ftq_gemm_bf16(s->path, dinp, (size_t)in_dim, s->a, m->bwd, N, in_dim, out_dim, NULL,
                      accumulate_dinp);
    }
    if (dweight && in_dim < out_dim) { /* (X^T dY)^T: the transposed packing is of the narrower X */
        ftq_bf16_pack_a(s->a, inp, in_dim, N, 1, (size_t)in_dim);
        ftq_bf16_pack_b(s->b, dout, out_dim, N, 1, (size_t)out_dim);
        ftq_gemm_bf16_tc(s->path, dweight, (size_t)in_dim, s->a, s->b, in_dim, out_dim, N, 1);
    } else if (dweight) {
        ftq_bf16_pack_a(s->a, dout, out_dim, N, 1, (size_t)out_dim);
        ftq_bf16_pack_b(s->b, inp, in_dim, N, 1, (size_t)in_dim);
        ftq_gemm_bf16(s->path, dweight, (size_t)in_dim, s->a, s->b, out_dim, in_dim, N, NULL, 1);
    }
    if (dbias)
        ftq_colsum_accumulate(dbias, dout, N, out_dim);
}
