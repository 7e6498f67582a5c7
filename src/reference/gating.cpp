#include "reference/gating.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "base/elements.h"
#include "base/scratch.h"

namespace moefuse::reference {
namespace {

// The order of every top-k (docs/operators.md, Numerics): the larger score first; NaN below every number; equal
// scores (or two NaNs) -> the lower index first. A strict total order on (score, index) pairs: one answer.
bool ranks_before(float a, int64_t ia, float b, int64_t ib) {
  const bool a_nan = std::isnan(a), b_nan = std::isnan(b);
  if (a_nan != b_nan) return b_nan;
  if (!a_nan && a != b) return a > b;
  return ia < ib;
}

// Puts the k best of candidates[0..n) (indices into `keys`), ordered by ranks_before, in candidates[0..k). The order
// is strict and total, so the partial sort has exactly one answer; it sorts in place and allocates nothing.
void top_k(const float* keys, int64_t* candidates, int64_t n, int64_t k) {
  std::partial_sort(candidates, candidates + k, candidates + n,
                    [&](int64_t a, int64_t b) { return ranks_before(keys[a], a, keys[b], b); });
}

// v[0..n) = softmax(v[0..n)): m = max, q = exp(v - m), S = sequential sum of q, p = q * (1 / S).
void softmax_in_place(float* v, int64_t n) {
  if (n == 0) return;
  float m = v[0];
  for (int64_t i = 1; i < n; ++i)
    if (v[i] > m) m = v[i];
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    v[i] = std::exp(v[i] - m);
    sum += v[i];
  }
  const float reciprocal = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) v[i] = v[i] * reciprocal;
}

// Element offset of row r of t, where the rows are the flattened first `lead_dims` dimensions.
int64_t row_offset(const Tensor& t, int lead_dims, int64_t r) {
  int64_t off = 0;
  for (int d = lead_dims - 1; d >= 0; --d) {
    off += (r % t.shape()[d]) * t.strides()[d];
    r /= t.shape()[d];
  }
  return off;
}

}  // namespace

void gating_top_k(const Tensor& x, int64_t k, const GatingTopKOptions& o, const GatingTopKResult& out) {
  const int64_t n_rows = x.size(0), n_experts = x.size(1);
  const int64_t n_groups = o.group_count, group_size = n_experts / n_groups;
  const bool renormalise = o.norm_type == 1 || o.renorm == 1;
  const float scale = float(o.routed_scaling_factor);
  const float eps = float(o.eps);
  int32_t* expert_idx = static_cast<int32_t*>(out.expert_idx.data());
  float* scores_out = static_cast<float*>(out.out.data());

  const int64_t n_candidates = o.k_group * group_size;  // the experts of the chosen groups
  Scratch<float> p(n_experts), b(n_experts), group_score(n_groups), w(k);
  Scratch<int64_t> groups(n_groups), experts(n_candidates);
  for (int64_t n = 0; n < n_rows; ++n) {
    // 1. Normalised scores p (fp32), and the biased selection keys b.
    for (int64_t e = 0; e < n_experts; ++e)
      p[e] = load_element_f32(x.data(), x.dtype(), n * x.stride(0) + e * x.stride(1));
    if (o.norm_type == 1) {
      for (float& v : p) v = 1.0f / (1.0f + std::exp(-v));
    } else {
      softmax_in_place(p.data(), n_experts);
    }
    for (int64_t e = 0; e < n_experts; ++e)
      b[e] = o.bias.defined() ? p[e] + load_element_f32(o.bias.data(), o.bias.dtype(), e * o.bias.stride(0)) : p[e];

    // 2. Group scores: the best b of the group (mode 0) or the sum of its two best (mode 1).
    for (int64_t gi = 0; gi < n_groups; ++gi) {
      const int64_t begin = gi * group_size, end = begin + group_size;
      int64_t best = begin;
      for (int64_t e = begin + 1; e < end; ++e)
        if (ranks_before(b[e], e, b[best], best)) best = e;
      float score = b[best];
      if (o.group_select_mode == 1) {
        int64_t second = best == begin ? begin + 1 : begin;
        for (int64_t e = begin; e < end; ++e)
          if (e != best && ranks_before(b[e], e, b[second], second)) second = e;
        score = score + b[second];
      }
      group_score[gi] = score;
    }

    // 3. The k_group best groups, then the k best experts among theirs.
    std::iota(groups.begin(), groups.end(), int64_t{0});
    top_k(group_score.data(), groups.data(), n_groups, o.k_group);
    int64_t c = 0;
    for (int64_t i = 0; i < o.k_group; ++i)
      for (int64_t e = groups[i] * group_size; e < (groups[i] + 1) * group_size; ++e) experts[c++] = e;
    top_k(b.data(), experts.data(), n_candidates, k);

    // 4. Weights from the unbiased scores, renormalised (sequential sum in slot order), scaled, rounded once.
    for (int64_t j = 0; j < k; ++j) w[j] = p[experts[j]];
    if (renormalise) {
      float sum = 0.0f;
      for (int64_t j = 0; j < k; ++j) sum += w[j];
      const float denominator = sum + eps;
      for (int64_t j = 0; j < k; ++j) w[j] = w[j] / denominator;
    }
    for (int64_t j = 0; j < k; ++j) {
      store_element_f32(out.y.data(), out.y.dtype(), n * k + j, w[j] * scale);
      expert_idx[n * k + j] = int32_t(experts[j]);
    }
    for (int64_t e = 0; e < n_experts; ++e) scores_out[n * n_experts + e] = o.out_flag ? p[e] : 0.0f;
  }
}

