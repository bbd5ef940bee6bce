/* runner.c - the CUnit test runner. Usage: ftq_tests [-l] [SUITE[:TEST]]...
 * With no argument every suite runs; names select suites (or single tests). A test that
 * calls test_skip (a path this CPU lacks) is reported as SKIPPED and counted apart, never
 * as passed. The last line is "N passed, N failed, N skipped"; the exit code is the number
 * of failed assertions (capped at 255), so 0 means all passed. */
#define _POSIX_C_SOURCE 200809L
#include <CUnit/CUnit.h>
#include <CUnit/TestRun.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/test_util.h"
#include "test_suites.gen.h"

static int n_sel;
static char **sel;

static int selected(const char *suite, const char *test)
{
    if (n_sel == 0)
        return 1;
    for (int i = 0; i < n_sel; i++) {
        const char *colon = strchr(sel[i], ':');
        size_t sl = colon ? (size_t)(colon - sel[i]) : strlen(sel[i]);
        if (strlen(suite) != sl || strncmp(sel[i], suite, sl) != 0)
            continue;
        if (!colon || !test || strcmp(colon + 1, test) == 0)
            return 1;
    }
    return 0;
}

static int list_only;

/* CUnit's cleanup hook returns int; the suites' cleanups are void. One slot per suite. */
#define MAX_CLEANUPS 64
static void (*cleanups[MAX_CLEANUPS])(void);
static int n_cleanups;

#define CLEANUP_THUNK(i) \
    static int cleanup_##i(void) { cleanups[i](); return 0; }
CLEANUP_THUNK(0) CLEANUP_THUNK(1) CLEANUP_THUNK(2) CLEANUP_THUNK(3)
CLEANUP_THUNK(4) CLEANUP_THUNK(5) CLEANUP_THUNK(6) CLEANUP_THUNK(7)
static int (*const cleanup_thunks[])(void) = {cleanup_0, cleanup_1, cleanup_2, cleanup_3,
                                              cleanup_4, cleanup_5, cleanup_6, cleanup_7};

void test_add_suite(const char *name, const test_case *cases)
{
    test_add_suite_cleanup(name, cases, NULL);
}

void test_add_suite_cleanup(const char *name, const test_case *cases, void (*cleanup)(void))
{
    if (!selected(name, NULL))
        return;
    CU_CleanupFunc cf = NULL;
    if (cleanup && !list_only) {
        if (n_cleanups >= (int)(sizeof cleanup_thunks / sizeof cleanup_thunks[0])) {
            fprintf(stderr, "runner: too many suites with a cleanup (%s)\n", name);
            exit(255);
        }
        cleanups[n_cleanups] = cleanup;
        cf = cleanup_thunks[n_cleanups++];
    }
    CU_pSuite s = list_only ? NULL : CU_add_suite(name, NULL, cf);
    for (const test_case *c = cases; c->name; c++) {
        if (!selected(name, c->name))
            continue;
        if (list_only)
            printf("%s:%s\n", name, c->name);
        else
            CU_add_test(s, c->name, c->fn);
    }
}

static char pathbufs[8][4096];
static int pathidx;

static const char *join2(const char *a, const char *b)
{
    char *p = pathbufs[pathidx++ & 7];
    if (snprintf(p, 4096, "%s/%s", a, b) >= 4096)
        p[0] = '\0';
    return p;
}

const char *shared_path(const char *rel)
{
    const char *env = getenv("FTQ_SHARED");
    return join2(env && *env ? env : FTQ_SHARED_DIR, rel);
}

const char *source_path(const char *rel) { return join2(FTQ_SOURCE_DIR, rel); }

const char *ftq_binary(void) { return FTQ_BINARY_DIR "/ftq"; }

