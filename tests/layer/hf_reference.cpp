#include "layer/hf_reference.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace moefuse::testing {
namespace {

using Vec = std::vector<float>;

float round_to(float v, DType t) {
  if (t == DType::bf16) return to_f32(to_bf16(v));
  if (t == DType::f16) return to_f32(to_f16(v));
  return v;
}

// Element i of a contiguous tensor as float (any float dtype or int8).
float at(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::f32: return t.data_as<const float>()[i];
    case DType::bf16: return to_f32(t.data_as<const bfloat16>()[i]);
    case DType::f16: return to_f32(t.data_as<const float16>()[i]);
    case DType::i8: return float(t.data_as<const int8_t>()[i]);
    default: return NAN;
  }
}

float silu(float a) { return a / (1.0f + std::exp(-a)); }

// y[o] = sum_i w[row0 + o, i] * v[i] with one fma per term in i order (row-major [rows, in] storage at `base`).
Vec matvec(const Tensor& w, int64_t base, int64_t out, int64_t in, const Vec& v) {
  Vec y(static_cast<size_t>(out));
  for (int64_t o = 0; o < out; ++o) {
    float acc = 0.0f;
    for (int64_t i = 0; i < in; ++i) acc = std::fma(v[size_t(i)], at(w, base + o * in + i), acc);
    y[size_t(o)] = acc;
  }
  return y;
}

// Exact int8 dot products.
std::vector<int32_t> matvec_i8(const Tensor& w, int64_t base, int64_t out, int64_t in, const std::vector<int8_t>& v) {
  std::vector<int32_t> y(static_cast<size_t>(out));
  const int8_t* p = w.data_as<const int8_t>() + base;
  for (int64_t o = 0; o < out; ++o) {
    int64_t acc = 0;
    for (int64_t i = 0; i < in; ++i) acc += int64_t(v[size_t(i)]) * p[o * in + i];
    y[size_t(o)] = int32_t(acc);
  }
  return y;
}

// Dynamic symmetric int8: s = max|v| / 127, q = round-half-even(v / s) in [-127, 127] (docs/operators.md, Numerics:
// dynamic int8 quantisation).
float quantize(const Vec& v, std::vector<int8_t>& q) {
  float m = 0.0f;
  for (float x : v) m = std::max(m, std::fabs(x));
  const float s = m / 127.0f;
  q.assign(v.size(), 0);
  if (s == 0.0f) return s;
  for (size_t i = 0; i < v.size(); ++i) q[i] = int8_t(std::clamp(std::nearbyint(v[i] / s), -127.0f, 127.0f));
  return s;
}

struct Mlp {
  const Tensor *w13, *w2, *w13_scale, *w2_scale;
  int64_t expert, width, H;
};

