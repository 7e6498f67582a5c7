// The checked arguments of dequant_swiglu_quant, as the operator's own code (src/ops) reads them. The scalar
// reference (src/reference) takes its own form of them: the oracle shares no structure with the code it checks.
#pragma once

#include "base/groups.h"
#include "moefuse/tensor.h"

namespace moefuse {

/// Validated inputs (dequant_swiglu_quant.cpp's checked_args). Tensors may be undefined where optional; all are read
/// through their strides. Per-group tensors are [N] / [1, N] without groups (scale row 0) or [E, N] with groups; a
/// quant_scale / quant_offset with `quant_per_group_scalar` holds one value per scale row ([1], [1, 1], [E] or
/// [E, 1]).
struct DequantSwigluQuantArgs {
  Tensor x;                 // i32, f32, bf16 or f16 [T, 2H]
  Tensor weight_scale;      // f32
  Tensor activation_scale;  // f32 [T] or [T, 1]
  Tensor bias;              // i32 (added before the conversion) or f32/bf16/f16 (after the scaling)
  Tensor quant_scale;       // f32/bf16/f16
  Tensor quant_offset;      // f32/bf16/f16, same layout as quant_scale
  Tensor group_index;       // undefined: every row uses scale row 0
  GroupListType group_type = GroupListType::count;  // count or key_value
  bool quant_per_group_scalar = false;
  bool activate_left = false;
  bool dynamic = false;
  int swiglu_mode = 0;
  float clamp_limit = 7.0f;
  float glu_alpha = 1.702f;
  float glu_bias = 1.0f;
};

}  // namespace moefuse
