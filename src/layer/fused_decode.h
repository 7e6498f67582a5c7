// The fused decode path (the seed's SuperKernel scope, enable_superkernel): the experts of a decode step as one
// parallel region instead of a chain of operators.
//
// After routing (the chain's own router and gating, route_tokens), one ThreadPool loop runs every task of the step,
// in this index order:
//   A  (group x a block of I's columns): gather the group's rows of x (widened to fp32), the gate and up columns of w13 on the GEMM kernels,
//      SwiGLU in the epilogue (w8a8: dequantise first, smooth scale after);
//   Q  (group, w8a8 only): the dynamic int8 quantisation of the group's SwiGLU rows;
//   B  (group x a block of H's columns): the down projection of the group's rows, dequantised in the epilogue;
//   C  (token x 256 columns of H): the combine in slot order, with the shared expert (gated for qwen2_moe) as skip.
// A group is an active expert, or the shared expert over every token; its tasks sit in the same loop as the routed
// experts' (the seed's second stream). A task waits (spinning, then yielding) only for tasks of lower index — its
// group's earlier phase, or all of B for C — and the pool hands out indices in increasing order, so every wait ends.
//
// Every value is rounded where the chain rounds it (h, a and y in the model dtype, the same quantisation calls) and
// every dot product is one kernel chain over k in order, so the output is bitwise the chain's (tested for every
// family and dtype). Float models and w8a8 are fused; w8a8c8 runs the chain.
#pragma once

#include "base/thread_pool.h"
#include "layer/chain.h"

namespace moefuse::layer {

/// Whether run_fused_decode handles this config: float models and w8a8, with I and the shared expert's width
/// multiples of 32 (the up half of w13 then starts on a panel boundary of the packed weight).
bool fused_decode_supported(const MoeConfig& config);

/// out [T, H] = the layer on x [T, H] (T <= buffers.capacity; buffers planned with enable_superkernel), bitwise
/// what run_chain computes, on `pool` (called from outside its tasks). Adds router and gating times to their stages,
/// the routing setup (sort by expert, w8a8: quantising x) to `routing`, and the region to `experts`.
/// `routing_out`, when given, receives views of topk_idx and the combine weights.
void run_fused_decode(const MoeConfig& config, const LayerWeights& weights, const PackedLayerWeights& packed,
                      const Tensor& x, const Tensor& out, ChainBuffers& buffers, ThreadPool& pool,
                      LayerTimings& timings, LayerRouting* routing_out);

}  // namespace moefuse::layer
