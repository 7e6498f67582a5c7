#include "reference/swiglu_clip_quant.h"

#include <cmath>
#include <cstring>

#include "base/elements.h"
#include "base/expf.h"
#include "base/groups.h"
#include "base/quantize.h"
#include "base/scratch.h"

namespace moefuse::reference {

void swiglu_clip_quant(const Tensor& x, const Tensor& group_index, const Tensor& group_alpha, bool activate_left,
                       const Tensor& y, const Tensor& scale) {
  const int64_t h = x.size(1) / 2;
  int8_t* yp = y.data_as<int8_t>();
  float* sp = scale.data_as<float>();
  // Rows no group covers stay zero (docs/operators.md, Numerics: no garbage).
  if (y.numel() > 0) std::memset(yp, 0, size_t(y.numel()));
  if (scale.numel() > 0) std::memset(sp, 0, size_t(scale.numel()) * sizeof(float));

  Scratch<float> s(h);
  for_each_group(group_index, GroupListType::count, [&](const GroupSpan& g) {
    const float alpha = load_element_f32(group_alpha.data(), DType::f32, g.expert * group_alpha.stride(0));
    for (int64_t r = g.begin; r < g.end; ++r) {
      float m = 0.0f;
      for (int64_t j = 0; j < h; ++j) {
        const int64_t ja = activate_left ? j : j + h, jb = activate_left ? j + h : j;
        const float a = load_element_f32(x.data(), x.dtype(), r * x.stride(0) + ja * x.stride(1));
        const float b = load_element_f32(x.data(), x.dtype(), r * x.stride(0) + jb * x.stride(1));
        const float v = a / (exp_f32(-a) + 1.0f) * b;
        s[j] = v;
        m = std::fmax(m, std::fabs(v));
      }
      const float t = alpha * m;
      for (int64_t j = 0; j < h; ++j) {
        float v = s[j];
        if (v > t) v = t;    // Min(s, t)
        if (v < -t) v = -t;  // Max(., -t)
        s[j] = v;
      }
      sp[r] = quantize_row_dynamic(s.data(), h, yp + r * h);
    }
  });
}

}  // namespace moefuse::reference