// One expert's MLP on one token: float chain (model-dtype roundings after each matmul and after SwiGLU) or the
// quantised chains (docs/layer.md §1, experts).
Vec expert_mlp(const MoeConfig& c, const Mlp& m, const Vec& xf, const Vec* smooth1,
               const Vec* smooth2, float alpha) {
  const int64_t W = m.width, H = m.H, e = m.expert;
  const DType md = c.dtype;
  Vec y(static_cast<size_t>(H));
  if (c.quant_mode == QuantMode::none) {
    Vec h = matvec(*m.w13, e * 2 * W * H, 2 * W, H, xf);
    for (float& v : h) v = round_to(v, md);
    Vec a(static_cast<size_t>(W));
    for (int64_t i = 0; i < W; ++i) a[size_t(i)] = round_to(silu(h[size_t(i)]) * h[size_t(W + i)], md);
    y = matvec(*m.w2, e * H * W, H, W, a);
    for (float& v : y) v = round_to(v, md);
    return y;
  }
  Vec xs = xf;
  if (smooth1)
    for (int64_t i = 0; i < H; ++i) xs[size_t(i)] = xs[size_t(i)] * (*smooth1)[size_t(i)];
  std::vector<int8_t> xq;
  const float x_scale = quantize(xs, xq);
  const std::vector<int32_t> acc1 = matvec_i8(*m.w13, e * 2 * W * H, 2 * W, H, xq);
  Vec o(static_cast<size_t>(W));
  std::vector<int8_t> aq;
  float a_scale;
  if (c.quant_mode == QuantMode::w8a8) {
    // dequant_swiglu_quant: fp32(acc) * weight_scale * activation_scale, silu(first half) * second half,
    // times smooth scale 2, then dynamic int8.
    Vec v(static_cast<size_t>(2 * W));
    for (int64_t j = 0; j < 2 * W; ++j)
      v[size_t(j)] = (float(acc1[size_t(j)]) * at(*m.w13_scale, e * 2 * W + j)) * x_scale;
    for (int64_t i = 0; i < W; ++i) {
      float a = v[size_t(i)], b = v[size_t(W + i)];
      o[size_t(i)] = (a / (1.0f + std::exp(-a))) * b;
      if (smooth2) o[size_t(i)] = o[size_t(i)] * (*smooth2)[size_t(i)];
    }
    a_scale = quantize(o, aq);
  } else {
    // w8a8c8: the first matmul is dequantised to bf16; swiglu_clip_quant clamps to +-alpha * max|s| and quantises.
    Vec h(static_cast<size_t>(2 * W));
    for (int64_t j = 0; j < 2 * W; ++j)
      h[size_t(j)] = to_f32(to_bf16((float(acc1[size_t(j)]) * at(*m.w13_scale, e * 2 * W + j)) * x_scale));
    float mx = 0.0f;
    for (int64_t i = 0; i < W; ++i) {
      o[size_t(i)] = (h[size_t(i)] / (1.0f + std::exp(-h[size_t(i)]))) * h[size_t(W + i)];
      mx = std::max(mx, std::fabs(o[size_t(i)]));
    }
    const float t = alpha * mx;
    for (float& v : o) v = std::clamp(v, -t, t);
    a_scale = quantize(o, aq);
  }
  const std::vector<int32_t> acc2 = matvec_i8(*m.w2, e * H * W, H, W, aq);
  for (int64_t j = 0; j < H; ++j)
    y[size_t(j)] = round_to((float(acc2[size_t(j)]) * at(*m.w2_scale, e * H + j)) * a_scale, md);
  return y;
}

// Top-k of `key` over the allowed entries: larger first, ties to the lower index.
std::vector<int64_t> top_k(const Vec& key, const std::vector<bool>& allowed, int64_t k) {
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < int64_t(key.size()); ++i)
    if (allowed[size_t(i)]) idx.push_back(i);
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return key[size_t(a)] > key[size_t(b)]; });
  idx.resize(size_t(k));
  return idx;
}

}  // namespace

