// The `_out` form of every operator of the MoE chain (gating -> init_routing -> grouped_matmul -> swiglu family ->
// grouped_matmul -> finalize_routing) allocates nothing once a first call with the same shapes has warmed it up, and
// nothing either for smaller shapes (a layer planned for a bound runs shorter batches). This is what lets the
// layer's graph-mode forward be allocation-free (docs/layer.md §2). Allocations are counted by replacing
// operator new in the test binary (util/alloc_counter.h).
//
// Each case also checks that the counted calls reproduce the bits of an earlier call, so reused scratch memory
// (which holds data of other shapes) never leaks into a result.
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <new>
#include <string>
#include <vector>

#include "base/scratch_stats.h"
#include "moefuse/ops.h"
#include "moefuse/threads.h"
#include "util/alloc_counter.h"
#include "util/compare.h"
#include "util/random.h"

namespace moefuse {
namespace {

using testing::AllocationCounter;
using testing::Rng;

// The shapes of a small MoE layer: hidden H, experts E, top-k K, intermediate I (the first matmul gives 2I).
constexpr int64_t kH = 64, kE = 8, kK = 2, kI = 32;
constexpr int64_t kBigT = 33, kSmallT = 1;
constexpr DType kFloatTypes[] = {DType::f32, DType::bf16, DType::f16};

// One `_out` call with its inputs and output buffers (all made up front, outside any counted region).
struct Call {
  std::function<void()> run;
  std::vector<Tensor> outputs;
};

std::vector<Tensor> snapshot(const std::vector<Tensor>& outputs) {
  std::vector<Tensor> copies;
  for (const Tensor& t : outputs) copies.push_back(t.clone());
  return copies;
}

// Runs `call` counting the allocations, then checks them and the outputs (equal to `expected`). On one thread a
// warmed-up call allocates nothing. On more, the operators' process-wide pool hands tasks out dynamically, so a worker
// may get, on a later call, a task larger than any it ran before and grow its per-thread scratch buffer once
// (src/base/scratch.h): those are the only allocations allowed, and they are counted apart.
void expect_allocation_free_run(const Call& call, const std::vector<Tensor>& expected, const std::string& what) {
  uint64_t allocations, scratch;
  {
    const uint64_t scratch_before = scratch_detail::allocations();
    AllocationCounter counter;
    call.run();
    allocations = counter.count();
    scratch = scratch_detail::allocations() - scratch_before;
  }
  if (num_threads() == 1) EXPECT_EQ(allocations, 0u) << what;
  else EXPECT_EQ(allocations, scratch) << what << ", " << num_threads() << " threads";
  for (size_t i = 0; i < expected.size(); ++i)
    EXPECT_TENSOR_EQ(expected[i], call.outputs[i]) << what << ", output " << i;
}

// On 1, 2 and 3 operator threads: small once (for reference bits), big once (the warm-up), then big and small again,
// counted. The bits must not depend on the thread count either.
void expect_allocation_free(const std::function<Call(int64_t)>& make) {
  const Call big = make(kBigT), small = make(kSmallT);
  std::vector<Tensor> small_bits, big_bits;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    small.run();
    if (threads == 1) small_bits = snapshot(small.outputs);
    big.run();
    if (threads == 1) big_bits = snapshot(big.outputs);
    const std::string on = ", " + std::to_string(threads) + " thread(s)";
    expect_allocation_free_run(big, big_bits, "second call, T = " + std::to_string(kBigT) + on);
    expect_allocation_free_run(small, small_bits,
                               "after warm-up with T = " + std::to_string(kBigT) + ", call with T = " +
                                   std::to_string(kSmallT) + on);
  }
  set_num_threads(0);  // the whole test binary is one process: restore the default
}

// --- inputs shaped like the MoE chain ---

// expert_idx [T, K] i32: K distinct experts per token.
Tensor routing(Rng& rng, int64_t t) {
  Tensor idx = Tensor::empty(DType::i32, {t, kK});
  for (int64_t n = 0; n < t; ++n) {
    const int64_t first = rng.integer(0, kE - 1);
    for (int64_t k = 0; k < kK; ++k) idx.set_item({n, k}, double((first + k * 3) % kE));
  }
  return idx;
}

// Rows per expert of the expanded batch (T*K rows in expert order): counts [E] i64 summing to T*K, with empty
// experts in the mix.
Tensor group_counts(int64_t t) {
  Tensor counts = Tensor::zeros(DType::i64, {kE});
  for (int64_t r = 0; r < t * kK; ++r) {
    const int64_t e = (r * 5) % 7;  // expert 7 gets no row
    counts.set_item({e}, counts.item({e}) + 1);
  }
  return counts;
}

Tensor cumsum_of(const Tensor& counts) {
  Tensor c = Tensor::empty(DType::i64, counts.shape());
  double s = 0;
  for (int64_t i = 0; i < counts.numel(); ++i) c.set_item({i}, s += counts.item({i}));
  return c;
}

// --- the counter itself ---

void* volatile g_sink;  // keeps the compiler from eliding the allocations below

TEST(AllocationCounterTest, CountsEveryFormOfOperatorNew) {
  AllocationCounter c;
  g_sink = new int(1);
  delete static_cast<int*>(g_sink);
  g_sink = new int[3];
  delete[] static_cast<int*>(g_sink);
  g_sink = new (std::nothrow) int(2);
  delete static_cast<int*>(g_sink);
  struct alignas(128) Wide {
    char c[128];
  };
  g_sink = new Wide;
  EXPECT_EQ(reinterpret_cast<uintptr_t>(g_sink) % 128, 0u);
  delete static_cast<Wide*>(g_sink);
  g_sink = new Wide[2];
  delete[] static_cast<Wide*>(g_sink);
  {
    std::vector<float> v(100);
    g_sink = v.data();
  }
  EXPECT_EQ(c.count(), 6u);
}

TEST(AllocationCounterTest, NestedCountersSeeTheirOwnAllocations) {
  AllocationCounter outer;
  g_sink = new int(1);
  delete static_cast<int*>(g_sink);
  AllocationCounter inner;
  EXPECT_EQ(inner.count(), 0u);
  g_sink = new int(1);
  delete static_cast<int*>(g_sink);
  EXPECT_EQ(inner.count(), 1u);
  EXPECT_EQ(outer.count(), 2u);
}

TEST(AllocationCounterTest, SeesTensorCreationButNotViews) {
  std::vector<float> memory(16);
  {
    AllocationCounter c;
    const Tensor t = Tensor::empty(DType::f32, {4, 4});
    EXPECT_GE(c.count(), 1u);  // the storage's shared_ptr control block
  }
  const Tensor owner = Tensor::zeros(DType::f32, {4, 4});
  AllocationCounter c;
  const Tensor v = Tensor::view(memory.data(), DType::f32, {4, 4});
  const Tensor n = owner.narrow(0, 1, 2).transpose(0, 1);
  const Tensor copy = owner;
  EXPECT_EQ(c.count(), 0u);
}

// --- gating ---

TEST(AllocationFreeTest, GatingTopK) {
  for (DType dt : kFloatTypes) {
    for (int variant = 0; variant < 3; ++variant) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + ", variant " + std::to_string(variant));
      expect_allocation_free([&](int64_t t) {
        Rng rng(101 + uint64_t(t));
        const Tensor x = rng.normal_tensor(dt, {t, kE});
        GatingTopKOptions o;
        if (variant == 1) {  // grouped selection with a bias (DeepSeek style)
          o.group_count = 4;
          o.k_group = 2;
          o.group_select_mode = 1;
          o.bias = rng.normal_tensor(DType::f32, {kE});
          o.norm_type = 1;
          o.routed_scaling_factor = 2.5;
        } else if (variant == 2) {
          o.renorm = 1;
          o.out_flag = true;
        }
        GatingTopKResult out{Tensor::empty(dt, {t, kK}), Tensor::empty(DType::i32, {t, kK}),
                             Tensor::empty(DType::f32, {t, kE})};
        return Call{[=] { gating_top_k_out(x, kK, o, out); }, {out.y, out.expert_idx, out.out}};
      });
    }
  }
}

