// Scalar reference of npu_swiglu: the oracle for optimized kernels and the fallback. Arguments are validated by
// the op (src/ops/swiglu.cpp) before these are called.
#pragma once

#include <cstdint>

#include "moefuse/tensor.h"

namespace moefuse::reference {

/// out = silu(first half of x along dim) * second half, fp32 math, one RNE rounding. `dim` is non-negative.
void swiglu(const Tensor& x, int dim, const Tensor& out);

}  // namespace moefuse::reference
