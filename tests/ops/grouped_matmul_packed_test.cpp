// grouped_matmul on the GEMM kernels: the packed-weight forms and the Tensor-weight form's kernel path, bitwise
// against the scalar reference (src/reference/grouped_matmul, itself checked against an independent oracle in
// grouped_matmul_test.cpp), for every ISA level this machine supports, every dtype path, tile-edge shapes, every
// group-list type, and several thread counts. Also: the PackedGroupedWeights object, the errors of the packed
// forms and of pack_grouped_weights, and the thread-count API (moefuse/threads.h).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "base/thread_pool.h"
#include "kernels/gemm/gemm.h"
#include "moefuse/cpu.h"
#include "moefuse/error.h"
#include "moefuse/ops.h"
#include "moefuse/threads.h"
#include "reference/grouped_matmul.h"
#include "util/compare.h"
#include "util/errors.h"
#include "util/grouped_matmul_cases.h"
#include "util/isa_cap.h"
#include "util/random.h"

namespace moefuse {
namespace {

using testing::Rng;

using Restore = testing::RestoreIsaAndThreads;

using Path = testing::GmmPath;
using testing::path_name;
constexpr const auto& kPaths = testing::kGmmPaths;

struct Case {
  Tensor x, weight;
  GroupedMatmulOptions o;
};

// A random case of the path. grouped: group_type 0 with E experts; else one [K, N] weight. transposed: the weight is
// stored [E, N, K] (Hugging Face) and viewed as [E, K, N].
Case make_case(Rng& rng, Path p, int64_t M, int64_t K, int64_t N, int64_t E, bool grouped, int64_t act,
               bool transposed) {
  Case c;
  const bool int8 = p == Path::i8_i32 || p == Path::i8_bf16 || p == Path::i8_f16;
  const DType dt = p == Path::f32    ? DType::f32
                   : p == Path::bf16 ? DType::bf16
                   : p == Path::f16  ? DType::f16
                                     : DType::i8;
  auto values = [&](const Shape& s) {
    return int8 ? rng.int_tensor(DType::i8, s, -128, 127) : rng.uniform_tensor(dt, s, -1.0f, 1.0f);
  };
  c.x = values({M, K});
  if (grouped) c.weight = transposed ? values({E, N, K}).transpose(1, 2) : values({E, K, N});
  else c.weight = transposed ? values({N, K}).transpose(0, 1) : values({K, N});
  if (!grouped) E = 1;
  if (grouped) {
    c.o.group_type = 0;
    c.o.group_list_type = rng.integer(0, 2);
    c.o.group_list = testing::random_group_list(rng, c.o.group_list_type, M, E, true);
  }
  c.o.act_type = p == Path::i8_i32 ? 0 : act;
  const bool with_bias = rng.coin(0.7);
  const Shape pe = (E == 1 && rng.coin(0.3)) ? Shape{N} : Shape{E, N};
  switch (p) {
    case Path::f32:
    case Path::bf16:
      if (with_bias) c.o.bias = rng.uniform_tensor(DType::f32, pe, -2.0f, 2.0f);
      break;
    case Path::f16:
      if (with_bias) c.o.bias = rng.uniform_tensor(rng.coin() ? DType::f16 : DType::f32, pe, -2.0f, 2.0f);
      break;
    case Path::i8_i32:
      c.o.output_dtype = DType::i32;
      if (with_bias) c.o.bias = rng.int_tensor(DType::i32, pe, -100000, 100000);
      break;
    case Path::i8_bf16:
    case Path::i8_f16: {
      c.o.output_dtype = p == Path::i8_bf16 ? DType::bf16 : DType::f16;
      const float smax = 1.0f / (float(std::max<int64_t>(K, 1)) * 256.0f);  // keeps |y| inside fp16's range
      c.o.scale = rng.uniform_tensor(rng.coin() ? DType::bf16 : DType::f32, pe, smax / 4, smax);
      if (rng.coin(0.7)) c.o.per_token_scale = rng.uniform_tensor(DType::f32, {M}, 0.5f, 2.0f);
      if (with_bias) {
        const int pick = int(rng.integer(0, 3));
        if (pick == 0) c.o.bias = rng.int_tensor(DType::i32, pe, -5000, 5000);
        else c.o.bias = rng.uniform_tensor(pick == 1 ? DType::f32 : pick == 2 ? DType::bf16 : DType::f16, pe, -2, 2);
      }
      break;
    }
  }
  return c;
}

Tensor reference_result(const Case& c) {
  reference::GroupedMatmulArgs a;
  a.x = c.x;
  a.weight = c.weight;
  a.bias = c.o.bias;
  a.scale = c.o.scale;
  a.per_token_scale = c.o.per_token_scale;
  a.group_list = c.o.group_list;
  a.group_list_type = c.o.group_list_type;
  a.act_type = c.o.act_type;
  const DType out = c.o.output_dtype.value_or(c.x.dtype());
  Tensor y = Tensor::full(out, {c.x.size(0), c.weight.size(-1)}, 5.0);
  reference::grouped_matmul(a, y);
  return y;
}

// packed (both forms) == Tensor form == reference, bitwise. Returns the result.
Tensor expect_all_agree(const Case& c, const std::string& what) {
  SCOPED_TRACE(what);
  const Tensor expected = reference_result(c);
  const PackedGroupedWeights packed = pack_grouped_weights(c.weight);
  EXPECT_TENSOR_EQ(expected, grouped_matmul(c.x, packed, c.o));
  Tensor out = Tensor::full(expected.dtype(), expected.shape(), 3.0);  // garbage to be overwritten
  grouped_matmul_out(c.x, packed, c.o, out);
  EXPECT_TENSOR_EQ(expected, out);
  EXPECT_TENSOR_EQ(expected, grouped_matmul(c.x, c.weight, c.o));
  return expected;
}

std::vector<Isa> isas() { return gemm::available_isas(); }

// ---------------------------------------------------------------------------------------------------------------

TEST(GroupedMatmulPacked, EveryIsaEveryPathTileEdges) {
  Restore restore;
  struct Mkn {
    int64_t M, K, N;
  };
  // Each of M in {1, 5, 6, 7, 13, 64}, N in {1, 31, 32, 33, 64, 65, 130}, K in {1, 17, 64, 513} at least twice.
  const Mkn shapes[] = {{1, 1, 1},    {5, 17, 31},  {6, 64, 32},   {7, 513, 33}, {13, 17, 64},
                        {64, 64, 65}, {64, 513, 130}, {1, 513, 130}, {6, 1, 65},   {13, 64, 1},
                        {7, 17, 130}, {64, 1, 33},  {5, 64, 64},   {64, 17, 31}, {13, 513, 32}};
  const int64_t acts[] = {0, 1, 2, 4, 5};
  for (Isa isa : isas()) {
    set_max_isa(isa);
    for (Path p : kPaths) {
      Rng rng(100 + 10 * int(isa) + int(p));
      int i = 0;
      for (const Mkn& s : shapes) {
        const std::string at = std::string(isa_name(isa)) + " " + path_name(p) + " M=" + std::to_string(s.M) +
                               " K=" + std::to_string(s.K) + " N=" + std::to_string(s.N);
        Case single = make_case(rng, p, s.M, s.K, s.N, 1, false, acts[i % 5], i % 2 == 0);
        expect_all_agree(single, at + " single");
        const int64_t E = rng.integer(1, 5);
        Case grouped = make_case(rng, p, s.M, s.K, s.N, E, true, acts[(i + 2) % 5], i % 2 == 1);
        expect_all_agree(grouped, at + " E=" + std::to_string(E) + " type " +
                                      std::to_string(grouped.o.group_list_type));
        ++i;
      }
    }
  }
}

TEST(GroupedMatmulPacked, LargeGroupsEveryGroupListTypeAndUncoveredTail) {
  // Experts with a group of >= 48 rows: the Tensor form packs them for the call (kernel path) and leaves the other
  // experts' groups to the reference, all in one call. Rows past the groups are zeros in every form.
  Restore restore;
  for (Isa isa : isas()) {
    set_max_isa(isa);
    for (Path p : kPaths) {
      Rng rng(300 + 10 * int(isa) + int(p));
      for (int64_t type : {0, 1, 2}) {
        Case c = make_case(rng, p, 130, 40, 70, 4, true, int64_t(type) * 2, type == 2);
        c.o.group_list_type = type;
        // Experts 0..3 get 50, 0, 3, 60 rows (17 rows uncovered); type 2: expert 3 twice (50 + 50), 0 and 2 small.
        c.o.group_list = type == 0   ? Tensor::from_values<int64_t>({4}, {50, 50, 53, 113})
                         : type == 1 ? Tensor::from_values<int32_t>({4}, {50, 0, 3, 60})
                                     : Tensor::from_values<int64_t>({5, 2}, {3, 50, 0, 10, 2, 3, 3, 50, 1, 0});
        const Tensor y = expect_all_agree(c, std::string(isa_name(isa)) + " " + path_name(p) + " type " +
                                                 std::to_string(type));
        EXPECT_TENSOR_EQ(Tensor::zeros(y.dtype(), {17, 70}), y.narrow(0, 113, 17).contiguous());
      }
    }
  }
}

TEST(GroupedMatmulPacked, ThreadCountsGiveIdenticalBits) {
  Restore restore;
  Rng rng(400);
  std::vector<Case> cases;
  // Many groups; one group of many rows (rows are split into blocks when there are few groups); decode-like single
  // rows over many experts; wide N with few rows.
  cases.push_back(make_case(rng, Path::bf16, 200, 96, 130, 6, true, 5, true));
  cases.push_back(make_case(rng, Path::i8_bf16, 200, 96, 130, 6, true, 2, false));
  cases.push_back(make_case(rng, Path::f32, 300, 33, 64, 1, false, 0, false));
  cases.push_back(make_case(rng, Path::i8_i32, 300, 70, 65, 1, false, 0, true));
  {
    Case c = make_case(rng, Path::f16, 16, 128, 700, 16, true, 1, false);
    c.o.group_list_type = 1;
    c.o.group_list = Tensor::full(DType::i64, {16}, 1.0);
    cases.push_back(c);
  }
  cases.push_back(make_case(rng, Path::i8_f16, 40, 200, 1100, 3, true, 4, true));
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    set_num_threads(1);
    const Tensor one = expect_all_agree(c, "case " + std::to_string(i) + " 1 thread");
    for (int threads : {2, 3}) {
      set_num_threads(threads);
      EXPECT_EQ(num_threads(), threads);
      const PackedGroupedWeights packed = pack_grouped_weights(c.weight);
      EXPECT_TENSOR_EQ(one, grouped_matmul(c.x, packed, c.o)) << "case " << i << ", " << threads << " threads";
      EXPECT_TENSOR_EQ(one, grouped_matmul(c.x, c.weight, c.o)) << "case " << i << ", " << threads << " threads";
    }
  }
}

TEST(GroupedMatmulPacked, NestedAndConcurrentCallsGiveIdenticalBits) {
  // Called from inside a pool task the op runs on that thread; calls from several threads at once share the pool
  // (one holds it, the others run alone). Either way: the same bits.
  Restore restore;
  set_num_threads(3);
  Rng rng(500);
  const Case c = make_case(rng, Path::bf16, 120, 64, 200, 3, true, 5, false);
  const Tensor expected = reference_result(c);
  const PackedGroupedWeights packed = pack_grouped_weights(c.weight);
  std::vector<Tensor> ys(6);
  ThreadPool pool(3);
  EXPECT_FALSE(ThreadPool::in_task());
  pool.parallel_for(6, [&](int64_t i) {
    EXPECT_TRUE(ThreadPool::in_task());
    ys[size_t(i)] = i % 2 ? grouped_matmul(c.x, packed, c.o) : grouped_matmul(c.x, c.weight, c.o);
  });
  EXPECT_FALSE(ThreadPool::in_task());
  for (const Tensor& y : ys) EXPECT_TENSOR_EQ(expected, y);

  std::vector<std::thread> threads;
  std::vector<Tensor> zs(4);
  for (size_t t = 0; t < zs.size(); ++t)
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 3; ++rep) zs[t] = grouped_matmul(c.x, packed, c.o);
    });
  for (std::thread& t : threads) t.join();
  for (const Tensor& z : zs) EXPECT_TENSOR_EQ(expected, z);
}

