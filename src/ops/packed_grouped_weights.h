// What a layer needs of the grouped_matmul operator's packed weights beyond the public API: the packed experts
// themselves, a kernels type (kernels/gemm/packed_experts.h) the layer keeps and the fused decode path reads; and
// the operator in a given numerics tier.
#pragma once

#include <memory>

#include "kernels/gemm/packed_experts.h"
#include "moefuse/numerics.h"
#include "moefuse/ops/grouped_matmul.h"

namespace moefuse {

/// grouped_matmul_out on the GEMM kernels of tier `numerics` (the public forms run default_numerics()): what a
/// layer's chain calls, in the layer's tier. Same arguments, checks and errors as the public forms.
void grouped_matmul_out(const Tensor& x, const Tensor& weight, const GroupedMatmulOptions& options, const Tensor& y,
                        Numerics numerics);
void grouped_matmul_out(const Tensor& x, const PackedGroupedWeights& weight, const GroupedMatmulOptions& options,
                        const Tensor& y, Numerics numerics);

/// Packs int4 group-wise projections stored the Hugging Face way: q [E, N, K] u8 (values 0..15), scale [E, N, K / G]
/// f32 and zero [E, N, K / G] u8, contiguous. The result is the logical [E, K, N] weight (the view grouped_matmul
/// takes) with w = (q - z) * s (gemm.h, "int4 group-wise"); grouped_matmul runs it with float x of any dtype and
/// writes x's dtype; and with int8 x (W4A8: gemm.h, "int4 group-wise x int8"), which needs per_token_scale [M] f32,
/// takes no scale or bias (the group scales are in the weights) and writes output_dtype f32 (the default), bf16 or f16.
/// Packs the experts in parallel on the operators' pool. Errors: those of gemm::pack_weights_u4.
PackedGroupedWeights pack_grouped_int4(const Tensor& q, const Tensor& scale, const Tensor& zero, int64_t G);

/// The inverse: fills q, scale and zero (shapes and dtypes as above, contiguous) from `w`.
void unpack_grouped_int4(const PackedGroupedWeights& w, const Tensor& q, const Tensor& scale, const Tensor& zero);

/// Packs FP8 block-scaled projections in the layer's FP8 form (layer/weights.h, fp8_form): q [E, N, K] u8 (e4m3 bit
/// patterns) and scale [E, N, ceil(K / 128)] f32 (the scale of (e, n, k) at [e, n, k / 128]), contiguous. The result
/// is the logical [E, K, N] weight with w = bf16(e4m3 * s) (gemm.h, "FP8 block-scaled"), one byte per weight;
/// grouped_matmul runs it with float x of any dtype and writes x's dtype (int8 x is refused). Packs the experts in
/// parallel on the operators' pool. Errors: those of gemm::pack_weights_fp8.
PackedGroupedWeights pack_grouped_fp8(const Tensor& q, const Tensor& scale);

/// The weights `w` (packed by pack_grouped_fp8) stands for, bf16(e4m3 * s), into out [E, N, K] bf16 (contiguous).
void dequantise_grouped_fp8(const PackedGroupedWeights& w, const Tensor& out);

/// The packed experts inside `w` (shared: they live as long as either holder); nullptr when `w` is empty.
std::shared_ptr<const gemm::PackedExperts> packed_experts(const PackedGroupedWeights& w);

}  // namespace moefuse
