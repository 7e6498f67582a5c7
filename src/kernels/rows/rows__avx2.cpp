// The rows kernels compiled for AVX2 + FMA + F16C (cmake/IsaFlags.cmake): the same source as rows_scalar.cpp, so
// the same operations in the same order (no contraction), vectorised by the compiler 8 lanes wide.
#include "kernels/rows/rows_impl.h"
#include "kernels/rows/variants.h"

MOEFUSE_ROWS_VARIANTS(avx2)
