/* qlinear.c - y = x W^T + b for int8 / int4 weights in the panel layout of qlinear.h:
 * activation quantization (scalar reference and AVX2), the scalar path, the SIMD paths
 * (qlinear_tmpl.h instantiated for AVX2, AVX-VNNI and AVX-512 VNNI), run-time dispatch and
 * the OpenMP driver. All paths give bit-identical results (see qlinear.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ftq.h"
#include "kernels/kquant.h"
#include "kernels/qlinear.h"
#include "kernels/simd.h"

/* 256-bit vpdpbusd intrinsics (avxvnniintrin.h) arrived in GCC 11 and clang 12. */
#if FTQ_HAVE_X86 && ((defined(__clang__) && __clang_major__ >= 12) || \
                     (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11))
#define HAVE_AVXVNNI_INTRIN 1
#else
#define HAVE_AVXVNNI_INTRIN 0
#endif

#ifdef _OPENMP
#define OMP(x) _Pragma(#x)
#else
#define OMP(x)
#endif

static size_t round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

/* ---- the matrix ---------------------------------------------------------------------- */

static int valid_ab(int ab) { return ab == 32 || ab == 64 || ab == 128; }

int ftq_qmat_alloc(ftq_qmat *m, ftq_qscheme scheme, int rows, int cols, int group, int ab)
{
    memset(m, 0, sizeof *m);
    if (ftq_qscheme_is_k(scheme))
        return ftq_kq_qmat_alloc(m, scheme, rows, cols, ab);
    if ((int)scheme < 0 || scheme >= FTQ_QSCHEME_COUNT || scheme == FTQ_QSCHEME_Q5) /* q5 packs as q8 */
        return ftq_set_error(FTQ_EINVAL, "unknown kernel scheme %d", (int)scheme);
    if (rows <= 0 || cols <= 0)
        return ftq_set_error(FTQ_EINVAL, "invalid quantized matrix shape [%d, %d]", rows, cols);
    if (ab == 0)
        ab = FTQ_QACT_BLOCK;
    if (!valid_ab(ab))
        return ftq_set_error(FTQ_EINVAL, "invalid activation block %d: expected 32, 64 or 128", ab);
    if (group == 0 && scheme != FTQ_QSCHEME_Q8)
        return ftq_set_error(FTQ_EINVAL, "per-row scales need int8: int4 takes a group of 32, 64 or 128");
    if (group != 0 && !valid_ab(group))
        return ftq_set_error(FTQ_EINVAL, "invalid group size %d: expected 32, 64, 128 or per row", group);
    if (group != 0 && group % ab != 0)
        return ftq_set_error(FTQ_EINVAL, "activation block %d does not divide the group size %d", ab, group);
    size_t kpad = round_up((size_t)cols, (size_t)ab);
    if (kpad > (size_t)INT32_MAX / 2)
        return ftq_set_error(FTQ_EINVAL, "quantized matrix too wide: %d columns", cols);
    m->scheme = scheme;
    m->rows = rows;
    m->cols = cols;
    m->ab = ab;
    m->kpad = (int)kpad;
    m->group = group ? group : (int)kpad;
    m->ngroups = group ? (cols + group - 1) / group : 1;
    m->npanels = (rows + FTQ_QPANEL - 1) / FTQ_QPANEL;
    m->panel_bytes = kpad * (scheme == FTQ_QSCHEME_Q8 ? 16 : 8);
    size_t nq = round_up((size_t)m->npanels * m->panel_bytes, 64);
    size_t nd = round_up((size_t)m->npanels * m->ngroups * FTQ_QPANEL * sizeof(float), 64);
    size_t nz = scheme == FTQ_QSCHEME_Q4A ? (size_t)m->npanels * m->ngroups * FTQ_QPANEL : 0;
    size_t nm = scheme == FTQ_QSCHEME_Q4M ? nd : 0;
    void *mem = NULL;
    size_t total = nq + nd + round_up(nz, 64) + nm;
    if (posix_memalign(&mem, 64, total) != 0)
        return ftq_set_error(FTQ_ENOMEM, "out of memory for a quantized [%d, %d] matrix", rows, cols);
    m->mem = mem;
    m->mem_bytes = total;
    m->qs = mem;
    m->d = (float *)((char *)mem + nq);
    m->zp = nz ? (uint8_t *)mem + nq + nd : NULL;
    m->mn = nm ? (float *)(void *)((char *)mem + nq + nd + round_up(nz, 64)) : NULL;
    /* zero codes everywhere: padding then contributes exactly 0 */
    memset(m->qs, scheme == FTQ_QSCHEME_Q8 ? 0x80 : scheme == FTQ_QSCHEME_Q4 ? 0x88 : 0x00,
           (size_t)m->npanels * m->panel_bytes);
    memset(m->d, 0, nd);
    if (nz)
        memset(m->zp, 0, nz);
    if (nm)
        memset(m->mn, 0, nm);
    return FTQ_OK;
}

