// npu_moe_gating_top_k_softmax and _v2 against values computed by hand and an independent oracle written from
// the torch_npu semantics (the numpy goldens test_npu_moe_gating_top_k_softmax{,_v2}.py, with fp16 scored in fp32 as
// decided in docs/operators.md, Numerics: open questions).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "moefuse/error.h"
#include "moefuse/ops.h"
#include "util/argsort.h"
#include "util/compare.h"
#include "util/errors.h"
#include "util/random.h"

namespace moefuse {
namespace {

using testing::argsort_desc;
using testing::Rng;

// Softmax in the documented fp32 order: exp(v - max) with std::exp, times the reciprocal of the sequential sum.
std::vector<float> softmax(const std::vector<float>& v) {
  std::vector<float> p(v.size());
  if (v.empty()) return p;
  float m = v[0];
  for (float a : v) m = std::max(m, a);
  float sum = 0.0f;
  for (size_t i = 0; i < v.size(); ++i) {
    p[i] = std::exp(v[i] - m);
    sum += p[i];
  }
  float inv = 1.0f / sum;
  for (float& a : p) a = a * inv;
  return p;
}

struct Expected {
  Tensor y, expert_idx, row_idx, softmax_out;
};

// the torch_npu semantics row by row on x.reshape(R, E) read through item().
Expected oracle(const Tensor& x, const Tensor& finished, int64_t k, int64_t renorm, bool output_softmax) {
  const int64_t E = x.size(-1);
  Shape lead;
  for (int d = 0; d + 1 < x.dim(); ++d) lead.push_back(x.size(d));
  const int64_t R = lead.numel();
  Shape out_shape = lead;
  out_shape.push_back(k);
  Expected r{Tensor::empty(x.dtype(), out_shape), Tensor::empty(DType::i32, out_shape),
             Tensor::empty(DType::i32, out_shape),
             renorm == 0 && output_softmax ? Tensor::empty(DType::f32, x.shape()) : Tensor::empty(DType::f32, {0})};
  Tensor xc = x.contiguous().reshape({R, E});
  Tensor fin = finished.defined() ? finished.contiguous().reshape({R}) : Tensor{};
  Tensor y = r.y.reshape({R, k}), idx = r.expert_idx.reshape({R, k}), row = r.row_idx.reshape({R, k});
  Tensor sm = r.softmax_out.numel() ? r.softmax_out.reshape({R, E}) : Tensor{};
  for (int64_t n = 0; n < R; ++n) {
    std::vector<float> s(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e) s[size_t(e)] = float(xc.item({n, e}));
    std::vector<float> p = softmax(s);
    if (sm.defined())
      for (int64_t e = 0; e < E; ++e) sm.set_item({n, e}, p[size_t(e)]);
    std::vector<int64_t> order = argsort_desc(renorm == 0 ? p : s);
    std::vector<float> w(static_cast<size_t>(k));
    for (int64_t j = 0; j < k; ++j)
      w[size_t(j)] = renorm == 0 ? p[size_t(order[size_t(j)])] : s[size_t(order[size_t(j)])];
    if (renorm == 1) w = softmax(w);
    const bool done = fin.defined() && fin.item({n}) != 0;
    for (int64_t j = 0; j < k; ++j) {
      y.set_item({n, j}, w[size_t(j)]);
      idx.set_item({n, j}, double(done ? E : order[size_t(j)]));
      row.set_item({n, j}, double(j * R + n));
    }
  }
  return r;
}

std::vector<int64_t> ids_of(const Tensor& t) {
  std::vector<int64_t> v;
  for (int64_t i = 0; i < t.numel(); ++i) v.push_back(int64_t(t.item_flat(i)));
  return v;
}

// ---------------------------------------------------------------------------------------------------------------
// gating_top_k_softmax (v1)
// ---------------------------------------------------------------------------------------------------------------

TEST(GatingTopKSoftmax, SoftmaxOneByFour) {
  // softmax([1,2,3,4]): e^(x-4) / (1 + e^-1 + e^-2 + e^-3) = 0.0320586, 0.0871443, 0.2368828, 0.6439143.
  Tensor x = Tensor::from_values<float>({1, 4}, {1.0f, 2.0f, 3.0f, 4.0f});
  GatingTopKSoftmaxResult r = gating_top_k_softmax(x, Tensor{}, 2);
  ASSERT_EQ(r.y.shape(), (Shape{1, 2}));
  EXPECT_EQ(r.expert_idx.dtype(), DType::i32);
  EXPECT_EQ(r.row_idx.dtype(), DType::i32);
  EXPECT_NEAR(r.y.item({0, 0}), 0.64391426, 1e-7);
  EXPECT_NEAR(r.y.item({0, 1}), 0.23688282, 1e-7);
  EXPECT_EQ(ids_of(r.expert_idx), (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(ids_of(r.row_idx), (std::vector<int64_t>{0, 1}));
}

TEST(GatingTopKSoftmax, RowIdxIsKMajor) {
  Rng rng(1);
  Tensor x = rng.normal_tensor(DType::f32, {3, 5});
  GatingTopKSoftmaxResult r = gating_top_k_softmax(x, Tensor{}, 2);
  EXPECT_EQ(ids_of(r.row_idx), (std::vector<int64_t>{0, 3, 1, 4, 2, 5}));  // row_idx[r, j] = j * 3 + r
}

TEST(GatingTopKSoftmax, ConstantRowsBreakTiesByLowerIndex) {
  for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
    Tensor x = Tensor::full(dt, {2, 8}, -1.5);
    GatingTopKSoftmaxResult r = gating_top_k_softmax(x, Tensor{}, 8);
    EXPECT_EQ(ids_of(r.expert_idx), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7}));
    for (int64_t i = 0; i < 16; ++i) EXPECT_EQ(r.y.item_flat(i), 0.125);
  }
}

TEST(GatingTopKSoftmax, TopKIsTakenOnProbabilitiesNotLogits) {
  // exp(-150), exp(-200), exp(-300) all underflow to 0 in fp32: the three probabilities tie and the lower expert
  // index wins (v1 / v2 renorm 0), whereas v2 renorm 1 ranks the raw logits.
  Tensor x = Tensor::from_values<float>({1, 4}, {0.0f, -200.0f, -300.0f, -150.0f});
  GatingTopKSoftmaxResult r = gating_top_k_softmax(x, Tensor{}, 4);
  EXPECT_EQ(ids_of(r.expert_idx), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(r.y.item({0, 0}), 1.0);
  EXPECT_EQ(r.y.item({0, 1}), 0.0);
  GatingTopKSoftmaxV2Options o;
  o.k = 4;
  o.renorm = 1;
  EXPECT_EQ(ids_of(gating_top_k_softmax_v2(x, o).expert_idx), (std::vector<int64_t>{0, 3, 1, 2}));
}

TEST(GatingTopKSoftmax, FinishedRowsGetTheSentinelAndKeepTheirWeights) {
  Rng rng(2);
  Tensor x = rng.normal_tensor(DType::bf16, {5, 16});
  Tensor finished = Tensor::from_values<bool>({5}, {true, false, true, false, false});
  GatingTopKSoftmaxResult plain = gating_top_k_softmax(x, Tensor{}, 3);
  GatingTopKSoftmaxResult masked = gating_top_k_softmax(x, finished, 3);
  EXPECT_TENSOR_EQ(plain.y, masked.y);
  EXPECT_TENSOR_EQ(plain.row_idx, masked.row_idx);
  for (int64_t n = 0; n < 5; ++n)
    for (int64_t j = 0; j < 3; ++j)
      EXPECT_EQ(masked.expert_idx.item({n, j}), finished.item({n}) ? 16.0 : plain.expert_idx.item({n, j}));
  // All false is the same as no mask.
  EXPECT_TENSOR_EQ(plain.expert_idx, gating_top_k_softmax(x, Tensor::zeros(DType::boolean, {5}), 3).expert_idx);
  // A bool byte other than 1 still means true; a strided mask is read through its strides.
  uint8_t bytes[10] = {0, 9, 7, 9, 0, 9, 0, 9, 0, 9};
  Tensor strided_mask = Tensor::view(static_cast<void*>(bytes), DType::boolean, {5}, {2});
  GatingTopKSoftmaxResult r = gating_top_k_softmax(x, strided_mask, 3);
  EXPECT_EQ(ids_of(r.expert_idx.narrow(0, 1, 1).contiguous()), (std::vector<int64_t>{16, 16, 16}));
  EXPECT_TENSOR_EQ(
      oracle(x, Tensor::from_values<bool>({5}, {false, true, false, false, false}), 3, 0, false).expert_idx,
      r.expert_idx);
}

TEST(GatingTopKSoftmax, ThreeDimensionalInput) {
  Rng rng(3);
  Tensor x = rng.normal_tensor(DType::f16, {2, 3, 10}, 2.0f);
  Tensor finished = Tensor::from_values<bool>({2, 3}, {false, true, false, false, false, true});
  GatingTopKSoftmaxResult r = gating_top_k_softmax(x, finished, 4);
  ASSERT_EQ(r.y.shape(), (Shape{2, 3, 4}));
  Expected e = oracle(x, finished, 4, 0, false);
  EXPECT_TENSOR_EQ(e.y, r.y);
  EXPECT_TENSOR_EQ(e.expert_idx, r.expert_idx);
  EXPECT_TENSOR_EQ(e.row_idx, r.row_idx);
  EXPECT_EQ(r.row_idx.item({1, 2, 3}), 3 * 6 + 5);  // j * R + r over the flattened R = 6 rows
  // Same as the 2-D call on the flattened rows.
  GatingTopKSoftmaxResult flat = gating_top_k_softmax(x.reshape({6, 10}), finished.reshape({6}), 4);
  EXPECT_TENSOR_EQ(flat.y.reshape({2, 3, 4}), r.y);
  EXPECT_TENSOR_EQ(flat.expert_idx.reshape({2, 3, 4}), r.expert_idx);
  EXPECT_TENSOR_EQ(flat.row_idx.reshape({2, 3, 4}), r.row_idx);
  // A non-contiguous 3-D view (the [S, B, E] storage transposed).
  Tensor sbe = rng.normal_tensor(DType::bf16, {3, 2, 10});
  Tensor bse = sbe.transpose(0, 1);
  GatingTopKSoftmaxResult t = gating_top_k_softmax(bse, finished, 4);
  Expected te = oracle(bse, finished, 4, 0, false);
  EXPECT_TENSOR_EQ(te.y, t.y);
  EXPECT_TENSOR_EQ(te.expert_idx, t.expert_idx);
}

TEST(GatingTopKSoftmax, KZeroAndEmptyShapes) {
  Tensor x = Tensor::zeros(DType::f32, {3, 5});
  GatingTopKSoftmaxResult r = gating_top_k_softmax(x, Tensor{}, 0);
  EXPECT_EQ(r.y.shape(), (Shape{3, 0}));
  EXPECT_EQ(r.expert_idx.shape(), (Shape{3, 0}));
  EXPECT_EQ(r.row_idx.shape(), (Shape{3, 0}));
  r = gating_top_k_softmax(Tensor::zeros(DType::bf16, {2, 0, 7}), Tensor::zeros(DType::boolean, {2, 0}), 7);
  EXPECT_EQ(r.y.shape(), (Shape{2, 0, 7}));
  r = gating_top_k_softmax(Tensor::zeros(DType::f16, {4, 0}), Tensor{}, 0);
  EXPECT_EQ(r.y.shape(), (Shape{4, 0}));
  GatingTopKSoftmaxV2Options o;
  o.k = 0;
  o.output_softmax = true;
  GatingTopKSoftmaxV2Result v = gating_top_k_softmax_v2(x, o);
  EXPECT_EQ(v.y.shape(), (Shape{3, 0}));
  EXPECT_TENSOR_EQ(Tensor::full(DType::f32, {3, 5}, 0.2), v.softmax_out);  // still computed
}

TEST(GatingTopKSoftmax, Fp16IsScoredInFp32) {
  // softmax([0, 2^-14]) = 0.5 -/+ 2^-16 (about): both round to 0.5 in fp16. The torch_npu golden takes top-k on the
  // fp16 values and would pick expert 0 (tie, lower index); moefuse compares the fp32 probabilities
  // (docs/operators.md, Numerics: open questions) and picks expert 1, whose weight still rounds to 0.5.
  Tensor x = Tensor::from_values<float>({1, 2}, {0.0f, 0x1p-14f}).to(DType::f16);
  GatingTopKSoftmaxResult r = gating_top_k_softmax(x, Tensor{}, 1);
  EXPECT_EQ(r.expert_idx.item({0, 0}), 1.0);
  EXPECT_EQ(r.y.item({0, 0}), 0.5);
  GatingTopKSoftmaxV2Options o;
  EXPECT_EQ(gating_top_k_softmax_v2(x, o).expert_idx.item({0, 0}), 1.0);
}

TEST(GatingTopKSoftmax, MatchesOracleOverSweeps) {
  Rng rng(99);
  int counter = 0;
  for (int64_t E : {1, 8, 64, 200, 256, 2048})
    for (DType dt : {DType::f32, DType::bf16, DType::f16})
      for (int64_t N : {0, 1, 7, 33})
        for (int64_t k : {int64_t{1}, E}) {
          const int bits = counter++;
          Tensor x;
          switch (bits % 3) {
            case 0:
              x = rng.normal_tensor(dt, {N, E}, 2.0f);
              break;
            case 1:
              x = rng.normal_tensor(dt, {E, N}, 2.0f).transpose(0, 1);
              break;
            default:
              x = rng.normal_tensor(dt, {N, E + 3}, 2.0f).narrow(1, 2, E);
              break;
          }
          Tensor finished = (bits >> 1) & 1 ? rng.int_tensor(DType::boolean, {N}, 0, 1) : Tensor{};
          SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " N=" << N << " E=" << E << " k=" << k
                                            << " layout=" << bits % 3 << " finished=" << finished.defined());
          Expected e = oracle(x, finished, k, 0, false);
          GatingTopKSoftmaxResult r = gating_top_k_softmax(x, finished, k);
          EXPECT_TENSOR_EQ(e.y, r.y);
          EXPECT_TENSOR_EQ(e.expert_idx, r.expert_idx);
          EXPECT_TENSOR_EQ(e.row_idx, r.row_idx);
          for (int64_t renorm : {0, 1}) {
            GatingTopKSoftmaxV2Options o;
            o.k = k;
            o.finished = finished;
            o.renorm = renorm;
            o.output_softmax = (bits >> 2) & 1;
            Expected e2 = oracle(x, finished, k, renorm, o.output_softmax);
            GatingTopKSoftmaxV2Result r2 = gating_top_k_softmax_v2(x, o);
            EXPECT_TENSOR_EQ(e2.y, r2.y) << "v2 renorm " << renorm;
            EXPECT_TENSOR_EQ(e2.expert_idx, r2.expert_idx) << "v2 renorm " << renorm;
            EXPECT_TENSOR_EQ(e2.softmax_out, r2.softmax_out) << "v2 renorm " << renorm;
          }
        }
}

TEST(GatingTopKSoftmax, OutVariantWritesTheCallersBuffers) {
  Rng rng(4);
  Tensor x = rng.normal_tensor(DType::bf16, {6, 12});
  GatingTopKSoftmaxResult b{Tensor::full(DType::bf16, {6, 3}, 9.0), Tensor::full(DType::i32, {6, 3}, -9),
                            Tensor::full(DType::i32, {6, 3}, -9)};
  gating_top_k_softmax_out(x, Tensor{}, 3, b);
  GatingTopKSoftmaxResult r = gating_top_k_softmax(x, Tensor{}, 3);
  EXPECT_TENSOR_EQ(r.y, b.y);
  EXPECT_TENSOR_EQ(r.expert_idx, b.expert_idx);
  EXPECT_TENSOR_EQ(r.row_idx, b.row_idx);
}

// ---------------------------------------------------------------------------------------------------------------
// gating_top_k_softmax_v2
// ---------------------------------------------------------------------------------------------------------------

TEST(GatingTopKSoftmaxV2, RenormOneIsSoftmaxOverTheSelectedLogits) {
  // top-2 of [1,2,3,4] = logits 4, 3; softmax([4, 3]) = sigmoid(1), 1 - sigmoid(1).
  Tensor x = Tensor::from_values<float>({1, 4}, {1.0f, 2.0f, 3.0f, 4.0f});
  GatingTopKSoftmaxV2Options o;
  o.k = 2;
  o.renorm = 1;
  o.output_softmax = true;  // ignored with renorm 1
  GatingTopKSoftmaxV2Result r = gating_top_k_softmax_v2(x, o);
  EXPECT_EQ(ids_of(r.expert_idx), (std::vector<int64_t>{3, 2}));
  EXPECT_NEAR(r.y.item({0, 0}), 0.73105858, 1e-7);
  EXPECT_NEAR(r.y.item({0, 1}), 0.26894142, 1e-7);
  EXPECT_EQ(r.softmax_out.dtype(), DType::f32);
  EXPECT_EQ(r.softmax_out.shape(), (Shape{0}));
  // Equal to renormalising the top-2 softmax probabilities, up to rounding.
  o.renorm = 0;
  GatingTopKSoftmaxV2Result p = gating_top_k_softmax_v2(x, o);
  double sum = p.y.item({0, 0}) + p.y.item({0, 1});
  EXPECT_NEAR(r.y.item({0, 0}), p.y.item({0, 0}) / sum, 1e-7);
}

TEST(GatingTopKSoftmaxV2, RenormZeroMatchesV1AndOutputsTheSoftmax) {
  Rng rng(5);
  Tensor x = rng.normal_tensor(DType::f16, {2, 4, 32});
  Tensor finished = rng.int_tensor(DType::boolean, {2, 4}, 0, 1);
  GatingTopKSoftmaxResult v1 = gating_top_k_softmax(x, finished, 5);
  GatingTopKSoftmaxV2Options o;
  o.k = 5;
  o.finished = finished;
  GatingTopKSoftmaxV2Result v2 = gating_top_k_softmax_v2(x, o);
  EXPECT_TENSOR_EQ(v1.y, v2.y);
  EXPECT_TENSOR_EQ(v1.expert_idx, v2.expert_idx);
  EXPECT_EQ(v2.softmax_out.shape(), (Shape{0}));
  o.output_softmax = true;
  v2 = gating_top_k_softmax_v2(x, o);
  ASSERT_EQ(v2.softmax_out.shape(), (Shape{2, 4, 32}));
  EXPECT_TENSOR_EQ(oracle(x, finished, 5, 0, true).softmax_out, v2.softmax_out);
  for (int64_t r = 0; r < 8; ++r) {  // each softmax row sums to 1
    double s = 0;
    for (int64_t e = 0; e < 32; ++e) s += v2.softmax_out.item_flat(r * 32 + e);
    EXPECT_NEAR(s, 1.0, 1e-5);
  }
  // The selected weights are the softmax values at the selected experts, rounded to fp16 (unfinished rows).
  Tensor unmasked_idx = gating_top_k_softmax(x, Tensor{}, 5).expert_idx;
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t s = 0; s < 4; ++s)
      for (int64_t j = 0; j < 5; ++j) {
        int64_t e = int64_t(unmasked_idx.item({b, s, j}));
        float p = float(v2.softmax_out.item({b, s, e}));
        EXPECT_EQ(v2.y.item({b, s, j}), double(to_f32(to_f16(p))));
      }
}

