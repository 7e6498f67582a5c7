#include "reference/clipped_swiglu.h"

#include <cmath>

#include "base/elements.h"
#include "base/expf.h"

namespace moefuse::reference {

void clipped_swiglu(const Tensor& x, int dim, int64_t active_rows, float alpha, float limit, float bias,
                    bool interleaved, const Tensor& out) {
  const Shape& s = x.shape();
  int64_t rows = 1, cut = 1;
  for (int i = 0; i < dim; ++i) rows *= s[i];
  for (int i = dim; i < x.dim(); ++i) cut *= s[i];
  const int64_t half = cut / 2;

  // Offset (in elements) of the row-major flat position `flat` of x, through x's strides.
  auto x_offset = [&](int64_t flat) {
    int64_t off = 0;
    for (int d = x.dim() - 1; d >= 0; --d) {
      off += (flat % s[d]) * x.strides()[d];
      flat /= s[d];
    }
    return off;
  };

  const float neg_alpha = -alpha;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < half; ++j) {
      const int64_t dst = r * half + j;
      if (r >= active_rows) {
        store_element_f32(out.data(), out.dtype(), dst, 0.0f);
        continue;
      }
      const int64_t ia = r * cut + (interleaved ? 2 * j : j);
      const int64_t ib = r * cut + (interleaved ? 2 * j + 1 : j + half);
      float a = load_element_f32(x.data(), x.dtype(), x_offset(ia));
      float b = load_element_f32(x.data(), x.dtype(), x_offset(ib));
      // Clamps written as comparisons so that NaN propagates (torch.clamp semantics).
      if (a > limit) a = limit;
      if (b > limit) b = limit;
      if (b < -limit) b = -limit;
      const float glu = a / (exp_f32(a * neg_alpha) + 1.0f);
      const float lin = b + bias;
      store_element_f32(out.data(), out.dtype(), dst, glu * lin);
    }
  }
}

}  // namespace moefuse::reference
