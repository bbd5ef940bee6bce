/* qlinear_tmpl.h - the register-tiled quantized matmul, instantiated once per ISA by
 * kernels/qlinear.c (which defines the QL_* / VI_* / VF_* macros below before including it).
 * A tile is R activation rows x NP panels of 16 outputs; the int32 block sums and the f32
 * accumulators live in registers, and the per-output float operation sequence is the one
 * documented in qlinear.h, so every instantiation matches the scalar path bit for bit.
 *
 * Required from the includer:
 *   QL_FN(name)  suffixed name          QL_TARGET  target attribute
 *   QL_VL        int32 lanes per vector QL_NVP     vectors per 16-row panel (16 / QL_VL)
 *   QL_VBYTES    bytes per vector       QL_RMAX, QL_NP, QL_NP1  tile shape (rows, panels for
 *                                       T > 1, panels for a single row)
 *   VI, VF       int / float vector types and the VI_*, VF_* operations used below
 *   Q8_PREP(w), Q8_DOT(acc, w, x), Q8_Z  int8 step and the zero code it leaves in the sum
 *   Q4_DOT2(acc, lo, hi, x0, x1)         two int4 steps (low and high nibbles)
 * and optionally QL_PF, the prefetch distance of single-row tiles in bytes.
 */

#define QL_NVMAX (QL_NP1 * QL_NVP)
_Static_assert(QL_RMAX >= 1 && QL_RMAX <= 6, "the row-tile switch covers 1..6 rows");
_Static_assert(QL_NP <= QL_NP1, "tiles hold at most QL_NP1 panels");

enum { QL_FN(K_Q8) = FTQ_QSCHEME_Q8, QL_FN(K_Q4) = FTQ_QSCHEME_Q4, QL_FN(K_Q4A) = FTQ_QSCHEME_Q4A,
       QL_FN(K_Q4M) = FTQ_QSCHEME_Q4M };

QL_TARGET static inline __attribute__((always_inline)) void
QL_FN(tile)(const int kind, const int R, const int NP, const ftq_qmat *w, const ftq_qact *a,
            int p0, int t0, float *y, const float *bias)
{
    const int NV = NP * QL_NVP;
    const int nblk = a->nblk, ab = a->ab, bpg = w->group / ab, ng = w->ngroups;
    const uint8_t *wq[QL_NP1];
    const int8_t *xq[QL_RMAX];
    for (int p = 0; p < NP; p++)
        wq[p] = w->qs + (size_t)(p0 + p) * w->panel_bytes;
    for (int r = 0; r < R; r++)
        xq[r] = a->qs + (size_t)(t0 + r) * a->kpad;
    VF facc[QL_RMAX][QL_NVMAX];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++)
            facc[r][v] = VF_ZERO();
    const VI m0f = VI_SET1(0x0f0f0f0f);
    (void)m0f;
    for (int b = 0; b < nblk; b++) {
        VI iacc[QL_RMAX][QL_NVMAX];
        for (int r = 0; r < R; r++)
            for (int v = 0; v < NV; v++)
                iacc[r][v] = VI_ZERO();
        const int k0 = b * ab, k1 = k0 + ab;
        if (kind == QL_FN(K_Q8)) {
            for (int k = k0; k < k1; k += 4) {
                VI wv[QL_NVMAX];
#ifdef QL_PF
                if (R == 1)
                    for (int p = 0; p < NP; p++)
                        _mm_prefetch((const char *)(wq[p] + (size_t)k * 16 + QL_PF), _MM_HINT_T0);
#endif
                for (int v = 0; v < NV; v++)
                    wv[v] = Q8_PREP(VI_LOADU(wq[v / QL_NVP] + (size_t)k * 16 + (v % QL_NVP) * QL_VBYTES));
                for (int r = 0; r < R; r++) {
                    const VI xb = VI_BCAST32(xq[r] + k);
                    for (int v = 0; v < NV; v++)
                        iacc[r][v] = Q8_DOT(iacc[r][v], wv[v], xb);
                }
            }
        } else {
            for (int k = k0; k < k1; k += 8) {
                VI lo[QL_NVMAX], hi[QL_NVMAX];
#ifdef QL_PF
                if (R == 1)
                    for (int p = 0; p < NP; p++)
                        _mm_prefetch((const char *)(wq[p] + (size_t)k * 8 + QL_PF), _MM_HINT_T0);
#endif
                for (int v = 0; v < NV; v++) {
                    const VI raw = VI_LOADU(wq[v / QL_NVP] + (size_t)k * 8 + (v % QL_NVP) * QL_VBYTES);
                    lo[v] = VI_AND(raw, m0f);
                    hi[v] = VI_AND(VI_SRLI4(raw), m0f);
                }
                for (int r = 0; r < R; r++) {
                    const VI x0 = VI_BCAST32(xq[r] + k), x1 = VI_BCAST32(xq[r] + k + 4);
                    for (int v = 0; v < NV; v++)
                        iacc[r][v] = Q4_DOT2(iacc[r][v], lo[v], hi[v], x0, x1);
                }
            }
        }
        const int g = b / bpg;
#ifdef QL_PF
        if (R == 1) /* the scales (and zero codes) are streams of their own */
            for (int p = 0; p < NP; p++) {
                const size_t gf = ((size_t)(p0 + p) * ng + g) * FTQ_QPANEL + QL_PF / 4;
                _mm_prefetch((const char *)(w->d + gf), _MM_HINT_T0);
                if (kind == QL_FN(K_Q4A))
                    _mm_prefetch((const char *)(w->zp + gf), _MM_HINT_T0);
                if (kind == QL_FN(K_Q4M))
                    _mm_prefetch((const char *)(w->mn + gf), _MM_HINT_T0);
            }
#endif
        for (int r = 0; r < R; r++) {
            const size_t ti = (size_t)(t0 + r) * nblk + b;
            const VF dx = VF_SET1(a->d[ti]);
            const int32_t sx = a->s[ti];
            for (int v = 0; v < NV; v++) {
                const size_t gi = ((size_t)(p0 + v / QL_NVP) * ng + g) * FTQ_QPANEL + (size_t)(v % QL_NVP) * QL_VL;
                VI is = iacc[r][v];
                if (kind == QL_FN(K_Q8)) {
                    if (Q8_Z)
                        is = VI_SUB(is, VI_SET1(Q8_Z * sx));
                } else if (kind == QL_FN(K_Q4)) {
                    is = VI_SUB(is, VI_SET1(8 * sx));
                } else if (kind == QL_FN(K_Q4M)) { /* d * dx * sum(c qx) + m * dx * sum(qx) */
                    const VF f = VF_FMADD(VF_CVT(is), VF_MUL(VF_LOADU(w->d + gi), dx), facc[r][v]);
                    facc[r][v] = VF_FMADD(VF_CVT(VI_SET1(sx)), VF_MUL(VF_LOADU(w->mn + gi), dx), f);
                    continue;
                } else {
                    is = VI_SUB(is, VI_MULLO(VI_LOADZ(w->zp + gi), VI_SET1(sx)));
                }
                facc[r][v] = VF_FMADD(VF_CVT(is), VF_MUL(VF_LOADU(w->d + gi), dx), facc[r][v]);
            }
        }
    }
    const int rows = w->rows;
    for (int r = 0; r < R; r++) {
        float *yr = y + (size_t)(t0 + r) * rows;
        for (int v = 0; v < NV; v++) {
            float tmp[QL_VL];
            VF_STOREU(tmp, facc[r][v]);
            const int o0 = (p0 + v / QL_NVP) * FTQ_QPANEL + (v % QL_NVP) * QL_VL;
            for (int l = 0; l < QL_VL && o0 + l < rows; l++)
                yr[o0 + l] = bias ? tmp[l] + bias[o0 + l] : tmp[l];
        }
    }
}

