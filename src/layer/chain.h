// The layer's operator chain (docs/layer.md §1) over one batch of tokens, into planned buffers.
#pragma once

#include <cstdint>

#include "layer/chain_ops.h"
#include "layer/packed_weights.h"
#include "moefuse/config.h"
#include "moefuse/layer.h"

namespace moefuse::layer {

/// Every intermediate tensor of the chain, sized for up to `capacity` tokens. A run over T <= capacity tokens
/// uses the leading rows (views, no allocation).
struct ChainBuffers {
  int64_t capacity = 0;
  Tensor logits;            // [T, E] f32
  Tensor logits_model;      // [T, E] model dtype (router_logits_dtype = model only)
  Tensor topk_weight;       // [T, K] logits dtype
  Tensor topk_weight_model; // [T, K] model dtype (only when the logits are f32 and the model is not)
  Tensor topk_idx;          // [T, K] i32
  Tensor scores;            // [T, E] f32: gating_top_k's `out` (not requested; written as zeros)
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
  // The fused decode path (fused_decode.h), planned when the config enables it:
  Tensor row_token;         // [T*K] i32: the token of each expert-sorted row
  Tensor group_expert;      // [E + 1] i32: the active experts, then the shared expert (id E)
  Tensor group_begin;       // [E + 2] i64: first row of each group (rows of the shared group are token indices)
  Tensor a_f32;             // [T*K, I] f32: SwiGLU output (model-dtype values; w8a8: before its quantisation)
  Tensor shared_a_f32;      // [T, Is] f32 (with a shared expert)
  Tensor counters;          // [2 * (E + 1) + 1] i32: finished tasks per group and phase, and in all (atomic_ref)
};

/// The gating result of route_tokens: views into the buffers.
struct Routed {
  Tensor topk_idx;  // [T, K] i32
  Tensor scales;    // [T, K] model dtype: the combine weights
};

/// Steps 1 and 2 of the chain (router logits, gating) for x [T, H] into `buffers`; adds their times to `timings`.
/// Shared by the chain and the fused decode path, so both route identically.
Routed route_tokens(const ChainOps& ops, const MoeConfig& config, const LayerWeights& weights,
                    const PackedLayerWeights* packed, const Tensor& x, ChainBuffers& buffers, LayerTimings& timings);

/// Allocates buffers for up to `capacity` tokens (with those of the fused path when config.enable_superkernel).
ChainBuffers plan_chain_buffers(const MoeConfig& config, int64_t capacity);

/// Bytes plan_chain_buffers(config, capacity) allocates.
int64_t chain_buffer_bytes(const MoeConfig& config, int64_t capacity);

/// out[T, H] = the layer on x[T, H] (T <= buffers.capacity), running the operators of `ops`. `packed`, when given,
/// holds the projections and router packed (then `weights` need not hold the projections); otherwise they come from
/// `weights`. Adds the time of each stage to `timings` (when given). `routing`, when given, receives views of
/// topk_idx and the model-dtype weights.
void run_chain(const ChainOps& ops, const MoeConfig& config, const LayerWeights& weights,
               const PackedLayerWeights* packed, const Tensor& x, const Tensor& out, ChainBuffers& buffers,
               LayerTimings* timings, LayerRouting* routing = nullptr);

}  // namespace moefuse::layer
