#include "moefuse/ops/swiglu.h"

#include <cmath>
#include <limits>

#include "base/check.h"
#include "base/groups.h"
#include "ops/dequant_swiglu_quant_fast.h"
#include "reference/dequant_swiglu_quant.h"

namespace moefuse {
namespace {

constexpr const char* kOp = "dequant_swiglu_quant";
constexpr int64_t kNoLimit = std::numeric_limits<int64_t>::max();

using check::number;

std::string dims(std::initializer_list<int64_t> d) { return Shape(d).str(); }

// An fp32 attribute: finite in fp32 (and > 0 when `positive`).
float fp32_attr(const char* arg, double v, bool positive) {
  if (!std::isfinite(v) || std::fabs(v) > double(std::numeric_limits<float>::max()) || (positive && !(v > 0.0)))
    check::fail_value(kOp, arg, positive ? "a finite fp32 value > 0" : "a finite fp32 value", number(v));
  return float(v);
}

void check_attributes(const DequantSwigluQuantOptions& o) {
  if (o.quant_mode != 0 && o.quant_mode != 1)
    check::fail_value(kOp, "quant_mode", "0 (static) or 1 (dynamic)", std::to_string(o.quant_mode));
  if (o.swiglu_mode < 0 || o.swiglu_mode > 3)
    check::fail_value(kOp, "swiglu_mode", "0, 1, 2 or 3", std::to_string(o.swiglu_mode));
  if (o.dst_type && *o.dst_type != 1)
    check::fail_value(kOp, "dst_type", "none or 1 (torch.int8; other output types are not supported)",
                      std::to_string(*o.dst_type));
  if (o.round_mode && *o.round_mode != 0)
    check::fail_value(kOp, "round_mode", "none or 0 (\"rint\"; other rounding modes are not supported)",
                      std::to_string(*o.round_mode));
  if (o.activate_dim && *o.activate_dim != -1 && *o.activate_dim != 1)
    check::fail_value(kOp, "activate_dim", "none, -1 or 1 (the last axis of x; other axes are not supported)",
                      std::to_string(*o.activate_dim));
  if (o.swiglu_mode == 1 && !o.activate_left)
    check::fail_value(kOp, "activate_left", "true with swiglu_mode 1 (the even elements are activated)", "false");
}

// Per-group tensor of one value per column: [N] or [1, N] without groups, [E, N] with them.
void check_row_tensor(const char* arg, const Tensor& t, bool grouped, int64_t e, int64_t n) {
  const bool ok = grouped ? (t.dim() == 2 && t.size(0) == e && t.size(1) == n)
                          : ((t.dim() == 1 && t.size(0) == n) || (t.dim() == 2 && t.size(0) == 1 && t.size(1) == n));
  if (!ok) {
    std::string expected =
        grouped ? "shape [E, 2H] = " + dims({e, n}) : "shape [2H] = " + dims({n}) + " or [1, 2H] = " + dims({1, n});
    check::fail_value(kOp, arg, expected, "shape " + t.shape().str());
  }
}

// quant_scale's layout; returns true when it holds one value per scale row.
bool check_quant_scale(const Tensor& t, bool grouped, int64_t e, int64_t h) {
  if (grouped) {
    if (t.dim() == 1 && t.size(0) == e) return true;
    if (t.dim() == 2 && t.size(0) == e && t.size(1) == 1) return true;
    if (t.dim() == 2 && t.size(0) == e && t.size(1) == h) return false;
    check::fail_value(kOp, "quant_scale",
                      "shape [E, H] = " + dims({e, h}) + ", [E] = " + dims({e}) + " or [E, 1] = " + dims({e, 1}),
                      "shape " + t.shape().str());
  }
  if ((t.dim() == 1 || (t.dim() == 2 && t.size(0) == 1)) && t.numel() == 1) return true;
  if ((t.dim() == 1 && t.size(0) == h) || (t.dim() == 2 && t.size(0) == 1 && t.size(1) == h)) return false;
  check::fail_value(kOp, "quant_scale", "shape [H] = " + dims({h}) + ", [1, H] = " + dims({1, h}) + ", [1] or [1, 1]",
                    "shape " + t.shape().str());
}

DequantSwigluQuantArgs checked_args(const Tensor& x, const DequantSwigluQuantOptions& o, Shape& y_shape,
                                               Shape& scale_shape) {
  check::defined(kOp, "x", x);
  check::dtype_in(kOp, "x", x, {DType::i32, DType::f32, DType::bf16, DType::f16});
  check::rank(kOp, "x", x, 2);
  if (x.size(1) % 2 != 0) check::fail_value(kOp, "x", "an even last extent (2H)", x.describe());
  const int64_t t_rows = x.size(0), h = x.size(1) / 2;
  check_attributes(o);

  DequantSwigluQuantArgs a;
  a.clamp_limit = fp32_attr("clamp_limit", o.clamp_limit, true);
  a.glu_alpha = fp32_attr("glu_alpha", o.glu_alpha, false);
  a.glu_bias = fp32_attr("glu_bias", o.glu_bias, false);
  a.x = x;
  a.activate_left = o.activate_left;
  a.dynamic = o.quant_mode == 1;
  a.swiglu_mode = int(o.swiglu_mode);

  // group_index: [G] counts or [G, 2] key-value rows.
  const Tensor& gi = o.group_index;
  const bool grouped = gi.defined();
  bool kv = false;
  if (grouped) {
    check::dtype_in(kOp, "group_index", gi, {DType::i64, DType::i32});
    if (!(gi.dim() == 1 || (gi.dim() == 2 && gi.size(1) == 2)))
      check::fail_value(kOp, "group_index", "a [G] count tensor or a [G, 2] key-value tensor", gi.describe());
    kv = gi.dim() == 2;
  }
  // E, the number of scale rows: G for counts; for key-value, the leading extent of the per-group tensors.
  int64_t e = 1;
  bool e_known = true;
  if (grouped && !kv) e = gi.size(0);
  if (kv) {
    e_known = false;
    for (const Tensor* t : {&o.weight_scale, &o.bias, &o.quant_scale, &o.quant_offset})
      if (t->defined() && t->dim() >= 1) {
        e = t->size(0);
        e_known = true;
        break;
      }
  }

  const bool int_x = x.dtype() == DType::i32;
  auto float_x = [&] {  // built only on failure
    return "none when x is " + std::string(dtype_name(x.dtype())) + " (only an i32 x is dequantised)";
  };
  if (int_x) {
    if (!o.weight_scale.defined()) check::fail_value(kOp, "weight_scale", "a tensor (required when x is i32)", "none");
  } else {
    if (o.weight_scale.defined()) check::fail_value(kOp, "weight_scale", float_x(), o.weight_scale.describe());
    if (o.activation_scale.defined())
      check::fail_value(kOp, "activation_scale", float_x(), o.activation_scale.describe());
    if (o.bias.defined()) check::fail_value(kOp, "bias", float_x(), o.bias.describe());
  }
  if (o.weight_scale.defined()) {
    check::dtype_in(kOp, "weight_scale", o.weight_scale, {DType::f32});
    check_row_tensor("weight_scale", o.weight_scale, grouped, e, 2 * h);
  }
  if (o.activation_scale.defined()) {
    const Tensor& as = o.activation_scale;
    check::dtype_in(kOp, "activation_scale", as, {DType::f32});
    if (!((as.dim() == 1 && as.size(0) == t_rows) || (as.dim() == 2 && as.size(0) == t_rows && as.size(1) == 1)))
      check::fail_value(kOp, "activation_scale", "shape [T] = " + dims({t_rows}) + " or [T, 1] = " + dims({t_rows, 1}),
                        "shape " + as.shape().str());
  }
  if (o.bias.defined()) {
    check::dtype_in(kOp, "bias", o.bias, {DType::i32, DType::f32, DType::bf16, DType::f16});
    check_row_tensor("bias", o.bias, grouped, e, 2 * h);
  }
  if (!a.dynamic && !o.quant_scale.defined())
    check::fail_value(kOp, "quant_scale", "a tensor (required with quant_mode 0, static)", "none");
  if (o.quant_scale.defined()) {
    check::dtype_in(kOp, "quant_scale", o.quant_scale, {DType::f32, DType::bf16, DType::f16});
    a.quant_per_group_scalar = check_quant_scale(o.quant_scale, grouped, e, h);
  }
  if (o.quant_offset.defined()) {
    if (a.dynamic)
      check::fail_value(kOp, "quant_offset", "none with quant_mode 1 (dynamic)", o.quant_offset.describe());
    check::dtype_in(kOp, "quant_offset", o.quant_offset, {DType::f32, DType::bf16, DType::f16});
    check::shape_is(kOp, "quant_offset", o.quant_offset, o.quant_scale.shape());
  }
  if (grouped) {
    a.group_type = kv ? GroupListType::key_value : GroupListType::count;
    check_group_list(kOp, "group_index", gi, int64_t(a.group_type), e_known ? e : kNoLimit, t_rows, kNoLimit);
  }

  a.weight_scale = o.weight_scale;
  a.activation_scale = o.activation_scale;
  a.bias = o.bias;
  a.quant_scale = o.quant_scale;
  a.quant_offset = o.quant_offset;
  a.group_index = gi;
  y_shape = Shape{t_rows, h};
  scale_shape = Shape{t_rows};
  return a;
}

// The fast path, or (when it declines) the scalar reference, which takes its own form of the arguments.
void run(const DequantSwigluQuantArgs& a, const Tensor& y, const Tensor& scale) {
  if (!dequant_swiglu_quant_fast(a, y, scale)) return;
  reference::DequantSwigluQuantArgs r;
  r.x = a.x;
  r.weight_scale = a.weight_scale;
  r.activation_scale = a.activation_scale;
  r.bias = a.bias;
  r.quant_scale = a.quant_scale;
  r.quant_offset = a.quant_offset;
  r.group_index = a.group_index;
  r.group_type = a.group_type;
  r.quant_per_group_scalar = a.quant_per_group_scalar;
  r.activate_left = a.activate_left;
  r.dynamic = a.dynamic;
  r.swiglu_mode = a.swiglu_mode;
  r.clamp_limit = a.clamp_limit;
  r.glu_alpha = a.glu_alpha;
  r.glu_bias = a.glu_bias;
  reference::dequant_swiglu_quant(r, y, scale);
}

}  // namespace

DequantSwigluQuantResult dequant_swiglu_quant(const Tensor& x, const DequantSwigluQuantOptions& options) {
  Shape y_shape, scale_shape;
  const DequantSwigluQuantArgs a = checked_args(x, options, y_shape, scale_shape);
  DequantSwigluQuantResult out{Tensor::empty(DType::i8, y_shape), Tensor::empty(DType::f32, scale_shape)};
  run(a, out.y, out.scale);
  return out;
}

void dequant_swiglu_quant_out(const Tensor& x, const DequantSwigluQuantOptions& options,
                              const DequantSwigluQuantResult& out) {
  Shape y_shape, scale_shape;
  const DequantSwigluQuantArgs a = checked_args(x, options, y_shape, scale_shape);
  check::output(kOp, "y", out.y, DType::i8, y_shape);
  check::output(kOp, "scale", out.scale, DType::f32, scale_shape);
  run(a, out.y, out.scale);
}

}  // namespace moefuse
