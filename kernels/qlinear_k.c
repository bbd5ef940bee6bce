/* qlinear_k.c - the AVX-512 VNNI panel kernel of the q6k / q4k super-block schemes
 * (kernels/kquant.h): a tile of R activation rows x NP panels of 16 outputs, int32 sums by
 * vpdpbusd (u8 weight codes x s8 activations), the sub-block scales applied in int32 and the
 * per-block float steps in the order of the scalar reference, so it matches it bit for bit. */
#include <string.h>

#include "kernels/kquant.h"
#include "kernels/simd.h"

#if FTQ_HAVE_X86

int ftq_kq_have_avx512(void) { return 1; }

#define KT __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vnni")))
#define KR_MAX 6
#define KNP_MAX 4

static inline int32_t ld32(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

KT static inline __attribute__((always_inline)) void
ktile(const int q6, const int R, const int NP, const ftq_qmat *w, const ftq_qact *a, int p0, int t0, float *y,
      const float *bias)
{
    const int nblk = a->nblk, ns = w->ngroups;
    const uint8_t *wq[KNP_MAX];
    const int8_t *xq[KR_MAX];
    for (int p = 0; p < NP; p++)
        wq[p] = w->qs + (size_t)(p0 + p) * w->panel_bytes;
    for (int r = 0; r < R; r++)
        xq[r] = a->qs + (size_t)(t0 + r) * a->kpad;
    /* q6k tiles of more than 4 rows keep the float sums in memory (L1), leaving the registers
     * to the two int32 sums per row and panel; the operations are the same. */
    const int fmem = q6 && R > 4;
    __m512 facc[KR_MAX][KNP_MAX];
    float fbuf[KR_MAX][KNP_MAX][16] __attribute__((aligned(64)));
    for (int r = 0; r < R; r++)
        for (int p = 0; p < NP; p++) {
            facc[r][p] = _mm512_setzero_ps();
            if (fmem)
                _mm512_store_ps(fbuf[r][p], facc[r][p]);
        }
    const __m512i m0f = _mm512_set1_epi32(0x0f0f0f0f);
    for (int b = 0; b < nblk; b++) {
        const int k0 = 32 * b;
        __m512i s0[KR_MAX][KNP_MAX], s1[KR_MAX][KNP_MAX];
        if (q6)
            for (int r = 0; r < R; r++) {
                /* q6k: the sums start at -32 sx0 and -32 sx1, so after the dot products they
                 * hold sum c qx - 32 sx0 and sum c qx - 32 sx1, the reference's exact int32s
                 * (integer addition in any order; |.| <= 16 * 63 * 128 + 32 * 16 * 128). sx0 is
                 * the sum of the block's first 16 activation codes: the codes + 128 as bytes,
                 * summed by psadbw, less 16 * 128. */
                const __m128i xv = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(const void *)(xq[r] + k0)),
                                                 _mm_set1_epi8((char)0x80));
                const __m128i sad = _mm_sad_epu8(xv, _mm_setzero_si128());
                const int32_t x0 = _mm_cvtsi128_si32(sad) + _mm_extract_epi16(sad, 4) - 16 * 128;
                const int32_t x1 = a->s[(size_t)(t0 + r) * nblk + b] - x0;
                const __m512i i0 = _mm512_set1_epi32(-32 * x0), i1 = _mm512_set1_epi32(-32 * x1);
                for (int p = 0; p < NP; p++) {
                    s0[r][p] = i0;
                    s1[r][p] = i1;
                }
            }
        else
            for (int r = 0; r < R; r++)
                for (int p = 0; p < NP; p++)
                    s0[r][p] = s1[r][p] = _mm512_setzero_si512();
        if (R == 1)
            for (int p = 0; p < NP; p++)
                _mm_prefetch((const char *)(wq[p] + (size_t)k0 * (q6 ? 16 : 8) + 1024), _MM_HINT_T0);
        if (q6) {
            for (int h = 0; h < 2; h++) /* the two sub-blocks of 16 */
                for (int u = 0; u < 4; u++) {
                    const int k = k0 + 16 * h + 4 * u;
                    __m512i wv[KNP_MAX];
                    for (int p = 0; p < NP; p++)
                        wv[p] = _mm512_loadu_si512((const void *)(wq[p] + (size_t)k * 16));
                    for (int r = 0; r < R; r++) {
                        const __m512i xb = _mm512_set1_epi32(ld32(xq[r] + k));
                        for (int p = 0; p < NP; p++) {
                            if (h == 0)
                                s0[r][p] = _mm512_dpbusd_epi32(s0[r][p], wv[p], xb);
                            else
                                s1[r][p] = _mm512_dpbusd_epi32(s1[r][p], wv[p], xb);
                        }
                    }
                }
        } else {
            for (int k = k0; k < k0 + 32; k += 8) {
                __m512i lo[KNP_MAX], hi[KNP_MAX];
                for (int p = 0; p < NP; p++) {
                    const __m512i raw = _mm512_loadu_si512((const void *)(wq[p] + (size_t)k * 8));
                    lo[p] = _mm512_and_si512(raw, m0f);
                    hi[p] = _mm512_and_si512(_mm512_srli_epi32(raw, 4), m0f);
                }
                for (int r = 0; r < R; r++) {
                    const __m512i x0 = _mm512_set1_epi32(ld32(xq[r] + k)), x1 = _mm512_set1_epi32(ld32(xq[r] + k + 4));
                    for (int p = 0; p < NP; p++)
                        s0[r][p] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(s0[r][p], lo[p], x0), hi[p], x1);
                }
            }
        }
        const int j = b % 8;
        /* The sub-block scales multiply in f32: every product below is an integer under 2^24
         * (q6k: |sc (sum - 32 sx0)| <= 128 * 16 * 32 * 127 and two of them; q4k: 63 * 32 * 15 *
         * 127, 63 * 32 * 127), so it is exact and equals the reference's (float) of the int32. */
        for (int p = 0; p < NP; p++) {
            const size_t sb = (size_t)(p0 + p) * ns + b / 8;
            const __m512 dv = _mm512_loadu_ps(w->d + sb * 2 * FTQ_QPANEL);
            const uint8_t *zv = w->zp + sb * 16 * FTQ_QPANEL;
            if (q6) {
                const __m512 c0 = _mm512_cvtepi32_ps(
                    _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(zv + 2 * j * FTQ_QPANEL))));
                const __m512 c1 = _mm512_cvtepi32_ps(
                    _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(zv + (2 * j + 1) * FTQ_QPANEL))));
                for (int r = 0; r < R; r++) {
                    const size_t ti = (size_t)(t0 + r) * nblk + b;
                    const __m512 f0 = _mm512_cvtepi32_ps(s0[r][p]);
                    const __m512 f1 = _mm512_cvtepi32_ps(s1[r][p]);
                    const __m512 is = _mm512_fmadd_ps(f0, c0, _mm512_mul_ps(f1, c1));
                    const __m512 dx = _mm512_set1_ps(a->d[ti]);
                    if (fmem)
                        _mm512_store_ps(fbuf[r][p],
                                        _mm512_fmadd_ps(is, _mm512_mul_ps(dv, dx), _mm512_load_ps(fbuf[r][p])));
                    else
                        facc[r][p] = _mm512_fmadd_ps(is, _mm512_mul_ps(dv, dx), facc[r][p]);
                }
            } else {
                const __m512 dm = _mm512_loadu_ps(w->d + (sb * 2 + 1) * FTQ_QPANEL);
                const __m512 sc = _mm512_cvtepi32_ps(
                    _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(zv + j * FTQ_QPANEL))));
                const __m512 mn = _mm512_cvtepi32_ps(
                    _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(zv + (8 + j) * FTQ_QPANEL))));
                for (int r = 0; r < R; r++) {
                    const size_t ti = (size_t)(t0 + r) * nblk + b;
                    const __m512 dx = _mm512_set1_ps(a->d[ti]);
                    const __m512 is = _mm512_mul_ps(_mm512_cvtepi32_ps(s0[r][p]), sc);
                    const __m512 ms = _mm512_mul_ps(mn, _mm512_set1_ps((float)a->s[ti]));
                    facc[r][p] = _mm512_fmadd_ps(is, _mm512_mul_ps(dv, dx), facc[r][p]);
                    facc[r][p] = _mm512_fnmadd_ps(ms, _mm512_mul_ps(dm, dx), facc[r][p]);
                }
            }
        }
    }
    for (int r = 0; r < R; r++) {
        float *yr = y + (size_t)(t0 + r) * w->rows;
        for (int p = 0; p < NP; p++) {
            float tmp[16];
            _mm512_storeu_ps(tmp, fmem ? _mm512_load_ps(fbuf[r][p]) : facc[r][p]);
            const int o0 = (p0 + p) * FTQ_QPANEL;
            for (int l = 0; l < 16 && o0 + l < w->rows; l++)
                yr[o0 + l] = bias ? tmp[l] + bias[o0 + l] : tmp[l];
        }
    }
}

