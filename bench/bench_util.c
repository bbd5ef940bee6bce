/* bench_util.c - what every ftq_bench subcommand measures the same way: the median of a set
 * of timings and the OpenBLAS sgemm rate of this machine in the same run. */
#include <cblas.h>
#include <stdlib.h>

#include "bench/bench.h"
#include "include/ftq.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double ftq_bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double ftq_bench_sgemm_gflops(int M, int N, int K, int reps)
{
    float *A = malloc(sizeof(float) * (size_t)M * K), *B = malloc(sizeof(float) * (size_t)N * K);
    float *C = malloc(sizeof(float) * (size_t)M * N);
    double t[32], rate = 0.0;
    if (reps > 32)
        reps = 32;
    if (A && B && C && reps > 0) {
        for (size_t i = 0; i < (size_t)M * K; i++)
            A[i] = (float)(i % 7) * 0.01f;
        for (size_t i = 0; i < (size_t)N * K; i++)
            B[i] = (float)(i % 5) * 0.01f;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N); /* warm */
        for (int r = 0; r < reps; r++) {
            double t0 = ftq_time_sec();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
            t[r] = ftq_time_sec() - t0;
        }
        rate = 2.0 * M * N * K / ftq_bench_median(t, reps) / 1e9;
    }
    free(A);
    free(B);
    free(C);
    return rate;
}
