/* gemm_bf16.c - bf16 x bf16 -> fp32 products on packed operands (layout and summation order
 * in gemm_bf16.h): packing with round-to-nearest-even, and three block kernels that compute
 * one 32 x 32 output block over all of k (AMX tiles, AVX512-BF16, scalar reference) behind
 * one blocking loop, so the paths differ only in the instructions of that block. */
#include <string.h>

#include "ftq.h"
#include "kernels/gemm_bf16.h"
#include "kernels/simd.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define BLK 32  /* output block: 32 rows x 32 columns (two 16-column panels) */
#define PANEL 16

const char *ftq_bf16_path_name(ftq_bf16_path p)
{
    switch (p) {
    case FTQ_BF16_AUTO:
        return "auto";
    case FTQ_BF16_SCALAR:
        return "scalar";
    case FTQ_BF16_AVX512:
        return "avx512bf16";
    case FTQ_BF16_AMX:
        return "amx-bf16";
    }
    return "?";
}

int ftq_bf16_path_available(ftq_bf16_path p)
{
    unsigned f = ftq_cpu_features();
    switch (p) {
    case FTQ_BF16_AUTO:
    case FTQ_BF16_SCALAR:
        return 1;
    case FTQ_BF16_AVX512: {
        unsigned need = FTQ_CPU_AVX512F | FTQ_CPU_AVX512BW | FTQ_CPU_AVX512BF16;
        return FTQ_HAVE_X86 && (f & need) == need;
    }
    case FTQ_BF16_AMX: {
        unsigned need = FTQ_CPU_AMX | FTQ_CPU_AMX_BF16;
        return FTQ_HAVE_X86 && (f & need) == need;
    }
    }
    return 0;
}

ftq_bf16_path ftq_bf16_best_path(void)
{
    if (ftq_bf16_path_available(FTQ_BF16_AMX))
        return FTQ_BF16_AMX;
    if (ftq_bf16_path_available(FTQ_BF16_AVX512))
        return FTQ_BF16_AVX512;
    return FTQ_BF16_SCALAR;
}

/* ---- packing -------------------------------------------------------------------------- */

/* Round to nearest even; NaN stays a quiet NaN (as ftq_f32_to_bf16, written so the loops
 * vectorize). */
static inline uint16_t to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t r = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
    uint32_t q = (x >> 16) | 0x40u;
    return (uint16_t)((x & 0x7fffffffu) > 0x7f800000u ? q : r);
}

static inline float from_bf16(uint16_t h)
{
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

#if FTQ_HAVE_X86
#define FTQ_AVX512F_ __attribute__((target("avx512f")))

/* to_bf16 on 16 lanes: the bf16 bits in the low half of each 32-bit lane (bit-identical to
 * the scalar rounding, NaN included). */
FTQ_AVX512F_ static inline __m512i bf16x16(__m512 v)
{
    __m512i x = _mm512_castps_si512(v);
    __m512i hi = _mm512_srli_epi32(x, 16);
    __m512i lsb = _mm512_and_si512(hi, _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(x, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(x, _mm512_set1_epi32(0x7fffffff)),
                                             _mm512_set1_epi32(0x7f800000));
    return _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, _mm512_set1_epi32(0x40)));
}

FTQ_AVX512F_ static void convert_row_avx512(uint16_t *dst, const float *src, int n)
{
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i), _mm512_cvtepi32_epi16(bf16x16(_mm512_loadu_ps(src + i))));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_cvtepi32_storeu_epi16(dst + i, m, bf16x16(_mm512_maskz_loadu_ps(m, src + i)));
    }
}

/* Panels [p0, p1) from a source whose columns are contiguous (sn == 1): k-pair row r of a
 * panel is rows 2r and 2r + 1 of the source, interleaved. The panels of the group are
 * written row pair by row pair, so each source row is read 64 bytes per panel in one run
 * (not a 64-byte piece per row down the whole matrix per panel); columns past n are zero. */