#define KTILE_R(Q6, NP)                                                             \
    do {                                                                            \
        for (int t = t0; t < t1;) {                                                 \
            const int rmax = KR_MAX;                                                \
            const int r = t1 - t < rmax ? t1 - t : rmax;                            \
            switch (r) {                                                            \
            case 1: ktile(Q6, 1, NP, w, a, p, t, y, bias); break;                   \
            case 2: ktile(Q6, 2, NP, w, a, p, t, y, bias); break;                   \
            case 3: ktile(Q6, 3, NP, w, a, p, t, y, bias); break;                   \
            case 4: ktile(Q6, 4, NP, w, a, p, t, y, bias); break;                   \
            case 5: ktile(Q6, 5, NP, w, a, p, t, y, bias); break;                   \
            default: ktile(Q6, 6, NP, w, a, p, t, y, bias); break;                  \
            }                                                                       \
            t += r;                                                                 \
        }                                                                           \
    } while (0)

#define KBODY(Q6)                                                                   \
    do {                                                                            \
        for (int p = p0; p < p1;) {                                                 \
            if (t1 - t0 == 1 && p1 - p >= 4) {                                      \
                KTILE_R(Q6, 4);                                                     \
                p += 4;                                                             \
            } else if (p1 - p >= 2) {                                               \
                KTILE_R(Q6, 2);                                                     \
                p += 2;                                                             \
            } else {                                                                \
                KTILE_R(Q6, 1);                                                     \
                p += 1;                                                             \
            }                                                                       \
        }                                                                           \
    } while (0)

KT void ftq_kq_run_avx512(const ftq_qmat *w, const ftq_qact *a, int p0, int p1, int t0, int t1, float *y,
                          const float *bias)
{
    if (w->scheme == FTQ_QSCHEME_Q6K)
        KBODY(1);
    else
        KBODY(0);
}

#else

int ftq_kq_have_avx512(void) { return 0; }

void ftq_kq_run_avx512(const ftq_qmat *w, const ftq_qact *a, int p0, int p1, int t0, int t1, float *y,
                       const float *bias)
{
    ftq_kq_run_scalar(w, a, p0, p1, t0, t1, y, bias);
}

#endif
