// The chain's and the fused path's workspaces: each planned from one list of (tensor, dtype, shape), so the byte
// counts the layer sizes memory with are the bytes the plans allocate, and the fused path has buffers of its own.
#include <gtest/gtest.h>

#include "layer/chain.h"
#include "layer/fused_decode.h"
#include "moefuse/config.h"

namespace moefuse {
namespace {

// Bytes of the tensors a planned struct holds, visited through its spec list.
template <class Buffers, class Specs>
int64_t allocated_bytes(const MoeConfig& c, int64_t capacity, Buffers& b, Specs specs) {
  int64_t bytes = 0;
  specs(c, capacity, b, [&](Tensor& t, DType dt, const Shape& shape) {
    EXPECT_TRUE(t.defined());
    EXPECT_EQ(t.dtype(), dt);
    EXPECT_EQ(t.shape(), shape);
    bytes += t.numel() * int64_t(t.element_size());
  });
  return bytes;
}

TEST(LayerBuffers, ByteCountsAreWhatThePlansAllocate) {
  for (const char* preset : {"olmoe-1b-7b", "qwen1.5-moe-a2.7b", "deepseek-v3"})
    for (QuantMode q : {QuantMode::none, QuantMode::w8a8, QuantMode::w8a8c8}) {
      MoeConfig c = load_preset(preset);
      c.quant_mode = q;
      for (int64_t T : {1, 7}) {
        SCOPED_TRACE(std::string(preset) + " " + std::string(quant_mode_name(q)) + " T " + std::to_string(T));
        layer::ChainBuffers chain = layer::plan_chain_buffers(c, T);
        EXPECT_EQ(layer::chain_buffer_bytes(c, T), allocated_bytes(c, T, chain, layer::chain_buffer_specs));
        layer::FusedBuffers fused = layer::plan_fused_buffers(c, T);
        EXPECT_EQ(layer::fused_buffer_bytes(c, T), allocated_bytes(c, T, fused, layer::fused_buffer_specs));
        EXPECT_EQ(fused.capacity, T);
        EXPECT_EQ(fused.x_q.defined(), q != QuantMode::none);  // int8 activations; float models widen x as they gather it
        EXPECT_EQ(fused.shared_y.defined(), c.shared_expert_width() > 0);
      }
    }
}

}  // namespace
}  // namespace moefuse
