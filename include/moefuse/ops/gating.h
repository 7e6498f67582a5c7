// moefuse/ops/gating.h — MoE router gating: npu_moe_gating_top_k, npu_moe_gating_top_k_softmax and
// npu_moe_gating_top_k_softmax_v2.
//
// Shared rules (docs/operators.md, Numerics: ties, fp32 math, determinism):
//   * All scoring is done in fp32 on exactly widened inputs, whatever x's dtype; the weights are rounded once (RNE)
//     to x's dtype at the very end.
//   * Softmax of a vector v (all of a row, or the k selected logits in v2 renorm 1) is computed as
//         m = max_i v[i];  q[i] = exp(v[i] - m);  S = q[0] + q[1] + ... (sequential, index order);
//         p[i] = q[i] * (1.0f / S)          (multiply by the fp32 reciprocal, not a division; the torch_npu semantics)
//     with std::exp. Sigmoid is p = 1.0f / (1.0f + exp(-v)).
//   * Every top-k emits the larger score first; equal scores go to the lower index. A NaN score ranks below every
//     number (-inf included), NaNs among themselves by index. (Any NaN logit makes a softmax row all NaN.)
//   * Sums over the k selected weights are sequential in slot order 0..k-1.
#pragma once

#include <cstdint>

#include "moefuse/tensor.h"

