// npu_moe_init_routing_v2: validation, output shapes, dispatch to the reference (the op's header is init_routing.h).
#include "moefuse/ops/init_routing.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>

#include "base/check.h"
#include "base/default_pool.h"
#include "base/elements.h"
#include "base/scratch.h"
#include "kernels/rows/rows.h"
#include "reference/init_routing.h"

namespace moefuse {
namespace {

constexpr const char* kOp = "init_routing_v2";
constexpr int64_t kMaxI32 = std::numeric_limits<int32_t>::max();

std::string str(int64_t v) { return std::to_string(v); }

// The resolved arguments (defaults applied, modes decided) and the kernels the call runs, chosen once here.
struct InitRoutingV2Plan {
  int64_t rows = 0;          // dropless: R, the rows of expanded_x
  int64_t expert_start = 0;  // active range [expert_start, expert_end); expert_end may be INT64_MAX (unbounded)
  int64_t expert_end = 0;
  bool drop_pad = false;
  int64_t capacity = 0;     // drop/pad: C
  int64_t expert_num = -1;  // E, or -1 when not given
  int count_type = -1;      // 0 cumsum, 1 count, 2 key-value; -1 = the count output is empty (not computed)
  int quant_mode = -1;      // -1, 0 or 1
  int row_idx_type = 0;     // 0 gather, 1 scatter
  rows::QuantizeFn quantize = nullptr;  // quant_mode 1: the rows kernel for x's dtype
};

struct Resolved {
  InitRoutingV2Plan plan;
  Shape expanded_x, expanded_row_idx, counts, expanded_scale;
  DType x_out = DType::f32;
};

// Checks the scale / offset tensors for the quant mode. `range_len` is end - start, or -1 when the range is unbounded.
void check_quant_tensors(const Tensor& x, const InitRoutingV2Options& o, int64_t range_len) {
  const Tensor& scale = o.scale;
  const Tensor& offset = o.offset;
  const int64_t n = x.size(0), h = x.size(1);
  if (offset.defined() && o.quant_mode != 0)
    check::fail_value(kOp, "offset", "none (only quant_mode 0 takes an offset)",
                      offset.describe() + " with quant_mode " + str(o.quant_mode));
  if (o.quant_mode == 0) {
    if (!scale.defined()) check::fail_value(kOp, "scale", "a [1] f32 tensor with quant_mode 0 (static)", "none");
    if (!offset.defined()) check::fail_value(kOp, "offset", "a [1] f32 tensor with quant_mode 0 (static)", "none");
    check::dtype_in(kOp, "scale", scale, {DType::f32});
    check::dtype_in(kOp, "offset", offset, {DType::f32});
    check::shape_is(kOp, "scale", scale, {1});
    check::shape_is(kOp, "offset", offset, {1});
    return;
  }
  if (!scale.defined()) return;
  check::dtype_in(kOp, "scale", scale, {DType::f32});
  if (o.quant_mode == -1) {
    if (!(scale.shape() == Shape{n}))
      check::fail_value(kOp, "scale", "shape [" + str(n) + "] (one value per token, N) with quant_mode -1",
                        "shape " + scale.shape().str());
    return;
  }
  // quant_mode 1: a smooth scale per active expert [range_len, H], or one shared row [1, H].
  const bool one_row = scale.shape() == Shape{1, h};
  const bool per_expert = range_len > 0 && scale.shape() == Shape{range_len, h};
  if (!one_row && !per_expert) {
    std::string expected = "shape [1, " + str(h) + "]";
    if (range_len > 0)
      expected = "shape [" + str(range_len) + ", " + str(h) + "] (end - start, H) or " + expected;
    else
      expected += " (the expert range is unbounded without expert_num or active_expert_range)";
    check::fail_value(kOp, "scale", expected + " with quant_mode 1", "shape " + scale.shape().str());
  }
}

// Validates every argument (expert ids included) and resolves the plan and output shapes.
Resolved resolve(const Tensor& x, const Tensor& expert_idx, const InitRoutingV2Options& o) {
  check::rank(kOp, "x", x, 2);
  check::dtype_in(kOp, "x", x, {DType::f32, DType::bf16, DType::f16, DType::i8});
  check::rank(kOp, "expert_idx", expert_idx, 2);
  check::dtype_in(kOp, "expert_idx", expert_idx, {DType::i32});
  const int64_t n = x.size(0), h = x.size(1), k = expert_idx.size(1);
  if (expert_idx.size(0) != n)
    check::fail_value(kOp, "expert_idx", "shape [N, K] with N = " + str(n) + " (x.size(0))",
                      "shape " + expert_idx.shape().str());
  const int64_t nk = n * k;
  if (nk > kMaxI32)
    check::fail_value(kOp, "expert_idx", "at most 2^31 - 1 elements (N*K, indexed by i32)", expert_idx.describe());

  if (o.quant_mode < -1 || o.quant_mode > 1)
    check::fail_value(kOp, "quant_mode",
                      "-1 (none), 0 (static int8) or 1 (dynamic int8); the MX/FP8/HIF8/INT4 modes are not supported",
                      str(o.quant_mode));
  if (o.drop_pad_mode != 0 && o.drop_pad_mode != 1)
    check::fail_value(kOp, "drop_pad_mode", "0 (dropless) or 1 (drop/pad)", str(o.drop_pad_mode));
  if (o.expert_tokens_num_type < 0 || o.expert_tokens_num_type > 2)
    check::fail_value(kOp, "expert_tokens_num_type", "0 (cumsum), 1 (count) or 2 (key-value)",
                      str(o.expert_tokens_num_type));
  if (o.row_idx_type != 0 && o.row_idx_type != 1)
    check::fail_value(kOp, "row_idx_type", "0 (gather) or 1 (scatter)", str(o.row_idx_type));
  if (o.expert_num != -1 && o.expert_num < 1)
    check::fail_value(kOp, "expert_num", "-1 (not given) or a number of experts >= 1", str(o.expert_num));
  if (o.x_dtype && *o.x_dtype != x.dtype())
    check::fail_value(kOp, "x_dtype", "none or x's dtype (" + std::string(dtype_name(x.dtype())) + ")",
                      std::string(dtype_name(*o.x_dtype)));
  if (x.dtype() == DType::i8 && o.quant_mode != -1)
    check::fail_type(kOp, "x", "dtype f32, bf16 or f16 with quant_mode " + str(o.quant_mode), "i8");

  // Active expert range.
  const bool has_e = o.expert_num != -1;
  int64_t start = 0, end = has_e ? o.expert_num : std::numeric_limits<int64_t>::max();
  if (!o.active_expert_range.empty()) {
    const auto& r = o.active_expert_range;
    auto given = [&] {
      std::string s = "[";
      for (size_t i = 0; i < r.size(); ++i) s += (i ? ", " : "") + str(r[i]);
      return s + "]";
    };
    if (r.size() != 2) check::fail_value(kOp, "active_expert_range", "[] or [start, end] (two values)", given());
    if (r[0] < 0 || r[1] <= r[0] || (has_e && r[1] > o.expert_num)) {
      const std::string bound = has_e ? " <= expert_num (" + str(o.expert_num) + ")" : "";
      check::fail_value(kOp, "active_expert_range", "[start, end] with 0 <= start < end" + bound, given());
    }
    if (o.drop_pad_mode == 1 && (r[0] != 0 || r[1] != o.expert_num))
      check::fail_value(kOp, "active_expert_range",
                        "[] or the full range [0, " + str(o.expert_num) + "] (expert_num) with drop_pad_mode 1",
                        given());
    start = r[0];
    end = r[1];
  }
  const bool bounded = has_e || !o.active_expert_range.empty();

  if (o.expert_tokens_num_flag && !has_e)
    check::fail_value(kOp, "expert_num", "the number of experts (>= 1) when expert_tokens_num_flag is true", "-1");
  if (o.drop_pad_mode == 1) {
    if (!has_e) check::fail_value(kOp, "expert_num", "the number of experts (>= 1) with drop_pad_mode 1", "-1");
    if (o.row_idx_type != 0)
      check::fail_value(kOp, "row_idx_type", "0 (gather) with drop_pad_mode 1", str(o.row_idx_type));
    const int64_t c = o.expert_capacity;
    if (c < 1 || (n > 0 && c > n))
      check::fail_value(kOp, "expert_capacity", "1 <= expert_capacity <= N (" + str(n) + ") with drop_pad_mode 1",
                        str(c));
    if (c > kMaxI32 / o.expert_num)
      check::fail_value(
          kOp, "expert_capacity",
          "expert_num * expert_capacity <= 2^31 - 1 (slots indexed by i32), with expert_num " + str(o.expert_num),
          str(c));
  }
  check_quant_tensors(x, o, bounded ? end - start : -1);

  // Expert ids.
  const int64_t id_end = has_e ? o.expert_num : int64_t(kMaxI32) + 1;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c) {
      const int64_t e =
          load_element_int(expert_idx.data(), DType::i32, r * expert_idx.strides()[0] + c * expert_idx.strides()[1]);
      if (e < 0 || e >= id_end)
        check::fail_value(kOp, "expert_idx",
                          has_e ? "expert ids in [0, " + str(o.expert_num) + ") (expert_num)" : "expert ids >= 0",
                          str(e) + " at [" + str(r) + ", " + str(c) + "]");
    }

