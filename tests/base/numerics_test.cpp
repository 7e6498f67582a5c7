// The numerics tiers' names and parsing (moefuse/numerics.h), and the process default read from MOEFUSE_NUMERICS.
// NumericsDefault.* checks default_numerics() against the variable it runs under: every suite runs with
// MOEFUSE_NUMERICS=portable, and tests/CMakeLists.txt runs NumericsDefault.* again under native, an empty value and a
// bad one (tests/layer/numerics_layer_test.cpp holds the layer's side of it).
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "moefuse/error.h"
#include "moefuse/numerics.h"
#include "util/errors.h"

namespace moefuse {
namespace {

TEST(Numerics, NamesReadBack) {
  EXPECT_EQ(numerics_name(Numerics::native), "native");
  EXPECT_EQ(numerics_name(Numerics::portable), "portable");
  for (Numerics n : {Numerics::native, Numerics::portable}) EXPECT_EQ(parse_numerics(numerics_name(n), "x"), n);
}

TEST(Numerics, ParseRefusesAnythingElseNamingTheSource) {
  for (const char* bad : {"", "Native", "PORTABLE", " native", "native ", "fast", "exact"})
    EXPECT_THROWS_MSG(parse_numerics(bad, "--numerics"), ValueError, "--numerics: expected native or portable",
                      std::string("got \"") + bad + "\"");
}

// The variable this process runs under ("" when unset).
std::string environment_value() {
  const char* v = std::getenv("MOEFUSE_NUMERICS");
  return v ? v : "";
}

TEST(NumericsDefault, FollowsTheEnvironment) {
  const std::string v = environment_value();
  if (v.empty()) {
    EXPECT_EQ(default_numerics(), Numerics::native);  // unset or empty: native
  } else if (v == "native" || v == "portable") {
    EXPECT_EQ(default_numerics(), parse_numerics(v, "MOEFUSE_NUMERICS"));
  } else {
    // A bad value is reported at every call, not only the first.
    for (int i = 0; i < 2; ++i)
      EXPECT_THROWS_MSG(default_numerics(), ValueError, "MOEFUSE_NUMERICS: expected native or portable",
                        "got \"" + v + "\"");
  }
}

}  // namespace
}  // namespace moefuse
