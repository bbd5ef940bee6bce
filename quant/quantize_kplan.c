/* quantize_kplan.c - the K-quant choices of ftq_quantize_model (--kquant): block linear layers
 * whose width is a multiple of 256 take q4k (ggml's Q4_K) instead of q4 g32 as their int4
 * scheme, and the mixed-precision plan chooses per layer among several schemes
 * ({q4k, q5, q6k, q8} or {q4, q5, q8}) instead of int4 or int8 only.
 *
 * The plan: the measured KL of a layer at its base scheme (ftq_qcalib_plan's sensitivity run)
 * is carried to every other scheme in proportion to its importance-weighted squared error
 * sum_j imp_j (w - w_q)^2 (the output error the importance search minimizes; KL grows with
 * the square of a small output perturbation). Then, greedily, the upgrade (layer, scheme)
 * with the largest KL saved per extra bit that still fits the budget is taken, until none
 * fits. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <stdio.h>

#include "kernels/kquant.h"
#include "model/qcheckpoint.h"
#include "quant/qcalib.h"
#include "quant/quantize_calib.h"
#include "quant/quantize_kplan.h"

void ftq_qkplan_assign(const ftq_quantize_params *p, ftq_qjobs *js)
{
    if (!p->kquant)
        return;
    for (size_t i = 0; i < js->n; i++) {
        ftq_qjob *j = &js->j[i];
        if (j->layer < 0 || !j->quantize || j->cols % FTQ_QK)
            continue;
        if (j->qp.scheme == FTQ_QSCHEME_Q4 || j->qp.scheme == FTQ_QSCHEME_Q4A) {
            j->qp.scheme = FTQ_QSCHEME_Q4K;
            j->qp.group = FTQ_QK;
        }
    }
}

/* Bits per weight of a [rows, cols] matrix stored with q (codes, f16 scales, u8 zeros). */
double ftq_qcalib_bits(const ftq_quant_params *q, int cols)
{
    int ng = ftq_qrow_groups(q->group, cols);
    double bytes = (double)ftq_qrow_bytes(q->scheme, cols) + 2.0 * ng + (q->scheme == FTQ_QSCHEME_Q4A ? ng : 0);
    return 8.0 * bytes / cols;
}

/* sum_j imp_j (w - w_q)^2 of job j quantized with qp (the importance search). */
static int weighted_error(const ftq_qjob *j, const ftq_quant_params *qp, double *out)
{
    ftq_qtensor q;
    int rc = ftq_qtensor_quantize_weighted(&q, j->w, j->rows, j->cols, qp, j->imp);
    if (rc != FTQ_OK)
        return ftq_wrap_error(rc, "cannot quantize tensor '%s'", j->name);
    float *row = malloc(sizeof(float) * (size_t)j->cols);
    if (!row) {
        ftq_qtensor_free(&q);
        return ftq_set_error(FTQ_ENOMEM, "cannot plan mixed precision: out of memory");
    }
    double e = 0;
    for (int r = 0; r < j->rows; r++) {
        ftq_dequantize_row(q.scheme, q.group, q.qs + (size_t)r * q.row_bytes, q.scales + (size_t)r * q.ngroups,
                           q.zeros ? q.zeros + (size_t)r * q.ngroups : NULL, j->cols, row);
        const float *w = j->w + (size_t)r * j->cols;
        for (int k = 0; k < j->cols; k++) {
            double d = (double)w[k] - row[k];
            e += j->imp[k] * d * d;
        }
    }
    free(row);
    ftq_qtensor_free(&q);
    *out = e;
    return FTQ_OK;
}

enum { MAXOPT = 4 };

typedef struct {
    int n, cur;
    ftq_quant_params qp[MAXOPT];
    double bits[MAXOPT], kl[MAXOPT];
} options;

int ftq_qkplan_greedy(const ftq_quantize_params *p, ftq_qjobs *js, double total_bits, double total_w)
{
    options *op = calloc(js->n ? js->n : 1, sizeof *op);
    if (!op)
        return ftq_set_error(FTQ_ENOMEM, "cannot plan mixed precision: out of memory");
    int rc = FTQ_OK;
    for (size_t i = 0; i < js->n && rc == FTQ_OK; i++) {
        ftq_qjob *j = &js->j[i];
        options *o = &op[i];
        if (j->layer < 0 || !j->quantize || j->sensitivity < 0 || !j->imp)
            continue;
        o->qp[o->n++] = j->qp;
        if (j->cols % 32 == 0) { /* q5 g32: ggml's Q5_0, 5.5 bits */
            o->qp[o->n] = j->qp;
            o->qp[o->n].scheme = FTQ_QSCHEME_Q5;
            o->qp[o->n++].group = 32;
        }
        if (ftq_qscheme_is_k(j->qp.scheme)) {
            o->qp[o->n] = j->qp;
            o->qp[o->n++].scheme = FTQ_QSCHEME_Q6K;
        }
        o->qp[o->n] = j->qp;
        o->qp[o->n].scheme = FTQ_QSCHEME_Q8;
        o->qp[o->n++].group = 32;
        double e0 = 0;
        rc = weighted_error(j, &o->qp[0], &e0);
        for (int k = 0; k < o->n && rc == FTQ_OK; k++) {
            o->bits[k] = ftq_qcalib_bits(&o->qp[k], j->cols);
            double e = e0;
            if (k > 0)
                rc = weighted_error(j, &o->qp[k], &e);
            o->kl[k] = e0 > 0 ? j->sensitivity * e / e0 : 0;
        }
    }
    for (;;) { /* the best fitting upgrade, again and again */
        if (rc != FTQ_OK)
            break;
        size_t bi = 0;
        int bk = -1;
        double bg = 0;
        for (size_t i = 0; i < js->n; i++) {
            const options *o = &op[i];
            const double numel = (double)js->j[i].rows * js->j[i].cols;
            for (int k = o->cur + 1; k < o->n; k++) {
                double extra = numel * (o->bits[k] - o->bits[o->cur]), save = o->kl[o->cur] - o->kl[k];
                if (!(extra > 0) || !(save > 0) || (total_bits + extra) / total_w > p->target_bits + 1e-9)
                    continue;
                double g = save / extra;
                if (g > bg) {
                    bg = g;
                    bi = i;
                    bk = k;
                }
            }
        }
        if (bk < 0)
            break;
        options *o = &op[bi];
        total_bits += (double)js->j[bi].rows * js->j[bi].cols * (o->bits[bk] - o->bits[o->cur]);
        o->cur = bk;
        js->j[bi].qp = o->qp[bk];
    }
    free(op);
    return rc;
}

