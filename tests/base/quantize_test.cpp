// The shared dynamic int8 quantisation (decisions.md §3) and its non-finite rules (src/base/quantize.h).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

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

}  // namespace
}  // namespace moefuse
