#include "util/compare.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>

namespace moefuse::testing {

std::string index_str(const Shape& shape, int64_t flat) {
  Shape idx = shape;
  for (int i = shape.rank() - 1; i >= 0; --i) {
    idx[i] = shape[i] ? flat % shape[i] : 0;
    flat = shape[i] ? flat / shape[i] : 0;
  }
  return idx.str();
}

namespace {

// Raw bytes of element `flat` (row-major, strides respected).
void element_bytes(const Tensor& t, int64_t flat, unsigned char* out) {
  int64_t off = 0;
  for (int i = t.dim() - 1; i >= 0; --i) {
    off += (flat % t.shape()[i]) * t.strides()[i];
    flat /= t.shape()[i];
  }
  std::memcpy(out, static_cast<const unsigned char*>(t.data()) + off * int64_t(t.element_size()), t.element_size());
}

}  // namespace

::testing::AssertionResult tensors_equal(const Tensor& expected, const Tensor& actual) {
  if (expected.defined() != actual.defined())
    return ::testing::AssertionFailure() << "expected " << expected.describe() << ", got " << actual.describe();
  if (!expected.defined()) return ::testing::AssertionSuccess();
  if (expected.dtype() != actual.dtype() || !(expected.shape() == actual.shape()))
    return ::testing::AssertionFailure() << "expected " << expected.describe() << ", got " << actual.describe();
  std::ostringstream msg;
  int64_t mismatches = 0;
  unsigned char a[8], b[8];
  for (int64_t i = 0; i < expected.numel(); ++i) {
    element_bytes(expected, i, a);
    element_bytes(actual, i, b);
    if (std::memcmp(a, b, expected.element_size()) != 0) {
      if (mismatches < 8)
        msg << "\n  at " << index_str(expected.shape(), i) << ": expected " << expected.item_flat(i) << ", got "
            << actual.item_flat(i);
      ++mismatches;
    }
  }
  if (mismatches == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << mismatches << " of " << expected.numel() << " elements of "
                                       << expected.describe() << " differ:" << msg.str();
}

::testing::AssertionResult tensors_close(const Tensor& expected, const Tensor& actual, double atol, double rtol) {
  if (!expected.defined() || !actual.defined() || !(expected.shape() == actual.shape()))
    return ::testing::AssertionFailure() << "expected " << expected.describe() << ", got " << actual.describe();
  double max_abs = 0, max_rel = 0;
  int64_t worst = -1, failures = 0;
  double worst_excess = -1;
  for (int64_t i = 0; i < expected.numel(); ++i) {
    double e = expected.item_flat(i), a = actual.item_flat(i);
    bool ok;
    double err = 0;
    if (std::isnan(e) || std::isnan(a)) {
      ok = std::isnan(e) && std::isnan(a);
    } else if (std::isinf(e) || std::isinf(a)) {
      ok = e == a;
    } else {
      err = std::fabs(a - e);
      ok = err <= atol + rtol * std::fabs(e);
      max_abs = std::max(max_abs, err);
      if (e != 0) max_rel = std::max(max_rel, err / std::fabs(e));
    }
    if (!ok) {
      ++failures;
      double excess = std::isfinite(err) ? err - (atol + rtol * std::fabs(e)) : INFINITY;
      if (excess > worst_excess || worst < 0) {
        worst_excess = excess;
        worst = i;
      }
    }
  }
  if (failures == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << failures << " of " << expected.numel() << " elements outside atol=" << atol << " rtol=" << rtol
         << " (max abs err " << max_abs << ", max rel err " << max_rel << "); worst at "
         << index_str(expected.shape(), worst) << ": expected " << expected.item_flat(worst) << ", got "
         << actual.item_flat(worst);
}

}  // namespace moefuse::testing

namespace moefuse::testing {
double element_at(const Tensor& t, int64_t element_offset) {
  return Tensor::view(static_cast<const char*>(t.data()) + element_offset * int64_t(t.element_size()), t.dtype(), {1})
      .item({0});
}

double min_token_cosine(const Tensor& a, const Tensor& b) {
  // Both widened to contiguous fp32 once (item() per element was the slow part of the int4 and FP8 layer tests).
  const Tensor fa = a.to(DType::f32).contiguous(), fb = b.to(DType::f32).contiguous();
  const int64_t H = a.size(1);
  double worst = 1.0;
  for (int64_t t = 0; t < a.size(0); ++t) {
    double ab = 0, aa = 0, bb = 0;
    for (int64_t h = 0; h < H; ++h) {
      const double x = fa.data_as<float>()[t * H + h], y = fb.data_as<float>()[t * H + h];
      ab += x * y;
      aa += x * x;
      bb += y * y;
    }
    worst = std::min(worst, ab / std::sqrt(aa * bb));
  }
  return worst;
}

}  // namespace moefuse::testing
