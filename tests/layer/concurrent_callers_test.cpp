// Several threads calling the library at once: layers with their own pools (fused decode path and chain) and operators
// on the process-wide pool (one caller holds it, the others run on their own thread) give the bits of the same calls
// made one at a time. Under ThreadSanitizer (the tsan preset) this is the check that concurrent callers share no
// unsynchronised state.
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "moefuse/config.h"
#include "moefuse/layer.h"
#include "moefuse/ops.h"
#include "moefuse/threads.h"
#include "util/compare.h"
#include "util/configs.h"
#include "util/random.h"

namespace moefuse {
namespace {

MoeConfig small(const char* preset, QuantMode quant) {
  MoeConfig c = testing::shrunk_preset(preset, DType::bf16, quant, 64, 32, 64);
  validate(c, "test config");
  return c;
}

// A grouped_matmul large enough to be cut into tasks on the operators' pool: 4 experts, 96 rows each, 256 x 256.
struct Matmul {
  Tensor x, w;
  GroupedMatmulOptions o;
  Tensor run() const { return grouped_matmul(x, w, o); }
};

Matmul make_matmul(uint64_t seed) {
  testing::Rng rng(seed);
  Matmul m{rng.normal_tensor(DType::bf16, {384, 256}), rng.normal_tensor(DType::bf16, {4, 256, 256}, 0.05f), {}};
  m.o.group_type = 0;
  m.o.group_list_type = 1;
  m.o.group_list = Tensor::full(DType::i64, {4}, 96.0);
  return m;
}

TEST(ConcurrentCallers, GetTheBitsOfSequentialCalls) {
  set_num_threads(2);
  const MoeConfig fused = small("qwen1.5-moe-a2.7b", QuantMode::w8a8);  // fused decode, gated shared expert
  const MoeConfig chain = small("deepseek-v2-lite", QuantMode::none);
  MoeLayer a = MoeLayer::with_random_weights(fused, 1, {.threads = 2});
  MoeLayer b = MoeLayer::with_random_weights(chain, 2, {.threads = 3});
  const Tensor xa = testing::Rng(3).normal_tensor(DType::bf16, {5, 64});
  const Tensor xb = testing::Rng(4).normal_tensor(DType::bf16, {300, 64});  // split between b's threads
  const Matmul m1 = make_matmul(5), m2 = make_matmul(6);
  const Tensor ya = a.forward(xa), yb = b.forward(xb, true), y1 = m1.run(), y2 = m2.run();
  ASSERT_EQ(a.path(), "superkernel");

  constexpr int kRounds = 3;
  std::vector<Tensor> ra(kRounds), rb(kRounds), r1(kRounds), r2(kRounds);
  {
    std::vector<std::thread> callers;
    callers.emplace_back([&] {
      for (int i = 0; i < kRounds; ++i) ra[size_t(i)] = a.forward(xa);
    });
    callers.emplace_back([&] {
      for (int i = 0; i < kRounds; ++i) rb[size_t(i)] = b.forward(xb, true);
    });
    callers.emplace_back([&] {
      for (int i = 0; i < kRounds; ++i) r1[size_t(i)] = m1.run();
    });
    callers.emplace_back([&] {
      for (int i = 0; i < kRounds; ++i) r2[size_t(i)] = m2.run();
    });
    for (std::thread& t : callers) t.join();
  }
  for (int i = 0; i < kRounds; ++i) {
    EXPECT_TENSOR_EQ(ya, ra[size_t(i)]) << "round " << i;
    EXPECT_TENSOR_EQ(yb, rb[size_t(i)]) << "round " << i;
    EXPECT_TENSOR_EQ(y1, r1[size_t(i)]) << "round " << i;
    EXPECT_TENSOR_EQ(y2, r2[size_t(i)]) << "round " << i;
  }
  set_num_threads(0);
}

}  // namespace
}  // namespace moefuse