TEST(GatingTopKSoftmaxV2, OutVariant) {
  Rng rng(6);
  Tensor x = rng.normal_tensor(DType::f32, {4, 9});
  GatingTopKSoftmaxV2Options o;
  o.k = 3;
  o.output_softmax = true;
  GatingTopKSoftmaxV2Result b{Tensor::zeros(DType::f32, {4, 3}), Tensor::zeros(DType::i32, {4, 3}),
                              Tensor::zeros(DType::f32, {4, 9})};
  gating_top_k_softmax_v2_out(x, o, b);
  GatingTopKSoftmaxV2Result r = gating_top_k_softmax_v2(x, o);
  EXPECT_TENSOR_EQ(r.y, b.y);
  EXPECT_TENSOR_EQ(r.expert_idx, b.expert_idx);
  EXPECT_TENSOR_EQ(r.softmax_out, b.softmax_out);
  // Without a softmax to produce, softmax_out may be undefined or empty.
  o.output_softmax = false;
  b.softmax_out = Tensor{};
  gating_top_k_softmax_v2_out(x, o, b);
  EXPECT_TENSOR_EQ(r.y, b.y);
  b.softmax_out = Tensor::zeros(DType::f32, {0});
  o.renorm = 1;
  gating_top_k_softmax_v2_out(x, o, b);
  EXPECT_TENSOR_EQ(gating_top_k_softmax_v2(x, o).y, b.y);
}

