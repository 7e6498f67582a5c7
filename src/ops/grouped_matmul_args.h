// The checked arguments of grouped_matmul, as the operator's own code (src/ops) reads them, and the one place they
// are handed to the scalar reference, which takes its own form of them (the oracle shares no structure with the
// code it checks).
#pragma once

#include <cstdint>

#include "moefuse/tensor.h"
#include "reference/grouped_matmul.h"

namespace moefuse {

/// Already-validated arguments (grouped_matmul.cpp's validate). Per-expert tensors may be 1-D ([N], one expert) or
/// 2-D ([E, N]); weight may be 2-D ([K, N], one expert) or 3-D ([E, K, N]). All inputs are read through their
/// strides.
struct GroupedMatmulArgs {
  Tensor x;                // [M, K] f32/bf16/f16/i8
  Tensor weight;           // [E, K, N] or [K, N], x's dtype (undefined for packed weights)
  Tensor bias;             // undefined, or [E, N]/[N]: float (float x, or int8 x with scale) or i32
  Tensor scale;            // undefined, or [E, N]/[N] bf16/f32 (int8 x with a float output)
  Tensor per_token_scale;  // undefined, or [M] f32 (only with scale)
  Tensor group_list;       // undefined = one group, expert 0, covering all M rows
  int64_t group_list_type = 0;
  int64_t act_type = 0;
};

/// `a` in the reference's own form.
inline reference::GroupedMatmulArgs to_reference(const GroupedMatmulArgs& a) {
  reference::GroupedMatmulArgs r;
  r.x = a.x;
  r.weight = a.weight;
  r.bias = a.bias;
  r.scale = a.scale;
  r.per_token_scale = a.per_token_scale;
  r.group_list = a.group_list;
  r.group_list_type = a.group_list_type;
  r.act_type = a.act_type;
  return r;
}

}  // namespace moefuse
