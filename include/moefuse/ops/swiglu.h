// moefuse/ops/swiglu.h — the SwiGLU family: npu_swiglu, npu_clipped_swiglu.
#pragma once

#include <cstdint>

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
// clipped_swiglu — torch_npu.npu_clipped_swiglu (aclnnClippedSwiglu, ops.md §7.5)
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
/// zero (the hardware leaves them unwritten; decisions.md §4). A Σ group_index larger than rows is clamped to rows,
/// as the kernel and both goldens do.
/// Errors: ValueError (rank 0, dim out of range, odd size(dim), limit not a finite fp32 value > 0, alpha or bias
/// not a finite fp32 value, group_index not 1-D or with a negative count); TypeError (x not a float dtype, group_index
/// not i64/i32).
Tensor clipped_swiglu(const Tensor& x, const ClippedSwigluOptions& options = {});

/// As clipped_swiglu(), writing into `out` (x's dtype, x's shape with size(dim) halved, contiguous, writable).
void clipped_swiglu_out(const Tensor& x, const ClippedSwigluOptions& options, const Tensor& out);

}  // namespace moefuse
