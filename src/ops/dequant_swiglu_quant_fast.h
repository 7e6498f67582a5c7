// The layer's case of dequant_swiglu_quant on the rows kernels, over the operators' thread pool.
#pragma once

#include "ops/dequant_swiglu_quant_args.h"

namespace moefuse {

/// Why dequant_swiglu_quant_fast does not take these arguments (a static string), or nullptr when it does: the MoE
/// chain's case is an i32 x contiguous along its rows, an activation_scale, no bias, dynamic quantisation,
/// swiglu_mode 0, quant_scale absent or f32 per column, no quant_offset.
const char* dequant_swiglu_quant_fast_declines(const DequantSwigluQuantArgs& a);

/// Computes dequant_swiglu_quant into y and scale, bitwise as reference::dequant_swiglu_quant, and returns nullptr —
/// when the arguments are the chain's case; otherwise returns why not (dequant_swiglu_quant_fast_declines) and
/// writes nothing. Rows are independent and each is computed with the reference's operations in the reference's
/// order (the rows family's dequant_swiglu and quantize kernels), so spreading blocks of rows over threads changes
/// no bit.
const char* dequant_swiglu_quant_fast(const DequantSwigluQuantArgs& a, const Tensor& y, const Tensor& scale);

}  // namespace moefuse
