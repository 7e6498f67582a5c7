// bf16/fp16 conversions against independent oracles: the compiler's _Float16 for fp16, and a nearest-value search
// in double for bf16.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "moefuse/dtype.h"

namespace moefuse {
namespace {

uint16_t f16_oracle(float f) {
  _Float16 h = static_cast<_Float16>(f);  // IEEE conversion, round-to-nearest-even
  uint16_t bits;
  std::memcpy(&bits, &h, 2);
  return bits;
}

// Nearest bf16 to f by comparing the two candidates around it in double; ties to the even mantissa.
uint16_t bf16_oracle(float f) {
  uint32_t u = f32_bits(f);
  uint16_t lo = uint16_t(u >> 16), hi = uint16_t(lo + 1);
  double v = f, dlo = std::fabs(double(to_f32(bfloat16{lo})) - v), dhi = std::fabs(double(to_f32(bfloat16{hi})) - v);
  if ((u & 0xffffu) == 0) return lo;
  if ((hi & 0x7f80u) == 0x7f80u && (hi & 0x7fu) == 0) {
    // Candidate above is infinity: treat it as 2^128 for the distance, as IEEE rounding does.
    dhi = std::fabs(std::ldexp(1.0, 128) * (f < 0 ? -1 : 1) - v);
  }
  if (dlo < dhi) return lo;
  if (dhi < dlo) return hi;
  return (lo & 1u) ? hi : lo;
}

TEST(DType, SizesAndNames) {
  EXPECT_EQ(dtype_size(DType::bf16), 2u);
  EXPECT_EQ(dtype_size(DType::i64), 8u);
  EXPECT_EQ(dtype_name(DType::boolean), "bool");
  EXPECT_TRUE(dtype_is_float(DType::f16));
  EXPECT_FALSE(dtype_is_float(DType::i32));
}

TEST(DType, F16RoundTripIsExactForEveryBitPattern) {
  for (uint32_t b = 0; b < 65536; ++b) {
    float16 h{uint16_t(b)};
    float f = to_f32(h);
    _Float16 ref;
    uint16_t rb = uint16_t(b);
    std::memcpy(&ref, &rb, 2);
    if (std::isnan(f)) {
      ASSERT_TRUE(std::isnan(float(ref))) << b;
      ASSERT_EQ(to_f16(f).bits & 0x7c00u, 0x7c00u) << b;
      ASSERT_NE(to_f16(f).bits & 0x3ffu, 0u) << b;
      continue;
    }
    ASSERT_EQ(f32_bits(f), f32_bits(float(ref))) << "widening bits " << b;
    ASSERT_EQ(to_f16(f).bits, b) << "round trip " << b;
  }
}

TEST(DType, F16NarrowingMatchesIeeeOnRandomAndEdgeFloats) {
  std::mt19937 gen(7);
  for (int i = 0; i < 2'000'000; ++i) {
    uint32_t u = gen();
    float f = f32_from_bits(u);
    if (std::isnan(f)) continue;
    ASSERT_EQ(to_f16(f).bits, f16_oracle(f)) << std::hex << u;
  }
  // Every float in the f16 subnormal/normal boundary region and around the overflow threshold.
  for (uint32_t u = 0x33000000u - 4096; u < 0x38800000u + 4096; u += 7) ASSERT_EQ(to_f16(f32_from_bits(u)).bits, f16_oracle(f32_from_bits(u))) << std::hex << u;
  for (uint32_t u = 0x477fe000u - 4096; u < 0x47800000u + 4096; ++u) ASSERT_EQ(to_f16(f32_from_bits(u)).bits, f16_oracle(f32_from_bits(u))) << std::hex << u;
}

TEST(DType, Bf16RoundTripAndNarrowing) {
  for (uint32_t b = 0; b < 65536; ++b) {
    float f = to_f32(bfloat16{uint16_t(b)});
    if (std::isnan(f)) {
      ASSERT_TRUE(std::isnan(to_f32(to_bf16(f)))) << b;
      continue;
    }
    ASSERT_EQ(to_bf16(f).bits, b) << b;
  }
  std::mt19937 gen(11);
  for (int i = 0; i < 2'000'000; ++i) {
    float f = f32_from_bits(gen());
    if (std::isnan(f)) continue;
    ASSERT_EQ(to_bf16(f).bits, bf16_oracle(f)) << std::hex << f32_bits(f);
  }
}

TEST(DType, TiesRoundToEven) {
  // 1 + 2^-8 lies halfway between bf16 1.0 and 1.0078125: even mantissa (1.0) wins.
  EXPECT_EQ(to_bf16(1.0f + std::ldexp(1.0f, -8)).bits, to_bf16(1.0f).bits);
  // 1 + 3*2^-8 lies halfway between 1.0078125 (odd) and 1.015625 (even).
  EXPECT_EQ(to_f32(to_bf16(1.0f + 3 * std::ldexp(1.0f, -8))), 1.015625f);
  // f16: 2049 is halfway between 2048 and 2050 -> 2048.
  EXPECT_EQ(to_f32(to_f16(2049.0f)), 2048.0f);
  EXPECT_EQ(to_f32(to_f16(2051.0f)), 2052.0f);
}

TEST(DType, NanStaysNanWithSignAndInfStaysInf) {
  float qnan_neg = -std::numeric_limits<float>::quiet_NaN();
  float snan_low_payload = f32_from_bits(0x7f800001u);  // payload only in bits bf16 drops
  EXPECT_TRUE(std::isnan(to_f32(to_bf16(snan_low_payload))));
  EXPECT_TRUE(std::isnan(to_f32(to_f16(snan_low_payload))));
  EXPECT_TRUE(std::signbit(to_f32(to_bf16(qnan_neg))));
  EXPECT_TRUE(std::signbit(to_f32(to_f16(qnan_neg))));
  EXPECT_EQ(to_f32(to_bf16(INFINITY)), INFINITY);
  EXPECT_EQ(to_f32(to_f16(-INFINITY)), -INFINITY);
  EXPECT_EQ(to_f32(to_f16(1e6f)), INFINITY);
  EXPECT_EQ(to_f32(to_f16(65504.0f)), 65504.0f);
  EXPECT_EQ(to_f32(to_bf16(3.4e38f)), INFINITY);  // rounds up past the largest bf16
}

}  // namespace
}  // namespace moefuse
