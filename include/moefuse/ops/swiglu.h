// moefuse/ops/swiglu.h — the SwiGLU family: npu_swiglu, npu_clipped_swiglu, npu_dequant_swiglu_quant,
// npu_swiglu_clip_quant.
#pragma once

#include <cstdint>
#include <optional>

#include "moefuse/tensor.h"

namespace moefuse {

/// torch_npu.npu_swiglu(self, dim=-1).
///
/// Splits `x` into halves A (first) and B (second) along `dim` and returns silu(A) * B = A / (1 + exp(-A)) * B,
/// computed in fp32 and rounded once (RNE) to x's dtype. The first half is the gate.
///
/// x:   f32, bf16 or f16, 1 to 8 dims, any strides; size(dim) even.
/// dim: in [-x.dim(), x.dim()).
/// Returns a contiguous tensor of x's dtype and shape with size(dim) halved.
/// Errors: ValueError (rank 0, dim out of range, odd size(dim)); TypeError (x not a float dtype).
Tensor swiglu(const Tensor& x, int64_t dim = -1);

/// As swiglu(), writing into `out` (x's dtype, x's shape with size(dim) halved, contiguous, writable).
void swiglu_out(const Tensor& x, int64_t dim, const Tensor& out);

// ---------------------------------------------------------------------------------------------------------------
// clipped_swiglu — torch_npu.npu_clipped_swiglu (aclnnClippedSwiglu, the torch_npu semantics)
// ---------------------------------------------------------------------------------------------------------------

/// Keyword arguments of clipped_swiglu(), with torch_npu's defaults.
struct ClippedSwigluOptions {
  /// Optional i64 (i32 accepted) [G] row counts, each >= 0. Given: only the first min(Σ counts, rows) rows are
  /// computed (rows = product of the extents before `dim`), the rest of the output is zero.
  Tensor group_index;
  /// The split axis, in [-x.dim(), x.dim()).
  int64_t dim = -1;
  /// Scale inside the sigmoid; finite in fp32 (converted to fp32 once).
  double alpha = 1.702;
  /// Clamp limit; finite in fp32 and > 0 (converted to fp32 once).
  double limit = 7.0;
  /// Added to the clamped linear part; finite in fp32 (converted to fp32 once).
  double bias = 1.0;
  /// true: even elements are the glu part, odd elements the linear part; false: first half glu, second linear.
  bool interleaved = true;
};

/// torch_npu.npu_clipped_swiglu(x, *, group_index=None, dim=-1, alpha=1.702, limit=7.0, bias=1.0,
/// interleaved=True): the GPT-OSS clamped SwiGLU.
///
/// As in the aclnn doc and both goldens (op-plugin test_npu_clipped_swiglu.py, ops-nn clipped_swiglu golden.py),
/// x is viewed as [rows, cut] with rows = product of the extents before `dim` and cut = product of the extents from
/// `dim` on (the split axis merged with every axis after it). Per row, with A the glu part and B the linear part:
///   interleaved: A[j] = row[2j], B[j] = row[2j+1]    (pairs of CONSECUTIVE elements of the merged row: this is
///                                                    even/odd along `dim` only when `dim` is the last axis, or all
///                                                    later extents are 1)
///   halves:      A[j] = row[j], B[j] = row[j + cut/2] (= first/second half along `dim`)
///   a = min(A, limit);  glu = a / (exp(a * -alpha) + 1);  lin = max(min(B, limit), -limit) + bias;  out = glu * lin
/// in fp32 (the kernel's operation order), rounded once (RNE) to x's dtype. NaN inputs propagate (as torch.clamp).
///
/// x: f32, bf16 or f16, 1 to 8 dims, any strides; size(dim) even.
/// Returns a contiguous tensor of x's dtype and shape with size(dim) halved. Rows past min(Σ group_index, rows) are
/// zero (the hardware leaves them unwritten; docs/operators.md, Numerics: no garbage). A Σ group_index larger than
/// rows is clamped to rows, as the kernel and both goldens do.
/// Errors: ValueError (rank 0, dim out of range, odd size(dim), limit not a finite fp32 value > 0, alpha or bias
/// not a finite fp32 value, group_index not 1-D or with a negative count); TypeError (x not a float dtype, group_index
/// not i64/i32).
Tensor clipped_swiglu(const Tensor& x, const ClippedSwigluOptions& options = {});

/// As clipped_swiglu(), writing into `out` (x's dtype, x's shape with size(dim) halved, contiguous, writable).
void clipped_swiglu_out(const Tensor& x, const ClippedSwigluOptions& options, const Tensor& out);

// ---------------------------------------------------------------------------------------------------------------
// dequant_swiglu_quant — torch_npu.npu_dequant_swiglu_quant (aclnnDequantSwigluQuant / V2, the torch_npu semantics)
// ---------------------------------------------------------------------------------------------------------------

/// Keyword arguments of dequant_swiglu_quant(), with torch_npu's defaults. "E" below is the number of scale rows:
/// G for a [G] count group_index; for a [G, 2] key-value group_index, the leading extent shared by the per-group
/// tensors given (weight_scale, bias, quant_scale, quant_offset), and every group id read must lie in [0, E)
/// (when none of them is given, any id >= 0).
struct DequantSwigluQuantOptions {
  /// f32. Required when x is i32, not allowed when x is a float type. [2H] or [1, 2H] without group_index,
  /// [E, 2H] with it.
  Tensor weight_scale;
  /// f32 [T] or [T, 1], per-token dequant scale. Only with an i32 x; optional.
  Tensor activation_scale;
  /// Only with an i32 x; optional. i32: added to x in int32 (two's-complement wrap-around) BEFORE the conversion
  /// to fp32; f32/bf16/f16: widened exactly and added AFTER the weight/activation scaling. [2H] or [1, 2H] without
  /// group_index, [E, 2H] with it.
  Tensor bias;
  /// f32, bf16 or f16 (widened exactly). Dynamic: optional smooth scale, multiplied before the quantisation.
  /// Static: required. Per column: [H] or [1, H] without group_index, [E, H] with it. One value per group
  /// (a tensor with one element per scale row: [1] / [1, 1] without group_index, [E] / [E, 1] with it).
  Tensor quant_scale;
  /// Static only (not allowed with quant_mode 1); optional (absent = 0); dtype as quant_scale, same shape as
  /// quant_scale.
  Tensor quant_offset;
  /// Optional i64 (i32 accepted). [G] counts >= 0 (group g = the next count rows, scale row g), or [G, 2]
  /// key-value rows (group id, count) consumed in order up to the first row with count <= 0, the group id selecting
  /// the scale row. The groups may cover at most T rows.
  Tensor group_index;
  /// true: the first half is activated (swish(first) * second); false (the default): swish(second) * first.
  /// Must be true for swiglu_mode 1.
  bool activate_left = false;
  /// 0: static quantisation, 1: dynamic.
  int64_t quant_mode = 0;
  /// Accepted only at their defaults: none or 1 (torch.int8; output int8), none or 0 ("rint"), none, -1 or 1
  /// (the last axis of the 2-D x).
  std::optional<int64_t> dst_type;
  std::optional<int64_t> round_mode;
  std::optional<int64_t> activate_dim;
  /// 0: swish(A) * B. 1: GPT-OSS clamp variant with interleaved split (even = glu, odd = linear). 2: the same
  /// variant with the half split. 3: min(silu(A), clamp_limit) * clamp(B, ±clamp_limit), half split.
  int64_t swiglu_mode = 0;
  /// Finite in fp32 and > 0. Used by modes 1, 2, 3 (converted to fp32 once).
  double clamp_limit = 7.0;
  /// Finite in fp32. Used by modes 1, 2 (converted to fp32 once).
  double glu_alpha = 1.702;
  /// Finite in fp32. Used by modes 1, 2 (converted to fp32 once).
  double glu_bias = 1.0;
};

/// Outputs of dequant_swiglu_quant().
struct DequantSwigluQuantResult {
  Tensor y;      ///< i8 [T, H]
  Tensor scale;  ///< f32 [T]: the dynamic per-row scale; zeros with static quantisation
};

/// torch_npu.npu_dequant_swiglu_quant(x, *, weight_scale=None, activation_scale=None, bias=None, quant_scale=None,
/// quant_offset=None, group_index=None, activate_left=False, quant_mode=0, dst_type=None, round_mode=None,
/// activate_dim=None, swiglu_mode=0, clamp_limit=7.0, glu_alpha=1.702, glu_bias=1.0) -> (y, scale).
///
/// For each row r (of group g using scale row e; without group_index every row uses row 0), in fp32:
///   v = x[r] (+ i32 bias[e], wrapping) -> fp32 (RNE) * weight_scale[e] (* activation_scale[r]) (+ float bias[e])
///       (an f32/bf16/f16 x is only widened);
///   A, B = the activated and the other half of v (activate_left), or the even/odd elements (swiglu_mode 1);
///   mode 0: o = A / (exp(-A) + 1) * B
///   mode 1, 2: a = min(A, L); o = a / (exp(a * -glu_alpha) + 1) * (max(min(B, L), -L) + glu_bias)
///   mode 3: o = min(A / (exp(-A) + 1), L) * max(min(B, L), -L)                       (L = clamp_limit)
///   dynamic: o *= quant_scale[e] (if given); then the project's dynamic int8 quantisation (docs/operators.md,
///            Numerics): scale[r] = max|o| / 127, y = rint(o / scale[r]) clamped to [-127, 127]; a zero row gives
///            0 and 0. (The torch_npu golden multiplies by the reciprocal 127/max and the hardware kernel divides by
///            max * (1/127); both can differ from this in the last bit of the scale and by 1 in y, not emulated.)
///   static:  per-column quant_scale: o = o / quant_scale[e] + quant_offset[e];
///            one value per group: o = o * (1 / quant_scale[e]) + quant_offset[e];
///            y = rint(o) clamped to [-128, 127] (NaN -> 0); scale[r] = 0. A zero quant_scale divides by zero
///            (the grouped kernel replaces a zero single-element scale by 1; not emulated).
/// Clamps propagate NaN. Rows past the rows the groups cover get y = 0 and scale = 0 (the hardware leaves them
/// unwritten; docs/operators.md, Numerics: no garbage). A bias and static quantisation are supported together with
/// group_index (as in aclnnDequantSwigluQuantV2 and its grouped kernel; the older torch doc forbids both); the
/// hardware's H <= 10496 / 64-alignment limits are not imposed.
///
/// x: i32, f32, bf16 or f16 [T, 2H], any strides (T >= 0).
/// Errors: ValueError (x not 2-D or odd last extent; quant_mode not 0/1; swiglu_mode not 0..3; dst_type,
/// round_mode or activate_dim other than their defaults; clamp_limit not a finite fp32 value > 0; glu_alpha or
/// glu_bias not a finite fp32 value; swiglu_mode 1 with activate_left false; weight_scale missing for an i32 x;
/// weight_scale, activation_scale or bias given with a float x; quant_scale missing with static quantisation;
/// quant_offset given with dynamic quantisation; a scale/bias/offset of the wrong shape; group_index not [G] or
/// [G, 2], a negative count, a group id outside [0, E), or groups covering more than T rows); TypeError (a tensor
/// of a dtype not listed above).
DequantSwigluQuantResult dequant_swiglu_quant(const Tensor& x, const DequantSwigluQuantOptions& options = {});

/// As dequant_swiglu_quant(), writing into out.y (i8 [T, H]) and out.scale (f32 [T]), both contiguous and
/// writable. Every element of both is written.
void dequant_swiglu_quant_out(const Tensor& x, const DequantSwigluQuantOptions& options,
                              const DequantSwigluQuantResult& out);

// ---------------------------------------------------------------------------------------------------------------
// swiglu_clip_quant — npu_swiglu_clip_quant (cann-recipes-infer custom op, the torch_npu semantics)
// ---------------------------------------------------------------------------------------------------------------

/// Keyword arguments of swiglu_clip_quant(), with the custom op's defaults.
struct SwigluClipQuantOptions {
  /// true: the first half is activated; false (the default): the second half.
  bool activate_left = false;
  /// Only 1 (dynamic) is supported.
  int64_t quant_mode = 1;
  /// Only 1 (clamp with group_alpha) is supported.
  int64_t clamp_mode = 1;
};

/// Outputs of swiglu_clip_quant().
struct SwigluClipQuantResult {
  Tensor y;      ///< i8 [T, H]
  Tensor scale;  ///< f32 [T]
};

/// torch_npu.npu_swiglu_clip_quant(x, group_index, group_alpha, *, activate_left=False, quant_mode=1,
/// clamp_mode=1) -> (y, scale), the W4A8 MoE activation of cann-recipes-infer.
///
/// For each row r of group g (rows taken consecutively from the counts), in fp32, with a the activated half and
/// b the other:
///   s = a / (exp(-a) + 1) * b;   m = max|s|;   t = group_alpha[g] * m;   s = max(min(s, t), -t);
///   scale[r], y[r] = the project's dynamic int8 quantisation of the clamped s (operators.md):
///                    scale = max|s| / 127, y = rint(s / scale) clamped to [-127, 127]; a zero row gives 0 and 0.
/// Difference from the kernel, which sets scale = t / 127 (as (-alpha*m) * (-1/127)) and y = rint(s / scale):
///   * alpha < 1: the clamp makes max|s| = t exactly, so the scale is t / 127 computed by division instead of a
///     reciprocal multiply (the two can differ in the last bit, and y then by 1 at a rounding tie);
///   * alpha = 1: t = m, same as above;
///   * alpha > 1: the clamp is a no-op, so moefuse's scale is m / 127 where the kernel's is alpha * m / 127: the
///     kernel's y spans only ±127/alpha, moefuse's the full ±127; the dequantised y * scale of the two differ by at
///     most one kernel step alpha * m / 127 (the golden has the kernel's scale);
///   * alpha = 0 or an all-zero row: scale 0, y 0 (the kernel computes 0/0).
/// Rows past Σ group_index get y = 0 and scale = 0 (docs/operators.md, Numerics: no garbage).
///
/// x: bf16 [T, 2H] (f32 and f16 accepted as an extension, widened exactly), any strides.
/// group_index: i64 (i32 accepted) [G] counts >= 0 covering at most T rows.
/// group_alpha: f32 [G], every value finite and >= 0.
/// Errors: ValueError (x not 2-D or odd last extent; quant_mode != 1; clamp_mode != 1; group_index not 1-D, a
/// negative count, or more than T rows; group_alpha not [G] or a value negative / not finite); TypeError (x not
/// bf16/f32/f16, group_index not i64/i32, group_alpha not f32).
SwigluClipQuantResult swiglu_clip_quant(const Tensor& x, const Tensor& group_index, const Tensor& group_alpha,
                                        const SwigluClipQuantOptions& options = {});

/// As swiglu_clip_quant(), writing into out.y (i8 [T, H]) and out.scale (f32 [T]), both contiguous and writable.
void swiglu_clip_quant_out(const Tensor& x, const Tensor& group_index, const Tensor& group_alpha,
                           const SwigluClipQuantOptions& options, const SwigluClipQuantResult& out);

}  // namespace moefuse
