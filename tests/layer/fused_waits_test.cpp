// The fused decode step's waits between its tasks, when they sleep: the step still ends and gives the chain's bits.
// Built under ThreadSanitizer too (the tsan preset), where it checks the wake-up's synchronisation.
#include <gtest/gtest.h>

#include "base/default_pool.h"
#include "base/thread_pool.h"
#include "moefuse/config.h"
#include "moefuse/layer.h"
#include "util/compare.h"
#include "util/configs.h"
#include "util/random.h"

namespace moefuse {
namespace {

// The fused decode step's tasks wait for lower-index tasks (their group's first phase, or every down projection for the
// combine). With the pool's spin time at 0 every such wait sleeps on its counter at once and is woken by the task that
// finishes: the step must still end, and give the chain's bits, on every thread count, many times over.
TEST(FusedWaits, TasksThatSleepWhileWaitingGiveTheChainsBits) {
  struct SpinTime {  // the process pool's spin time, restored at the end
    explicit SpinTime(int micros) {
      PoolLease lease(3);
      EXPECT_NE(lease.pool(), nullptr);
      if (lease.pool()) lease.pool()->set_spin_micros(micros);
    }
    ~SpinTime() {
      PoolLease lease(3);
      if (lease.pool()) lease.pool()->set_spin_micros(ThreadPool::kDefaultSpinMicros);
    }
  };
  const SpinTime sleep_at_once(0);
  for (QuantMode quant : {QuantMode::none, QuantMode::w8a8}) {
    // qwen1.5-moe: a gated shared expert, whose tasks sit in the same loop as the routed experts'
    MoeConfig chain = testing::shrunk_preset("qwen1.5-moe-a2.7b", DType::bf16, quant, 512, 256, 256);
    chain.enable_superkernel = false;
    MoeConfig fused = chain;
    fused.enable_superkernel = true;
    MoeLayer reference = MoeLayer::with_random_weights(chain, 11, {.threads = 1});
    for (int threads : {2, 3}) {
      MoeLayer layer(fused, reference.weights(), {.threads = threads});
      for (int64_t T : {1, 3, 8}) {
        const Tensor x = testing::Rng(uint64_t(T)).normal_tensor(DType::bf16, {T, 512});
        const Tensor want = reference.forward(x);
        for (int round = 0; round < 20; ++round) {
          EXPECT_TENSOR_EQ(layer.forward(x), want) << quant_mode_name(quant) << ", " << threads << " threads, T " << T;
          ASSERT_EQ(layer.path(), "superkernel");
        }
      }
    }
  }
}

}  // namespace
}  // namespace moefuse