const char *test_tmpdir(const char *name)
{
    static char buf[4096];
    char cmd[4200];
    snprintf(buf, sizeof buf, "%s/test-tmp/%s", FTQ_BINARY_DIR, name);
    if (snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", buf, buf) >= (int)sizeof cmd)
        return buf;
    if (system(cmd) != 0)
        fprintf(stderr, "cannot create %s\n", buf);
    return buf;
}

cJSON *load_json(const char *path)
{
    char *data = NULL;
    size_t len = 0;
    if (ftq_read_file(path, &data, &len) != FTQ_OK) {
        fprintf(stderr, "\n  %s\n", ftq_last_error());
        CU_FAIL("cannot read json fixture");
        return NULL;
    }
    cJSON *j = cJSON_ParseWithLength(data, len);
    free(data);
    if (!j)
        CU_FAIL("cannot parse json fixture");
    return j;
}

double *json_doubles(const cJSON *arr, size_t *n)
{
    *n = (size_t)cJSON_GetArraySize(arr);
    double *v = malloc(sizeof(double) * (*n + 1));
    size_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) v[i++] = it->valuedouble;
    return v;
}

int32_t *json_ints(const cJSON *arr, size_t *n)
{
    *n = (size_t)cJSON_GetArraySize(arr);
    int32_t *v = malloc(sizeof(int32_t) * (*n + 1));
    size_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) v[i++] = (int32_t)it->valuedouble;
    return v;
}

