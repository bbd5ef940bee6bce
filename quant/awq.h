/* awq.h - activation-aware weight quantization (AWQ, Lin et al. 2023), internal: per input
 * channel scales s_j = mag_j^alpha (mag_j = mean |x_j| over the calibration tokens), the
 * weights of every linear layer reading that input multiplied by s (columns) and the input
 * divided by s where it is produced, so the f32 model computes the same function while the
 * quantizer sees channels that matter more at a larger magnitude. alpha is searched per
 * layer group on a grid to minimise the output error of the quantized layers.
 *
 *     ftq_awq_linear g[3] = {{wq, Q}, {wk, K}, {wv, K}};
 *     float s[C]; double err, err0, alpha;
 *     rc = ftq_awq_search(g, 3, C, &qp, imp, mag, gram, ntok, s, &err, &err0, &alpha);
 *     rc = ftq_awq_fold(model, layer, FTQ_AWQ_QKV, s);       // exact: same logits
 *
 * Where the scales go (ftq_awq_fold), per block l:
 *   FTQ_AWQ_QKV   q/k/v columns; divided out of the attention norm's weight (and bias)
 *   FTQ_AWQ_O     o columns; divided out of v_proj's rows (and bias). With grouped-query
 *                 attention one v channel feeds n_heads / n_kv_heads attention-output
 *                 channels: the scale of the group's first head is used for all of them
 *   FTQ_AWQ_MLP   gate/up (GPT-2: c_fc) columns; divided out of the MLP norm's weight / bias
 *   FTQ_AWQ_DOWN  down columns; divided out of up_proj's rows (and bias): gated MLPs only
 *                 (silu(g) * u / s = h / s); GPT-2's act(u x + b) is not linear in u
 * Thread-safety: reentrant; OpenMP / OpenBLAS inside (do not call from a parallel region). */
#ifndef FTQ_QUANT_AWQ_H
#define FTQ_QUANT_AWQ_H

#include <stdint.h>

#include "kernels/quant.h"
#include "model/model.h"

enum { FTQ_AWQ_QKV = 0, FTQ_AWQ_O = 1, FTQ_AWQ_MLP = 2, FTQ_AWQ_DOWN = 3, FTQ_AWQ_KINDS = 4 };

/* The alpha grid: 0, 0.1, ..., 1 (alpha 0 is s = 1, the unscaled layer). */
enum { FTQ_AWQ_GRID = 11 };

typedef struct {
    const float *w; /* [rows, cols] */
    int rows;
} ftq_awq_linear;

/* For each alpha of the grid: s_j = mag_j^alpha / sqrt(max_j s * min_j s) (mag clamped to
 * >= 1e-6 max mag), every W of lins times diag(s) quantized with qp (the importance search
 * on imp_j / s_j^2 when imp is not NULL, else ftq_qtensor_quantize with qp as given), and
 * the summed output error tr(E G' E^T) / ntok, E = W diag(s) - Q, G' = diag(1/s) G diag(1/s)
 * (the error of the unscaled layer on the calibration inputs). s [cols] gets the best
 * alpha's scales (all 1 if alpha 0 wins: the grid point wins only when strictly better),
 * *err its error, *err0 alpha 0's, *alpha the alpha. gram [cols][cols] = sum x x^T over
 * ntok tokens. FTQ_EINVAL, FTQ_ENUMERIC, FTQ_ENOMEM (as the quantizers). */
int ftq_awq_search(const ftq_awq_linear *lins, int n, int cols, const ftq_quant_params *qp, const double *imp,
                   const double *mag, const float *gram, int64_t ntok, float *s, double *err, double *err0,
                   double *alpha);

/* 1 if block kinds `kind` can take scales in m (see the table above). */
int ftq_awq_applies(const ftq_model *m, int kind);

/* Fold s (the input dimension of the kind's linear layers: C, n_heads * head_dim, C or
 * intermediate) into block l of m as in the table above. Tensors viewed from the
 * checkpoint get owned copies first. FTQ_EINVAL if the kind does not apply, FTQ_ENOMEM. */
int ftq_awq_fold(ftq_model *m, int l, int kind, const float *s);

/* AWQ over every block of m: for each applicable kind, the alpha search on the calibration
 * statistics st (needs imp, gram and abs sums), the fold, and st rescaled to the scaled
 * inputs (imp / s^2, abs / s, gram / s s^T) so what is quantized next sees them. qp: the
 * linear layers' quantization; weighted: use the importance search. alphas [L][4] get the
 * chosen alphas (-1: kind not applied). */
int ftq_awq_apply(ftq_model *m, ftq_act_stats *st, const ftq_quant_params *qp, int weighted, double *alphas);

#endif
