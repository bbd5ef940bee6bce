/* test_prune.c - pruning: exact requested sparsity, the kept/pruned threshold property,
 * N:M masks against brute force, Wanda against a hand-computed case, ties, errors. */
#include <stdlib.h>
#include <string.h>

#include "include/ftq_prune.h"
#include "tests/test_util.h"

static float *random_matrix(int64_t n, uint64_t seed)
{
    ftq_rng r;
    ftq_rng_seed(&r, seed);
    float *w = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++)
        w[i] = ftq_rng_normal(&r);
    return w;
}

/* Every pruned |w| <= every kept |w| (scores = |w| * scale). */
static int threshold_ok(const float *orig, const float *w, int64_t n, const float *scale)
{
    float max_pruned = -1.0f, min_kept = INFINITY;
    for (int64_t i = 0; i < n; i++) {
        float s = fabsf(orig[i]) * (scale ? scale[i] : 1.0f);
        if (w[i] == 0.0f && orig[i] != 0.0f)
            max_pruned = s > max_pruned ? s : max_pruned;
        else if (w[i] != 0.0f)
            min_kept = s < min_kept ? s : min_kept;
    }
    return max_pruned <= min_kept;
}

static void test_magnitude_tensor(void)
{
    const int64_t R = 37, C = 53, n = R * C;
    const float sp[] = {0.0f, 0.1f, 0.5f, 0.77f, 1.0f};
    for (size_t k = 0; k < sizeof sp / sizeof sp[0]; k++) {
        float *orig = random_matrix(n, 1 + k), *w = malloc(sizeof(float) * n);
        memcpy(w, orig, sizeof(float) * n);
        ASSERT_OK(ftq_prune_magnitude(w, R, C, sp[k], FTQ_PRUNE_TENSOR));
        ASSERT_INT_EQ(ftq_count_zeros(w, n), llround(sp[k] * n));
        CU_ASSERT(threshold_ok(orig, w, n, NULL));
        for (int64_t i = 0; i < n; i++) /* kept values unchanged */
            if (w[i] != 0.0f && w[i] != orig[i])
                CU_FAIL("kept value changed");
        free(orig);
        free(w);
    }
}

static void test_magnitude_row(void)
{
    const int64_t R = 9, C = 100;
    float *orig = random_matrix(R * C, 42), *w = malloc(sizeof(float) * R * C);
    memcpy(w, orig, sizeof(float) * R * C);
    ASSERT_OK(ftq_prune_magnitude(w, R, C, 0.3f, FTQ_PRUNE_ROW));
    for (int64_t r = 0; r < R; r++) {
        ASSERT_INT_EQ(ftq_count_zeros(w + r * C, C), 30);
        CU_ASSERT(threshold_ok(orig + r * C, w + r * C, C, NULL));
    }
    free(orig);
    free(w);
}

/* Ties: equal magnitudes are pruned in index order, so the count is still exact. */
static void test_ties(void)
{
    float w[10] = {1, -1, 1, 2, -1, 2, 1, 3, -1, 1};
    ASSERT_OK(ftq_prune_magnitude(w, 1, 10, 0.4f, FTQ_PRUNE_TENSOR));
    const float want[10] = {0, 0, 0, 2, 0, 2, 1, 3, -1, 1};
    for (int i = 0; i < 10; i++)
        ASSERT_NEAR(w[i], want[i], 0);
    float v[10] = {1, -1, 1, 2, -1, 2, 1, 3, -1, 1};
    ASSERT_OK(ftq_prune_magnitude(v, 1, 10, 0.4f, FTQ_PRUNE_ROW));
    for (int i = 0; i < 10; i++)
        ASSERT_NEAR(v[i], want[i], 0);
}

static void test_nm_exact(void)
{
    const int64_t R = 13, C = 64;
    const int nm[][2] = {{2, 4}, {1, 4}, {4, 8}, {3, 8}};
    for (size_t t = 0; t < 4; t++) {
        int n = nm[t][0], m = nm[t][1];
        float *orig = random_matrix(R * C, 7 + t), *w = malloc(sizeof(float) * R * C);
        memcpy(w, orig, sizeof(float) * R * C);
        ASSERT_OK(ftq_prune_nm(w, R, C, n, m));
        int bad = 0;
        for (int64_t g = 0; g < R * C; g += m) {
            /* brute force: element j is kept iff fewer than n others beat it */
            for (int j = 0; j < m; j++) {
                int better = 0;
                for (int i = 0; i < m; i++) {
                    float a = fabsf(orig[g + i]), b = fabsf(orig[g + j]);
                    better += a > b || (a == b && i < j);
                }
                int kept = w[g + j] != 0.0f;
                bad += kept != (better < n);
            }
        }
        ASSERT_INT_EQ(bad, 0);
        ASSERT_INT_EQ(ftq_count_zeros(w, R * C), R * C / m * (m - n));
        free(orig);
        free(w);
    }
}

/* A hand-computed Wanda case. W = [[4, -1, 2, 0.5], [1, 3, -2, 1]], ||X|| = [0.1, 2, 1, 4].
 * Scores row 0: 0.4, 2, 2, 2 -> 50 % prunes 0.4 (col 0) and the first tie, col 1.
 * Scores row 1: 0.1, 6, 2, 4 -> prunes col 0 and col 2. Magnitude would prune cols 1, 3 of
 * row 0 and cols 0, 3 of row 1. */
