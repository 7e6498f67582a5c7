// A layer's threads: a limit on the process's one pool (no pool of its own), capped at kMaxThreads, and threads that
// cannot start are a ResourceError.
#include <gtest/gtest.h>

#include <filesystem>
#include <iterator>

#include "base/default_pool.h"
#include "base/thread_pool.h"
#include "moefuse/config.h"
#include "moefuse/error.h"
#include "moefuse/layer.h"
#include "moefuse/threads.h"
#include "util/compare.h"
#include "util/errors.h"
#include "util/random.h"

namespace moefuse {
namespace {

MoeConfig tiny() {
  MoeConfig c = load_preset("olmoe-1b-7b");
  c.hidden_size = 64;
  c.moe_intermediate_size = 32;
  c.dtype = DType::f32;
  c.moe_chunk_max_len = 512;
  validate(c, "test config");
  return c;
}

// Threads of this process now.
int64_t process_threads() {
  return std::distance(std::filesystem::directory_iterator("/proc/self/task"), std::filesystem::directory_iterator());
}

TEST(LayerThreads, ALayerStartsNoPoolOfItsOwn) {
  const MoeConfig c = tiny();
  reserve_pool_threads(3);
  const int64_t before = process_threads();
  MoeLayer layer = MoeLayer::with_random_weights(c, 5, {.threads = 3});
  EXPECT_EQ(layer.threads(), 3);
  testing::Rng rng(2);
  const Tensor x = rng.normal_tensor(c.dtype, {400, c.hidden_size}, 1.0f);  // split between the 3 threads
  const Tensor y = layer.forward(x, true);
  EXPECT_EQ(process_threads(), before);  // loading, packing and the forward ran on the pool's threads
  MoeLayer one(c, layer.weights(), {.threads = 1});
  EXPECT_TENSOR_EQ(y, one.forward(x, true));
  EXPECT_EQ(process_threads(), before);
}

TEST(LayerThreads, CountsOverTheMaximumAreRefused) {
  const MoeConfig c = tiny();
  for (int threads : {kMaxThreads + 1, 100000, -1})
    EXPECT_THROWS_MSG(MoeLayer::with_random_weights(c, 1, {.threads = threads}), ValueError, "MoeLayer", "threads",
                      "0 (every core) or a count in 1..1024", "got " + std::to_string(threads));
}

struct FailThreadStartsAfter {
  explicit FailThreadStartsAfter(int n) { thread_pool_testing::fail_thread_starts_after(n); }
  ~FailThreadStartsAfter() { thread_pool_testing::fail_thread_starts_after(-1); }
};

// The pool has fewer than kMaxThreads threads here; starting the rest fails at the first one.
TEST(LayerThreads, ThreadsThatCannotStartAreAResourceError) {
  const MoeConfig c = tiny();
  {
    FailThreadStartsAfter none(0);
    EXPECT_THROWS_MSG(MoeLayer::with_random_weights(c, 1, {.threads = kMaxThreads}), ResourceError, "thread pool",
                      "expected 1024 threads to start");
  }
  MoeLayer layer = MoeLayer::with_random_weights(c, 1, {.threads = 2});
  testing::Rng rng(3);
  const Tensor x = rng.normal_tensor(c.dtype, {3, c.hidden_size}, 1.0f);
  EXPECT_TENSOR_EQ(MoeLayer(c, layer.weights(), {.threads = 1}).forward(x), layer.forward(x));
}

}  // namespace
}  // namespace moefuse
