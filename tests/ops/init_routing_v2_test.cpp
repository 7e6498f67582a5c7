// npu_moe_init_routing_v2 against values computed by hand and an independent oracle written from the torch_npu
// semantics and docs/operators.md, Numerics (fp32 static quantisation, dynamic quantisation, zeros / -1 where hardware
// leaves garbage, pre-drop counts).
// Over 500 lines: one suite per operator keeps its oracle next to every case of its contract.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <vector>

#include "moefuse/error.h"
#include "moefuse/ops.h"
#include "util/compare.h"
#include "util/errors.h"
#include "util/random.h"

namespace moefuse {
namespace {

using testing::Rng;
using Options = InitRoutingV2Options;

Tensor i32(const Shape& s, std::initializer_list<int32_t> v) { return Tensor::from_values<int32_t>(s, v); }
Tensor i64(const Shape& s, std::initializer_list<int64_t> v) { return Tensor::from_values<int64_t>(s, v); }
Tensor f32(const Shape& s, std::initializer_list<float> v) { return Tensor::from_values<float>(s, v); }
Tensor i8(const Shape& s, std::initializer_list<int8_t> v) { return Tensor::from_values<int8_t>(s, v); }

// ---------------------------------------------------------------------------------------------------------------
// The oracle: the torch_npu semantics line by line, with item()/set_item() reads and a bucket sort (std::map of key ->
// positions in ascending t) instead of a comparison sort, so it shares no code with the library.
// ---------------------------------------------------------------------------------------------------------------

InitRoutingV2Result oracle(const Tensor& x, const Tensor& expert_idx, const Options& o) {
  const int64_t n = x.size(0), h = x.size(1), k = expert_idx.size(1), nk = n * k;
  const int64_t kInf = std::numeric_limits<int64_t>::max();
  const int64_t e_num = o.expert_num;
  int64_t start = 0, end = e_num > 0 ? e_num : kInf;
  if (!o.active_expert_range.empty()) {
    start = o.active_expert_range[0];
    end = o.active_expert_range[1];
  }
  auto id = [&](int64_t t) { return int64_t(expert_idx.item({t / k, t % k})); };

  // key[t] = expert id, or +inf below the range; perm = stable ascending argsort of key.
  std::map<int64_t, std::vector<int64_t>> buckets;
  for (int64_t t = 0; t < nk; ++t) buckets[id(t) < start ? kInf : id(t)].push_back(t);
  std::vector<int64_t> perm;
  for (auto& [key, ts] : buckets) perm.insert(perm.end(), ts.begin(), ts.end());
  int64_t a = 0;
  for (int64_t t = 0; t < nk; ++t) a += (id(t) >= start && id(t) < end) ? 1 : 0;

  const bool drop = o.drop_pad_mode == 1;
  const int64_t cap = o.expert_capacity;
  const int64_t rows = drop ? e_num * cap : (o.active_num <= 0 ? nk : std::min(o.active_num, nk));
  const DType out_dt = o.quant_mode == -1 ? x.dtype() : DType::i8;
  InitRoutingV2Result r;
  r.expanded_x = Tensor::zeros(out_dt, {rows, h});
  r.expanded_scale = Tensor::zeros(DType::f32, {rows});
  r.expanded_row_idx = Tensor::full(DType::i32, {nk}, -1.0);

  // Q(x[tok]) for a row routed to expert e, written to row d.
  auto put = [&](int64_t d, int64_t tok, int64_t e) {
    if (o.quant_mode == -1) {
      for (int64_t j = 0; j < h; ++j) r.expanded_x.set_item({d, j}, x.item({tok, j}));
      if (o.scale.defined()) r.expanded_scale.set_item({d}, o.scale.item({tok}));
    } else if (o.quant_mode == 0) {
      const float s = float(o.scale.item({0})), off = float(o.offset.item({0}));
      for (int64_t j = 0; j < h; ++j) {
        float v = float(x.item({tok, j})) * s;
        v = v + off;
        float q = std::nearbyint(v);  // rint, half to even
        q = q < -128.0f ? -128.0f : (q > 127.0f ? 127.0f : q);
        r.expanded_x.set_item({d, j}, double(q));
      }
    } else {
      std::vector<float> v(static_cast<size_t>(h));
      float amax = 0.0f;
      for (int64_t j = 0; j < h; ++j) {
        float xv = float(x.item({tok, j}));
        if (o.scale.defined()) xv = xv * float(o.scale.item({o.scale.size(0) == 1 ? 0 : e - start, j}));
        v[size_t(j)] = xv;
        amax = std::max(amax, std::fabs(xv));
      }
      const float s = amax / 127.0f;
      for (int64_t j = 0; j < h; ++j) {
        float q = s == 0.0f ? 0.0f : std::nearbyint(v[size_t(j)] / s);
        q = std::min(127.0f, std::max(-127.0f, q));
        r.expanded_x.set_item({d, j}, double(q));
      }
      r.expanded_scale.set_item({d}, double(s));
    }
  };

  if (!drop) {
    for (int64_t i = 0; i < std::min(rows, a); ++i) put(i, perm[size_t(i)] / k, id(perm[size_t(i)]));
    for (int64_t i = 0; i < a; ++i) {
      if (o.row_idx_type == 0)
        r.expanded_row_idx.set_item({perm[size_t(i)]}, double(i));
      else
        r.expanded_row_idx.set_item({i}, double(perm[size_t(i)]));
    }
  } else {
    std::map<int64_t, int64_t> used;  // positions of each expert seen so far
    for (int64_t i = 0; i < a; ++i) {
      const int64_t t = perm[size_t(i)], e = id(t), j = used[e]++;
      if (j >= cap) continue;
      r.expanded_row_idx.set_item({t}, double(e * cap + j));
      put(e * cap + j, t / k, e);
    }
    r.expanded_x = r.expanded_x.reshape({e_num, cap, h});
  }

  // Counts over [start, end), or an empty tensor without expert_num.
  const int64_t type = drop ? 1 : o.expert_tokens_num_type;
  if (e_num < 0) {
    r.expert_token_cumsum_or_count = type == 2 ? Tensor::zeros(DType::i64, {0, 2}) : Tensor::zeros(DType::i64, {0});
    return r;
  }
  std::vector<int64_t> c(size_t(end - start), 0);
  for (int64_t t = 0; t < nk; ++t)
    if (id(t) >= start && id(t) < end) ++c[size_t(id(t) - start)];
  if (type == 2) {
    r.expert_token_cumsum_or_count = Tensor::zeros(DType::i64, {e_num, 2});
    int64_t row = 0;
    for (int64_t e = start; e < end; ++e)
      if (c[size_t(e - start)] > 0) {
        r.expert_token_cumsum_or_count.set_item({row, 0}, double(e));
        r.expert_token_cumsum_or_count.set_item({row, 1}, double(c[size_t(e - start)]));
        ++row;
      }
  } else {
    r.expert_token_cumsum_or_count = Tensor::zeros(DType::i64, {end - start});
    int64_t sum = 0;
    for (int64_t e = 0; e < end - start; ++e) {
      sum += c[size_t(e)];
      r.expert_token_cumsum_or_count.set_item({e}, double(type == 0 ? sum : c[size_t(e)]));
    }
  }
  return r;
}

void expect_equal(const InitRoutingV2Result& e, const InitRoutingV2Result& a) {
  EXPECT_TENSOR_EQ(e.expanded_x, a.expanded_x);
  EXPECT_TENSOR_EQ(e.expanded_row_idx, a.expanded_row_idx);
  EXPECT_TENSOR_EQ(e.expert_token_cumsum_or_count, a.expert_token_cumsum_or_count);
  EXPECT_TENSOR_EQ(e.expanded_scale, a.expanded_scale);
}

// ---------------------------------------------------------------------------------------------------------------
// Hand-computed cases. Shared example: N = 3 tokens, K = 2, E = 4 experts,
//   expert_idx = [[2, 0], [0, 3], [3, 2]]  ->  token-major t: 0 1 2 3 4 5, experts 2 0 0 3 3 2.
// Stable sort by expert: e0 -> t1, t2; e1 -> none; e2 -> t0, t5; e3 -> t3, t4
//   perm = [1, 2, 0, 5, 3, 4], tokens perm/K = [0, 1, 0, 2, 1, 2], c = [2, 0, 2, 2], A = 6.
// ---------------------------------------------------------------------------------------------------------------

Tensor example_experts() { return i32({3, 2}, {2, 0, 0, 3, 3, 2}); }
Tensor example_x() { return f32({3, 2}, {1.0f, -2.0f, 3.0f, 4.0f, -5.0f, 0.5f}); }

// Rows of example_x() for the given tokens (-1 = a zero row).
Tensor x_rows(std::initializer_list<int> tokens) {
  const float xs[3][2] = {{1.0f, -2.0f}, {3.0f, 4.0f}, {-5.0f, 0.5f}};
  Tensor t = Tensor::zeros(DType::f32, {int64_t(tokens.size()), 2});
  int64_t i = 0;
  for (int tok : tokens) {
    if (tok >= 0) {
      t.set_item({i, 0}, xs[tok][0]);
      t.set_item({i, 1}, xs[tok][1]);
    }
    ++i;
  }
  return t;
}

TEST(InitRoutingV2, DroplessDefaults) {
  // R = N*K = 6; expanded_x rows = x[perm/K] = x0, x1, x0, x2, x1, x2.
  // row_idx_type 0: expanded_row_idx[perm[i]] = i -> [2, 0, 1, 4, 5, 3]. Count type 0 (cumsum of [2,0,2,2]).
  Options o;
  o.expert_num = 4;
  InitRoutingV2Result r = init_routing_v2(example_x(), example_experts(), o);
  EXPECT_TENSOR_EQ(x_rows({0, 1, 0, 2, 1, 2}), r.expanded_x);
  EXPECT_TENSOR_EQ(i32({6}, {2, 0, 1, 4, 5, 3}), r.expanded_row_idx);
  EXPECT_TENSOR_EQ(i64({4}, {2, 2, 4, 6}), r.expert_token_cumsum_or_count);
  EXPECT_TENSOR_EQ(Tensor::zeros(DType::f32, {6}), r.expanded_scale);  // no scale given: zeros
}

TEST(InitRoutingV2, RowIdxTypeOneIsTheScatterIndex) {
  // row_idx_type 1: expanded_row_idx[i] = perm[i] = [1, 2, 0, 5, 3, 4] (the inverse of [2, 0, 1, 4, 5, 3]).
  Options o;
  o.expert_num = 4;
  o.row_idx_type = 1;
  InitRoutingV2Result r = init_routing_v2(example_x(), example_experts(), o);
  EXPECT_TENSOR_EQ(i32({6}, {1, 2, 0, 5, 3, 4}), r.expanded_row_idx);
  EXPECT_TENSOR_EQ(x_rows({0, 1, 0, 2, 1, 2}), r.expanded_x);
}

TEST(InitRoutingV2, CountTypes) {
  // c = [2, 0, 2, 2]: cumsum [2, 2, 4, 6]; count [2, 0, 2, 2]; key-value [E, 2] = (0,2), (2,2), (3,2), (0,0).
  Options o;
  o.expert_num = 4;
  o.expert_tokens_num_flag = true;
  o.expert_tokens_num_type = 0;
  EXPECT_TENSOR_EQ(i64({4}, {2, 2, 4, 6}),
                   init_routing_v2(example_x(), example_experts(), o).expert_token_cumsum_or_count);
  o.expert_tokens_num_type = 1;
  EXPECT_TENSOR_EQ(i64({4}, {2, 0, 2, 2}),
                   init_routing_v2(example_x(), example_experts(), o).expert_token_cumsum_or_count);
  o.expert_tokens_num_type = 2;
  EXPECT_TENSOR_EQ(i64({4, 2}, {0, 2, 2, 2, 3, 2, 0, 0}),
                   init_routing_v2(example_x(), example_experts(), o).expert_token_cumsum_or_count);
  // The flag only makes expert_num mandatory: with it false the counts are still computed.
  o.expert_tokens_num_flag = false;
  EXPECT_TENSOR_EQ(i64({4, 2}, {0, 2, 2, 2, 3, 2, 0, 0}),
                   init_routing_v2(example_x(), example_experts(), o).expert_token_cumsum_or_count);
  // Every expert used: E rows of key-value, no terminator. Experts [[0,1],[2,3]] -> (0,1),(1,1),(2,1),(3,1).
  EXPECT_TENSOR_EQ(
      i64({4, 2}, {0, 1, 1, 1, 2, 1, 3, 1}),
      init_routing_v2(f32({2, 1}, {1.0f, 2.0f}), i32({2, 2}, {0, 1, 2, 3}), o).expert_token_cumsum_or_count);
}

TEST(InitRoutingV2, ActiveNumCutsRowsButNotTheMaps) {
  // active_num = 4: R = 4 rows x0, x1, x0, x2. expanded_row_idx is unchanged ([2, 0, 1, 4, 5, 3]); its entries 4
  // and 5 point past expanded_x (routed but cut). Counts are not cut: [2, 0, 2, 2].
  Options o;
  o.expert_num = 4;
  o.active_num = 4;
  o.expert_tokens_num_type = 1;
  InitRoutingV2Result r = init_routing_v2(example_x(), example_experts(), o);
  EXPECT_TENSOR_EQ(x_rows({0, 1, 0, 2}), r.expanded_x);
  EXPECT_TENSOR_EQ(i32({6}, {2, 0, 1, 4, 5, 3}), r.expanded_row_idx);
  EXPECT_TENSOR_EQ(i64({4}, {2, 0, 2, 2}), r.expert_token_cumsum_or_count);
  EXPECT_EQ(r.expanded_scale.shape(), (Shape{4}));
  // active_num 0 and negative keep every row; active_num > N*K keeps N*K.
  for (int64_t an : {int64_t{0}, int64_t{-7}, int64_t{100}}) {
    o.active_num = an;
    EXPECT_EQ(init_routing_v2(example_x(), example_experts(), o).expanded_x.shape(), (Shape{6, 2})) << an;
  }
}

TEST(InitRoutingV2, ActiveExpertRange) {
  // Range [1, 3): keys with id < 1 become +inf: t0=2, t1=inf, t2=inf, t3=3, t4=3, t5=2.
  // perm = [0, 5, 3, 4, 1, 2]; A = #{1 <= e < 3} = 2 (t0, t5).
  // Rows: x0 (t0), x2 (t5), then zeros. row_idx_type 0: [0, -1, -1, -1, -1, 1]; type 1: [0, 5, -1, -1, -1, -1].
  // Counts over [1, 3): c = [0, 2]; key-value keeps absolute ids: (2, 2), then (0, 0), rows of zeros.
  Options o;
  o.expert_num = 4;
  o.active_expert_range = {1, 3};
  o.expert_tokens_num_type = 1;
  InitRoutingV2Result r = init_routing_v2(example_x(), example_experts(), o);
  EXPECT_TENSOR_EQ(x_rows({0, 2, -1, -1, -1, -1}), r.expanded_x);
  EXPECT_TENSOR_EQ(i32({6}, {0, -1, -1, -1, -1, 1}), r.expanded_row_idx);
  EXPECT_TENSOR_EQ(i64({2}, {0, 2}), r.expert_token_cumsum_or_count);
  o.row_idx_type = 1;
  o.expert_tokens_num_type = 2;
  r = init_routing_v2(example_x(), example_experts(), o);
  EXPECT_TENSOR_EQ(i32({6}, {0, 5, -1, -1, -1, -1}), r.expanded_row_idx);
  EXPECT_TENSOR_EQ(i64({4, 2}, {2, 2, 0, 0, 0, 0, 0, 0}), r.expert_token_cumsum_or_count);
  o.expert_tokens_num_type = 0;
  EXPECT_TENSOR_EQ(i64({2}, {0, 2}), init_routing_v2(example_x(), example_experts(), o).expert_token_cumsum_or_count);

  // active_num = 1 with the range: R = 1, only x0.
  o.active_num = 1;
  o.row_idx_type = 0;
  r = init_routing_v2(example_x(), example_experts(), o);
  EXPECT_TENSOR_EQ(x_rows({0}), r.expanded_x);
  EXPECT_TENSOR_EQ(i32({6}, {0, -1, -1, -1, -1, 1}), r.expanded_row_idx);

  // A range with no tokens ([1, 2): nobody chose expert 1) drops everything.
  o = Options{};
  o.expert_num = 4;
  o.active_expert_range = {1, 2};
  o.expert_tokens_num_type = 2;
  r = init_routing_v2(example_x(), example_experts(), o);
  EXPECT_TENSOR_EQ(Tensor::zeros(DType::f32, {6, 2}), r.expanded_x);
  EXPECT_TENSOR_EQ(i32({6}, {-1, -1, -1, -1, -1, -1}), r.expanded_row_idx);
  EXPECT_TENSOR_EQ(Tensor::zeros(DType::i64, {4, 2}), r.expert_token_cumsum_or_count);
}

TEST(InitRoutingV2, DropPad) {
  // Capacity 1: slot d = e*1 + j for the first position of each expert; t2, t5, t4 are dropped.
  //   e0: t1 -> 0 (token 0); e2: t0 -> 2 (token 0); e3: t3 -> 3 (token 1); slot 1 (expert 1) stays zero.
  //   expanded_row_idx = [2, 0, -1, 3, -1, -1]; counts = pre-drop histogram [2, 0, 2, 2] (docs/operators.md, Numerics:
  //   open questions), whatever expert_tokens_num_type (0 here, the default).
  Options o;
  o.expert_num = 4;
  o.drop_pad_mode = 1;
  o.expert_capacity = 1;
  o.scale = f32({3}, {0.5f, 1.5f, 2.5f});  // quant_mode -1: per-token value carried along; empty slots 0
  InitRoutingV2Result r = init_routing_v2(example_x(), example_experts(), o);
  EXPECT_TENSOR_EQ(x_rows({0, -1, 0, 1}).reshape({4, 1, 2}), r.expanded_x);
  EXPECT_TENSOR_EQ(i32({6}, {2, 0, -1, 3, -1, -1}), r.expanded_row_idx);
  EXPECT_TENSOR_EQ(i64({4}, {2, 0, 2, 2}), r.expert_token_cumsum_or_count);
  EXPECT_TENSOR_EQ(f32({4}, {0.5f, 0.0f, 0.5f, 1.5f}), r.expanded_scale);

  // Capacity 2: e0: t1 -> 0, t2 -> 1; e2: t0 -> 4, t5 -> 5; e3: t3 -> 6, t4 -> 7; nothing dropped.
  o.expert_capacity = 2;
  o.expert_tokens_num_type = 2;  // still the per-expert histogram in drop/pad mode
  r = init_routing_v2(example_x(), example_experts(), o);
  EXPECT_TENSOR_EQ(x_rows({0, 1, -1, -1, 0, 2, 1, 2}).reshape({4, 2, 2}), r.expanded_x);
  EXPECT_TENSOR_EQ(i32({6}, {4, 0, 1, 6, 7, 5}), r.expanded_row_idx);
  EXPECT_TENSOR_EQ(i64({4}, {2, 0, 2, 2}), r.expert_token_cumsum_or_count);
  EXPECT_TENSOR_EQ(f32({8}, {0.5f, 1.5f, 0.0f, 0.0f, 0.5f, 2.5f, 1.5f, 2.5f}), r.expanded_scale);

  // Capacity N = 3: e0 -> 0, 1; e2 -> 6, 7; e3 -> 9, 10.
  o.expert_capacity = 3;
  o.active_num = 1;  // ignored in drop/pad mode
  o.active_expert_range = {0, 4};
  r = init_routing_v2(example_x(), example_experts(), o);
  EXPECT_TENSOR_EQ(i32({6}, {6, 0, 1, 9, 10, 7}), r.expanded_row_idx);
  EXPECT_TENSOR_EQ(x_rows({0, 1, -1, -1, -1, -1, 0, 2, -1, 1, 2, -1}).reshape({4, 3, 2}), r.expanded_x);
}

TEST(InitRoutingV2, PerTokenScalePassThrough) {
  // quant_mode -1 with scale [N]: expanded_scale[i] = scale[token of row i] = tokens [0, 1, 0, 2, 1, 2].
  Options o;
  o.expert_num = 4;
  o.scale = f32({3}, {0.5f, 1.5f, 2.5f});
  InitRoutingV2Result r = init_routing_v2(example_x(), example_experts(), o);
  EXPECT_TENSOR_EQ(f32({6}, {0.5f, 1.5f, 0.5f, 2.5f, 1.5f, 2.5f}), r.expanded_scale);
  EXPECT_TENSOR_EQ(x_rows({0, 1, 0, 2, 1, 2}), r.expanded_x);  // x is not scaled
  // Rows past A (range [2, 4) keeps t0, t5, t3, t4 -> tokens 0, 2, 1, 2) have scale 0.
  o.active_expert_range = {2, 4};
  EXPECT_TENSOR_EQ(f32({6}, {0.5f, 2.5f, 1.5f, 2.5f, 0.0f, 0.0f}),
                   init_routing_v2(example_x(), example_experts(), o).expanded_scale);
}

TEST(InitRoutingV2, StaticQuant) {
  // q = clamp(rint(x*2 + 0.5), -128, 127) in fp32:
  //   x0 = [1, -2]:      2.5 -> 2 (half to even), -3.5 -> -4 (half to even)
  //   x1 = [100, 0.25]:  200.5 -> 127 (clamped), 1.0 -> 1
  //   x2 = [-100, NaN]:  -199.5 -> -128 (clamped), NaN -> -128
  // Rows by token [0, 1, 0, 2, 1, 2]; expanded_scale stays zero.
  Tensor x = f32({3, 2}, {1.0f, -2.0f, 100.0f, 0.25f, -100.0f, NAN});
  Options o;
  o.expert_num = 4;
  o.quant_mode = 0;
  o.scale = f32({1}, {2.0f});
  o.offset = f32({1}, {0.5f});
  InitRoutingV2Result r = init_routing_v2(x, example_experts(), o);
  EXPECT_TENSOR_EQ(i8({6, 2}, {2, -4, 127, 1, 2, -4, -128, -128, 127, 1, -128, -128}), r.expanded_x);
  EXPECT_TENSOR_EQ(Tensor::zeros(DType::f32, {6}), r.expanded_scale);
  EXPECT_TENSOR_EQ(i32({6}, {2, 0, 1, 4, 5, 3}), r.expanded_row_idx);
}

// Dynamic-quant example: H = 3, x0 = [127, -63, 0.4] (max 127 -> s = 1), x1 = 0 (all-zero row: s = 0, q = 0),
// x2 = [-254, 127, 125] (max 254 -> s = 2; 127/2 = 63.5 -> 64 and 125/2 = 62.5 -> 62, both half to even).
Tensor dyn_x() { return f32({3, 3}, {127.0f, -63.0f, 0.4f, 0.0f, 0.0f, 0.0f, -254.0f, 127.0f, 125.0f}); }

TEST(InitRoutingV2, DynamicQuantWithoutSmoothScale) {
  // Rows by token [0, 1, 0, 2, 1, 2].
  Options o;
  o.expert_num = 4;
  o.quant_mode = 1;
  InitRoutingV2Result r = init_routing_v2(dyn_x(), example_experts(), o);
  EXPECT_TENSOR_EQ(i8({6, 3}, {127, -63, 0, 0, 0, 0, 127, -63, 0, -127, 64, 62, 0, 0, 0, -127, 64, 62}), r.expanded_x);
  EXPECT_TENSOR_EQ(f32({6}, {1.0f, 0.0f, 1.0f, 2.0f, 0.0f, 2.0f}), r.expanded_scale);
}

TEST(InitRoutingV2, DynamicQuantWithSmoothScales) {
  // Per-expert smooth scale [E, H]; rows (token, expert): (0,e0) (1,e0) (0,e2) (2,e2) (1,e3) (2,e3).
  //   e0 = [1, 1, 1], e1 unused, e2 = [0.5, 2, 1], e3 = [2, 2, 2]
  //   (0,e0): [127, -63, 0.4]  s = 1        q = [127, -63, 0]
  //   (1,e0): zeros            s = 0        q = 0
  //   (0,e2): [63.5, -126, 0.4] s = 126/127  q = [64 (63.5/s ~ 64.004), -127, 0]
  //   (2,e2): [-127, 254, 125] s = 2        q = [-64 (-63.5, half to even), 127, 62 (62.5, half to even)]
  //   (1,e3): zeros            s = 0        q = 0
  //   (2,e3): [-508, 254, 250] s = 4        q = [-127, 64 (63.5), 62 (62.5)]
  Options o;
  o.expert_num = 4;
  o.quant_mode = 1;
  o.scale = f32({4, 3}, {1, 1, 1, 9, 9, 9, 0.5f, 2, 1, 2, 2, 2});
  InitRoutingV2Result r = init_routing_v2(dyn_x(), example_experts(), o);
  EXPECT_TENSOR_EQ(i8({6, 3}, {127, -63, 0, 0, 0, 0, 64, -127, 0, -64, 127, 62, 0, 0, 0, -127, 64, 62}), r.expanded_x);
  EXPECT_TENSOR_EQ(f32({6}, {1.0f, 0.0f, 126.0f / 127.0f, 2.0f, 0.0f, 4.0f}), r.expanded_scale);

  // One shared row [1, H] = [2, 2, 2]: v = 2x -> token 0: s = 2, q = [127, -63, 0]; token 2: s = 4, q = [-127, 64, 62].
  o.scale = f32({1, 3}, {2, 2, 2});
  r = init_routing_v2(dyn_x(), example_experts(), o);
  EXPECT_TENSOR_EQ(i8({6, 3}, {127, -63, 0, 0, 0, 0, 127, -63, 0, -127, 64, 62, 0, 0, 0, -127, 64, 62}), r.expanded_x);
  EXPECT_TENSOR_EQ(f32({6}, {2.0f, 0.0f, 2.0f, 4.0f, 0.0f, 4.0f}), r.expanded_scale);

  // Range [2, 4): the smooth scale has end - start = 2 rows, selected by expert - start.
  // Kept rows: (0,e2) (2,e2) (1,e3) (2,e3) with e2 -> row 0 = [0.5, 2, 1], e3 -> row 1 = [2, 2, 2]; two zero rows.
  o.active_expert_range = {2, 4};
  o.scale = f32({2, 3}, {0.5f, 2, 1, 2, 2, 2});
  r = init_routing_v2(dyn_x(), example_experts(), o);
  EXPECT_TENSOR_EQ(i8({6, 3}, {64, -127, 0, -64, 127, 62, 0, 0, 0, -127, 64, 62, 0, 0, 0, 0, 0, 0}), r.expanded_x);
  EXPECT_TENSOR_EQ(f32({6}, {126.0f / 127.0f, 2.0f, 0.0f, 4.0f, 0.0f, 0.0f}), r.expanded_scale);
}

TEST(InitRoutingV2, DynamicQuantDropPadUsesTheSlotsExpert) {
  // Capacity 1 as in DropPad: slots 0 = (token 0, e0), 1 empty, 2 = (token 0, e2), 3 = (token 1, e3) with the
  // smooth scales of DynamicQuantWithSmoothScales: slot 2 -> [64, -127, 0] with s = 126/127; slot 3 is token 1 = 0.
  Options o;
  o.expert_num = 4;
  o.drop_pad_mode = 1;
  o.expert_capacity = 1;
  o.quant_mode = 1;
  o.scale = f32({4, 3}, {1, 1, 1, 9, 9, 9, 0.5f, 2, 1, 2, 2, 2});
  InitRoutingV2Result r = init_routing_v2(dyn_x(), example_experts(), o);
  EXPECT_TENSOR_EQ(i8({4, 1, 3}, {127, -63, 0, 0, 0, 0, 64, -127, 0, 0, 0, 0}), r.expanded_x);
  EXPECT_TENSOR_EQ(f32({4}, {1.0f, 0.0f, 126.0f / 127.0f, 0.0f}), r.expanded_scale);
}

TEST(InitRoutingV2, TiesAreStable) {
  // Every pair goes to expert 1: perm = identity, so rows follow t = n*K + k and type 0 is the identity too.
  Tensor x = f32({3, 1}, {10.0f, 20.0f, 30.0f});
  Options o;
  o.expert_num = 2;
  InitRoutingV2Result r = init_routing_v2(x, i32({3, 2}, {1, 1, 1, 1, 1, 1}), o);
  EXPECT_TENSOR_EQ(f32({6, 1}, {10.0f, 10.0f, 20.0f, 20.0f, 30.0f, 30.0f}), r.expanded_x);
  EXPECT_TENSOR_EQ(i32({6}, {0, 1, 2, 3, 4, 5}), r.expanded_row_idx);
  // Interleaved ties: experts [[1, 0], [1, 0], [0, 1]] -> e0: t1, t3, t4; e1: t0, t2, t5.
  r = init_routing_v2(x, i32({3, 2}, {1, 0, 1, 0, 0, 1}), o);
  EXPECT_TENSOR_EQ(f32({6, 1}, {10.0f, 20.0f, 30.0f, 10.0f, 20.0f, 30.0f}), r.expanded_x);
  EXPECT_TENSOR_EQ(i32({6}, {3, 0, 4, 1, 2, 5}), r.expanded_row_idx);
}

TEST(InitRoutingV2, WithoutExpertNum) {
  // expert_num = -1: every id >= 0 is active (no upper bound), the count output is empty ([0], or [0, 2] for
  // key-value), and ids are sorted as usual.
  Tensor x = f32({2, 1}, {1.0f, 2.0f});
  InitRoutingV2Result r = init_routing_v2(x, i32({2, 2}, {1000, 5, 7, 2000000000}));
  EXPECT_TENSOR_EQ(f32({4, 1}, {1.0f, 2.0f, 1.0f, 2.0f}), r.expanded_x);  // order: 5 (t1), 7 (t2), 1000, 2e9
  EXPECT_TENSOR_EQ(i32({4}, {2, 0, 1, 3}), r.expanded_row_idx);
  EXPECT_EQ(r.expert_token_cumsum_or_count.shape(), (Shape{0}));
  EXPECT_EQ(r.expert_token_cumsum_or_count.dtype(), DType::i64);
  Options o;
  o.expert_tokens_num_type = 2;
  o.active_expert_range = {6, 1001};  // a range without expert_num: keeps 7 and 1000
  r = init_routing_v2(x, i32({2, 2}, {1000, 5, 7, 2000000000}), o);
  EXPECT_EQ(r.expert_token_cumsum_or_count.shape(), (Shape{0, 2}));
  EXPECT_TENSOR_EQ(i32({4}, {1, -1, 0, -1}), r.expanded_row_idx);
  EXPECT_TENSOR_EQ(f32({4, 1}, {2.0f, 1.0f, 0.0f, 0.0f}), r.expanded_x);
}

TEST(InitRoutingV2, EmptyInputs) {
  // N = 0: empty maps and rows, counts all zero (torch_npu returns zeros without launching); drop/pad accepts any
  // capacity >= 1 and returns zero slots.
  Tensor x = Tensor::zeros(DType::bf16, {0, 5});
  Tensor ids = Tensor::zeros(DType::i32, {0, 3});
  Options o;
  o.expert_num = 6;
  o.expert_tokens_num_type = 1;
  InitRoutingV2Result r = init_routing_v2(x, ids, o);
  EXPECT_EQ(r.expanded_x.shape(), (Shape{0, 5}));
  EXPECT_EQ(r.expanded_row_idx.shape(), (Shape{0}));
  EXPECT_TENSOR_EQ(Tensor::zeros(DType::i64, {6}), r.expert_token_cumsum_or_count);
  o.expert_tokens_num_type = 2;
  EXPECT_TENSOR_EQ(Tensor::zeros(DType::i64, {6, 2}), init_routing_v2(x, ids, o).expert_token_cumsum_or_count);
  o.drop_pad_mode = 1;
  o.expert_capacity = 4;
  o.quant_mode = 1;
  r = init_routing_v2(x, ids, o);
  EXPECT_TENSOR_EQ(Tensor::zeros(DType::i8, {6, 4, 5}), r.expanded_x);
  EXPECT_TENSOR_EQ(Tensor::zeros(DType::f32, {24}), r.expanded_scale);
  EXPECT_TENSOR_EQ(Tensor::zeros(DType::i64, {6}), r.expert_token_cumsum_or_count);
}

TEST(InitRoutingV2, RowsAreCopiedBitForBitAndXDtypeIsAccepted) {
  const uint16_t bits[4] = {0x7e01, 0x8000, 0xfc00, 0x3c00};  // f16: NaN with payload, -0.0, -inf, 1.0
  Tensor x = Tensor::empty(DType::f16, {1, 4});
  std::memcpy(x.data(), bits, sizeof bits);
  Options o;
  o.x_dtype = DType::f16;
  InitRoutingV2Result r = init_routing_v2(x, i32({1, 1}, {0}), o);
  EXPECT_EQ(std::memcmp(r.expanded_x.data(), bits, sizeof bits), 0);

  Tensor xi = i8({2, 2}, {-128, 127, 5, -6});
  o.x_dtype = DType::i8;
  EXPECT_TENSOR_EQ(i8({2, 2}, {5, -6, -128, 127}), init_routing_v2(xi, i32({2, 1}, {3, 1}), o).expanded_x);
}

// ---------------------------------------------------------------------------------------------------------------
// Invariants (checked on every sweep call with quant_mode -1, where rows can be compared with x bit for bit).
// ---------------------------------------------------------------------------------------------------------------

bool same_row(const Tensor& a, int64_t ra, const Tensor& b, int64_t rb) {
  for (int64_t j = 0; j < a.size(-1); ++j) {
    const double va = a.item({ra, j}), vb = b.item({rb, j});
    if (!(va == vb || (std::isnan(va) && std::isnan(vb)))) return false;
  }
  return true;
}

void check_invariants(const Tensor& x, const Tensor& expert_idx, const Options& o, const InitRoutingV2Result& r) {
  const int64_t n = x.size(0), k = expert_idx.size(1), nk = n * k;
  int64_t start = 0, end = o.expert_num > 0 ? o.expert_num : std::numeric_limits<int64_t>::max();
  if (!o.active_expert_range.empty()) start = o.active_expert_range[0], end = o.active_expert_range[1];
  auto id = [&](int64_t t) { return int64_t(expert_idx.item({t / k, t % k})); };
  int64_t a = 0;
  for (int64_t t = 0; t < nk; ++t) a += (id(t) >= start && id(t) < end) ? 1 : 0;

  // Counts (types 0/1 or drop/pad) sum to A; key-value counts too.
  const Tensor& c = r.expert_token_cumsum_or_count;
  if (o.expert_num > 0) {
    const int64_t type = o.drop_pad_mode == 1 ? 1 : o.expert_tokens_num_type;
    int64_t sum = 0;
    if (type == 1)
      for (int64_t i = 0; i < c.numel(); ++i) sum += int64_t(c.item({i}));
    else if (type == 0)
      sum = c.numel() ? int64_t(c.item({c.numel() - 1})) : 0;
    else
      for (int64_t i = 0; i < c.size(0); ++i) sum += int64_t(c.item({i, 1}));
    ASSERT_EQ(sum, a);
  }

  if (o.drop_pad_mode == 1) {
    // Each kept pair sits in a slot of its own expert; per expert, exactly the first min(count, C) positions (in t
    // order) are kept, in slots 0, 1, ... in t order, each holding the token's row.
    const int64_t cap = o.expert_capacity, h = x.size(1);
    Tensor flat = r.expanded_x.reshape({o.expert_num * cap, h});
    std::map<int64_t, int64_t> seen;
    for (int64_t t = 0; t < nk; ++t) {
      const int64_t e = id(t), j = seen[e]++, d = int64_t(r.expanded_row_idx.item({t}));
      ASSERT_EQ(d, j < cap ? e * cap + j : -1) << "t=" << t;
      if (d >= 0) {
        ASSERT_TRUE(same_row(flat, d, x, t / k)) << "slot " << d;
      }
    }
    return;
  }

  const int64_t rows = r.expanded_x.size(0);
  // Type 0: non-negative entries are distinct, exactly A of them, in [0, A); kept rows hold x[t / K].
  // Type 1: entries [0, A) are the inverse map, then -1; the experts of valid rows do not decrease.
  if (o.row_idx_type == 0) {
    std::vector<int> hit(size_t(a), 0);
    int64_t valid = 0;
    for (int64_t t = 0; t < nk; ++t) {
      const int64_t d = int64_t(r.expanded_row_idx.item({t}));
      if (d < 0) {
        ASSERT_EQ(d, -1);
        ASSERT_FALSE(id(t) >= start && id(t) < end) << "t=" << t << " is active but unmapped";
        continue;
      }
      ASSERT_LT(d, a);
      ASSERT_EQ(hit[size_t(d)]++, 0);
      ++valid;
      if (d < rows) {
        ASSERT_TRUE(same_row(r.expanded_x, d, x, t / k)) << "t=" << t;
      }
    }
    ASSERT_EQ(valid, a);
  } else {
    int64_t prev = std::numeric_limits<int64_t>::min();
    for (int64_t i = 0; i < nk; ++i) {
      const int64_t t = int64_t(r.expanded_row_idx.item({i}));
      if (i >= a) {
        ASSERT_EQ(t, -1);
        continue;
      }
      ASSERT_TRUE(t >= 0 && t < nk);
      ASSERT_TRUE(id(t) >= start && id(t) < end);
      ASSERT_LE(prev, id(t)) << "experts of the valid rows must not decrease";
      prev = id(t);
      if (i < rows) {
        ASSERT_TRUE(same_row(r.expanded_x, i, x, t / k));
      }
    }
    // The inverse relation with row_idx_type 0 on the valid rows.
    Options o0 = o;
    o0.row_idx_type = 0;
    InitRoutingV2Result r0 = init_routing_v2(x, expert_idx, o0);
    for (int64_t i = 0; i < a; ++i) {
      const int64_t t = int64_t(r.expanded_row_idx.item({i}));
      ASSERT_EQ(int64_t(r0.expanded_row_idx.item({t})), i);
    }
  }
  // Rows past min(R, A) are zero, with zero scales.
  for (int64_t i = std::min(rows, a); i < rows; ++i) {
    ASSERT_EQ(r.expanded_scale.item({i}), 0.0);
    for (int64_t j = 0; j < x.size(1); ++j) ASSERT_EQ(r.expanded_x.item({i, j}), 0.0);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Sweeps: every dtype, shapes with T=0, T=1, odd H, E=1, k=1, k=E, E=256, E=2048, experts receiving no tokens,
// frequent ties, active ranges (full, inner, single expert, empty of tokens), capacity 1 / mid / N, all quant modes
// with and without smooth scales, both row index types, all count types, several active_num.
// ---------------------------------------------------------------------------------------------------------------

struct SweepCase {
  int64_t n, k, h, experts;
  bool distinct;  // distinct experts per token (as top-k gives) or independent draws (more ties)
};

Tensor random_experts(Rng& rng, const SweepCase& c) {
  Tensor t = Tensor::empty(DType::i32, {c.n, c.k});
  std::vector<int32_t> pool(size_t(c.experts));
  for (int64_t i = 0; i < c.n; ++i) {
    if (c.distinct) {
      for (int32_t e = 0; e < int32_t(c.experts); ++e) pool[size_t(e)] = e;
      std::shuffle(pool.begin(), pool.end(), rng.engine());
    }
    for (int64_t j = 0; j < c.k; ++j)
      t.set_item({i, j}, c.distinct ? double(pool[size_t(j)]) : double(rng.integer(0, c.experts - 1)));
  }
  return t;
}

class InitRoutingV2Sweep : public ::testing::TestWithParam<DType> {};

TEST_P(InitRoutingV2Sweep, MatchesOracleAndInvariants) {
  const DType dt = GetParam();
  Rng rng(31337 + int(dt));
  const SweepCase cases[] = {{0, 2, 4, 4, true},     {1, 1, 1, 1, true},   {1, 4, 3, 4, true},
                             {3, 2, 5, 4, false},    {7, 3, 7, 3, true},   {16, 1, 2, 1, true},
                             {20, 4, 9, 40, false},  {24, 6, 3, 6, false}, {64, 8, 16, 256, true},
                             {32, 8, 5, 2048, true}, {13, 2, 1, 2, false}};
  int64_t variant = 0;
  for (const SweepCase& c : cases) {
    const int64_t e = c.experts, nk = c.n * c.k;
    Tensor x = dt == DType::i8 ? rng.int_tensor(DType::i8, {c.n, c.h}, -128, 127)
                               : rng.uniform_tensor(dt, {c.n, c.h}, -3.0f, 3.0f);
    if (c.n > 2 && dt != DType::i8)  // an all-zero row: dynamic scale 0, q 0
      for (int64_t j = 0; j < c.h; ++j) x.set_item({1, j}, 0.0);
    Tensor ids = random_experts(rng, c);

    // Active ranges: full (default and explicit), inner, a single expert, and one that holds no token.
    std::vector<std::vector<int64_t>> ranges = {{}, {0, e}};
    if (e > 2) ranges.push_back({1, e - 1});
    ranges.push_back({e - 1, e});
    if (e > 4 * nk) ranges.push_back({e - 2, e});  // with E >> N*K experts near the top often receive nothing

    for (int quant : {-1, 0, 1}) {
      if (dt == DType::i8 && quant != -1) continue;
      for (int scale_kind = 0; scale_kind < 3; ++scale_kind) {  // -1: none/[N]; 0: once; 1: none/[1,H]/[range,H]
        if (quant == 0 && scale_kind > 0) continue;
        if (quant == -1 && scale_kind > 1) continue;
        for (const auto& range : ranges) {
          const int64_t start = range.empty() ? 0 : range[0], end = range.empty() ? e : range[1];
          Options o;
          o.expert_num = e;
          o.active_expert_range = range;
          o.quant_mode = quant;
          if (quant == -1 && scale_kind == 1) o.scale = rng.uniform_tensor(DType::f32, {c.n}, 0.0f, 2.0f);
          if (quant == 0) {
            o.scale = f32({1}, {rng.uniform(0.5f, 60.0f)});
            o.offset = f32({1}, {rng.uniform(-3.0f, 3.0f)});
          }
          if (quant == 1 && scale_kind == 1) o.scale = rng.uniform_tensor(DType::f32, {1, c.h}, 0.1f, 2.0f);
          if (quant == 1 && scale_kind == 2) o.scale = rng.uniform_tensor(DType::f32, {end - start, c.h}, 0.1f, 2.0f);
          ++variant;

          // Dropless: both row index types; count type and active_num rotate with the variant.
          const int64_t actives[] = {-1, 0, 1, nk / 2, nk, nk + 5};
          for (int rit = 0; rit < 2; ++rit) {
            Options d = o;
            d.row_idx_type = rit;
            d.expert_tokens_num_type = (variant + rit) % 3;
            d.expert_tokens_num_flag = (variant % 2) == 0;
            d.active_num = actives[size_t((variant + 3 * rit) % 6)];
            SCOPED_TRACE(::testing::Message()
                         << "dropless N=" << c.n << " K=" << c.k << " H=" << c.h << " E=" << e << " range=[" << start
                         << "," << end << ") quant=" << quant << " scale_kind=" << scale_kind << " row_idx_type=" << rit
                         << " count_type=" << d.expert_tokens_num_type << " active_num=" << d.active_num);
            InitRoutingV2Result r = init_routing_v2(x, ids, d);
            expect_equal(oracle(x, ids, d), r);
            if (quant == -1) check_invariants(x, ids, d, r);
          }

          // Drop/pad needs the full range; capacities 1, N and one in between (bounded to keep [E, C, H] small).
          if (!range.empty() && (range[0] != 0 || range[1] != e)) continue;
          for (int64_t cap : {int64_t{1}, std::max<int64_t>(1, c.n / 3), std::max<int64_t>(1, c.n)}) {
            if (e * cap * c.h > 200000) continue;
            Options d = o;
            d.drop_pad_mode = 1;
            d.expert_capacity = cap;
            d.expert_tokens_num_type = variant % 3;  // forced to counts
            SCOPED_TRACE(::testing::Message() << "drop/pad N=" << c.n << " K=" << c.k << " H=" << c.h << " E=" << e
                                              << " C=" << cap << " quant=" << quant << " scale_kind=" << scale_kind);
            InitRoutingV2Result r = init_routing_v2(x, ids, d);
            expect_equal(oracle(x, ids, d), r);
            if (quant == -1) check_invariants(x, ids, d, r);
          }
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllDTypes, InitRoutingV2Sweep,
                         ::testing::Values(DType::f32, DType::bf16, DType::f16, DType::i8),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(InitRoutingV2, ExpertNumMinusOneMatchesOracle) {
  Rng rng(8);
  Tensor x = rng.uniform_tensor(DType::f32, {10, 3});
  Tensor ids = rng.int_tensor(DType::i32, {10, 3}, 0, 50);
  for (int type = 0; type < 3; ++type)
    for (const std::vector<int64_t>& range : {std::vector<int64_t>{}, std::vector<int64_t>{10, 30}})
      for (int rit = 0; rit < 2; ++rit) {
        Options o;
        o.expert_tokens_num_type = type;
        o.active_expert_range = range;
        o.row_idx_type = rit;
        o.quant_mode = 1;
        if (!range.empty()) o.scale = rng.uniform_tensor(DType::f32, {20, 3}, 0.5f, 1.5f);
        InitRoutingV2Result r = init_routing_v2(x, ids, o);
        expect_equal(oracle(x, ids, o), r);
      }
}

TEST(InitRoutingV2, StridedInputsGiveTheSameResultAsContiguous) {
  Rng rng(77);
  const int64_t n = 9, k = 3, h = 5, e = 4;
  Tensor x = rng.uniform_tensor(DType::bf16, {h, n}).transpose(0, 1);                  // [N, H] view
  Tensor ids = rng.int_tensor(DType::i32, {k, n}, 0, e - 1).transpose(0, 1);           // [N, K] view
  Tensor smooth = rng.uniform_tensor(DType::f32, {h, e}, 0.5f, 2.0f).transpose(0, 1);  // [E, H] view
  Tensor tok_backing = rng.uniform_tensor(DType::f32, {2 * n}, 0.0f, 2.0f);
  Tensor tok = Tensor::view(tok_backing.data(), DType::f32, {n}, {2});  // [N], every other element
  ASSERT_FALSE(x.is_contiguous());
  ASSERT_FALSE(ids.is_contiguous());
  ASSERT_FALSE(smooth.is_contiguous());
  ASSERT_FALSE(tok.is_contiguous());
  for (int quant : {-1, 1})
    for (int64_t drop : {0, 1}) {
      Options o;
      o.expert_num = e;
      o.quant_mode = quant;
      o.drop_pad_mode = drop;
      o.expert_capacity = 2;
      o.scale = quant == 1 ? smooth : tok;
      Options oc = o;
      oc.scale = o.scale.contiguous();
      InitRoutingV2Result r = init_routing_v2(x, ids, o);
      expect_equal(init_routing_v2(x.contiguous(), ids.contiguous(), oc), r);
      expect_equal(oracle(x, ids, o), r);
    }
}

TEST(InitRoutingV2, OutVariantWritesTheCallersBuffers) {
  Rng rng(3);
  Tensor x = rng.uniform_tensor(DType::f16, {6, 4});
  Tensor ids = rng.int_tensor(DType::i32, {6, 2}, 0, 2);
  Options o;
  o.expert_num = 3;
  o.quant_mode = 1;
  o.expert_tokens_num_type = 2;
  o.active_num = 9;
  InitRoutingV2Result out{Tensor::full(DType::i8, {9, 4}, 9.0), Tensor::full(DType::i32, {12}, 9.0),
                          Tensor::full(DType::i64, {3, 2}, 9.0), Tensor::full(DType::f32, {9}, 9.0)};
  init_routing_v2_out(x, ids, o, out);
  expect_equal(init_routing_v2(x, ids, o), out);

  // Without expert_num the count buffer is [0].
  Options none;
  InitRoutingV2Result out2{Tensor::full(DType::f16, {12, 4}, 9.0), Tensor::full(DType::i32, {12}, 9.0),
                           Tensor::zeros(DType::i64, {0}), Tensor::full(DType::f32, {12}, 9.0)};
  init_routing_v2_out(x, ids, none, out2);
  expect_equal(init_routing_v2(x, ids, none), out2);

  // Drop/pad: [E, C, H].
  Options dp;
  dp.expert_num = 3;
  dp.drop_pad_mode = 1;
  dp.expert_capacity = 2;
  InitRoutingV2Result out3{Tensor::full(DType::f16, {3, 2, 4}, 9.0), Tensor::full(DType::i32, {12}, 9.0),
                           Tensor::full(DType::i64, {3}, 9.0), Tensor::full(DType::f32, {6}, 9.0)};
  init_routing_v2_out(x, ids, dp, out3);
  expect_equal(init_routing_v2(x, ids, dp), out3);
}

// ---------------------------------------------------------------------------------------------------------------
// Errors: every documented one, with its message, and outputs untouched after a failed _out call.
// ---------------------------------------------------------------------------------------------------------------

template <class F>
Options opts(F&& f) {
  Options o;
  o.expert_num = 4;
  f(o);
  return o;
}

TEST(InitRoutingV2, TensorErrors) {
  const char* op = "init_routing_v2";
  Tensor x = Tensor::zeros(DType::f32, {3, 2});
  Tensor ids = example_experts();
  EXPECT_THROWS_MSG(init_routing_v2(Tensor{}, ids), ValueError, op, "x", "a tensor", "none");
  EXPECT_THROWS_MSG(init_routing_v2(Tensor::zeros(DType::f32, {6}), ids), ValueError, op, "x", "2-D", "f32[6]");
  EXPECT_THROWS_MSG(init_routing_v2(Tensor::zeros(DType::i32, {3, 2}), ids), TypeError, op, "x", "f32, bf16, f16 or i8",
                    "i32");
  EXPECT_THROWS_MSG(init_routing_v2(x, Tensor{}), ValueError, op, "expert_idx", "a tensor", "none");
  EXPECT_THROWS_MSG(init_routing_v2(x, Tensor::zeros(DType::i32, {6})), ValueError, op, "expert_idx", "2-D");
  EXPECT_THROWS_MSG(init_routing_v2(x, Tensor::zeros(DType::i64, {3, 2})), TypeError, op, "expert_idx", "i32", "i64");
  EXPECT_THROWS_MSG(init_routing_v2(x, Tensor::zeros(DType::i32, {2, 2})), ValueError, op, "expert_idx",
                    "shape [N, K] with N = 3 (x.size(0))", "shape [2, 2]");
  // N*K past the i32 index range (zero-stride views: no memory needed).
  const float one = 0.0f;
  const int32_t zero = 0;
  Tensor big_x = Tensor::view(&one, DType::f32, {int64_t{1} << 30, 1}, {0, 0});
  Tensor big_ids = Tensor::view(&zero, DType::i32, {int64_t{1} << 30, 2}, {0, 0});
  EXPECT_THROWS_MSG(init_routing_v2(big_x, big_ids), ValueError, op, "expert_idx", "at most 2^31 - 1 elements");

  // Expert ids out of range, with value and position.
  EXPECT_THROWS_MSG(init_routing_v2(x, i32({3, 2}, {2, 0, 0, 4, 3, 2}), opts([](Options&) {})), ValueError, op,
                    "expert_idx", "expert ids in [0, 4) (expert_num)", "got 4 at [1, 1]");
  EXPECT_THROWS_MSG(init_routing_v2(x, i32({3, 2}, {2, 0, 0, 1, -3, 2}), opts([](Options&) {})), ValueError, op,
                    "expert_idx", "[0, 4)", "got -3 at [2, 0]");
  EXPECT_THROWS_MSG(init_routing_v2(x, i32({3, 2}, {-1, 0, 0, 1, 3, 2})), ValueError, op, "expert_idx",
                    "expert ids >= 0", "got -1 at [0, 0]");
  // Ids outside the active range but inside [0, expert_num) are fine.
  EXPECT_NO_THROW(init_routing_v2(x, ids, opts([](Options& o) { o.active_expert_range = {3, 4}; })));
}

TEST(InitRoutingV2, ModeErrors) {
  const char* op = "init_routing_v2";
  Tensor x = Tensor::zeros(DType::f32, {3, 2});
  Tensor ids = example_experts();
  for (int64_t q : {-2, 2, 3, 6, 13}) {
    EXPECT_THROWS_MSG(init_routing_v2(x, ids, opts([&](Options& o) { o.quant_mode = q; })), ValueError, op,
                      "quant_mode", "-1 (none), 0 (static int8) or 1 (dynamic int8)", "MX/FP8/HIF8/INT4",
                      "got " + std::to_string(q));
  }
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, opts([](Options& o) { o.drop_pad_mode = 2; })), ValueError, op,
                    "drop_pad_mode", "0 (dropless) or 1 (drop/pad)", "got 2");
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, opts([](Options& o) { o.expert_tokens_num_type = 3; })), ValueError, op,
                    "expert_tokens_num_type", "0 (cumsum), 1 (count) or 2 (key-value)", "got 3");
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, opts([](Options& o) { o.row_idx_type = -1; })), ValueError, op,
                    "row_idx_type", "0 (gather) or 1 (scatter)", "got -1");
  for (int64_t en : {int64_t{0}, int64_t{-2}})
    EXPECT_THROWS_MSG(init_routing_v2(x, ids, opts([&](Options& o) { o.expert_num = en; })), ValueError, op,
                      "expert_num", "-1 (not given) or a number of experts >= 1", "got " + std::to_string(en));
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, opts([](Options& o) { o.x_dtype = DType::bf16; })), ValueError, op,
                    "x_dtype", "none or x's dtype (f32)", "got bf16");
  Tensor xi = Tensor::zeros(DType::i8, {3, 2});
  EXPECT_THROWS_MSG(init_routing_v2(xi, ids, opts([](Options& o) { o.quant_mode = 1; })), TypeError, op, "x",
                    "f32, bf16 or f16 with quant_mode 1", "got i8");
  EXPECT_THROWS_MSG(init_routing_v2(xi, ids, opts([](Options& o) {
                                      o.quant_mode = 0;
                                      o.scale = f32({1}, {1.0f});
                                      o.offset = f32({1}, {0.0f});
                                    })),
                    TypeError, op, "x", "with quant_mode 0", "got i8");