static void test_wanda_hand(void)
{
    float w[8] = {4, -1, 2, 0.5f, 1, 3, -2, 1};
    const float a[4] = {0.1f, 2, 1, 4};
    ASSERT_OK(ftq_prune_wanda(w, 2, 4, a, 0.5f, 0, 0));
    const float want[8] = {0, 0, 2, 0.5f, 0, 3, 0, 1};
    for (int i = 0; i < 8; i++)
        ASSERT_NEAR(w[i], want[i], 0);
    float m[8] = {4, -1, 2, 0.5f, 1, 3, -2, 1};
    ASSERT_OK(ftq_prune_magnitude(m, 2, 4, 0.5f, FTQ_PRUNE_ROW));
    const float want_m[8] = {4, 0, 2, 0, 0, 3, -2, 0};
    for (int i = 0; i < 8; i++)
        ASSERT_NEAR(m[i], want_m[i], 0);
    /* Wanda 2:4 on the same: row 0 keeps the two best of {0.4, 2, 2, 2} -> cols 1, 2 */
    float v[8] = {4, -1, 2, 0.5f, 1, 3, -2, 1};
    ASSERT_OK(ftq_prune_wanda(v, 2, 4, a, 0.0f, 2, 4));
    const float want_nm[8] = {0, -1, 2, 0, 0, 3, 0, 1};
    for (int i = 0; i < 8; i++)
        ASSERT_NEAR(v[i], want_nm[i], 0);
}

/* With equal activation norms Wanda is row-wise magnitude pruning. */
static void test_wanda_uniform(void)
{
    const int64_t R = 5, C = 48;
    float *a = random_matrix(R * C, 3), *b = malloc(sizeof(float) * R * C), *norm = malloc(sizeof(float) * C);
    memcpy(b, a, sizeof(float) * R * C);
    for (int j = 0; j < C; j++)
        norm[j] = 0.7f;
    ASSERT_OK(ftq_prune_wanda(a, R, C, norm, 0.5f, 0, 0));
    ASSERT_OK(ftq_prune_magnitude(b, R, C, 0.5f, FTQ_PRUNE_ROW));
    CU_ASSERT_EQUAL(memcmp(a, b, sizeof(float) * R * C), 0);
    free(a);
    free(b);
    free(norm);
}

static void test_global(void)
{
    float *a = random_matrix(1000, 11), *b = random_matrix(333, 12), *c = random_matrix(77, 13);
    for (int i = 0; i < 333; i++)
        b[i] *= 3.0f; /* b has larger weights: pruned less */
    float *all = malloc(sizeof(float) * 1410), *orig = malloc(sizeof(float) * 1410);
    memcpy(orig, a, 4000);
    memcpy(orig + 1000, b, 333 * 4);
    memcpy(orig + 1333, c, 77 * 4);
    ftq_prune_span sp[3] = {{a, 1000}, {b, 333}, {c, 77}};
    ASSERT_OK(ftq_prune_global(sp, 3, 0.6f));
    memcpy(all, a, 4000);
    memcpy(all + 1000, b, 333 * 4);
    memcpy(all + 1333, c, 77 * 4);
    ASSERT_INT_EQ(ftq_count_zeros(all, 1410), llround(0.6 * 1410));
    CU_ASSERT(threshold_ok(orig, all, 1410, NULL));
    CU_ASSERT(ftq_count_zeros(b, 333) < ftq_count_zeros(a, 1000) * 333 / 1000);
    free(a);
    free(b);
    free(c);
    free(all);
    free(orig);
}

static void test_errors(void)
{
    float w[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    CU_ASSERT_EQUAL(ftq_prune_magnitude(w, 2, 4, 1.5f, FTQ_PRUNE_ROW), FTQ_EINVAL);
    CU_ASSERT_EQUAL(ftq_prune_magnitude(w, 2, 4, -0.1f, FTQ_PRUNE_ROW), FTQ_EINVAL);
    CU_ASSERT_EQUAL(ftq_prune_nm(w, 2, 4, 2, 3), FTQ_EINVAL); /* 4 % 3 */
    CU_ASSERT(strstr(ftq_last_error(), "multiple of 3") != NULL);
    CU_ASSERT_EQUAL(ftq_prune_nm(w, 2, 4, 4, 4), FTQ_EINVAL);
    float a[4] = {1, -1, 1, 1};
    CU_ASSERT_EQUAL(ftq_prune_wanda(w, 2, 4, a, 0.5f, 0, 0), FTQ_EINVAL);
    w[5] = NAN;
    CU_ASSERT_EQUAL(ftq_prune_magnitude(w, 2, 4, 0.5f, FTQ_PRUNE_TENSOR), FTQ_ENUMERIC);
    CU_ASSERT(strstr(ftq_last_error(), "index 5") != NULL);
}

void test_register_prune(void)
{
    static const test_case cases[] = {
        {"magnitude_tensor", test_magnitude_tensor},
        {"magnitude_row", test_magnitude_row},
        {"ties", test_ties},
        {"nm_exact", test_nm_exact},
        {"wanda_hand", test_wanda_hand},
        {"wanda_uniform", test_wanda_uniform},
        {"global", test_global},
        {"errors", test_errors},
        {NULL, NULL},
    };
    test_add_suite("prune", cases);
}
