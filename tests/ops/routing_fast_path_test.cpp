// The fast paths of init_routing_v2 and finalize_routing (src/ops/) against their scalar references
// (src/reference/), bit for bit. This is the one place where the tests call src/reference on purpose: the references
// are the oracles (themselves tested against independent oracles in init_routing_v2_test.cpp and
// finalize_routing_test.cpp), and the ops must give their exact bits whichever path a call takes. The sweeps hit
// both paths: eligible calls (the fast path) and calls the fast path leaves to the reference (non-contiguous rows,
// drop/pad, static quantisation, an unbounded expert range), at 1, 2 and 3 operator threads.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "moefuse/ops.h"
#include "moefuse/threads.h"
#include "reference/finalize_routing.h"
#include "reference/init_routing.h"
#include "util/compare.h"
#include "util/random.h"

namespace moefuse {
namespace {

using testing::Rng;

constexpr DType kFloatTypes[] = {DType::f32, DType::bf16, DType::f16};
constexpr int kThreadCounts[] = {1, 2, 3};

struct Threads {
  explicit Threads(int n) { set_num_threads(n); }
  ~Threads() { set_num_threads(0); }
};

std::string str(const Shape& s) { return s.str(); }

// fn(N, K, E, H, dtype, threads) for every N in {0, 1, 7, 300}, K in {1, 2, 8}, E in {1, 8, 64}, H in
// {1, 17, 64, 2048}, each with a dtype and a thread count (set while fn runs) drawn from `rng`.
template <class Fn>
void for_each_sweep_shape(Rng& rng, Fn&& fn) {
  for (int64_t n : {0, 1, 7, 300})
    for (int64_t k : {1, 2, 8})
      for (int64_t e : {1, 8, 64})
        for (int64_t h : {1, 17, 64, 2048}) {
          const DType dt = kFloatTypes[rng.integer(0, 2)];
          const int threads = kThreadCounts[rng.integer(0, 2)];
          Threads use(threads);
          fn(n, k, e, h, dt, threads);
        }
}

// Puts NaN, +-inf, an all-zero row, -0.0 and exact quantisation ties (127, +-0.5, +-2.5: s = 1) into some rows of a
// float [N, H] tensor, so that the quantisation's special rules are exercised.
void add_special_rows(Tensor& x, Rng& rng) {
  const int64_t n = x.size(0), h = x.size(1);
  if (n < 5 || h < 1) return;
  const float inf = std::numeric_limits<float>::infinity();
  x.set_item({1, rng.integer(0, h - 1)}, std::numeric_limits<float>::quiet_NaN());
  x.set_item({2, rng.integer(0, h - 1)}, rng.coin() ? inf : -inf);
  for (int64_t j = 0; j < h; ++j) x.set_item({3, j}, j % 2 ? -0.0 : 0.0);
  const double ties[] = {127.0, 0.5, -0.5, 2.5, -2.5, 1.5, -126.5};
  for (int64_t j = 0; j < h; ++j) x.set_item({4, j}, ties[j % 7]);
}

// Random expert ids in [0, e); every other call crowds them into the first quarter (empty experts).
Tensor expert_ids(Rng& rng, int64_t n, int64_t k, int64_t e, bool strided) {
  const int64_t hi = rng.coin() ? e - 1 : (e - 1) / 4;
  if (!strided) return rng.int_tensor(DType::i32, {n, k}, 0, hi);
  return rng.int_tensor(DType::i32, {k, n}, 0, hi).transpose(0, 1);
}

// --- init_routing_v2 ---------------------------------------------------------------------------------------------

struct V2Case {
  Tensor x, expert_idx;
  InitRoutingV2Options o;
};

// The reference's plan for `o`, as the op resolves it (the torch_npu semantics, init_routing.h), and output buffers for
// it.
reference::InitRoutingV2Plan plan_of(const V2Case& c) {
  const InitRoutingV2Options& o = c.o;
  const int64_t nk = c.expert_idx.numel();
  const bool has_e = o.expert_num != -1;
  reference::InitRoutingV2Plan p;
  p.expert_start = 0;
  p.expert_end = has_e ? o.expert_num : std::numeric_limits<int64_t>::max();
  if (!o.active_expert_range.empty()) {
    p.expert_start = o.active_expert_range[0];
    p.expert_end = o.active_expert_range[1];
  }
  p.drop_pad = o.drop_pad_mode == 1;
  p.expert_num = o.expert_num;
  p.quant_mode = int(o.quant_mode);
  p.row_idx_type = int(o.row_idx_type);
  if (p.drop_pad) {
    p.capacity = o.expert_capacity;
    p.count_type = 1;
  } else {
    p.rows = o.active_num <= 0 ? nk : std::min(o.active_num, nk);
    p.count_type = has_e ? int(o.expert_tokens_num_type) : -1;
  }
  return p;
}

InitRoutingV2Result reference_v2(const V2Case& c) {
  const reference::InitRoutingV2Plan p = plan_of(c);
  const int64_t h = c.x.size(1), nk = c.expert_idx.numel(), e = c.o.expert_num;
  const DType xd = c.o.quant_mode == -1 ? c.x.dtype() : DType::i8;
  InitRoutingV2Result r;
  r.expanded_row_idx = Tensor::empty(DType::i32, {nk});
  if (p.drop_pad) {
    r.expanded_x = Tensor::empty(xd, {e, p.capacity, h});
    r.expanded_scale = Tensor::empty(DType::f32, {e * p.capacity});
    r.expert_token_cumsum_or_count = Tensor::empty(DType::i64, {e});
  } else {
    r.expanded_x = Tensor::empty(xd, {p.rows, h});
    r.expanded_scale = Tensor::empty(DType::f32, {p.rows});
    const bool has_e = e != -1;
    r.expert_token_cumsum_or_count =
        Tensor::empty(DType::i64, c.o.expert_tokens_num_type == 2 ? Shape{has_e ? e : 0, 2}
                                                                  : Shape{has_e ? p.expert_end - p.expert_start : 0});
  }
  reference::init_routing_v2(c.x, c.expert_idx, c.o.scale, c.o.offset, p, r.expanded_x, r.expanded_row_idx,
                             r.expert_token_cumsum_or_count, r.expanded_scale);
  return r;
}

// The op (allocating and _out forms, into buffers full of garbage) equals the reference bit for bit.
void expect_v2_matches(const V2Case& c, const std::string& what) {
  SCOPED_TRACE(what);
  const InitRoutingV2Result want = reference_v2(c);
  const InitRoutingV2Result got = init_routing_v2(c.x, c.expert_idx, c.o);
  EXPECT_TENSOR_EQ(want.expanded_x, got.expanded_x);
  EXPECT_TENSOR_EQ(want.expanded_row_idx, got.expanded_row_idx);
  EXPECT_TENSOR_EQ(want.expert_token_cumsum_or_count, got.expert_token_cumsum_or_count);
  EXPECT_TENSOR_EQ(want.expanded_scale, got.expanded_scale);
  InitRoutingV2Result out;
  out.expanded_x = Tensor::full(want.expanded_x.dtype(), want.expanded_x.shape(), 7);
  out.expanded_row_idx = Tensor::full(DType::i32, want.expanded_row_idx.shape(), 7);
  out.expert_token_cumsum_or_count = Tensor::full(DType::i64, want.expert_token_cumsum_or_count.shape(), 7);
  out.expanded_scale = Tensor::full(DType::f32, want.expanded_scale.shape(), 7);
  init_routing_v2_out(c.x, c.expert_idx, c.o, out);
  EXPECT_TENSOR_EQ(want.expanded_x, out.expanded_x);
  EXPECT_TENSOR_EQ(want.expanded_row_idx, out.expanded_row_idx);
  EXPECT_TENSOR_EQ(want.expert_token_cumsum_or_count, out.expert_token_cumsum_or_count);
  EXPECT_TENSOR_EQ(want.expanded_scale, out.expanded_scale);
}

// x [n, h] of `dt`: contiguous, or with a row stride of h + 3 (still contiguous along H: the fast path), or
// transposed (stride n along H: the reference).
Tensor make_x(Rng& rng, DType dt, int64_t n, int64_t h, int layout) {
  auto fill = [&](const Shape& s) {
    return dt == DType::i8 ? rng.int_tensor(dt, s, -128, 127) : rng.normal_tensor(dt, s);
  };
  Tensor x;
  if (layout == 0) x = fill({n, h});
  if (layout == 1) x = fill({n, h + 3}).narrow(1, 0, h);
  if (layout == 2) x = fill({h, n}).transpose(0, 1);
  if (dt != DType::i8) add_special_rows(x, rng);
  return x;
}

// One dropless case with the variant's options drawn from `rng` where the sweep does not set them.
V2Case v2_case(Rng& rng, DType dt, int64_t n, int64_t k, int64_t e, int64_t h, int quant, bool with_scale,
               int layout) {
  V2Case c;
  c.x = make_x(rng, dt, n, h, layout);
  c.expert_idx = expert_ids(rng, n, k, e, rng.coin(0.25));
  InitRoutingV2Options& o = c.o;
  o.expert_num = e;
  o.quant_mode = quant;
  o.row_idx_type = rng.integer(0, 1);
  o.expert_tokens_num_type = rng.integer(0, 2);
  o.expert_tokens_num_flag = rng.coin();
  if (rng.coin(0.25)) o.active_num = rng.integer(1, n * k + 1);
  int64_t range = e;
  if (e > 1 && rng.coin(0.4)) {
    const int64_t start = rng.integer(0, e - 1), end = rng.integer(start + 1, e);
    o.active_expert_range = {start, end};
    range = end - start;
  }
  if (with_scale) {
    if (quant == -1) o.scale = rng.uniform_tensor(DType::f32, {n});
    else o.scale = rng.uniform_tensor(DType::f32, rng.coin() ? Shape{range, h} : Shape{1, h}, 0.5f, 2.0f);
  }
  return c;
}

TEST(InitRoutingV2FastPathTest, ShapeSweepMatchesReference) {
  Rng rng(2024);
  for_each_sweep_shape(rng, [&](int64_t n, int64_t k, int64_t e, int64_t h, DType dt, int threads) {
    const int quant = rng.coin() ? -1 : 1;
    const bool with_scale = rng.coin();
    const V2Case c = v2_case(rng, dt, n, k, e, h, quant, with_scale, 0);
    expect_v2_matches(c, "N " + std::to_string(n) + " K " + std::to_string(k) + " E " + std::to_string(e) + " H " +
                             std::to_string(h) + " " + std::string(dtype_name(dt)) + " quant " +
                             std::to_string(quant) + (with_scale ? " scale" : "") + ", threads " +
                             std::to_string(threads));
  });
}

TEST(InitRoutingV2FastPathTest, EveryModeDtypeLayoutAndThreadCount) {
  Rng rng(77);
  for (DType dt : {DType::f32, DType::bf16, DType::f16, DType::i8})
    for (int quant : {-1, 1})
      for (bool with_scale : {false, true})
        for (int layout : {0, 1, 2})
          for (int threads : kThreadCounts) {
            if (dt == DType::i8 && quant != -1) continue;
            Threads use(threads);
            for (int rep = 0; rep < 3; ++rep) {
              V2Case c = v2_case(rng, dt, 300, 2, 8, 64, quant, with_scale, layout);
              expect_v2_matches(c, std::string(dtype_name(dt)) + " quant " + std::to_string(quant) +
                                       (with_scale ? " scale" : "") + " layout " + std::to_string(layout) +
                                       " threads " + std::to_string(threads) + " rep " + std::to_string(rep) +
                                       " row_idx_type " + std::to_string(c.o.row_idx_type) + " count type " +
                                       std::to_string(c.o.expert_tokens_num_type));
            }
          }
}

TEST(InitRoutingV2FastPathTest, CallsTheFastPathLeavesToTheReference) {
  Rng rng(5);
  for (int threads : kThreadCounts) {
    Threads use(threads);
    for (DType dt : kFloatTypes) {
      // Smooth scale strided along H (quant_mode 1 reads it through strides on the reference).
      V2Case c = v2_case(rng, dt, 40, 4, 8, 17, 1, false, 0);
      c.o.scale = rng.uniform_tensor(DType::f32, {17, 8}).transpose(0, 1);
      c.o.active_expert_range = {};
      expect_v2_matches(c, "strided smooth scale");
      // Static quantisation.
      c = v2_case(rng, dt, 40, 4, 8, 17, 0, false, 0);
      c.o.scale = Tensor::full(DType::f32, {1}, 20.0);
      c.o.offset = Tensor::full(DType::f32, {1}, 0.5);
      expect_v2_matches(c, "quant_mode 0");
      // Drop/pad.
      c = v2_case(rng, dt, 40, 4, 8, 17, -1, false, 0);
      c.o.drop_pad_mode = 1;
      c.o.expert_capacity = 5;
      c.o.row_idx_type = 0;
      c.o.active_expert_range = {};
      expect_v2_matches(c, "drop_pad_mode 1");
      // No expert_num, no range: every id >= 0 is active (unbounded: the reference's comparison sort).
      c = v2_case(rng, dt, 40, 4, 8, 17, 1, false, 0);
      c.o.expert_num = -1;
      c.o.expert_tokens_num_flag = false;
      c.o.active_expert_range = {};
      c.expert_idx = rng.int_tensor(DType::i32, {40, 4}, 0, 1000000);
      expect_v2_matches(c, "unbounded expert range");
      // No expert_num but a range: bounded, the fast path; ids past the range are not routed.
      c.o.active_expert_range = {3, 500000};
      expect_v2_matches(c, "range without expert_num");
    }
  }
}

// --- finalize_routing --------------------------------------------------------------------------------------------

struct FinalizeCase {
  Tensor rows, skip1, skip2, bias, scales, src_to_dst, expert_ids;
  int64_t mode = 2, k = 1;
  Tensor storage;  // owns src_to_dst's elements when it is a strided view
};

// A [r, c] float tensor: contiguous, with a row stride of c + 2 (fast path), or transposed (the reference).
Tensor matrix(Rng& rng, DType dt, int64_t r, int64_t c, int layout) {
  if (layout == 1) return rng.normal_tensor(dt, {r, c + 2}).narrow(1, 0, c);
  if (layout == 2) return rng.normal_tensor(dt, {c, r}).transpose(0, 1);
  return rng.normal_tensor(dt, {r, c});
}

// N tokens, K slots, H columns, E experts, rows of `dt`; skips, bias, scales present or not; `layout` applies to
// the rows and, when given, skip1 (layouts as matrix()).
FinalizeCase finalize_case(Rng& rng, DType dt, int64_t n, int64_t k, int64_t e, int64_t h, int mode, bool skip,
                           int layout) {
  FinalizeCase c;
  c.mode = mode;
  c.k = k;
  const bool drop_pad = mode == 1 || mode == 3;
  const int64_t cap = std::clamp<int64_t>(n, 1, 8);  // E*C rows; any d in [0, E*C) is valid input
  const int64_t num_rows = drop_pad ? e * cap : n * k;
  if (drop_pad) {
    c.rows = rng.normal_tensor(dt, {e, cap, h + (layout == 1 ? 2 : 0)});
    if (layout == 1) c.rows = c.rows.narrow(2, 0, h);
    if (layout == 2) c.rows = rng.normal_tensor(dt, {e, h, cap}).transpose(1, 2);
  } else {
    c.rows = matrix(rng, dt, num_rows, h, layout);
  }
  if (skip) {
    c.skip1 = matrix(rng, dt, n, h, layout);
    if (rng.coin()) c.skip2 = matrix(rng, dt, n, h, 0);
  }
  if (rng.coin()) {
    c.expert_ids = rng.int_tensor(rng.coin() ? DType::i32 : DType::i64, {n, k}, 0, e - 1);
    if (rng.coin()) c.bias = matrix(rng, dt, e, h, rng.coin() ? 0 : 1);
  }
  if (rng.coin(0.8)) {
    c.scales = rng.uniform_tensor(rng.coin() ? DType::f32 : dt, {n, k}, -1.0f, 2.0f);
    if (n > 0 && rng.coin(0.3)) c.scales.set_item({0, 0}, std::numeric_limits<float>::infinity());
  }
  // A destination per pair, some -1 (dropped), as i32 or i64 and sometimes strided.
  c.storage = Tensor::empty(rng.coin() ? DType::i32 : DType::i64, {n * k * 2});
  for (int64_t j = 0; j < n * k * 2; ++j)
    c.storage.set_item({j}, num_rows == 0 || rng.coin(0.1) ? -1.0 : double(rng.integer(0, num_rows - 1)));
  c.src_to_dst = rng.coin() ? c.storage.narrow(0, 0, n * k).clone()
                            : Tensor::view(c.storage.data(), c.storage.dtype(), {n * k}, {2});
  return c;
}

void expect_finalize_matches(const FinalizeCase& c, const std::string& what) {
  SCOPED_TRACE(what);
  const int64_t n = c.src_to_dst.size(0) / c.k, h = c.rows.size(-1);
  Tensor want = Tensor::empty(c.rows.dtype(), {n, h});
  reference::finalize_routing(c.rows, c.skip1, c.skip2, c.bias, c.scales, c.src_to_dst, c.expert_ids, c.mode, c.k,
                              want);
  EXPECT_TENSOR_EQ(want, finalize_routing(c.rows, c.skip1, c.skip2, c.bias, c.scales, c.src_to_dst, c.expert_ids,
                                          c.mode, c.k));
  Tensor out = Tensor::full(c.rows.dtype(), {n, h}, 7);
  finalize_routing_out(c.rows, c.skip1, c.skip2, c.bias, c.scales, c.src_to_dst, c.expert_ids, c.mode, c.k, out);
  EXPECT_TENSOR_EQ(want, out);
}

std::string finalize_what(const FinalizeCase& c, int threads) {
  return "rows " + str(c.rows.shape()) + " " + std::string(dtype_name(c.rows.dtype())) + " mode " +
         std::to_string(c.mode) + " K " + std::to_string(c.k) + (c.skip1.defined() ? " skip1" : "") +
         (c.skip2.defined() ? " skip2" : "") + (c.bias.defined() ? " bias" : "") +
         (c.scales.defined() ? " scales" : "") + " threads " + std::to_string(threads);
}

TEST(FinalizeRoutingFastPathTest, ShapeSweepMatchesReference) {
  Rng rng(99);
  for_each_sweep_shape(rng, [&](int64_t n, int64_t k, int64_t e, int64_t h, DType dt, int threads) {
    const FinalizeCase c = finalize_case(rng, dt, n, k, e, h, int(rng.integer(0, 3)), rng.coin(), 0);
    expect_finalize_matches(c, finalize_what(c, threads));
  });
}

TEST(FinalizeRoutingFastPathTest, EveryModeDtypeLayoutAndThreadCount) {
  Rng rng(3);
  for (DType dt : kFloatTypes)
    for (int mode = 0; mode <= 3; ++mode)
      for (bool skip : {false, true})
        for (int layout : {0, 1, 2})
          for (int threads : kThreadCounts) {
            Threads use(threads);
            for (int rep = 0; rep < 2; ++rep) {
              const FinalizeCase c = finalize_case(rng, dt, 300, 2, 8, 64, mode, skip, layout);
              expect_finalize_matches(c, finalize_what(c, threads));
            }
          }
}

TEST(FinalizeRoutingFastPathTest, NonFiniteValuesAndNoSkipStartRule) {
  // Without skip the sum starts from the first term itself: -0.0 stays -0.0 (0 + -0 would give +0), and NaN / inf
  // propagate as the reference's order makes them.
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (DType dt : kFloatTypes) {
    Tensor rows = Tensor::empty(dt, {4, 3});
    const float vals[4][3] = {{-0.0f, inf, 1.0f}, {-0.0f, -inf, nan}, {2.0f, 3.0f, -0.0f}, {1e30f, -1e30f, 0.5f}};
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t j = 0; j < 3; ++j) rows.set_item({i, j}, vals[i][j]);
    const Tensor src = Tensor::from_values<int32_t>({4}, {0, 1, 2, -1});
    for (bool scaled : {false, true}) {
      const Tensor scales = scaled ? Tensor::from_values<float>({2, 2}, {1.0f, -0.0f, inf, 2.0f}) : Tensor{};
      FinalizeCase c{rows, {}, {}, {}, scales, src, {}, 2, 2, {}};
      expect_finalize_matches(c, std::string(dtype_name(dt)) + (scaled ? " scaled" : ""));
    }
  }
}

}  // namespace
}  // namespace moefuse
