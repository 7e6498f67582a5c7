// npu_swiglu_clip_quant against values computed by hand and an independent reference written from the torch_npu
// semantics with the project's dynamic quantisation (docs/operators.md, Numerics: dynamic int8 quantisation) applied to
// the clamped row.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "moefuse/error.h"
#include "moefuse/ops.h"
#include "util/compare.h"
#include "util/errors.h"
#include "util/random.h"

namespace moefuse {
namespace {

using testing::Rng;

// the torch_npu semantics: per row r of group g: s = silu(a) * b (a = activated half), m = max|s|, t = alpha[g] * m,
// s = clamp(s, -t, t); then docs/operators.md, Numerics: dynamic int8 quantisation: scale = max|s| / 127, q = rint(s /
// scale) in [-127, 127], zero row -> 0. Rows past Σ counts: zero.
SwigluClipQuantResult clip_oracle(const Tensor& x, const Tensor& counts, const Tensor& alpha, bool left) {
  const int64_t T = x.size(0), H = x.size(1) / 2;
  SwigluClipQuantResult ex{Tensor::zeros(DType::i8, {T, H}), Tensor::zeros(DType::f32, {T})};
  int64_t r = 0;
  for (int64_t g = 0; g < counts.size(0); ++g) {
    const float al = float(alpha.item({g}));
    for (int64_t n = int64_t(counts.item({g})); n > 0; --n, ++r) {
      std::vector<float> s(static_cast<size_t>(H));
      float m = 0.0f;
      for (int64_t j = 0; j < H; ++j) {
        float a = float(x.item({r, left ? j : H + j}));
        float b = float(x.item({r, left ? H + j : j}));
        s[size_t(j)] = a / (1.0f + std::exp(-a)) * b;
        m = std::max(m, std::fabs(s[size_t(j)]));
      }
      const float t = al * m;
      float amax = 0.0f;
      for (float& v : s) {
        v = std::max(std::min(v, t), -t);
        amax = std::max(amax, std::fabs(v));
      }
      const float scale = amax / 127.0f;
      ex.scale.set_item({r}, scale);
      for (int64_t j = 0; j < H; ++j)
        ex.y.set_item({r, j}, scale == 0.0f ? 0.0f : std::clamp(std::nearbyint(s[size_t(j)] / scale), -127.0f, 127.0f));
    }
  }
  return ex;
}

Tensor i64(std::initializer_list<int64_t> v) {
  return Tensor::from_values<int64_t>({int64_t(v.size())}, std::span<const int64_t>(v.begin(), v.size()));
}
Tensor f32(std::initializer_list<float> v) {
  return Tensor::from_values<float>({int64_t(v.size())}, std::span<const float>(v.begin(), v.size()));
}

TEST(SwigluClipQuant, HandComputed) {
  // x = [1, 2 | 3, -4] (bf16, exact). activate_left = false: a = [3, -4], b = [1, 2]:
  //   s = [3 * sigmoid(3) * 1, -4 * sigmoid(-4) * 2] = [2.8577223804, -0.1438896812], m = 2.8577223804.
  Tensor x = Tensor::from_values<float>({1, 4}, {1.0f, 2.0f, 3.0f, -4.0f}).to(DType::bf16);
  // alpha 0.5: t = 1.4288611902; s = [t, -0.1438896812]; scale = t / 127 = 0.0112508755;
  //   y = [127, rint(-12.7892)] = [127, -13].
  SwigluClipQuantResult r = swiglu_clip_quant(x, i64({1}), f32({0.5f}));
  EXPECT_EQ(r.y.item({0, 0}), 127);
  EXPECT_EQ(r.y.item({0, 1}), -13);
  EXPECT_NEAR(r.scale.item({0}), 0.0112508755, 1e-9);
  // alpha 2: the clamp is a no-op: scale = m / 127 = 0.0225017510, y = [127, rint(-6.3946)] = [127, -6].
  //   (The kernel would report scale = 2m / 127 = 0.0450035 and y = [64, -3]; see the header.)
  r = swiglu_clip_quant(x, i64({1}), f32({2.0f}));
  EXPECT_EQ(r.y.item({0, 0}), 127);
  EXPECT_EQ(r.y.item({0, 1}), -6);
  EXPECT_NEAR(r.scale.item({0}), 0.0225017510, 1e-9);
  // alpha 0: everything clamps to 0: scale 0, y 0.
  r = swiglu_clip_quant(x, i64({1}), f32({0.0f}));
  EXPECT_EQ(r.scale.item({0}), 0.0);
  EXPECT_EQ(r.y.item({0, 0}), 0);
  EXPECT_EQ(r.y.item({0, 1}), 0);
  // activate_left = true: a = [1, 2], b = [3, -4]: s = [0.7310585786 * 3, 1.7615941560 * -4] = [2.1931757, -7.0463766];
  //   alpha 1: scale = 7.0463766 / 127 = 0.0554832805, y = [rint(39.528), -127] = [40, -127].
  SwigluClipQuantOptions o;
  o.activate_left = true;
  r = swiglu_clip_quant(x, i64({1}), f32({1.0f}), o);
  EXPECT_EQ(r.y.item({0, 0}), 40);
  EXPECT_EQ(r.y.item({0, 1}), -127);
  EXPECT_NEAR(r.scale.item({0}), 0.0554832805, 1e-8);  // fp32: ~4 ulp of slack
}

TEST(SwigluClipQuant, ScaleIsAlphaTimesMaxOver127ForAlphaUpToOneAndMaxOver127Above) {
  // The documented relation to the kernel's scale = alpha * m / 127.
  Rng rng(3);
  Tensor x = rng.uniform_tensor(DType::bf16, {6, 16}, -50.0f, 50.0f);
  Tensor alpha = f32({0.25f, 0.999f, 1.0f, 1.5f, 3.0f, 0.0f});
  SwigluClipQuantResult r = swiglu_clip_quant(x, i64({1, 1, 1, 1, 1, 1}), alpha);
  for (int64_t row = 0; row < 6; ++row) {
    float m = 0.0f;
    for (int64_t j = 0; j < 8; ++j) {
      float a = float(x.item({row, 8 + j})), b = float(x.item({row, j}));
      m = std::max(m, std::fabs(a / (1.0f + std::exp(-a)) * b));
    }
    const float al = float(alpha.item({row}));
    const float expected = al <= 1.0f ? (al * m) / 127.0f : m / 127.0f;
    EXPECT_EQ(float(r.scale.item({row})), expected) << "alpha " << al;
    // With alpha <= 1 some element reaches ±127 exactly unless the row is all zero.
    if (al > 0.0f) {
      double qmax = 0;
      for (int64_t j = 0; j < 8; ++j) qmax = std::max(qmax, std::fabs(r.y.item({row, j})));
      EXPECT_EQ(qmax, 127.0);
    }
  }
}

TEST(SwigluClipQuant, GroupsUseTheirOwnAlphaAndRowsPastThemAreZero) {
  Rng rng(4);
  Tensor x = rng.uniform_tensor(DType::bf16, {7, 10}, -8.0f, 8.0f);
  Tensor counts = i64({2, 0, 3});
  Tensor alpha = f32({0.1f, 5.0f, 0.6f});
  SwigluClipQuantResult r = swiglu_clip_quant(x, counts, alpha);
  SwigluClipQuantResult ex = clip_oracle(x, counts, alpha, false);
  EXPECT_TENSOR_EQ(ex.y, r.y);
  EXPECT_TENSOR_EQ(ex.scale, r.scale);
  for (int64_t row : {5, 6}) {
    EXPECT_EQ(r.scale.item({row}), 0.0);
    for (int64_t j = 0; j < 5; ++j) EXPECT_EQ(r.y.item({row, j}), 0);
  }
  // Rows 2..4 use alpha 0.6 (group 2), not 5.0 (the empty group 1): the same as a lone group with alpha 0.6.
  SwigluClipQuantResult alone = swiglu_clip_quant(x.narrow(0, 2, 3), i64({3}), f32({0.6f}));
  for (int64_t i = 0; i < 3; ++i) EXPECT_EQ(alone.scale.item({i}), r.scale.item({i + 2}));
  // An all-zero row: scale 0, y 0.
  Tensor z = Tensor::zeros(DType::bf16, {2, 6});
  SwigluClipQuantResult zr = swiglu_clip_quant(z, i64({2}), f32({0.5f}));
  EXPECT_TENSOR_EQ(Tensor::zeros(DType::i8, {2, 3}), zr.y);
  EXPECT_TENSOR_EQ(Tensor::zeros(DType::f32, {2}), zr.scale);
}

TEST(SwigluClipQuant, SweepMatchesOracle) {
  Rng rng(99);
  int cases = 0;
  for (int64_t T : {0, 1, 7, 33})
    for (int64_t H : {1, 3, 64, 65})
      for (DType dt : {DType::bf16, DType::f32, DType::f16})
        for (bool left : {false, true}) {
          Tensor x = rng.uniform_tensor(dt, {T, 2 * H}, -20.0f, 20.0f);
          const int64_t G = rng.integer(1, 4);
          Tensor counts = Tensor::empty(DType::i64, {G});
          Tensor alpha = Tensor::empty(DType::f32, {G});
          int64_t left_rows = T;
          for (int64_t g = 0; g < G; ++g) {
            int64_t n = rng.integer(0, left_rows);
            counts.set_item({g}, double(n));
            left_rows -= n;
            const int64_t kind = rng.integer(0, 3);
            alpha.set_item({g}, kind == 0 ? 0.0 : kind == 1 ? 1.0 : double(rng.uniform(0.05f, 1.5f)));
          }
          SwigluClipQuantOptions o;
          o.activate_left = left;
          SwigluClipQuantResult r = swiglu_clip_quant(x, counts, alpha, o);
          SwigluClipQuantResult ex = clip_oracle(x, counts, alpha, left);
          const std::string what = "T " + std::to_string(T) + " H " + std::to_string(H) + " " +
                                   std::string(dtype_name(dt)) + (left ? " left" : " right");
          EXPECT_TENSOR_EQ(ex.y, r.y) << what;
          EXPECT_TENSOR_EQ(ex.scale, r.scale) << what;
          ++cases;
        }
  EXPECT_EQ(cases, 96);
}

TEST(SwigluClipQuant, StridedInputsAndI32Counts) {
  Rng rng(6);
  Tensor base = rng.uniform_tensor(DType::bf16, {8, 5}, -5.0f, 5.0f);
  Tensor x = base.transpose(0, 1);  // [5, 8], non-contiguous
  Tensor alpha_base = f32({0.3f, 9.0f, 0.8f, 9.0f});
  Tensor strided_alpha = Tensor::view(alpha_base.data(), DType::f32, {2}, {2});  // [0.3, 0.8] with stride 2
  Tensor counts32 = Tensor::from_values<int32_t>({2}, {2, 2});
  SwigluClipQuantResult r = swiglu_clip_quant(x, counts32, strided_alpha);
  SwigluClipQuantResult c = swiglu_clip_quant(x.contiguous(), i64({2, 2}), f32({0.3f, 0.8f}));
  EXPECT_TENSOR_EQ(c.y, r.y);
  EXPECT_TENSOR_EQ(c.scale, r.scale);
}

TEST(SwigluClipQuant, OutVariantWritesEveryElementOfTheCallersBuffers) {
  Rng rng(7);
  Tensor x = rng.uniform_tensor(DType::bf16, {4, 6}, -3.0f, 3.0f);
  SwigluClipQuantResult out{Tensor::full(DType::i8, {4, 3}, 55.0), Tensor::full(DType::f32, {4}, 55.0)};
  swiglu_clip_quant_out(x, i64({3}), f32({0.7f}), {}, out);
  SwigluClipQuantResult expected = swiglu_clip_quant(x, i64({3}), f32({0.7f}));
  EXPECT_TENSOR_EQ(expected.y, out.y);
  EXPECT_TENSOR_EQ(expected.scale, out.scale);
  EXPECT_EQ(out.scale.item({3}), 0.0);
  EXPECT_EQ(out.y.item({3, 2}), 0);
}

TEST(SwigluClipQuant, Errors) {
  const char* op = "swiglu_clip_quant";
  Tensor x = Tensor::zeros(DType::bf16, {4, 8});
  Tensor gi = i64({2, 1});
  Tensor ga = f32({0.5f, 0.5f});
  EXPECT_THROWS_MSG(swiglu_clip_quant(Tensor{}, gi, ga), ValueError, op, "x", "a tensor", "none");
  EXPECT_THROWS_MSG(swiglu_clip_quant(Tensor::zeros(DType::i32, {4, 8}), gi, ga), TypeError, op, "x",
                    "bf16, f32 or f16", "i32");
  EXPECT_THROWS_MSG(swiglu_clip_quant(Tensor::zeros(DType::bf16, {8}), gi, ga), ValueError, op, "x", "2-D", "bf16[8]");
  EXPECT_THROWS_MSG(swiglu_clip_quant(Tensor::zeros(DType::bf16, {4, 5}), gi, ga), ValueError, op, "x",
                    "even last extent", "bf16[4, 5]");
  SwigluClipQuantOptions o;
  o.quant_mode = 0;
  EXPECT_THROWS_MSG(swiglu_clip_quant(x, gi, ga, o), ValueError, op, "quant_mode", "1 (dynamic", "got 0");
  o = {};
  o.clamp_mode = 0;
  EXPECT_THROWS_MSG(swiglu_clip_quant(x, gi, ga, o), ValueError, op, "clamp_mode", "1 (clamp with group_alpha",
                    "got 0");
  EXPECT_THROWS_MSG(swiglu_clip_quant(x, Tensor{}, ga), ValueError, op, "group_index", "a tensor", "none");
  EXPECT_THROWS_MSG(swiglu_clip_quant(x, Tensor::zeros(DType::f32, {2}), ga), TypeError, op, "group_index",
                    "i64 or i32", "f32");
  EXPECT_THROWS_MSG(swiglu_clip_quant(x, Tensor::zeros(DType::i64, {2, 2}), ga), ValueError, op, "group_index",
                    "a 1-D tensor [G]", "i64[2, 2]");
  EXPECT_THROWS_MSG(swiglu_clip_quant(x, i64({2, -1}), ga), ValueError, op, "group_index[1]", "a row count >= 0",
                    "got -1");
  EXPECT_THROWS_MSG(swiglu_clip_quant(x, i64({3, 2}), ga), ValueError, op, "group_index",
                    "groups covering at most 4 rows", "5 rows");
  EXPECT_THROWS_MSG(swiglu_clip_quant(x, gi, Tensor::zeros(DType::bf16, {2})), TypeError, op, "group_alpha",
                    "dtype f32", "bf16");
  EXPECT_THROWS_MSG(swiglu_clip_quant(x, gi, Tensor{}), ValueError, op, "group_alpha", "a tensor", "none");
  EXPECT_THROWS_MSG(swiglu_clip_quant(x, gi, f32({0.5f, 0.5f, 0.5f})), ValueError, op, "group_alpha", "shape [2]",
                    "shape [3]");
  EXPECT_THROWS_MSG(swiglu_clip_quant(x, gi, f32({0.5f, -0.5f})), ValueError, op, "group_alpha[1]",
                    "a finite value >= 0", "got -0.5");
  EXPECT_THROWS_MSG(swiglu_clip_quant(x, gi, f32({NAN, 0.5f})), ValueError, op, "group_alpha[0]", "got nan");
  EXPECT_THROWS_MSG(swiglu_clip_quant(x, gi, f32({0.5f, INFINITY})), ValueError, op, "group_alpha[1]", "got inf");

  SwigluClipQuantResult good{Tensor::full(DType::i8, {4, 4}, 7.0), Tensor::full(DType::f32, {4}, 7.0)};
  EXPECT_THROWS_MSG(swiglu_clip_quant_out(x, gi, ga, {}, {Tensor::zeros(DType::i8, {4, 8}), good.scale}), ValueError,
                    op, "y", "shape [4, 4]", "shape [4, 8]");
  EXPECT_THROWS_MSG(swiglu_clip_quant_out(x, gi, ga, {}, {good.y, Tensor::zeros(DType::f16, {4})}), TypeError, op,
                    "scale", "f32", "f16");
  EXPECT_THROWS_MSG(swiglu_clip_quant_out(x, gi, f32({1.0f, -1.0f}), {}, good), ValueError, op, "group_alpha[1]");
  const float ro[4] = {};
  EXPECT_THROWS_MSG(swiglu_clip_quant_out(x, gi, ga, {}, {good.y, Tensor::view(ro, DType::f32, {4})}), ValueError, op,
                    "scale", "writable");
  EXPECT_EQ(good.y.item({3, 3}), 7.0);  // untouched by every failed call
  EXPECT_EQ(good.scale.item({3}), 7.0);
}

}  // namespace
}  // namespace moefuse