TEST(AllocationFreeTest, GatingTopKSoftmax) {
  for (DType dt : kFloatTypes) {
    SCOPED_TRACE(dtype_name(dt));
    expect_allocation_free([&](int64_t t) {
      Rng rng(202 + uint64_t(t));
      const Tensor x = rng.normal_tensor(dt, {t, kE});
      const Tensor finished = rng.int_tensor(DType::boolean, {t}, 0, 1);
      GatingTopKSoftmaxResult out{Tensor::empty(dt, {t, kK}), Tensor::empty(DType::i32, {t, kK}),
                                  Tensor::empty(DType::i32, {t, kK})};
      return Call{[=] { gating_top_k_softmax_out(x, finished, kK, out); }, {out.y, out.expert_idx, out.row_idx}};
    });
    for (int64_t renorm : {0, 1}) {
      expect_allocation_free([&](int64_t t) {
        Rng rng(303 + uint64_t(t));
        const Tensor x = rng.normal_tensor(dt, {t, kE});
        GatingTopKSoftmaxV2Options o;
        o.k = kK;
        o.renorm = renorm;
        o.output_softmax = true;
        GatingTopKSoftmaxV2Result out{Tensor::empty(dt, {t, kK}), Tensor::empty(DType::i32, {t, kK}),
                                      renorm == 0 ? Tensor::empty(DType::f32, {t, kE}) : Tensor{}};
        std::vector<Tensor> outputs{out.y, out.expert_idx};
        if (renorm == 0) outputs.push_back(out.softmax_out);
        return Call{[=] { gating_top_k_softmax_v2_out(x, o, out); }, outputs};
      });
    }
  }
}