int ftq_qmat_clone(ftq_qmat *dst, const ftq_qmat *src)
{
    void *mem = NULL;
    if (posix_memalign(&mem, 64, src->mem_bytes ? src->mem_bytes : 64) != 0)
        return ftq_set_error(FTQ_ENOMEM, "out of memory copying a quantized [%d, %d] matrix", src->rows, src->cols);
    memcpy(mem, src->mem, src->mem_bytes);
    *dst = *src;
    dst->mem = mem;
    dst->qs = (uint8_t *)mem + (src->qs - (const uint8_t *)src->mem);
    dst->d = (float *)(void *)((char *)mem + ((const char *)src->d - (const char *)src->mem));
    dst->zp = src->zp ? (uint8_t *)mem + (src->zp - (const uint8_t *)src->mem) : NULL;
    dst->mn = src->mn ? (float *)(void *)((char *)mem + ((const char *)src->mn - (const char *)src->mem)) : NULL;
    return FTQ_OK;
}

void ftq_qmat_free(ftq_qmat *m)
{
    if (!m)
        return;
    free(m->mem);
    memset(m, 0, sizeof *m);
}

size_t ftq_qmat_bytes(const ftq_qmat *m)
{
    if (ftq_qscheme_is_k(m->scheme))
        return ftq_kq_qmat_bytes(m);
    size_t ng = (size_t)m->npanels * m->ngroups * FTQ_QPANEL;
    return (size_t)m->npanels * m->panel_bytes + ng * sizeof(float) * (m->mn ? 2 : 1) + (m->zp ? ng : 0);
}

void ftq_qmat_dequantize_row(const ftq_qmat *m, int r, float *out)
{
    if (ftq_qscheme_is_k(m->scheme)) {
        ftq_kq_qmat_dequantize_row(m, r, out);
        return;
    }
    const int q8 = m->scheme == FTQ_QSCHEME_Q8, bpg = m->group;
    const int p = r / FTQ_QPANEL, l = r % FTQ_QPANEL;
    const ftq_qchunk *panel = (const ftq_qchunk *)(const void *)(m->qs + (size_t)p * m->panel_bytes);
    for (int k = 0; k < m->cols; k++) {
        size_t gi = ((size_t)p * m->ngroups + k / bpg) * FTQ_QPANEL + l;
        int c, z;
        if (q8) {
            c = panel[k / 4].b[l][k % 4];
            z = 128;
        } else {
            c = (panel[k / 8].b[l][k % 4] >> ((k % 8) / 4 * 4)) & 15;
            z = m->zp ? m->zp[gi] : 8;
        }
        if (m->mn) /* Q4M: d * c + m, as ggml's Q4_1 dequantization */
            out[k] = (float)c * m->d[gi] + m->mn[gi];
        else
            out[k] = m->d[gi] * (float)(c - z);
    }
}

/* ---- activations --------------------------------------------------------------------- */

#if FTQ_HAVE_X86
FTQ_AVX2 static inline __m256 load_part(const float *p, int avail)
{
    if (avail >= 8)
        return _mm256_loadu_ps(p);
    if (avail <= 0)
        return _mm256_setzero_ps();
    return _mm256_maskload_ps(p, ftq_tail_mask256(avail));
}

/* Bit-identical to ftq_qact_quantize_row_ref: the same max, the same division and
 * reciprocal, x * id rounded to nearest even by vcvtps2dq (the default MXCSR mode, which
 * is also what nearbyintf uses). */
