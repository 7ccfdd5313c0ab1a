#include <cblas.h>
/* LAPACK's Cholesky factorization (in libopenblas), for the weight-rounding optimization's inverse Hessian.
   Fortran calling convention: every argument by pointer, column-major. */
void spotrf_(const char *uplo, const int *n, float *a, const int *lda, int *info);
