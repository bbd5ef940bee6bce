/* bert_calib.c - the input statistics of one BERT block over calibration windows
 * (quant/bert_calib.h). */
#include <stdlib.h>
#include <string.h>

#include "quant/bert_calib.h"

enum { CALIB_ROWS = 8 }; /* calibration windows per forward pass */

/* sum[j] += x[i][j]^2 over n rows of d features. */
static void add_squares(double *sum, const float *x, size_t n, int d)
{
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < d; j++)
            sum[j] += (double)x[i * (size_t)d + j] * x[i * (size_t)d + j];
}

/* Validated context and window count of cal for m. */
static int windows(const ftq_bert *m, const ftq_bert_calib *cal, const char *what, int *ctx_out, size_t *n_win)
{
    const ftq_bert_config *c = &m->cfg;
    int ctx = cal->ctx < c->max_position ? cal->ctx : c->max_position;
    int bos = cal->bos >= 0, per = ctx - bos;
    if (ctx < 2 || per < 1)
        return ftq_set_error(FTQ_EINVAL, "cannot %s: calibration context %d must be in [2, %d]", what, cal->ctx,
                             c->max_position);
    *n_win = cal->n / (size_t)per;
    if (*n_win == 0)
        return ftq_set_error(FTQ_EINVAL, "cannot %s: %zu calibration tokens are fewer than one window of %d", what,
                             cal->n, per);
    *ctx_out = ctx;
    return FTQ_OK;
}

/* Windows w0 .. w0 + nb - 1 into ids [nb][ctx]. */
static void fill(const ftq_bert_calib *cal, int ctx, size_t w0, int nb, int32_t *ids)
{
    int bos = cal->bos >= 0, per = ctx - bos;
    for (int b = 0; b < nb; b++) {
        int32_t *row = ids + (size_t)b * ctx;
        if (bos)
            row[0] = cal->bos;
        memcpy(row + bos, cal->ids + (w0 + (size_t)b) * per, sizeof(int32_t) * (size_t)per);
    }
}

int ftq_bert_block_input_sums(const ftq_bert *m, const ftq_bert_calib *cal, int l, const char *what,
                              double *sum[FTQ_BERT_IN_NONE], int64_t *tokens)
{
    const ftq_bert_config *c = &m->cfg;
    const int C = c->hidden, F = c->ffn;
    int ctx = 0;
    size_t n_win = 0;
    *tokens = 0;
    int rc = windows(m, cal, what, &ctx, &n_win);
    if (rc != FTQ_OK)
        return rc;
    for (int k = 0; k < FTQ_BERT_IN_NONE; k++)
        memset(sum[k], 0, sizeof(double) * (size_t)(k == FTQ_BERT_IN_G ? F : C));
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)CALIB_ROWS * ctx);
    int lens[CALIB_ROWS];
    ftq_bert_ws *ws = NULL;
    rc = !ids ? ftq_set_error(FTQ_ENOMEM, "out of memory") : ftq_bert_ws_new(m, CALIB_ROWS, ctx, 0, &ws);
    for (int b = 0; b < CALIB_ROWS; b++)
        lens[b] = ctx;
    for (size_t w0 = 0; w0 < n_win && rc == FTQ_OK; w0 += CALIB_ROWS) {
        int nb = n_win - w0 < CALIB_ROWS ? (int)(n_win - w0) : CALIB_ROWS;
        fill(cal, ctx, w0, nb, ids);
        rc = ftq_bert_forward_layers(m, ws, ids, NULL, lens, nb, ctx, l + 1);
        if (rc != FTQ_OK)
            break;
        size_t n = (size_t)nb * ctx; /* every token is real: windows are full */
        add_squares(sum[FTQ_BERT_IN_X], ftq_bert_x(ws, l), n, C);
        add_squares(sum[FTQ_BERT_IN_ATT], ws->att, n, C);
        add_squares(sum[FTQ_BERT_IN_H1], ws->h1, n, C);
        add_squares(sum[FTQ_BERT_IN_G], ws->g, n, F);
        *tokens += (int64_t)n;
    }
    ftq_bert_ws_free(ws);
    free(ids);
    return rc;
}

int ftq_bert_input_sums_all(const ftq_bert *m, const ftq_bert_calib *cal, const char *what, double *sums,
                            int64_t *tokens)
{
    const ftq_bert_config *c = &m->cfg;
    const int C = c->hidden, F = c->ffn, L = c->n_layers;
    const size_t D = (size_t)(F > C ? F : C);
    int ctx = 0;
    size_t n_win = 0;
    *tokens = 0;
    int rc = windows(m, cal, what, &ctx, &n_win);
    if (rc != FTQ_OK)
        return rc;
    memset(sums, 0, sizeof(double) * (size_t)L * FTQ_BERT_IN_NONE * D);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)CALIB_ROWS * ctx);
    int lens[CALIB_ROWS];
    ftq_bert_ws *ws = NULL;
    rc = !ids ? ftq_set_error(FTQ_ENOMEM, "out of memory") : ftq_bert_ws_new(m, CALIB_ROWS, ctx, 1, &ws);
    for (int b = 0; b < CALIB_ROWS; b++)
        lens[b] = ctx;
    for (size_t w0 = 0; w0 < n_win && rc == FTQ_OK; w0 += CALIB_ROWS) {
        int nb = n_win - w0 < CALIB_ROWS ? (int)(n_win - w0) : CALIB_ROWS;
        fill(cal, ctx, w0, nb, ids);
        rc = ftq_bert_forward_layers(m, ws, ids, NULL, lens, nb, ctx, L);
        if (rc != FTQ_OK)
            break;
        size_t n = (size_t)nb * ctx;
        for (int l = 0; l < L; l++) {
            double *s = sums + (size_t)l * FTQ_BERT_IN_NONE * D;
            const size_t sl = ftq_bert_slot(ws, l);
            add_squares(s + FTQ_BERT_IN_X * D, ftq_bert_x(ws, l), n, C);
            add_squares(s + FTQ_BERT_IN_ATT * D, ws->att + sl * ws->nc, n, C);
            add_squares(s + FTQ_BERT_IN_H1 * D, ws->h1 + sl * ws->nc, n, C);
            add_squares(s + FTQ_BERT_IN_G * D, ws->g + sl * ws->nf, n, F);
        }
        *tokens += (int64_t)n;
    }
    ftq_bert_ws_free(ws);
    free(ids);
    return rc;
}
