// The GEMM-kernel execution of grouped_matmul (src/ops/grouped_matmul.cpp validates, then calls this): groups of
// rows cut into (group x row block x column block) tasks, each one kernel call on packed weights plus the
// reference's epilogue, spread over a thread pool. Bitwise the same output as reference::grouped_matmul by the
// arithmetic contract of include/moefuse/ops/grouped_matmul.h: every output element is one kernel chain over k in
// order, followed by the same fp32 epilogue operations in the same order, and rows never interact.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "base/thread_pool.h"
#include "kernels/gemm/gemm.h"
#include "kernels/gemm/packed_experts.h"
#include "ops/packed_grouped_weights.h"
#include "moefuse/ops/grouped_matmul.h"
#include "ops/grouped_matmul_args.h"

namespace moefuse {

struct PackedGroupedWeights::Impl {
  std::shared_ptr<const gemm::PackedExperts> packed;  // one per expert, in expert order (shared with the layer)
  bool fp8_activations = false;  // pack_grouped_fp8_act: run with dynamic FP8 activations (ops/grouped_matmul_fp8a.h)
};

namespace detail {
// Internal access to a PackedGroupedWeights (for the op; the layer uses ops/packed_grouped_weights.h).
struct PackedGroupedWeightsAccess {
  /// Expert e's packed weight at [e]; the weights must not be empty.
  static std::span<const gemm::PackedWeights* const> experts(const PackedGroupedWeights& w) {
    return w.impl_->packed->all();
  }
  /// The packed experts themselves (nullptr when empty).
  static std::shared_ptr<const gemm::PackedExperts> packed(const PackedGroupedWeights& w) {
    return w.impl_ ? w.impl_->packed : nullptr;
  }
  /// Wraps packed experts (all of the same dtype, K and N) with the logical shape they were packed from.
  static PackedGroupedWeights make(DType dtype, const Shape& shape, std::vector<gemm::PackedWeights> experts);
  /// Whether the weights run with dynamic FP8 activations (pack_grouped_fp8_act), and the mark itself.
  static bool fp8_activations(const PackedGroupedWeights& w) { return w.impl_ && w.impl_->fp8_activations; }
  static void set_fp8_activations(PackedGroupedWeights& w) { w.impl_->fp8_activations = true; }
};
}  // namespace detail

namespace gmm {

/// Packs expert e (0 for a 2-D weight) of a weight [E, K, N] / [K, N] of any strides. Throws ResourceError when out
/// of memory.
gemm::PackedWeights pack_expert(const Tensor& weight, int64_t e);

/// Packs the experts e with need[e] (all when need is empty) into out[e] (out.size() == E), as tasks on `pool`
/// (nullptr: the calling thread).
void pack_experts(const Tensor& weight, std::span<const bool> need, std::span<gemm::PackedWeights> out,
                  ThreadPool* pool);

/// y = grouped_matmul of already-validated arguments. experts[e] is expert e's packed weight, or nullptr to have the
/// groups of expert e computed by reference::grouped_matmul on their rows (then a.weight must be the weight tensor).
/// Rows past the last group are written as zeros. Groups are handed out as tasks on `pool` (nullptr: the calling
/// thread), the reference ones first; kernel groups are cut into blocks of rows and columns so that there are about
/// 8 tasks per thread (see grouped_matmul_kernels.cpp). Scratch belongs to the calling thread and is reused: once
/// grown, a call with kernel groups only (and no bigger than before) allocates nothing.
void run_grouped_gemm(const GroupedMatmulArgs& a, std::span<const gemm::PackedWeights* const> experts,
                      const gemm::GemmKernels& kernels, ThreadPool* pool, const Tensor& y);

}  // namespace gmm
}  // namespace moefuse