TEST(GroupedMatmulPacked, StridedInputsAndTransposedWeights) {
  // x read in place when its rows are unit-stride (f32, i8; bf16 on the bf16-A kernels), widened / copied when not;
  // Hugging Face [E, N, K] weights packed in place. Every variant gives the contiguous result.
  Restore restore;
  set_num_threads(2);
  for (Path p : kPaths) {
    Rng rng(600 + int(p));
    Case c = make_case(rng, p, 50, 37, 45, 3, true, 2, false);
    c.o.group_list_type = 1;
    c.o.group_list = Tensor::from_values<int64_t>({3}, {20, 4, 26});
    const Tensor expected = expect_all_agree(c, std::string(path_name(p)) + " contiguous");
    const DType dt = c.x.dtype();
    auto values = [&](const Shape& s) {
      return dt == DType::i8 ? rng.int_tensor(dt, s, -128, 127) : rng.uniform_tensor(dt, s);
    };
    // x: a column slice of a wider tensor (row stride 60 > K), and transposed storage (k stride M).
    Tensor wide = values({50, 60});
    for (int64_t r = 0; r < 50; ++r)
      for (int64_t k = 0; k < 37; ++k) wide.set_item({r, k + 11}, c.x.item({r, k}));
    Case sliced = c;
    sliced.x = wide.narrow(1, 11, 37);
    EXPECT_TENSOR_EQ(expected, expect_all_agree(sliced, std::string(path_name(p)) + " x sliced"));
    Case transposed = c;
    transposed.x = c.x.transpose(0, 1).contiguous().transpose(0, 1);
    ASSERT_EQ(transposed.x.stride(0), 1);
    EXPECT_TENSOR_EQ(expected, expect_all_agree(transposed, std::string(path_name(p)) + " x transposed"));
    Case hf = c;
    hf.weight = c.weight.transpose(1, 2).contiguous().transpose(1, 2);  // [E, N, K] storage
    ASSERT_EQ(hf.weight.stride(1), 1);
    EXPECT_TENSOR_EQ(expected, expect_all_agree(hf, std::string(path_name(p)) + " weight [E, N, K]"));
  }
}

