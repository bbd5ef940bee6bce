/* test_util.h - shared helpers for the CUnit suites: paths to fixtures, assertions that
 * print expected and actual values, temp directories, and loading golden JSON. */
#ifndef FTQ_TEST_UTIL_H
#define FTQ_TEST_UTIL_H

#include <CUnit/CUnit.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>

#include "include/ftq.h"

/* Add a suite named `name` with the given tests ({"name", fn}, ..., {NULL, NULL}). */
typedef struct {
    const char *name;
    void (*fn)(void);
} test_case;
void test_add_suite(const char *name, const test_case *cases);
/* The same, with `cleanup` run once after the suite's last test (frees what its tests
 * share; it is not a test and asserts nothing). */
void test_add_suite_cleanup(const char *name, const test_case *cases, void (*cleanup)(void));

/* Mark the current test SKIPPED (printf-style reason, e.g. "cpu lacks avx512vnni"): it is
 * reported and counted as skipped, never as passed (a failed assertion still fails it).
 * Call it, then return from the test. */
void test_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* 1 if this CPU (after FTQ_CPU_MASK) has every FTQ_CPU_* bit in `features`; otherwise the
 * test is marked SKIPPED ("`what`: cpu lacks ...") and 0 is returned. For tests that compare
 * a SIMD kernel with its scalar reference: without the feature both sides are the same
 * scalar code and the comparison could not fail. */
int test_require_cpu(unsigned features, const char *what);

/* Absolute path of a file under ../shared or the source tree (static buffer, rotating
 * among 8 so a few can be used at once). */
const char *shared_path(const char *rel);
const char *source_path(const char *rel);
/* A fresh empty directory under the build tree for this test (static buffer). */
const char *test_tmpdir(const char *name);
/* Path of the ftq binary. */
const char *ftq_binary(void);

/* Parse a JSON file; fails the current test (and returns NULL) if it cannot. */
cJSON *load_json(const char *path);
/* cJSON number array -> malloc'd doubles / int32 (count in *n). */
double *json_doubles(const cJSON *arr, size_t *n);
int32_t *json_ints(const cJSON *arr, size_t *n);

/* Run a shell command, capture stdout (malloc'd) and exit status. */
int run_capture(const char *cmd, char **out);

/* Run `ftq ARGS` (ARGS is shell text); stdout and stderr captured (malloc'd). Returns the
 * exit status. */
int ftq_run(const char *args, char **out, char **err);

/* Two loss curves of n steps (fp32 `ref`, bf16 `got`) agree: every step within `rel`
 * relative, and the two fall by the same amount within `drop` (printed). */
void test_curves_agree(const double *ref, const double *got, int n, double rel, double drop);

/* Newlines in s. */
int count_lines(const char *s);

/* ftq_model_load(dir), failing the current test (and printing why) if it cannot. */
ftq_model *test_load_model(const char *dir);

/* `ftq ARGS` must fail with exactly one stderr line that contains `phrase` and "error";
 * if outdir is not NULL, no directory may exist there afterwards (nothing half-written). */
void ftq_expect_error(const char *args, const char *phrase, const char *outdir);

/* `ftq ARGS` must succeed and print one JSON value on stdout; returns it (or NULL after a
 * failed assertion). */
cJSON *ftq_run_json(const char *args);

#define ASSERT_OK(expr)                                                                   \
    do {                                                                                  \
        int rc_ = (expr);                                                                 \
        if (rc_ != FTQ_OK)                                                                \
            fprintf(stderr, "\n  %s:%d: %s -> %d (%s)\n", __FILE__, __LINE__, #expr, rc_, \
                    ftq_last_error());                                                    \
        CU_ASSERT_EQUAL_FATAL(rc_, FTQ_OK);                                               \
    } while (0)

#define ASSERT_NEAR(actual, expected, tol)                                                 \
    do {                                                                                   \
        double a_ = (actual), e_ = (expected);                                             \
        int ok_ = fabs(a_ - e_) <= (tol);                                                  \
        if (!ok_)                                                                          \
            fprintf(stderr, "\n  %s:%d: %s = %.10g, expected %.10g (tol %.3g)\n", __FILE__, \
                    __LINE__, #actual, a_, e_, (double)(tol));                             \
        CU_ASSERT(ok_);                                                                    \
    } while (0)

#define ASSERT_INT_EQ(actual, expected)                                                   \
    do {                                                                                  \
        long long a_ = (long long)(actual), e_ = (long long)(expected);                   \
        if (a_ != e_)                                                                     \
            fprintf(stderr, "\n  %s:%d: %s = %lld, expected %lld\n", __FILE__, __LINE__, \
                    #actual, a_, e_);                                                     \
        CU_ASSERT_EQUAL(a_, e_);                                                          \
    } while (0)

#endif