// --- routing ---

struct InitRoutingV2Variant {
  DType dtype;
  int64_t quant_mode;
  int64_t count_type;
  bool drop_pad = false;
  bool scatter = false;    // row_idx_type 1
  bool sub_range = false;  // active_expert_range [2, 6)
  bool with_scale = true;  // quant_mode -1: per-token scale; 1: smooth scale
};

std::string describe(const InitRoutingV2Variant& v) {
  return std::string(dtype_name(v.dtype)) + ", quant_mode " + std::to_string(v.quant_mode) + ", count type " +
         std::to_string(v.count_type) + (v.drop_pad ? ", drop/pad" : "") + (v.scatter ? ", scatter" : "") +
         (v.sub_range ? ", range [2, 6)" : "") + (v.with_scale ? ", scale" : "");
}

TEST(AllocationFreeTest, InitRoutingV2) {
  std::vector<InitRoutingV2Variant> variants;
  for (DType dt : kFloatTypes)
    for (int64_t q : {-1, 1})
      for (int64_t c : {1, 2}) variants.push_back({dt, q, c});
  variants.push_back({DType::bf16, -1, 0, false, true, false, false});
  variants.push_back({DType::bf16, 1, 1, false, false, true, true});
  variants.push_back({DType::bf16, 1, 1, false, false, false, false});
  variants.push_back({DType::f16, 0, 0});
  variants.push_back({DType::bf16, -1, 1, true});
  variants.push_back({DType::f32, 1, 1, true});
  for (const InitRoutingV2Variant& v : variants) {
    SCOPED_TRACE(describe(v));
    expect_allocation_free([&](int64_t t) {
      Rng rng(404 + uint64_t(t));
      const Tensor x = rng.normal_tensor(v.dtype, {t, kH});
      const Tensor expert_idx = routing(rng, t);
      InitRoutingV2Options o;
      o.expert_num = kE;
      o.expert_tokens_num_type = v.count_type;
      o.expert_tokens_num_flag = true;
      o.quant_mode = v.quant_mode;
      o.row_idx_type = v.scatter ? 1 : 0;
      const int64_t range = v.sub_range ? 4 : kE;
      if (v.sub_range) o.active_expert_range = {2, 6};
      if (v.quant_mode == 0) {
        o.scale = Tensor::full(DType::f32, {1}, 20.0);
        o.offset = Tensor::full(DType::f32, {1}, 0.5);
      } else if (v.with_scale) {
        o.scale =
            v.quant_mode == -1 ? rng.uniform_tensor(DType::f32, {t}) : rng.uniform_tensor(DType::f32, {range, kH});
      }
      const DType x_out = v.quant_mode == -1 ? v.dtype : DType::i8;
      InitRoutingV2Result out;
      if (v.drop_pad) {
        o.drop_pad_mode = 1;
        o.expert_capacity = t;
        out.expanded_x = Tensor::empty(x_out, {kE, t, kH});
        out.expert_token_cumsum_or_count = Tensor::empty(DType::i64, {kE});
        out.expanded_scale = Tensor::empty(DType::f32, {kE * t});
      } else {
        out.expanded_x = Tensor::empty(x_out, {t * kK, kH});
        out.expert_token_cumsum_or_count = Tensor::empty(DType::i64, v.count_type == 2 ? Shape{kE, 2} : Shape{range});
        out.expanded_scale = Tensor::empty(DType::f32, {t * kK});
      }
      out.expanded_row_idx = Tensor::empty(DType::i32, {t * kK});
      return Call{[=] { init_routing_v2_out(x, expert_idx, o, out); },
                  {out.expanded_x, out.expanded_row_idx, out.expert_token_cumsum_or_count, out.expanded_scale}};
    });
  }
}