  Resolved s;
  auto& p = s.plan;
  p.expert_start = start;
  p.expert_end = end;
  p.drop_pad = o.drop_pad_mode == 1;
  p.expert_num = o.expert_num;
  p.quant_mode = int(o.quant_mode);
  p.row_idx_type = int(o.row_idx_type);
  if (o.quant_mode == 1) p.quantize = rows::select_rows_kernels().quantize[rows::slot(x.dtype())];
  s.x_out = o.quant_mode == -1 ? x.dtype() : DType::i8;
  s.expanded_row_idx = Shape{nk};
  if (p.drop_pad) {
    p.capacity = o.expert_capacity;
    p.count_type = 1;  // the pre-drop histogram over [0, E), whatever expert_tokens_num_type (decisions.md §7)
    s.expanded_x = Shape{o.expert_num, p.capacity, h};
    s.expanded_scale = Shape{o.expert_num * p.capacity};
    s.counts = Shape{o.expert_num};
  } else {
    p.rows = o.active_num <= 0 ? nk : std::min(o.active_num, nk);
    s.expanded_x = Shape{p.rows, h};
    s.expanded_scale = Shape{p.rows};
    const int type = int(o.expert_tokens_num_type);
    p.count_type = has_e ? type : -1;
    if (type == 2)
      s.counts = Shape{has_e ? o.expert_num : 0, 2};
    else
      s.counts = Shape{has_e ? end - start : 0};
  }
  return s;
}

// ─── Fast path ──────────────────────────────────────────────────────────────────────────────────────────────────
// The same outputs as reference::init_routing_v2, bit for bit, for the dropless modes with quant_mode -1 or 1:
// a counting sort over the active experts (stable, so the reference's permutation), then the rows written from
// typed pointers, spread over the operators' pool (each row of expanded_x / expanded_scale is written by one task).

// Active ranges up to this many experts take the counting sort (the hardware caps expert_num at 10240).
constexpr int64_t kMaxCountingRange = int64_t(1) << 20;

bool row_contiguous(const Tensor& t) { return t.size(1) <= 1 || t.strides()[1] == 1; }

// Why the fast path does not take these arguments (nullptr when it does).
const char* fast_path_declines(const Tensor& x, const Tensor& scale, const InitRoutingV2Plan& p) {
  if (p.drop_pad) return "drop/pad mode (drop_pad_mode 1)";
  if (p.quant_mode != -1 && p.quant_mode != 1) return "static quantisation (quant_mode 0)";
  if (p.expert_end - p.expert_start > kMaxCountingRange) return "an expert range over 2^20 (no expert_num)";
  if (!row_contiguous(x)) return "x's rows are not contiguous";
  if (p.quant_mode == 1 && scale.defined() && !row_contiguous(scale)) return "scale's rows are not contiguous";
  return nullptr;
}

// What the row writers read: expanded_x row i comes from token src[i] / k, routed to expert ids(src[i]).
struct RowSource {
  const int32_t* src;  // token-major positions t, in expanded_x's row order
  const int32_t* ids;  // expert_idx and its strides
  int64_t id_s0, id_s1, k;
  int64_t expert(int64_t t) const { return ids[(t / k) * id_s0 + (t % k) * id_s1]; }
};

void copy_rows(const Tensor& x, const Tensor& scale, const RowSource& rs, int64_t i0, int64_t i1,
               const InitRoutingV2Result& out) {
  const int64_t es = int64_t(x.element_size()), row_bytes = x.size(1) * es, x_row = x.strides()[0] * es;
  const auto* in = static_cast<const std::byte*>(x.data());
  auto* ex = static_cast<std::byte*>(out.expanded_x.data());
  auto* scales = out.expanded_scale.data_as<float>();
  const float* sc = scale.defined() ? scale.data_as<float>() : nullptr;
  for (int64_t i = i0; i < i1; ++i) {
    const int64_t tok = rs.src[i] / rs.k;
    if (row_bytes) std::memcpy(ex + i * row_bytes, in + tok * x_row, size_t(row_bytes));
    scales[i] = sc ? sc[tok * scale.strides()[0]] : 0.0f;
  }
}

// quant_mode 1: each row through the rows family's quantize kernel for x's dtype (fp32(x row), times the smooth
// scale row when given, then the dynamic int8 quantisation), as the reference does.
void quantize_rows(rows::QuantizeFn quantize, const Tensor& x, const Tensor& scale, int64_t expert_start,
                   const RowSource& rs, int64_t i0, int64_t i1, const InitRoutingV2Result& out) {
  const int64_t h = x.size(1), row_bytes = x.strides()[0] * int64_t(x.element_size());
  const auto* in = static_cast<const std::byte*>(x.data());
  const bool per_expert = scale.defined() && scale.size(0) > 1;
  auto* q = out.expanded_x.data_as<int8_t>();
  auto* scales = out.expanded_scale.data_as<float>();
  Scratch<float> v(h);
  for (int64_t i = i0; i < i1; ++i) {
    const int64_t t = rs.src[i];
    const float* s = scale.defined()
                         ? scale.data_as<float>() + (per_expert ? rs.expert(t) - expert_start : 0) * scale.strides()[0]
                         : nullptr;
    scales[i] = quantize(h, in + (t / rs.k) * row_bytes, s, v.data(), q + i * h);
  }
}

// Tokens [t0, t1) quantised once each into q [n, h] / qs [n] (no per-expert smooth scale: a token's row is then the
// same for all its experts).
void quantize_tokens(rows::QuantizeFn quantize, const Tensor& x, const Tensor& scale, int64_t t0, int64_t t1,
                     int8_t* q, float* qs) {
  const int64_t h = x.size(1), row_bytes = x.strides()[0] * int64_t(x.element_size());
  const auto* in = static_cast<const std::byte*>(x.data());
  Scratch<float> v(h);
  const float* s = scale.defined() ? scale.data_as<float>() : nullptr;
  for (int64_t t = t0; t < t1; ++t) qs[t] = quantize(h, in + t * row_bytes, s, v.data(), q + t * h);
}

void write_rows(const Tensor& x, const Tensor& scale, const InitRoutingV2Plan& p, const RowSource& rs,
                int64_t i0, int64_t i1, const InitRoutingV2Result& out) {
  if (p.quant_mode == -1) return copy_rows(x, scale, rs, i0, i1, out);
  quantize_rows(p.quantize, x, scale, p.expert_start, rs, i0, i1, out);
}

// The count output from the histogram c[0 .. end - start) (see init_routing_v2's header comment).
void write_counts(const int64_t* c, const InitRoutingV2Plan& p, const Tensor& counts) {
  if (p.count_type < 0) return;
  const int64_t span = p.expert_end - p.expert_start;
  int64_t* dst = counts.data_as<int64_t>();
  if (p.count_type == 0) {
    std::inclusive_scan(c, c + span, dst);
  } else if (p.count_type == 1) {
    std::copy(c, c + span, dst);
  } else {
    std::fill(dst, dst + counts.numel(), int64_t{0});  // also the (0, 0) terminator and the rows after it
    for (int64_t e = 0; e < span; ++e)
      if (c[e] > 0) {
        *dst++ = p.expert_start + e;
        *dst++ = c[e];
      }
  }
}

void fast_init_routing_v2(const Tensor& x, const Tensor& expert_idx, const Tensor& scale,
                          const InitRoutingV2Plan& p, const InitRoutingV2Result& out) {
  const int64_t n = x.size(0), h = x.size(1), k = expert_idx.size(1), nk = n * k;
  const int64_t start = p.expert_start, end = p.expert_end;
  RowSource rs{nullptr, expert_idx.data_as<int32_t>(), expert_idx.strides()[0], expert_idx.strides()[1], k};
  auto for_each_position = [&](auto&& fn) {  // fn(t, expert id), t = n*K + k ascending
    for (int64_t r = 0; r < n; ++r)
      for (int64_t c = 0; c < k; ++c) fn(r * k + c, int64_t(rs.ids[r * rs.id_s0 + c * rs.id_s1]));
  };

  // Counting sort of the active positions by expert: histogram, exclusive offsets, then positions in ascending t.
  Scratch<int64_t> next(end - start, 0);
  for_each_position([&](int64_t, int64_t e) {
    if (e >= start && e < end) ++next[e - start];
  });
  write_counts(next.data(), p, out.expert_token_cumsum_or_count);
  int64_t active = 0;  // A
  for (int64_t& c : next) {
    const int64_t count = c;
    c = active;
    active += count;
  }

  // row_idx_type 1 returns the sorted positions themselves (then -1); type 0 their inverse (-1 where not routed).
  auto* eri = out.expanded_row_idx.data_as<int32_t>();
  Scratch<int32_t> sorted(p.row_idx_type == 0 ? active : 0);
  int32_t* src = p.row_idx_type == 0 ? sorted.data() : eri;
  if (p.row_idx_type == 0) std::fill(eri, eri + nk, int32_t{-1});
  for_each_position([&](int64_t t, int64_t e) {
    if (e < start || e >= end) return;
    const int64_t i = next[e - start]++;
    src[i] = int32_t(t);
    if (p.row_idx_type == 0) eri[t] = int32_t(i);
  });
  if (p.row_idx_type == 1) std::fill(eri + active, eri + nk, int32_t{-1});

  // Rows [0, valid) from their tokens, the rest zeros with scale 0 (decisions.md §4).
  rs.src = src;
  const int64_t valid = std::min(p.rows, active);
  const bool per_token = p.quant_mode == 1 && k > 1 && !(scale.defined() && scale.size(0) > 1);
  if (per_token) {
    // Without a per-expert smooth scale a token's int8 row is the same for each of its K rows: quantise every
    // token once, then copy (K times less quantisation, the same bits).
    Scratch<int8_t> tq(n * h);
    Scratch<float> ts(n);
    parallel_rows(n, h, [&](int64_t t0, int64_t t1) { quantize_tokens(p.quantize, x, scale, t0, t1, tq.data(), ts.data()); });
    auto* ex = out.expanded_x.data_as<int8_t>();
    auto* scales = out.expanded_scale.data_as<float>();
    parallel_rows(valid, h, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t tok = src[i] / k;
        if (h) std::memcpy(ex + i * h, tq.data() + tok * h, size_t(h));
        scales[i] = ts[tok];
      }
    });
  } else {
    parallel_rows(valid, h, [&](int64_t i0, int64_t i1) { write_rows(x, scale, p, rs, i0, i1, out); });
  }
  const size_t row_bytes = size_t(h) * out.expanded_x.element_size();
  if (p.rows > valid) {
    std::memset(static_cast<std::byte*>(out.expanded_x.data()) + size_t(valid) * row_bytes, 0,
                size_t(p.rows - valid) * row_bytes);
    std::fill(out.expanded_scale.data_as<float>() + valid, out.expanded_scale.data_as<float>() + p.rows, 0.0f);
  }
}

