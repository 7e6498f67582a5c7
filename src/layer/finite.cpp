#include "layer/finite.h"

#include <cstdio>

#include "base/elements.h"
#include "moefuse/error.h"

namespace moefuse::layer {
namespace {

std::string index_words(const std::vector<int64_t>& index) {
  std::string s = "[";
  for (size_t i = 0; i < index.size(); ++i) s += (i ? ", " : "") + std::to_string(index[i]);
  return s + "]";
}

std::string number_words(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", double(v));
  return buf;
}

std::string value_words(float v) { return std::isnan(v) ? "nan" : v > 0 ? "inf" : "-inf"; }

}  // namespace

float rounded_to(float v, DType t) {
  if (t == DType::bf16) return to_f32(to_bf16(v));
  if (t == DType::f16) return to_f32(to_f16(v));
  return v;
}

std::vector<int64_t> unravel(const Tensor& t, int64_t flat) {
  std::vector<int64_t> index(size_t(t.dim()));
  for (int d = t.dim() - 1; d >= 0; --d) {
    index[size_t(d)] = flat % t.size(d);
    flat /= t.size(d);
  }
  return index;
}

void fail_non_finite(const std::string& where, float value, const std::vector<int64_t>& index, const DType* stored) {
  const std::string got = std::isfinite(value) && stored
                              ? number_words(value) + " at " + index_words(index) + ", which is " +
                                    value_words(rounded_to(value, *stored)) + " in " +
                                    std::string(dtype_name(*stored))
                              : value_words(value) + " at " + index_words(index);
  throw ValueError(where + ": expected finite values (non-finite weights are refused unless " +
                   "LayerOptions::allow_non_finite_weights is set; the command's flag is --allow-non-finite), got " +
                   got);
}

void check_finite_weights(const LayerWeights& w) {
  auto check = [](const char* name, const Tensor& t) {
    if (!t.defined() || !dtype_is_float(t.dtype())) return;
    const Tensor c = t.contiguous();
    check_finite_values(
        std::string("MoeLayer: ") + name, c.numel(),
        [&](int64_t i) { return load_element_f32(c.data(), c.dtype(), i); }, [&](int64_t i) { return unravel(c, i); });
  };
  check("router", w.router);
  check("router_bias", w.router_bias);
  check("w13", w.w13);
  check("w2", w.w2);
  check("w13_scale", w.w13_scale);
  check("w2_scale", w.w2_scale);
  check("smooth_scale1", w.smooth_scale1);
  check("smooth_scale2", w.smooth_scale2);
  check("clip_alpha", w.clip_alpha);
  check("shared_w13", w.shared_w13);
  check("shared_w2", w.shared_w2);
  check("shared_w13_scale", w.shared_w13_scale);
  check("shared_w2_scale", w.shared_w2_scale);
  check("shared_gate", w.shared_gate);
}

}  // namespace moefuse::layer