FTQ_AVX2 static void qact_row_avx2(const float *x, int n, int kpad, int ab, int8_t *qs, float *d,
                                   int32_t *s)
{
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 inf = _mm256_set1_ps(INFINITY);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int b = 0, k0 = 0; k0 < kpad; b++, k0 += ab) {
        int m = n - k0 < ab ? n - k0 : ab;
        if (m < 0)
            m = 0;
        const float *xb = x + k0;
        __m256 vmax = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
        for (int i = 0; i < m; i += 8) {
            __m256 av = _mm256_and_ps(load_part(xb + i, m - i), absmask);
            vmax = _mm256_max_ps(vmax, av);
            bad = _mm256_or_ps(bad, _mm256_cmp_ps(av, inf, _CMP_NLT_UQ));
        }
        float amax = ftq_hmax256(vmax);
        int isbad = _mm256_movemask_ps(bad) != 0;
        if (isbad || !(amax >= FTQ_QACT_AMAX_MIN)) {
            memset(qs + k0, 0, (size_t)ab);
            d[b] = isbad ? NAN : 0.0f;
            s[b] = 0;
            continue;
        }
        float db = amax / 127.0f, id = 1.0f / db;
        const __m256 vid = _mm256_set1_ps(id);
        __m256i vsum = _mm256_setzero_si256();
        for (int j = 0; j < ab; j += 32) {
            __m256i q[4];
            for (int u = 0; u < 4; u++) {
                q[u] = _mm256_cvtps_epi32(_mm256_mul_ps(load_part(xb + j + 8 * u, m - j - 8 * u), vid));
                vsum = _mm256_add_epi32(vsum, q[u]);
            }
            __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
            _mm256_storeu_si256((__m256i *)(qs + k0 + j), _mm256_permutevar8x32_epi32(p, perm));
        }
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(vsum), _mm256_extracti128_si256(vsum, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        d[b] = db;
        s[b] = _mm_cvtsi128_si32(s4);
    }
}
#endif

void ftq_qact_quantize_row(const float *x, int n, int kpad, int ab, int8_t *qs, float *d,
                           int32_t *s)
{
#if FTQ_HAVE_X86
    if (ftq_use_avx2()) {
        qact_row_avx2(x, n, kpad, ab, qs, d, s);
        return;
    }
#endif
    ftq_qact_quantize_row_ref(x, n, kpad, ab, qs, d, s);
}

/* ---- scalar path --------------------------------------------------------------------- */

static void run_scalar(const ftq_qmat *w, const ftq_qact *a, int p0, int p1, int t0, int t1,
                       float *y, const float *bias)
{
    const int nblk = a->nblk, ab = a->ab, bpg = w->group / ab, ng = w->ngroups;
    const int q8 = w->scheme == FTQ_QSCHEME_Q8;
    for (int p = p0; p < p1; p++) {
        const uint8_t *wq = w->qs + (size_t)p * w->panel_bytes;
        for (int t = t0; t < t1; t++) {
            const int8_t *xq = a->qs + (size_t)t * a->kpad;
            float acc[FTQ_QPANEL] = {0};
            for (int b = 0; b < nblk; b++) {
                const int g = b / bpg;
                const size_t gi = ((size_t)p * ng + g) * FTQ_QPANEL;
                int32_t isum[FTQ_QPANEL] = {0};
                if (q8) {
                    for (int k = b * ab; k < (b + 1) * ab; k += 4) {
                        const uint8_t *c = wq + (size_t)k * 16;
                        for (int i = 0; i < 4; i++)
                            for (int l = 0; l < FTQ_QPANEL; l++)
                                isum[l] += (int32_t)c[4 * l + i] * xq[k + i];
                    }
                } else {
                    for (int k = b * ab; k < (b + 1) * ab; k += 8) {
                        const uint8_t *c = wq + (size_t)k * 8;
                        for (int i = 0; i < 4; i++)
                            for (int l = 0; l < FTQ_QPANEL; l++)
                                isum[l] += (int32_t)(c[4 * l + i] & 15) * xq[k + i] +
                                           (int32_t)(c[4 * l + i] >> 4) * xq[k + 4 + i];
                    }
                }
                const float dx = a->d[(size_t)t * nblk + b];
                const int32_t sx = a->s[(size_t)t * nblk + b];
                if (w->scheme == FTQ_QSCHEME_Q4M) {
                    for (int l = 0; l < FTQ_QPANEL; l++) {
                        acc[l] = fmaf((float)isum[l], w->d[gi + l] * dx, acc[l]);
                        acc[l] = fmaf((float)sx, w->mn[gi + l] * dx, acc[l]);
                    }
                    continue;
                }
                for (int l = 0; l < FTQ_QPANEL; l++) {
                    int32_t z = q8 ? 128 : w->scheme == FTQ_QSCHEME_Q4 ? 8 : w->zp[gi + l];
                    acc[l] = fmaf((float)(isum[l] - z * sx), w->d[gi + l] * dx, acc[l]);
                }
            }
            float *yr = y + (size_t)t * w->rows;
            for (int l = 0; l < FTQ_QPANEL && p * FTQ_QPANEL + l < w->rows; l++) {
                int o = p * FTQ_QPANEL + l;
                yr[o] = bias ? acc[l] + bias[o] : acc[l];
            }
        }
    }
}

