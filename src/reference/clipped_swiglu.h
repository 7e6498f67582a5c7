// Scalar reference of npu_clipped_swiglu: the oracle for optimized kernels and the fallback. Arguments are
// validated by the op (src/ops/clipped_swiglu.cpp) before this is called.
#pragma once

#include <cstdint>

#include "moefuse/tensor.h"

namespace moefuse::reference {

/// x viewed as [rows, cut] (rows = product of the extents before `dim`, cut = product of the rest); the first
/// `active_rows` rows get out = glu(min(A, limit)) * (clamp(B, ±limit) + bias) with A/B the even/odd elements of
/// the row (interleaved) or its two halves; the other rows are zero. fp32 math, one RNE rounding to out's dtype.
/// `dim` is non-negative; out is contiguous.
void clipped_swiglu(const Tensor& x, int dim, int64_t active_rows, float alpha, float limit, float bias,
                    bool interleaved, const Tensor& out);

}  // namespace moefuse::reference
