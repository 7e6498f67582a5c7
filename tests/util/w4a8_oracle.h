// The W4A8 contract (gemm.h, "int4 group-wise x int8") written out for the tests, independently of any kernel: per
// group the exact Σ (q - z) a, then acc = fma(float(isum), s, acc) in group order from +0, then times the row scale.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace moefuse::testing {

/// C [M, N] for int8 rows a (lda apart) with scales a_scale [M] and int4 weights q [K, N] with zero [K / G, N] and
/// scale [K / G, N] (row-major, N columns).
inline std::vector<float> w4a8_oracle(const std::vector<int8_t>& a, int64_t lda, const std::vector<float>& a_scale,
                                      const std::vector<uint8_t>& q, const std::vector<uint8_t>& zero,
                                      const std::vector<float>& scale, int64_t K, int64_t N, int64_t G, int64_t M) {
  std::vector<float> c(size_t(M * N));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      float acc = 0.0f;
      for (int64_t g = 0; g < K / G; ++g) {
        const size_t gi = size_t(g * N + n);
        int64_t isum = 0;
        for (int64_t k = g * G; k < (g + 1) * G; ++k)
          isum += (int64_t(q[size_t(k * N + n)]) - int64_t(zero[gi])) * int64_t(a[size_t(m * lda + k)]);
        acc = std::fma(float(isum), scale[gi], acc);
      }
      c[size_t(m * N + n)] = acc * a_scale[size_t(m)];
    }
  return c;
}

}  // namespace moefuse::testing
