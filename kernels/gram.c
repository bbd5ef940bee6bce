/* gram.c - the Gram matrix of a batch of activation rows, accumulated: the second-moment
 * statistics calibration collects (GPTQ's Hessian is twice the sum over tokens). One sgemm
 * on OpenBLAS; called only from the calibration pass, outside any OpenMP region. */
#include <cblas.h>

#include "kernels/kernels.h"

void ftq_gram_accumulate(float *gram, const float *x, int T, int dim)
{
    if (T <= 0 || dim <= 0)
        return;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, dim, dim, T, 1.0f, x, dim, x, dim, 1.0f, gram, dim);
}
