#include "reference/swiglu.h"

#include <cmath>

#include "base/elements.h"
#include "base/expf.h"

namespace moefuse::reference {

void swiglu(const Tensor& x, int dim, const Tensor& out) {
  // View x as [outer, 2*half, inner] with strides taken from x; out is contiguous [outer, half, inner].
  const Shape& s = x.shape();
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < dim; ++i) outer *= s[i];
  for (int i = dim + 1; i < x.dim(); ++i) inner *= s[i];
  const int64_t half = s[dim] / 2;

  // Offset (in elements) of x[o, j, i] for flattened outer index o and inner index i.
  auto x_offset = [&](int64_t o, int64_t j, int64_t i) {
    int64_t off = j * x.strides()[dim];
    for (int d = dim - 1; d >= 0; --d) {
      off += (o % s[d]) * x.strides()[d];
      o /= s[d];
    }
    for (int d = x.dim() - 1; d > dim; --d) {
      off += (i % s[d]) * x.strides()[d];
      i /= s[d];
    }
    return off;
  };

  int64_t dst = 0;
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < half; ++j)
      for (int64_t i = 0; i < inner; ++i) {
        float a = load_element_f32(x.data(), x.dtype(), x_offset(o, j, i));
        float b = load_element_f32(x.data(), x.dtype(), x_offset(o, j + half, i));
        float c = a / (1.0f + exp_f32(-a));
        store_element_f32(out.data(), out.dtype(), dst++, c * b);
      }
}

}  // namespace moefuse::reference