namespace moefuse {

// ------------------------------------------------------------------------------------------------------------------
// npu_moe_gating_top_k
// ------------------------------------------------------------------------------------------------------------------

/// Keyword-only arguments of gating_top_k(), with torch_npu's defaults.
struct GatingTopKOptions {
  /// Optional [E] correction bias, added to the normalised scores for *selection only* (the weights come from the
  /// unbiased scores). Any strides. Same dtype as x, or f32 for any x (extension: DeepSeek keeps
  /// e_score_correction_bias in fp32 while the logits may be bf16; torch_npu requires x's dtype).
  Tensor bias;
  /// Hash mode (DeepSeek-V4 "expert = tid2eid[input_ids[n]]"): not supported, must stay undefined (ValueError).
  Tensor input_ids;
  Tensor tid2eid;
  /// Number of groups kept by the group filter, 1 <= k_group <= group_count.
  int64_t k_group = 1;
  /// G: the E experts form G contiguous groups of E/G; E % G == 0.
  int64_t group_count = 1;
  /// 0: a group's score is the max of its biased scores; 1: the sum of its two largest (needs E/G >= 2).
  int64_t group_select_mode = 0;
  /// 0: softmax weights are the plain probabilities; 1: the k softmax weights are renormalised like the sigmoid
  /// ones (w / (sum + eps)), the Qwen/Mixtral norm_topk_prob behaviour of vllm-ascend's kernel. Sigmoid weights are
  /// always renormalised, whatever renorm says (0 and 1 give the same result for norm_type 1).
  int64_t renorm = 0;
  /// 0: softmax, 1: sigmoid. 2 (softplus, cann-recipes custom op) is not supported (ValueError).
  int64_t norm_type = 0;
  /// true: `out` receives the unbiased normalised scores. false: `out` is filled with zeros (docs/operators.md).
  bool out_flag = false;
  /// Final multiplier of the weights, converted to fp32 (RNE) first.
  double routed_scaling_factor = 1.0;
  /// Added to the renormalisation denominator, converted to fp32 (RNE) first.
  double eps = 1e-20;
};

/// Outputs of gating_top_k(), with torch_npu's names.
struct GatingTopKResult {
  Tensor y;           ///< [N, k], x's dtype: the routing weights.
  Tensor expert_idx;  ///< [N, k], i32: the selected experts, in descending biased-score order.
  Tensor out;         ///< [N, E], f32: the unbiased normalised scores if out_flag, else zeros.
};

/// torch_npu.npu_moe_gating_top_k(x, k, *, bias, input_ids, tid2eid, k_group, group_count, group_select_mode,
/// renorm, norm_type, out_flag, routed_scaling_factor, eps).
///
/// Per row n of x: s = fp32(x[n]); p = softmax(s) (norm_type 0) or sigmoid(s) (norm_type 1);
/// b = p + fp32(bias) (b = p without bias). The experts form G = group_count contiguous groups of g = E/G; each
/// group is scored by max b (group_select_mode 0) or by the sum of its two largest b (mode 1); the k_group best
/// groups are kept (ties -> lower group), and the k experts with the largest b among the kept groups are selected,
/// in descending b order (ties -> lower expert), into expert_idx. Experts of dropped groups can never be selected,
/// even against -inf or NaN scores (the hardware masks them with -inf, so there a kept expert whose biased score
/// is -inf can lose a tie to a dropped one of lower index). The weights are gathered from the *unbiased* scores,
/// w[j] = p[expert_idx[n, j]]; when norm_type == 1 or renorm == 1, S = w[0] + ... + w[k-1] (sequential) and
/// w[j] = w[j] / (S + eps) (true fp32 division); then w[j] = w[j] * fp32(routed_scaling_factor), and y[n, j] is
/// w[j] rounded once to x's dtype. out[n, :] = p when out_flag, else 0.
///
/// x:  [N, E], f32 / bf16 / f16, any strides; N >= 0, 1 <= E <= 2048.
/// k:  1 <= k <= E and k <= k_group * E / G.
/// options: see GatingTopKOptions. Constraints: 1 <= G <= E, E % G == 0, 1 <= k_group <= G,
///     group_select_mode 1 needs E / G >= 2. The Ascend tiling limit G * align32(E / G) <= 2048 for real grouping is
///     NOT imposed (any valid grouping works here).
/// Errors: TypeError: x not f32/bf16/f16; bias not x's dtype or f32.
///         ValueError: x not 2-D or E outside [1, 2048]; k out of range; input_ids or tid2eid given (hash mode not
///         supported); norm_type not 0/1 (2 = softplus not supported); group_select_mode not 0/1; renorm not 0/1;
///         group_count < 1, > E or not dividing E; k_group outside [1, G]; mode 1 with E/G < 2;
///         k > k_group * E/G; bias not of shape [E].
GatingTopKResult gating_top_k(const Tensor& x, int64_t k, const GatingTopKOptions& options = {});

/// As gating_top_k(), writing into out.y ([N, k], x's dtype), out.expert_idx ([N, k], i32) and out.out ([N, E], f32),
/// all contiguous and writable (ValueError / TypeError otherwise, before anything is written).
void gating_top_k_out(const Tensor& x, int64_t k, const GatingTopKOptions& options, const GatingTopKResult& out);

// ------------------------------------------------------------------------------------------------------------------
// npu_moe_gating_top_k_softmax
// ------------------------------------------------------------------------------------------------------------------

/// Outputs of gating_top_k_softmax(), with torch_npu's names; all of shape x.shape[:-1] + [k].
struct GatingTopKSoftmaxResult {
  Tensor y;           ///< x's dtype: the top-k softmax probabilities.
  Tensor expert_idx;  ///< i32: the selected experts; E for every slot of a finished row.
  Tensor row_idx;     ///< i32: row_idx[r, j] = j * R + r ("k-major" source row, consumed by init_routing v1).
};

/// torch_npu.npu_moe_gating_top_k_softmax(x, finished=None, k=1).
///
/// Rows r of x, flattened over the leading dims (R of them): p = softmax(fp32(x[r])) over E; the k largest p are
/// selected (descending, ties -> lower expert): y[r, j] = p[idx[j]] rounded once to x's dtype (no renormalisation),
/// expert_idx[r, j] = finished[r] ? E : idx[j] (y is the same for finished rows), row_idx[r, j] = j * R + r.
/// fp16 x is scored in fp32 like the other dtypes (docs/operators.md, Numerics): top-k compares the fp32
/// probabilities. The torch_npu golden takes top-k on fp16-rounded probabilities instead, so where two probabilities
/// round to the same fp16 value it picks the lower index and moefuse the truly larger one.
///
/// x:        [N, E] or [B, S, E], f32 / bf16 / f16, any strides; E >= 0.
/// finished: optional bool of shape x.shape[:-1], any strides; true = the row is finished.
/// k:        0 <= k <= E (k = 0 gives empty outputs of shape [..., 0]). The hardware limit k <= 1024 is not imposed.
/// Errors: TypeError: x not f32/bf16/f16; finished not bool.
///         ValueError: x not 2-D or 3-D, or E > 2^31 - 1; finished of the wrong shape; k out of range;
///         R * k > 2^31 - 1 (row_idx would overflow i32).
GatingTopKSoftmaxResult gating_top_k_softmax(const Tensor& x, const Tensor& finished = {}, int64_t k = 1);

/// As gating_top_k_softmax(), writing into out.y (x's dtype), out.expert_idx and out.row_idx (i32), all of shape
/// x.shape[:-1] + [k], contiguous and writable.
void gating_top_k_softmax_out(const Tensor& x, const Tensor& finished, int64_t k, const GatingTopKSoftmaxResult& out);

// ------------------------------------------------------------------------------------------------------------------
// npu_moe_gating_top_k_softmax_v2
// ------------------------------------------------------------------------------------------------------------------

/// Keyword-only arguments of gating_top_k_softmax_v2(), with torch_npu's defaults.
struct GatingTopKSoftmaxV2Options {
  /// 0 <= k <= E (k = 0 gives empty outputs). The hardware limit k <= 1024 is not imposed.
  int64_t k = 1;
  /// Optional bool of shape x.shape[:-1], any strides; finished rows get expert_idx = E (y unchanged).
  Tensor finished;
  /// 0: softmax over E, then top-k (as gating_top_k_softmax). 1: top-k on the raw logits, then softmax over the k
  /// selected logits (same softmax formula, over the k values in slot order).
  int64_t renorm = 0;
  /// With renorm 0: also return the full fp32 softmax. Ignored with renorm 1.
  bool output_softmax = false;
};

/// Outputs of gating_top_k_softmax_v2(), with torch_npu's names.
struct GatingTopKSoftmaxV2Result {
  Tensor y;            ///< x.shape[:-1] + [k], x's dtype.
  Tensor expert_idx;   ///< x.shape[:-1] + [k], i32; E for finished rows.
  Tensor softmax_out;  ///< f32 of x's shape (the full softmax) when renorm == 0 && output_softmax, else f32 [0].
};

/// torch_npu.npu_moe_gating_top_k_softmax_v2(x, *, k=1, finished=None, renorm=0, output_softmax=False).
///
/// renorm 0: as gating_top_k_softmax() (without row_idx), plus softmax_out = the fp32 softmax of every row when
/// output_softmax. renorm 1: the k largest fp32 logits are selected (descending, ties -> lower expert) and
/// y[r, :] = softmax of those k logits (m = their max, S summed in slot order), rounded once to x's dtype;
/// mathematically (not bitwise) this is the renormalised top-k of the softmax (the Mixtral router). In every mode
/// finished rows get expert_idx = E and unchanged y, and softmax_out does not depend on finished. When softmax_out
/// is not produced it is an empty f32 tensor of shape [0] (as the torch_npu golden's np.array([])).
///
/// x: [N, E] or [B, S, E], f32 / bf16 / f16, any strides; E >= 0. fp16 is scored in fp32 (see gating_top_k_softmax).
/// Errors: TypeError: x not f32/bf16/f16; finished not bool.
///         ValueError: x not 2-D or 3-D, or E > 2^31 - 1; finished of the wrong shape; k outside [0, E]; renorm
///         not 0/1.
GatingTopKSoftmaxV2Result gating_top_k_softmax_v2(const Tensor& x, const GatingTopKSoftmaxV2Options& options = {});

/// As gating_top_k_softmax_v2(), writing into out.y (x's dtype) and out.expert_idx (i32), of shape
/// x.shape[:-1] + [k], contiguous and writable. When renorm == 0 && output_softmax, out.softmax_out must be a
/// contiguous writable f32 tensor of x's shape; otherwise out.softmax_out must be undefined or have 0 elements, and
/// is not touched.
void gating_top_k_softmax_v2_out(const Tensor& x, const GatingTopKSoftmaxV2Options& options,
                                 const GatingTopKSoftmaxV2Result& out);

}  // namespace moefuse
