#include "util/random.h"

#include "base/elements.h"

namespace moefuse::testing {

Tensor Rng::uniform_tensor(DType dtype, const Shape& shape, float lo, float hi) {
  Tensor t = Tensor::empty(dtype, shape);
  for (int64_t i = 0; i < t.numel(); ++i) store_element_f32(t.data(), dtype, i, uniform(lo, hi));
  return t;
}

Tensor Rng::normal_tensor(DType dtype, const Shape& shape, float stddev) {
  Tensor t = Tensor::empty(dtype, shape);
  for (int64_t i = 0; i < t.numel(); ++i) store_element_f32(t.data(), dtype, i, normal(0.0f, stddev));
  return t;
}

Tensor Rng::int_tensor(DType dtype, const Shape& shape, int64_t lo, int64_t hi) {
  Tensor t = Tensor::empty(dtype, shape);
  for (int64_t i = 0; i < t.numel(); ++i) store_element(t.data(), dtype, i, double(integer(lo, hi)));
  return t;
}

}  // namespace moefuse::testing
