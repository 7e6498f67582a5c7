// Dynamic FP8 activations x FP8 weights (src/kernels/gemm/fp8_act.h): the e4m3 encoder against the layer's
// independent one, the row quantiser against the definition written here, and every GEMM variant this machine runs
// against an oracle that sums the block's products as integers (each e4m3 value times 2^9 is an integer), bitwise,
// over M, N and K edges (K not a multiple of 128, K = 0), column ranges, saturation, zero rows, subnormal codes and
// NaN weights.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/gemm/fp8_act.h"
#include "kernels/gemm/gemm.h"
#include "layer/fp8_weights.h"
#include "moefuse/cpu.h"
#include "moefuse/dtype.h"
#include "util/fp8_checkpoint.h"
#include "util/random.h"

namespace moefuse {
namespace {

using gemm::kGemmNR;
using testing::Rng;

TEST(Fp8Act, E4m3RneSatEqualsTheEncoder) {
  auto check = [](float x) {
    ASSERT_EQ(int(gemm::e4m3_rne_sat(x)), int(layer::e4m3_from_f32(x))) << x << " bits " << std::hex << f32_bits(x);
  };
  for (uint64_t b = 0; b < (uint64_t(1) << 32); b += 4099) {
    const float x = f32_from_bits(uint32_t(b));
    if (!std::isnan(x)) check(x);
  }
  for (int c = 0; c < 127; ++c) {  // every code, its neighbours and the midpoints to the next code
    const float v = testing::e4m3_by_definition(uint8_t(c)), next = c < 126 ? testing::e4m3_by_definition(uint8_t(c + 1)) : 464.0f;
    const float mid = (v + next) / 2;
    for (float x : {v, std::nextafter(v, 0.0f), std::nextafter(v, 1e9f), mid, std::nextafter(mid, 0.0f),
                    std::nextafter(mid, 1e9f)})
      for (float s : {1.0f, -1.0f}) check(s * x);
  }
  for (float x : {448.0f, 463.99f, 464.0f, 500.0f, 1e30f, std::numeric_limits<float>::infinity(), 0x1p-10f, 0x1p-149f})
    for (float s : {1.0f, -1.0f}) check(s * x);
}

TEST(Fp8Act, QuantiseRowIsTheDefinition) {
  Rng rng(3);
  for (int64_t K : {1, 2, 127, 128, 129, 256, 300, 517}) {
    for (int kind = 0; kind < 6; ++kind) {
      std::vector<float> x(static_cast<size_t>(K));
      for (auto& v : x) v = rng.normal(0, 3);
      if (kind == 1) std::fill(x.begin(), x.begin() + std::min<int64_t>(K, 128), 0.0f);  // an all-zero block
      if (kind == 2) x[size_t(K / 2)] = std::numeric_limits<float>::quiet_NaN();
      if (kind == 3) x[0] = -std::numeric_limits<float>::infinity();
      if (kind == 4) for (auto& v : x) v *= 0x1p-140f;  // scales subnormal or zero
      if (kind == 5) for (auto& v : x) v = rng.coin() ? 3e38f : -1e-30f;
      std::vector<uint8_t> q(static_cast<size_t>(K)), wq;
      std::vector<float> s(static_cast<size_t>((K + 127) / 128)), ws;
      gemm::quantise_fp8_act_row(x.data(), K, q.data(), s.data());
      testing::quantise_fp8_act_by_definition(x, wq, ws);
      ASSERT_EQ(q, wq) << "K=" << K << " kind " << kind;
      for (size_t g = 0; g < s.size(); ++g)
        ASSERT_TRUE(f32_bits(s[g]) == f32_bits(ws[g]) || (std::isnan(s[g]) && std::isnan(ws[g])))
            << "K=" << K << " kind " << kind << " block " << g;
      if (kind == 1) {
        EXPECT_EQ(s[0], 0.0f);
      }
    }
  }
  // The block's largest magnitude maps to 448 (code 0x7e), its sign kept.
  std::vector<float> x(130, 0.25f);
  x[5] = -7.0f;
  x[129] = 3.0f;
  std::vector<uint8_t> q(130);
  float s[2];
  gemm::quantise_fp8_act_row(x.data(), 130, q.data(), s);
  EXPECT_EQ(int(q[5]), 0xfe);
  EXPECT_EQ(int(q[129]), 0x7e);
  EXPECT_EQ(s[0], 7.0f / 448.0f);
}

struct Problem {
  int64_t M, K, N;
  std::vector<uint8_t> qa;  // [M, K]
  std::vector<float> sa;    // [M, kb]
  std::vector<uint8_t> qw;  // [K, N]
  std::vector<float> sw;    // [kb, N]
  int64_t kb() const { return (K + 127) / 128; }
};

// Every code but the NaNs (subnormals and zeros of both signs included), unless `nan_weights`.
uint8_t random_code(Rng& rng, bool nan_ok) {
  for (;;) {
    const auto c = uint8_t(rng.integer(0, 255));
    if (nan_ok || (c & 0x7f) != 0x7f) return c;
  }
}

Problem random_problem(Rng& rng, int64_t M, int64_t K, int64_t N, int mode) {
  Problem p{M, K, N, {}, {}, {}, {}};
  p.qa.resize(size_t(M * K));
  p.qw.resize(size_t(K * N));
  p.sa.resize(size_t(M * p.kb()));
  p.sw.resize(size_t(p.kb() * N));
  for (auto& c : p.qa) c = mode == 1 ? uint8_t(rng.coin() ? 0x7e : 0xfe) : mode == 2 ? uint8_t(rng.integer(0, 8)) : random_code(rng, false);
  for (auto& c : p.qw) c = mode == 1 ? uint8_t(rng.coin() ? 0x7e : 0xfe) : random_code(rng, mode == 3 && rng.coin(0.01));
  for (auto& s : p.sa) s = std::ldexp(rng.uniform(1, 2), int(rng.integer(-20, 4)));
  for (auto& s : p.sw) s = std::ldexp(rng.uniform(1, 2), int(rng.integer(-20, 4)));
  if (M > 2) {  // an all-zero row: codes 0, scale 0
    std::fill(p.qa.begin() + 1 * K, p.qa.begin() + 2 * K, 0);
    std::fill(p.sa.begin() + 1 * p.kb(), p.sa.begin() + 2 * p.kb(), 0.0f);
  }
  return p;
}

// The definition with the block's dot product as an exact integer: e4m3 * 2^9 is an integer, products * 2^18.
std::vector<float> oracle(const Problem& p) {
  auto fixed = [](uint8_t c) { return int64_t(std::ldexp(double(testing::e4m3_by_definition(c)), 9)); };
  std::vector<float> c(size_t(p.M * p.N));
  for (int64_t m = 0; m < p.M; ++m)
    for (int64_t n = 0; n < p.N; ++n) {
      float acc = 0.0f;
      for (int64_t g = 0; g < p.kb(); ++g) {
        int64_t sum = 0;
        bool nan = false;
        for (int64_t k = g * 128; k < std::min(p.K, g * 128 + 128); ++k) {
          const uint8_t w = p.qw[size_t(k * p.N + n)];
          if ((w & 0x7f) == 0x7f) nan = true;
          else sum += fixed(p.qa[size_t(m * p.K + k)]) * fixed(w);
        }
        const float d = nan ? std::numeric_limits<float>::quiet_NaN() : float(std::ldexp(double(sum), -18));
        const float t = d * p.sa[size_t(m * p.kb() + g)];
        acc = acc + t * p.sw[size_t(g * p.N + n)];
      }
      c[size_t(m * p.N + n)] = acc;
    }
  return c;
}

std::vector<gemm::GemmFp8ActKernel> variants() {
  std::vector<gemm::GemmFp8ActKernel> v{{gemm::detail::gemm_fp8a_fp8w_f32__scalar, "scalar"}};
  if (detected_isa() >= Isa::avx2) v.push_back({gemm::detail::gemm_fp8a_fp8w_f32__avx2, "avx2"});
  if (detected_isa() >= Isa::avx512) v.push_back({gemm::detail::gemm_fp8a_fp8w_f32__avx512, "avx512"});
  return v;
}

bool same(float a, float b) { return f32_bits(a) == f32_bits(b) || (std::isnan(a) && std::isnan(b)); }

void check_problem(const Problem& p, const char* what) {
  gemm::Fp8Source src{p.qw.data(), p.N, 1, p.sw.data(), p.N, 1, 128, 1};
  src.scales_only = true;
  const gemm::PackedWeights w = gemm::pack_weights_fp8(src, p.K, p.N);
  const std::vector<float> want = oracle(p);
  for (const auto& k : variants()) {
    // The whole width, and a column range starting at a later panel.
    for (int64_t n0 : {int64_t(0), int64_t(kGemmNR)}) {
      if (n0 > 0 && n0 >= p.N) continue;
      const int64_t n1 = p.N, ldc = n1 - n0 + 3;
      std::vector<float> c(size_t(std::max<int64_t>(1, p.M * ldc)), -7.0f);
      k.fn(p.M, p.K, n0, n1, p.qa.data(), p.K, p.sa.data(), p.kb(), w.data(), c.data(), ldc);
      for (int64_t m = 0; m < p.M; ++m) {
        for (int64_t n = n0; n < n1; ++n)
          ASSERT_TRUE(same(c[size_t(m * ldc + n - n0)], want[size_t(m * p.N + n)]))
              << what << " " << k.name << " M=" << p.M << " K=" << p.K << " N=" << p.N << " n0=" << n0 << " m=" << m
              << " n=" << n << ": " << c[size_t(m * ldc + n - n0)] << " want " << want[size_t(m * p.N + n)];
        for (int64_t n = n1 - n0; n < ldc; ++n) ASSERT_EQ(c[size_t(m * ldc + n)], -7.0f) << "wrote past n1";
      }
    }
  }
}

TEST(Fp8Act, EveryVariantEqualsTheIntegerOracleBitwise) {
  Rng rng(11);
  for (int64_t M : {1, 2, 3, 4, 5, 7, 9, 13})
    for (int64_t K : {0, 1, 2, 127, 128, 129, 255, 257, 383})
      for (int64_t N : {1, 31, 32, 33, 67})
        check_problem(random_problem(rng, M, K, N, 0), "random");
}

TEST(Fp8Act, SaturatedSubnormalAndNanCodes) {
  Rng rng(12);
  for (int64_t M : {1, 5})
    for (int64_t K : {128, 131, 640}) {
      check_problem(random_problem(rng, M, K, 45, 1), "all +-448");
      check_problem(random_problem(rng, M, K, 45, 2), "subnormal activations");
      check_problem(random_problem(rng, M, K, 45, 3), "NaN weights");
    }
  // Sums of 128 products of 448 * 448 in one block: the largest a block can hold, still exact.
  Problem p = random_problem(rng, 3, 128, 32, 1);
  std::fill(p.qa.begin(), p.qa.end(), 0x7e);
  std::fill(p.qw.begin(), p.qw.end(), 0x7e);
  std::fill(p.sa.begin(), p.sa.end(), 1.0f);
  std::fill(p.sw.begin(), p.sw.end(), 1.0f);
  EXPECT_EQ(oracle(p)[0], 128.0f * 448.0f * 448.0f);
  check_problem(p, "max block");
}

TEST(Fp8Act, SelectedKernelFollowsTheIsa) {
  const auto k = gemm::select_gemm_fp8_act();
  EXPECT_STREQ(k.name, active_isa() >= Isa::avx512 ? "gemm_fp8a_fp8w_f32__avx512"
                       : active_isa() >= Isa::avx2 ? "gemm_fp8a_fp8w_f32__avx2"
                                                   : "gemm_fp8a_fp8w_f32__scalar");
}

}  // namespace
}  // namespace moefuse
