#include "moefuse/ops/swiglu.h"

#include <algorithm>

#include "base/check.h"
#include "base/elements.h"
#include "base/default_pool.h"
#include "base/scratch.h"
#include "kernels/rows/rows.h"
#include "ops/fast_path_declines.h"
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

// The layer's case — a [rows, 2h] matrix split along its last, contiguous dim — on the rows family's swiglu kernel
// (rounding to x's dtype; chosen once per call), blocks of rows spread over the operators' pool (rows are
// independent, so the bits are the reference's); other layouts go to the reference.
void run(const Tensor& x, int d, const Tensor& out) {
  if (swiglu_fast_path_declines(x, d)) {
    reference::swiglu(x, d, out);
    return;
  }
  const rows::SwigluFn kernel = rows::select_rows_kernels().swiglu[rows::slot(x.dtype())];
  constexpr int64_t kRows = 32;
  const int64_t n = x.size(0), half = out.size(1), blocks = (n + kRows - 1) / kRows;
  const int64_t es = int64_t(x.element_size());
  auto block = [&](int64_t i) {
    const int64_t r0 = i * kRows, r1 = std::min(n, r0 + kRows);
    Scratch<float> gate(half), up(half), o(half);
    for (int64_t r = r0; r < r1; ++r) {
      const auto* in = static_cast<const std::byte*>(x.data()) + r * x.stride(0) * es;
      widen_row(in, x.dtype(), half, 1, gate.data());
      widen_row(in + half * es, x.dtype(), half, 1, up.data());
      kernel(half, gate.data(), up.data(), o.data());
      store_row(o.data(), half, x.dtype(), static_cast<std::byte*>(out.data()) + r * half * es);
    }
  };
  parallel_items(blocks, block);
}

}  // namespace

const char* swiglu_fast_path_declines(const Tensor& x, int dim) {
  if (x.dim() != 2) return "x is not 2-D";
  if (dim != 1) return "the split is not along the last dim";
  if (x.stride(1) != 1) return "x's last dim is not contiguous";
  return nullptr;
}

Tensor swiglu(const Tensor& x, int64_t dim) {
  Shape out_shape;
  int d = checked_dim(x, dim, out_shape);
  Tensor out = Tensor::empty(x.dtype(), out_shape);
  run(x, d, out);
  return out;
}

void swiglu_out(const Tensor& x, int64_t dim, const Tensor& out) {
  Shape out_shape;
  int d = checked_dim(x, dim, out_shape);
  check::output(kOp, "out", out, x.dtype(), out_shape);
  run(x, d, out);
}

}  // namespace moefuse