  // Active expert range.
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, opts([](Options& o) { o.active_expert_range = {1}; })), ValueError, op,
                    "active_expert_range", "[] or [start, end] (two values)", "got [1]");
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, opts([](Options& o) {
                                      o.active_expert_range = {0, 1, 2};
                                    })),
                    ValueError, op, "active_expert_range", "two values", "got [0, 1, 2]");
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, opts([](Options& o) {
                                      o.active_expert_range = {-1, 2};
                                    })),
                    ValueError, op, "active_expert_range", "0 <= start < end <= expert_num (4)", "got [-1, 2]");
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, opts([](Options& o) {
                                      o.active_expert_range = {2, 2};
                                    })),
                    ValueError, op, "active_expert_range", "start < end", "got [2, 2]");
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, opts([](Options& o) {
                                      o.active_expert_range = {0, 5};
                                    })),
                    ValueError, op, "active_expert_range", "end <= expert_num (4)", "got [0, 5]");
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, opts([](Options& o) {
                                      o.expert_num = -1;
                                      o.active_expert_range = {3, 1};
                                    })),
                    ValueError, op, "active_expert_range", "0 <= start < end", "got [3, 1]");

  // Counts requested without expert_num.
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, opts([](Options& o) {
                                      o.expert_num = -1;
                                      o.expert_tokens_num_flag = true;
                                    })),
                    ValueError, op, "expert_num", "when expert_tokens_num_flag is true", "got -1");
}