TEST(GroupedMatmulPacked, ZeroSizes) {
  Restore restore;
  set_num_threads(2);
  // K = 0: y = act(bias) over the groups, zeros past them.
  GroupedMatmulOptions o;
  o.group_type = 0;
  o.group_list = Tensor::from_values<int64_t>({2}, {20, 30});
  o.bias = Tensor::from_values<float>({2, 2}, {-1.0f, 2.0f, 5.0f, 6.0f});
  o.act_type = 1;
  const PackedGroupedWeights k0 = pack_grouped_weights(Tensor::zeros(DType::f32, {2, 0, 2}));
  const Tensor y = grouped_matmul(Tensor::zeros(DType::f32, {33, 0}), k0, o);
  ASSERT_EQ(y.shape(), (Shape{33, 2}));
  for (int64_t r = 0; r < 33; ++r) {
    EXPECT_EQ(y.item({r, 0}), r < 20 ? 0.0 : r < 30 ? 5.0 : 0.0) << r;
    EXPECT_EQ(y.item({r, 1}), r < 20 ? 2.0 : r < 30 ? 6.0 : 0.0) << r;
  }
  GroupedMatmulOptions oi;
  oi.output_dtype = DType::i32;
  const PackedGroupedWeights k0i = pack_grouped_weights(Tensor::zeros(DType::i8, {0, 40}));
  EXPECT_TENSOR_EQ(Tensor::zeros(DType::i32, {17, 40}), grouped_matmul(Tensor::zeros(DType::i8, {17, 0}), k0i, oi));
  // N = 0 and M = 0.
  const PackedGroupedWeights n0 = pack_grouped_weights(Tensor::zeros(DType::bf16, {2, 5, 0}));
  o = GroupedMatmulOptions{};
  o.group_type = 0;
  o.group_list = Tensor::from_values<int64_t>({2}, {20, 30});
  EXPECT_EQ(grouped_matmul(Tensor::zeros(DType::bf16, {30, 5}), n0, o).shape(), (Shape{30, 0}));
  const PackedGroupedWeights w = pack_grouped_weights(Tensor::zeros(DType::bf16, {2, 5, 3}));
  o.group_list = Tensor::from_values<int64_t>({2}, {0, 0});
  EXPECT_EQ(grouped_matmul(Tensor::zeros(DType::bf16, {0, 5}), w, o).shape(), (Shape{0, 3}));
}