FTQ_AVX512F_ static void panel_cols_avx512(uint16_t *dst, const float *src, int p0, int p1, int n, int k, size_t sk,
                                           size_t pstride)
{
    for (int r = 0; r < (k + 1) / 2; r++) {
        const float *s0 = src + (size_t)(2 * r) * sk;
        for (int p = p0; p < p1; p++) {
            int j0 = p * 16, nj = n - j0 < 16 ? n - j0 : 16;
            __mmask16 m = (__mmask16)(nj > 0 ? (1u << nj) - 1 : 0);
            __m512i e = bf16x16(_mm512_maskz_loadu_ps(m, s0 + j0));
            __m512i o = 2 * r + 1 < k ? bf16x16(_mm512_maskz_loadu_ps(m, s0 + sk + j0)) : _mm512_setzero_si512();
            _mm512_storeu_si512(dst + (size_t)p * pstride + (size_t)r * 32, _mm512_or_si512(e, _mm512_slli_epi32(o, 16)));
        }
    }
}

/* One panel from a source whose rows are contiguous in k (sk == 1): 32 values of a row are
 * 16 pairs (32-bit words); 16 rows of 16 words are transposed through a small buffer. */
FTQ_AVX512F_ static void panel_rows_avx512(uint16_t *d, const float *src, int nj, int k, size_t sn)
{
    uint32_t tile[16][16];
    for (int k0 = 0; k0 < k; k0 += 32) {
        int kn = k - k0 < 32 ? k - k0 : 32, pairs = (kn + 1) / 2;
        __mmask16 m0 = (__mmask16)(kn >= 16 ? 0xffffu : (1u << kn) - 1);
        __mmask16 m1 = (__mmask16)(kn >= 32 ? 0xffffu : kn > 16 ? (1u << (kn - 16)) - 1 : 0);
        for (int j = 0; j < 16; j++) {
            __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
            if (j < nj) {
                const float *sr = src + (size_t)j * sn + k0;
                lo = _mm512_cvtepi32_epi16(bf16x16(_mm512_maskz_loadu_ps(m0, sr)));
                hi = _mm512_cvtepi32_epi16(bf16x16(_mm512_maskz_loadu_ps(m1, sr + 16)));
            }
            _mm256_storeu_si256((__m256i *)(void *)&tile[j][0], lo);
            _mm256_storeu_si256((__m256i *)(void *)&tile[j][8], hi);
        }
        uint16_t *dd = d + (size_t)(k0 / 2) * 32;
        for (int r = 0; r < pairs; r++)
            for (int j = 0; j < 16; j++) /* one pair: 4 bytes (memcpy: no aliasing of uint16_t as uint32_t) */
                memcpy(dd + (size_t)r * 32 + 2 * j, &tile[j][r], 4);
    }
}

/* Rows [i0, i0 + ni) of A from a transposed source (A[i][kk] = src[i + kk * sk]): 32 x 32
 * blocks converted a source row at a time, then written out a destination row (64 bytes)
 * at a time. Covers the columns up to kp (zeros past k). */
FTQ_AVX512F_ static void pack_a_trans_avx512(uint16_t *dst, const float *src, int ni, int k, int kp, size_t sk)
{
    uint16_t tile[32][32];
    __mmask16 m0 = (__mmask16)(ni >= 16 ? 0xffffu : (1u << ni) - 1);
    __mmask16 m1 = (__mmask16)(ni >= 32 ? 0xffffu : ni > 16 ? (1u << (ni - 16)) - 1 : 0);
    for (int k0 = 0; k0 < kp; k0 += 32) {
        int kn = k - k0 < 32 ? k - k0 : 32;
        for (int t = 0; t < kn; t++) {
            const float *sr = src + (size_t)(k0 + t) * sk;
            _mm256_storeu_si256((__m256i *)(void *)&tile[t][0], _mm512_cvtepi32_epi16(bf16x16(_mm512_maskz_loadu_ps(m0, sr))));
            _mm256_storeu_si256((__m256i *)(void *)&tile[t][16],
                                _mm512_cvtepi32_epi16(bf16x16(_mm512_maskz_loadu_ps(m1, sr + 16))));
        }
        for (int t = kn > 0 ? kn : 0; t < 32; t++)
            memset(tile[t], 0, sizeof tile[t]);
        for (int i = 0; i < ni; i++) {
            uint16_t *d = dst + (size_t)i * kp + k0;
            for (int t = 0; t < 32; t++)
                d[t] = tile[t][i];
        }
    }
}
#endif

