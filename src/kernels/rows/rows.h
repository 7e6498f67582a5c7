// The rows kernel family: element-wise work along one row of fp32 values, the steps between the GEMMs of a MoE
// layer. Every operator and the fused decode path call these (and nothing else) for this math, so each formula is
// written once (rows_impl.h; rows_vec.h restates swiglu and dequant_swiglu with intrinsics, operation for operation)
// and compiled once per ISA (rows_scalar.cpp, rows__avx2.cpp, rows__avx512.cpp).
//
// ─── Layout ─────────────────────────────────────────────────────────────────────────────────────────────────────
// Every kernel works on n consecutive elements (unit stride) of plain arrays; n >= 0, n = 0 writes nothing. Arrays
// of one call either do not overlap or are the same array (out == gate, tmp == x: documented per kernel).
//
// ─── What the kernels compute (THE ORDER IS THE CONTRACT) ───────────────────────────────────────────────────────
// All arithmetic is fp32, each operation rounded once (round to nearest even; no FMA contraction: the project
// builds with -ffp-contract=off). R(v) is v rounded to the variant's dtype and widened back (exact for f32).
// x (*) y is x * y, except that a NaN x gives x (quieted) even when y is NaN too (x86 returns the first operand's
// NaN, and compilers may swap a product's operands: (*) fixes which NaN wins).
//   silu(v)            = v / (1.0f + exp(-v))  (the one definition: silu() below); exp is exp_f32 (base/expf.h),
//                      the project's own fp32 exp, whose scalar and vector versions agree bit for bit.
//   swiglu (R):        a = R(gate[j]); b = R(up[j]); out[j] = R(b (*) silu(a)).
//   dequant_swiglu:    act = float(gate[j]) * gate_scale[j]; act = act (*) row_scale;
//                      lin = float(up[j]) * up_scale[j];     lin = lin (*) row_scale;
//                      v = lin (*) silu(act); with smooth: v = v (*) smooth[j]; out[j] = v.
//   quantize (T):      tmp[j] = float(x[j]) (with smooth: tmp[j] = float(x[j]) * smooth[j]); returns
//                      quantize_row_dynamic(tmp, n, q) (base/quantize.h: s = max|v| / 127, q = rne(v / s)).
//   combine (T):       accumulate: acc[j] = acc[j] + s * float(row[j]); otherwise acc[j] = s * float(row[j]).
//                      (finalize_routing's weighted sum in slot order is one call per slot, the first one
//                      without accumulate when there is no skip.)
//   dequant:           out[j] = float(acc[j]) * scale[j]; out[j] = out[j] * row_scale  (the int8 GEMM epilogue).
//   scale_round (T):   out[j] = R_T(s * float(x[j]))  (qwen2_moe's gated shared expert).
// Every variant of a kernel gives bitwise the same outputs (NaN payloads included: the operations and their operands
// are the same);
// exp is exp_f32 in every variant, so the bits do not depend on the C library.
//
// ─── Speed (AMD EPYC Zen 5 VM, 2 cores, one thread; bench/rows_bench.cpp) ───────────────────────────────────────
// n = 2048, CPU time per row (docs/performance.md, "SwiGLU on a vector exp"): swiglu with bf16 rounding 1.39 us on
// avx512, 3.0 us on avx2, against 11-12 us for the earlier auto-vectorised avx2 row around libm expf calls;
// dequant_swiglu 1.1 us (avx512), 2.6-3.0 us (avx2), earlier 7-9 us. The scalar rows call libm's fma (no -mfma):
// swiglu f32 19 us, a fallback and the vector rows' oracle only.
//
// ─── Memory rules ───────────────────────────────────────────────────────────────────────────────────────────────
// Kernels never allocate, never throw, never look at a dtype at run time (one function per dtype) and are safe to
// call concurrently on disjoint outputs.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>

#include "base/expf.h"
#include "moefuse/cpu.h"
#include "moefuse/dtype.h"

namespace moefuse::rows {

/// SiLU in fp32: v / (1 + exp_f32(-v)). The one definition outside the references (which keep their own, as
/// oracles, with the same exp_f32).
inline float silu(float v) { return v / (1.0f + exp_f32(-v)); }

using SwigluFn = void (*)(int64_t n, const float* gate, const float* up, float* out);
using DequantSwigluFn = void (*)(int64_t n, const int32_t* gate, const int32_t* up, const float* gate_scale,
                                 const float* up_scale, float row_scale, const float* smooth, float* out);
using QuantizeFn = float (*)(int64_t n, const void* x, const float* smooth, float* tmp, int8_t* q);
using CombineFn = void (*)(int64_t n, const void* row, float s, bool accumulate, float* acc);
using DequantFn = void (*)(int64_t n, const int32_t* acc, const float* scale, float row_scale, float* out);
using ScaleRoundFn = void (*)(int64_t n, const void* x, float s, float* out);

/// One kernel of each kind, per dtype where the kind has one (indexed by rows::slot(dtype): f32, bf16, f16).
struct RowsKernels {
  Isa isa = Isa::scalar;
  SwigluFn swiglu[3] = {};
  DequantSwigluFn dequant_swiglu = nullptr;
  QuantizeFn quantize[3] = {};
  CombineFn combine[3] = {};
  DequantFn dequant = nullptr;
  ScaleRoundFn scale_round[3] = {};
};

/// 0, 1, 2 for f32, bf16, f16 (the float dtypes the kernels take); -1 otherwise.
constexpr int slot(DType dt) {
  return dt == DType::f32 ? 0 : dt == DType::bf16 ? 1 : dt == DType::f16 ? 2 : -1;
}

/// The rows kernels of level `isa` (the best registered variant at or below it, kernels/registry.h). The caller
/// must pass a level the machine runs (active_isa() or an entry of gemm::available_isas()).
RowsKernels select_rows_kernels(Isa isa);

/// select_rows_kernels(active_isa()): what operators use, chosen once per call (their plan).
RowsKernels select_rows_kernels();

}  // namespace moefuse::rows