TEST(GroupedMatmulPacked, PackedWeightsObject) {
  Rng rng(700);
  const Tensor w = rng.uniform_tensor(DType::bf16, {3, 40, 33});
  PackedGroupedWeights p = pack_grouped_weights(w);
  EXPECT_FALSE(p.empty());
  EXPECT_EQ(p.dtype(), DType::bf16);
  EXPECT_EQ(p.shape(), (Shape{3, 40, 33}));
  EXPECT_EQ(p.num_experts(), 3);
  EXPECT_EQ(p.k(), 40);
  EXPECT_EQ(p.n(), 33);
  EXPECT_EQ(p.bytes(), size_t(3 * 40 * 64 * 2));  // N padded to 2 panels of 32
  EXPECT_EQ(p.describe(), "packed bf16[3, 40, 33]");
  const PackedGroupedWeights q = pack_grouped_weights(rng.int_tensor(DType::i8, {5, 7}, -128, 127));
  EXPECT_EQ(q.num_experts(), 1);
  EXPECT_EQ(q.k(), 5);
  EXPECT_EQ(q.n(), 7);
  EXPECT_EQ(q.bytes(), size_t(8 * 32 + 32 * 4));  // K padded to 8, one panel, plus the column sums

  PackedGroupedWeights moved = std::move(p);
  EXPECT_TRUE(p.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
  EXPECT_EQ(p.num_experts(), 0);
  EXPECT_EQ(p.describe(), "empty packed weights");
  EXPECT_EQ(moved.shape(), (Shape{3, 40, 33}));
  PackedGroupedWeights assigned;
  EXPECT_TRUE(assigned.empty());
  assigned = std::move(moved);
  EXPECT_EQ(assigned.n(), 33);
  EXPECT_TRUE(moved.empty());  // NOLINT(bugprone-use-after-move)
  // Usable after the moves, bitwise the Tensor form.
  Tensor x = rng.uniform_tensor(DType::bf16, {20, 40});
  GroupedMatmulOptions o;
  o.group_type = 0;
  o.group_list = Tensor::from_values<int64_t>({3}, {16, 16, 20});
  EXPECT_TENSOR_EQ(grouped_matmul(x, w, o), grouped_matmul(x, assigned, o));
}

TEST(GroupedMatmulPacked, Errors) {
  const PackedGroupedWeights w = pack_grouped_weights(Tensor::zeros(DType::f32, {2, 5, 3}));
  const PackedGroupedWeights w2 = pack_grouped_weights(Tensor::zeros(DType::f32, {5, 3}));
  const Tensor x = Tensor::zeros(DType::f32, {4, 5});
  GroupedMatmulOptions o;
  o.group_type = 0;
  o.group_list_type = 1;
  o.group_list = Tensor::from_values<int64_t>({2}, {2, 2});

  EXPECT_THROWS_MSG(grouped_matmul(x, PackedGroupedWeights{}, o), ValueError,
                    "grouped_matmul: weight: expected packed weights (from pack_grouped_weights), got empty packed "
                    "weights");
  EXPECT_THROWS_MSG(grouped_matmul(Tensor{}, w, o), ValueError, "grouped_matmul: x: expected a tensor, got none");
  EXPECT_THROWS_MSG(grouped_matmul(x.to(DType::bf16), w, o), TypeError, "grouped_matmul", "weight",
                    "dtype bf16 (the dtype of x)", "got f32");
  EXPECT_THROWS_MSG(grouped_matmul(x, w2, o), ValueError, "grouped_matmul", "weight",
                    "a 3-D tensor [E, K, N] (group_type 0)", "got packed f32[5, 3]");
  EXPECT_THROWS_MSG(grouped_matmul(x, w), ValueError, "weight", "a single expert [1, K, N] when group_type is None/-1",
                    "packed f32[2, 5, 3]");
  EXPECT_THROWS_MSG(grouped_matmul(Tensor::zeros(DType::f32, {4, 6}), w, o), ValueError, "grouped_matmul", "weight",
                    "K = size(-2) equal to x.size(1) = 6", "packed f32[2, 5, 3]");
  GroupedMatmulOptions three = o;
  three.group_list = Tensor::from_values<int64_t>({3}, {1, 1, 2});
  EXPECT_THROWS_MSG(grouped_matmul(x, w, three), ValueError, "group_list", "at most E = 2 groups", "3 groups");
  GroupedMatmulOptions bias = o;
  bias.bias = Tensor::zeros(DType::f32, {3, 3});
  EXPECT_THROWS_MSG(grouped_matmul(x, w, bias), ValueError, "bias", "shape [E, N] = [2, 3]", "[3, 3]");
  GroupedMatmulOptions kv = o;
  kv.group_list_type = 2;
  kv.group_list = Tensor::from_values<int64_t>({1, 2}, {2, 4});
  EXPECT_THROWS_MSG(grouped_matmul(x, w, kv), ValueError, "group_list[0]", "an expert id in [0, 2)", "got 2");
  GroupedMatmulOptions int8 = o;
  int8.output_dtype = DType::bf16;
  const PackedGroupedWeights wi = pack_grouped_weights(Tensor::zeros(DType::i8, {2, 5, 3}));
  EXPECT_THROWS_MSG(grouped_matmul(Tensor::zeros(DType::i8, {4, 5}), wi, int8), ValueError, "scale",
                    "a per-channel scale [E, N]", "got none");

  // _out: the output is checked, and left untouched by a failed call.
  Tensor y = Tensor::full(DType::f32, {4, 3}, 9.0);
  EXPECT_THROWS_MSG(grouped_matmul_out(x, w, o, Tensor::zeros(DType::f32, {4, 4})), ValueError, "grouped_matmul",
                    "y", "[4, 3]");
  EXPECT_THROWS_MSG(grouped_matmul_out(x, w, o, Tensor::zeros(DType::bf16, {4, 3})), TypeError, "y",
                    "an output of dtype f32");
  EXPECT_THROWS_MSG(grouped_matmul_out(x, w, three, y), ValueError, "group_list");
  EXPECT_THROWS_MSG(grouped_matmul_out(x, w, bias, y), ValueError, "bias");
  EXPECT_TENSOR_EQ(Tensor::full(DType::f32, {4, 3}, 9.0), y);
  grouped_matmul_out(x, w, o, y);
  EXPECT_TENSOR_EQ(Tensor::zeros(DType::f32, {4, 3}), y);

  // pack_grouped_weights.
  EXPECT_THROWS_MSG(pack_grouped_weights(Tensor{}), ValueError, "pack_grouped_weights: weight: expected a tensor");
  EXPECT_THROWS_MSG(pack_grouped_weights(Tensor::zeros(DType::i32, {2, 3})), TypeError, "pack_grouped_weights",
                    "weight", "f32, bf16, f16 or i8", "got i32");
  EXPECT_THROWS_MSG(pack_grouped_weights(Tensor::zeros(DType::f32, {3})), ValueError, "pack_grouped_weights",
                    "weight", "a tensor [E, K, N] or [K, N]", "f32[3]");
  EXPECT_THROWS_MSG(pack_grouped_weights(Tensor::zeros(DType::f32, {1, 2, 3, 4})), ValueError,
                    "a tensor [E, K, N] or [K, N]", "f32[1, 2, 3, 4]");
  EXPECT_THROWS_MSG(pack_grouped_weights(Tensor::zeros(DType::bf16, {0, 2, 3})), ValueError, "pack_grouped_weights",
                    "at least one expert (E >= 1)", "bf16[0, 2, 3]");
  EXPECT_THROWS_MSG(pack_grouped_weights(Tensor::zeros(DType::i8, {65536, 1})), ValueError, "pack_grouped_weights",
                    "K = size(-2) < 65536", "i8[65536, 1]");
  EXPECT_THROWS_MSG(pack_grouped_weights(Tensor::zeros(DType::i8, {1, 65536})), ValueError, "pack_grouped_weights",
                    "N = size(-1) < 65536", "i8[1, 65536]");
}

TEST(Threads, SetNumThreads) {
  Restore restore;
  const int def = num_threads();
  EXPECT_GE(def, 1);
  set_num_threads(3);
  EXPECT_EQ(num_threads(), 3);
  set_num_threads(1);
  EXPECT_EQ(num_threads(), 1);
  set_num_threads(0);
  EXPECT_EQ(num_threads(), def);
  EXPECT_THROWS_MSG(set_num_threads(-1), ValueError, "set_num_threads", "n", "0 (the default) or a thread count in "
                    "1..1024", "got -1");
  EXPECT_THROWS_MSG(set_num_threads(1025), ValueError, "set_num_threads", "got 1025");
  EXPECT_EQ(num_threads(), def);
}

}  // namespace
}  // namespace moefuse
