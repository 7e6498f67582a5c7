// Graph mode's steady-state forward makes no heap allocation (issue 3; layer.md §2): after a first forward has
// planned the workspaces, forwards of at most that size allocate nothing, in every chain.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "moefuse/config.h"
#include "moefuse/layer.h"
#include "moefuse/threads.h"
#include "util/alloc_counter.h"
#include "util/compare.h"
#include "util/random.h"

namespace moefuse {
namespace {

MoeConfig small(const char* preset, DType dtype, QuantMode quant, ExeMode mode) {
  MoeConfig c = load_preset(preset);
  c.hidden_size = 64;
  c.moe_intermediate_size = 32;
  if (c.shared_expert_intermediate_size > 0) c.shared_expert_intermediate_size = 48;
  c.dtype = dtype;
  c.quant_mode = quant;
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
