// Scalar reference of npu_dequant_swiglu_quant: the oracle for optimized kernels and the fallback. Arguments are
// validated by the op (src/ops/dequant_swiglu_quant.cpp) before this is called.
#pragma once

#include <cstdint>

#include "base/groups.h"
#include "moefuse/tensor.h"

namespace moefuse::reference {

/// Validated inputs, in the reference's own form (the operator has its own, src/ops/dequant_swiglu_quant_args.h,
/// and converts when it falls back here). Tensors may be undefined where optional; all are read through their strides. Per-group
/// tensors are [N] / [1, N] without groups (scale row 0) or [E, N] with groups; a quant_scale / quant_offset with
/// `quant_per_group_scalar` holds one value per scale row ([1], [1, 1], [E] or [E, 1]).
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

/// Writes y (i8 [T, H], contiguous) and scale (f32 [T], contiguous): the rows the groups cover (all rows without
/// group_index) as documented in moefuse/ops/swiglu.h, zeros elsewhere.
void dequant_swiglu_quant(const DequantSwigluQuantArgs& args, const Tensor& y, const Tensor& scale);

}  // namespace moefuse::reference