/* Tile rows t0..t1 (in tiles of up to QL_RMAX <= 6) against panels p0..p1 (in groups of QL_NP,
 * or QL_NP1 for a single row, where more independent accumulators hide vpdpbusd latency). */
#define QL_R(N) ((N) <= QL_RMAX ? (N) : 1) /* r <= QL_RMAX, so larger cases never run */
#define QL_TILE_R(KIND, NP)                                                              \
    do {                                                                                 \
        for (int t = t0; t < t1;) {                                                      \
            const int r = t1 - t < QL_RMAX ? t1 - t : QL_RMAX;                           \
            switch (r) {                                                                 \
            case 1: QL_FN(tile)(KIND, 1, NP, w, a, p, t, y, bias); break;                \
            case 2: QL_FN(tile)(KIND, QL_R(2), NP, w, a, p, t, y, bias); break;          \
            case 3: QL_FN(tile)(KIND, QL_R(3), NP, w, a, p, t, y, bias); break;          \
            case 4: QL_FN(tile)(KIND, QL_R(4), NP, w, a, p, t, y, bias); break;          \
            case 5: QL_FN(tile)(KIND, QL_R(5), NP, w, a, p, t, y, bias); break;          \
            default: QL_FN(tile)(KIND, QL_R(6), NP, w, a, p, t, y, bias); break;         \
            }                                                                            \
            t += r;                                                                      \
        }                                                                                \
    } while (0)

#define QL_KIND_BODY(KIND)                                                    \
    do {                                                                      \
        for (int p = p0; p < p1;) {                                           \
            if (t1 - t0 == 1 && p1 - p >= QL_NP1) {                           \
                QL_TILE_R(KIND, QL_NP1);                                      \
                p += QL_NP1;                                                  \
            } else if (p1 - p >= QL_NP) {                                     \
                QL_TILE_R(KIND, QL_NP);                                       \
                p += QL_NP;                                                   \
            } else {                                                          \
                QL_TILE_R(KIND, 1);                                           \
                p += 1;                                                       \
            }                                                                 \
        }                                                                     \
    } while (0)

QL_TARGET static void QL_FN(run)(const ftq_qmat *w, const ftq_qact *a, int p0, int p1, int t0,
                                 int t1, float *y, const float *bias)
{
    switch (w->scheme) {
    case FTQ_QSCHEME_Q8: QL_KIND_BODY(QL_FN(K_Q8)); break;
    case FTQ_QSCHEME_Q4: QL_KIND_BODY(QL_FN(K_Q4)); break;
    case FTQ_QSCHEME_Q4M: QL_KIND_BODY(QL_FN(K_Q4M)); break;
    default: QL_KIND_BODY(QL_FN(K_Q4A)); break;
    }
}

#undef QL_TILE_R
#undef QL_R
#undef QL_KIND_BODY
#undef QL_NVMAX
