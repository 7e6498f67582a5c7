// The vector path of swiglu_clip_quant (the w8a8c8 activation) and the two steps of it that the fused decode path
// runs on its own tiles (the bf16 round trip of h, the clip), written once here and compiled per ISA
// (swiglu_clip_quant_impl.h: swiglu_clip_quant_fast.cpp for baseline x86-64, swiglu_clip_quant__avx2.cpp,
// swiglu_clip_quant__avx512.cpp). Every variant gives the bits of reference::swiglu_clip_quant (NaN payloads never
// reach its outputs: a NaN in a row makes its scale the canonical quiet NaN and its q all zero).
#pragma once

#include <cstdint>

#include "kernels/rows/rows.h"
#include "moefuse/cpu.h"
#include "moefuse/tensor.h"

namespace moefuse {

/// v[i] = to_f32(to_bf16(v[i])) for i < n, in place (what the chain's bf16 h holds, widened).
using RoundBf16InPlaceFn = void (*)(int64_t n, float* v);
/// swiglu_clip_quant's clip of one row, in place: m = fmax over i of |v[i]| (NaNs skipped, from +0), t = alpha * m,
/// then v[i] = t where v[i] > t, and -t where v[i] < -t (a NaN t, from alpha = 0 and an infinite m, clips nothing).
/// The reference's loop with std::fmax, for rows without signaling NaNs (its callers clip arithmetic results, which
/// never are; the C library's fmax would turn m into a NaN at one).
using ClipRowFn = void (*)(int64_t n, float alpha, float* v);
/// out[i] = the bf16 value src[i] widened to fp32 (exact).
using WidenBf16Fn = void (*)(int64_t n, const bfloat16* src, float* out);
/// out[i] = to_f32(src[i]) (exact).
using WidenF16Fn = void (*)(int64_t n, const float16* src, float* out);

struct SwigluClipKernels {
  rows::RowsKernels rows;  // swiglu[0] and quantize[0] of the same level
  RoundBf16InPlaceFn round_bf16 = nullptr;
  ClipRowFn clip = nullptr;
  WidenBf16Fn widen_bf16 = nullptr;
  WidenF16Fn widen_f16 = nullptr;
  const char* name = "";  // "swiglu_clip_quant__<isa>"
};

/// The variant of level `isa` (scalar, avx2, or avx512 for avx512 and above); the caller must pass a level the
/// machine runs (active_isa() or an entry of gemm::available_isas()).
SwigluClipKernels select_swiglu_clip(Isa isa);

/// One row of swiglu_clip_quant from its two halves widened to fp32 (act: the activated one): tmp[i] =
/// silu(act[i]) * lin[i] (rows' f32 swiglu, the reference's operations), clipped (k.clip), then quantised into q
/// (quantize_row_dynamic); returns the scale. tmp may be act or lin.
float swiglu_clip_quant_row(const SwigluClipKernels& k, int64_t n, const float* act, const float* lin, float alpha,
                            float* tmp, int8_t* q);

/// Why swiglu_clip_quant_fast does not take this x (a static string), or nullptr when it does: x's rows must be
/// contiguous (unit column stride).
const char* swiglu_clip_quant_fast_declines(const Tensor& x);

/// reference::swiglu_clip_quant's outputs, bitwise, with the kernels of level `isa`, rows spread over the operators'
/// thread pool (rows are independent), and nullptr; or why not (swiglu_clip_quant_fast_declines), writing nothing.
/// Arguments as the reference takes them (validated by the op).
const char* swiglu_clip_quant_fast(const Tensor& x, const Tensor& group_index, const Tensor& group_alpha,
                                   bool activate_left, const Tensor& y, const Tensor& scale, Isa isa);

}  // namespace moefuse
