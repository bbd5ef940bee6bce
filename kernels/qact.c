/* qact.c - the scalar reference of the int8 activation quantizer (kernels/qmat.h): per block
 * of ab inputs, d = max|x| / 127 and q = nearbyint(x / d); a block with a non-finite input
 * gets d = NaN, one below FTQ_QACT_AMAX_MIN all zeros. The SIMD version in qlinear.c is
 * bit-identical. */
#include <math.h>
#include <string.h>

#include "kernels/qmat.h"

void ftq_qact_quantize_row_ref(const float *x, int n, int kpad, int ab, int8_t *qs, float *d,
                               int32_t *s)
{
    for (int b = 0, k0 = 0; k0 < kpad; b++, k0 += ab) {
        int m = n - k0 < ab ? n - k0 : ab;
        if (m < 0)
            m = 0;
        float amax = 0.0f;
        int bad = 0;
        for (int i = 0; i < m; i++) {
            float v = fabsf(x[k0 + i]);
            if (!(v < INFINITY))
                bad = 1;
            else if (v > amax)
                amax = v;
        }
        memset(qs + k0, 0, (size_t)ab);
        s[b] = 0;
        if (bad || !(amax >= FTQ_QACT_AMAX_MIN)) {
            d[b] = bad ? NAN : 0.0f;
            continue;
        }
        float db = amax / 127.0f, id = 1.0f / db;
        int32_t sum = 0;
        for (int i = 0; i < m; i++) {
            int q = (int)nearbyintf(x[k0 + i] * id);
            qs[k0 + i] = (int8_t)q;
            sum += q;
        }
        d[b] = db;
        s[b] = sum;
    }
}
