#include <gtest/gtest.h>

#include <vector>

#include "base/groups.h"
#include "moefuse/error.h"
#include "util/errors.h"

namespace moefuse {
namespace {

std::vector<GroupSpan> spans(const Tensor& gl, GroupListType type) {
  std::vector<GroupSpan> out;
  for_each_group(gl, type, [&](GroupSpan s) { out.push_back(s); });
  return out;
}

TEST(Groups, TheThreeTypesDescribeTheSameSplit) {
  Tensor cumsum = Tensor::from_values<int64_t>({4}, {2, 2, 5, 6});
  Tensor count = Tensor::from_values<int32_t>({4}, {2, 0, 3, 1});
  Tensor kv = Tensor::from_values<int64_t>({4, 2}, {0, 2, 2, 3, 3, 1, 0, 0});
  EXPECT_EQ(check_group_list("op", "group_list", cumsum, 0, 4, 6, 1024), 6);
  EXPECT_EQ(check_group_list("op", "group_list", count, 1, 4, 6, 1024), 6);
  EXPECT_EQ(check_group_list("op", "group_list", kv, 2, 4, 6, 1024), 6);
  for (auto [t, gl] : {std::pair{GroupListType::cumsum, cumsum}, std::pair{GroupListType::count, count},
                       std::pair{GroupListType::key_value, kv}}) {
    std::vector<GroupSpan> s = spans(gl, t);
    ASSERT_EQ(s.size(), 3u);
    EXPECT_EQ(s[0].expert, 0);
    EXPECT_EQ(s[1].expert, 2);
    EXPECT_EQ(s[1].begin, 2);
    EXPECT_EQ(s[1].end, 5);
    EXPECT_EQ(s[2].expert, 3);
  }
}

TEST(Groups, KeyValueStopsAtTheFirstNonPositiveCount) {
  Tensor kv = Tensor::from_values<int64_t>({3, 2}, {1, 2, 9, -1, 99, 5});  // ids after the terminator are not read
  EXPECT_EQ(check_group_list("op", "g", kv, 2, 2, 10, 1024), 2);
  EXPECT_EQ(spans(kv, GroupListType::key_value).size(), 1u);
}

TEST(Groups, Errors) {
  Tensor dec = Tensor::from_values<int64_t>({2}, {3, 2});
  EXPECT_THROWS_MSG(check_group_list("gmm", "group_list", dec, 0, 2, 9, 1024), ValueError, "gmm: group_list[1]",
                    "non-decreasing", "got 2");
  Tensor neg = Tensor::from_values<int64_t>({1}, {-1});
  EXPECT_THROWS_MSG(check_group_list("gmm", "group_list", neg, 1, 2, 9, 1024), ValueError, "row count >= 0");
  Tensor big = Tensor::from_values<int64_t>({2}, {5, 5});
  EXPECT_THROWS_MSG(check_group_list("gmm", "group_list", big, 1, 2, 9, 1024), ValueError, "at most 9 rows",
                    "10 rows");
  Tensor huge = Tensor::from_values<int64_t>({2}, {INT64_MAX, INT64_MAX});  // would overflow a plain sum
  EXPECT_THROWS_MSG(check_group_list("op", "group_index", huge, 1, 2, INT64_MAX - 1, 1024), ValueError,
                    "group_index");
  Tensor bad_id = Tensor::from_values<int64_t>({1, 2}, {7, 1});
  EXPECT_THROWS_MSG(check_group_list("op", "g", bad_id, 2, 4, 9, 1024), ValueError, "expert id in [0, 4)", "got 7");
  EXPECT_THROWS_MSG(check_group_list("op", "g", dec, 2, 4, 9, 1024), ValueError, "[G, 2]");
  EXPECT_THROWS_MSG(check_group_list("op", "g", dec, 3, 4, 9, 1024), ValueError, "group_list_type", "got 3");
  EXPECT_THROWS_MSG(check_group_list("op", "g", dec, 0, 4, 9, 1), ValueError, "at most 1 groups");
  EXPECT_THROWS_MSG(check_group_list("op", "g", Tensor::zeros(DType::f32, {2}), 0, 4, 9, 8), TypeError, "i64 or i32");
}

}  // namespace
}  // namespace moefuse
