// Checks that a call throws a given moefuse error whose message contains given fragments.
#pragma once

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <string_view>

namespace moefuse::testing {

template <class Err, class F>
::testing::AssertionResult throws_with(F&& f, std::initializer_list<std::string_view> fragments) {
  try {
    f();
  } catch (const Err& e) {
    std::string what = e.what();
    for (std::string_view frag : fragments)
      if (what.find(frag) == std::string::npos)
        return ::testing::AssertionFailure() << "message \"" << what << "\" lacks \"" << frag << "\"";
    return ::testing::AssertionSuccess();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw a different exception type: " << e.what();
  }
  return ::testing::AssertionFailure() << "did not throw";
}

}  // namespace moefuse::testing

/// EXPECT_THROWS_MSG(statement, moefuse::ValueError, "op_name", "arg", "expected ...")
#define EXPECT_THROWS_MSG(stmt, ErrType, ...) \
  EXPECT_TRUE(::moefuse::testing::throws_with<ErrType>([&] { (void)(stmt); }, {__VA_ARGS__}))
