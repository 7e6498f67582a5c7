// grouped_matmul with dynamic FP8 activations on FP8 weights (kernels/gemm/fp8_act.h: the definition): the layer's
// expert projections when its config says fp8_activations: dynamic_1x128 (docs/layer.md §7, "FP8 activations").
// The packed weights carry the choice: grouped_matmul_out on weights packed by pack_grouped_fp8_act quantises each
// row of x (widened exactly to fp32) per block of 128 input channels and runs the FP8 x FP8 kernels.
#pragma once

#include "moefuse/ops/grouped_matmul.h"
#include "ops/grouped_matmul_args.h"

namespace moefuse {

/// Packs FP8 block-scaled projections as pack_grouped_fp8 does (q [E, N, K] u8 e4m3, scale [E, N, ceil(K / 128)]
/// f32, contiguous), every panel keeping the checkpoint's scales (gemm::Fp8Source::scales_only), and marks them for
/// FP8 activations. dequantise_grouped_fp8 and the bf16-activation kernels still read them (the same weights).
PackedGroupedWeights pack_grouped_fp8_act(const Tensor& q, const Tensor& scale);

/// Whether `w` was packed by pack_grouped_fp8_act.
bool fp8_activations(const PackedGroupedWeights& w);

/// y = grouped_matmul(x, w) of validated arguments by the definition (float x of any dtype; y in x's dtype, each
/// output rounded once from fp32). Refuses (ValueError naming the option) bias, scale, per_token_scale and act_type,
/// which this chain does not use. Rows past the last group are written as zeros. Runs on the operators' pool.
void run_grouped_fp8_act(const GroupedMatmulArgs& a, const PackedGroupedWeights& w, const Tensor& y);

/// The FP8 x FP8 kernel this machine runs (layer.kernel()).
const char* fp8_act_kernel_name();

}  // namespace moefuse
