// What a layer needs of the grouped_matmul operator's packed weights beyond the public API: the packed experts
// themselves, a kernels type (kernels/gemm/packed_experts.h) the layer keeps and the fused decode path reads.
#pragma once

#include <memory>

#include "kernels/gemm/packed_experts.h"
#include "moefuse/ops/grouped_matmul.h"

namespace moefuse {

/// The packed experts inside `w` (shared: they live as long as either holder); nullptr when `w` is empty.
std::shared_ptr<const gemm::PackedExperts> packed_experts(const PackedGroupedWeights& w);

}  // namespace moefuse
