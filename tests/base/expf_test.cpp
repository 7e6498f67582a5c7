// exp_f32 (base/expf.h): its specials, its accuracy against e^x in double (kMaxUlpError, on a sample), and that
// every vector version this machine runs (the rows family's exp rows, rows/variants.h) gives the scalar version's
// bits on every float whose exp is neither 0 nor inf and on every special: exhaustively in the release build,
// every 61st bit pattern under the sanitizers (whose builds run this too, several times slower).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "base/expf.h"
#include "kernels/rows/variants.h"
#include "moefuse/cpu.h"
#include "oracle/exp_f32.h"

namespace moefuse {
namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr uint32_t kStride = 61;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr uint32_t kStride = 61;
#else
constexpr uint32_t kStride = 1;
#endif
#else
constexpr uint32_t kStride = 1;
#endif

uint32_t bits(float v) { return std::bit_cast<uint32_t>(v); }
float from(uint32_t u) { return std::bit_cast<float>(u); }

TEST(ExpF32, Specials) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(bits(exp_f32(0.0f)), bits(1.0f));
  EXPECT_EQ(bits(exp_f32(-0.0f)), bits(1.0f));
  EXPECT_EQ(bits(exp_f32(inf)), bits(inf));
  EXPECT_EQ(bits(exp_f32(-inf)), bits(0.0f));
  EXPECT_EQ(bits(exp_f32(1.0f)), bits(2.71828182f));
  // NaN -> x + x: quiet, sign and payload kept.
  EXPECT_EQ(bits(exp_f32(from(0x7f800001u))), 0x7fc00001u);
  EXPECT_EQ(bits(exp_f32(from(0xffc12345u))), 0xffc12345u);
  // The overflow threshold is the largest finite result's input; the underflow one the smallest nonzero's.
  const float hi = expf_detail::kOverflow, lo = expf_detail::kUnderflow;
  EXPECT_TRUE(std::isfinite(exp_f32(hi)));
  EXPECT_EQ(bits(exp_f32(std::nextafter(hi, inf))), bits(inf));
  EXPECT_GT(exp_f32(lo), 0.0f);
  EXPECT_EQ(bits(exp_f32(std::nextafter(lo, -inf))), bits(0.0f));
  EXPECT_EQ(bits(exp_f32(-100.0f)), bits(float(std::exp(-100.0))));  // a subnormal result, rounded once
}

// |exp_f32(x) - e^x| in units of the float ulp at e^x (e^x from double exp: its error is ~2^-29 of a float ulp).
double ulp_error(float x) {
  const double e = std::exp(double(x));
  int ex;
  std::frexp(e, &ex);
  const double ulp = std::ldexp(1.0, std::max(ex - 24, -149));
  return std::fabs(double(exp_f32(x)) - e) / ulp;
}

TEST(ExpF32, AccuracyWithinTheStatedUlps) {
  double worst = 0.0;
  float worst_x = 0.0f;
  const uint32_t step = 257 * kStride;
  for (uint32_t sign : {0u, 0x80000000u}) {
    const uint32_t last = sign ? bits(-expf_detail::kUnderflow) : bits(expf_detail::kOverflow);
    for (uint32_t u = 0; u <= last; u += step) {
      const float x = from(sign | u);
      const double err = ulp_error(x);
      if (err > worst) worst = err, worst_x = x;
    }
  }
  EXPECT_LE(worst, expf_detail::kMaxUlpError) << "at x = " << worst_x;
  EXPECT_GT(worst, 0.5);  // the sample reaches the worst cases' neighbourhood (not a vacuous bound)
}

using ExpRow = void (*)(int64_t n, const float* x, float* out);