// ---------------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------------

TEST(GatingTopKSoftmax, InputErrors) {
  Tensor x = Tensor::zeros(DType::f32, {4, 6});
  EXPECT_THROWS_MSG(gating_top_k_softmax(Tensor{}), ValueError, "gating_top_k_softmax: x: expected a tensor, got none");
  EXPECT_THROWS_MSG(gating_top_k_softmax(Tensor::zeros(DType::i8, {4, 6})), TypeError, "gating_top_k_softmax", "x",
                    "f32, bf16 or f16", "got i8");
  EXPECT_THROWS_MSG(gating_top_k_softmax(Tensor::zeros(DType::f32, {6})), ValueError, "gating_top_k_softmax", "x",
                    "a 2-D [N, E] or 3-D [B, S, E] tensor", "f32[6]");
  EXPECT_THROWS_MSG(gating_top_k_softmax(Tensor::zeros(DType::f32, {1, 2, 3, 6})), ValueError, "x", "3-D",
                    "f32[1, 2, 3, 6]");
  EXPECT_THROWS_MSG(gating_top_k_softmax(x, Tensor::zeros(DType::u8, {4})), TypeError, "gating_top_k_softmax",
                    "finished", "dtype bool", "got u8");
  EXPECT_THROWS_MSG(gating_top_k_softmax(x, Tensor::zeros(DType::boolean, {6})), ValueError, "finished",
                    "shape [4] (x.shape[:-1])", "shape [6]");
  EXPECT_THROWS_MSG(gating_top_k_softmax(x, Tensor::zeros(DType::boolean, {4, 1})), ValueError, "finished", "shape [4]",
                    "shape [4, 1]");
  EXPECT_THROWS_MSG(gating_top_k_softmax(x, Tensor{}, -1), ValueError, "gating_top_k_softmax", "k", "0 <= k <= E (6)",
                    "got -1");
  EXPECT_THROWS_MSG(gating_top_k_softmax(x, Tensor{}, 7), ValueError, "k", "0 <= k <= E (6)", "got 7");
  // 2^20 rows * k = 4096 overflows the i32 row_idx (a zero-stride view: no memory is needed to describe it).
  float one = 0.0f;
  Tensor huge = Tensor::view(static_cast<const void*>(&one), DType::f32, {int64_t{1} << 20, 4096}, {0, 0});
  EXPECT_THROWS_MSG(gating_top_k_softmax(huge, Tensor{}, 4096), ValueError, "gating_top_k_softmax", "k",
                    "rows * k <= 2147483647 (row_idx is i32; rows = 1048576)", "got 4096");
  Tensor wide = Tensor::view(static_cast<const void*>(&one), DType::f32, {1, int64_t{1} << 31}, {0, 0});
  EXPECT_THROWS_MSG(gating_top_k_softmax(wide, Tensor{}, 1), ValueError, "x", "E <= 2147483647");
}

