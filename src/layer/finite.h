// Refusing non-finite weights (docs/layer.md §5, "Non-finite weights"): the error every loader raises, and the scans.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "moefuse/dtype.h"
#include "moefuse/layer.h"
#include "moefuse/tensor.h"

namespace moefuse::layer {

/// v rounded (RNE) to the float dtype t and widened back: what a tensor of that dtype holds for v (v itself for f32
/// and the integer dtypes).
float rounded_to(float v, DType t);

/// The multi-index of row-major position `flat` in `t`.
std::vector<int64_t> unravel(const Tensor& t, int64_t flat);

/// ValueError "<where>: expected finite values (...), got nan at [i, j]". `stored`, when given and `value` is
/// finite, is the dtype `value` overflows in: "got 70000 at [i, j], which is inf in f16".
[[noreturn]] void fail_non_finite(const std::string& where, float value, const std::vector<int64_t>& index,
                                  const DType* stored = nullptr);

/// Refuses (fail_non_finite) the first non-finite of n floats read by `at(i)`, at the index `index_of(i)`.
template <class At, class IndexOf>
void check_finite_values(const std::string& where, int64_t n, At at, IndexOf index_of) {
  for (int64_t i = 0; i < n; ++i)
    if (const float v = at(i); !std::isfinite(v)) fail_non_finite(where, v, index_of(i));
}

/// ValueError "MoeLayer: <member>: expected finite values (...), got nan at [e, r, i]" for the first non-finite
/// value of the float tensors of `w`, members in LayerWeights order.
void check_finite_weights(const LayerWeights& w);

}  // namespace moefuse::layer
