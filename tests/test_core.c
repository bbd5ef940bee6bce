/* test_core.c - dtype conversions, the traits table, errors, atomic files, RNG. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tests/test_util.h"

/* f16 -> f32 -> f16 is the identity on every non-NaN half; NaN stays NaN. */
static void test_f16_roundtrip_all(void)
{
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = ftq_f16_to_f32((uint16_t)h);
        uint16_t back = ftq_f32_to_f16(f);
        if (isnan(f)) {
            if (!isnan(ftq_f16_to_f32(back)))
                bad++;
        } else if (back != h) {
            bad++;
        }
    }
    ASSERT_INT_EQ(bad, 0);
}

/* f32 -> f16 rounding against a double-precision reference: nearest, ties to even. */
static void test_f16_rounding(void)
{
    ftq_rng r;
    ftq_rng_seed(&r, 7);
    int bad = 0;
    for (int i = 0; i < 200000; i++) {
        uint32_t bits = (uint32_t)ftq_rng_u64(&r);
        float f;
        memcpy(&f, &bits, 4);
        if (!isfinite(f) || fabsf(f) > 65504.0f)
            continue;
        uint16_t h = ftq_f32_to_f16(f);
        double got = ftq_f16_to_f32(h);
        /* neighbours must not be closer */
        double lo = ftq_f16_to_f32((uint16_t)(h - 1)), hi = ftq_f16_to_f32((uint16_t)(h + 1));
        double err = fabs(got - f);
        if ((h & 0x7fff) != 0 && (h & 0x7fff) != 0x7bff && (fabs(lo - f) < err || fabs(hi - f) < err))
            bad++;
    }
    ASSERT_INT_EQ(bad, 0);
    ASSERT_INT_EQ(ftq_f32_to_f16(65520.0f), 0x7c00);   /* rounds to inf */
    ASSERT_INT_EQ(ftq_f32_to_f16(65519.0f), 0x7bff);   /* max half */
    ASSERT_INT_EQ(ftq_f32_to_f16(5.9604645e-8f), 1);   /* smallest subnormal */
    ASSERT_INT_EQ(ftq_f32_to_f16(2.9802322e-8f), 0);   /* half of it: tie to even -> 0 */
    ASSERT_INT_EQ(ftq_f32_to_f16(-1.0f), 0xbc00);
}

static void test_bf16(void)
{
    ASSERT_INT_EQ(ftq_f32_to_bf16(1.0f), 0x3f80);
    /* 1 + 2^-8 is a tie between 0x3f80 and 0x3f81 -> even 0x3f80; 1 + 3*2^-9 rounds up */
    ASSERT_INT_EQ(ftq_f32_to_bf16(1.00390625f), 0x3f80);
    ASSERT_INT_EQ(ftq_f32_to_bf16(1.005859375f), 0x3f81);
    CU_ASSERT(isnan(ftq_bf16_to_f32(ftq_f32_to_bf16(NAN))));
    for (uint32_t h = 0; h < 65536; h++) {
        float f = ftq_bf16_to_f32((uint16_t)h);
        if (!isnan(f) && ftq_f32_to_bf16(f) != h) {
            CU_FAIL("bf16 roundtrip");
            break;
        }
    }
}

static void test_dtype_table(void)
{
    const char *names[] = {"F32", "F16", "BF16", "F64", "I8", "U8", "I16", "I32", "I64", "BOOL"};
    const size_t sizes[] = {4, 2, 2, 8, 1, 1, 2, 4, 8, 1};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        ftq_dtype d;
        CU_ASSERT_EQUAL(ftq_dtype_from_name(names[i], &d), FTQ_OK);
        CU_ASSERT_STRING_EQUAL(ftq_dtype_info(d)->name, names[i]);
        ASSERT_INT_EQ(ftq_dtype_info(d)->block_bytes, sizes[i]);
    }
    ftq_dtype d;
    CU_ASSERT_EQUAL(ftq_dtype_from_name("F128", &d), FTQ_ENOTFOUND);
    CU_ASSERT_EQUAL(ftq_dtype_from_name("f32", &d), FTQ_ENOTFOUND);
    CU_ASSERT_PTR_NULL(ftq_dtype_info(FTQ_DTYPE_COUNT));
}

static void test_errors(void)
{
    CU_ASSERT_EQUAL(ftq_set_error(FTQ_EFORMAT, "cannot read '%s': bad %d", "x", 3), FTQ_EFORMAT);
    CU_ASSERT_STRING_EQUAL(ftq_last_error(), "cannot read 'x': bad 3");
    CU_ASSERT_EQUAL(ftq_wrap_error(FTQ_EIO, "loading '%s'", "m"), FTQ_EIO);
    CU_ASSERT_STRING_EQUAL(ftq_last_error(), "loading 'm': cannot read 'x': bad 3");
    ftq_clear_error();
    CU_ASSERT_STRING_EQUAL(ftq_last_error(), "");
}

