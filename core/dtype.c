/* dtype.c - the dtype traits table, f16/bf16 conversions and tensor helpers.
 * Conversions are exact IEEE round-to-nearest-even and keep NaN a NaN. */
#include "ftq.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

float ftq_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalize */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t ftq_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 | ((ax >> 13) & 0x3ff) : 0));
    if (ax >= 0x477ff000u) /* rounds to >= 65520 -> inf */
        return (uint16_t)(sign | 0x7c00);
    if (ax < 0x38800000u) { /* below smallest normal: subnormal or zero */
        if (ax < 0x33000000u) /* < 2^-25 rounds to zero */
            return (uint16_t)sign;
        uint32_t e = ax >> 23;
        uint32_t man = (ax & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* value / 2^-24 = man * 2^(e - 126 - 23 + 23) */
        uint32_t r = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1)))
            r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((ax >> 13) - (112u << 10));
    uint32_t rem = ax & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1)))
        r++;
    return (uint16_t)(sign | r);
}

float ftq_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t ftq_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) /* nan: keep it quiet and a nan */
        return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* ---- bulk converters ------------------------------------------------------------- */

#define CONV(name, T, expr)                                        \
    static void name(const void *src, float *dst, size_t n)        \
    {                                                              \
        const unsigned char *p = src;                              \
        for (size_t i = 0; i < n; i++) {                           \
            T v;                                                   \
            memcpy(&v, p + i * sizeof(T), sizeof(T));              \
            dst[i] = (expr);                                       \
        }                                                          \
    }

CONV(f32_to_f32, float, v)
CONV(f16_to_f32, uint16_t, ftq_f16_to_f32(v))
CONV(bf16_to_f32, uint16_t, ftq_bf16_to_f32(v))
CONV(f64_to_f32, double, (float)v)
CONV(i8_to_f32, int8_t, (float)v)
CONV(u8_to_f32, uint8_t, (float)v)
CONV(i16_to_f32, int16_t, (float)v)
CONV(u16_to_f32, uint16_t, (float)v)
CONV(i32_to_f32, int32_t, (float)v)
CONV(u32_to_f32, uint32_t, (float)v)
CONV(i64_to_f32, int64_t, (float)v)
CONV(u64_to_f32, uint64_t, (float)v)
CONV(bool_to_f32, uint8_t, v ? 1.0f : 0.0f)

static float f8_e4m3_value(uint8_t b)
{
    int s = b >> 7, e = (b >> 3) & 0xf, m = b & 7;
    float v;
    if (e == 15 && m == 7)
        return NAN;
    if (e == 0)
        v = ldexpf((float)m / 8.0f, -6);
    else
        v = ldexpf(1.0f + (float)m / 8.0f, e - 7);
    return s ? -v : v;
}

static float f8_e5m2_value(uint8_t b) { return ftq_f16_to_f32((uint16_t)(b << 8)); }

CONV(f8e4m3_to_f32, uint8_t, f8_e4m3_value(v))
CONV(f8e5m2_to_f32, uint8_t, f8_e5m2_value(v))

static void f32_from_f32(const float *src, void *dst, size_t n) { memcpy(dst, src, n * 4); }

static void f16_from_f32(const float *src, void *dst, size_t n)
{
    unsigned char *p = dst;
    for (size_t i = 0; i < n; i++) {
        uint16_t h = ftq_f32_to_f16(src[i]);
        memcpy(p + 2 * i, &h, 2);
    }
}

static void bf16_from_f32(const float *src, void *dst, size_t n)
{
    unsigned char *p = dst;
    for (size_t i = 0; i < n; i++) {
        uint16_t h = ftq_f32_to_bf16(src[i]);
        memcpy(p + 2 * i, &h, 2);
    }
}

static void f64_from_f32(const float *src, void *dst, size_t n)
{
    unsigned char *p = dst;
    for (size_t i = 0; i < n; i++) {
        double d = src[i];
        memcpy(p + 8 * i, &d, 8);
    }
}