/* ---- SIMD paths ---------------------------------------------------------------------- */

#if FTQ_HAVE_X86

static inline int32_t load_i32(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Software prefetch distance (bytes ahead in each panel) for single-row tiles: at T = 1
 * the weights come from DRAM and several panel streams run side by side. */
#define QL_PF 1024

/* AVX2: int8 through the sign trick (|w| * sign(x, w) keeps vpmaddubsw's pair sums within
 * int16: 2 * 127 * 127), so the sum is already centred (zero code 0); int4 codes are at most
 * 15, so two vpmaddubsw results add in int16 (4 * 15 * 127) before vpmaddwd. */
#define QL_FN(name) name##_avx2
#define QL_TARGET FTQ_AVX2
#define QL_VL 8
#define QL_NVP 2
#define QL_VBYTES 32
#define QL_RMAX 4
#define QL_NP 1
#define QL_NP1 2
#define VI __m256i
#define VF __m256
#define VI_ZERO() _mm256_setzero_si256()
#define VI_SET1(v) _mm256_set1_epi32(v)
#define VI_LOADU(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#define VI_BCAST32(p) _mm256_set1_epi32(load_i32(p))
#define VI_AND(a, b) _mm256_and_si256(a, b)
#define VI_SRLI4(a) _mm256_srli_epi32(a, 4)
#define VI_SUB(a, b) _mm256_sub_epi32(a, b)
#define VI_MULLO(a, b) _mm256_mullo_epi32(a, b)
#define VI_LOADZ(p) _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(p)))
#define VF_ZERO() _mm256_setzero_ps()
#define VF_SET1(v) _mm256_set1_ps(v)
#define VF_LOADU(p) _mm256_loadu_ps(p)
#define VF_STOREU(p, v) _mm256_storeu_ps(p, v)
#define VF_MUL(a, b) _mm256_mul_ps(a, b)
#define VF_FMADD(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VF_CVT(a) _mm256_cvtepi32_ps(a)
#define Q8_PREP(w) _mm256_xor_si256(w, _mm256_set1_epi8((char)0x80))
#define Q8_DOT(acc, w, x)                                                                   \
    _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w),      \
                                                                 _mm256_sign_epi8(x, w)), \
                                            _mm256_set1_epi16(1)))
#define Q8_Z 0
#define Q4_DOT2(acc, lo, hi, x0, x1)                                                       \
    _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(lo, x0), \
                                                             _mm256_maddubs_epi16(hi, x1)), \
                                            _mm256_set1_epi16(1)))
#include "kernels/qlinear_tmpl.h"
#undef QL_FN
#undef QL_TARGET
#undef Q8_PREP
#undef Q8_DOT
#undef Q8_Z
#undef Q4_DOT2

