// Scalar reference of npu_swiglu_clip_quant: the oracle for optimized kernels and the fallback. Arguments are
// validated by the op (src/ops/swiglu_clip_quant.cpp) before this is called.
#pragma once

#include "moefuse/tensor.h"

namespace moefuse::reference {

/// x f32/bf16/f16 [T, 2H]; group_index [G] counts; group_alpha f32 [G]. Writes y (i8 [T, H], contiguous) and scale
/// (f32 [T], contiguous): per covered row, swiglu, clamp to ±alpha*max|s|, dynamic int8 quantisation
/// (quantize_row_dynamic); zeros for the rows past the groups.
void swiglu_clip_quant(const Tensor& x, const Tensor& group_index, const Tensor& group_alpha, bool activate_left,
                       const Tensor& y, const Tensor& scale);

}  // namespace moefuse::reference
