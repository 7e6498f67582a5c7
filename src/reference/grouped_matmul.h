// Scalar reference of npu_grouped_matmul (MoE form): the oracle for optimised kernels and the fallback. Arguments
// are validated by the op (src/ops/grouped_matmul.cpp) before this is called. The arithmetic contract — what every
// variant must reproduce bitwise — is stated in include/moefuse/ops/grouped_matmul.h: the fp32 accumulation follows
// the weight's dtype (bf16 weights: pairs of k, the odd one first, each step fma_daz_ftz of base/bf16_dot.h; f32 and
// f16 weights: k ascending with std::fma), as the GEMM kernels do (src/kernels/gemm/gemm.h).
#pragma once

#include <cmath>
#include <cstdint>

#include "base/expf.h"
#include "moefuse/tensor.h"

namespace moefuse::reference {

/// Already-validated arguments, in the reference's own form (the operator has its own, src/ops/grouped_matmul_args.h,
/// and converts at the one call that falls back here). Per-expert tensors may be 1-D ([N], one expert) or 2-D ([E, N]); weight may be
/// 2-D ([K, N], one expert) or 3-D ([E, K, N]). All inputs are read through their strides.
struct GroupedMatmulArgs {
  Tensor x;                // [M, K] f32/bf16/f16/i8
  Tensor weight;           // [E, K, N] or [K, N], x's dtype (float x: any float dtype; its dtype picks the order)
  Tensor bias;             // undefined, or [E, N]/[N]: float (float x, or int8 x with scale) or i32
  Tensor scale;            // undefined, or [E, N]/[N] bf16/f32 (int8 x with a float output)
  Tensor per_token_scale;  // undefined, or [M] f32 (only with scale)
  Tensor group_list;       // undefined = one group, expert 0, covering all M rows
  int64_t group_list_type = 0;
  int64_t act_type = 0;
};

/// y [M, N] (contiguous; f32/bf16/f16 for float paths, i32 or bf16/f16 for int8 x) = the grouped matmul; rows not
/// covered by a group are zero.
void grouped_matmul(const GroupedMatmulArgs& args, const Tensor& y);

/// The epilogue activations of grouped_matmul (act_type 1, 2, 4, 5; anything else = identity), in fp32, in the
/// exact order of operations of the contract (exp is moefuse's exp_f32, base/expf.h). Shared so that every kernel
/// variant applies the same formula.
inline float gmm_relu(float v) { return v < 0.0f ? 0.0f : v; }
inline float gmm_gelu_tanh(float v) {
  const float t = (v + ((v * v) * v) * 0.044715f) * 1.5957691216057308f;
  return (v / (exp_f32(-std::fabs(t)) + 1.0f)) * exp_f32(std::fmin(t, 0.0f));
}
inline float gmm_fast_gelu(float v) { return v / (exp_f32(v * -1.702f) + 1.0f); }
inline float gmm_silu(float v) { return v / (1.0f + exp_f32(-v)); }

/// Applies act_type to v[0..n) in place.
void gmm_activate(int64_t act_type, float* v, int64_t n);

}  // namespace moefuse::reference
