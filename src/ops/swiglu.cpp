#include "moefuse/ops/swiglu.h"

#include "base/check.h"
#include "reference/swiglu.h"

namespace moefuse {
namespace {

constexpr const char* kOp = "swiglu";

// Validates x and dim; returns the non-negative dim and the output shape.
int checked_dim(const Tensor& x, int64_t dim, Shape& out_shape) {
  check::defined(kOp, "x", x);
  check::dtype_in(kOp, "x", x, {DType::f32, DType::bf16, DType::f16});
  if (x.dim() < 1) check::fail_value(kOp, "x", "a tensor of 1 to 8 dims", x.describe());
  const int64_t r = x.dim();
  if (dim < -r || dim >= r)
    check::fail_value(kOp, "dim", "-" + std::to_string(r) + " <= dim < " + std::to_string(r), std::to_string(dim));
  int d = int(dim < 0 ? dim + r : dim);
  if (x.size(d) % 2 != 0)
    check::fail_value(kOp, "x", "an even size along dim " + std::to_string(d), x.describe());
  out_shape = x.shape();
  out_shape[d] /= 2;
  return d;
}

}  // namespace

Tensor swiglu(const Tensor& x, int64_t dim) {
  Shape out_shape;
  int d = checked_dim(x, dim, out_shape);
  Tensor out = Tensor::empty(x.dtype(), out_shape);
  reference::swiglu(x, d, out);
  return out;
}

void swiglu_out(const Tensor& x, int64_t dim, const Tensor& out) {
  Shape out_shape;
  int d = checked_dim(x, dim, out_shape);
  check::output(kOp, "out", out, x.dtype(), out_shape);
  reference::swiglu(x, d, out);
}

}  // namespace moefuse
