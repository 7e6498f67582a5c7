// The layer's weights in the form its kernels read, packed once at load (the only copy the layer keeps of the
// expert projections), and the way back to plain tensors for the reference chain and for saving.
#pragma once

#include <memory>

#include "kernels/gemm/gemm.h"
#include "kernels/gemm/packed_experts.h"
#include "kernels/rows/rows.h"
#include "moefuse/config.h"
#include "moefuse/layer.h"
#include "moefuse/ops/grouped_matmul.h"

namespace moefuse::layer {

/// One projection packed once: the operator's handle (what the chain's grouped_matmul takes) and the packed experts
/// it holds (a kernels type, what the fused decode path reads), sharing one copy of the data.
struct PackedProjection {
  PackedGroupedWeights op;
  std::shared_ptr<const gemm::PackedExperts> experts;  // nullptr when empty
};

/// The kernels a layer runs, chosen once when it is made (active_isa() then: MOEFUSE_MAX_ISA / set_max_isa apply
/// to layers made after them).
struct LayerKernels {
  gemm::GemmKernels gemm;    // the layer's tier (gemm.numerics): the expert and shared expert projections, shared gate
  gemm::GemmKernels router;  // portable in both tiers: the router logits, so that top-k is the oracle's bit for bit
  rows::RowsKernels rows;
};

struct PackedLayerWeights {
  PackedProjection w13;         // from w13's view [E, H, 2I]
  PackedProjection w2;          // from w2's view [E, I, H]
  PackedProjection shared_w13;  // [1, H, 2Is] (empty without a shared expert)
  PackedProjection shared_w2;   // [1, Is, H]
  gemm::PackedWeights router;       // logical [H, E] of the [E, H] router: the router logits on the GEMM kernels
  gemm::PackedWeights shared_gate;  // logical [H, 1] (qwen2_moe; empty otherwise)
  LayerKernels kernels;             // what reads these (router, fused path)
  bool fp8 = false;                 // the projections are FP8 block-scaled, one byte per weight (weights.h, fp8_form)
  bool fp8_activations = false;     // ... run with dynamic FP8 activations (config fp8_activations: dynamic_1x128)
};

/// The tier a layer of `config` made with `options` runs: options.numerics, else config.numerics, else
/// default_numerics() (ValueError for a bad MOEFUSE_NUMERICS).
Numerics resolve_numerics(const LayerOptions& options, const MoeConfig& config);

/// Packs `w`'s projections (on the operators' pool: the caller may scope one, base/default_pool.h) and releases
/// w13, w2, shared_w13 and shared_w2 one by one as they are packed, so that a load never holds more than one
/// extra projection (w4a16: their scales and zero points too, which the packed form holds; the FP8 form: its
/// scales, packed with the weights by gemm::pack_weights_fp8). The router and the small
/// tensors stay in `w` as they are. Chooses the layer's kernels, in tier `numerics`. With `fp8_activations`
/// dynamic_1x128 the FP8 projections are packed for FP8 activations (ops/grouped_matmul_fp8a.h), and weights that
/// are not in the FP8 form are a ValueError naming the key (checked before anything is packed).
PackedLayerWeights pack_layer_weights(LayerWeights& w, Numerics numerics,
                                      Fp8Activations fp8_activations = Fp8Activations::none);

/// `w` with w13, w2, shared_w13 and shared_w2 restored (new tensors, bitwise the packed weights) from `packed`;
/// FP8 projections as the bf16 weights they stand for (gemm::dequantise_weights_fp8), without scales.
LayerWeights unpack_layer_weights(const MoeConfig& config, const LayerWeights& w, const PackedLayerWeights& packed);

}  // namespace moefuse::layer
