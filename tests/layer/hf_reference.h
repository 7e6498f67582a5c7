// The layer's independent oracle for the layer tests: reference_layer_forward (include/moefuse/layer.h,
// src/oracle/layer_oracle.cpp), a per-token, per-expert loop the way Hugging Face's MoE blocks compute, with the
// rounding points of docs/layer.md §1, sharing no code with the layer's compute path.
#pragma once

#include "moefuse/config.h"
#include "moefuse/layer.h"

namespace moefuse::testing {

/// out [T, H] in the model dtype; `topk_idx` (optional) receives [T, K] i32.
inline Tensor hf_moe_forward(const MoeConfig& config, const LayerWeights& weights, const Tensor& x,
                             Tensor* topk_idx = nullptr) {
  LayerRouting routing;
  Tensor out = reference_layer_forward(config, weights, x, &routing);
  if (topk_idx) *topk_idx = routing.topk_idx;
  return out;
}

}  // namespace moefuse::testing
