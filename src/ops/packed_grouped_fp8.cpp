// Packing of the layer's FP8 block-scaled projections for grouped_matmul (ops/packed_grouped_weights.h).
#include <vector>

#include "base/default_pool.h"
#include "ops/grouped_matmul_kernels.h"
#include "ops/packed_grouped_weights.h"

namespace moefuse {

PackedGroupedWeights pack_grouped_fp8(const Tensor& q, const Tensor& scale) {
  const int64_t E = q.size(0), N = q.size(1), K = q.size(2), kb = scale.size(2);
  std::vector<gemm::PackedWeights> experts(static_cast<size_t>(E));
  DefaultPoolLease lease;
  // Expert e as pack_weights_fp8 reads it: logical [K, N] from the [N, K] storage, one scale per column (block_n 1)
  // and 128 rows.
  auto pack = [&](int64_t e) {
    const gemm::Fp8Source src{q.data_as<uint8_t>() + e * N * K, 1, K, scale.data_as<float>() + e * N * kb, 1, kb,
                              gemm::kFp8BlockK, 1};
    experts[size_t(e)] = gemm::pack_weights_fp8(src, K, N);
  };
  if (lease.pool()) lease.pool()->parallel_for(E, pack);
  else
    for (int64_t e = 0; e < E; ++e) pack(e);
  return detail::PackedGroupedWeightsAccess::make(DType::u8, Shape{E, K, N}, std::move(experts));
}

void dequantise_grouped_fp8(const PackedGroupedWeights& w, const Tensor& out) {
  if (w.empty()) return;
  const auto experts = detail::PackedGroupedWeightsAccess::experts(w);
  const int64_t N = out.size(1), K = out.size(2);
  for (int64_t e = 0; e < int64_t(experts.size()); ++e)
    gemm::dequantise_weights_fp8(*experts[size_t(e)], out.data_as<bfloat16>() + e * N * K, 1, K);
}

}  // namespace moefuse