#if HAVE_AVXVNNI_INTRIN
/* AVX-VNNI: the same 256-bit tile with vpdpbusd (u8 weight codes x s8 activations). */
#define QL_FN(name) name##_avxvnni
#define QL_TARGET __attribute__((target("avx2,fma,avxvnni")))
#define Q8_PREP(w) (w)
#define Q8_DOT(acc, w, x) _mm256_dpbusd_avx_epi32(acc, w, x)
#define Q8_Z 128
#define Q4_DOT2(acc, lo, hi, x0, x1) _mm256_dpbusd_avx_epi32(_mm256_dpbusd_avx_epi32(acc, lo, x0), hi, x1)
#include "kernels/qlinear_tmpl.h"
#undef Q8_PREP
#undef Q8_DOT
#undef Q8_Z
#undef Q4_DOT2
#endif
#undef QL_FN
#undef QL_TARGET
#undef QL_VL
#undef QL_NVP
#undef QL_VBYTES
#undef QL_RMAX
#undef QL_NP
#undef QL_NP1
#undef VI
#undef VF
#undef VI_ZERO
#undef VI_SET1
#undef VI_LOADU
#undef VI_BCAST32
#undef VI_AND
#undef VI_SRLI4
#undef VI_SUB
#undef VI_MULLO
#undef VI_LOADZ
#undef VF_ZERO
#undef VF_SET1
#undef VF_LOADU
#undef VF_STOREU
#undef VF_MUL
#undef VF_FMADD
#undef VF_CVT

/* AVX-512 VNNI: one zmm per panel. */
#define QL_FN(name) name##_avx512
#define QL_TARGET __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vnni")))
#define QL_VL 16
#define QL_NVP 1
#define QL_VBYTES 64
#define QL_RMAX 6
#define QL_NP 2
#define QL_NP1 4
#define VI __m512i
#define VF __m512
#define VI_ZERO() _mm512_setzero_si512()
#define VI_SET1(v) _mm512_set1_epi32(v)
#define VI_LOADU(p) _mm512_loadu_si512((const void *)(p))
#define VI_BCAST32(p) _mm512_set1_epi32(load_i32(p))
#define VI_AND(a, b) _mm512_and_si512(a, b)
#define VI_SRLI4(a) _mm512_srli_epi32(a, 4)
#define VI_SUB(a, b) _mm512_sub_epi32(a, b)
#define VI_MULLO(a, b) _mm512_mullo_epi32(a, b)
#define VI_LOADZ(p) _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(p)))
#define VF_ZERO() _mm512_setzero_ps()
#define VF_SET1(v) _mm512_set1_ps(v)
#define VF_LOADU(p) _mm512_loadu_ps(p)
#define VF_STOREU(p, v) _mm512_storeu_ps(p, v)
#define VF_MUL(a, b) _mm512_mul_ps(a, b)
#define VF_FMADD(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VF_CVT(a) _mm512_cvtepi32_ps(a)
#define Q8_PREP(w) (w)
#define Q8_DOT(acc, w, x) _mm512_dpbusd_epi32(acc, w, x)
#define Q8_Z 128
#define Q4_DOT2(acc, lo, hi, x0, x1) _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(acc, lo, x0), hi, x1)
#include "kernels/qlinear_tmpl.h"

/* AMX-INT8 for Q8 with 32-element activation blocks: per 16 activation rows x one 16-output
 * panel x one block, TDPBSUD (signed activations x the unsigned q + 128 weight bytes, which
 * a panel's chunks already hold in the B-tile layout: 8 chunks = 8 tile rows of 16 lanes x 4
 * bytes) gives the block's int32 sums of all 256 outputs, exactly the sums vpdpbusd builds;
 * the float steps are then the template's, in its order, so results are bit-identical. Rows
 * past the last full group of 16 and other schemes go through the AVX-512 VNNI tiles. */
typedef struct {
    uint8_t palette_id, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_cfg;

#define AMX_TARGET __attribute__((target("amx-tile,amx-int8,avx2,fma,avx512f,avx512bw")))

/* One block's float steps for 16 rows of one panel (the template's, in its order). */
#define AMX_BLOCK_UPDATE(cb, b)                                                                              \
    do {                                                                                                     \
        const __m512 d_ = _mm512_loadu_ps(w->d + ((size_t)p * ng + (b) / bpg) * FTQ_QPANEL);                 \
        for (int r = 0; r < 16; r++) {                                                                       \
            const size_t ti = (size_t)(t + r) * nblk + (b);                                                  \
            __m512i is = _mm512_sub_epi32(_mm512_load_si512((cb)[r]), _mm512_set1_epi32(128 * a->s[ti]));   \
            facc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is), _mm512_mul_ps(d_, _mm512_set1_ps(a->d[ti])), facc[r]); \
        }                                                                                                    \
    } while (0)