static const ftq_dtype_traits traits[FTQ_DTYPE_COUNT] = {
    [FTQ_DTYPE_F32] = {"F32", 1, 4, 1, f32_to_f32, f32_from_f32},
    [FTQ_DTYPE_F16] = {"F16", 1, 2, 1, f16_to_f32, f16_from_f32},
    [FTQ_DTYPE_BF16] = {"BF16", 1, 2, 1, bf16_to_f32, bf16_from_f32},
    [FTQ_DTYPE_F64] = {"F64", 1, 8, 1, f64_to_f32, f64_from_f32},
    [FTQ_DTYPE_I8] = {"I8", 1, 1, 0, i8_to_f32, NULL},
    [FTQ_DTYPE_U8] = {"U8", 1, 1, 0, u8_to_f32, NULL},
    [FTQ_DTYPE_I16] = {"I16", 1, 2, 0, i16_to_f32, NULL},
    [FTQ_DTYPE_U16] = {"U16", 1, 2, 0, u16_to_f32, NULL},
    [FTQ_DTYPE_I32] = {"I32", 1, 4, 0, i32_to_f32, NULL},
    [FTQ_DTYPE_U32] = {"U32", 1, 4, 0, u32_to_f32, NULL},
    [FTQ_DTYPE_I64] = {"I64", 1, 8, 0, i64_to_f32, NULL},
    [FTQ_DTYPE_U64] = {"U64", 1, 8, 0, u64_to_f32, NULL},
    [FTQ_DTYPE_BOOL] = {"BOOL", 1, 1, 0, bool_to_f32, NULL},
    [FTQ_DTYPE_F8_E4M3] = {"F8_E4M3", 1, 1, 1, f8e4m3_to_f32, NULL},
    [FTQ_DTYPE_F8_E5M2] = {"F8_E5M2", 1, 1, 1, f8e5m2_to_f32, NULL},
    /* in memory only (an ftq_qmat): block_size 0 keeps it out of files and conversions */
    [FTQ_DTYPE_QMAT] = {"QMAT", 0, 0, 0, NULL, NULL},
    [FTQ_DTYPE_BMAT] = {"BMAT", 0, 0, 0, NULL, NULL}, /* an ftq_bmat (packed bf16) */
};

const ftq_dtype_traits *ftq_dtype_info(ftq_dtype t)
{
    if ((int)t < 0 || t >= FTQ_DTYPE_COUNT)
        return NULL;
    return &traits[t];
}

int ftq_dtype_from_name(const char *name, ftq_dtype *out)
{
    for (int i = 0; i < FTQ_DTYPE_COUNT; i++) {
        if (traits[i].name && traits[i].block_size > 0 && strcmp(traits[i].name, name) == 0) {
            *out = (ftq_dtype)i;
            return FTQ_OK;
        }
    }
    return FTQ_ENOTFOUND;
}

int64_t ftq_tensor_numel(const ftq_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] != 0 && n > INT64_MAX / t->shape[i])
            return INT64_MAX;
        n *= t->shape[i];
    }
    return n;
}

int ftq_tensor_to_f32(const ftq_tensor *t, float *dst)
{
    const ftq_dtype_traits *tr = ftq_dtype_info(t->dtype);
    if (!tr || !tr->to_f32 || tr->block_size != 1)
        return ftq_set_error(FTQ_EUNSUPPORTED, "cannot convert tensor '%s' of dtype %s to f32",
                             t->name ? t->name : "?", tr ? tr->name : "?");
    tr->to_f32(t->data, dst, (size_t)ftq_tensor_numel(t));
    return FTQ_OK;
}

char *ftq_shape_str(const int64_t *shape, int ndim, char *buf, size_t cap)
{
    size_t used = 0;
    if (cap == 0)
        return buf;
    buf[0] = '\0';
    used += (size_t)snprintf(buf + used, cap - used, "[");
    for (int i = 0; i < ndim && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (used < cap)
        snprintf(buf + used, cap - used, "]");
    return buf;
}
