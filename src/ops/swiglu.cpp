#include "moefuse/ops/swiglu.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "base/check.h"
#include "base/elements.h"
#include "base/default_pool.h"
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

template <class T>
T narrow_to(float v) {
  if constexpr (std::is_same_v<T, float>) return v;
  else if constexpr (std::is_same_v<T, bfloat16>) return to_bf16(v);
  else return to_f16(v);
}

// Rows [r0, r1) of a 2-D x split along its contiguous last dim: reference::swiglu's expression on each element, with
// typed loads and stores instead of its per-element dtype dispatch and index arithmetic.
template <class T>
void swiglu_rows(const Tensor& x, const Tensor& out, int64_t r0, int64_t r1) {
  const int64_t half = out.size(1);
  for (int64_t r = r0; r < r1; ++r) {
    const T* in = x.data_as<const T>() + r * x.stride(0);
    T* o = out.data_as<T>() + r * half;
    for (int64_t j = 0; j < half; ++j) {
      const float a = widen_f32(in[j]), b = widen_f32(in[j + half]);
      const float c = a / (1.0f + std::exp(-a));
      o[j] = narrow_to<T>(c * b);
    }
  }
}

// The layer's case — a [rows, 2h] matrix split along its last, contiguous dim — on typed loops, blocks of rows
// spread over the operators' pool (rows are independent, so the bits are the reference's); other layouts go to the
// reference.
void run(const Tensor& x, int d, const Tensor& out) {
  if (x.dim() != 2 || d != 1 || x.stride(1) != 1) {
    reference::swiglu(x, d, out);
    return;
  }
  constexpr int64_t kRows = 32;
  const int64_t rows = x.size(0), blocks = (rows + kRows - 1) / kRows;
  auto block = [&](int64_t i) {
    const int64_t r0 = i * kRows, r1 = std::min(rows, r0 + kRows);
    switch (x.dtype()) {
      case DType::f32: swiglu_rows<float>(x, out, r0, r1); break;
      case DType::bf16: swiglu_rows<bfloat16>(x, out, r0, r1); break;
      default: swiglu_rows<float16>(x, out, r0, r1); break;
    }
  };
  DefaultPoolLease lease;
  if (lease.pool() && blocks > 1) lease.pool()->parallel_for(blocks, block);
  else
    for (int64_t i = 0; i < blocks; ++i) block(i);
}

}  // namespace

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
