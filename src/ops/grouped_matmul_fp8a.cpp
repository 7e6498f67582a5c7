#include "ops/grouped_matmul_fp8a.h"

#include <algorithm>
#include <vector>

#include "base/check.h"
#include "base/default_pool.h"
#include "base/elements.h"
#include "base/groups.h"
#include "base/scratch.h"
#include "kernels/gemm/fp8_act.h"
#include "kernels/gemm/fp8_layout.h"
#include "ops/grouped_matmul_kernels.h"

namespace moefuse {
namespace {

constexpr const char* kOp = "grouped_matmul";
// Tasks: (group x row block x column block). Rows per task bound the kernel's output tile; columns shrink from 512
// until there are about 8 tasks per thread (decode: few rows, so the columns carry the parallelism).
constexpr int64_t kRowBlock = 64;
constexpr int64_t kColBlockMax = 512;
constexpr int64_t kTasksPerThread = 8;

struct Span {
  int64_t expert, begin, end;
};

}  // namespace

PackedGroupedWeights pack_grouped_fp8_act(const Tensor& q, const Tensor& scale) {
  const int64_t E = q.size(0), N = q.size(1), K = q.size(2), kb = scale.size(2);
  std::vector<gemm::PackedWeights> experts(static_cast<size_t>(E));
  DefaultPoolLease lease;
  auto pack = [&](int64_t e) {
    gemm::Fp8Source src{q.data_as<uint8_t>() + e * N * K, 1, K, scale.data_as<float>() + e * N * kb, 1, kb,
                        gemm::kFp8BlockK, 1};
    src.scales_only = true;
    experts[size_t(e)] = gemm::pack_weights_fp8(src, K, N);
  };
  if (lease.pool()) lease.pool()->parallel_for(E, pack);
  else
    for (int64_t e = 0; e < E; ++e) pack(e);
  PackedGroupedWeights w = detail::PackedGroupedWeightsAccess::make(DType::u8, Shape{E, K, N}, std::move(experts));
  detail::PackedGroupedWeightsAccess::set_fp8_activations(w);
  return w;
}

bool fp8_activations(const PackedGroupedWeights& w) { return detail::PackedGroupedWeightsAccess::fp8_activations(w); }

const char* fp8_act_kernel_name() { return gemm::select_gemm_fp8_act().name; }

void run_grouped_fp8_act(const GroupedMatmulArgs& a, const PackedGroupedWeights& w, const Tensor& y) {
  const char* why = "FP8 activations run the plain projection (docs/layer.md §7)";
  if (a.bias.defined()) check::fail_value(kOp, "bias", std::string("none (") + why + ")", a.bias.describe());
  if (a.scale.defined()) check::fail_value(kOp, "scale", std::string("none (") + why + ")", a.scale.describe());
  if (a.per_token_scale.defined())
    check::fail_value(kOp, "per_token_scale", std::string("none (") + why + ")", a.per_token_scale.describe());
  if (a.act_type != 0)
    check::fail_value(kOp, "act_type", std::string("0 (") + why + ")", std::to_string(a.act_type));
  const auto experts = detail::PackedGroupedWeightsAccess::experts(w);
  const gemm::GemmFp8ActKernel kernel = gemm::select_gemm_fp8_act();
  const int64_t M = a.x.size(0), K = a.x.size(1), N = y.size(1), kb = gemm::fp8_blocks(K);
  const DType xt = a.x.dtype(), yt = y.dtype();
  const size_t xs = dtype_size(xt), ys = dtype_size(yt);
  auto* ybase = static_cast<std::byte*>(y.data());

  // Groups, and the rows no group covers (zeros).
  Scratch<Span> spans(std::max<int64_t>(1, a.group_list.defined() ? a.group_list.size(0) : 1));
  int64_t groups = 0, covered = 0;
  if (!a.group_list.defined()) {
    if (M > 0) spans[groups++] = {0, 0, M};
    covered = M;
  } else {
    for_each_group(a.group_list, GroupListType(a.group_list_type), [&](const GroupSpan& s) {
      if (s.end > s.begin) spans[groups++] = {s.expert, s.begin, s.end};
      covered = std::max(covered, s.end);
    });
  }
  for (int64_t m = covered; m < M; ++m) std::fill_n(ybase + m * y.stride(0) * int64_t(ys), N * int64_t(ys), std::byte{0});
  if (covered == 0 || N == 0) return;

  // Every covered row quantised once: codes [covered, K], scales [covered, kb].
  Scratch<uint8_t> qa(std::max<int64_t>(1, covered * K));
  Scratch<float> sa(std::max<int64_t>(1, covered * kb));
  DefaultPoolLease lease;
  const int threads = lease.threads();
  const int64_t qrows = std::max<int64_t>(1, (covered + threads * 4 - 1) / (threads * 4));
  auto quantise = [&](int64_t t) {
    Scratch<float> row(std::max<int64_t>(1, K));
    for (int64_t m = t * qrows; m < std::min(covered, (t + 1) * qrows); ++m) {
      widen_row(static_cast<const std::byte*>(a.x.data()) + m * a.x.stride(0) * int64_t(xs), xt, K, a.x.stride(1),
                row.data());
      gemm::quantise_fp8_act_row(row.data(), K, qa.data() + m * K, sa.data() + m * kb);
    }
  };
  const int64_t qtasks = (covered + qrows - 1) / qrows;
  if (lease.pool() && qtasks > 1) lease.pool()->parallel_for(qtasks, quantise);
  else
    for (int64_t t = 0; t < qtasks; ++t) quantise(t);

  // Column blocks: multiples of 32, narrowed until there are about 8 tasks per thread.
  int64_t row_tasks = 0;
  for (int64_t g = 0; g < groups; ++g) row_tasks += (spans[g].end - spans[g].begin + kRowBlock - 1) / kRowBlock;
  int64_t cb = std::min(kColBlockMax, (N + gemm::kGemmNR - 1) / gemm::kGemmNR * gemm::kGemmNR);
  while (cb > gemm::kGemmNR && threads > 1 && row_tasks * ((N + cb - 1) / cb) < kTasksPerThread * threads) cb /= 2;
  cb = std::max<int64_t>(gemm::kGemmNR, cb / gemm::kGemmNR * gemm::kGemmNR);
  const int64_t col_blocks = (N + cb - 1) / cb;

  // Task index -> (group, row block, column block), in group order.
  Scratch<int64_t> first(groups + 1);
  first[0] = 0;
  for (int64_t g = 0; g < groups; ++g)
    first[g + 1] = first[g] + (spans[g].end - spans[g].begin + kRowBlock - 1) / kRowBlock * col_blocks;
  auto task = [&](int64_t t) {
    const int64_t g = std::upper_bound(first.data(), first.data() + groups + 1, t) - first.data() - 1;
    const int64_t local = t - first[g];
    const Span& s = spans[g];
    const int64_t r0 = s.begin + (local / col_blocks) * kRowBlock, r1 = std::min(s.end, r0 + kRowBlock);
    const int64_t n0 = (local % col_blocks) * cb, n1 = std::min(N, n0 + cb);
    Scratch<float> c((r1 - r0) * (n1 - n0));
    kernel.fn(r1 - r0, K, n0, n1, qa.data() + r0 * K, K, sa.data() + r0 * kb, kb, experts[size_t(s.expert)]->data(),
              c.data(), n1 - n0);
    for (int64_t r = r0; r < r1; ++r)
      store_row(c.data() + (r - r0) * (n1 - n0), n1 - n0, yt, ybase + (r * y.stride(0) + n0) * int64_t(ys));
  };
  const int64_t tasks = first[groups];
  if (lease.pool() && tasks > 1) lease.pool()->parallel_for(tasks, task);
  else
    for (int64_t t = 0; t < tasks; ++t) task(t);
}

}  // namespace moefuse