TEST(AllocationFreeTest, InitRouting) {
  for (DType dt : kFloatTypes) {
    SCOPED_TRACE(dtype_name(dt));
    expect_allocation_free([&](int64_t t) {
      Rng rng(505 + uint64_t(t));
      const Tensor x = rng.normal_tensor(dt, {t, kH});
      const Tensor expert_idx = routing(rng, t);
      Tensor row_idx = Tensor::empty(DType::i32, {t, kK});
      for (int64_t n = 0; n < t; ++n)
        for (int64_t k = 0; k < kK; ++k) row_idx.set_item({n, k}, double(k * t + n));
      InitRoutingResult out{Tensor::empty(dt, {t * kK, kH}), Tensor::empty(DType::i32, {t * kK}),
                            Tensor::empty(DType::i32, {t * kK})};
      return Call{[=] { init_routing_out(x, row_idx, expert_idx, t, out); },
                  {out.expanded_x, out.expanded_row_idx, out.expanded_expert_idx}};
    });
  }
}

// --- grouped_matmul ---

TEST(AllocationFreeTest, GroupedMatmulFloat) {
  for (DType dt : kFloatTypes) {
    for (int64_t list_type : {0, 1}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + ", group_list_type " + std::to_string(list_type));
      expect_allocation_free([&](int64_t t) {
        Rng rng(606 + uint64_t(t));
        const Tensor x = rng.normal_tensor(dt, {t * kK, kH});
        const Tensor w = rng.normal_tensor(dt, {kE, kH, 2 * kI}, 0.1f);
        GroupedMatmulOptions o;
        o.group_type = 0;
        o.group_list_type = list_type;
        o.group_list = list_type == 0 ? cumsum_of(group_counts(t)) : group_counts(t);
        o.bias = rng.normal_tensor(DType::f32, {kE, 2 * kI});
        o.act_type = 5;
        const Tensor y = Tensor::empty(dt, {t * kK, 2 * kI});
        return Call{[=] { grouped_matmul_out(x, w, o, y); }, {y}};
      });
    }
  }
}

TEST(AllocationFreeTest, GroupedMatmulInt8) {
  for (DType out_dt : {DType::i32, DType::bf16, DType::f16}) {
    SCOPED_TRACE(dtype_name(out_dt));
    expect_allocation_free([&](int64_t t) {
      Rng rng(707 + uint64_t(t));
      const Tensor x = rng.int_tensor(DType::i8, {t * kK, kH}, -127, 127);
      const Tensor w = rng.int_tensor(DType::i8, {kE, kH, 2 * kI}, -127, 127);
      GroupedMatmulOptions o;
      o.group_type = 0;
      o.group_list_type = 1;
      o.group_list = group_counts(t);
      o.output_dtype = out_dt;
      if (out_dt == DType::i32) {
        o.bias = rng.int_tensor(DType::i32, {kE, 2 * kI}, -1000, 1000);
      } else {
        o.scale = rng.uniform_tensor(DType::f32, {kE, 2 * kI}, 0.001f, 0.01f);
        o.per_token_scale = rng.uniform_tensor(DType::f32, {t * kK}, 0.5f, 1.5f);
        o.bias = rng.normal_tensor(DType::f32, {kE, 2 * kI});
      }
      const Tensor y = Tensor::empty(out_dt, {t * kK, 2 * kI});
      return Call{[=] { grouped_matmul_out(x, w, o, y); }, {y}};
    });
  }
}

// --- the swiglu family ---

TEST(AllocationFreeTest, Swiglu) {
  for (DType dt : kFloatTypes) {
    SCOPED_TRACE(dtype_name(dt));
    expect_allocation_free([&](int64_t t) {
      Rng rng(808 + uint64_t(t));
      const Tensor x = rng.normal_tensor(dt, {t * kK, 2 * kI});
      const Tensor out = Tensor::empty(dt, {t * kK, kI});
      return Call{[=] { swiglu_out(x, -1, out); }, {out}};
    });
  }
}

TEST(AllocationFreeTest, ClippedSwiglu) {
  for (DType dt : kFloatTypes) {
    SCOPED_TRACE(dtype_name(dt));
    expect_allocation_free([&](int64_t t) {
      Rng rng(909 + uint64_t(t));
      const Tensor x = rng.normal_tensor(dt, {t * kK, 2 * kI}, 4.0f);
      ClippedSwigluOptions o;
      o.group_index = group_counts(t);
      const Tensor out = Tensor::empty(dt, {t * kK, kI});
      return Call{[=] { clipped_swiglu_out(x, o, out); }, {out}};
    });
  }
}

