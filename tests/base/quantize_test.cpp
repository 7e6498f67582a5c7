// The shared dynamic int8 quantisation (docs/operators.md, Numerics: dynamic int8 quantisation) and its non-finite
// rules (src/base/quantize.h).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "base/quantize.h"

namespace moefuse {
namespace {

TEST(QuantizeRowDynamic, ScaleIsMaxOver127AndValuesRoundHalfEven) {
  // max |v| = 127 -> s = 1; 2.5 -> 2 (half to even), -3.5 -> -4, 0.5 -> 0.
  const float v[5] = {127.0f, 2.5f, -3.5f, 0.5f, -127.0f};
  int8_t q[5];
  EXPECT_EQ(quantize_row_dynamic(v, 5, q), 1.0f);
  EXPECT_EQ(q[0], 127);
  EXPECT_EQ(q[1], 2);
  EXPECT_EQ(q[2], -4);
  EXPECT_EQ(q[3], 0);
  EXPECT_EQ(q[4], -127);
}

TEST(QuantizeRowDynamic, ZeroRowGivesZeroScaleNotNan) {
  const float v[3] = {0.0f, -0.0f, 0.0f};
  int8_t q[3] = {1, 1, 1};
  EXPECT_EQ(quantize_row_dynamic(v, 3, q), 0.0f);
  EXPECT_EQ(q[0] | q[1] | q[2], 0);
}

TEST(QuantizeRowDynamic, NanFlagsTheRow) {
  const float v[3] = {1.0f, std::numeric_limits<float>::quiet_NaN(), -2.0f};
  int8_t q[3] = {5, 5, 5};
  EXPECT_TRUE(std::isnan(quantize_row_dynamic(v, 3, q)));
  EXPECT_EQ(q[0] | q[1] | q[2], 0);
}

TEST(QuantizeRowDynamic, InfinityKeepsItsSign) {
  const float v[3] = {INFINITY, 3.0f, -INFINITY};
  int8_t q[3];
  EXPECT_EQ(quantize_row_dynamic(v, 3, q), INFINITY);
  EXPECT_EQ(q[0], 127);
  EXPECT_EQ(q[1], 0);
  EXPECT_EQ(q[2], -127);
}

// The plain formula quantize_row_dynamic was first written as (fmax, nearbyint, fmin, one row case at a time): the
// vectorisable version must give its bits for every input.
float plain_formula(const float* v, int64_t n, int8_t* q) {
  float amax = 0.0f;
  bool nan = false;
  for (int64_t i = 0; i < n; ++i) {
    nan |= std::isnan(v[i]);
    amax = std::fmax(amax, std::fabs(v[i]));
  }
  if (nan) {
    for (int64_t i = 0; i < n; ++i) q[i] = 0;
    return std::numeric_limits<float>::quiet_NaN();
  }
  const float s = amax / 127.0f;
  for (int64_t i = 0; i < n; ++i) {
    if (s == 0.0f) {
      q[i] = 0;
    } else if (std::isinf(s)) {
      q[i] = std::isinf(v[i]) ? (v[i] > 0 ? int8_t(127) : int8_t(-127)) : int8_t(0);
    } else {
      const float r = std::nearbyint(v[i] / s);
      q[i] = int8_t(std::fmin(127.0f, std::fmax(-127.0f, r)));
    }
  }
  return s;
}

void expect_same_as_plain_formula(const std::vector<float>& v, const std::string& what) {
  const int64_t n = int64_t(v.size());
  std::vector<int8_t> want(v.size(), 99), got(v.size(), 99);
  const float s_want = plain_formula(v.data(), n, want.data());
  const float s_got = quantize_row_dynamic(v.data(), n, got.data());
  ASSERT_EQ(std::bit_cast<uint32_t>(s_want), std::bit_cast<uint32_t>(s_got)) << what;
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(int(want[size_t(i)]), int(got[size_t(i)])) << what << ", element " << i << " = " << v[size_t(i)];
}

TEST(QuantizeRowDynamic, SameBitsAsThePlainFormulaOnRandomBitPatterns) {
  // Rows of random bit patterns below a chosen max|v| (normal, huge, tiny, subnormal: where s itself is subnormal
  // and |v / s| reaches past 127), each row's max placed once: every element is an arbitrary x / s.
  std::mt19937_64 gen(11);
  auto bits = [&](uint32_t lo, uint32_t hi) { return std::uniform_int_distribution<uint32_t>(lo, hi)(gen); };
  const uint32_t max_ranges[][2] = {{0x3f000000u, 0x43000000u}, {0x7e000000u, 0x7f7fffffu}, {0x00800000u, 0x02000000u},
                                    {0x00000001u, 0x00007fffu}, {0x00000001u, 0x007fffffu}, {0x00000001u, 0x00000040u}};
  for (const auto& range : max_ranges)
    for (int row = 0; row < 300; ++row) {
      const uint32_t max_bits = bits(range[0], range[1]);
      std::vector<float> v(size_t(bits(1, 2048)));
      for (float& x : v) x = std::bit_cast<float>(bits(0, max_bits) | (bits(0, 1) << 31));
      v[size_t(bits(0, uint32_t(v.size() - 1)))] = std::bit_cast<float>(max_bits | (bits(0, 1) << 31));
      expect_same_as_plain_formula(v, "max bits " + std::to_string(max_bits));
    }
}

TEST(QuantizeRowDynamic, SameBitsAsThePlainFormulaOnTiesAndSpecialValues) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const float sub = std::numeric_limits<float>::denorm_min();
  // s = 1 exactly: every k + 0.5 is a tie (half to even); s = 2: odd integers are ties.
  std::vector<float> ties = {127.0f};
  for (int k = -127; k <= 126; ++k) ties.push_back(float(k) + 0.5f);
  expect_same_as_plain_formula(ties, "ties, s = 1");
  std::vector<float> ties2 = {-254.0f};
  for (int k = -254; k <= 254; ++k) ties2.push_back(float(k));
  expect_same_as_plain_formula(ties2, "ties, s = 2");
  const std::vector<std::vector<float>> rows = {
      {}, {0.0f}, {-0.0f}, {0.0f, -0.0f, 0.0f}, {nan}, {1.0f, nan, inf}, {-nan, 0.0f}, {inf}, {-inf, 3.0f, inf},
      {inf, -inf, nan}, {sub}, {sub, -sub, 0.0f}, {126.0f * sub, sub, 63.0f * sub}, {191.0f * sub, sub, -95.0f * sub},
      {std::numeric_limits<float>::max(), 1.0f, -std::numeric_limits<float>::max()},
      {std::numeric_limits<float>::min(), sub}, {1e-40f, -1e-41f, 3e-42f}, {-5.0f}, {0.25f, -0.125f}};
  for (size_t r = 0; r < rows.size(); ++r) expect_same_as_plain_formula(rows[r], "special row " + std::to_string(r));
}

}  // namespace
}  // namespace moefuse