void run(const Tensor& x, const Tensor& expert_idx, const InitRoutingV2Options& o, const Resolved& s,
         const InitRoutingV2Result& out) {
  if (!fast_path_declines(x, o.scale, s.plan)) return fast_init_routing_v2(x, expert_idx, o.scale, s.plan, out);
  const InitRoutingV2Plan& p = s.plan;
  reference::InitRoutingV2Plan rp;  // the reference's own form of the plan
  rp.rows = p.rows;
  rp.expert_start = p.expert_start;
  rp.expert_end = p.expert_end;
  rp.drop_pad = p.drop_pad;
  rp.capacity = p.capacity;
  rp.expert_num = p.expert_num;
  rp.count_type = p.count_type;
  rp.quant_mode = p.quant_mode;
  rp.row_idx_type = p.row_idx_type;
  reference::init_routing_v2(x, expert_idx, o.scale, o.offset, rp, out.expanded_x, out.expanded_row_idx,
                             out.expert_token_cumsum_or_count, out.expanded_scale);
}

}  // namespace

InitRoutingV2Result init_routing_v2(const Tensor& x, const Tensor& expert_idx, const InitRoutingV2Options& options) {
  const Resolved s = resolve(x, expert_idx, options);
  InitRoutingV2Result out;
  out.expanded_x = Tensor::empty(s.x_out, s.expanded_x);
  out.expanded_row_idx = Tensor::empty(DType::i32, s.expanded_row_idx);
  out.expert_token_cumsum_or_count = Tensor::empty(DType::i64, s.counts);
  out.expanded_scale = Tensor::empty(DType::f32, s.expanded_scale);
  run(x, expert_idx, options, s, out);
  return out;
}

void init_routing_v2_out(const Tensor& x, const Tensor& expert_idx, const InitRoutingV2Options& options,
                         const InitRoutingV2Result& out) {
  const Resolved s = resolve(x, expert_idx, options);
  check::output(kOp, "expanded_x", out.expanded_x, s.x_out, s.expanded_x);
  check::output(kOp, "expanded_row_idx", out.expanded_row_idx, DType::i32, s.expanded_row_idx);
  check::output(kOp, "expert_token_cumsum_or_count", out.expert_token_cumsum_or_count, DType::i64, s.counts);
  check::output(kOp, "expanded_scale", out.expanded_scale, DType::f32, s.expanded_scale);
  run(x, expert_idx, options, s, out);
}

}  // namespace moefuse