TEST(InitRoutingV2, DropPadErrors) {
  const char* op = "init_routing_v2";
  Tensor x = Tensor::zeros(DType::f32, {3, 2});
  Tensor ids = example_experts();
  auto dp = [](auto f) {
    return opts([&](Options& o) {
      o.drop_pad_mode = 1;
      o.expert_capacity = 2;
      f(o);
    });
  };
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, dp([](Options& o) { o.expert_num = -1; })), ValueError, op, "expert_num",
                    "with drop_pad_mode 1", "got -1");
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, dp([](Options& o) { o.row_idx_type = 1; })), ValueError, op, "row_idx_type",
                    "0 (gather) with drop_pad_mode 1", "got 1");
  for (int64_t c : {int64_t{0}, int64_t{-1}, int64_t{4}})
    EXPECT_THROWS_MSG(init_routing_v2(x, ids, dp([&](Options& o) { o.expert_capacity = c; })), ValueError, op,
                      "expert_capacity", "1 <= expert_capacity <= N (3) with drop_pad_mode 1",
                      "got " + std::to_string(c));
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, dp([](Options& o) {
                                      o.active_expert_range = {0, 3};
                                    })),
                    ValueError, op, "active_expert_range", "the full range [0, 4] (expert_num) with drop_pad_mode 1",
                    "got [0, 3]");
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, dp([](Options& o) {
                                      o.active_expert_range = {1, 4};
                                    })),
                    ValueError, op, "active_expert_range", "full range", "got [1, 4]");
  EXPECT_NO_THROW(init_routing_v2(x, ids, dp([](Options& o) { o.active_expert_range = {0, 4}; })));
  // E * C past the i32 slot range.
  const float one = 0.0f;
  const int32_t zero = 0;
  Tensor big_x = Tensor::view(&one, DType::f32, {int64_t{1} << 20, 1}, {0, 0});
  Tensor big_ids = Tensor::view(&zero, DType::i32, {int64_t{1} << 20, 1}, {0, 0});
  EXPECT_THROWS_MSG(init_routing_v2(big_x, big_ids, dp([](Options& o) {
                                      o.expert_num = 4096;
                                      o.expert_capacity = int64_t{1} << 20;
                                    })),
                    ValueError, op, "expert_capacity", "expert_num * expert_capacity <= 2^31 - 1", "4096");
}

