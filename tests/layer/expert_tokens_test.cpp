// MoeLayer::expert_tokens / cumulative_expert_tokens: the rows routed to each expert, per forward and summed, on
// both paths and across chunks.
#include <gtest/gtest.h>

#include "moefuse/config.h"
#include "moefuse/layer.h"
#include "util/random.h"

namespace moefuse {
namespace {

std::vector<int64_t> histogram(const LayerRouting& r, int64_t experts) {
  std::vector<int64_t> n(size_t(experts), 0);
  const int32_t* idx = r.topk_idx.data_as<const int32_t>();
  for (int64_t i = 0; i < r.topk_idx.numel(); ++i) ++n[size_t(idx[i])];
  return n;
}

TEST(LayerExpertTokens, CountsEveryRoutedRowPerForwardAndInAll) {
  MoeConfig c = load_preset("qwen3-30b-a3b");
  c.hidden_size = 64;
  c.moe_intermediate_size = 32;
  c.moe_chunk_max_len = 5;  // several chunks
  MoeLayer layer = MoeLayer::with_random_weights(c, 2, {.threads = 2});
  EXPECT_EQ(layer.expert_tokens(), std::vector<int64_t>(size_t(c.num_experts), 0));
  std::vector<int64_t> total(size_t(c.num_experts), 0);
  for (int64_t T : {0, 1, 13, 300}) {
    for (bool prefill : {false, true}) {
      const Tensor x = testing::Rng(uint64_t(T)).normal_tensor(c.dtype, {T, c.hidden_size});
      LayerRouting routing;
      layer.forward(x, prefill, &routing);
      const std::vector<int64_t> want = histogram(routing, c.num_experts);
      EXPECT_EQ(layer.expert_tokens(), want) << "T " << T << " prefill " << prefill;
      for (size_t e = 0; e < want.size(); ++e) total[e] += want[e];
      EXPECT_EQ(layer.cumulative_expert_tokens(), total);
    }
  }
}

}  // namespace
}  // namespace moefuse