/* Blocks go four at a time into four C tiles (tmm0..3; A and B tiles alternate between tmm4/6
 * and tmm5/7), so the four TDPBSUDs overlap and the tile stores are read back once per four. */
AMX_TARGET static void amx_q8(const ftq_qmat *w, const ftq_qact *a, int p0, int p1, int t0, int t1, float *y,
                              const float *bias)
{
    amx_cfg cfg __attribute__((aligned(64)));
    memset(&cfg, 0, sizeof cfg);
    cfg.palette_id = 1;
    for (int i = 0; i < 4; i++) { /* C: 16 rows x 16 int32 */
        cfg.rows[i] = 16;
        cfg.colsb[i] = 64;
    }
    for (int i = 4; i < 8; i += 2) {
        cfg.rows[i] = 16; /* A: 16 rows x 32 int8 */
        cfg.colsb[i] = 32;
        cfg.rows[i + 1] = 8; /* B: 8 rows (k / 4) x 16 lanes x 4 bytes */
        cfg.colsb[i + 1] = 64;
    }
    /* the whole 64 bytes as the operand (see gemm_bf16.c: GCC 12 may drop the stores) */
    __asm__ volatile("ldtilecfg %0" : : "m"(cfg));
    const int nblk = a->nblk, bpg = w->group / 32, ng = w->ngroups, rows = w->rows;
    int32_t c[4][16][16] __attribute__((aligned(64)));
    for (int t = t0; t + 16 <= t1; t += 16)
        for (int p = p0; p < p1; p++) {
            const uint8_t *wq = w->qs + (size_t)p * w->panel_bytes;
            const int8_t *xq = a->qs + (size_t)t * a->kpad;
            const size_t ks = (size_t)a->kpad;
            __m512 facc[16];
            for (int r = 0; r < 16; r++)
                facc[r] = _mm512_setzero_ps();
            int b = 0;
            for (; b + 4 <= nblk; b += 4) {
                _tile_zero(0);
                _tile_zero(1);
                _tile_zero(2);
                _tile_zero(3);
                _tile_loadd(4, xq + (size_t)b * 32, ks);
                _tile_loadd(5, wq + (size_t)b * 512, 64);
                _tile_loadd(6, xq + (size_t)(b + 1) * 32, ks);
                _tile_loadd(7, wq + (size_t)(b + 1) * 512, 64);
                _tile_dpbsud(0, 4, 5);
                _tile_dpbsud(1, 6, 7);
                _tile_loadd(4, xq + (size_t)(b + 2) * 32, ks);
                _tile_loadd(5, wq + (size_t)(b + 2) * 512, 64);
                _tile_loadd(6, xq + (size_t)(b + 3) * 32, ks);
                _tile_loadd(7, wq + (size_t)(b + 3) * 512, 64);
                _tile_dpbsud(2, 4, 5);
                _tile_dpbsud(3, 6, 7);
                _tile_stored(0, c[0], 64);
                _tile_stored(1, c[1], 64);
                _tile_stored(2, c[2], 64);
                _tile_stored(3, c[3], 64);
                for (int i = 0; i < 4; i++)
                    AMX_BLOCK_UPDATE(c[i], b + i);
            }
            for (; b < nblk; b++) {
                _tile_zero(0);
                _tile_loadd(4, xq + (size_t)b * 32, ks);
                _tile_loadd(5, wq + (size_t)b * 512, 64);
                _tile_dpbsud(0, 4, 5);
                _tile_stored(0, c[0], 64);
                AMX_BLOCK_UPDATE(c[0], b);
            }
            for (int r = 0; r < 16; r++) {
                float tmp[16];
                _mm512_storeu_ps(tmp, facc[r]);
                float *yr = y + (size_t)(t + r) * rows;
                const int o0 = p * FTQ_QPANEL;
                for (int l = 0; l < 16 && o0 + l < rows; l++)
                    yr[o0 + l] = bias ? tmp[l] + bias[o0 + l] : tmp[l];
            }
        }
    _tile_release();
}
#undef AMX_BLOCK_UPDATE

static void run_amx(const ftq_qmat *w, const ftq_qact *a, int p0, int p1, int t0, int t1, float *y,
                    const float *bias)
{
    int full = t0 + (t1 - t0) / 16 * 16;
    if (w->scheme != FTQ_QSCHEME_Q8 || a->ab != 32 || full == t0) {
        run_avx512(w, a, p0, p1, t0, t1, y, bias);
        return;
    }
    amx_q8(w, a, p0, p1, t0, full, y, bias);
    if (full < t1)
        run_avx512(w, a, p0, p1, full, t1, y, bias);
}

