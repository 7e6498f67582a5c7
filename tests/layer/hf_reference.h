// An independent reference of the MoE layer for tests: a per-token, per-expert loop the way Hugging Face's MoE
// blocks compute (route, run each chosen expert's MLP, weighted sum), with the rounding points of docs/layer.md §1
// and the quantised chains' dequantisation order. It reads the layer's weights directly and shares no code with
// src/ (not the operators, not the references, not the quantiser).
#pragma once

#include "moefuse/config.h"
#include "moefuse/layer.h"

namespace moefuse::testing {

/// out [T, H] in the model dtype; `topk_idx` (optional) receives [T, K] i32.
Tensor hf_moe_forward(const MoeConfig& config, const LayerWeights& weights, const Tensor& x,
                      Tensor* topk_idx = nullptr);

}  // namespace moefuse::testing
