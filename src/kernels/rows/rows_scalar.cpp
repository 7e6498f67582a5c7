// The rows kernels for any x86-64 CPU (baseline flags).
#include "kernels/rows/rows_impl.h"
#include "kernels/rows/variants.h"

MOEFUSE_ROWS_SCALAR_EXP_VARIANTS(scalar)
MOEFUSE_ROWS_PLAIN_VARIANTS(scalar)
