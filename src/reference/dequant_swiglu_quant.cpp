#include "reference/dequant_swiglu_quant.h"

#include <cmath>
#include <cstring>

#include "base/elements.h"
#include "base/expf.h"
#include "base/quantize.h"
#include "base/scratch.h"

namespace moefuse::reference {
namespace {

// Element `col` of scale row `row` of a per-group tensor: [N] / [1, N] (row 0) or [E, N].
int64_t row_col_offset(const Tensor& t, int64_t row, int64_t col) {
  return t.dim() == 1 ? col * t.stride(0) : row * t.stride(0) + col * t.stride(1);
}
float row_col_f32(const Tensor& t, int64_t row, int64_t col) {
  return load_element_f32(t.data(), t.dtype(), row_col_offset(t, row, col));
}
// The one value of scale row `row` of a one-per-group tensor: [1], [1, 1], [E] or [E, 1].
float row_scalar_f32(const Tensor& t, int64_t row) { return load_element_f32(t.data(), t.dtype(), row * t.stride(0)); }

// min(v, hi) and max(v, lo) written as comparisons, so that NaN propagates (torch.clamp semantics).
float min_keep_nan(float v, float hi) { return v > hi ? hi : v; }
float max_keep_nan(float v, float lo) { return v < lo ? lo : v; }

// Static quantisation's float -> int8: round half to even, saturate to [-128, 127], NaN -> 0.
int8_t to_int8_static(float v) {
  if (std::isnan(v)) return 0;
  float r = std::nearbyint(v);
  return int8_t(std::fmin(127.0f, std::fmax(-128.0f, r)));
}

class RowKernel {
 public:
  RowKernel(const DequantSwigluQuantArgs& a, const Tensor& y, const Tensor& scale)
      : a_(a),
        h_(a.x.size(1) / 2),
        v_(2 * h_),
        o_(h_),
        y_(y.data_as<int8_t>()),
        scale_(scale.data_as<float>()) {}

  // Computes output row r with scale row e.
  void run(int64_t r, int64_t e) {
    dequant(r, e);
    activate();
    quantize(r, e);
  }

 private:
  void dequant(int64_t r, int64_t e) {
    const Tensor& x = a_.x;
    for (int64_t c = 0; c < 2 * h_; ++c) {
      const int64_t xo = r * x.stride(0) + c * x.stride(1);
      if (x.dtype() != DType::i32) {
        v_[c] = load_element_f32(x.data(), x.dtype(), xo);
        continue;
      }
      int32_t xi = int32_t(load_element_int(x.data(), x.dtype(), xo));
      const bool int_bias = a_.bias.defined() && a_.bias.dtype() == DType::i32;
      if (int_bias) {
        // int32 add with two's-complement wrap-around (the vector Add; numpy int32 in the golden).
        int32_t b = int32_t(load_element_int(a_.bias.data(), DType::i32, row_col_offset(a_.bias, e, c)));
        xi = int32_t(uint32_t(xi) + uint32_t(b));
      }
      float f = float(xi);  // RNE for |xi| > 2^24
      f = f * row_col_f32(a_.weight_scale, e, c);
      if (a_.activation_scale.defined())
        f = f * load_element_f32(a_.activation_scale.data(), DType::f32, r * a_.activation_scale.stride(0));
      if (a_.bias.defined() && !int_bias) f = f + row_col_f32(a_.bias, e, c);
      v_[c] = f;
    }
  }

  void activate() {
    const float lim = a_.clamp_limit, neg_alpha = -a_.glu_alpha;
    for (int64_t j = 0; j < h_; ++j) {
      float act, lin;
      if (a_.swiglu_mode == 1) {
        act = v_[2 * j];
        lin = v_[2 * j + 1];
      } else if (a_.activate_left) {
        act = v_[j];
        lin = v_[j + h_];
      } else {
        act = v_[j + h_];
        lin = v_[j];
      }
      float out;
      if (a_.swiglu_mode == 0) {
        out = act / (exp_f32(-act) + 1.0f) * lin;
      } else if (a_.swiglu_mode == 3) {
        const float l = max_keep_nan(min_keep_nan(lin, lim), -lim);
        const float g = min_keep_nan(act / (exp_f32(-act) + 1.0f), lim);
        out = g * l;
      } else {  // modes 1 and 2
        const float l = max_keep_nan(min_keep_nan(lin, lim), -lim) + a_.glu_bias;
        const float g = min_keep_nan(act, lim);
        out = g / (exp_f32(g * neg_alpha) + 1.0f) * l;
      }
      o_[j] = out;
    }
  }

  void quantize(int64_t r, int64_t e) {
    const Tensor& qs = a_.quant_scale;
    const Tensor& qo = a_.quant_offset;
    int8_t* yr = y_ + r * h_;
    if (a_.dynamic) {
      if (qs.defined())
        for (int64_t j = 0; j < h_; ++j)
          o_[j] = o_[j] * (a_.quant_per_group_scalar ? row_scalar_f32(qs, e) : row_col_f32(qs, e, j));
      scale_[r] = quantize_row_dynamic(o_.data(), h_, yr);
      return;
    }
    if (a_.quant_per_group_scalar) {
      const float inv = 1.0f / row_scalar_f32(qs, e);
      const float off = qo.defined() ? row_scalar_f32(qo, e) : 0.0f;
      for (int64_t j = 0; j < h_; ++j) yr[j] = to_int8_static(o_[j] * inv + off);
    } else {
      for (int64_t j = 0; j < h_; ++j) {
        float v = o_[j] / row_col_f32(qs, e, j);
        if (qo.defined()) v = v + row_col_f32(qo, e, j);
        yr[j] = to_int8_static(v);
      }
    }
    scale_[r] = 0.0f;
  }

  const DequantSwigluQuantArgs& a_;
  int64_t h_;
  Scratch<float> v_, o_;
  int8_t* y_;
  float* scale_;
};

}  // namespace

void dequant_swiglu_quant(const DequantSwigluQuantArgs& args, const Tensor& y, const Tensor& scale) {
  // Rows no group covers stay zero (docs/operators.md, Numerics: no garbage).
  if (y.numel() > 0) std::memset(y.data(), 0, size_t(y.numel()));
  if (scale.numel() > 0) std::memset(scale.data(), 0, size_t(scale.numel()) * sizeof(float));
  RowKernel k(args, y, scale);
  if (!args.group_index.defined()) {
    for (int64_t r = 0; r < args.x.size(0); ++r) k.run(r, 0);
    return;
  }
  for_each_group(args.group_index, args.group_type, [&](const GroupSpan& g) {
    for (int64_t r = g.begin; r < g.end; ++r) k.run(r, g.expert);
  });
}

}  // namespace moefuse::reference
