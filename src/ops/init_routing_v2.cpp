// npu_moe_init_routing_v2: validation, output shapes, dispatch to the reference (the op's header is init_routing.h).
#include "moefuse/ops/init_routing.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>

#include "base/check.h"
#include "base/elements.h"
#include "reference/init_routing.h"

namespace moefuse {
namespace {

constexpr const char* kOp = "init_routing_v2";
constexpr int64_t kMaxI32 = std::numeric_limits<int32_t>::max();

std::string str(int64_t v) { return std::to_string(v); }

struct Resolved {
  reference::InitRoutingV2Plan plan;
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

void run(const Tensor& x, const Tensor& expert_idx, const InitRoutingV2Options& o, const Resolved& s,
         const InitRoutingV2Result& out) {
  reference::init_routing_v2(x, expert_idx, o.scale, o.offset, s.plan, out.expanded_x, out.expanded_row_idx,
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
