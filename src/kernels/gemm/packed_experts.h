// The experts of one grouped weight [E, K, N] (an MoE projection), each packed for the GEMM kernels (gemm.h's
// layout), in expert order. The layer owns these (layer/packed_weights.h) and the fused decode path reads them;
// the grouped_matmul operator's PackedGroupedWeights holds the same object (shared, not copied).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kernels/gemm/gemm.h"

namespace moefuse::gemm {

class PackedExperts {
 public:
  PackedExperts() = default;
  /// Takes the packed experts (all of one dtype, K and N).
  explicit PackedExperts(std::vector<PackedWeights> experts) : experts_(std::move(experts)) {
    for (const PackedWeights& w : experts_) ptrs_.push_back(&w);
  }
  PackedExperts(PackedExperts&&) = delete;  // ptrs_ point into experts_
  PackedExperts& operator=(PackedExperts&&) = delete;

  int64_t size() const { return int64_t(experts_.size()); }
  /// Expert e's packed weight.
  const PackedWeights& operator[](int64_t e) const { return experts_[size_t(e)]; }
  /// Every expert's packed weight, [e] = &(*this)[e] (the form the grouped GEMM runner takes).
  std::span<const PackedWeights* const> all() const { return ptrs_; }

 private:
  std::vector<PackedWeights> experts_;
  std::vector<const PackedWeights*> ptrs_;
};

}  // namespace moefuse::gemm
