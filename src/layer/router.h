// The layer's small dense steps around the operator chain: router logits, rounding, the qwen2_moe shared gate.
#pragma once

#include "moefuse/tensor.h"

namespace moefuse::layer {

/// out[t, e] (f32, contiguous [T, E]) = sum over h of x[t, h] * weight[e, h], accumulated in fp32 in h order with
/// one fma per term (the grouped-matmul contract, so f32 models match the reference bit for bit). weight is [E, H]
/// in the model dtype (Hugging Face's [out, in]).
void router_logits(const Tensor& x, const Tensor& weight, const Tensor& out);

/// dst = src rounded (RNE) to dst's dtype; both contiguous, same shape.
void round_to(const Tensor& src, const Tensor& dst);

/// out[t, h] = round(sigmoid(gate_logit[t]) * y[t, h]), in fp32 with one rounding (qwen2_moe's gated shared
/// expert). gate_logit f32 [T, 1]; y and out [T, H] in the model dtype, contiguous.
void apply_sigmoid_gate(const Tensor& gate_logit, const Tensor& y, const Tensor& out);

}  // namespace moefuse::layer