TEST(InitRoutingV2, ScaleAndOffsetErrors) {
  const char* op = "init_routing_v2";
  Tensor x = Tensor::zeros(DType::f32, {3, 2});
  Tensor ids = example_experts();
  // offset only for static quant.
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, opts([](Options& o) { o.offset = f32({1}, {0.0f}); })), ValueError, op,
                    "offset", "none (only quant_mode 0 takes an offset)", "f32[1] with quant_mode -1");
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, opts([](Options& o) {
                                      o.quant_mode = 1;
                                      o.offset = f32({1}, {0.0f});
                                    })),
                    ValueError, op, "offset", "only quant_mode 0", "with quant_mode 1");
  // Static quant: both required, f32, shape [1].
  auto st = [](auto f) {
    return opts([&](Options& o) {
      o.quant_mode = 0;
      o.scale = f32({1}, {1.0f});
      o.offset = f32({1}, {0.0f});
      f(o);
    });
  };
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, st([](Options& o) { o.scale = Tensor{}; })), ValueError, op, "scale",
                    "a [1] f32 tensor with quant_mode 0 (static)", "got none");
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, st([](Options& o) { o.offset = Tensor{}; })), ValueError, op, "offset",
                    "a [1] f32 tensor with quant_mode 0", "got none");
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, st([](Options& o) { o.scale = Tensor::zeros(DType::f16, {1}); })),
                    TypeError, op, "scale", "f32", "f16");
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, st([](Options& o) { o.offset = Tensor::zeros(DType::bf16, {1}); })),
                    TypeError, op, "offset", "f32", "bf16");
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, st([](Options& o) { o.scale = Tensor::zeros(DType::f32, {2}); })),
                    ValueError, op, "scale", "shape [1]", "shape [2]");
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, st([](Options& o) {
                                      o.offset = Tensor::zeros(DType::f32, {1, 1});
                                    })),
                    ValueError, op, "offset", "shape [1]", "shape [1, 1]");
  // quant_mode -1: scale [N] f32.
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, opts([](Options& o) { o.scale = Tensor::zeros(DType::f32, {4}); })),
                    ValueError, op, "scale", "shape [3] (one value per token, N) with quant_mode -1", "shape [4]");
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, opts([](Options& o) {
                                      o.scale = Tensor::zeros(DType::f32, {3, 1});
                                    })),
                    ValueError, op, "scale", "shape [3]", "shape [3, 1]");
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, opts([](Options& o) { o.scale = Tensor::zeros(DType::i32, {3}); })),
                    TypeError, op, "scale", "f32", "i32");
  // quant_mode 1: [end - start, H] or [1, H].
  auto dq = [](auto f) {
    return opts([&](Options& o) {
      o.quant_mode = 1;
      f(o);
    });
  };
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, dq([](Options& o) {
                                      o.scale = Tensor::zeros(DType::f32, {3, 2});
                                    })),
                    ValueError, op, "scale", "shape [4, 2] (end - start, H) or shape [1, 2] with quant_mode 1",
                    "shape [3, 2]");
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, dq([](Options& o) {
                                      o.active_expert_range = {1, 3};
                                      o.scale = Tensor::zeros(DType::f32, {4, 2});
                                    })),
                    ValueError, op, "scale", "shape [2, 2] (end - start, H)", "shape [4, 2]");
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, dq([](Options& o) {
                                      o.scale = Tensor::zeros(DType::f32, {1, 3});
                                    })),
                    ValueError, op, "scale", "or shape [1, 2]", "shape [1, 3]");
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, dq([](Options& o) { o.scale = Tensor::zeros(DType::f32, {2}); })),
                    ValueError, op, "scale", "shape [1, 2]", "shape [2]");
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, dq([](Options& o) {
                                      o.expert_num = -1;
                                      o.scale = Tensor::zeros(DType::f32, {4, 2});
                                    })),
                    ValueError, op, "scale", "shape [1, 2] (the expert range is unbounded", "shape [4, 2]");
  EXPECT_THROWS_MSG(init_routing_v2(x, ids, dq([](Options& o) {
                                      o.scale = Tensor::zeros(DType::bf16, {4, 2});
                                    })),
                    TypeError, op, "scale", "f32", "bf16");
}