#endif /* FTQ_HAVE_X86 */

/* ---- dispatch ------------------------------------------------------------------------ */

typedef void (*run_fn)(const ftq_qmat *, const ftq_qact *, int, int, int, int, float *,
                       const float *);

int ftq_qpath_supported(ftq_qpath path)
{
    unsigned f = ftq_cpu_features();
    int avx2 = (f & FTQ_CPU_AVX2) && (f & FTQ_CPU_FMA);
    switch (path) {
    case FTQ_QPATH_AUTO:
    case FTQ_QPATH_SCALAR: return 1;
#if FTQ_HAVE_X86
    case FTQ_QPATH_AVX2: return avx2;
    case FTQ_QPATH_AVXVNNI: return HAVE_AVXVNNI_INTRIN && avx2 && (f & FTQ_CPU_AVXVNNI);
    case FTQ_QPATH_AVX512VNNI:
        return avx2 && (f & FTQ_CPU_AVX512F) && (f & FTQ_CPU_AVX512BW) && (f & FTQ_CPU_AVX512VNNI);
    case FTQ_QPATH_AMXINT8:
        return ftq_qpath_supported(FTQ_QPATH_AVX512VNNI) && (f & FTQ_CPU_AMX) && (f & FTQ_CPU_AMX_INT8);
#endif
    default: (void)avx2; return 0;
    }
}

ftq_qpath ftq_qpath_best(void)
{
    static const ftq_qpath order[] = {FTQ_QPATH_AMXINT8, FTQ_QPATH_AVX512VNNI, FTQ_QPATH_AVXVNNI, FTQ_QPATH_AVX2};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (ftq_qpath_supported(order[i]))
            return order[i];
    return FTQ_QPATH_SCALAR;
}

const char *ftq_qpath_name(ftq_qpath path)
{
    static const char *names[FTQ_QPATH_COUNT] = {"auto", "scalar", "avx2", "avxvnni", "avx512vnni", "amx-int8"};
    return (int)path >= 0 && path < FTQ_QPATH_COUNT ? names[path] : "?";
}

/* ---- driver -------------------------------------------------------------------------- */

/* Work units: UNIT_PANELS panels x UNIT_ROWS activation rows. A unit's panels stay in L1/L2
 * while its rows stream past them; a static schedule gives each thread a contiguous run of
 * panels, so each weight byte is read by one thread. */
#define UNIT_PANELS 4
#define UNIT_ROWS 96
/* Multiply-adds below which the product runs on the calling thread. */
#define PAR_MIN_WORK (1L << 17)

static size_t act_layout(const ftq_qmat *w, int T, size_t *off_d, size_t *off_s)
{
    size_t nblk = (size_t)w->kpad / w->ab;
    *off_d = round_up((size_t)T * w->kpad, 64);
    *off_s = *off_d + round_up((size_t)T * nblk * sizeof(float), 64);
    return *off_s + (size_t)T * nblk * sizeof(int32_t);
}

size_t ftq_qmat_scratch_bytes(const ftq_qmat *w, int T)
{
    size_t od, os;
    return act_layout(w, T > 0 ? T : 0, &od, &os) + 64;
}

