// The fused decode path (the seed's SuperKernel scope, enable_superkernel): the experts of a decode step as one
// parallel region instead of a chain of operators — a sibling of the chain (chain.h) on the same kernel contracts
// (kernels/gemm/gemm.h, kernels/rows/rows.h), with its own buffers.
//
// After routing (the chain's own router and gating, route_tokens), one ThreadPool loop runs every task of the step,
// in this index order:
//   A  (group x a block of I's columns): gather the group's rows of x (widened to fp32), the gate and up columns of
//      w13 on the GEMM kernels, SwiGLU in the epilogue (w8a8: dequantise first, smooth scale after; w8a8c8: dequantise
//      and round to bf16 first, as its grouped matmul writes h);
//   then per group, in group order:
//     Q  (int8 activations): the dynamic int8 quantisation of the group's SwiGLU rows (w8a8c8: after clipping each
//        row to +-alpha x its largest magnitude, swiglu_clip_quant's clip, which needs the whole row);
//     B  (a block of H's columns each): the down projection of the group's rows, dequantised in the epilogue;
//   C  (token x 256 columns of H): the combine in slot order, with the shared expert (gated for qwen2_moe) as skip.
// Each Q sits just before its group's B tasks rather than all Qs after the last A: a thread that finishes its last A
// task while the other still runs the last group's A would wait in that group's Q for the rest of that task (half an
// A task of 2 MB on average, 20-30 us of a 1 ms w8a8 step), where now it goes on to the first groups' B tasks.
// A group is an active expert, or the shared expert over every token; its tasks sit in the same loop as the routed
// experts' (the seed's second stream). A task waits (polling, then asleep on a counter) only for tasks of lower
// index — its group's earlier phase, or all of B for C — and the pool hands out indices in increasing order, so every
// wait ends.
//
// Every value is rounded where the chain rounds it (h, a and y in the model dtype, the same quantisation kernels)
// and every dot product is one kernel chain over k in order, so the output is bitwise the chain's (tested for every
// family and dtype). Float models and every quantised chain (w4a16, w4a8, w8a8, w8a8c8) are fused.
#pragma once

#include <span>
#include <string>

#include "base/thread_pool.h"
#include "layer/chain.h"

namespace moefuse::layer {

/// The fused path's buffers for up to `capacity` tokens (T rows of x, R = T * K routed rows).
struct FusedBuffers {
  int64_t capacity = 0;
  RoutingBuffers routing;
  Tensor slot_row;        // [R] i32: the expert-sorted row of each slot (t, k)
  Tensor row_token;       // [R] i32: the token of each expert-sorted row
  Tensor group_expert;    // [E + 1] i32: the active experts, then the shared expert (id E)
  Tensor group_begin;     // [E + 2] i64: first row of each group (rows of the shared group are token indices)
  Tensor x_q;             // w8a8 [R, H] i8: x quantised per token (first T rows), or per (row, expert) when smooth
  Tensor x_scale;         // w8a8 [R] f32
  Tensor shared_x_q;      // w8a8 with smooth scales and a shared expert: [T, H] i8, x quantised per token
  Tensor shared_x_scale;  // [T] f32
  Tensor a_f32;           // [R, I] f32: SwiGLU output (model-dtype values; w8a8: before its quantisation)
  Tensor shared_a_f32;    // [T, Is] f32 (with a shared expert)
  Tensor a_q;             // w8a8 [R, I] i8
  Tensor a_scale;         // w8a8 [R] f32
  Tensor shared_a_q;      // w8a8 [T, Is] i8
  Tensor shared_a_scale;  // w8a8 [T] f32
  Tensor y;               // [R, H] model dtype: each routed row's down projection
  Tensor shared_y;        // [T, H] model dtype
  Tensor shared_gate_logit;  // [T, 1] f32 (qwen2_moe)
  Tensor counters;        // [2 * (E + 1) + 1] i32: finished tasks per group and phase, and in all (atomic_ref)
};

void fused_buffer_specs(const MoeConfig& config, int64_t capacity, FusedBuffers& b, const BufferSpecFn& each);
FusedBuffers plan_fused_buffers(const MoeConfig& config, int64_t capacity);
/// Bytes plan_fused_buffers(config, capacity) allocates (from fused_buffer_specs).
int64_t fused_buffer_bytes(const MoeConfig& config, int64_t capacity);

/// Why run_fused_decode cannot run this config ("" when it can): it takes every chain (float and quantised), with I and the
/// shared expert's width multiples of 32 (the up half of w13 then starts on a panel boundary of the packed weight).
std::string fused_decode_declines(const MoeConfig& config);

/// out [T, H] = the layer on x [T, H] (T <= buffers.capacity), bitwise what run_chain computes, on `pool` (called
/// from outside its tasks) with packed.kernels. Adds router and gating times to their stages, the routing setup
/// (sort by expert, w8a8: quantising x) to `routing`, and the region to `experts`. `routing_out`, when given,
/// receives views of topk_idx and the combine weights.
void run_fused_decode(const MoeConfig& config, const LayerWeights& weights, const PackedLayerWeights& packed,
                      const Tensor& x, const Tensor& out, FusedBuffers& buffers, ThreadPool& pool,
                      LayerTimings& timings, LayerRouting* routing_out);

/// The fused path's routed experts alone (tasks A, Q and B; no shared expert, no combine) over rows already expanded
/// and grouped: an expert-parallel rank's received rows. x [R, H] contiguous: model-dtype rows (float models and
/// w4a16) or int8 rows with their scales x_scale [R] f32 (w8a8; undefined otherwise); group_rows [G]: the rows of
/// each of the layer's G experts (the experts `weights` and `packed` hold, in their order; zeros allowed), which
/// follow one another in x. y [R, H] (model dtype, contiguous) receives each row's down projection: bitwise what
/// run_mlp computes for the same rows. Requires fused_decode_declines(config) to be "" and buffers planned by
/// plan_fused_expert_buffers for at least R rows; on `pool`, called from outside its tasks.
void run_fused_experts(const MoeConfig& config, const LayerWeights& weights, const PackedLayerWeights& packed,
                       const Tensor& x, const Tensor& x_scale, std::span<const int64_t> group_rows, const Tensor& y,
                       FusedBuffers& buffers, ThreadPool& pool);
/// Buffers for run_fused_experts over up to `rows` rows (x, its scales and y are the caller's).
FusedBuffers plan_fused_expert_buffers(const MoeConfig& config, int64_t rows);

}  // namespace moefuse::layer
