// npu_grouped_matmul (MoE form) against hand-computed values and an independent oracle written from the torch_npu
// semantics and the arithmetic contract in include/moefuse/ops/grouped_matmul.h. Errors are in
// grouped_matmul_errors_test.cpp.
// Over 500 lines: one suite per operator keeps its oracle next to every case of its contract.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "moefuse/error.h"
#include "moefuse/ops.h"
#include "oracle/bf16_step.h"
#include "util/compare.h"
#include "util/errors.h"
#include "util/grouped_matmul_cases.h"
#include "util/random.h"

namespace moefuse {
namespace {

using testing::Rng;

// ---------------------------------------------------------------------------------------------------------------
// The oracle. It decodes group_list itself, reads every tensor through item(), and follows the
// contract: float sums in fp32 from +0.0f, with std::fma over k in order (f32, f16 weights) or in pairs of k, the
// odd one first, each step an fma with DAZ/FTZ (bf16 weights; the layer oracle's own statement of that step,
// oracle/bf16_step.h, not the library's), integer sums exact (in int64 here), the epilogue in the order written in
// the header, one rounding at the end (set_item rounds RNE from fp32 values).

struct Case {
  Tensor x, weight, bias, scale, per_token_scale, group_list;
  int64_t group_list_type = 0;
  int64_t act_type = 0;
  std::optional<DType> output_dtype;
  bool grouped = true;  // group_type 0 (else None)

  GroupedMatmulOptions options() const {
    GroupedMatmulOptions o;
    o.bias = bias;
    o.scale = scale;
    o.per_token_scale = per_token_scale;
    o.group_list = group_list;
    o.group_list_type = group_list_type;
    o.act_type = act_type;
    o.output_dtype = output_dtype;
    if (grouped) o.group_type = 0;
    return o;
  }
};

// Activations written from their formulas (header of grouped_matmul), one fp32 operation at a time.
float oracle_act(int64_t act, float v) {
  switch (act) {
    case 1: return v < 0.0f ? 0.0f : v;
    case 2: {
      float cube = v * v;
      cube = cube * v;
      float inner = cube * 0.044715f;
      inner = v + inner;
      const float t = inner * 1.5957691216057308f;
      float denom = std::exp(-std::fabs(t));
      denom = denom + 1.0f;
      const float q = v / denom;
      return q * std::exp(t < 0.0f ? t : 0.0f);
    }
    case 4: {
      float e = std::exp(v * -1.702f);
      e = e + 1.0f;
      return v / e;
    }
    case 5: {
      float e = std::exp(-v);
      e = 1.0f + e;
      return v / e;
    }
    default: return v;
  }
}

struct Span {
  int64_t expert, begin, end;
};

std::vector<Span> oracle_groups(const Case& c, int64_t M) {
  std::vector<Span> out;
  if (!c.group_list.defined()) {
    out.push_back({0, 0, M});
    return out;
  }
  int64_t begin = 0;
  for (int64_t i = 0; i < c.group_list.size(0); ++i) {
    int64_t e = i, end;
    if (c.group_list_type == 0) {
      end = int64_t(c.group_list.item({i}));
    } else if (c.group_list_type == 1) {
      end = begin + int64_t(c.group_list.item({i}));
    } else {
      int64_t cnt = int64_t(c.group_list.item({i, 1}));
      if (cnt <= 0) break;
      e = int64_t(c.group_list.item({i, 0}));
      end = begin + cnt;
    }
    out.push_back({e, begin, end});
    begin = end;
  }
  return out;
}

// Element (e, n) of a per-expert tensor ([E, N] or [N]).
double per_expert(const Tensor& t, int64_t e, int64_t n) { return t.dim() == 1 ? t.item({n}) : t.item({e, n}); }

Tensor oracle(const Case& c) {
  const Tensor& x = c.x;
  const Tensor& w = c.weight;
  const int64_t M = x.size(0), K = x.size(1), N = w.size(-1);
  const int64_t E = w.dim() == 3 ? w.size(0) : 1;
  const bool int8 = x.dtype() == DType::i8;
  const DType out_dt = c.output_dtype.value_or(x.dtype());
  Tensor y = Tensor::zeros(out_dt, {M, N});

  std::vector<double> xv(size_t(M * K)), wv(size_t(E * K * N));
  for (int64_t r = 0; r < M; ++r)
    for (int64_t k = 0; k < K; ++k) xv[size_t(r * K + k)] = x.item({r, k});
  for (int64_t e = 0; e < E; ++e)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t n = 0; n < N; ++n)
        wv[size_t((e * K + k) * N + n)] = w.dim() == 3 ? w.item({e, k, n}) : w.item({k, n});

