// The layer's operator chain (docs/layer.md §1) over one batch of tokens, into planned buffers.
#pragma once

#include <cstdint>
#include <functional>

#include "layer/chain_ops.h"
#include "layer/packed_weights.h"
#include "moefuse/config.h"
#include "moefuse/layer.h"

namespace moefuse::layer {

/// Steps 1 and 2 (router, gating) of a forward: the buffers route_tokens writes, shared by the chain and the fused
/// decode path.
struct RoutingBuffers {
  Tensor logits;            // [T, E] f32
  Tensor logits_model;      // [T, E] model dtype (router_logits_dtype = model only)
  Tensor topk_weight;       // [T, K] logits dtype
  Tensor topk_weight_model; // [T, K] model dtype (only when the logits are f32 and the model is not)
  Tensor topk_idx;          // [T, K] i32
  Tensor scores;            // [T, E] f32: gating_top_k's `out` (not requested; written as zeros)
};

/// How a buffer struct is planned: `each` is called once per tensor of the plan with its dtype and shape, so that
/// allocating the buffers and counting their bytes read one list.
using BufferSpecFn = std::function<void(Tensor& slot, DType dtype, const Shape& shape)>;
void routing_buffer_specs(const MoeConfig& config, int64_t capacity, RoutingBuffers& b, const BufferSpecFn& each);

/// Bytes of the tensors a spec function lists (nothing allocated).
template <class Buffers, class Specs>
int64_t planned_bytes(const MoeConfig& config, int64_t capacity, Specs specs) {
  Buffers dry;
  int64_t bytes = 0;
  specs(config, capacity, dry,
        [&](Tensor&, DType dt, const Shape& shape) { bytes += shape.numel() * int64_t(dtype_size(dt)); });
  return bytes;
}

/// Every intermediate tensor of the chain, sized for up to `capacity` tokens. A run over T <= capacity tokens
/// uses the leading rows (views, no allocation).
struct ChainBuffers {
  int64_t capacity = 0;
  RoutingBuffers routing;
  Tensor expanded_x;        // [T*K, H] model dtype or i8
  Tensor expanded_row_idx;  // [T*K] i32
  Tensor counts;            // [E] i64 (count) or [E, 2] i64 (key-value, w8a8)
  Tensor expanded_scale;    // [T*K] f32
  Tensor h;                 // [T*K, 2I] model dtype, i32 (w8a8) or bf16 (w8a8c8)
  Tensor a;                 // [T*K, I] model dtype or i8
  Tensor a_scale;           // [T*K] f32
  Tensor y;                 // [T*K, H] model dtype
  // Shared expert (width Is); undefined without one.
  Tensor shared_idx;        // [T, 1] i32 zeros: routes every token to the one shared "expert" (quantised chains)
  Tensor shared_x;          // [T, H] i8
  Tensor shared_row_idx;    // [T] i32
  Tensor shared_counts;     // [1] or [1, 2] i64
  Tensor shared_x_scale;    // [T] f32
  Tensor shared_h;          // [T, 2Is]
  Tensor shared_a;          // [T, Is]
  Tensor shared_a_scale;    // [T] f32
  Tensor shared_y;          // [T, H] model dtype
  Tensor shared_gate_logit; // [T, 1] f32 (qwen2_moe)
  Tensor shared_out;        // [T, H] model dtype: the gated shared output (qwen2_moe)
  Tensor unit_alpha;        // [1] f32 = 1: the shared expert's clip factor (w8a8c8)
};

/// The gating result of route_tokens: views into the buffers.
struct Routed {
  Tensor topk_idx;  // [T, K] i32
  Tensor scales;    // [T, K] model dtype: the combine weights
};

/// Steps 1 and 2 of the chain (router logits, gating) for x [T, H] into `buffers`; adds their times to `timings`.
/// Shared by the chain and the fused decode path, so both route identically.
Routed route_tokens(const ChainOps& ops, const MoeConfig& config, const LayerWeights& weights,
                    const PackedLayerWeights* packed, const Tensor& x, RoutingBuffers& buffers, LayerTimings& timings);

/// The chain's buffers for up to `capacity` tokens (shared_idx and unit_alpha are filled after allocation).
void chain_buffer_specs(const MoeConfig& config, int64_t capacity, ChainBuffers& b, const BufferSpecFn& each);

/// Allocates buffers for up to `capacity` tokens.
ChainBuffers plan_chain_buffers(const MoeConfig& config, int64_t capacity);

/// Bytes plan_chain_buffers(config, capacity) allocates (from chain_buffer_specs).
int64_t chain_buffer_bytes(const MoeConfig& config, int64_t capacity);

/// The float or quantised expert MLP (docs/layer.md §1, experts) over rows `x` routed to experts by `group_list`,
/// written into `y`: the chain's routed experts, its shared expert, and an expert-parallel rank's experts.
struct MlpArgs {
  Tensor x;             // [R, H] model dtype or i8
  Tensor x_scale;       // [R] f32 (quantised)
  Tensor group_list;    // counts [G] / key-value [G, 2]; undefined = one group over every row
  Tensor w13, w2;       // logical [G, H, 2W] / [G, W, H] views (undefined when packed)
  const PackedGroupedWeights* w13_packed = nullptr;  // the same, packed (when the caller has them)
  const PackedGroupedWeights* w2_packed = nullptr;
  Tensor w13_scale, w2_scale, smooth2, alpha;
  Tensor h, a, a_scale, y;  // h [R, 2W], a [R, W], a_scale [R], y [R, H] (dtypes of ChainBuffers)
};
void run_mlp(const ChainOps& ops, const MoeConfig& config, const MlpArgs& m);

/// The weight members of MlpArgs for the routed experts of `w` (projections from `packed` when given, else `w`).
MlpArgs routed_expert_weights(const LayerWeights& w, const PackedLayerWeights* packed);

/// Step 3 of the chain: init_routing_v2 of x [T, H] by topk_idx [T, K] over the config's E experts (dropless,
/// token-major; dynamic int8 with w's smooth scale 1 for the quantised chains), the counts in `counts_type` (1 per
/// expert, 2 key-value), into `out`.
void expand_tokens(const ChainOps& ops, const MoeConfig& config, const LayerWeights& w, const Tensor& x,
                   const Tensor& topk_idx, int64_t counts_type, const InitRoutingV2Result& out);

/// Step 5 of the chain: the shared expert over x [T, H] (T <= b.capacity) into b's shared buffers; returns the
/// combine's skip term (qwen2_moe: gated), undefined without a shared expert.
Tensor run_shared_expert(const ChainOps& ops, const MoeConfig& config, const LayerWeights& w,
                         const PackedLayerWeights* packed, const Tensor& x, ChainBuffers& b);

/// out[T, H] = the layer on x[T, H] (T <= buffers.capacity), running the operators of `ops`. `packed`, when given,
/// holds the projections and router packed (then `weights` need not hold the projections); otherwise they come from
/// `weights`. Adds the time of each stage to `timings` (when given). `routing`, when given, receives views of
/// topk_idx and the model-dtype weights.
void run_chain(const ChainOps& ops, const MoeConfig& config, const LayerWeights& weights,
               const PackedLayerWeights* packed, const Tensor& x, const Tensor& out, ChainBuffers& buffers,
               LayerTimings* timings, LayerRouting* routing = nullptr);

}  // namespace moefuse::layer
