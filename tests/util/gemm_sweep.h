// What the GEMM kernel tests of the weight formats formed in registers (int4, FP8) share: the kernel tables this
// machine runs, the float contract's chains (k ascending; the bf16 contract's pairs) as oracles, and the check of one
// kernel's columns against them.
#pragma once

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "base/bf16_dot.h"
#include "kernels/gemm/gemm.h"
#include "kernels/registry.h"
#include "moefuse/numerics.h"
#include "util/random.h"

namespace moefuse::testing {

/// Every level's kernels this machine runs, scalar first, and AVX-512 once more with VNNI where the CPU has it.
inline std::vector<gemm::GemmKernels> gemm_variants() {
  std::vector<gemm::GemmKernels> out;
  for (Isa isa : gemm::available_isas()) out.push_back(gemm::select_gemm_kernels(isa, false));
  if (gemm::vnni_available()) out.push_back(gemm::select_gemm_kernels(Isa::avx512, true));
  return out;
}

/// The row gemm::select_gemm_kernels serves (op, dt) with at d, restated from its documentation: the table's row
/// (kernels::find), except that the native tier's AMX-BF16 rows serve only with MOEFUSE_AMX_BF16=on (else the
/// portable tier's row), and a vdpbf16ps row (bf16, FP8 or W4A16 weights) gives way to the avx512 level's where this
/// process prefers the fp32 FMA kernels (bf16_dot_unused_reason; the same bits).
inline const kernels::KernelInfo* selected_row(kernels::Op op, DType dt, kernels::Dispatch d) {
  const kernels::KernelInfo* k = kernels::find(op, dt, d);
  if (k && k->applies == kernels::amx_native && !native_amx_bf16()) {
    d.numerics = Numerics::portable;
    k = kernels::find(op, dt, d);
  }
  if (k && k->applies == kernels::avx512_bf16_dot && *bf16_dot_unused_reason(d.isa))
    k = kernels::find(op, dt, kernels::Dispatch{Isa::avx512, d.vnni, d.numerics});
  return k;
}

/// C [M, N] by the float contract: acc = fma(a[m, k], weight(k, n), acc) for k in order, from +0.
template <class Weight>
std::vector<float> fma_chain(const std::vector<float>& a, int64_t lda, int64_t M, int64_t K, int64_t N, Weight weight) {
  std::vector<float> c(size_t(M * N));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      float acc = 0.0f;
      for (int64_t k = 0; k < K; ++k) acc = std::fma(a[size_t(m * lda + k)], weight(k, n), acc);
      c[size_t(m * N + n)] = acc;
    }
  return c;
}

/// C [M, N] by the bf16 contract (gemm.h, "bf16 weights"; FP8 weights too): from +0, pairs (2i + 1, 2i) of k in order,
/// each step fma_daz_ftz, a zero pair standing for k = K when K is odd.
template <class Weight>
std::vector<float> bf16_chain(const std::vector<float>& a, int64_t lda, int64_t M, int64_t K, int64_t N,
                              Weight weight) {
  std::vector<float> c(size_t(M * N));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      const auto term = [&](int64_t k, float acc) {
        return k < K ? fma_daz_ftz(a[size_t(m * lda + k)], weight(k, n), acc) : fma_daz_ftz(0.0f, 0.0f, acc);
      };
      float acc = 0.0f;
      for (int64_t k = 0; k < K; k += 2) acc = term(k, term(k + 1, acc));
      c[size_t(m * N + n)] = acc;
    }
  return c;
}

/// Runs `kern` over the whole width and over [32, N - 1) (a call that starts at the second panel and stops short of
/// N) and checks every C[m, n] has the bits of want[m * N + n], and that nothing past the range is written.
inline void expect_columns_match(const gemm::GemmFloatKernel& kern, int64_t M, int64_t K, int64_t N,
                                 const std::vector<float>& a, int64_t lda, const void* b,
                                 const std::vector<float>& want, const std::string& what) {
  for (auto [n0, n1] : {std::pair<int64_t, int64_t>{0, N}, {gemm::kGemmNR, N - 1}}) {
    if (n0 > n1) continue;
    const int64_t ldc = n1 - n0 + 2;
    std::vector<float> c(size_t(M * ldc), -7.0f);
    kern.fn(M, K, n0, n1, a.data(), lda, b, c.data(), ldc);
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t n = n0; n < n1; ++n)
        if (std::bit_cast<uint32_t>(c[size_t(m * ldc + n - n0)]) != std::bit_cast<uint32_t>(want[size_t(m * N + n)])) {
          ADD_FAILURE() << kern.name << " " << what << " M=" << M << " m=" << m << " n=" << n;
          return;
        }
      for (int64_t n = n1 - n0; n < ldc; ++n)
        if (c[size_t(m * ldc + n)] != -7.0f) {
          ADD_FAILURE() << kern.name << " " << what << ": wrote past n1 at m=" << m;
          return;
        }
    }
  }
}

/// n int8 values uniform in [-128, 127].
inline std::vector<int8_t> random_s8(Rng& rng, size_t n) {
  std::vector<int8_t> v(n);
  for (int8_t& x : v) x = int8_t(rng.integer(-128, 127));
  return v;
}

/// C [M, N] = A [M, K] (rows lda apart) x B [K, N] (row-major) in exact integers; checks each sum is within the int8
/// contract's range (|C| <= 2^30).
inline std::vector<int32_t> s8_oracle(const std::vector<int8_t>& a, int64_t lda, const std::vector<int8_t>& b,
                                      int64_t K, int64_t N, int64_t M) {
  std::vector<int32_t> c(size_t(M * N));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      int64_t acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += int64_t(a[size_t(m * lda + k)]) * b[size_t(k * N + n)];
      EXPECT_LE(std::abs(acc), int64_t(1) << 30);
      c[size_t(m * N + n)] = int32_t(acc);
    }
  return c;
}

}  // namespace moefuse::testing