TEST(InitRoutingV2, OutputErrorsLeaveBuffersUntouched) {
  const char* op = "init_routing_v2";
  Tensor x = Tensor::zeros(DType::f32, {3, 2});
  Tensor ids = example_experts();
  Options o;
  o.expert_num = 4;
  o.quant_mode = 1;
  const InitRoutingV2Result good{Tensor::full(DType::i8, {6, 2}, 42.0), Tensor::full(DType::i32, {6}, 42.0),
                                 Tensor::full(DType::i64, {4}, 42.0), Tensor::full(DType::f32, {6}, 42.0)};
  auto untouched = [&] {
    return testing::all_hold(
        {&good.expanded_x, &good.expanded_row_idx, &good.expert_token_cumsum_or_count, &good.expanded_scale}, 42.0);
  };
  // A bad input value is found before anything is written.
  EXPECT_THROWS_MSG(init_routing_v2_out(x, i32({3, 2}, {2, 0, 0, 3, 3, 9}), o, good), ValueError, op, "expert_idx",
                    "got 9 at [2, 1]");
  EXPECT_TRUE(untouched());

  InitRoutingV2Result bad = good;
  bad.expanded_x = Tensor::full(DType::f32, {6, 2}, 42.0);
  EXPECT_THROWS_MSG(init_routing_v2_out(x, ids, o, bad), TypeError, op, "expanded_x", "an output of dtype i8",
                    "got f32");
  EXPECT_TRUE(untouched());
  bad = good;
  bad.expanded_row_idx = Tensor::full(DType::i32, {5}, 42.0);
  EXPECT_THROWS_MSG(init_routing_v2_out(x, ids, o, bad), ValueError, op, "expanded_row_idx", "shape [6]", "shape [5]");
  EXPECT_TRUE(untouched());
  bad = good;
  bad.expert_token_cumsum_or_count = Tensor::full(DType::i64, {4, 2}, 42.0);
  EXPECT_THROWS_MSG(init_routing_v2_out(x, ids, o, bad), ValueError, op, "expert_token_cumsum_or_count", "shape [4]",
                    "shape [4, 2]");
  EXPECT_TRUE(untouched());
  bad = good;
  const float ro[6] = {};
  bad.expanded_scale = Tensor::view(ro, DType::f32, {6});
  EXPECT_THROWS_MSG(init_routing_v2_out(x, ids, o, bad), ValueError, op, "expanded_scale", "writable");
  EXPECT_TRUE(untouched());
  bad = good;
  Tensor backing = Tensor::zeros(DType::f32, {12});
  bad.expanded_scale = Tensor::view(backing.data(), DType::f32, {6}, {2});
  EXPECT_THROWS_MSG(init_routing_v2_out(x, ids, o, bad), ValueError, op, "expanded_scale", "contiguous");
  EXPECT_TRUE(untouched());
  bad = good;
  bad.expanded_x = Tensor{};
  EXPECT_THROWS_MSG(init_routing_v2_out(x, ids, o, bad), ValueError, op, "expanded_x", "a tensor", "none");
  EXPECT_TRUE(untouched());
}

}  // namespace
}  // namespace moefuse
