// npu_moe_init_routing (v1) against values computed by hand and an independent oracle written from the torch_npu
// semantics.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>
#include <vector>

#include "moefuse/error.h"
#include "moefuse/ops.h"
#include "util/compare.h"
#include "util/errors.h"
#include "util/random.h"

namespace moefuse {
namespace {

using testing::Rng;

Tensor i32(const Shape& s, std::initializer_list<int32_t> v) { return Tensor::from_values<int32_t>(s, v); }

// the torch_npu semantics, written with item()/set_item() and a bucket sort (std::map of expert -> positions in
// ascending t), so it shares no code with the library:
//   perm = stable argsort of expert_idx.flatten() (token-major); sorted_row[i] = row_idx.flatten()[perm[i]]
//   expanded_expert_idx[i] = expert_idx.flatten()[perm[i]]; expanded_row_idx[sorted_row[i]] = i
//   expanded_x[i] = x[sorted_row[i] % N] for i < min(active_num, N) * K
InitRoutingResult oracle(const Tensor& x, const Tensor& row_idx, const Tensor& expert_idx, int64_t active_num) {
  const int64_t n = x.size(0), h = x.size(1), k = expert_idx.size(1);
  std::map<int64_t, std::vector<int64_t>> buckets;
  for (int64_t t = 0; t < n * k; ++t) buckets[int64_t(expert_idx.item({t / k, t % k}))].push_back(t);
  std::vector<int64_t> perm;
  for (auto& [e, ts] : buckets) perm.insert(perm.end(), ts.begin(), ts.end());

  const int64_t rows = std::min(active_num, n) * k;
  InitRoutingResult r;
  r.expanded_x = Tensor::zeros(x.dtype(), {rows, h});
  r.expanded_row_idx = Tensor::zeros(DType::i32, {n * k});
  r.expanded_expert_idx = Tensor::zeros(DType::i32, {n * k});
  for (int64_t i = 0; i < n * k; ++i) {
    const int64_t t = perm[size_t(i)];
    const int64_t sorted_row = int64_t(row_idx.item({t / k, t % k}));
    r.expanded_expert_idx.set_item({i}, expert_idx.item({t / k, t % k}));
    r.expanded_row_idx.set_item({sorted_row}, double(i));
    if (i < rows)
      for (int64_t j = 0; j < h; ++j) r.expanded_x.set_item({i, j}, x.item({sorted_row % n, j}));
  }
  return r;
}

void expect_equal(const InitRoutingResult& e, const InitRoutingResult& a) {
  EXPECT_TENSOR_EQ(e.expanded_x, a.expanded_x);
  EXPECT_TENSOR_EQ(e.expanded_row_idx, a.expanded_row_idx);
  EXPECT_TENSOR_EQ(e.expanded_expert_idx, a.expanded_expert_idx);
}

// The k-major row_idx of gating_top_k_softmax: row_idx[n, k] = k*N + n.
Tensor k_major_row_idx(int64_t n, int64_t k) {
  Tensor r = Tensor::empty(DType::i32, {n, k});
  for (int64_t a = 0; a < n; ++a)
    for (int64_t b = 0; b < k; ++b) r.set_item({a, b}, double(b * n + a));
  return r;
}

TEST(InitRouting, DocumentationExample) {
  // torch_npu's doc example. Token-major positions t = n*K + k and their experts:
  //   t: 0 1 2 3 4 5     expert: 1 2 0 1 0 2     row_idx.flatten(): 0 3 1 4 2 5
  // Stable sort by expert: e0 -> t2, t4; e1 -> t0, t3; e2 -> t1, t5  => perm = [2, 4, 0, 3, 1, 5]
  //   sorted_row = row_idx[perm] = [1, 2, 0, 4, 3, 5]; expanded_expert_idx = [0, 0, 1, 1, 2, 2]
  //   expanded_row_idx[sorted_row[i]] = i => [2, 0, 1, 4, 3, 5]
  //   expanded_x[i] = x[sorted_row[i] % 3] = x1, x2, x0, x1, x0, x2
  Tensor x =
      Tensor::from_values<float>({3, 4}, {0.1f, 0.1f, 0.1f, 0.1f, 0.2f, 0.2f, 0.2f, 0.2f, 0.3f, 0.3f, 0.3f, 0.3f});
  Tensor row_idx = i32({3, 2}, {0, 3, 1, 4, 2, 5});
  Tensor expert_idx = i32({3, 2}, {1, 2, 0, 1, 0, 2});
  InitRoutingResult r = init_routing(x, row_idx, expert_idx, 3);
  EXPECT_TENSOR_EQ(i32({6}, {2, 0, 1, 4, 3, 5}), r.expanded_row_idx);
  EXPECT_TENSOR_EQ(i32({6}, {0, 0, 1, 1, 2, 2}), r.expanded_expert_idx);
  const float rows[6] = {0.2f, 0.3f, 0.1f, 0.2f, 0.1f, 0.3f};
  ASSERT_EQ(r.expanded_x.shape(), (Shape{6, 4}));
  for (int64_t i = 0; i < 6; ++i)
    for (int64_t j = 0; j < 4; ++j) EXPECT_EQ(r.expanded_x.item({i, j}), double(rows[i])) << i << "," << j;
  // The k-major map finalize_routing reads: (token n, slot k) sits at row expanded_row_idx[k*N + n].
  for (int64_t n = 0; n < 3; ++n)
    for (int64_t k = 0; k < 2; ++k)
      EXPECT_EQ(r.expanded_x.item({int64_t(r.expanded_row_idx.item({k * 3 + n})), 0}), x.item({n, 0}));
}

TEST(InitRouting, ActiveNumKeepsTheFirstTokensWorthOfRows) {
  // Same routing as above; active_num = 1 keeps min(1, 3) * 2 = 2 rows (x1, x2); the maps are unchanged, so
  // entries >= 2 of expanded_row_idx point past expanded_x. active_num = 0 keeps none; active_num > N keeps N*K.
  Tensor x = Tensor::from_values<float>({3, 1}, {10.0f, 20.0f, 30.0f});
  Tensor row_idx = i32({3, 2}, {0, 3, 1, 4, 2, 5});
  Tensor expert_idx = i32({3, 2}, {1, 2, 0, 1, 0, 2});
  InitRoutingResult r = init_routing(x, row_idx, expert_idx, 1);
  EXPECT_TENSOR_EQ(Tensor::from_values<float>({2, 1}, {20.0f, 30.0f}), r.expanded_x);
  EXPECT_TENSOR_EQ(i32({6}, {2, 0, 1, 4, 3, 5}), r.expanded_row_idx);
  EXPECT_EQ(init_routing(x, row_idx, expert_idx, 0).expanded_x.shape(), (Shape{0, 1}));
  EXPECT_EQ(init_routing(x, row_idx, expert_idx, 100).expanded_x.shape(), (Shape{6, 1}));
}

TEST(InitRouting, NonKMajorRowIdxFollowsTheFormula) {
  // row_idx = token-major identity (t itself): sorted_row = perm = [2, 4, 0, 3, 1, 5] (from the experts above);
  // expanded_row_idx[perm[i]] = i => [2, 4, 0, 3, 1, 5]; expanded_x[i] = x[perm[i] % 3] = x2, x1, x0, x0, x1, x2.
  Tensor x = Tensor::from_values<float>({3, 1}, {10.0f, 20.0f, 30.0f});
  Tensor row_idx = i32({3, 2}, {0, 1, 2, 3, 4, 5});
  Tensor expert_idx = i32({3, 2}, {1, 2, 0, 1, 0, 2});
  InitRoutingResult r = init_routing(x, row_idx, expert_idx, 3);
  EXPECT_TENSOR_EQ(i32({6}, {2, 4, 0, 3, 1, 5}), r.expanded_row_idx);
  EXPECT_TENSOR_EQ(Tensor::from_values<float>({6, 1}, {30.0f, 20.0f, 10.0f, 10.0f, 20.0f, 30.0f}), r.expanded_x);
}

TEST(InitRouting, TiesKeepTokenMajorOrder) {
  // Every pair goes to expert 7: the sort must keep t = 0..5 in order, so sorted_row = row_idx.flatten().
  Tensor x = Tensor::from_values<float>({3, 1}, {10.0f, 20.0f, 30.0f});
  Tensor row_idx = k_major_row_idx(3, 2);  // flatten: 0 3 1 4 2 5
  Tensor expert_idx = i32({3, 2}, {7, 7, 7, 7, 7, 7});
  InitRoutingResult r = init_routing(x, row_idx, expert_idx, 3);
  EXPECT_TENSOR_EQ(i32({6}, {0, 2, 4, 1, 3, 5}), r.expanded_row_idx);
  EXPECT_TENSOR_EQ(Tensor::from_values<float>({6, 1}, {10.0f, 10.0f, 20.0f, 20.0f, 30.0f, 30.0f}), r.expanded_x);
}

TEST(InitRouting, RowsAreCopiedBitForBit) {
  // NaN payloads, -0.0 and infinities survive (no float round trip); int8 is copied as is.
  const uint16_t bits[4] = {0x7fc1, 0x8000, 0xff80, 0x3f80};  // bf16: NaN with payload, -0.0, -inf, 1.0
  Tensor x = Tensor::empty(DType::bf16, {1, 4});
  std::memcpy(x.data(), bits, sizeof bits);
  InitRoutingResult r = init_routing(x, i32({1, 1}, {0}), i32({1, 1}, {3}), 1);
  EXPECT_EQ(std::memcmp(r.expanded_x.data(), bits, sizeof bits), 0);

  Tensor xi = Tensor::from_values<int8_t>({2, 2}, {-128, 127, 5, -6});
  InitRoutingResult ri = init_routing(xi, i32({2, 1}, {0, 1}), i32({2, 1}, {1, 0}), 2);
  EXPECT_TENSOR_EQ(Tensor::from_values<int8_t>({2, 2}, {5, -6, -128, 127}), ri.expanded_x);
}

// Invariants that hold for any input: expanded_expert_idx non-decreasing; expanded_row_idx a permutation of
// [0, N*K); for every (n, k): the destination d = expanded_row_idx[row_idx[n, k]] holds expert_idx[n, k], and, if
// d is a kept row, the row x[row_idx[n, k] % N].
void check_invariants(const Tensor& x, const Tensor& row_idx, const Tensor& expert_idx, int64_t active_num,
                      const InitRoutingResult& r) {
  const int64_t n = x.size(0), h = x.size(1), k = expert_idx.size(1), nk = n * k;
  const int64_t rows = std::min(active_num, n) * k;
  for (int64_t i = 1; i < nk; ++i) ASSERT_LE(r.expanded_expert_idx.item({i - 1}), r.expanded_expert_idx.item({i}));
  std::vector<int> hit(size_t(nk), 0);
  for (int64_t i = 0; i < nk; ++i) {
    const int64_t d = int64_t(r.expanded_row_idx.item({i}));
    ASSERT_TRUE(d >= 0 && d < nk);
    ASSERT_EQ(hit[size_t(d)]++, 0) << "row " << d << " used twice";
  }
  for (int64_t a = 0; a < n; ++a)
    for (int64_t b = 0; b < k; ++b) {
      const int64_t src = int64_t(row_idx.item({a, b}));
      const int64_t d = int64_t(r.expanded_row_idx.item({src}));
      ASSERT_EQ(r.expanded_expert_idx.item({d}), expert_idx.item({a, b}));
      if (d < rows) {
        for (int64_t j = 0; j < h; ++j) ASSERT_EQ(r.expanded_x.item({d, j}), x.item({src % n, j}));
      }
    }
}

class InitRoutingSweep : public ::testing::TestWithParam<DType> {};

TEST_P(InitRoutingSweep, MatchesOracleAndInvariants) {
  const DType dt = GetParam();
  Rng rng(20240601);
  struct Case {
    int64_t n, k, h, experts;
  };
  // T=0, T=1, odd H, E=1, k=1, k=E, E=256, experts with no tokens (E >> N*K), frequent ties (E small).
  const Case cases[] = {{0, 2, 4, 4},  {1, 1, 1, 1},    {1, 4, 3, 4},     {3, 2, 5, 4}, {7, 3, 7, 3},
                        {16, 1, 2, 1}, {33, 4, 9, 100}, {64, 8, 16, 256}, {5, 2, 1, 2}, {40, 6, 3, 6}};
  for (const Case& c : cases) {
    Tensor x = dt == DType::i8 ? rng.int_tensor(DType::i8, {c.n, c.h}, -128, 127)
                               : rng.uniform_tensor(dt, {c.n, c.h}, -4.0f, 4.0f);
    Tensor expert_idx = rng.int_tensor(DType::i32, {c.n, c.k}, 0, c.experts - 1);
    // Both the k-major convention and a random permutation of [0, N*K).
    std::vector<int32_t> p(size_t(c.n * c.k));
    std::iota(p.begin(), p.end(), 0);
    std::shuffle(p.begin(), p.end(), rng.engine());
    const Tensor row_idxs[] = {k_major_row_idx(c.n, c.k), Tensor::from_values<int32_t>({c.n, c.k}, p)};
    for (const Tensor& row_idx : row_idxs)
      for (int64_t active : {int64_t{0}, int64_t{1}, c.n / 2, c.n, c.n + 3}) {
        SCOPED_TRACE(::testing::Message()
                     << "N=" << c.n << " K=" << c.k << " H=" << c.h << " E=" << c.experts << " active_num=" << active);
        InitRoutingResult r = init_routing(x, row_idx, expert_idx, active);
        expect_equal(oracle(x, row_idx, expert_idx, active), r);
        check_invariants(x, row_idx, expert_idx, active, r);
      }
  }
}

INSTANTIATE_TEST_SUITE_P(AllDTypes, InitRoutingSweep, ::testing::Values(DType::f32, DType::bf16, DType::f16, DType::i8),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(InitRouting, StridedInputsGiveTheSameResultAsContiguous) {
  Rng rng(77);
  const int64_t n = 9, k = 3, h = 5;
  Tensor x = rng.uniform_tensor(DType::f16, {h, n}).transpose(0, 1);  // [n, h], non-contiguous
  Tensor expert_idx = rng.int_tensor(DType::i32, {k, n}, 0, 3).transpose(0, 1);
  Tensor row_idx = k_major_row_idx(n, k).transpose(0, 1).contiguous().transpose(0, 1);  // same values, strided
  ASSERT_FALSE(x.is_contiguous());
  ASSERT_FALSE(expert_idx.is_contiguous());
  ASSERT_FALSE(row_idx.is_contiguous());
  InitRoutingResult strided = init_routing(x, row_idx, expert_idx, 5);
  expect_equal(init_routing(x.contiguous(), row_idx.contiguous(), expert_idx.contiguous(), 5), strided);
  expect_equal(oracle(x, row_idx, expert_idx, 5), strided);
}

TEST(InitRouting, OutVariantWritesTheCallersBuffers) {
  Rng rng(3);
  Tensor x = rng.uniform_tensor(DType::bf16, {6, 4});
  Tensor expert_idx = rng.int_tensor(DType::i32, {6, 2}, 0, 2);
  Tensor row_idx = k_major_row_idx(6, 2);
  InitRoutingResult out{Tensor::full(DType::bf16, {8, 4}, 9.0), Tensor::full(DType::i32, {12}, 9.0),
                        Tensor::full(DType::i32, {12}, 9.0)};
  init_routing_out(x, row_idx, expert_idx, 4, out);
  expect_equal(init_routing(x, row_idx, expert_idx, 4), out);
}

TEST(InitRouting, Errors) {
  Tensor x = Tensor::zeros(DType::f32, {3, 4});
  Tensor ri = k_major_row_idx(3, 2);
  Tensor ei = i32({3, 2}, {1, 2, 0, 1, 0, 2});
  const char* op = "init_routing";

  EXPECT_THROWS_MSG(init_routing(Tensor{}, ri, ei, 3), ValueError, op, "x", "a tensor", "none");
  EXPECT_THROWS_MSG(init_routing(Tensor::zeros(DType::f32, {12}), ri, ei, 3), ValueError, op, "x", "2-D", "f32[12]");
  EXPECT_THROWS_MSG(init_routing(Tensor::zeros(DType::i32, {3, 4}), ri, ei, 3), TypeError, op, "x",
                    "f32, bf16, f16 or i8", "i32");
  EXPECT_THROWS_MSG(init_routing(x, Tensor::zeros(DType::i64, {3, 2}), ei, 3), TypeError, op, "row_idx", "i32", "i64");
  EXPECT_THROWS_MSG(init_routing(x, ri, Tensor::zeros(DType::i64, {3, 2}), 3), TypeError, op, "expert_idx", "i32",
                    "i64");
  EXPECT_THROWS_MSG(init_routing(x, ri, Tensor::zeros(DType::i32, {6}), 3), ValueError, op, "expert_idx", "2-D");
  EXPECT_THROWS_MSG(init_routing(x, ri, Tensor::zeros(DType::i32, {4, 2}), 3), ValueError, op, "expert_idx", "N = 3",
                    "[4, 2]");
  EXPECT_THROWS_MSG(init_routing(x, Tensor::zeros(DType::i32, {3, 3}), ei, 3), ValueError, op, "row_idx",
                    "shape [3, 2]", "shape [3, 3]");
  EXPECT_THROWS_MSG(init_routing(x, ri, ei, -1), ValueError, op, "active_num", ">= 0", "got -1");
  EXPECT_THROWS_MSG(init_routing(x, ri, i32({3, 2}, {1, 2, 0, -4, 0, 2}), 3), ValueError, op, "expert_idx",
                    "expert ids >= 0", "-4 at [1, 1]");
  EXPECT_THROWS_MSG(init_routing(x, i32({3, 2}, {0, 3, 1, 6, 2, 5}), ei, 3), ValueError, op, "row_idx",
                    "permutation of [0, 6)", "6 at [1, 1]");
  EXPECT_THROWS_MSG(init_routing(x, i32({3, 2}, {0, 3, -1, 4, 2, 5}), ei, 3), ValueError, op, "row_idx", "permutation",
                    "-1 at [1, 0]");
  EXPECT_THROWS_MSG(init_routing(x, i32({3, 2}, {0, 3, 1, 4, 3, 5}), ei, 3), ValueError, op, "row_idx", "permutation",
                    "3 twice, at [0, 1] and [2, 0]");

  // Output checks, and nothing written when any check fails (including value checks on the inputs).
  InitRoutingResult good{Tensor::full(DType::f32, {6, 4}, 42.0), Tensor::full(DType::i32, {6}, 42.0),
                         Tensor::full(DType::i32, {6}, 42.0)};
  auto untouched = [&] {
    return testing::all_hold({&good.expanded_x, &good.expanded_row_idx, &good.expanded_expert_idx}, 42.0);
  };
  EXPECT_THROWS_MSG(init_routing_out(x, i32({3, 2}, {0, 3, 1, 4, 3, 5}), ei, 3, good), ValueError, "row_idx");
  EXPECT_TRUE(untouched());
  InitRoutingResult bad = good;
  bad.expanded_x = Tensor::zeros(DType::f32, {5, 4});
  EXPECT_THROWS_MSG(init_routing_out(x, ri, ei, 3, bad), ValueError, op, "expanded_x", "shape [6, 4]", "shape [5, 4]");
  EXPECT_TRUE(untouched());
  bad = good;
  bad.expanded_row_idx = Tensor::zeros(DType::i64, {6});
  EXPECT_THROWS_MSG(init_routing_out(x, ri, ei, 3, bad), TypeError, op, "expanded_row_idx", "i32", "i64");
  bad = good;
  Tensor backing = Tensor::zeros(DType::i32, {12});
  bad.expanded_expert_idx = Tensor::view(backing.data(), DType::i32, {6}, {2});  // every other element
  EXPECT_THROWS_MSG(init_routing_out(x, ri, ei, 3, bad), ValueError, op, "expanded_expert_idx", "contiguous");
  EXPECT_TRUE(untouched());
}

}  // namespace
}  // namespace moefuse
