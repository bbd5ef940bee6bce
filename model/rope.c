/* rope.c - the rotary frequencies of a llama-family config, rope_scaling applied as Hugging
 * Face's modeling_rope_utils defines it (linear, llama3) or as a GGUF rope_freqs tensor
 * gives it, and the cos / sin tables built from them (inference and training use the same
 * tables, so the trainer's RoPE scales exactly as the forward's). Computed in double. */
#include <math.h>

#include "kernels/kernels.h"
#include "model/model.h"

void ftq_rope_inv_freq(const ftq_model_config *c, double *inv_freq, int n)
{
    int half = c->head_dim / 2 < n ? c->head_dim / 2 : n;
    for (int i = 0; i < half; i++) {
        double f = pow((double)c->rope_theta, -2.0 * i / (double)c->head_dim);
        switch (c->rope_scaling) {
        case FTQ_ROPE_SCALING_LINEAR:
            f /= c->rope_factor;
            break;
        case FTQ_ROPE_SCALING_LLAMA3: { /* _compute_llama3_parameters */
            double factor = c->rope_factor, lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
            double old_ctx = c->rope_original_max_position;
            double wavelen = 2.0 * M_PI / f;
            if (wavelen > old_ctx / lo) {
                f /= factor;
            } else if (!(wavelen < old_ctx / hi)) {
                double smooth = (old_ctx / wavelen - lo) / (hi - lo);
                f = (1.0 - smooth) * f / factor + smooth * f;
            }
            break;
        }
        case FTQ_ROPE_SCALING_FREQS:
            f /= c->rope_freq_factors[i];
            break;
        default:
            break;
        }
        inv_freq[i] = f;
    }
}

void ftq_model_rope_table(float *cos_t, float *sin_t, int n_pos, const ftq_model_config *c)
{
    if (c->rope_scaling == FTQ_ROPE_SCALING_NONE) { /* the tables every unscaled model had */
        ftq_rope_table(cos_t, sin_t, n_pos, c->head_dim, (double)c->rope_theta);
        return;
    }
    double inv[FTQ_ROPE_MAX_FREQS] = {0};
    int half = c->head_dim / 2;
    if (half > FTQ_ROPE_MAX_FREQS) /* config.c and gguf_model.c refuse such a model */
        half = FTQ_ROPE_MAX_FREQS;
    ftq_rope_inv_freq(c, inv, half);
    ftq_rope_table_freqs(cos_t, sin_t, n_pos, half, inv);
}