static void qmat_mul(ftq_qpath path, float *y, const float *x, const ftq_qmat *w,
                     const float *bias, int T, void *scratch)
{
    if (T <= 0)
        return;
    size_t od, os;
    act_layout(w, T, &od, &os);
    char *base = (char *)round_up((size_t)(uintptr_t)scratch, 64);
    ftq_qact a = {T, w->kpad, w->ab, w->kpad / w->ab, (int8_t *)base, (float *)(base + od),
                  (int32_t *)(base + os)};
    run_fn run = run_scalar;
    void (*quant_row)(const float *, int, int, int, int8_t *, float *, int32_t *) =
        ftq_qact_quantize_row_ref;
#if FTQ_HAVE_X86
    if (path != FTQ_QPATH_SCALAR)
        quant_row = qact_row_avx2;
    if (path == FTQ_QPATH_AVX2)
        run = run_avx2;
#if HAVE_AVXVNNI_INTRIN
    else if (path == FTQ_QPATH_AVXVNNI)
        run = run_avxvnni;
#endif
    else if (path == FTQ_QPATH_AVX512VNNI)
        run = run_avx512;
    else if (path == FTQ_QPATH_AMXINT8)
        run = run_amx;
#endif
    if (ftq_qscheme_is_k(w->scheme)) /* super-blocks: AVX-512 VNNI (also under amx-int8, which implies it;
                                       * the tiles cover q8 only) or the scalar panel path */
        run = (path == FTQ_QPATH_AVX512VNNI || path == FTQ_QPATH_AMXINT8) && ftq_kq_have_avx512() ? ftq_kq_run_avx512
                                                                                                : ftq_kq_run_scalar;
    const int np = w->npanels, cols = w->cols;
    const long npg = (np + UNIT_PANELS - 1) / UNIT_PANELS, ntc = (T + UNIT_ROWS - 1) / UNIT_ROWS;
    const long units = npg * ntc;
    const int par = (double)T * w->rows * w->kpad >= (double)PAR_MIN_WORK;
    /* a few rows are quantized before the parallel region: one barrier fewer */
    const int par_quant = par && T >= 16;
    if (!par_quant)
        for (int t = 0; t < T; t++)
            quant_row(x + (size_t)t * cols, cols, a.kpad, a.ab, a.qs + (size_t)t * a.kpad,
                      a.d + (size_t)t * a.nblk, a.s + (size_t)t * a.nblk);
    (void)par;
    OMP(omp parallel if (par))
    {
        if (par_quant) {
            OMP(omp for schedule(static))
            for (int t = 0; t < T; t++)
                quant_row(x + (size_t)t * cols, cols, a.kpad, a.ab, a.qs + (size_t)t * a.kpad,
                          a.d + (size_t)t * a.nblk, a.s + (size_t)t * a.nblk);
        }
        OMP(omp for schedule(static))
        for (long u = 0; u < units; u++) {
            int pg = (int)(u / ntc), tc = (int)(u % ntc);
            int p0 = pg * UNIT_PANELS, p1 = p0 + UNIT_PANELS < np ? p0 + UNIT_PANELS : np;
            int t0 = tc * UNIT_ROWS, t1 = t0 + UNIT_ROWS < T ? t0 + UNIT_ROWS : T;
            run(w, &a, p0, p1, t0, t1, y, bias);
        }
    }
}

/* Scratch below this many bytes lives on the stack when the caller passes none. */
#define STACK_SCRATCH 8192

static int qmat_mul_alloc(ftq_qpath path, float *y, const float *x, const ftq_qmat *w,
                          const float *bias, int T, void *scratch)
{
    if (scratch) {
        qmat_mul(path, y, x, w, bias, T, scratch);
        return FTQ_OK;
    }
    size_t need = ftq_qmat_scratch_bytes(w, T);
    if (need <= STACK_SCRATCH) {
        _Alignas(64) unsigned char buf[STACK_SCRATCH];
        qmat_mul(path, y, x, w, bias, T, buf);
        return FTQ_OK;
    }
    void *heap = malloc(need);
    if (!heap)
        return ftq_set_error(FTQ_ENOMEM, "out of memory for the activations of a [%d, %d] quantized matmul", T,
                             w->cols);
    qmat_mul(path, y, x, w, bias, T, heap);
    free(heap);
    return FTQ_OK;
}

int ftq_qmat_mul_path(ftq_qpath path, float *y, const float *x, const ftq_qmat *w,
                      const float *bias, int T, void *scratch)
{
    if (!ftq_qpath_supported(path))
        return ftq_set_error(FTQ_EUNSUPPORTED, "quantized matmul path '%s' is not supported by this cpu (%s)",
                             ftq_qpath_name(path), ftq_cpu_features_str());
    return qmat_mul_alloc(path == FTQ_QPATH_AUTO ? ftq_qpath_best() : path, y, x, w, bias, T, scratch);
}

int ftq_qmat_mul(float *y, const float *x, const ftq_qmat *w, const float *bias, int T,
                 void *scratch)
{
    return qmat_mul_alloc(ftq_qpath_best(), y, x, w, bias, T, scratch);
}
