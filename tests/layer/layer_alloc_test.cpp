// Graph mode's steady-state forward makes no heap allocation (issue 3; docs/layer.md §2): after a first forward has
// planned the workspaces, forwards of at most that size allocate nothing, in every chain.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "base/scratch_stats.h"
#include "moefuse/config.h"
#include "moefuse/layer.h"
#include "moefuse/threads.h"
#include "util/alloc_counter.h"
#include "util/compare.h"
#include "util/configs.h"
#include "util/random.h"

namespace moefuse {
namespace {

MoeConfig small(const char* preset, DType dtype, QuantMode quant, ExeMode mode) {
  MoeConfig c = testing::shrunk_preset(preset, dtype, quant);
  c.exe_mode = mode;
  c.moe_chunk_max_len = 16;
  return c;
}

struct Chain {
  const char* preset;
  DType dtype;
  QuantMode quant;
};

TEST(LayerAllocation, GraphModeSteadyStateForwardAllocatesNothing) {
  // The operators' process-wide pool hands tasks out dynamically, so one of its workers may grow its per-thread
  // scratch the first time it gets a task, on any later call: run the operators on the calling thread here.
  set_num_threads(1);
  std::set<std::string> decode_paths;  // the decode forwards cover the fused path and the chain
  for (Chain k : {Chain{"olmoe-1b-7b", DType::bf16, QuantMode::none}, Chain{"deepseek-v3", DType::f32, QuantMode::none},
                  Chain{"qwen1.5-moe-a2.7b", DType::f16, QuantMode::none},
                  Chain{"deepseek-v2-lite", DType::bf16, QuantMode::w8a8},
                  Chain{"qwen1.5-moe-a2.7b", DType::bf16, QuantMode::w8a8c8}}) {
    MoeConfig c = small(k.preset, k.dtype, k.quant, ExeMode::ge_graph);
    // One thread: a worker of a larger pool grows its per-thread scratch the first time it gets a task, which may
    // be a later forward; with one thread the warm-up below is the whole story.
    MoeLayer layer = MoeLayer::with_random_weights(c, 3, {.threads = 1});
    testing::Rng rng(4);
    Tensor x = rng.normal_tensor(c.dtype, {40, 64});  // three chunks of at most 16
    Tensor out = Tensor::empty(c.dtype, {40, 64});
    Tensor out_small = Tensor::empty(c.dtype, {3, 64});
    layer.forward_out(x, true, out);  // plans
    Tensor first = out.clone();
    layer.forward_out(x.narrow(0, 0, 3), false, out_small);
    {
      testing::AllocationCounter counter;
      layer.forward_out(x, true, out);
      layer.forward_out(x.narrow(0, 0, 3), false, out_small);
      EXPECT_EQ(counter.count(), 0u) << k.preset << " " << dtype_name(k.dtype) << " " << quant_mode_name(k.quant);
    }
    const std::string path = layer.path();  // "chain: <why the fused path declined>" names the chain too
    decode_paths.insert(path.substr(0, path.find(':')));
    EXPECT_TENSOR_EQ(first, out);
    EXPECT_TENSOR_EQ(first.narrow(0, 0, 3), out_small);
  }
  EXPECT_EQ(decode_paths, (std::set<std::string>{"chain", "superkernel"}));
  set_num_threads(0);
}

// With 2 or 3 threads the steady state allocates nothing but scratch growth: the layer's pool hands tasks out
// dynamically, so after the warm-up a thread may still get, for the first time, a task larger than any it ran
// before, and then grows its per-thread scratch buffer once (src/base/scratch.h; docs/layer.md §2). Every other
// allocation — in the pool's loops, the fused path's task graph, the operators, the planned workspaces — would
// show here as more allocations than scratch growths.
TEST(LayerAllocation, WithThreadsTheSteadyStateOnlyGrowsScratch) {
  for (int threads : {2, 3}) {
    std::set<std::string> decode_paths;
    for (Chain k : {Chain{"olmoe-1b-7b", DType::bf16, QuantMode::none}, Chain{"deepseek-v3", DType::f32, QuantMode::none},
                    Chain{"deepseek-v2-lite", DType::bf16, QuantMode::w8a8},
                    Chain{"qwen1.5-moe-a2.7b", DType::bf16, QuantMode::w8a8c8}}) {
      MoeConfig c = small(k.preset, k.dtype, k.quant, ExeMode::ge_graph);
      c.moe_chunk_max_len = 300;  // 300-token chunks are split between the threads; 3-token ones are not
      MoeLayer layer = MoeLayer::with_random_weights(c, 3, {.threads = threads});
      testing::Rng rng(4);
      Tensor x = rng.normal_tensor(c.dtype, {300, 64});
      Tensor out = Tensor::empty(c.dtype, {300, 64});
      Tensor out_small = Tensor::empty(c.dtype, {3, 64});
      layer.forward_out(x, true, out);  // plans
      Tensor first = out.clone();
      layer.forward_out(x.narrow(0, 0, 3), false, out_small);
      Tensor first_small = out_small.clone();
      const uint64_t scratch_before = scratch_detail::allocations();
      testing::AllocationCounter counter;
      for (int round = 0; round < 4; ++round) {
        layer.forward_out(x, true, out);
        layer.forward_out(x.narrow(0, 0, 3), false, out_small);
      }
      const uint64_t allocations = counter.count(), scratch = scratch_detail::allocations() - scratch_before;
      EXPECT_EQ(allocations, scratch) << threads << " threads, " << k.preset << " " << dtype_name(k.dtype) << " "
                                      << quant_mode_name(k.quant);
      const std::string path = layer.path();  // "chain: <why the fused path declined>" names the chain too
      decode_paths.insert(path.substr(0, path.find(':')));
      EXPECT_TENSOR_EQ(first, out);
      EXPECT_TENSOR_EQ(first_small, out_small);
    }
    EXPECT_EQ(decode_paths, (std::set<std::string>{"chain", "superkernel"}));
  }
}

TEST(LayerAllocation, EagerModeAllocatesPerForward) {
  MoeConfig c = small("olmoe-1b-7b", DType::bf16, QuantMode::none, ExeMode::eager);
  MoeLayer layer = MoeLayer::with_random_weights(c, 3, {.threads = 1});
  Tensor x = testing::Rng(4).normal_tensor(c.dtype, {5, 64});
  Tensor out = Tensor::empty(c.dtype, {5, 64});
  layer.forward_out(x, false, out);
  testing::AllocationCounter counter;
  layer.forward_out(x, false, out);
  EXPECT_GT(counter.count(), 0u);  // the contrast that shows the counter sees the layer's workspaces
}

}  // namespace
}  // namespace moefuse
