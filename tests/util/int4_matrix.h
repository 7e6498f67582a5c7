// int4 group-wise weights as the tests write them (plain [K, N] integers, zero points and scales, independent of any
// kernel layout), and the W4A8 contract (gemm.h, "int4 group-wise x int8") written out over them: per group the exact
// Σ (q - z) a, then acc = fma(float(isum), s, acc) in group order from +0, then times the row scale.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/gemm/gemm.h"

namespace moefuse::testing {

struct Int4Matrix {
  int64_t K = 0, N = 0, G = 0;
  std::vector<uint8_t> q, zero;  // [K, N], [K / G, N]
  std::vector<float> scale;      // [K / G, N]

  gemm::Int4Source source() const { return {q.data(), N, 1, scale.data(), zero.data(), N, 1}; }
  // The GPTQ definition of the weight, written independently of the kernels' layout.
  float weight(int64_t k, int64_t n) const {
    const size_t gi = size_t((k / G) * N + n);
    return float(int(q[size_t(k * N + n)]) - int(zero[gi])) * scale[gi];
  }
};

/// C [M, N] of the W4A8 contract for int8 rows a (lda apart) with scales a_scale [M] and weights b.
inline std::vector<float> w4a8_oracle(const std::vector<int8_t>& a, int64_t lda, const std::vector<float>& a_scale,
                                      const Int4Matrix& b, int64_t M) {
  std::vector<float> c(size_t(M * b.N));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < b.N; ++n) {
      float acc = 0.0f;
      for (int64_t g = 0; g < b.K / b.G; ++g) {
        const size_t gi = size_t(g * b.N + n);
        int64_t isum = 0;
        for (int64_t k = g * b.G; k < (g + 1) * b.G; ++k)
          isum += (int64_t(b.q[size_t(k * b.N + n)]) - int64_t(b.zero[gi])) * int64_t(a[size_t(m * lda + k)]);
        acc = std::fma(float(isum), b.scale[gi], acc);
      }
      c[size_t(m * b.N + n)] = acc * a_scale[size_t(m)];
    }
  return c;
}

}  // namespace moefuse::testing
