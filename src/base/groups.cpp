#include "base/groups.h"

#include <cstdint>

#include "base/check.h"
#include "base/elements.h"

namespace moefuse {

int64_t group_list_value(const Tensor& group_list, int64_t i, int64_t j) {
  int64_t off = i * group_list.stride(0) + (group_list.dim() == 2 ? j * group_list.stride(1) : 0);
  return load_element_int(group_list.data(), group_list.dtype(), off);
}

int64_t check_group_list(std::string_view op, std::string_view arg, const Tensor& group_list, int64_t type,
                         int64_t num_experts, int64_t rows, int64_t max_groups) {
  if (type < 0 || type > 2) check::fail_value(op, "group_list_type", "0 (cumsum), 1 (count) or 2 (key-value)",
                                              std::to_string(type));
  check::dtype_in(op, arg, group_list, {DType::i64, DType::i32});
  const bool kv = type == 2;
  if (kv ? (group_list.dim() != 2 || group_list.size(1) != 2) : group_list.dim() != 1)
    check::fail_value(op, arg, kv ? "a [G, 2] key-value tensor (group_list_type 2)" : "a 1-D tensor [G]",
                      group_list.describe());
  const int64_t g = group_list.size(0);
  if (g > max_groups)
    check::fail_value(op, arg, "at most " + std::to_string(max_groups) + " groups", std::to_string(g) + " groups");
  int64_t covered = 0;
  for (int64_t i = 0; i < g; ++i) {
    auto at = [&] { return std::string(arg) + "[" + std::to_string(i) + "]"; };  // only on failure
    if (type == 0) {
      int64_t end = group_list_value(group_list, i, 0);
      if (end < covered)
        check::fail_value(op, at(), "a non-decreasing cumulative row count >= " + std::to_string(covered),
                          std::to_string(end));
      covered = end;
    } else if (type == 1) {
      int64_t cnt = group_list_value(group_list, i, 0);
      if (cnt < 0) check::fail_value(op, at(), "a row count >= 0", std::to_string(cnt));
      if (__builtin_add_overflow(covered, cnt, &covered)) covered = INT64_MAX;
    } else {
      int64_t cnt = group_list_value(group_list, i, 1);
      if (cnt <= 0) break;  // the terminator row: nothing after it is read
      int64_t expert = group_list_value(group_list, i, 0);
      if (expert < 0 || expert >= num_experts)
        check::fail_value(op, at(), "an expert id in [0, " + std::to_string(num_experts) + ")", std::to_string(expert));
      if (__builtin_add_overflow(covered, cnt, &covered)) covered = INT64_MAX;
    }
    if (covered > rows)
      check::fail_value(op, arg, "groups covering at most " + std::to_string(rows) + " rows",
                        std::to_string(covered) + " rows (reached at group " + std::to_string(i) + ")");
  }
  return covered;
}

}  // namespace moefuse
