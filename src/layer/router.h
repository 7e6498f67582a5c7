// The layer's small dense steps around the operator chain: router logits, rounding, the qwen2_moe shared gate.
#pragma once

#include <cmath>

#include "kernels/gemm/gemm.h"
#include "moefuse/tensor.h"

namespace moefuse::layer {

/// out[t, e] (f32, contiguous [T, E]) = sum over h of x[t, h] * weight[e, h], accumulated in fp32 by the
/// grouped-matmul contract for the weight's dtype (h ascending with one fma per term; bf16 weights: pairs of h, odd
/// first, with DAZ/FTZ), so every model's logits match the reference bit for bit. weight is [E, H] in the model dtype
/// (Hugging Face's [out, in]).
void router_logits(const Tensor& x, const Tensor& weight, const Tensor& out);

/// The same logits, bitwise, from the weight packed as the logical [H, E] (PackedLayerWeights::router), on `kernels`
/// (the layer's, chosen once) on the calling thread: x is widened to fp32 a block of rows at a time (per-thread
/// scratch, no allocation once grown).
void router_logits(const gemm::GemmKernels& kernels, const Tensor& x, const gemm::PackedWeights& weight,
                   const Tensor& out);

/// dst = src rounded (RNE) to dst's dtype; both contiguous, same shape.
void round_to(const Tensor& src, const Tensor& dst);

/// qwen2_moe's shared-expert gate factor: 1 / (1 + exp(-logit)) in fp32.
inline float sigmoid_gate(float logit) { return 1.0f / (1.0f + std::exp(-logit)); }

/// out[t, h] = round(sigmoid_gate(gate_logit[t]) * y[t, h]), in fp32 with one rounding (qwen2_moe's gated shared
/// expert; the rows family's scale_round kernel, which the fused path calls too). gate_logit f32 [T, 1]; y and out
/// [T, H] in the model dtype, contiguous.
void apply_sigmoid_gate(const Tensor& gate_logit, const Tensor& y, const Tensor& out);

}  // namespace moefuse::layer