void gating_top_k_softmax(const Tensor& x, const Tensor& finished, int64_t k, int64_t renorm, const Tensor& y,
                          const Tensor& expert_idx, const Tensor& row_idx, const Tensor& softmax_out) {
  const int lead = x.dim() - 1;
  const int64_t n_experts = x.size(-1), col_stride = x.stride(-1);
  int64_t n_rows = 1;
  for (int d = 0; d < lead; ++d) n_rows *= x.size(d);
  int32_t* idx_out = static_cast<int32_t*>(expert_idx.data());
  int32_t* row_idx_out = row_idx.defined() && row_idx.numel() ? static_cast<int32_t*>(row_idx.data()) : nullptr;
  float* softmax_data =
      softmax_out.defined() && softmax_out.numel() ? static_cast<float*>(softmax_out.data()) : nullptr;

  Scratch<float> s(n_experts), v(k);
  Scratch<int64_t> experts(n_experts);
  for (int64_t r = 0; r < n_rows; ++r) {
    const int64_t base = row_offset(x, lead, r);
    for (int64_t e = 0; e < n_experts; ++e) s[e] = load_element_f32(x.data(), x.dtype(), base + e * col_stride);
    const bool is_finished = finished.defined() && load_element_int(finished.data(), finished.dtype(),
                                                                    row_offset(finished, finished.dim(), r)) != 0;

    std::iota(experts.begin(), experts.end(), int64_t{0});
    if (renorm == 0) {
      softmax_in_place(s.data(), n_experts);
      if (softmax_data)
        for (int64_t e = 0; e < n_experts; ++e) softmax_data[r * n_experts + e] = s[e];
      top_k(s.data(), experts.data(), n_experts, k);
      for (int64_t j = 0; j < k; ++j) v[j] = s[experts[j]];
    } else {
      top_k(s.data(), experts.data(), n_experts, k);
      for (int64_t j = 0; j < k; ++j) v[j] = s[experts[j]];
      softmax_in_place(v.data(), k);
    }
    for (int64_t j = 0; j < k; ++j) {
      store_element_f32(y.data(), y.dtype(), r * k + j, v[j]);
      idx_out[r * k + j] = int32_t(is_finished ? n_experts : experts[j]);
      if (row_idx_out) row_idx_out[r * k + j] = int32_t(j * n_rows + r);
    }
  }
}

}  // namespace moefuse::reference