TEST(AllocationFreeTest, DequantSwigluQuant) {
  for (int variant = 0; variant < 4; ++variant) {
    SCOPED_TRACE("variant " + std::to_string(variant));
    expect_allocation_free([&](int64_t t) {
      Rng rng(1010 + uint64_t(t));
      const int64_t rows = t * kK;
      DequantSwigluQuantOptions o;
      Tensor x;
      if (variant <= 1) {  // int32 matmul output, dequantised per expert and per token
        x = rng.int_tensor(DType::i32, {rows, 2 * kI}, -20000, 20000);
        o.weight_scale = rng.uniform_tensor(DType::f32, {kE, 2 * kI}, 0.0001f, 0.001f);
        o.activation_scale = rng.uniform_tensor(DType::f32, {rows}, 0.5f, 1.5f);
        o.bias = rng.int_tensor(DType::i32, {kE, 2 * kI}, -100, 100);
        o.group_index = group_counts(t);
        o.quant_mode = 1;
        if (variant == 1) {  // static quantisation, swiglu_mode 1 (interleaved, clamped)
          o.quant_mode = 0;
          o.quant_scale = rng.uniform_tensor(DType::f32, {kE, kI}, 0.01f, 0.1f);
          o.quant_offset = rng.uniform_tensor(DType::f32, {kE, kI}, -2.0f, 2.0f);
          o.swiglu_mode = 1;
          o.activate_left = true;
        } else {
          o.quant_scale = rng.uniform_tensor(DType::f32, {kE, kI}, 0.5f, 1.5f);
        }
      } else {  // float x, dynamic quantisation, no groups
        x = rng.normal_tensor(variant == 2 ? DType::bf16 : DType::f16, {rows, 2 * kI});
        o.quant_mode = 1;
        o.swiglu_mode = variant == 2 ? 0 : 3;
      }
      DequantSwigluQuantResult out{Tensor::empty(DType::i8, {rows, kI}), Tensor::empty(DType::f32, {rows})};
      return Call{[=] { dequant_swiglu_quant_out(x, o, out); }, {out.y, out.scale}};
    });
  }
}

TEST(AllocationFreeTest, SwigluClipQuant) {
  for (DType dt : kFloatTypes) {
    SCOPED_TRACE(dtype_name(dt));
    expect_allocation_free([&](int64_t t) {
      Rng rng(1111 + uint64_t(t));
      const Tensor x = rng.normal_tensor(dt, {t * kK, 2 * kI}, 2.0f);
      const Tensor group_index = group_counts(t);
      const Tensor group_alpha = rng.uniform_tensor(DType::f32, {kE}, 0.2f, 0.9f);
      SwigluClipQuantOptions o;
      o.activate_left = dt == DType::f16;
      SwigluClipQuantResult out{Tensor::empty(DType::i8, {t * kK, kI}), Tensor::empty(DType::f32, {t * kK})};
      return Call{[=] { swiglu_clip_quant_out(x, group_index, group_alpha, o, out); }, {out.y, out.scale}};
    });
  }
}

// --- finalize_routing ---

TEST(AllocationFreeTest, FinalizeRouting) {
  for (DType dt : kFloatTypes) {
    for (int64_t mode : {0, 1, 2, 3}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + ", drop_pad_mode " + std::to_string(mode));
      expect_allocation_free([&](int64_t t) {
        Rng rng(1212 + uint64_t(t));
        const bool drop_pad = mode == 1 || mode == 3;
        const int64_t capacity = t;
        const Tensor rows = drop_pad ? rng.normal_tensor(dt, {kE, capacity, kH}) : rng.normal_tensor(dt, {t * kK, kH});
        const int64_t num_rows = drop_pad ? kE * capacity : t * kK;
        // Destination rows, with a dropped (-1) entry among them.
        const Tensor src_to_dst = rng.int_tensor(DType::i32, {t * kK}, -1, num_rows - 1);
        const Tensor skip1 = rng.normal_tensor(dt, {t, kH});
        const Tensor skip2 = rng.normal_tensor(dt, {t, kH});
        const Tensor bias = rng.normal_tensor(dt, {kE, kH});
        const Tensor scales = rng.uniform_tensor(DType::f32, {t, kK});
        const Tensor experts = routing(rng, t);
        const Tensor out = Tensor::empty(dt, {t, kH});
        return Call{[=] { finalize_routing_out(rows, skip1, skip2, bias, scales, src_to_dst, experts, mode, kK, out); },
                    {out}};
      });
    }
  }
}

}  // namespace
}  // namespace moefuse