static void test_atomic_file(void)
{
    const char *dir = test_tmpdir("core_atomic");
    char *path = ftq_path_join(dir, "out.txt");
    ftq_atomic_file af;
    ASSERT_OK(ftq_atomic_open(&af, path));
    fputs("partial", af.fp);
    CU_ASSERT(!ftq_is_file(path)); /* nothing at the final path before commit */
    ftq_atomic_abort(&af);
    CU_ASSERT(!ftq_is_file(path));
    ASSERT_OK(ftq_atomic_open(&af, path));
    fputs("hello", af.fp);
    ASSERT_OK(ftq_atomic_commit(&af));
    char *data = NULL;
    size_t len = 0;
    ASSERT_OK(ftq_read_file(path, &data, &len));
    CU_ASSERT_STRING_EQUAL(data, "hello");
    free(data);
    CU_ASSERT_EQUAL(ftq_read_file("/nonexistent/x", &data, &len), FTQ_EIO);
    CU_ASSERT(strstr(ftq_last_error(), "'/nonexistent/x'") != NULL);
    free(path);
}

static void test_rng(void)
{
    ftq_rng a, b;
    ftq_rng_seed(&a, 42);
    ftq_rng_seed(&b, 42);
    for (int i = 0; i < 100; i++)
        CU_ASSERT_EQUAL(ftq_rng_u64(&a), ftq_rng_u64(&b));
    double s = 0, s2 = 0;
    int n = 100000;
    for (int i = 0; i < n; i++) {
        double x = ftq_rng_normal(&a);
        s += x;
        s2 += x * x;
    }
    ASSERT_NEAR(s / n, 0.0, 0.02);
    ASSERT_NEAR(s2 / n, 1.0, 0.02);
    float u = ftq_rng_uniform(&a);
    CU_ASSERT(u >= 0.0f && u < 1.0f);
}

/* CPU features are detected once and read without races: threads hammering
 * ftq_cpu_features / ftq_cpu_features_str always see the complete, same answer (the old
 * code rebuilt the string in a shared static buffer on every call). */
typedef struct {
    unsigned want;
    const char *want_str;
    pthread_barrier_t *start;
    int bad;
} cpu_race_arg;

static void *cpu_race_thread(void *p)
{
    cpu_race_arg *a = p;
    pthread_barrier_wait(a->start);
    for (int i = 0; i < 20000; i++) {
        const char *s = ftq_cpu_features_str();
        a->bad += ftq_cpu_features() != a->want || strcmp(s, a->want_str) != 0;
    }
    return NULL;
}

static void test_cpu_features_threads(void)
{
    char want_str[256];
    snprintf(want_str, sizeof want_str, "%s", ftq_cpu_features_str());
    CU_ASSERT(want_str[0] != '\0');
    enum { NT = 4 };
    pthread_t th[NT];
    cpu_race_arg args[NT];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, NT);
    for (int i = 0; i < NT; i++) {
        args[i] = (cpu_race_arg){ftq_cpu_features(), want_str, &start, 0};
        CU_ASSERT_FATAL(pthread_create(&th[i], NULL, cpu_race_thread, &args[i]) == 0);
    }
    int bad = 0;
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        bad += args[i].bad;
    }
    pthread_barrier_destroy(&start);
    ASSERT_INT_EQ(bad, 0);
}

/* FTQ_CPU_MASK still masks the detected set: 0 forces the scalar paths, 0x3 keeps at most
 * avx2 and fma (checked in a child process, as detection happens once per process). */
static void test_cpu_mask(void)
{
    char cmd[4200], *out = NULL;
    snprintf(cmd, sizeof cmd, "FTQ_CPU_MASK=0 '%s' --version", ftq_binary());
    ASSERT_INT_EQ(run_capture(cmd, &out), 0);
    if (!strstr(out, "(cpu: scalar)"))
        fprintf(stderr, "\n  FTQ_CPU_MASK=0: %s", out);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "(cpu: scalar)"));
    free(out);
    snprintf(cmd, sizeof cmd, "FTQ_CPU_MASK=0x3 '%s' --version", ftq_binary());
    ASSERT_INT_EQ(run_capture(cmd, &out), 0);
    unsigned f = ftq_cpu_features() & 3u;
    const char *want = f == 3 ? "(cpu: avx2 fma)" : f == 1 ? "(cpu: avx2)" : f == 2 ? "(cpu: fma)" : "(cpu: scalar)";
    if (!strstr(out, want))
        fprintf(stderr, "\n  FTQ_CPU_MASK=0x3: %s (expected %s)", out, want);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, want));
    free(out);
}

void test_register_core(void)
{
    static const test_case cases[] = {
        {"f16_roundtrip_all", test_f16_roundtrip_all},
        {"f16_rounding", test_f16_rounding},
        {"bf16", test_bf16},
        {"dtype_table", test_dtype_table},
        {"errors", test_errors},
        {"atomic_file", test_atomic_file},
        {"rng", test_rng},
        {"cpu_features_threads", test_cpu_features_threads},
        {"cpu_mask", test_cpu_mask},
        {NULL, NULL},
    };
    test_add_suite("core", cases);
}
