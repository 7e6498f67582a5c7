// Scalar references of the gating operators (npu_moe_gating_top_k, npu_moe_gating_top_k_softmax and its v2): the
// oracle for optimized kernels and the fallback. Arguments are validated by the ops (src/ops/gating_top_k.cpp,
// src/ops/gating_top_k_softmax.cpp) before these are called; the formulas are those documented in
// include/moefuse/ops/gating.h.
#pragma once

#include <cstdint>

#include "moefuse/ops/gating.h"
#include "moefuse/tensor.h"

namespace moefuse::reference {

/// npu_moe_gating_top_k on a validated 2-D x (hash mode and norm_type 2 already rejected). Writes every element of
/// out.y, out.expert_idx and out.out (zeros when !options.out_flag); the outputs are contiguous.
void gating_top_k(const Tensor& x, int64_t k, const GatingTopKOptions& options, const GatingTopKResult& out);

/// npu_moe_gating_top_k_softmax (renorm 0) and its v2 (renorm 0 or 1) on a validated 2-D or 3-D x, rows flattened
/// over the leading dims. `finished` may be undefined. y and expert_idx are contiguous [R, k] (any leading shape);
/// row_idx (v1) and softmax_out (v2 renorm 0 with output_softmax) are written only when defined and non-empty.
void gating_top_k_softmax(const Tensor& x, const Tensor& finished, int64_t k, int64_t renorm, const Tensor& y,
                          const Tensor& expert_idx, const Tensor& row_idx, const Tensor& softmax_out);

}  // namespace moefuse::reference