TEST(GatingTopKSoftmax, OutputErrorsLeaveBuffersUntouched) {
  Tensor x = Tensor::zeros(DType::f16, {2, 3, 6});
  auto fresh = [] {
    return GatingTopKSoftmaxResult{Tensor::full(DType::f16, {2, 3, 2}, 42.0), Tensor::full(DType::i32, {2, 3, 2}, 42),
                                   Tensor::full(DType::i32, {2, 3, 2}, 42)};
  };
  auto untouched = [](const GatingTopKSoftmaxResult& r) {
    return testing::all_hold({&r.y, &r.expert_idx, &r.row_idx}, 42.0);
  };
  GatingTopKSoftmaxResult b = fresh();
  b.y = Tensor::full(DType::bf16, {2, 3, 2}, 42.0);
  EXPECT_THROWS_MSG(gating_top_k_softmax_out(x, Tensor{}, 2, b), TypeError, "gating_top_k_softmax", "y", "dtype f16",
                    "bf16");
  EXPECT_TRUE(untouched(b));
  b = fresh();
  b.row_idx = Tensor::full(DType::i32, {6, 2}, 42);
  EXPECT_THROWS_MSG(gating_top_k_softmax_out(x, Tensor{}, 2, b), ValueError, "row_idx", "shape [2, 3, 2]",
                    "shape [6, 2]");
  EXPECT_TRUE(untouched(b));
  b = fresh();
  b.expert_idx = Tensor::full(DType::i64, {2, 3, 2}, 42);
  EXPECT_THROWS_MSG(gating_top_k_softmax_out(x, Tensor{}, 2, b), TypeError, "expert_idx", "dtype i32", "i64");
  EXPECT_TRUE(untouched(b));
  b = fresh();
  b.expert_idx = b.expert_idx.as_readonly();
  EXPECT_THROWS_MSG(gating_top_k_softmax_out(x, Tensor{}, 2, b), ValueError, "expert_idx", "writable");
  EXPECT_TRUE(untouched(b));
  b = fresh();
  b.row_idx = Tensor{};
  EXPECT_THROWS_MSG(gating_top_k_softmax_out(x, Tensor{}, 2, b), ValueError, "row_idx", "a tensor", "none");
  EXPECT_TRUE(untouched(b));
  b = fresh();
  EXPECT_THROWS_MSG(gating_top_k_softmax_out(x, Tensor::zeros(DType::boolean, {3, 2}), 2, b), ValueError, "finished");
  EXPECT_TRUE(untouched(b));
}

