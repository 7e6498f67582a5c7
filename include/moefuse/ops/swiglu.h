// moefuse/ops/swiglu.h — SwiGLU activations: npu_swiglu.
#pragma once

#include <cstdint>

#include "moefuse/tensor.h"

namespace moefuse {

/// torch_npu.npu_swiglu(self, dim=-1).
///
/// Splits `x` into halves A (first) and B (second) along `dim` and returns silu(A) * B = A / (1 + exp(-A)) * B,
/// computed in fp32 and rounded once (RNE) to x's dtype. The first half is the gate.
///
/// x:   f32, bf16 or f16, 1 to 8 dims, any strides; size(dim) even.
/// dim: in [-x.dim(), x.dim()).
/// Returns a contiguous tensor of x's dtype and shape with size(dim) halved.
/// Errors: ValueError (rank 0, dim out of range, odd size(dim)); TypeError (x not a float dtype).
Tensor swiglu(const Tensor& x, int64_t dim = -1);

/// As swiglu(), writing into `out` (x's dtype, x's shape with size(dim) halved, contiguous, writable).
void swiglu_out(const Tensor& x, int64_t dim, const Tensor& out);

}  // namespace moefuse
