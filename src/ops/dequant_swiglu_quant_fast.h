// The layer's case of dequant_swiglu_quant on typed loops over the operators' thread pool.
#pragma once

#include "reference/dequant_swiglu_quant.h"

namespace moefuse {

/// Computes dequant_swiglu_quant into y and scale, bitwise as reference::dequant_swiglu_quant, and returns true —
/// when the arguments are the MoE chain's case: x int32 [T, 2H] contiguous along its rows, an fp32 weight_scale and
/// activation_scale, no bias, dynamic quantisation, swiglu_mode 0, quant_scale absent or fp32 per column, no
/// quant_offset. Returns false (nothing written) otherwise. Rows are independent and each is computed with the
/// reference's operations in the reference's order, so spreading blocks of rows over threads changes no bit.
bool dequant_swiglu_quant_fast(const reference::DequantSwigluQuantArgs& a, const Tensor& y, const Tensor& scale);

}  // namespace moefuse