Tensor hf_moe_forward(const MoeConfig& c, const LayerWeights& w, const Tensor& x, Tensor* topk_idx) {
  const int64_t T = x.size(0), H = c.hidden_size, E = c.num_experts, K = c.num_experts_per_tok;
  const int64_t I = c.moe_intermediate_size, Is = c.shared_expert_width();
  const DType md = c.dtype;
  const DType logits_dtype = c.router_logits_dtype == RouterLogitsDtype::model ? md : DType::f32;
  const Tensor xc = x.contiguous();
  Tensor out = Tensor::empty(md, {T, H});
  if (topk_idx) *topk_idx = Tensor::empty(DType::i32, {T, K});
  for (int64_t t = 0; t < T; ++t) {
    Vec xf(static_cast<size_t>(H));
    for (int64_t h = 0; h < H; ++h) xf[size_t(h)] = at(xc, t * H + h);

    // Router and gating.
    Vec logits = matvec(w.router, 0, E, H, xf);
    for (float& v : logits) v = round_to(v, logits_dtype);
    Vec p(static_cast<size_t>(E));
    if (c.scoring_func == ScoringFunc::softmax) {
      const float mx = *std::max_element(logits.begin(), logits.end());
      float sum = 0.0f;
      for (int64_t e = 0; e < E; ++e) sum += (p[size_t(e)] = std::exp(logits[size_t(e)] - mx));
      const float inv = 1.0f / sum;
      for (float& v : p) v = v * inv;
    } else {
      for (int64_t e = 0; e < E; ++e) p[size_t(e)] = 1.0f / (1.0f + std::exp(-logits[size_t(e)]));
    }
    Vec b = p;
    if (w.router_bias.defined())
      for (int64_t e = 0; e < E; ++e) b[size_t(e)] = p[size_t(e)] + w.router_bias.data_as<const float>()[e];
    // Group-limited selection: keep the topk_group groups with the best score (max, or sum of the best two for
    // sigmoid scoring), then the top K experts of those groups.
    const int64_t G = c.n_group, g = E / G;
    Vec group_score(static_cast<size_t>(G));
    for (int64_t j = 0; j < G; ++j) {
      Vec members(b.begin() + j * g, b.begin() + (j + 1) * g);
      std::stable_sort(members.begin(), members.end(), std::greater<float>());
      group_score[size_t(j)] = c.scoring_func == ScoringFunc::sigmoid ? members[0] + members[1] : members[0];
    }
    std::vector<int64_t> groups = top_k(group_score, std::vector<bool>(size_t(G), true), c.topk_group);
    std::vector<bool> allowed(size_t(E), false);
    for (int64_t j : groups)
      for (int64_t e = j * g; e < (j + 1) * g; ++e) allowed[size_t(e)] = true;
    std::vector<int64_t> idx = top_k(b, allowed, K);
    Vec wk(static_cast<size_t>(K));
    float wsum = 0.0f;
    for (int64_t k = 0; k < K; ++k) wsum += (wk[size_t(k)] = p[size_t(idx[size_t(k)])]);
    const bool renorm = c.scoring_func == ScoringFunc::sigmoid || c.norm_topk_prob;
    for (int64_t k = 0; k < K; ++k) {
      float v = renorm ? wk[size_t(k)] / (wsum + 1e-20f) : wk[size_t(k)];
      v = v * float(c.routed_scaling_factor);
      wk[size_t(k)] = round_to(round_to(v, logits_dtype), md);
      if (topk_idx) topk_idx->data_as<int32_t>()[t * K + k] = int32_t(idx[size_t(k)]);
    }

    // Shared expert (skip1), gated for qwen2_moe.
    Vec acc(static_cast<size_t>(H), 0.0f);
    bool started = false;
    if (Is > 0) {
      Mlp m{&w.shared_w13, &w.shared_w2, &w.shared_w13_scale, &w.shared_w2_scale, 0, Is, H};
      acc = expert_mlp(c, m, xf, nullptr, nullptr, 1.0f);
      if (c.shared_expert_gated()) {
        const float gl = matvec(w.shared_gate, 0, 1, H, xf)[0];
        const float sg = 1.0f / (1.0f + std::exp(-gl));
        for (float& v : acc) v = round_to(sg * v, md);
      }
      started = true;
    }
    // Routed experts, combined in slot order.
    for (int64_t k = 0; k < K; ++k) {
      const int64_t e = idx[size_t(k)];
      Vec s1, s2;
      if (w.smooth_scale1.defined()) s1.assign(w.smooth_scale1.data_as<const float>() + e * H, w.smooth_scale1.data_as<const float>() + (e + 1) * H);
      if (w.smooth_scale2.defined()) s2.assign(w.smooth_scale2.data_as<const float>() + e * I, w.smooth_scale2.data_as<const float>() + (e + 1) * I);
      const float alpha = w.clip_alpha.defined() ? w.clip_alpha.data_as<const float>()[e] : 1.0f;
      Mlp m{&w.w13, &w.w2, &w.w13_scale, &w.w2_scale, e, I, H};
      Vec y = expert_mlp(c, m, xf, s1.empty() ? nullptr : &s1, s2.empty() ? nullptr : &s2, alpha);
      for (int64_t h = 0; h < H; ++h)
        acc[size_t(h)] = started ? acc[size_t(h)] + wk[size_t(k)] * y[size_t(h)] : wk[size_t(k)] * y[size_t(h)];
      started = true;
    }
    for (int64_t h = 0; h < H; ++h) out.set_item({t, h}, double(round_to(acc[size_t(h)], md)));
  }
  return out;
}

}  // namespace moefuse::testing