static int use_avx512f(void) { return FTQ_HAVE_X86 && (ftq_cpu_features() & FTQ_CPU_AVX512F); }

static void convert_row(uint16_t *dst, const float *src, int n, int simd)
{
#if FTQ_HAVE_X86
    if (simd) {
        convert_row_avx512(dst, src, n);
        return;
    }
#endif
    (void)simd;
    for (int i = 0; i < n; i++)
        dst[i] = to_bf16(src[i]);
}

void ftq_bf16_pack_a(uint16_t *dst, const float *src, int m, int k, size_t sm, size_t sk)
{
    const int mp = ftq_bf16_pad32(m), kp = ftq_bf16_pad32(k);
    const int nblk = mp / BLK, simd = use_avx512f();
    long work = (long)mp * kp;
    (void)work;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (work > 262144)
#endif
    for (int b = 0; b < nblk; b++) {
        int i0 = b * BLK, i1 = i0 + BLK < m ? i0 + BLK : m;
        if (i1 <= i0) {
            memset(dst + (size_t)i0 * kp, 0, sizeof(uint16_t) * (size_t)BLK * kp);
            continue;
        }
        if (sk == 1) {
            for (int i = i0; i < i1; i++)
                convert_row(dst + (size_t)i * kp, src + (size_t)i * sm, k, simd);
        } else if (sm == 1 && simd) { /* a transposed source: its rows are columns here */
#if FTQ_HAVE_X86
            pack_a_trans_avx512(dst + (size_t)i0 * kp, src + i0, i1 - i0, k, kp, sk);
#endif
        } else if (sm == 1) {
            uint16_t row[BLK];
            for (int kk = 0; kk < k; kk++) {
                convert_row(row, src + (size_t)kk * sk + i0, i1 - i0, simd);
                for (int i = i0; i < i1; i++)
                    dst[(size_t)i * kp + kk] = row[i - i0];
            }
        } else {
            for (int kk = 0; kk < k; kk++)
                for (int i = i0; i < i1; i++)
                    dst[(size_t)i * kp + kk] = to_bf16(src[(size_t)i * sm + (size_t)kk * sk]);
        }
        for (int i = i0; i < i1; i++)
            memset(dst + (size_t)i * kp + k, 0, sizeof(uint16_t) * (size_t)(kp - k));
        if (i1 < i0 + BLK)
            memset(dst + (size_t)i1 * kp, 0, sizeof(uint16_t) * (size_t)(i0 + BLK - i1) * kp);
    }
}

void ftq_bf16_pack_b(uint16_t *dst, const float *src, int n, int k, size_t sn, size_t sk)
{
    const int np = ftq_bf16_pad32(n), kp = ftq_bf16_pad32(k);
    const int npan = np / PANEL, simd = use_avx512f();
    const size_t pstride = (size_t)kp * PANEL;
    long work = (long)np * kp;
    (void)work;
    (void)simd;
#if FTQ_HAVE_X86
    if (simd && sn == 1) { /* groups of 8 panels: 512 bytes of each source row at a time */
        const int ngrp = (npan + 7) / 8;
        const size_t done = (size_t)((k + 1) / 2) * 32; /* the pairs past k are zeros */
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (work > 262144)
#endif
        for (int g = 0; g < ngrp; g++) {
            int p0 = g * 8, p1 = p0 + 8 < npan ? p0 + 8 : npan;
            for (int p = p0; p < p1; p++)
                memset(dst + (size_t)p * pstride + done, 0, sizeof(uint16_t) * (pstride - done));
            panel_cols_avx512(dst, src, p0, p1, n, k, sk, pstride);
        }
        return;
    }
#endif
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (work > 262144)
#endif
    for (int p = 0; p < npan; p++) {
        uint16_t *d = dst + (size_t)p * pstride;
        int j0 = p * PANEL, nj = n - j0 < PANEL ? n - j0 : PANEL;
        if (nj <= 0) {
            memset(d, 0, sizeof(uint16_t) * pstride);
            continue;
        }
        /* the pairs past k (zeros) */
        size_t done = (size_t)((k + 1) / 2) * 32;
        memset(d + done, 0, sizeof(uint16_t) * (pstride - done));
#if FTQ_HAVE_X86
        if (simd && sk == 1) {
            panel_rows_avx512(d, src + (size_t)j0 * sn, nj, k, sn);
            continue;
        }
#endif
        memset(d, 0, sizeof(uint16_t) * done);
        if (sk == 1) { /* rows of the source are the columns of B: 16 row streams */
            const float *s = src + (size_t)j0 * sn;
            for (int r = 0; r < k / 2; r++) {
                uint16_t *dd = d + (size_t)r * 32;
                for (int j = 0; j < nj; j++) {
                    dd[2 * j] = to_bf16(s[(size_t)j * sn + 2 * r]);
                    dd[2 * j + 1] = to_bf16(s[(size_t)j * sn + 2 * r + 1]);
                }
            }
            if (k & 1)
                for (int j = 0; j < nj; j++)
                    d[(size_t)(k >> 1) * 32 + 2 * j] = to_bf16(s[(size_t)j * sn + k - 1]);
        } else {
            for (int kk = 0; kk < k; kk++) {
                const float *s = src + (size_t)kk * sk + (size_t)j0 * sn;
                uint16_t *dd = d + (size_t)(kk >> 1) * 32 + (kk & 1);
                for (int j = 0; j < nj; j++)
                    dd[2 * j] = to_bf16(s[(size_t)j * sn]);
            }
        }
    }
}