// Runs every exp row of `fns` and the reference `ref` on all 2^32 bit patterns (every kStride-th), 2 threads;
// returns per row the count of patterns whose results differ and one of them.
void compare_on_every_float(ExpRow ref, const std::vector<ExpRow>& fns, std::vector<int64_t>& bad,
                            std::vector<uint32_t>& example) {
  constexpr int64_t kChunk = 1 << 14;
  const uint64_t count = 0xffffffffull / kStride + 1;
  std::vector<std::atomic<int64_t>> nbad(fns.size());
  std::vector<std::atomic<uint32_t>> ex(fns.size());
  auto work = [&](int part, int parts) {
    std::vector<float> x(kChunk), y(kChunk), z(kChunk);
    for (uint64_t c = uint64_t(part) * kChunk; c < count; c += uint64_t(parts) * kChunk) {
      const int64_t n = int64_t(std::min<uint64_t>(kChunk, count - c));
      for (int64_t i = 0; i < n; ++i) x[size_t(i)] = from(uint32_t((c + uint64_t(i)) * kStride));
      ref(n, x.data(), z.data());
      for (size_t f = 0; f < fns.size(); ++f) {
        fns[f](n, x.data(), y.data());
        for (int64_t i = 0; i < n; ++i)
          if (bits(y[size_t(i)]) != bits(z[size_t(i)])) ++nbad[f], ex[f] = bits(x[size_t(i)]);
      }
    }
  };
  std::thread other(work, 1, 2);
  work(0, 2);
  other.join();
  for (size_t f = 0; f < fns.size(); ++f) bad.push_back(nbad[f]), example.push_back(ex[f]);
}

TEST(ExpF32, VectorVersionsEqualTheScalarOneOnEveryFloat) {
  if (int(detected_isa()) < int(Isa::avx2)) GTEST_SKIP() << "no vector ISA here";
  // The reference is exp_f32's scalar code compiled with FMA (one instruction per std::fma instead of a libm
  // call): the same operations as exp_f32__scalar, which the next test ties it to on a sample.
  std::vector<ExpRow> fns = {rows::detail::exp_f32__avx2};
  std::vector<std::string> names = {"avx2"};
  if (int(detected_isa()) >= int(Isa::avx512)) fns.push_back(rows::detail::exp_f32__avx512), names.push_back("avx512");
  std::vector<int64_t> bad;
  std::vector<uint32_t> ex;
  compare_on_every_float(rows::detail::exp_f32_scalar__avx2, fns, bad, ex);
  for (size_t f = 0; f < fns.size(); ++f)
    EXPECT_EQ(bad[f], 0) << names[f] << ": e.g. x bits 0x" << std::hex << ex[f];
}

// The layer oracle's own statement of the algorithm (other table form, ldexp for the scale) gives the same bits.
TEST(ExpF32, TheOraclesStatementAgrees) {
  for (uint64_t u = 0; u <= 0xffffffffull; u += 1021ull * kStride) {
    const float x = from(uint32_t(u));
    ASSERT_EQ(bits(oracle::exp_f32(x)), bits(exp_f32(x))) << "x bits 0x" << std::hex << u;
  }
}

TEST(ExpF32, ScalarCodeWithAndWithoutFmaInstructionsAgree) {
  if (int(detected_isa()) < int(Isa::avx2)) GTEST_SKIP() << "no FMA here";
  std::vector<float> x, y(1 << 16), z(1 << 16);
  for (uint64_t u = 0; u <= 0xffffffffull; u += 4099ull * kStride) x.push_back(from(uint32_t(u)));
  y.resize(x.size()), z.resize(x.size());
  rows::detail::exp_f32__scalar(int64_t(x.size()), x.data(), y.data());
  rows::detail::exp_f32_scalar__avx2(int64_t(x.size()), x.data(), z.data());
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(bits(y[i]), bits(z[i])) << "x bits 0x" << std::hex << bits(x[i]);
}

// The vector rows fall back to exp_f32 for the last n mod lanes elements: short rows mix both paths.
TEST(ExpF32, ShortRowsMixVectorAndTail) {
  const float v[] = {0.0f, -0.0f, 1.0f, -1.0f, 88.7f, 88.8f, -103.9f, -104.0f, 1e-40f, -1e-40f, NAN, -NAN,
                     std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(), 20.5f, -7.25f, 3.0f};
  for (ExpRow fn : {rows::detail::exp_f32__avx2, rows::detail::exp_f32__avx512}) {
    if (fn == rows::detail::exp_f32__avx2 && int(detected_isa()) < int(Isa::avx2)) continue;
    if (fn == rows::detail::exp_f32__avx512 && int(detected_isa()) < int(Isa::avx512)) continue;
    for (int64_t n = 0; n <= 17; ++n) {
      float y[17], z[17];
      fn(n, v, y);
      for (int64_t i = 0; i < n; ++i) z[i] = exp_f32(v[i]);
      for (int64_t i = 0; i < n; ++i) EXPECT_EQ(bits(y[i]), bits(z[i])) << "n = " << n << " i = " << i;
    }
  }
}

}  // namespace
}  // namespace moefuse