TEST(GatingTopKSoftmaxV2, Errors) {
  Tensor x = Tensor::zeros(DType::bf16, {4, 6});
  GatingTopKSoftmaxV2Options o;
  o.renorm = 2;
  EXPECT_THROWS_MSG(gating_top_k_softmax_v2(x, o), ValueError, "gating_top_k_softmax_v2", "renorm",
                    "0 (softmax, then top-k) or 1 (top-k, then softmax)", "got 2");
  o = {};
  o.k = 7;
  EXPECT_THROWS_MSG(gating_top_k_softmax_v2(x, o), ValueError, "gating_top_k_softmax_v2", "k", "0 <= k <= E (6)",
                    "got 7");
  o = {};
  o.finished = Tensor::zeros(DType::i32, {4});
  EXPECT_THROWS_MSG(gating_top_k_softmax_v2(x, o), TypeError, "gating_top_k_softmax_v2", "finished", "bool", "i32");
  o = {};
  EXPECT_THROWS_MSG(gating_top_k_softmax_v2(Tensor::zeros(DType::i32, {4, 6}), o), TypeError, "gating_top_k_softmax_v2",
                    "x");
  EXPECT_THROWS_MSG(gating_top_k_softmax_v2(Tensor::zeros(DType::f32, {24}), o), ValueError, "gating_top_k_softmax_v2",
                    "x", "2-D");

  // Output buffers.
  auto fresh = [] {
    return GatingTopKSoftmaxV2Result{Tensor::full(DType::bf16, {4, 1}, 42.0), Tensor::full(DType::i32, {4, 1}, 42),
                                     Tensor::full(DType::f32, {4, 6}, 42.0)};
  };
  auto untouched = [](const GatingTopKSoftmaxV2Result& r) {
    return testing::all_hold({&r.y, &r.expert_idx, &r.softmax_out}, 42.0);
  };
  GatingTopKSoftmaxV2Result b = fresh();
  EXPECT_THROWS_MSG(gating_top_k_softmax_v2_out(x, o, b), ValueError, "gating_top_k_softmax_v2", "softmax_out",
                    "an undefined or empty tensor", "f32[4, 6]");
  EXPECT_TRUE(untouched(b));
  o.output_softmax = true;
  b.softmax_out = Tensor::full(DType::f32, {4, 5}, 42.0);
  EXPECT_THROWS_MSG(gating_top_k_softmax_v2_out(x, o, b), ValueError, "softmax_out", "shape [4, 6]", "shape [4, 5]");
  EXPECT_TRUE(untouched(b));
  b = fresh();
  b.softmax_out = Tensor::full(DType::bf16, {4, 6}, 42.0);
  EXPECT_THROWS_MSG(gating_top_k_softmax_v2_out(x, o, b), TypeError, "softmax_out", "dtype f32", "bf16");
  EXPECT_TRUE(untouched(b));
  b = fresh();
  b.softmax_out = Tensor{};
  EXPECT_THROWS_MSG(gating_top_k_softmax_v2_out(x, o, b), ValueError, "softmax_out", "a tensor", "none");
  EXPECT_TRUE(untouched(b));
  b = fresh();
  b.y = Tensor::full(DType::bf16, {4, 2}, 42.0).narrow(1, 0, 1);  // [4, 1] with row stride 2
  EXPECT_THROWS_MSG(gating_top_k_softmax_v2_out(x, o, b), ValueError, "y", "contiguous");
  EXPECT_TRUE(untouched(b));
  b = fresh();
  o.renorm = 3;
  EXPECT_THROWS_MSG(gating_top_k_softmax_v2_out(x, o, b), ValueError, "renorm");
  EXPECT_TRUE(untouched(b));
}

}  // namespace
}  // namespace moefuse