float ftq_bf16_packed_a_at(const uint16_t *a, int k, int i, int kk)
{
    return from_bf16(a[(size_t)i * ftq_bf16_pad32(k) + kk]);
}

float ftq_bf16_packed_b_at(const uint16_t *b, int k, int j, int kk)
{
    size_t kp = (size_t)ftq_bf16_pad32(k);
    return from_bf16(b[(size_t)(j / PANEL) * kp * PANEL + (size_t)(kk >> 1) * 32 + 2 * (j % PANEL) + (kk & 1)]);
}

/* ---- block kernels ---------------------------------------------------------------------
 * acc[32][ldacc] (32 rows x 32 columns of fp32 partial sums) += the k-pairs [0, nk/2) of
 * A rows a[0..32) (row stride kp) times the panels b0, b1 (both already offset to the
 * first k-pair); first: acc starts at zero instead. Storing and reloading the fp32 partial
 * sums between k blocks is exact, so k blocking does not change any result. */

typedef void (*block_fn)(float *acc, int ldacc, const uint16_t *a, int kp, const uint16_t *b0, const uint16_t *b1,
                         int nk, int first);

static void block_scalar(float *acc, int ldacc, const uint16_t *a, int kp, const uint16_t *b0, const uint16_t *b1,
                         int nk, int first)
{
    for (int i = 0; i < BLK; i++) {
        const uint16_t *ar = a + (size_t)i * kp;
        float *c = acc + (size_t)i * ldacc;
        if (first)
            memset(c, 0, sizeof(float) * BLK);
        for (int r = 0; r < nk / 2; r++) {
            float a0 = from_bf16(ar[2 * r]), a1 = from_bf16(ar[2 * r + 1]);
            const uint16_t *p0 = b0 + (size_t)r * 32, *p1 = b1 + (size_t)r * 32;
            for (int j = 0; j < PANEL; j++) { /* odd product first, as VDPBF16PS */
                float s = c[j] + a1 * from_bf16(p0[2 * j + 1]);
                c[j] = s + a0 * from_bf16(p0[2 * j]);
                float t = c[PANEL + j] + a1 * from_bf16(p1[2 * j + 1]);
                c[PANEL + j] = t + a0 * from_bf16(p1[2 * j]);
            }
        }
    }
}

#if FTQ_HAVE_X86
#define FTQ_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))
#define FTQ_AMXBF16 __attribute__((target("amx-tile,amx-bf16,avx512f")))

/* 8 rows x 32 columns at a time: 16 accumulators, two B rows loaded per k-pair, each A
 * pair broadcast once. */