int run_capture(const char *cmd, char **out)
{
    FILE *p = popen(cmd, "r");
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    buf[0] = '\0';
    if (!p) {
        *out = buf;
        return -1;
    }
    size_t k;
    while ((k = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += k;
        if (cap - len < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    buf[len] = '\0';
    int st = pclose(p);
    *out = buf;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int ftq_run(const char *args, char **out, char **err)
{
    static char err_path[4200];
    static char cmd[40000];
    if (!err_path[0]) /* one file for every call: test_tmpdir would wipe a caller's dir */
        snprintf(err_path, sizeof err_path, "%s/stderr.txt", test_tmpdir("ftq-run"));
    if (snprintf(cmd, sizeof cmd, "'%s' %s 2>'%s'", ftq_binary(), args, err_path) >= (int)sizeof cmd) {
        CU_FAIL("command line too long");
        *out = strdup("");
        *err = strdup("");
        return -1;
    }
    int st = run_capture(cmd, out);
    size_t len = 0;
    if (ftq_read_file(err_path, err, &len) != FTQ_OK)
        *err = strdup("");
    return st;
}

void test_curves_agree(const double *ref, const double *got, int n, double rel, double drop)
{
    double worst = 0;
    for (int s = 0; s < n; s++)
        worst = fmax(worst, fabs(got[s] - ref[s]) / ref[s]);
    double d_ref = ref[0] - ref[n - 1], d_got = got[0] - got[n - 1];
    fprintf(stderr, "[fp32 %.4f -> %.4f, bf16 %.4f -> %.4f, worst step rel %.1e] ", ref[0], ref[n - 1], got[0],
            got[n - 1], worst);
    CU_ASSERT(worst < rel);
    ASSERT_NEAR(d_got, d_ref, drop);
}

int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

ftq_model *test_load_model(const char *dir)
{
    ftq_model *m = NULL;
    int rc = ftq_model_load(dir, &m);
    if (rc != FTQ_OK)
        fprintf(stderr, "\n  cannot load '%s': %s\n", dir, ftq_last_error());
    CU_ASSERT_EQUAL(rc, FTQ_OK);
    return m;
}

void ftq_expect_error(const char *args, const char *phrase, const char *outdir)
{
    char *out = NULL, *err = NULL;
    int st = ftq_run(args, &out, &err);
    if (st == 0 || count_lines(err) != 1 || !strstr(err, phrase))
        fprintf(stderr, "\n  ftq %s\n  exit %d, stderr: %s", args, st, err);
    CU_ASSERT(st != 0);
    CU_ASSERT_EQUAL(count_lines(err), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, phrase));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "error"));
    if (outdir && ftq_is_dir(outdir)) {
        fprintf(stderr, "\n  ftq %s left '%s' behind\n", args, outdir);
        CU_FAIL("output directory left behind");
    }
    free(out);
    free(err);
}

cJSON *ftq_run_json(const char *args)
{
    char *out = NULL, *err = NULL;
    int st = ftq_run(args, &out, &err);
    if (st != 0)
        fprintf(stderr, "\n  ftq %s -> %d: %s", args, st, err);
    CU_ASSERT_EQUAL(st, 0);
    cJSON *j = cJSON_Parse(out);
    if (!j)
        fprintf(stderr, "\n  not JSON: %.300s", out);
    CU_ASSERT_PTR_NOT_NULL(j);
    free(out);
    free(err);
    return j;
}

/* ---- skips and the report ------------------------------------------------------------ */

static char skip_reason[512];
static int skipped_current;
static unsigned n_passed, n_failed, n_skipped;

void test_skip(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (!skipped_current) /* the first reason is the one reported */
        vsnprintf(skip_reason, sizeof skip_reason, fmt, ap);
    va_end(ap);
    skipped_current = 1;
}

int test_require_cpu(unsigned features, const char *what)
{
    unsigned have = ftq_cpu_features();
    if ((have & features) == features)
        return 1;
    test_skip("%s: this cpu (after FTQ_CPU_MASK) lacks it (has: %s)", what, ftq_cpu_features_str());
    return 0;
}

static void on_suite_start(const CU_pSuite suite) { printf("Suite: %s\n", suite->pName); }

static void on_test_start(const CU_pTest test, const CU_pSuite suite)
{
    (void)suite;
    skipped_current = 0;
    skip_reason[0] = '\0';
    printf("  Test: %s ...", test->pName);
    fflush(stdout);
}

static void on_test_complete(const CU_pTest test, const CU_pSuite suite, const CU_pFailureRecord failure)
{
    (void)test;
    (void)suite;
    if (failure) {
        n_failed++;
        printf("FAILED\n");
        int i = 1;
        for (CU_pFailureRecord f = failure; f; f = f->pNext)
            printf("    %d. %s:%u  - %s\n", i++, f->strFileName ? f->strFileName : "",
                   f->uiLineNumber, f->strCondition ? f->strCondition : "");
        if (skipped_current)
            printf("    (also SKIPPED: %s)\n", skip_reason);
    } else if (skipped_current) {
        n_skipped++;
        printf("SKIPPED: %s\n", skip_reason);
    } else {
        n_passed++;
        printf("passed\n");
    }
    fflush(stdout);
}

static void on_suite_cleanup_failure(const CU_pSuite suite)
{
    printf("Suite %s: cleanup failed\n", suite->pName);
}

int main(int argc, char **argv)
{
    int a = 1;
    if (a < argc && strcmp(argv[a], "-l") == 0) {
        list_only = 1;
        a++;
    }
    n_sel = argc - a;
    sel = argv + a;
    if (list_only) {
        register_all_suites();
        return 0;
    }
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 255;
    register_all_suites();
    CU_set_suite_start_handler(on_suite_start);
    CU_set_test_start_handler(on_test_start);
    CU_set_test_complete_handler(on_test_complete);
    CU_set_suite_cleanup_failure_handler(on_suite_cleanup_failure);
    double t0 = ftq_time_sec();
    CU_run_all_tests();
    unsigned fails = CU_get_number_of_failures();
    printf("\nElapsed time = %.3f seconds\n", ftq_time_sec() - t0);
    printf("\n%u passed, %u failed, %u skipped\n", n_passed, n_failed, n_skipped);
    fflush(stdout); /* LeakSanitizer ends the process at exit without flushing stdio */
    CU_cleanup_registry();
    return fails > 255 ? 255 : (int)fails;
}
