#include <cmath>
#include <string>

#include "base/check.h"
#include "base/elements.h"
#include "base/random.h"
#include "moefuse/layer.h"

namespace moefuse {

Tensor random_tokens(int64_t tokens, int64_t hidden, uint64_t seed, DType dtype) {
  if (tokens < 0) check::fail_value("random_tokens", "tokens", "a count >= 0", std::to_string(tokens));
  if (hidden < 0) check::fail_value("random_tokens", "hidden", "a count >= 0", std::to_string(hidden));
  Tensor x = Tensor::empty(dtype, {tokens, hidden});
  // A stream of its own (the weights hash (seed, tensor, expert) differently), value i from hash(base + i).
  const uint64_t base = splitmix64(seed ^ 0x696e707574ull /* "input" */);
  const float a = std::sqrt(3.0f) / 2.0f;
  const int64_t n = tokens * hidden;
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t h = uint64_t(i) * 4;
    float v = 0;
    for (uint64_t j = 0; j < 4; ++j) v += a * uniform_pm1(splitmix64(base + (h + j) * kStreamStride));
    store_element_f32(x.data(), dtype, i, v);
  }
  return x;
}

}  // namespace moefuse