FTQ_AVX512BF16 static void block_avx512(float *acc, int ldacc, const uint16_t *a, int kp, const uint16_t *b0,
                                        const uint16_t *b1, int nk, int first)
{
    for (int i0 = 0; i0 < BLK; i0 += 8) {
        __m512 c[8][2];
        for (int i = 0; i < 8; i++) {
            float *cr = acc + (size_t)(i0 + i) * ldacc;
            c[i][0] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(cr);
            c[i][1] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(cr + PANEL);
        }
        const uint16_t *ar = a + (size_t)i0 * kp;
        for (int r = 0; r < nk / 2; r++) {
            __m512bh v0 = (__m512bh)_mm512_loadu_si512(b0 + (size_t)r * 32);
            __m512bh v1 = (__m512bh)_mm512_loadu_si512(b1 + (size_t)r * 32);
            for (int i = 0; i < 8; i++) {
                uint32_t pair;
                memcpy(&pair, ar + (size_t)i * kp + 2 * r, 4);
                __m512bh av = (__m512bh)_mm512_set1_epi32((int)pair);
                c[i][0] = _mm512_dpbf16_ps(c[i][0], av, v0);
                c[i][1] = _mm512_dpbf16_ps(c[i][1], av, v1);
            }
        }
        for (int i = 0; i < 8; i++) {
            float *cr = acc + (size_t)(i0 + i) * ldacc;
            _mm512_storeu_ps(cr, c[i][0]);
            _mm512_storeu_ps(cr + PANEL, c[i][1]);
        }
    }
}

/* Tile palette 1: tmm0..3 the 2 x 2 output tiles (16 rows x 16 fp32), tmm4/5 two A tiles
 * (16 rows x 32 bf16), tmm6/7 two B tiles (16 k-pairs x 16 columns x 2). */
