// Packing of the layer's int4 group-wise projections for grouped_matmul (ops/packed_grouped_weights.h).
#include <vector>

#include "base/default_pool.h"
#include "ops/grouped_matmul_kernels.h"
#include "ops/packed_grouped_weights.h"

namespace moefuse {
namespace {

// Expert e's q, scale and zero as the pack functions read them: logical [K, N] from the [N, K] storage.
gemm::Int4Source expert_source(const Tensor& q, const Tensor& scale, const Tensor& zero, int64_t e) {
  const int64_t N = q.size(1), K = q.size(2), groups = scale.size(2);
  return gemm::Int4Source{q.data_as<uint8_t>() + e * N * K, 1,        K,
                          scale.data_as<float>() + e * N * groups, zero.data_as<uint8_t>() + e * N * groups,
                          1,                                        groups};
}

}  // namespace

PackedGroupedWeights pack_grouped_int4(const Tensor& q, const Tensor& scale, const Tensor& zero, int64_t G) {
  const int64_t E = q.size(0), N = q.size(1), K = q.size(2);
  std::vector<gemm::PackedWeights> experts(static_cast<size_t>(E));
  DefaultPoolLease lease;
  auto pack = [&](int64_t e) { experts[size_t(e)] = gemm::pack_weights_u4(expert_source(q, scale, zero, e), K, N, G); };
  if (lease.pool()) lease.pool()->parallel_for(E, pack);
  else
    for (int64_t e = 0; e < E; ++e) pack(e);
  return detail::PackedGroupedWeightsAccess::make(DType::u8, Shape{E, K, N}, std::move(experts));
}

void unpack_grouped_int4(const PackedGroupedWeights& w, const Tensor& q, const Tensor& scale, const Tensor& zero) {
  const auto experts = detail::PackedGroupedWeightsAccess::experts(w);
  for (int64_t e = 0; e < int64_t(experts.size()); ++e)
    gemm::unpack_weights_u4(*experts[size_t(e)], expert_source(q, scale, zero, e));
}

}  // namespace moefuse
