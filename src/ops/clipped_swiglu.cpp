#include "moefuse/ops/swiglu.h"

#include <cmath>
#include <limits>

#include "base/check.h"
#include "base/groups.h"
#include "reference/clipped_swiglu.h"

namespace moefuse {
namespace {

constexpr const char* kOp = "clipped_swiglu";

using check::number;

// The validated arguments, ready for the reference.
struct Plan {
  int dim = 0;
  Shape out_shape;
  int64_t active_rows = 0;
  float alpha = 0, limit = 0, bias = 0;
};

Plan checked_plan(const Tensor& x, const ClippedSwigluOptions& o) {
  Plan p;
  check::defined(kOp, "x", x);
  check::dtype_in(kOp, "x", x, {DType::f32, DType::bf16, DType::f16});
  if (x.dim() < 1) check::fail_value(kOp, "x", "a tensor of 1 to 8 dims", x.describe());
  const int64_t r = x.dim();
  if (o.dim < -r || o.dim >= r)
    check::fail_value(kOp, "dim", "-" + std::to_string(r) + " <= dim < " + std::to_string(r), std::to_string(o.dim));
  p.dim = int(o.dim < 0 ? o.dim + r : o.dim);
  if (x.size(p.dim) % 2 != 0)
    check::fail_value(kOp, "x", "an even size along dim " + std::to_string(p.dim), x.describe());

  // The kernel takes the attributes as fp32: they must be finite in fp32.
  auto fp32_attr = [](const char* arg, double v, bool positive) {
    if (!std::isfinite(v) || std::fabs(v) > double(std::numeric_limits<float>::max()) || (positive && !(v > 0.0)))
      check::fail_value(kOp, arg, positive ? "a finite fp32 value > 0" : "a finite fp32 value", number(v));
    return float(v);
  };
  p.alpha = fp32_attr("alpha", o.alpha, false);
  p.limit = fp32_attr("limit", o.limit, true);
  p.bias = fp32_attr("bias", o.bias, false);

  int64_t rows = 1;
  for (int i = 0; i < p.dim; ++i) rows *= x.size(i);
  p.active_rows = rows;
  if (o.group_index.defined()) {
    // Counts; their sum may exceed the rows (the kernel and the goldens use min(sum, rows)).
    constexpr int64_t kNoLimit = std::numeric_limits<int64_t>::max();
    int64_t covered = check_group_list(kOp, "group_index", o.group_index, int64_t(GroupListType::count), kNoLimit,
                                       kNoLimit, kNoLimit);
    p.active_rows = covered < rows ? covered : rows;
  }
  p.out_shape = x.shape();
  p.out_shape[p.dim] /= 2;
  return p;
}

}  // namespace

Tensor clipped_swiglu(const Tensor& x, const ClippedSwigluOptions& options) {
  Plan p = checked_plan(x, options);
  Tensor out = Tensor::empty(x.dtype(), p.out_shape);
  reference::clipped_swiglu(x, p.dim, p.active_rows, p.alpha, p.limit, p.bias, options.interleaved, out);
  return out;
}

void clipped_swiglu_out(const Tensor& x, const ClippedSwigluOptions& options, const Tensor& out) {
  Plan p = checked_plan(x, options);
  check::output(kOp, "out", out, x.dtype(), p.out_shape);
  reference::clipped_swiglu(x, p.dim, p.active_rows, p.alpha, p.limit, p.bias, options.interleaved, out);
}

}  // namespace moefuse