typedef struct {
    uint8_t palette_id, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

FTQ_AMXBF16 static void amx_configure(void)
{
    tile_config cfg __attribute__((aligned(64)));
    memset(&cfg, 0, sizeof cfg);
    cfg.palette_id = 1;
    for (int t = 0; t < 8; t++) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    /* GCC 12's _tile_loadconfig tells the compiler it reads only 8 bytes, which lets the
     * stores of rows / colsb above be dropped; this operand covers all 64 */
    __asm__ volatile("ldtilecfg %0" : : "m"(cfg));
}

FTQ_AMXBF16 static void amx_release(void) { _tile_release(); }

FTQ_AMXBF16 static void block_amx(float *acc, int ldacc, const uint16_t *a, int kp, const uint16_t *b0,
                                  const uint16_t *b1, int nk, int first)
{
    const size_t as = (size_t)kp * 2, cs = (size_t)ldacc * 4; /* row strides in bytes */
    const uint16_t *a1 = a + (size_t)16 * kp;
    float *c1 = acc + (size_t)16 * ldacc;
    if (first) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    } else {
        _tile_loadd(0, acc, cs);
        _tile_loadd(1, acc + PANEL, cs);
        _tile_loadd(2, c1, cs);
        _tile_loadd(3, c1 + PANEL, cs);
    }
    for (int kk = 0; kk < nk; kk += 32) {
        _tile_loadd(4, a + kk, as);
        _tile_loadd(5, a1 + kk, as);
        _tile_loadd(6, b0 + (size_t)kk * 16, 64);
        _tile_loadd(7, b1 + (size_t)kk * 16, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, acc, cs);
    _tile_stored(1, acc + PANEL, cs);
    _tile_stored(2, c1, cs);
    _tile_stored(3, c1 + PANEL, cs);
}
#endif

/* ---- the blocking loop ---------------------------------------------------------------------- */

static void gemm(ftq_bf16_path path, float *c, size_t ldc, const uint16_t *a, const uint16_t *b, int m, int n,
                 int k, const float *bias, int accumulate, int trans_c);

void ftq_gemm_bf16(ftq_bf16_path path, float *c, size_t ldc, const uint16_t *a, const uint16_t *b, int m,
                   int n, int k, const float *bias, int accumulate)
{
    gemm(path, c, ldc, a, b, m, n, k, bias, accumulate, 0);
}

void ftq_gemm_bf16_tc(ftq_bf16_path path, float *c, size_t ldc, const uint16_t *a, const uint16_t *b, int m,
                      int n, int k, int accumulate)
{
    gemm(path, c, ldc, a, b, m, n, k, NULL, accumulate, 1);
}

static void gemm(ftq_bf16_path path, float *c, size_t ldc, const uint16_t *a, const uint16_t *b, int m, int n,
                 int k, const float *bias, int accumulate, int trans_c)
{
    if (m <= 0 || n <= 0)
        return;
    if (path == FTQ_BF16_AUTO)
        path = ftq_bf16_best_path();
    else if (!ftq_bf16_path_available(path))
        path = FTQ_BF16_SCALAR;
    block_fn fn = block_scalar;
#if FTQ_HAVE_X86
    if (path == FTQ_BF16_AMX)
        fn = block_amx;
    else if (path == FTQ_BF16_AVX512)
        fn = block_avx512;
#endif
    const int kp = ftq_bf16_pad32(k), mp = ftq_bf16_pad32(m), np = ftq_bf16_pad32(n);
    const int nmb = mp / BLK;
    /* Work items: (column chunk of NC, 32-row block), chunks outermost so each thread keeps
     * its own chunk of B in L2. Inside an item, k blocks of KC: the 32 x KC slice of A
     * (16 KB) stays in L1 while the chunk's column blocks pass it, the fp32 partial sums of
     * the item (32 x NC) are the accumulator between k blocks. */
    enum { NC = 256, KC = 256 };
    const int nchunks = (np + NC - 1) / NC;
    const long items = (long)nchunks * nmb;
    const double work = (double)mp * np * kp;
    const size_t pstride = (size_t)kp * PANEL;
    (void)work;
#ifdef _OPENMP
#pragma omp parallel if (work > 4194304.0 && items > 1)
#endif
    {
#if FTQ_HAVE_X86
        if (path == FTQ_BF16_AMX)
            amx_configure();
#endif
        float acc[BLK * NC] __attribute__((aligned(64)));
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (long it = 0; it < items; it++) {
            int ch = (int)(it / nmb), mb = (int)(it % nmb);
            int i0 = mb * BLK, ni = m - i0 < BLK ? m - i0 : BLK;
            int j0 = ch * NC, j1 = j0 + NC < n ? j0 + NC : n; /* columns [j0, j1) are real */
            if (ni <= 0 || j1 <= j0)
                continue;
            const uint16_t *ab = a + (size_t)i0 * kp;
            /* a plain product (init 0) whose block is all inside C sums in C itself: the
             * same values as through acc, without the copy */
            const int plain = !accumulate && !bias && ni == BLK && !trans_c;
            for (int k0 = 0; k0 < kp; k0 += KC) {
                int nk = kp - k0 < KC ? kp - k0 : KC;
                for (int jb = j0; jb < j1; jb += BLK) {
                    int direct = plain && jb + BLK <= n;
                    float *tgt = direct ? c + (size_t)i0 * ldc + jb : acc + (jb - j0);
                    fn(tgt, direct ? (int)ldc : NC, ab + k0, kp, b + (size_t)(jb / PANEL) * pstride + (size_t)k0 * 16,
                       b + (size_t)(jb / PANEL + 1) * pstride + (size_t)k0 * 16, nk, k0 == 0);
                }
            }
            int jd = j0; /* columns before jd were summed in C */
            while (plain && jd + BLK <= j1 && jd + BLK <= n)
                jd += BLK;
            int nj = j1 - jd;
            if (trans_c) { /* column j of the block is row j of C: written 32 floats at a time */
                for (int j = 0; j < nj; j++) {
                    float *cr = c + (size_t)(jd + j) * ldc + i0;
                    const float *s = acc + (jd - j0) + j;
                    if (accumulate)
                        for (int i = 0; i < ni; i++)
                            cr[i] += s[(size_t)i * NC];
                    else
                        for (int i = 0; i < ni; i++)
                            cr[i] = s[(size_t)i * NC];
                }
                nj = 0;
            }
            for (int i = 0; nj > 0 && i < ni; i++) {
                float *cr = c + (size_t)(i0 + i) * ldc + jd;
                const float *s = acc + (size_t)i * NC + (jd - j0);
                if (accumulate)
                    for (int j = 0; j < nj; j++)
                        cr[j] += s[j];
                else if (bias)
                    for (int j = 0; j < nj; j++)
                        cr[j] = bias[jd + j] + s[j];
                else
                    memcpy(cr, s, sizeof(float) * (size_t)nj);
            }
        }
#if FTQ_HAVE_X86
        if (path == FTQ_BF16_AMX)
            amx_release();
#endif
    }
}
