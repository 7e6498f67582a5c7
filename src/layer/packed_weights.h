// The layer's weights in the form its kernels read, packed once at load (the only copy the layer keeps of the
// expert projections), and the way back to plain tensors for the reference chain and for saving.
#pragma once

#include "kernels/gemm/gemm.h"
#include "moefuse/config.h"
#include "moefuse/layer.h"
#include "moefuse/ops/grouped_matmul.h"

namespace moefuse::layer {

struct PackedLayerWeights {
  PackedGroupedWeights w13;         // from w13's view [E, H, 2I]
  PackedGroupedWeights w2;          // from w2's view [E, I, H]
  PackedGroupedWeights shared_w13;  // [1, H, 2Is] (empty without a shared expert)
  PackedGroupedWeights shared_w2;   // [1, Is, H]
  gemm::PackedWeights router;       // logical [H, E] of the [E, H] router: the router logits on the GEMM kernels
  gemm::PackedWeights shared_gate;  // logical [H, 1] (qwen2_moe; empty otherwise)
};

/// Packs `w`'s projections (on the operators' pool: the caller may scope one, base/default_pool.h) and releases
/// w13, w2, shared_w13 and shared_w2 one by one as they are packed, so that a load never holds more than one
/// extra projection. The router and the small tensors stay in `w` as they are.
PackedLayerWeights pack_layer_weights(LayerWeights& w);

/// `w` with w13, w2, shared_w13 and shared_w2 restored (new tensors, bitwise the packed weights) from `packed`.
LayerWeights unpack_layer_weights(const MoeConfig& config, const LayerWeights& w, const PackedLayerWeights& packed);

}  // namespace moefuse::layer
