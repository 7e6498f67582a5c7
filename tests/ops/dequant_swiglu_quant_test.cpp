// npu_dequant_swiglu_quant against values computed by hand and an independent reference written from the torch_npu
// semantics and docs/operators.md, Numerics (dynamic int8 quantisation; zeros past the groups).
// Over 500 lines: one suite per operator keeps its oracle next to every case of its contract.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "moefuse/error.h"
#include "moefuse/ops.h"
#include "moefuse/threads.h"
#include "util/compare.h"
#include "util/errors.h"
#include "util/random.h"

namespace moefuse {
namespace {

using testing::Rng;
using Options = DequantSwigluQuantOptions;

// ---- independent oracle (the torch_npu semantics, docs/operators.md, Numerics: dynamic int8 quantisation) ----

// Per-group tensor element: a 1-D tensor is shared by all rows ([N]); a 2-D one is [E, N].
float at(const Tensor& t, int64_t e, int64_t c) { return float(t.dim() == 1 ? t.item({c}) : t.item({e, c})); }

// True when a quant_scale/quant_offset holds one value per scale row.
bool one_per_row(const Tensor& t, bool grouped) {
  if (t.dim() == 1) return grouped || t.size(0) == 1;
  return t.size(1) == 1;
}
float per_row_value(const Tensor& t, int64_t e) { return float(t.dim() == 1 ? t.item({e}) : t.item({e, 0})); }

struct Expected {
  Tensor y, scale;
};

Expected oracle(const Tensor& x, const Options& o) {
  const int64_t T = x.size(0), H = x.size(1) / 2;
  Expected ex{Tensor::zeros(DType::i8, {T, H}), Tensor::zeros(DType::f32, {T})};
  // Scale row of every token row, -1 = not covered by any group.
  std::vector<int64_t> row_of(size_t(T), -1);
  const bool grouped = o.group_index.defined();
  if (!grouped) {
    std::fill(row_of.begin(), row_of.end(), 0);
  } else if (o.group_index.dim() == 1) {
    int64_t r = 0;
    for (int64_t g = 0; g < o.group_index.size(0); ++g)
      for (int64_t n = int64_t(o.group_index.item({g})); n > 0; --n) row_of[size_t(r++)] = g;
  } else {
    int64_t r = 0;
    for (int64_t g = 0; g < o.group_index.size(0); ++g) {
      const int64_t id = int64_t(o.group_index.item({g, 0})), n = int64_t(o.group_index.item({g, 1}));
      if (n <= 0) break;
      for (int64_t k = 0; k < n; ++k) row_of[size_t(r++)] = id;
    }
  }
  const float L = float(o.clamp_limit), alpha = float(o.glu_alpha), gbias = float(o.glu_bias);
  for (int64_t r = 0; r < T; ++r) {
    const int64_t e = row_of[size_t(r)];
    if (e < 0) continue;
    // Dequant.
    std::vector<float> v(size_t(2 * H));
    for (int64_t c = 0; c < 2 * H; ++c) {
      if (x.dtype() != DType::i32) {
        v[size_t(c)] = float(x.item({r, c}));
        continue;
      }
      int64_t acc = int64_t(x.item({r, c}));
      if (o.bias.defined() && o.bias.dtype() == DType::i32) {
        acc += int64_t(o.bias.dim() == 1 ? o.bias.item({c}) : o.bias.item({e, c}));
        acc = int64_t(int32_t(uint32_t(uint64_t(acc))));  // int32 wrap-around
      }
      float f = float(int32_t(acc));
      f *= at(o.weight_scale, e, c);
      if (o.activation_scale.defined())
        f *= float(o.activation_scale.dim() == 1 ? o.activation_scale.item({r}) : o.activation_scale.item({r, 0}));
      if (o.bias.defined() && o.bias.dtype() != DType::i32) f += at(o.bias, e, c);
      v[size_t(c)] = f;
    }
    // SwiGLU variant.
    std::vector<float> out(static_cast<size_t>(H));
    for (int64_t j = 0; j < H; ++j) {
      float A, B;
      if (o.swiglu_mode == 1) {
        A = v[size_t(2 * j)];
        B = v[size_t(2 * j + 1)];
      } else {
        A = v[size_t(o.activate_left ? j : H + j)];
        B = v[size_t(o.activate_left ? H + j : j)];
      }
      if (o.swiglu_mode == 0) {
        out[size_t(j)] = A / (1.0f + std::exp(-A)) * B;
      } else if (o.swiglu_mode == 3) {
        float gate = std::min(A / (1.0f + std::exp(-A)), L);
        out[size_t(j)] = gate * std::max(std::min(B, L), -L);
      } else {
        float a = std::min(A, L);
        float lin = std::max(std::min(B, L), -L) + gbias;
        out[size_t(j)] = a / (1.0f + std::exp(-alpha * a)) * lin;
      }
    }
    // Quantise.
    if (o.quant_mode == 1) {
      if (o.quant_scale.defined())
        for (int64_t j = 0; j < H; ++j)
          out[size_t(j)] *=
              one_per_row(o.quant_scale, grouped) ? per_row_value(o.quant_scale, e) : at(o.quant_scale, e, j);
      float amax = 0.0f;
      for (float w : out) amax = std::max(amax, std::fabs(w));
      const float s = amax / 127.0f;
      ex.scale.set_item({r}, s);
      for (int64_t j = 0; j < H; ++j) {
        float q = s == 0.0f ? 0.0f : std::nearbyint(out[size_t(j)] / s);
        ex.y.set_item({r, j}, std::clamp(q, -127.0f, 127.0f));
      }
    } else {
      const bool scalar = one_per_row(o.quant_scale, grouped);
      for (int64_t j = 0; j < H; ++j) {
        float w = out[size_t(j)];
        if (scalar) {
          w = w * (1.0f / per_row_value(o.quant_scale, e));
          if (o.quant_offset.defined()) w = w + per_row_value(o.quant_offset, e);
        } else {
          w = w / at(o.quant_scale, e, j);
          if (o.quant_offset.defined()) w = w + at(o.quant_offset, e, j);
        }
        float q = std::isnan(w) ? 0.0f : std::clamp(std::nearbyint(w), -128.0f, 127.0f);
        ex.y.set_item({r, j}, q);
      }
    }
  }
  return ex;
}

void expect_matches_oracle(const Tensor& x, const Options& o, const std::string& what) {
  Expected ex = oracle(x, o);
  DequantSwigluQuantResult got = dequant_swiglu_quant(x, o);
  EXPECT_TENSOR_EQ(ex.y, got.y) << what;
  EXPECT_TENSOR_EQ(ex.scale, got.scale) << what;
}

Tensor f32(const Shape& s, std::initializer_list<float> v) { return Tensor::from_values<float>(s, v); }
Tensor i32(const Shape& s, std::initializer_list<int32_t> v) { return Tensor::from_values<int32_t>(s, v); }
Tensor i64(const Shape& s, std::initializer_list<int64_t> v) { return Tensor::from_values<int64_t>(s, v); }

// ---- hand-computed cases ----

TEST(DequantSwigluQuant, HandComputedDynamicInt32ActivateLeftAndRight) {
  // x = [2, -4, 1, 3] * weight_scale [0.5, 0.5, 2, 1] = [1, -2, 2, 3].
  // activate_left: silu([1, -2]) * [2, 3] = [0.7310585786 * 2, -0.2384058440 * 3] = [1.4621171573, -0.7152175320];
  //   scale = 1.4621171573 / 127 = 0.0115127335; y = [127, rint(-62.1243)] = [127, -62].
  Options o;
  o.weight_scale = f32({4}, {0.5f, 0.5f, 2.0f, 1.0f});
  o.quant_mode = 1;
  o.activate_left = true;
  Tensor x = i32({1, 4}, {2, -4, 1, 3});
  DequantSwigluQuantResult r = dequant_swiglu_quant(x, o);
  EXPECT_EQ(r.y.item({0, 0}), 127);
  EXPECT_EQ(r.y.item({0, 1}), -62);
  EXPECT_NEAR(r.scale.item({0}), 0.0115127335, 1e-9);
  // activate_left = false (the default): silu([2, 3]) * [1, -2] = [1.7615941560, -5.7154450001];
  //   scale = 5.7154450001 / 127 = 0.0450035039; y = [rint(39.1432), -127] = [39, -127].
  o.activate_left = false;
  r = dequant_swiglu_quant(x, o);
  EXPECT_EQ(r.y.item({0, 0}), 39);
  EXPECT_EQ(r.y.item({0, 1}), -127);
  EXPECT_NEAR(r.scale.item({0}), 0.0450035039, 1e-9);
  expect_matches_oracle(x, o, "hand dynamic");
}

TEST(DequantSwigluQuant, HandComputedStaticScalarAndPerColumn) {
  // Float x [1, 2, 3, 4], activate_left: silu([1, 2]) * [3, 4] = [2.1931757359, 7.0463766240].
  Tensor x = f32({1, 4}, {1.0f, 2.0f, 3.0f, 4.0f});
  Options o;
  o.activate_left = true;
  // One quant_scale 0.5 and offset 1: o * (1 / 0.5) + 1 = [5.386, 15.093] -> [5, 15]; scale output 0.
  o.quant_scale = f32({1}, {0.5f});
  o.quant_offset = f32({1}, {1.0f});
  DequantSwigluQuantResult r = dequant_swiglu_quant(x, o);
  EXPECT_EQ(r.y.item({0, 0}), 5);
  EXPECT_EQ(r.y.item({0, 1}), 15);
  EXPECT_EQ(r.scale.item({0}), 0.0);
  // Per column [0.5, 2] with offsets [0, -1]: [4.386, 3.523 - 1] -> [4, 3].
  o.quant_scale = f32({1, 2}, {0.5f, 2.0f});
  o.quant_offset = f32({1, 2}, {0.0f, -1.0f});
  r = dequant_swiglu_quant(x, o);
  EXPECT_EQ(r.y.item({0, 0}), 4);
  EXPECT_EQ(r.y.item({0, 1}), 3);
  // Saturation: a tiny scale pushes both past int8: [+big, +big] -> 127; negated x gives silu(-1)*-3 > 0, silu(-2)*-4 >
  // 0.
  o.quant_scale = f32({1}, {1e-3f});
  o.quant_offset = Tensor{};
  r = dequant_swiglu_quant(x, o);
  EXPECT_EQ(r.y.item({0, 0}), 127);
  Tensor neg = f32({1, 4}, {1.0f, 2.0f, -3.0f, -4.0f});
  r = dequant_swiglu_quant(neg, o);
  EXPECT_EQ(r.y.item({0, 1}), -128);  // static quantisation saturates to -128, not -127
}

TEST(DequantSwigluQuant, HandComputedSwigluModes) {
  // L = 7, alpha = 1.702, bias = 1 (the defaults).
  Tensor x = f32({1, 4}, {8.0f, -9.0f, 0.0f, 0.5f});
  Options o;
  o.quant_mode = 1;
  o.activate_left = true;
  // Mode 1, pairs (8, -9) and (0, 0.5): a = 7, lin = -7 + 1 = -6: 7 / (1 + e^-11.914) * -6 = -41.9997231;
  //   a = 0 -> 0. y = [-127, 0], scale = 41.9997231 / 127.
  o.swiglu_mode = 1;
  DequantSwigluQuantResult r = dequant_swiglu_quant(x, o);
  EXPECT_EQ(r.y.item({0, 0}), -127);
  EXPECT_EQ(r.y.item({0, 1}), 0);
  EXPECT_NEAR(r.scale.item({0}), 42.0 / (1.0 + std::exp(-1.702 * 7.0)) / 127.0, 1e-7);
  // Mode 2, halves A = [8, -9], B = [0, 0.5]: 7 / (1 + e^-11.914) * 1 = 6.99995385;
  //   -9 / (1 + e^15.318) * 1.5 = -3.0e-6 -> rint(-3.0e-6 / 0.0551) = 0. y = [127, 0].
  o.swiglu_mode = 2;
  r = dequant_swiglu_quant(x, o);
  EXPECT_EQ(r.y.item({0, 0}), 127);
  EXPECT_EQ(r.y.item({0, 1}), 0);
  EXPECT_NEAR(r.scale.item({0}), 7.0 / (1.0 + std::exp(-1.702 * 7.0)) / 127.0, 1e-8);
  // Mode 3: min(silu(8) = 7.99732, 7) * clamp(0) = 0; silu(-9) * 0.5 = -0.00111055 * 0.5 = -5.5527e-4.
  //   y = [0, -127], scale = 5.5527e-4 / 127.
  o.swiglu_mode = 3;
  r = dequant_swiglu_quant(x, o);
  EXPECT_EQ(r.y.item({0, 0}), 0);
  EXPECT_EQ(r.y.item({0, 1}), -127);
  EXPECT_NEAR(r.scale.item({0}), 9.0 / (1.0 + std::exp(9.0)) * 0.5 / 127.0, 1e-11);
  // Mode 0 for comparison: silu(8) * 0 = 0; silu(-9) * 0.5: the same row but without the clamp on silu(8).
  for (int mode = 0; mode < 4; ++mode) {
    o.swiglu_mode = mode;
    expect_matches_oracle(x, o, "mode " + std::to_string(mode));
  }
}

TEST(DequantSwigluQuant, Int32BiasWrapsBeforeTheConversion) {
  // x = INT32_MAX + i32 bias 1 wraps to INT32_MIN = -2^31; times 2^-31 = -1. Row = [-1, 0 | 1, 1]:
  // silu([-1, 0]) * [1, 1] = [-0.2689414214, 0] -> y = [-127, 0], scale = 0.2689414214 / 127.
  // (A saturating add would give +1 and y[0] = +127.)
  Tensor x = i32({1, 4}, {std::numeric_limits<int32_t>::max(), 0, 1, 1});
  Options o;
  o.weight_scale = f32({4}, {std::ldexp(1.0f, -31), 1.0f, 1.0f, 1.0f});
  o.bias = i32({4}, {1, 0, 0, 0});
  o.quant_mode = 1;
  o.activate_left = true;
  DequantSwigluQuantResult r = dequant_swiglu_quant(x, o);
  EXPECT_EQ(r.y.item({0, 0}), -127);
  EXPECT_EQ(r.y.item({0, 1}), 0);
  EXPECT_NEAR(r.scale.item({0}), 0.2689414214 / 127.0, 1e-9);
  expect_matches_oracle(x, o, "wrap");
}

TEST(DequantSwigluQuant, FloatBiasIsAddedAfterTheScales) {
  // x = [4, 0, 0, 0] * ws 0.5 * activation_scale 0.5 = [1, 0, 0, 0]; f32 bias [-1, 0, 2, 0] -> [0, 0, 2, 0]:
  // activate_left: silu([0, 0]) * [2, 0] = 0 -> an all-zero row: scale 0, y 0.
  // Had the bias been added before the scales: (4 - 1) * 0.25 = 0.75 -> silu(0.75) * 0.5 != 0.
  Tensor x = i32({1, 4}, {4, 0, 0, 0});
  for (DType bias_type : {DType::f32, DType::bf16, DType::f16}) {
    Options o;
    o.weight_scale = f32({1, 4}, {0.5f, 0.5f, 0.5f, 0.5f});
    o.activation_scale = f32({1, 1}, {0.5f});
    o.bias = f32({4}, {-1.0f, 0.0f, 2.0f, 0.0f}).to(bias_type);
    o.quant_mode = 1;
    o.activate_left = true;
    DequantSwigluQuantResult r = dequant_swiglu_quant(x, o);
    EXPECT_EQ(r.scale.item({0}), 0.0);
    EXPECT_EQ(r.y.item({0, 0}), 0);
    EXPECT_EQ(r.y.item({0, 1}), 0);
  }
}

TEST(DequantSwigluQuant, AllZeroRowGivesZeroScaleAndZeroQ) {
  Tensor x = Tensor::zeros(DType::bf16, {3, 8});
  Options o;
  o.quant_mode = 1;
  DequantSwigluQuantResult r = dequant_swiglu_quant(x, o);
  EXPECT_TENSOR_EQ(Tensor::zeros(DType::i8, {3, 4}), r.y);
  EXPECT_TENSOR_EQ(Tensor::zeros(DType::f32, {3}), r.scale);
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(std::signbit(r.scale.item({i})));
}

// ---- groups ----

TEST(DequantSwigluQuant, CountGroupsSelectScaleRowsAndZeroTheRowsPastThem) {
  Rng rng(7);
  const int64_t T = 7, H = 3;
  Tensor x = rng.int_tensor(DType::i32, {T, 2 * H}, -500, 500);
  Options o;
  o.weight_scale = rng.uniform_tensor(DType::f32, {3, 2 * H}, 0.001f, 0.01f);
  o.activation_scale = rng.uniform_tensor(DType::f32, {T}, 0.5f, 2.0f);
  o.bias = rng.int_tensor(DType::i32, {3, 2 * H}, -50, 50);
  o.quant_scale = rng.uniform_tensor(DType::f32, {3, H}, 0.5f, 2.0f);
  o.group_index = i64({3}, {2, 0, 3});  // rows 0-1: row 0 of the scales; rows 2-4: row 2; rows 5-6: zero
  o.quant_mode = 1;
  o.activate_left = true;
  DequantSwigluQuantResult r = dequant_swiglu_quant(x, o);
  expect_matches_oracle(x, o, "counts");
  for (int64_t row : {5, 6}) {
    EXPECT_EQ(r.scale.item({row}), 0.0);
    for (int64_t j = 0; j < H; ++j) EXPECT_EQ(r.y.item({row, j}), 0);
  }
  // Rows 2-4 use scale row 2: the same as computing them alone with that row.
  Options alone = o;
  alone.group_index = Tensor{};
  alone.weight_scale = o.weight_scale.narrow(0, 2, 1);
  alone.bias = o.bias.narrow(0, 2, 1);
  alone.quant_scale = o.quant_scale.narrow(0, 2, 1);
  alone.activation_scale = o.activation_scale.narrow(0, 2, 3);
  DequantSwigluQuantResult a = dequant_swiglu_quant(x.narrow(0, 2, 3), alone);
  for (int64_t i = 0; i < 3; ++i) {
    EXPECT_EQ(a.scale.item({i}), r.scale.item({i + 2}));
    for (int64_t j = 0; j < H; ++j) EXPECT_EQ(a.y.item({i, j}), r.y.item({i + 2, j}));
  }
}

TEST(DequantSwigluQuant, KeyValueGroupsWithGapsAndATerminator) {
  Rng rng(8);
  const int64_t T = 9, H = 2, E = 5;
  Tensor x = rng.int_tensor(DType::i32, {T, 2 * H}, -300, 300);
  Options o;
  o.weight_scale = rng.uniform_tensor(DType::f32, {E, 2 * H}, 0.001f, 0.01f);
  o.quant_scale = rng.uniform_tensor(DType::f32, {E}, 0.5f, 2.0f);  // one smooth factor per expert
  o.quant_mode = 1;
  o.swiglu_mode = 2;
  // (expert 3, 2 rows), (expert 1, 1 row), (expert 4, 3 rows), terminator (0, 0), then a row never read.
  o.group_index = i64({5, 2}, {3, 2, 1, 1, 4, 3, 0, 0, 2, 3});
  DequantSwigluQuantResult r = dequant_swiglu_quant(x, o);
  expect_matches_oracle(x, o, "key-value");
  for (int64_t row = 6; row < T; ++row) {
    EXPECT_EQ(r.scale.item({row}), 0.0) << row;
    for (int64_t j = 0; j < H; ++j) EXPECT_EQ(r.y.item({row, j}), 0);
  }
  // Row 2 uses expert 1's scales: equal to a single-group count list whose only row is expert 1's.
  Options one = o;
  one.group_index = i64({1}, {1});
  one.weight_scale = o.weight_scale.narrow(0, 1, 1);
  one.quant_scale = o.quant_scale.narrow(0, 1, 1);
  DequantSwigluQuantResult a = dequant_swiglu_quant(x.narrow(0, 2, 1), one);
  EXPECT_EQ(a.scale.item({0}), r.scale.item({2}));
  // A negative count terminates as well; i32 group_index is accepted.
  o.group_index = Tensor::from_values<int32_t>({3, 2}, {0, 4, 2, -1, 1, 5});
  r = dequant_swiglu_quant(x, o);
  expect_matches_oracle(x, o, "key-value terminated by a negative count");
  EXPECT_EQ(r.scale.item({4}), 0.0);
}

TEST(DequantSwigluQuant, StaticQuantisationWithGroups) {
  Rng rng(9);
  const int64_t T = 6, H = 4;
  Tensor x = rng.uniform_tensor(DType::bf16, {T, 2 * H}, -4.0f, 4.0f);
  Options o;
  o.group_index = i64({2}, {1, 4});
  o.quant_scale = rng.uniform_tensor(DType::f32, {2, H}, 0.01f, 0.05f);
  o.quant_offset = rng.uniform_tensor(DType::f32, {2, H}, -3.0f, 3.0f);
  expect_matches_oracle(x, o, "static per column, groups");
  o.quant_scale = rng.uniform_tensor(DType::bf16, {2, 1}, 0.01f, 0.05f);
  o.quant_offset = rng.uniform_tensor(DType::bf16, {2, 1}, -3.0f, 3.0f);
  expect_matches_oracle(x, o, "static one per group [G, 1], groups");
  o.quant_scale = rng.uniform_tensor(DType::f16, {2}, 0.01f, 0.05f);
  o.quant_offset = Tensor{};
  DequantSwigluQuantResult r = dequant_swiglu_quant(x, o);
  expect_matches_oracle(x, o, "static one per group [G], no offset");
  for (int64_t j = 0; j < H; ++j) EXPECT_EQ(r.y.item({5, j}), 0);
}

// ---- sweeps ----

TEST(DequantSwigluQuant, SweepMatchesOracle) {
  Rng rng(4321);
  int cases = 0;
  for (int64_t T : {0, 1, 7, 33})
    for (int64_t H : {1, 3, 64, 65})
      for (int mode = 0; mode < 4; ++mode)
        for (int quant = 0; quant < 2; ++quant)
          for (int grouping = 0; grouping < 3; ++grouping) {
            const DType xt = std::vector<DType>{DType::i32, DType::bf16, DType::f16, DType::f32}[rng.integer(0, 3)];
            const bool int_x = xt == DType::i32;
            Tensor x = int_x ? rng.int_tensor(DType::i32, {T, 2 * H}, -2000, 2000)
                             : rng.uniform_tensor(xt, {T, 2 * H}, -6.0f, 6.0f);
            Options o;
            o.quant_mode = quant;
            o.swiglu_mode = mode;
            o.activate_left = mode == 1 || rng.coin();
            o.clamp_limit = rng.uniform(0.5f, 8.0f);
            o.glu_alpha = rng.uniform(0.5f, 2.0f);
            o.glu_bias = rng.uniform(-1.0f, 1.0f);
            int64_t E = 1;
            if (grouping == 1) {  // counts covering at most T rows
              const int64_t G = rng.integer(1, 4);
              Tensor gi = Tensor::empty(DType::i64, {G});
              int64_t left = T;
              for (int64_t g = 0; g < G; ++g) {
                int64_t n = rng.integer(0, left);
                gi.set_item({g}, double(n));
                left -= n;
              }
              o.group_index = gi;
              E = G;
            } else if (grouping == 2) {  // key-value with ids in any order and a terminator
              E = rng.integer(1, 6);
              const int64_t G = rng.integer(1, 4);
              Tensor gi = Tensor::zeros(DType::i64, {G + 1, 2});
              int64_t left = T;
              for (int64_t g = 0; g < G; ++g) {
                gi.set_item({g, 0}, double(rng.integer(0, E - 1)));
                int64_t n = left > 0 ? rng.integer(1, left) : 0;
                gi.set_item({g, 1}, double(n));
                left -= n;
              }
              o.group_index = gi;
            }
            const bool grouped = grouping > 0;
            auto rows_shape = [&](int64_t n) { return grouped ? Shape{E, n} : (rng.coin() ? Shape{n} : Shape{1, n}); };
            if (int_x) {
              o.weight_scale = rng.uniform_tensor(DType::f32, rows_shape(2 * H), -0.01f, 0.01f);
              if (rng.coin())
                o.activation_scale = rng.uniform_tensor(DType::f32, rng.coin() ? Shape{T} : Shape{T, 1}, 0.1f, 2.0f);
              switch (rng.integer(0, 4)) {
                case 0:
                  o.bias = rng.int_tensor(DType::i32, rows_shape(2 * H), -100, 100);
                  break;
                case 1:
                  o.bias = rng.uniform_tensor(DType::f32, rows_shape(2 * H), -1.0f, 1.0f);
                  break;
                case 2:
                  o.bias = rng.uniform_tensor(DType::bf16, rows_shape(2 * H), -1.0f, 1.0f);
                  break;
                case 3:
                  o.bias = rng.uniform_tensor(DType::f16, rows_shape(2 * H), -1.0f, 1.0f);
                  break;
                default:
                  break;
              }
            }
            const bool per_group_scalar = rng.coin();
            const DType qt = std::vector<DType>{DType::f32, DType::bf16, DType::f16}[rng.integer(0, 2)];
            const Shape qs_shape =
                per_group_scalar ? (grouped ? (rng.coin() ? Shape{E} : Shape{E, 1}) : Shape{1}) : rows_shape(H);
            if (quant == 0) {
              o.quant_scale = rng.uniform_tensor(qt, qs_shape, 0.01f, 0.1f);
              if (rng.coin()) o.quant_offset = rng.uniform_tensor(qt, qs_shape, -5.0f, 5.0f);
            } else if (rng.coin()) {
              o.quant_scale = rng.uniform_tensor(qt, qs_shape, 0.5f, 2.0f);
            }
            expect_matches_oracle(x, o,
                                  "T " + std::to_string(T) + " H " + std::to_string(H) + " mode " +
                                      std::to_string(mode) + " quant " + std::to_string(quant) + " grouping " +
                                      std::to_string(grouping) + " x " + std::string(dtype_name(xt)));
            ++cases;
          }
  EXPECT_EQ(cases, 384);
}

// The MoE chain's case (int32 x, dynamic, swiglu_mode 0, no bias, fp32 per-column quant_scale or none) runs on typed
// loops over the thread pool (src/ops/dequant_swiglu_quant_fast.cpp): many row blocks, groups with gaps and rows
// past them, both halves activated, 1 and 3 threads — against the same oracle. Also w4a8's case: fp32 x (already
// dequantised), no weight or activation scale.
TEST(DequantSwigluQuant, ChainCaseOnThreadsMatchesOracle) {
  Rng rng(99);
  for (int threads : {1, 3}) {
    set_num_threads(threads);
    for (int64_t T : {1, 40, 161})
      for (int64_t H : {5, 64, 600})  // 600: the fast path's int32 rows in pieces of 256, the last one not 16 wide
        for (int grouping = 0; grouping < 3; ++grouping)
          for (bool smooth : {false, true}) {
            const bool f32x = (T + H + grouping + int(smooth)) % 2 == 1;  // half the cases: fp32 x
            Tensor x = f32x ? rng.uniform_tensor(DType::f32, {T, 2 * H}, -8.0f, 8.0f)
                            : rng.int_tensor(DType::i32, {T, 2 * H}, -3000, 3000);
            Options o;
            o.quant_mode = 1;
            o.activate_left = rng.coin();
            int64_t E = 1;
            if (grouping == 1) {  // counts leaving the last rows uncovered
              E = 3;
              Tensor gi = Tensor::empty(DType::i64, {E});
              gi.set_item({0}, double(T / 3));
              gi.set_item({1}, 0.0);
              gi.set_item({2}, double(T / 2));
              o.group_index = gi;
            } else if (grouping == 2) {  // key-value, experts out of order
              E = 5;
              Tensor gi = Tensor::zeros(DType::i64, {2, 2});
              gi.set_item({0, 0}, 4.0);
              gi.set_item({0, 1}, double(T - T / 4));
              gi.set_item({1, 0}, 1.0);
              gi.set_item({1, 1}, double(T / 4));
              o.group_index = gi;
            }
            const Shape rows = grouping > 0 ? Shape{E, 2 * H} : Shape{2 * H};
            if (!f32x) {
              o.weight_scale = rng.uniform_tensor(DType::f32, rows, -0.01f, 0.01f);
              o.activation_scale = rng.uniform_tensor(DType::f32, {T}, 0.1f, 2.0f);
            }
            if (smooth)
              o.quant_scale = rng.uniform_tensor(DType::f32, grouping > 0 ? Shape{E, H} : Shape{1, H}, 0.5f, 2.0f);
            expect_matches_oracle(x, o, "threads " + std::to_string(threads) + " T " + std::to_string(T) + " H " +
                                            std::to_string(H) + " grouping " + std::to_string(grouping));
          }
  }
  set_num_threads(0);
}

TEST(DequantSwigluQuant, ExtremeInt32Accumulators) {
  // Accumulators at the int32 limits (converted to fp32 with rounding), with and without an i32 bias that wraps.
  const int32_t mx = std::numeric_limits<int32_t>::max(), mn = std::numeric_limits<int32_t>::min();
  Tensor x = i32({3, 4}, {mx, mn, mx, mn, mn, mx, 16777217, -16777217, 0, mx, mn, 1});
  for (int mode = 0; mode < 4; ++mode)
    for (int quant = 0; quant < 2; ++quant) {
      Options o;
      o.weight_scale = f32({4}, {1e-9f, 2e-9f, -1e-9f, 3e-9f});
      o.bias = i32({1, 4}, {1, -1, mx, mn});
      o.swiglu_mode = mode;
      o.activate_left = true;
      o.quant_mode = quant;
      if (quant == 0) o.quant_scale = f32({2}, {0.01f, 0.02f});
      expect_matches_oracle(x, o, "extreme mode " + std::to_string(mode));
      o.bias = Tensor{};
      expect_matches_oracle(x, o, "extreme without bias");
    }
}

TEST(DequantSwigluQuant, StridedInputsGiveTheSameResultAsContiguous) {
  Rng rng(12);
  const int64_t T = 5, H = 3;
  Tensor xt = rng.int_tensor(DType::i32, {2 * H, T}, -1000, 1000);
  Tensor x = xt.transpose(0, 1);  // [T, 2H], non-contiguous
  Options o;
  o.weight_scale = rng.uniform_tensor(DType::f32, {2 * H, 2}, 0.001f, 0.01f).transpose(0, 1);  // [2, 2H] strided
  o.activation_scale = rng.uniform_tensor(DType::f32, {T, 2}, 0.5f, 1.5f).narrow(1, 1, 1);     // [T, 1] strided
  o.quant_scale = rng.uniform_tensor(DType::f32, {H, 2}, 0.5f, 1.5f).transpose(0, 1);          // [2, H] strided
  o.group_index = i64({2}, {2, 3});
  o.quant_mode = 1;
  DequantSwigluQuantResult strided = dequant_swiglu_quant(x, o);
  Options c = o;
  c.weight_scale = o.weight_scale.contiguous();
  c.activation_scale = o.activation_scale.contiguous();
  c.quant_scale = o.quant_scale.contiguous();
  DequantSwigluQuantResult contiguous = dequant_swiglu_quant(x.contiguous(), c);
  EXPECT_TENSOR_EQ(contiguous.y, strided.y);
  EXPECT_TENSOR_EQ(contiguous.scale, strided.scale);
  expect_matches_oracle(x, o, "strided");
}

TEST(DequantSwigluQuant, AcceptedDefaultsOfTheV2Attributes) {
  Rng rng(13);
  Tensor x = rng.uniform_tensor(DType::bf16, {4, 6}, -3.0f, 3.0f);
  Options o;
  o.quant_mode = 1;
  DequantSwigluQuantResult base = dequant_swiglu_quant(x, o);
  o.dst_type = 1;
  o.round_mode = 0;
  o.activate_dim = -1;
  DequantSwigluQuantResult same = dequant_swiglu_quant(x, o);
  EXPECT_TENSOR_EQ(base.y, same.y);
  o.activate_dim = 1;
  EXPECT_TENSOR_EQ(base.scale, dequant_swiglu_quant(x, o).scale);
}

TEST(DequantSwigluQuant, OutVariantWritesEveryElementOfTheCallersBuffers) {
  Rng rng(14);
  Tensor x = rng.uniform_tensor(DType::f16, {5, 8}, -3.0f, 3.0f);
  Options o;
  o.quant_mode = 1;
  o.group_index = i64({1}, {3});
  DequantSwigluQuantResult out{Tensor::full(DType::i8, {5, 4}, 55.0), Tensor::full(DType::f32, {5}, 55.0)};
  dequant_swiglu_quant_out(x, o, out);
  DequantSwigluQuantResult expected = dequant_swiglu_quant(x, o);
  EXPECT_TENSOR_EQ(expected.y, out.y);
  EXPECT_TENSOR_EQ(expected.scale, out.scale);
  EXPECT_EQ(out.scale.item({4}), 0.0);
  EXPECT_EQ(out.y.item({4, 3}), 0);
  // Static: the scale output is all zeros.
  o.quant_mode = 0;
  o.quant_scale = f32({1}, {0.1f});
  DequantSwigluQuantResult st{Tensor::full(DType::i8, {5, 4}, 55.0), Tensor::full(DType::f32, {5}, 55.0)};
  dequant_swiglu_quant_out(x, o, st);
  EXPECT_TENSOR_EQ(Tensor::zeros(DType::f32, {5}), st.scale);
}

// ---- errors ----

TEST(DequantSwigluQuant, Errors) {
  const char* op = "dequant_swiglu_quant";
  Tensor xf = Tensor::zeros(DType::bf16, {4, 8});
  Tensor xi = Tensor::zeros(DType::i32, {4, 8});
  Options dyn;
  dyn.quant_mode = 1;
  auto with = [&](auto change) {
    Options o = dyn;
    change(o);
    return o;
  };
  auto ws = [](int64_t e, int64_t n) { return Tensor::zeros(DType::f32, {e, n}); };

  // x
  EXPECT_THROWS_MSG(dequant_swiglu_quant(Tensor{}, dyn), ValueError, op, "x", "a tensor", "none");
  EXPECT_THROWS_MSG(dequant_swiglu_quant(Tensor::zeros(DType::i8, {4, 8}), dyn), TypeError, op, "x",
                    "i32, f32, bf16 or f16", "i8");
  EXPECT_THROWS_MSG(dequant_swiglu_quant(Tensor::zeros(DType::f32, {2, 4, 8}), dyn), ValueError, op, "x", "2-D",
                    "f32[2, 4, 8]");
  EXPECT_THROWS_MSG(dequant_swiglu_quant(Tensor::zeros(DType::f32, {4, 7}), dyn), ValueError, op, "x",
                    "even last extent", "f32[4, 7]");
  // attributes
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xf, with([](Options& o) { o.quant_mode = 2; })), ValueError, op, "quant_mode",
                    "0 (static) or 1 (dynamic)", "got 2");
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xf, with([](Options& o) { o.swiglu_mode = 4; })), ValueError, op,
                    "swiglu_mode", "0, 1, 2 or 3", "got 4");
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xf, with([](Options& o) { o.swiglu_mode = -1; })), ValueError, op,
                    "swiglu_mode", "got -1");
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xf, with([](Options& o) { o.dst_type = 2; })), ValueError, op, "dst_type",
                    "none or 1 (torch.int8", "got 2");
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xf, with([](Options& o) { o.round_mode = 4; })), ValueError, op, "round_mode",
                    "none or 0 (\"rint\"", "got 4");
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xf, with([](Options& o) { o.activate_dim = 0; })), ValueError, op,
                    "activate_dim", "none, -1 or 1", "got 0");
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xf, with([](Options& o) { o.swiglu_mode = 1; })), ValueError, op,
                    "activate_left", "true with swiglu_mode 1", "got false");
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xf, with([](Options& o) { o.clamp_limit = 0.0; })), ValueError, op,
                    "clamp_limit", "a finite fp32 value > 0", "got 0");
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xf, with([](Options& o) { o.clamp_limit = INFINITY; })), ValueError, op,
                    "clamp_limit", "got inf");
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xf, with([](Options& o) { o.glu_alpha = NAN; })), ValueError, op, "glu_alpha",
                    "a finite fp32 value", "got nan");
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xf, with([](Options& o) { o.glu_bias = -1e40; })), ValueError, op, "glu_bias",
                    "a finite fp32 value", "got -1e+40");
  // weight_scale / activation_scale / bias
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xi, dyn), ValueError, op, "weight_scale", "required when x is i32", "none");
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xf, with([&](Options& o) { o.weight_scale = ws(1, 8); })), ValueError, op,
                    "weight_scale", "none when x is bf16", "f32[1, 8]");
  EXPECT_THROWS_MSG(
      dequant_swiglu_quant(xf, with([](Options& o) { o.activation_scale = Tensor::zeros(DType::f32, {4}); })),
      ValueError, op, "activation_scale", "none when x is bf16");
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xf, with([](Options& o) { o.bias = Tensor::zeros(DType::i32, {8}); })),
                    ValueError, op, "bias", "none when x is bf16");
  EXPECT_THROWS_MSG(
      dequant_swiglu_quant(xi, with([](Options& o) { o.weight_scale = Tensor::zeros(DType::bf16, {8}); })), TypeError,
      op, "weight_scale", "dtype f32", "bf16");
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xi, with([&](Options& o) { o.weight_scale = ws(2, 8); })), ValueError, op,
                    "weight_scale", "shape [2H] = [8] or [1, 2H] = [1, 8]", "shape [2, 8]");
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xi, with([&](Options& o) {
                                           o.weight_scale = ws(2, 8);
                                           o.group_index = Tensor::from_values<int64_t>({3}, {1, 1, 1});
                                         })),
                    ValueError, op, "weight_scale", "shape [E, 2H] = [3, 8]", "shape [2, 8]");
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xi, with([&](Options& o) {
                                           o.weight_scale = ws(1, 8);
                                           o.activation_scale = Tensor::zeros(DType::f32, {4, 2});
                                         })),
                    ValueError, op, "activation_scale", "shape [T] = [4] or [T, 1] = [4, 1]", "shape [4, 2]");
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xi, with([&](Options& o) {
                                           o.weight_scale = ws(1, 8);
                                           o.activation_scale = Tensor::zeros(DType::f16, {4});
                                         })),
                    TypeError, op, "activation_scale", "dtype f32", "f16");
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xi, with([&](Options& o) {
                                           o.weight_scale = ws(1, 8);
                                           o.bias = Tensor::zeros(DType::i64, {8});
                                         })),
                    TypeError, op, "bias", "i32, f32, bf16 or f16", "i64");
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xi, with([&](Options& o) {
                                           o.weight_scale = ws(1, 8);
                                           o.bias = Tensor::zeros(DType::f32, {4});
                                         })),
                    ValueError, op, "bias", "shape [2H] = [8]", "shape [4]");
  // quant_scale / quant_offset
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xf), ValueError, op, "quant_scale", "required with quant_mode 0", "none");
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xf, with([](Options& o) { o.quant_scale = Tensor::zeros(DType::i32, {4}); })),
                    TypeError, op, "quant_scale", "f32, bf16 or f16", "i32");
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xf, with([](Options& o) { o.quant_scale = Tensor::zeros(DType::f32, {3}); })),
                    ValueError, op, "quant_scale", "shape [H] = [4], [1, H] = [1, 4], [1] or [1, 1]", "shape [3]");
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xf, with([](Options& o) {
                                           o.quant_scale = Tensor::zeros(DType::f32, {2, 4});
                                           o.group_index = Tensor::from_values<int64_t>({3}, {1, 1, 1});
                                         })),
                    ValueError, op, "quant_scale", "shape [E, H] = [3, 4], [E] = [3] or [E, 1] = [3, 1]",
                    "shape [2, 4]");
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xf, with([](Options& o) {
                                           o.quant_scale = Tensor::zeros(DType::f32, {4});
                                           o.quant_offset = Tensor::zeros(DType::f32, {4});
                                         })),
                    ValueError, op, "quant_offset", "none with quant_mode 1", "f32[4]");
  Options st;
  st.quant_scale = Tensor::full(DType::f32, {4}, 1.0);
  st.quant_offset = Tensor::zeros(DType::f32, {1});
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xf, st), ValueError, op, "quant_offset", "shape [4]", "shape [1]");
  st.quant_offset = Tensor::zeros(DType::i32, {4});
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xf, st), TypeError, op, "quant_offset", "f32, bf16 or f16", "i32");
  // group_index
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xf, with([](Options& o) { o.group_index = Tensor::zeros(DType::f32, {2}); })),
                    TypeError, op, "group_index", "i64 or i32", "f32");
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xf, with([](Options& o) {
                                           o.group_index = Tensor::zeros(DType::i64, {2, 3});
                                         })),
                    ValueError, op, "group_index", "a [G] count tensor or a [G, 2] key-value tensor", "i64[2, 3]");
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xf, with([](Options& o) {
                                           o.group_index = Tensor::from_values<int64_t>({2}, {3, 2});
                                         })),
                    ValueError, op, "group_index", "groups covering at most 4 rows", "5 rows");
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xf, with([](Options& o) {
                                           o.group_index = Tensor::from_values<int64_t>({2}, {1, -2});
                                         })),
                    ValueError, op, "group_index[1]", "a row count >= 0", "got -2");
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xi, with([&](Options& o) {
                                           o.weight_scale = ws(3, 8);
                                           o.group_index = Tensor::from_values<int64_t>({2, 2}, {1, 2, 3, 1});
                                         })),
                    ValueError, op, "group_index[1]", "an expert id in [0, 3)", "got 3");
  EXPECT_THROWS_MSG(dequant_swiglu_quant(xi, with([&](Options& o) {
                                           o.weight_scale = ws(3, 8);
                                           o.quant_scale = Tensor::zeros(DType::f32, {2, 4});
                                           o.group_index = Tensor::from_values<int64_t>({1, 2}, {0, 1});
                                         })),
                    ValueError, op, "quant_scale", "[E, H] = [3, 4]", "shape [2, 4]");
  // outputs
  Tensor x = Tensor::zeros(DType::f32, {2, 4});
  DequantSwigluQuantResult good{Tensor::full(DType::i8, {2, 2}, 7.0), Tensor::full(DType::f32, {2}, 7.0)};
  EXPECT_THROWS_MSG(dequant_swiglu_quant_out(x, dyn, {Tensor::zeros(DType::u8, {2, 2}), good.scale}), TypeError, op,
                    "y", "i8", "u8");
  EXPECT_THROWS_MSG(dequant_swiglu_quant_out(x, dyn, {good.y, Tensor::zeros(DType::f32, {2, 1})}), ValueError, op,
                    "scale", "shape [2]", "shape [2, 1]");
  EXPECT_THROWS_MSG(dequant_swiglu_quant_out(x, dyn, {Tensor{}, good.scale}), ValueError, op, "y", "a tensor");
  EXPECT_THROWS_MSG(dequant_swiglu_quant_out(x, with([](Options& o) { o.swiglu_mode = 9; }), good), ValueError, op,
                    "swiglu_mode");
  const int8_t ro[4] = {};
  EXPECT_THROWS_MSG(dequant_swiglu_quant_out(x, dyn, {Tensor::view(ro, DType::i8, {2, 2}), good.scale}), ValueError, op,
                    "y", "writable");
  EXPECT_EQ(good.y.item({1, 1}), 7.0);  // untouched by every failed call
  EXPECT_EQ(good.scale.item({1}), 7.0);
}

}  // namespace
}  // namespace moefuse