  for (const Span& s : oracle_groups(c, M)) {
    for (int64_t r = s.begin; r < s.end; ++r) {
      for (int64_t n = 0; n < N; ++n) {
        double out;
        if (!int8) {
          auto xk = [&](int64_t k) { return k < K ? float(xv[size_t(r * K + k)]) : 0.0f; };
          auto wk = [&](int64_t k) { return k < K ? float(wv[size_t((s.expert * K + k) * N + n)]) : 0.0f; };
          float acc = 0.0f;
          if (w.dtype() == DType::bf16) {
            for (int64_t k = 0; k < K; k += 2) {
              acc = oracle::fma_daz_ftz(xk(k + 1), wk(k + 1), acc);
              acc = oracle::fma_daz_ftz(xk(k), wk(k), acc);
            }
          } else {
            for (int64_t k = 0; k < K; ++k) acc = std::fma(xk(k), wk(k), acc);
          }
          if (c.bias.defined()) acc = acc + float(per_expert(c.bias, s.expert, n));
          out = oracle_act(c.act_type, acc);
        } else {
          double sum = 0.0;  // exact: |sum| < 2^31
          for (int64_t k = 0; k < K; ++k)
            sum += xv[size_t(r * K + k)] * wv[size_t((s.expert * K + k) * N + n)];
          int64_t isum = int64_t(sum);
          const bool int_bias = c.bias.defined() && c.bias.dtype() == DType::i32;
          if (int_bias) {
            isum += int64_t(per_expert(c.bias, s.expert, n));
            // int32 wrap-around
            isum = ((isum + (int64_t(1) << 31)) % (int64_t(1) << 32) + (int64_t(1) << 32)) % (int64_t(1) << 32) -
                   (int64_t(1) << 31);
          }
          if (out_dt == DType::i32) {
            out = double(isum);
          } else {
            float v = float(int32_t(isum));
            v = v * float(per_expert(c.scale, s.expert, n));
            if (c.per_token_scale.defined()) v = v * float(c.per_token_scale.item({r}));
            if (c.bias.defined() && !int_bias) v = v + float(per_expert(c.bias, s.expert, n));
            out = oracle_act(c.act_type, v);
          }
        }
        y.set_item({r, n}, out);
      }
    }
  }
  return y;
}

// Runs both forms of the op and compares them bitwise with the oracle.
void expect_matches_oracle(const Case& c, const std::string& what) {
  SCOPED_TRACE(what);
  Tensor expected = oracle(c);
  Tensor y = grouped_matmul(c.x, c.weight, c.options());
  EXPECT_TENSOR_EQ(expected, y);
  Tensor out = Tensor::full(expected.dtype(), expected.shape(), 3.0);  // garbage to be overwritten
  grouped_matmul_out(c.x, c.weight, c.options(), out);
  EXPECT_TENSOR_EQ(expected, out);
}

using Path = testing::GmmPath;
using testing::path_name;

DType x_dtype(Path p) {
  switch (p) {
    case Path::f32: return DType::f32;
    case Path::bf16: return DType::bf16;
    case Path::f16: return DType::f16;
    default: return DType::i8;
  }
}

// A random case of the given path and shape. transposed: weight stored [E, N, K] and viewed as [E, K, N].
Case make_case(Rng& rng, Path p, int64_t M, int64_t K, int64_t N, int64_t E, bool grouped, int64_t act,
               bool transposed) {
  Case c;
  const DType dt = x_dtype(p);
  const bool int8 = dt == DType::i8;
  auto values = [&](const Shape& s) {
    return int8 ? rng.int_tensor(DType::i8, s, -128, 127) : rng.uniform_tensor(dt, s, -1.0f, 1.0f);
  };
  c.x = values({M, K});
  if (grouped || E > 1) {
    c.weight = transposed ? values({E, N, K}).transpose(1, 2) : values({E, K, N});
  } else {
    c.weight = transposed ? values({N, K}).transpose(0, 1) : values({K, N});
  }
  c.grouped = grouped;
  if (grouped) {
    c.group_list_type = rng.integer(0, 2);
    c.group_list = testing::random_group_list(rng, c.group_list_type, M, E, true);
  }
  c.act_type = p == Path::i8_i32 ? 0 : act;
  const bool with_bias = rng.coin(0.6);
  const Shape pe = (E == 1 && rng.coin(0.3)) ? Shape{N} : Shape{E, N};
  switch (p) {
    case Path::f32:
    case Path::bf16:
      if (with_bias) c.bias = rng.uniform_tensor(DType::f32, pe, -2.0f, 2.0f);
      break;
    case Path::f16:
      if (with_bias) c.bias = rng.uniform_tensor(rng.coin() ? DType::f16 : DType::f32, pe, -2.0f, 2.0f);
      break;
    case Path::i8_i32:
      c.output_dtype = DType::i32;
      if (with_bias) c.bias = rng.int_tensor(DType::i32, pe, -100000, 100000);
      break;
    case Path::i8_bf16:
    case Path::i8_f16: {
      c.output_dtype = p == Path::i8_bf16 ? DType::bf16 : DType::f16;
      // Scales that keep |y| well inside fp16's range (|isum| <= K * 2^14).
      const float smax = 1.0f / (float(K) * 256.0f);
      c.scale = rng.uniform_tensor(p == Path::i8_bf16 ? DType::bf16 : DType::f32, pe, smax / 4, smax);
      if (rng.coin(0.7)) c.per_token_scale = rng.uniform_tensor(DType::f32, {M}, 0.5f, 2.0f);
      if (with_bias) {
        const int pick = int(rng.integer(0, 3));
        const DType bias_dt = pick == 1 ? DType::f32 : (pick == 2 ? DType::bf16 : DType::f16);
        if (pick == 0) c.bias = rng.int_tensor(DType::i32, pe, -5000, 5000);
        else c.bias = rng.uniform_tensor(bias_dt, pe, -2.0f, 2.0f);
      }
      break;
    }
  }
  return c;
}

// ---------------------------------------------------------------------------------------------------------------
// Hand-computed cases, one per path.

TEST(GroupedMatmul, HandComputedFloatTwoExperts) {
  // Row 0 -> expert 0, row 1 -> expert 1 (cumsum [1, 2]).
  Tensor x = Tensor::from_values<float>({2, 2}, {1, 2, 3, 4});
  Tensor w = Tensor::from_values<float>({2, 2, 2}, {5, 6, 7, 8, /* expert 1 */ 1, 0, 0, -1});
  GroupedMatmulOptions o;
  o.group_type = 0;
  o.group_list = Tensor::from_values<int64_t>({2}, {1, 2});
  Tensor y = grouped_matmul(x, w, o);
  // [1 2] @ [[5 6] [7 8]] = [19 22];  [3 4] @ [[1 0] [0 -1]] = [3 -4]
  EXPECT_TENSOR_EQ(Tensor::from_values<float>({2, 2}, {19, 22, 3, -4}), y);

  o.bias = Tensor::from_values<float>({2, 2}, {0.5f, -0.5f, 10, 20});
  EXPECT_TENSOR_EQ(Tensor::from_values<float>({2, 2}, {19.5f, 21.5f, 13, 16}), grouped_matmul(x, w, o));
  o.act_type = 1;  // ReLU
  EXPECT_TENSOR_EQ(Tensor::from_values<float>({2, 2}, {19.5f, 21.5f, 13, 16}), grouped_matmul(x, w, o));
  o.bias = Tensor::from_values<float>({2, 2}, {-100, 0, 0, 0});
  EXPECT_TENSOR_EQ(Tensor::from_values<float>({2, 2}, {0, 22, 3, 0}), grouped_matmul(x, w, o));
}

TEST(GroupedMatmul, HandComputedBf16RoundsOnceAtTheEnd) {
  // 1 + 3 * 2^-9 = 1.005859375 in the fp32 sum; bf16 (spacing 2^-7 near 1) rounds it to 1.0078125. A bf16
  // accumulator would have rounded 1 + 2^-9 back to 1 at every step and returned 1.
  Tensor x = Tensor::from_values<float>({1, 4}, {1, 1, 1, 1}).to(DType::bf16);
  Tensor w = Tensor::from_values<float>({1, 4, 1}, {1, 0.001953125f, 0.001953125f, 0.001953125f}).to(DType::bf16);
  Tensor y = grouped_matmul(x, w);
  EXPECT_EQ(y.dtype(), DType::bf16);
  EXPECT_EQ(y.item({0, 0}), 1.0078125);
  GroupedMatmulOptions o;
  o.bias = Tensor::from_values<float>({1, 1}, {-1.0f});  // fp32 bias: 0.005859375 exactly, then one rounding
  EXPECT_EQ(grouped_matmul(x, w, o).item({0, 0}), double(to_f32(to_bf16(0.005859375f))));
}

TEST(GroupedMatmul, HandComputedInt8ToInt32) {
  Tensor x = Tensor::from_values<int8_t>({2, 2}, {1, -2, 127, -128});
  Tensor w = Tensor::from_values<int8_t>({1, 2, 2}, {3, 4, -5, 6});
  GroupedMatmulOptions o;
  o.output_dtype = DType::i32;
  Tensor y = grouped_matmul(x, w, o);
  // [1 -2] -> [3 + 10, 4 - 12] = [13, -8];  [127 -128] -> [381 + 640, 508 - 768] = [1021, -260]
  EXPECT_TENSOR_EQ(Tensor::from_values<int32_t>({2, 2}, {13, -8, 1021, -260}), y);
  o.bias = Tensor::from_values<int32_t>({1, 2}, {-13, 1000});
  EXPECT_TENSOR_EQ(Tensor::from_values<int32_t>({2, 2}, {0, 992, 1008, 740}), grouped_matmul(x, w, o));
}

TEST(GroupedMatmul, HandComputedInt8PerChannelPerToken) {
  Tensor x = Tensor::from_values<int8_t>({2, 2}, {1, -2, 127, -128});
  Tensor w = Tensor::from_values<int8_t>({1, 2, 2}, {3, 4, -5, 6});
  GroupedMatmulOptions o;
  o.output_dtype = DType::bf16;
  o.scale = Tensor::from_values<float>({1, 2}, {0.5f, 0.25f}).to(DType::bf16);
  o.per_token_scale = Tensor::from_values<float>({2}, {2.0f, 0.5f});
  // isum [[13, -8], [1021, -260]] * scale [0.5, 0.25] * pts [2, 0.5] = [[13, -4], [255.25, -32.5]];
  // 255.25 needs 10 significant bits: bf16 rounds it to 255.
  Tensor y = grouped_matmul(x, w, o);
  EXPECT_TENSOR_EQ(Tensor::from_values<float>({2, 2}, {13, -4, 255, -32.5f}).to(DType::bf16), y);

  o.output_dtype = DType::f16;  // f16 keeps 255.25 exactly
  o.scale = Tensor::from_values<float>({1, 2}, {0.5f, 0.25f});
  EXPECT_TENSOR_EQ(Tensor::from_values<float>({2, 2}, {13, -4, 255.25f, -32.5f}).to(DType::f16),
                   grouped_matmul(x, w, o));

  // int32 bias goes into the integer sum; float bias is added after both scales.
  o.bias = Tensor::from_values<int32_t>({1, 2}, {3, 8});  // isum [[16, 0], [1024, -252]]
  EXPECT_TENSOR_EQ(Tensor::from_values<float>({2, 2}, {16, 0, 256, -31.5f}).to(DType::f16), grouped_matmul(x, w, o));
  o.bias = Tensor::from_values<float>({1, 2}, {1.0f, -1.0f});
  EXPECT_TENSOR_EQ(Tensor::from_values<float>({2, 2}, {14, -5, 256.25f, -33.5f}).to(DType::f16),
                   grouped_matmul(x, w, o));

  // Without per_token_scale: isum * scale (+ bias).
  o.per_token_scale = Tensor{};
  o.bias = Tensor{};
  EXPECT_TENSOR_EQ(Tensor::from_values<float>({2, 2}, {6.5f, -2, 510.5f, -65}).to(DType::f16),
                   grouped_matmul(x, w, o));
}

TEST(GroupedMatmul, HandComputedActivations) {
  // y = act(v) with K = 1, w = 1: the activation of x itself. Values from the textbook formulas (double).
  const float v[] = {-3.0f, -1.0f, -0.0f, 0.0f, 0.5f, 1.0f, 3.0f};
  auto gelu = [](double a) {
    return 0.5 * a * (1 + std::tanh(std::sqrt(2 / std::numbers::pi) * (a + 0.044715 * a * a * a)));
  };
  auto fast_gelu = [](double a) {  // torch_npu / MindSpore FastGelu
    return a / (1 + std::exp(-1.702 * std::fabs(a))) * std::exp(0.851 * (a - std::fabs(a)));
  };
  auto silu = [](double a) { return a / (1 + std::exp(-a)); };
  Tensor x = Tensor::from_values<float>({7, 1}, std::span<const float>(v));
  Tensor w = Tensor::from_values<float>({1, 1}, {1.0f});
  for (int64_t act : {1, 2, 4, 5}) {
    GroupedMatmulOptions o;
    o.act_type = act;
    Tensor y = grouped_matmul(x, w, o);
    for (int64_t i = 0; i < 7; ++i) {
      const double a = v[i];
      const double expected = act == 1 ? std::max(a, 0.0) : act == 2 ? gelu(a) : act == 4 ? fast_gelu(a) : silu(a);
      EXPECT_NEAR(y.item({i, 0}), expected, 2e-7 * std::max(1.0, std::fabs(expected))) << "act " << act << " v " << a;
    }
  }
  // Spot values: gelu_tanh(1) = 0.841192, fast_gelu(1) = 1/(1+e^-1.702) = 0.845796, silu(1) = 0.731059.
  GroupedMatmulOptions o;
  Tensor one = Tensor::from_values<float>({1, 1}, {1.0f});
  o.act_type = 2;
  EXPECT_NEAR(grouped_matmul(one, w, o).item({0, 0}), 0.841192, 1e-6);
  o.act_type = 4;
  EXPECT_NEAR(grouped_matmul(one, w, o).item({0, 0}), 0.845796, 1e-6);
  o.act_type = 5;
  EXPECT_NEAR(grouped_matmul(one, w, o).item({0, 0}), 0.731059, 1e-6);
}

TEST(GroupedMatmul, ActivationsOverAWideRangeMatchTheirTextbookForms) {
  // The Ascend-ordered formulas equal the textbook ones up to fp32 rounding, over the whole finite range.
  std::vector<float> v;
  for (float a = -100.0f; a <= 100.0f; a += 0.37f) v.push_back(a);
  for (float a : {1e-30f, -1e-30f, 1e10f, -1e10f, 3e38f, -3e38f}) v.push_back(a);
  const int64_t n = int64_t(v.size());
  Tensor x = Tensor::from_values<float>({n, 1}, std::span<const float>(v));
  Tensor w = Tensor::from_values<float>({1, 1}, {1.0f});
  for (int64_t act : {2, 4, 5}) {
    GroupedMatmulOptions o;
    o.act_type = act;
    Tensor y = grouped_matmul(x, w, o);
    for (int64_t i = 0; i < n; ++i) {
      const double a = v[size_t(i)];
      const double s = act == 2 ? 1.5957691216057308 * (a + 0.044715 * a * a * a) : act == 4 ? 1.702 * a : a;
      const double expected = a / (1 + std::exp(-s));  // x * sigmoid(s), in double
      ASSERT_FALSE(std::isnan(y.item({i, 0}))) << "act " << act << " v " << a;
      // exp() turns the fp32 rounding of its argument s into a relative error of about |s| * 2^-24, hence the
      // |s|-dependent tolerance; results below 1e-35 may have underflowed in fp32.
      const double tol = (4e-7 + 1.5e-7 * std::fabs(s)) * std::fabs(expected) + 1e-35;
      EXPECT_NEAR(y.item({i, 0}), expected, tol) << "act " << act << " v " << a;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Sweeps against the oracle.

class GroupedMatmulSweep : public ::testing::TestWithParam<Path> {};

TEST_P(GroupedMatmulSweep, ShapesExpertsGroupTypesActivations) {
  const Path p = GetParam();
  Rng rng(1000 + int(p));
  const int64_t dims[] = {1, 7, 8, 9, 15, 16, 17, 31, 33, 64, 65, 127, 513};
  const int64_t acts[] = {0, 1, 2, 4, 5};
  const int nd = 13;
  for (int i = 0; i < nd; ++i) {
    // Each extent appears once as M, once as K and once as N.
    const int64_t M = dims[i], K = dims[(i + 5) % nd], N = dims[(i + 9) % nd];
    const int64_t act = acts[i % 5];
    Case single = make_case(rng, p, M, K, N, 1, false, act, i % 2 == 1);
    expect_matches_oracle(single, "single M=" + std::to_string(M) + " K=" + std::to_string(K) +
                                      " N=" + std::to_string(N));
    const int64_t E = i % 3 == 0 ? 1 : rng.integer(2, 6);
    Case grouped = make_case(rng, p, M, K, N, E, true, acts[(i + 2) % 5], i % 2 == 0);
    expect_matches_oracle(grouped, "grouped E=" + std::to_string(E) + " M=" + std::to_string(M) +
                                       " K=" + std::to_string(K) + " N=" + std::to_string(N) + " type " +
                                       std::to_string(grouped.group_list_type));
  }
}

TEST_P(GroupedMatmulSweep, EveryActivationEveryGroupListType) {
  const Path p = GetParam();
  Rng rng(2000 + int(p));
  for (int64_t act : {0, 1, 2, 4, 5}) {
    for (int64_t type : {0, 1, 2}) {
      Case c = make_case(rng, p, 40, 33, 17, 5, true, act, type == 1);
      c.group_list_type = type;
      c.group_list = testing::random_group_list(rng, type, 40, 5, true);
      expect_matches_oracle(c, "act " + std::to_string(act) + " type " + std::to_string(type));
    }
  }
}

TEST_P(GroupedMatmulSweep, TransposedStorageWeightGivesBitwiseTheSameResult) {
  const Path p = GetParam();
  Rng rng(3000 + int(p));
  Case c = make_case(rng, p, 37, 65, 33, 4, true, 2, true);  // weight: [E, N, K] storage viewed as [E, K, N]
  ASSERT_EQ(c.weight.stride(1), 1);
  ASSERT_EQ(c.weight.stride(2), 65);
  Tensor y_t = grouped_matmul(c.x, c.weight, c.options());
  Case contiguous = c;
  contiguous.weight = c.weight.contiguous();
  ASSERT_TRUE(contiguous.weight.is_contiguous());
  EXPECT_TENSOR_EQ(grouped_matmul(contiguous.x, contiguous.weight, contiguous.options()), y_t);
  EXPECT_TENSOR_EQ(oracle(c), y_t);
}

TEST_P(GroupedMatmulSweep, StridedXAndOddWeightStrides) {
  const Path p = GetParam();
  Rng rng(4000 + int(p));
  Case c = make_case(rng, p, 9, 17, 8, 3, true, 0, false);
  // x as a column slice of a wider tensor, and as a transposed [K, M] storage.
  const DType dt = c.x.dtype();
  Tensor wide = dt == DType::i8 ? rng.int_tensor(dt, {9, 30}, -128, 127) : rng.uniform_tensor(dt, {9, 30});
  Case sliced = c;
  sliced.x = wide.narrow(1, 5, 17);
  expect_matches_oracle(sliced, "x sliced");
  Case transposed = c;
  transposed.x = c.x.contiguous().transpose(0, 1).contiguous().transpose(0, 1);  // strides [1, M]
  ASSERT_EQ(transposed.x.stride(0), 1);
  EXPECT_TENSOR_EQ(grouped_matmul(c.x, c.weight, c.options()),
                   grouped_matmul(transposed.x, transposed.weight, transposed.options()));
  // Weight as a slice along N of a wider weight (stride(1) = 2N), experts in reverse order (negative stride is not
  // expressible, so use a slice along E instead).
  Tensor wbig = dt == DType::i8 ? rng.int_tensor(dt, {5, 17, 16}, -128, 127) : rng.uniform_tensor(dt, {5, 17, 16});
  Case wsliced = c;
  wsliced.weight = wbig.narrow(0, 1, 3).narrow(2, 4, 8);
  expect_matches_oracle(wsliced, "weight sliced");
}

TEST_P(GroupedMatmulSweep, StridedBiasScaleAndPerTokenScale) {
  const Path p = GetParam();
  Rng rng(4500 + int(p));
  Case c = make_case(rng, p, 20, 12, 9, 3, true, 1, false);
  // Per-expert tensors stored [N, E] and viewed as [E, N]; per_token_scale every other element of a [2M] tensor.
  auto transposed_copy = [](const Tensor& t) { return t.transpose(0, 1).contiguous().transpose(0, 1); };
  Tensor wide;  // keeps the per_token_scale view's memory alive
  if (!c.bias.defined()) c.bias = p == Path::i8_i32   ? rng.int_tensor(DType::i32, {3, 9}, -50, 50)
                                  : p == Path::f16    ? rng.uniform_tensor(DType::f16, {3, 9})
                                  : p == Path::i8_bf16 ? rng.uniform_tensor(DType::bf16, {3, 9})
                                                       : rng.uniform_tensor(DType::f32, {3, 9});
  if (c.bias.dim() == 2) c.bias = transposed_copy(c.bias);
  if (c.scale.defined()) {
    c.scale = transposed_copy(c.scale);
    wide = rng.uniform_tensor(DType::f32, {40}, 0.5f, 2.0f);
    c.per_token_scale = Tensor::view(wide.data(), DType::f32, {20}, {2});
  }
  expect_matches_oracle(c, "strided");
}

INSTANTIATE_TEST_SUITE_P(AllPaths, GroupedMatmulSweep,
                         ::testing::Values(Path::f32, Path::bf16, Path::f16, Path::i8_i32, Path::i8_bf16, Path::i8_f16),
                         [](const auto& info) { return std::string(path_name(info.param)); });

// ---------------------------------------------------------------------------------------------------------------
// Groups.

TEST(GroupedMatmul, GroupListTypesDescribingTheSamePartitionAgree) {
  Rng rng(5);
  Tensor x = rng.uniform_tensor(DType::bf16, {10, 16});
  Tensor w = rng.uniform_tensor(DType::bf16, {4, 16, 8});
  GroupedMatmulOptions o;
  o.group_type = 0;
  // Experts 0..3 get 3, 0, 5, 2 rows.
  o.group_list = Tensor::from_values<int64_t>({4}, {3, 3, 8, 10});
  o.group_list_type = 0;
  Tensor a = grouped_matmul(x, w, o);
  o.group_list = Tensor::from_values<int32_t>({4}, {3, 0, 5, 2});  // i32 accepted too
  o.group_list_type = 1;
  EXPECT_TENSOR_EQ(a, grouped_matmul(x, w, o));
  o.group_list = Tensor::from_values<int64_t>({3, 2}, {0, 3, 2, 5, 3, 2});
  o.group_list_type = 2;
  EXPECT_TENSOR_EQ(a, grouped_matmul(x, w, o));
  // And each block equals a plain matmul with that expert's weight.
  const int64_t begin[] = {0, 3, 3, 8}, count[] = {3, 0, 5, 2};
  for (int64_t e = 0; e < 4; ++e) {
    if (!count[e]) continue;
    Tensor rows = x.narrow(0, begin[e], count[e]);
    Tensor single = grouped_matmul(rows, w.narrow(0, e, 1));
    EXPECT_TENSOR_EQ(single, a.narrow(0, begin[e], count[e]).contiguous()) << "expert " << e;
  }
}

TEST(GroupedMatmul, RowsPastTheGroupsAreZero) {
  Rng rng(6);
  Tensor x = rng.uniform_tensor(DType::f16, {6, 5}, 1.0f, 2.0f);
  Tensor w = rng.uniform_tensor(DType::f16, {3, 5, 4}, 1.0f, 2.0f);
  GroupedMatmulOptions o;
  o.group_type = 0;
  o.bias = Tensor::full(DType::f16, {3, 4}, 1.0);
  o.act_type = 5;
  for (int64_t type : {0, 1, 2}) {
    o.group_list_type = type;
    o.group_list = type == 0   ? Tensor::from_values<int64_t>({3}, {1, 1, 3})
                   : type == 1 ? Tensor::from_values<int64_t>({3}, {1, 0, 2})
                               : Tensor::from_values<int64_t>({3, 2}, {0, 1, 2, 2, 1, 0});
    Tensor y = Tensor::full(DType::f16, {6, 4}, 7.0);
    grouped_matmul_out(x, w, o, y);
    for (int64_t r = 0; r < 6; ++r)
      for (int64_t n = 0; n < 4; ++n) {
        if (r < 3) EXPECT_GT(y.item({r, n}), 1.0) << "type " << type;  // computed (x, w, bias > 0)
        else EXPECT_EQ(f32_bits(float(y.item({r, n}))), 0u) << "type " << type << " row " << r;  // +0.0
      }
  }
  // No rows covered at all, in the int32 path too.
  Tensor xi = Tensor::full(DType::i8, {3, 2}, 1.0);
  Tensor wi = Tensor::full(DType::i8, {2, 2, 2}, 1.0);
  GroupedMatmulOptions oi;
  oi.group_type = 0;
  oi.output_dtype = DType::i32;
  oi.group_list = Tensor::from_values<int64_t>({2}, {0, 0});
  Tensor yi = Tensor::full(DType::i32, {3, 2}, -5.0);
  grouped_matmul_out(xi, wi, oi, yi);
  EXPECT_TENSOR_EQ(Tensor::zeros(DType::i32, {3, 2}), yi);
}

TEST(GroupedMatmul, FewerGroupsThanExpertsAndEmptyGroups) {
  Rng rng(7);
  Case c;
  c.x = rng.uniform_tensor(DType::f32, {8, 6});
  c.weight = rng.uniform_tensor(DType::f32, {6, 6, 3});
  c.group_list_type = 1;
  c.group_list = Tensor::from_values<int64_t>({4}, {0, 5, 0, 3});  // experts 4, 5 unused
  expect_matches_oracle(c, "counts with empty groups");
  c.group_list_type = 0;
  c.group_list = Tensor::from_values<int64_t>({2}, {8, 8});  // all rows on expert 0
  expect_matches_oracle(c, "one group");
  c.group_list_type = 2;
  c.group_list = Tensor::from_values<int64_t>({4, 2}, {5, 2, 5, 2, 1, 4, 0, -1});  // same expert twice
  expect_matches_oracle(c, "key-value repeated expert");
}

TEST(GroupedMatmul, ARowDoesNotDependOnTheBatch) {
  // docs/operators.md, Numerics: determinism: a row's result is the same whatever M is and whichever rows share its
  // batch.
  Rng rng(8);
  Tensor x = rng.uniform_tensor(DType::bf16, {64, 96});
  Tensor w = rng.uniform_tensor(DType::bf16, {2, 96, 40});
  GroupedMatmulOptions o;
  o.group_type = 0;
  o.group_list_type = 1;
  o.group_list = Tensor::from_values<int64_t>({2}, {30, 34});
  o.bias = rng.uniform_tensor(DType::f32, {2, 40});
  o.act_type = 2;
  Tensor full = grouped_matmul(x, w, o);
  for (int64_t r : {0, 29, 30, 63}) {
    GroupedMatmulOptions one = o;
    const int64_t e = r < 30 ? 0 : 1;
    one.group_list = e == 0 ? Tensor::from_values<int64_t>({1}, {1}) : Tensor::from_values<int64_t>({2}, {0, 1});
    EXPECT_TENSOR_EQ(full.narrow(0, r, 1).contiguous(), grouped_matmul(x.narrow(0, r, 1), w, one)) << "row " << r;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Plain matmul form (group_type None / -1), flags that do not change the result, sizes of zero.

TEST(GroupedMatmul, UngroupedFormsAgree) {
  Rng rng(9);
  Tensor x = rng.uniform_tensor(DType::f32, {5, 7});
  Tensor w2 = rng.uniform_tensor(DType::f32, {7, 3});
  Tensor w3 = w2.reshape({1, 7, 3});
  Tensor y = grouped_matmul(x, w2);
  EXPECT_EQ(y.shape(), (Shape{5, 3}));
  EXPECT_TENSOR_EQ(y, grouped_matmul(x, w3));
  GroupedMatmulOptions o;
  o.group_type = -1;
  EXPECT_TENSOR_EQ(y, grouped_matmul(x, w3, o));
  o.group_type = 0;  // the same as one group covering every row
  o.group_list = Tensor::from_values<int64_t>({1}, {5});
  EXPECT_TENSOR_EQ(y, grouped_matmul(x, w3, o));
  // Bias [N] or [1, N] with a single expert.
  GroupedMatmulOptions b1, b2;
  b1.bias = rng.uniform_tensor(DType::f32, {3});
  b2.bias = b1.bias.reshape({1, 3});
  EXPECT_TENSOR_EQ(grouped_matmul(x, w2, b1), grouped_matmul(x, w3, b2));
}

TEST(GroupedMatmul, SplitItemAndTuningConfigDoNotChangeTheResult) {
  Rng rng(10);
  Tensor x = rng.int_tensor(DType::i8, {12, 20}, -128, 127);
  Tensor w = rng.int_tensor(DType::i8, {3, 20, 10}, -128, 127);
  GroupedMatmulOptions o;
  o.group_type = 0;
  o.group_list_type = 1;
  o.group_list = Tensor::from_values<int64_t>({3}, {4, 4, 4});
  o.output_dtype = DType::i32;
  Tensor ref = grouped_matmul(x, w, o);
  for (int64_t s : {1, 2, 3}) {
    o.split_item = s;
    o.tuning_config = {int64_t(s * 7)};
    EXPECT_TENSOR_EQ(ref, grouped_matmul(x, w, o)) << "split_item " << s;
  }
}

TEST(GroupedMatmul, ZeroSizes) {
  // M = 0: empty output. N = 0: empty rows. K = 0: the sum is +0, so y = act(bias).
  Tensor w = Tensor::zeros(DType::f32, {2, 3, 4});
  GroupedMatmulOptions o;
  o.group_type = 0;
  o.group_list = Tensor::from_values<int64_t>({2}, {0, 0});
  EXPECT_EQ(grouped_matmul(Tensor::zeros(DType::f32, {0, 3}), w, o).shape(), (Shape{0, 4}));
  o.group_list = Tensor::from_values<int64_t>({1}, {2});
  EXPECT_EQ(grouped_matmul(Tensor::zeros(DType::f32, {2, 3}), Tensor::zeros(DType::f32, {2, 3, 0}), o).shape(),
            (Shape{2, 0}));
  o.bias = Tensor::from_values<float>({2, 2}, {-1.0f, 2.0f, 5.0f, 6.0f});
  o.act_type = 1;
  Tensor y = grouped_matmul(Tensor::zeros(DType::f32, {3, 0}), Tensor::zeros(DType::f32, {2, 0, 2}), o);
  EXPECT_TENSOR_EQ(Tensor::from_values<float>({3, 2}, {0, 2, 0, 2, 0, 0}), y);  // row 2 past the groups
}

// ---------------------------------------------------------------------------------------------------------------
// Extreme values.

TEST(GroupedMatmul, InfAndNanPropagateInFloatPaths) {
  Tensor x = Tensor::from_values<float>({3, 2}, {INFINITY, 1.0f, NAN, 1.0f, 1e30f, 1e30f});
  Tensor w = Tensor::from_values<float>({2, 2}, {1.0f, -1.0f, 1.0f, 1.0f});
  Tensor y = grouped_matmul(x, w);
  EXPECT_EQ(y.item({0, 0}), INFINITY);
  EXPECT_EQ(y.item({0, 1}), -INFINITY);
  EXPECT_TRUE(std::isnan(y.item({1, 0})));
  EXPECT_TRUE(std::isnan(y.item({1, 1})));
  EXPECT_EQ(y.item({2, 0}), double(1e30f * 2.0f));  // 1e30 * 1 + 1e30 * 1
  EXPECT_EQ(y.item({2, 1}), 0.0);                    // 1e30 * -1 + 1e30 * 1

  // f16 output overflows to inf once, at the final rounding; bf16 keeps fp32's range.
  Tensor xh = Tensor::from_values<float>({1, 2}, {60000.0f, 60000.0f}).to(DType::f16);
  Tensor wh = Tensor::from_values<float>({2, 1}, {1.0f, -0.5f}).to(DType::f16);
  EXPECT_EQ(grouped_matmul(xh, wh).item({0, 0}), 30000.0);  // 90000 never rounded to f16 in between
  Tensor wh2 = Tensor::from_values<float>({2, 1}, {1.0f, 1.0f}).to(DType::f16);
  EXPECT_EQ(grouped_matmul(xh, wh2).item({0, 0}), INFINITY);

  // Activations at +-inf and NaN.
  Tensor xa = Tensor::from_values<float>({3, 1}, {INFINITY, -INFINITY, NAN});
  Tensor one = Tensor::from_values<float>({1, 1}, {1.0f});
  const double pinf = INFINITY;
  for (int64_t act : {1, 2, 4, 5}) {
    GroupedMatmulOptions o;
    o.act_type = act;
    Tensor ya = grouped_matmul(xa, one, o);
    EXPECT_EQ(ya.item({0, 0}), pinf) << "act " << act;
    if (act == 1) EXPECT_EQ(ya.item({1, 0}), 0.0);
    else EXPECT_TRUE(std::isnan(ya.item({1, 0}))) << "act " << act;
    EXPECT_TRUE(std::isnan(ya.item({2, 0}))) << "act " << act;
  }
  // Large finite values never give NaN.
  Tensor xl = Tensor::from_values<float>({2, 1}, {-3e38f, 3e38f});
  for (int64_t act : {2, 4, 5}) {
    GroupedMatmulOptions o;
    o.act_type = act;
    Tensor yl = grouped_matmul(xl, one, o);
    EXPECT_EQ(yl.item({0, 0}), 0.0) << "act " << act;
    EXPECT_EQ(yl.item({1, 0}), double(3e38f)) << "act " << act;
  }
}

TEST(GroupedMatmul, Int8ExtremesAreExactInInt32) {
  // K = 65535 (the largest allowed): sum of (-128)(-128) = 65535 * 16384 = 1073725440 exactly.
  const int64_t K = 65535;
  Tensor x = Tensor::full(DType::i8, {2, K}, -128.0);
  x.set_item({1, 0}, 127.0);  // row 1: one term is 127 * -128 instead
  Tensor w = Tensor::full(DType::i8, {1, K, 2}, -128.0);
  for (int64_t k = 0; k < K; ++k) w.set_item({0, k, 1}, 127.0);
  GroupedMatmulOptions o;
  o.output_dtype = DType::i32;
  Tensor y = grouped_matmul(x, w, o);
  EXPECT_EQ(y.item({0, 0}), 1073725440.0);
  EXPECT_EQ(y.item({0, 1}), -128.0 * 127.0 * K);
  EXPECT_EQ(y.item({1, 0}), 1073725440.0 - 16384.0 - 16256.0);
  EXPECT_EQ(y.item({1, 1}), -128.0 * 127.0 * (K - 1) + 127.0 * 127.0);

  // The same through the dequantising path: float(isum) rounds to nearest even.
  o.output_dtype = DType::bf16;
  o.scale = Tensor::full(DType::f32, {1, 2}, 1.0);
  Tensor yb = grouped_matmul(x, w, o);
  EXPECT_EQ(yb.item({0, 0}), double(to_f32(to_bf16(float(1073725440)))));
  EXPECT_EQ(yb.item({0, 1}), double(to_f32(to_bf16(float(-128 * 127 * K)))));

  // The int32 bias add wraps modulo 2^32 (documented).
  Tensor x1 = Tensor::full(DType::i8, {1, 1}, 1.0);
  Tensor w1 = Tensor::full(DType::i8, {1, 1}, 1.0);
  GroupedMatmulOptions ob;
  ob.output_dtype = DType::i32;
  ob.bias = Tensor::from_values<int32_t>({1}, {std::numeric_limits<int32_t>::max()});
  EXPECT_EQ(grouped_matmul(x1, w1, ob).item({0, 0}), double(std::numeric_limits<int32_t>::min()));
}

}  // namespace
}  // namespace moefuse
