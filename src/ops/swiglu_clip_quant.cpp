#include "moefuse/ops/swiglu.h"

#include <cmath>
#include <limits>

#include "base/check.h"
#include "base/elements.h"
#include "base/groups.h"
#include "ops/swiglu_clip_quant_fast.h"
#include "reference/swiglu_clip_quant.h"

namespace moefuse {
namespace {

constexpr const char* kOp = "swiglu_clip_quant";

using check::number;

void check_args(const Tensor& x, const Tensor& group_index, const Tensor& group_alpha, const SwigluClipQuantOptions& o,
                Shape& y_shape, Shape& scale_shape) {
  check::defined(kOp, "x", x);
  check::dtype_in(kOp, "x", x, {DType::bf16, DType::f32, DType::f16});
  check::rank(kOp, "x", x, 2);
  if (x.size(1) % 2 != 0) check::fail_value(kOp, "x", "an even last extent (2H)", x.describe());
  if (o.quant_mode != 1)
    check::fail_value(kOp, "quant_mode", "1 (dynamic; the only mode supported)", std::to_string(o.quant_mode));
  if (o.clamp_mode != 1)
    check::fail_value(kOp, "clamp_mode", "1 (clamp with group_alpha; the only mode supported)",
                      std::to_string(o.clamp_mode));

  check::defined(kOp, "group_index", group_index);
  constexpr int64_t kNoLimit = std::numeric_limits<int64_t>::max();
  check_group_list(kOp, "group_index", group_index, int64_t(GroupListType::count), kNoLimit, x.size(0), kNoLimit);
  const int64_t g = group_index.size(0);

  check::dtype_in(kOp, "group_alpha", group_alpha, {DType::f32});
  check::shape_is(kOp, "group_alpha", group_alpha, Shape{g});
  for (int64_t i = 0; i < g; ++i) {
    const float a = load_element_f32(group_alpha.data(), DType::f32, i * group_alpha.stride(0));
    if (!std::isfinite(a) || a < 0.0f)
      check::fail_value(kOp, "group_alpha[" + std::to_string(i) + "]", "a finite value >= 0", number(a));
  }
  y_shape = Shape{x.size(0), x.size(1) / 2};
  scale_shape = Shape{x.size(0)};
}

// The vector path (swiglu_clip_quant_fast.h) where it takes x, else the scalar reference: the same bits.
void compute(const Tensor& x, const Tensor& group_index, const Tensor& group_alpha, bool activate_left,
             const SwigluClipQuantResult& out) {
  if (swiglu_clip_quant_fast(x, group_index, group_alpha, activate_left, out.y, out.scale, active_isa()) == nullptr)
    return;
  reference::swiglu_clip_quant(x, group_index, group_alpha, activate_left, out.y, out.scale);
}

}  // namespace

SwigluClipQuantResult swiglu_clip_quant(const Tensor& x, const Tensor& group_index, const Tensor& group_alpha,
                                        const SwigluClipQuantOptions& options) {
  Shape y_shape, scale_shape;
  check_args(x, group_index, group_alpha, options, y_shape, scale_shape);
  SwigluClipQuantResult out{Tensor::empty(DType::i8, y_shape), Tensor::empty(DType::f32, scale_shape)};
  compute(x, group_index, group_alpha, options.activate_left, out);
  return out;
}

void swiglu_clip_quant_out(const Tensor& x, const Tensor& group_index, const Tensor& group_alpha,
                           const SwigluClipQuantOptions& options, const SwigluClipQuantResult& out) {
  Shape y_shape, scale_shape;
  check_args(x, group_index, group_alpha, options, y_shape, scale_shape);
  check::output(kOp, "y", out.y, DType::i8, y_shape);
  check::output(kOp, "scale", out.scale, DType::f32, scale_shape);
  compute(x, group_index, group_alpha, options.activate_left, out);
}

}  // namespace moefuse
