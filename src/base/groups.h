// Group lists: how grouped_matmul (group_list), dequant_swiglu_quant / swiglu_clip_quant / clipped_swiglu
// (group_index) split consecutive rows among experts. One decoder so every op reads them the same way.
//
//   type 0 (cumsum):    [G] non-decreasing ends; group g covers rows [end[g-1], end[g]).
//   type 1 (count):     [G] counts >= 0; groups are consecutive.
//   type 2 (key-value): [G, 2] rows (expert id, count); rows are consumed in order and decoding stops at the first
//                       row whose count is <= 0 (the torch_npu semantics, the kernel's GMMGroupMSparseProcess).
// For types 0 and 1 the expert of group g is g.
#pragma once

#include <cstdint>
#include <string_view>

#include "moefuse/tensor.h"

namespace moefuse {

enum class GroupListType : int { cumsum = 0, count = 1, key_value = 2 };

struct GroupSpan {
  int64_t expert;  // which weight / scale row the group uses
  int64_t begin;   // first row
  int64_t end;     // one past the last row
};

/// Checks a group list and returns the number of rows its groups cover. Throws ValueError/TypeError naming `op`
/// and `arg` when: it is not i64/i32; its rank/shape do not fit `type` (type 2 needs [G,2]); G > max_groups;
/// a cumsum decreases or a count is negative (types 0/1); an expert id is outside [0, num_experts) (type 2);
/// the groups cover more than `rows` rows. `type` must be 0, 1 or 2 (ValueError naming "group_list_type").
int64_t check_group_list(std::string_view op, std::string_view arg, const Tensor& group_list, int64_t type,
                         int64_t num_experts, int64_t rows, int64_t max_groups);

/// Calls fn(GroupSpan) for every non-empty group in order. The list must have passed check_group_list().
template <class Fn>
void for_each_group(const Tensor& group_list, GroupListType type, Fn&& fn);

// --- implementation ---

int64_t group_list_value(const Tensor& group_list, int64_t i, int64_t j);

template <class Fn>
void for_each_group(const Tensor& group_list, GroupListType type, Fn&& fn) {
  const int64_t g = group_list.size(0);
  int64_t begin = 0;
  for (int64_t i = 0; i < g; ++i) {
    int64_t expert = i, end;
    if (type == GroupListType::cumsum) {
      end = group_list_value(group_list, i, 0);
    } else if (type == GroupListType::count) {
      end = begin + group_list_value(group_list, i, 0);
    } else {
      int64_t cnt = group_list_value(group_list, i, 1);
      if (cnt <= 0) break;
      expert = group_list_value(group_list, i, 0);
      end = begin + cnt;
    }
    if (end > begin) fn(GroupSpan{expert, begin, end});
    begin = end;
  }
}

}  // namespace moefuse
