// reference_layer_forward (include/moefuse/layer.h): the layer's oracle, a plain per-token, per-expert loop the way
// Hugging Face's MoE blocks compute (route the token, run each chosen expert's MLP, add the weighted results), with
// the rounding points of docs/layer.md §1. It computes everything itself, from the weights' values: no operator,
// no scalar reference of src/reference, no router, gating or quantisation code of the library, no kernel, no pool
// (its bf16 dot-product step is its own too: oracle/bf16_step.h). Only the argument checks are shared with the
// layer. One thread, no chunking, no workspace planning.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/check.h"
#include "layer/weights.h"
#include "moefuse/dtype.h"
#include "moefuse/layer.h"
#include "oracle/bf16_step.h"
#include "oracle/exp_f32.h"

namespace moefuse {
namespace {

using Vec = std::vector<float>;

float round_to(float v, DType t) {
  if (t == DType::bf16) return to_f32(to_bf16(v));
  if (t == DType::f16) return to_f32(to_f16(v));
  return v;
}

// n values of a contiguous float or int8 tensor from flat index `at`, widened to float.
Vec load(const Tensor& t, int64_t at, int64_t n) {
  Vec v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    switch (t.dtype()) {
      case DType::f32: v[size_t(i)] = t.data_as<const float>()[at + i]; break;
      case DType::bf16: v[size_t(i)] = to_f32(t.data_as<const bfloat16>()[at + i]); break;
      case DType::f16: v[size_t(i)] = to_f32(t.data_as<const float16>()[at + i]); break;
      case DType::i8: v[size_t(i)] = float(t.data_as<const int8_t>()[at + i]); break;
      default: v[size_t(i)] = NAN;
    }
  }
  return v;
}

float silu(float a) { return a / (1.0f + oracle::exp_f32(-a)); }  // moefuse's exp (oracle/exp_f32.h)
float sigmoid(float a) { return 1.0f / (1.0f + std::exp(-a)); }

// y[o] = sum_i w[base + o * in + i] * v[i] (rows of an [out, in] storage), from +0 in the order of the weights'
// dtype (docs/layer.md, "Dot products"): f32 / f16 weights one fma per term in i order; bf16 weights (the FP8 ones
// included: the layer hands the oracle their bf16 values) pairs of i, the odd one first, each term one
// oracle::fma_daz_ftz, a zero pair standing in for i = in when in is odd.
Vec matvec(const Tensor& w, int64_t base, int64_t out, int64_t in, const Vec& v) {
  Vec y(static_cast<size_t>(out));
  for (int64_t o = 0; o < out; ++o) {
    const Vec row = load(w, base + o * in, in);
    float acc = 0.0f;
    if (w.dtype() == DType::bf16) {
      for (int64_t i = 0; i < in; i += 2) {
        acc = i + 1 < in ? oracle::fma_daz_ftz(v[size_t(i + 1)], row[size_t(i + 1)], acc)
                         : oracle::fma_daz_ftz(0.0f, 0.0f, acc);
        acc = oracle::fma_daz_ftz(v[size_t(i)], row[size_t(i)], acc);
      }
    } else {
      for (int64_t i = 0; i < in; ++i) acc = std::fma(v[size_t(i)], row[size_t(i)], acc);
    }
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

// Dynamic symmetric int8: s = max|v| / 127, q = round-half-even(v / s) clamped to [-127, 127]; all zeros for s = 0.
// A row holding a NaN gives s = NaN and q = 0; else one holding an infinity s = inf, q = +-127 at the infinities
// and 0 elsewhere (docs/operators.md's rule for non-finite rows).
float quantize(const Vec& v, std::vector<int8_t>& q) {
  q.assign(v.size(), 0);
  bool nan = false, inf = false;
  float m = 0.0f;
  for (float x : v) {
    nan = nan || std::isnan(x);
    inf = inf || std::isinf(x);
    if (std::isfinite(x)) m = std::max(m, std::fabs(x));
  }
  if (nan) return NAN;
  if (inf) {
    for (size_t i = 0; i < v.size(); ++i)
      if (std::isinf(v[i])) q[i] = v[i] > 0 ? int8_t(127) : int8_t(-127);
    return INFINITY;
  }
  const float s = m / 127.0f;
  if (s == 0.0f) return s;
  for (size_t i = 0; i < v.size(); ++i) q[i] = int8_t(std::clamp(std::nearbyint(v[i] / s), -127.0f, 127.0f));
  return s;
}

// w4a16: rows [base_row, base_row + out) of int4 storage [.., out, in] (u8 q, scales and zero points per group of G
// inputs) times model-dtype v, as the layer defines it (docs/layer.md, "Dot products"): per output and group the
// sums Σ v q and Σ v in pairs of inputs, the odd one first, each term one oracle::fma_daz_ftz; then
// acc = fma_daz_ftz(s, fma_daz_ftz(-z, Σ v, Σ v q), acc) over the groups in order. It equals Σ v (q - z) s, GPTQ's
// dequantised product, up to fp32 rounding (tests/kernels/gemm_u4_test.cpp checks how close).
Vec matvec_u4(const Tensor& q, const Tensor& scale, const Tensor& zero, int64_t base_row, int64_t out, int64_t in,
              const Vec& v) {
  const int64_t groups = scale.size(2), G = in / groups;
  Vec y(static_cast<size_t>(out));
  for (int64_t o = 0; o < out; ++o) {
    const int64_t r = base_row + o;
    const uint8_t* qr = q.data_as<const uint8_t>() + r * in;
    float acc = 0.0f;
    for (int64_t g = 0; g < groups; ++g) {
      float sq = 0.0f, sv = 0.0f;
      for (int64_t i = g * G; i < (g + 1) * G; i += 2)
        for (const int64_t j : {i + 1, i}) {
          sq = oracle::fma_daz_ftz(v[size_t(j)], float(qr[j]), sq);
          sv = oracle::fma_daz_ftz(v[size_t(j)], 1.0f, sv);
        }
      const float z = float(zero.data_as<const uint8_t>()[r * groups + g]);
      const float t = oracle::fma_daz_ftz(-z, sv, sq);
      acc = oracle::fma_daz_ftz(scale.data_as<const float>()[r * groups + g], t, acc);
    }
    y[size_t(o)] = acc;
  }
  return y;
}

// w4a8: rows [base_row, base_row + out) of int4 storage [.., out, in] (u8 q) times int8 v, as the layer defines it:
// per output and group of G inputs the exact integer Σ (q - z) v, then acc = fma(float(isum), s, acc) over the
// groups in order, then acc * v_scale.
Vec matvec_u4_s8(const Tensor& q, const Tensor& scale, const Tensor& zero, int64_t base_row, int64_t out, int64_t in,
                 const std::vector<int8_t>& v, float v_scale) {
  const int64_t groups = scale.size(2), G = in / groups;
  Vec y(static_cast<size_t>(out));
  for (int64_t o = 0; o < out; ++o) {
    const int64_t r = base_row + o;
    float acc = 0.0f;
    for (int64_t g = 0; g < groups; ++g) {
      const int z = zero.data_as<const uint8_t>()[r * groups + g];
      int64_t isum = 0;
      for (int64_t i = g * G; i < (g + 1) * G; ++i)
        isum += int64_t(int(q.data_as<const uint8_t>()[r * in + i]) - z) * v[size_t(i)];
      acc = std::fma(float(isum), scale.data_as<const float>()[r * groups + g], acc);
    }
    y[size_t(o)] = acc * v_scale;
  }
  return y;
}

// One expert's projections: w13 rows [2W, H] and w2 rows [H, W] of expert `e`, with their per-channel scales
// (w4a8: per group, with the zero points).
struct Mlp {
  const Tensor &w13, &w2, &w13_scale, &w2_scale;
  int64_t e, W, H;
  const Tensor* w13_zero = nullptr;
  const Tensor* w2_zero = nullptr;
  const Tensor* w13_perm = nullptr;  // act order: [.., H] i32 input orders (row e), or undefined
};

// Act order (LayerWeights::w13_perm): v in the expert's input order, v'[j] = v[order[j]]; v itself without one.
template <class V>
V in_input_order(const Mlp& m, const V& v) {
  if (m.w13_perm == nullptr || !m.w13_perm->defined()) return v;
  V out(v.size());
  for (size_t j = 0; j < v.size(); ++j)
    out[j] = v[size_t(m.w13_perm->data_as<const int32_t>()[m.e * int64_t(v.size()) + int64_t(j)])];
  return out;
}

// One expert's MLP on one token x (model-dtype values): the float chain rounds to the model dtype after each matmul
// and after SwiGLU; w8a8 dequantises the first matmul in fp32, applies SwiGLU and smooth scale 2 and requantises;
// w8a8c8 dequantises to bf16, clips SwiGLU's output to +-alpha * max|.| and requantises. Both dequantise the second
// matmul with the two scales and round to the model dtype.
Vec expert_mlp(const MoeConfig& c, const Mlp& m, const Vec& x, const Vec* smooth1, const Vec* smooth2, float alpha) {
  const int64_t W = m.W, H = m.H, e = m.e;
  const DType md = c.dtype;
  Vec y(static_cast<size_t>(H));
  if (c.quant_mode == QuantMode::none || c.quant_mode == QuantMode::w4a16) {
    // w4a16: the float chain with the int4 projections (matvec_u4) in place of the float ones.
    const bool int4 = c.quant_mode == QuantMode::w4a16;
    Vec h = int4 ? matvec_u4(m.w13, m.w13_scale, *m.w13_zero, e * 2 * W, 2 * W, H, in_input_order(m, x))
                 : matvec(m.w13, e * 2 * W * H, 2 * W, H, x);
    for (float& v : h) v = round_to(v, md);
    Vec a(static_cast<size_t>(W));
    for (int64_t i = 0; i < W; ++i) a[size_t(i)] = round_to(silu(h[size_t(i)]) * h[size_t(W + i)], md);
    y = int4 ? matvec_u4(m.w2, m.w2_scale, *m.w2_zero, e * H, H, W, a) : matvec(m.w2, e * H * W, H, W, a);
    for (float& v : y) v = round_to(v, md);
    return y;
  }
  Vec xs = x;
  if (smooth1)
    for (int64_t i = 0; i < H; ++i) xs[size_t(i)] = xs[size_t(i)] * (*smooth1)[size_t(i)];
  std::vector<int8_t> xq;
  const float x_scale = quantize(xs, xq);
  if (c.quant_mode == QuantMode::w4a8) {
    // w4a8: the first matmul dequantised in fp32 (group scales, then the token's scale), SwiGLU, smooth scale 2,
    // requantised; the second likewise, rounded to the model dtype.
    // Act order: the quantised row in the expert's input order (the scale, a max over the row, is the same).
    const Vec v = matvec_u4_s8(m.w13, m.w13_scale, *m.w13_zero, e * 2 * W, 2 * W, H, in_input_order(m, xq), x_scale);
    Vec o(static_cast<size_t>(W));
    for (int64_t i = 0; i < W; ++i) {
      o[size_t(i)] = silu(v[size_t(i)]) * v[size_t(W + i)];
      if (smooth2) o[size_t(i)] = o[size_t(i)] * (*smooth2)[size_t(i)];
    }
    std::vector<int8_t> aq;
    const float a_scale = quantize(o, aq);
    const Vec y2 = matvec_u4_s8(m.w2, m.w2_scale, *m.w2_zero, e * H, H, W, aq, a_scale);
    for (int64_t j = 0; j < H; ++j) y[size_t(j)] = round_to(y2[size_t(j)], md);
    return y;
  }
  const std::vector<int32_t> acc1 = matvec_i8(m.w13, e * 2 * W * H, 2 * W, H, xq);
  const Vec s13 = load(m.w13_scale, e * 2 * W, 2 * W);
  Vec o(static_cast<size_t>(W));
  if (c.quant_mode == QuantMode::w8a8) {
    Vec v(static_cast<size_t>(2 * W));
    for (int64_t j = 0; j < 2 * W; ++j) v[size_t(j)] = (float(acc1[size_t(j)]) * s13[size_t(j)]) * x_scale;
    for (int64_t i = 0; i < W; ++i) {
      o[size_t(i)] = silu(v[size_t(i)]) * v[size_t(W + i)];
      if (smooth2) o[size_t(i)] = o[size_t(i)] * (*smooth2)[size_t(i)];
    }
  } else {
    Vec h(static_cast<size_t>(2 * W));
    for (int64_t j = 0; j < 2 * W; ++j)
      h[size_t(j)] = round_to((float(acc1[size_t(j)]) * s13[size_t(j)]) * x_scale, DType::bf16);
    float mx = 0.0f;
    for (int64_t i = 0; i < W; ++i) {
      o[size_t(i)] = silu(h[size_t(i)]) * h[size_t(W + i)];
      mx = std::max(mx, std::fabs(o[size_t(i)]));
    }
    const float limit = alpha * mx;
    for (float& v : o) v = std::min(std::max(v, -limit), limit);
  }
  std::vector<int8_t> aq;
  const float a_scale = quantize(o, aq);
  const std::vector<int32_t> acc2 = matvec_i8(m.w2, e * H * W, H, W, aq);
  const Vec s2 = load(m.w2_scale, e * H, H);
  for (int64_t j = 0; j < H; ++j) y[size_t(j)] = round_to((float(acc2[size_t(j)]) * s2[size_t(j)]) * a_scale, md);
  return y;
}

// The entries of `key` whose `allowed` flag is set, best first (larger key; ties to the lower index), first k.
std::vector<int64_t> top_k(const Vec& key, const std::vector<bool>& allowed, int64_t k) {
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < int64_t(key.size()); ++i)
    if (allowed[size_t(i)]) idx.push_back(i);
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return key[size_t(a)] > key[size_t(b)]; });
  idx.resize(size_t(k));
  return idx;
}

struct Route {
  std::vector<int64_t> experts;  // [K], in slot order
  Vec weights;                   // [K], model-dtype values
};

// Router logits (matvec's dot products over H, in the router weight's order, rounded to the logits dtype), softmax or sigmoid scores, the
// correction bias for the choice only, group-limited top-k (groups ranked by their best score, or by the sum of
// their best two for sigmoid scoring), renormalisation, the scaling factor, rounding to the logits then the model
// dtype.
Route route(const MoeConfig& c, const LayerWeights& w, const Vec& x) {
  const int64_t E = c.num_experts, H = c.hidden_size, K = c.num_experts_per_tok;
  const DType logits_dtype = c.router_logits_dtype == RouterLogitsDtype::model ? c.dtype : DType::f32;
  Vec logits = matvec(w.router, 0, E, H, x);
  for (float& v : logits) v = round_to(v, logits_dtype);
  Vec p(static_cast<size_t>(E));
  if (c.scoring_func == ScoringFunc::softmax) {
    const float mx = *std::max_element(logits.begin(), logits.end());
    float sum = 0.0f;
    for (int64_t e = 0; e < E; ++e) sum += (p[size_t(e)] = std::exp(logits[size_t(e)] - mx));
    const float inv = 1.0f / sum;
    for (float& v : p) v = v * inv;
  } else {
    for (int64_t e = 0; e < E; ++e) p[size_t(e)] = sigmoid(logits[size_t(e)]);
  }
  Vec choice = p;
  if (w.router_bias.defined()) {
    const Vec bias = load(w.router_bias, 0, E);
    for (int64_t e = 0; e < E; ++e) choice[size_t(e)] = p[size_t(e)] + bias[size_t(e)];
  }
  const int64_t G = c.n_group, g = E / G;
  Vec group_score(static_cast<size_t>(G));
  for (int64_t j = 0; j < G; ++j) {
    Vec members(choice.begin() + j * g, choice.begin() + (j + 1) * g);
    std::stable_sort(members.begin(), members.end(), std::greater<float>());
    group_score[size_t(j)] = c.scoring_func == ScoringFunc::sigmoid ? members[0] + members[1] : members[0];
  }
  const std::vector<int64_t> groups = top_k(group_score, std::vector<bool>(size_t(G), true), c.topk_group);
  std::vector<bool> allowed(size_t(E), false);
  for (int64_t j : groups)
    for (int64_t e = j * g; e < (j + 1) * g; ++e) allowed[size_t(e)] = true;
  Route r{top_k(choice, allowed, K), Vec(static_cast<size_t>(K))};
  float sum = 0.0f;
  for (int64_t k = 0; k < K; ++k) sum += (r.weights[size_t(k)] = p[size_t(r.experts[size_t(k)])]);
  const bool renorm = c.scoring_func == ScoringFunc::sigmoid || c.norm_topk_prob;
  for (float& v : r.weights) {
    float u = renorm ? v / (sum + 1e-20f) : v;
    u = u * float(c.routed_scaling_factor);
    v = round_to(round_to(u, logits_dtype), c.dtype);
  }
  return r;
}

void store(const Tensor& t, int64_t i, float v) {
  switch (t.dtype()) {
    case DType::f32: t.data_as<float>()[i] = v; break;
    case DType::bf16: t.data_as<bfloat16>()[i] = to_bf16(v); break;
    case DType::f16: t.data_as<float16>()[i] = to_f16(v); break;
    default: break;
  }
}

}  // namespace

Tensor reference_layer_forward(const MoeConfig& c, const LayerWeights& weights, const Tensor& x,
                               LayerRouting* routing) {
  constexpr const char* kOp = "reference_layer_forward";
  validate(c, "reference_layer_forward config");
  if (c.fp8_activations != Fp8Activations::none)  // the oracle of that chain: tests/layer/fp8_act_layer_test.cpp
    check::fail_value(kOp, "config.fp8_activations",
                      "none (this oracle computes the layer with activations in the model dtype)",
                      std::string(fp8_activations_name(c.fp8_activations)));
  layer::validate_weights(c, weights);
  check::rank(kOp, "x", x, 2);
  check::dtype_in(kOp, "x", x, {c.dtype});
  if (x.size(1) != c.hidden_size)
    check::fail_value(kOp, "x", "shape [T, " + std::to_string(c.hidden_size) + "] (hidden_size)", x.shape().str());
  // Every tensor read by flat index below, so contiguous.
  LayerWeights w = weights;
  for (Tensor* t : {&w.router, &w.router_bias, &w.w13, &w.w2, &w.w13_scale, &w.w2_scale, &w.smooth_scale1,
                    &w.smooth_scale2, &w.clip_alpha, &w.shared_w13, &w.shared_w2, &w.shared_w13_scale,
                    &w.shared_w2_scale, &w.shared_gate, &w.w13_zero, &w.w2_zero, &w.shared_w13_zero,
                    &w.shared_w2_zero, &w.w13_perm, &w.shared_w13_perm})
    if (t->defined()) *t = t->contiguous();
  const Tensor xc = x.contiguous();

  const int64_t T = x.size(0), H = c.hidden_size, K = c.num_experts_per_tok, I = c.moe_intermediate_size;
  const int64_t Is = c.shared_expert_width();
  const DType md = c.dtype;
  Tensor out = Tensor::empty(md, {T, H});
  Tensor topk_idx = Tensor::empty(DType::i32, {T, K}), topk_weight = Tensor::empty(md, {T, K});
  for (int64_t t = 0; t < T; ++t) {
    const Vec xt = load(xc, t * H, H);
    const Route r = route(c, w, xt);
    for (int64_t k = 0; k < K; ++k) {
      topk_idx.data_as<int32_t>()[t * K + k] = int32_t(r.experts[size_t(k)]);
      store(topk_weight, t * K + k, r.weights[size_t(k)]);
    }
    // The shared expert's output (qwen2_moe: times its sigmoid gate, rounded once) is the first term of the sum.
    Vec acc(static_cast<size_t>(H), 0.0f);
    bool started = false;
    if (Is > 0) {
      acc = expert_mlp(c, Mlp{w.shared_w13, w.shared_w2, w.shared_w13_scale, w.shared_w2_scale, 0, Is, H,
                              &w.shared_w13_zero, &w.shared_w2_zero, &w.shared_w13_perm},
                       xt, nullptr, nullptr, 1.0f);
      if (c.shared_expert_gated()) {
        const float gate = sigmoid(matvec(w.shared_gate, 0, 1, H, xt)[0]);
        for (float& v : acc) v = round_to(gate * v, md);
      }
      started = true;
    }
    // The routed experts, added in slot order.
    for (int64_t k = 0; k < K; ++k) {
      const int64_t e = r.experts[size_t(k)];
      Vec s1, s2;
      if (w.smooth_scale1.defined()) s1 = load(w.smooth_scale1, e * H, H);
      if (w.smooth_scale2.defined()) s2 = load(w.smooth_scale2, e * I, I);
      const float alpha = w.clip_alpha.defined() ? load(w.clip_alpha, e, 1)[0] : 1.0f;
      const Mlp m{w.w13, w.w2, w.w13_scale, w.w2_scale, e, I, H, &w.w13_zero, &w.w2_zero, &w.w13_perm};
      const Vec y = expert_mlp(c, m, xt, s1.empty() ? nullptr : &s1, s2.empty() ? nullptr : &s2, alpha);
      const float wk = r.weights[size_t(k)];
      for (int64_t h = 0; h < H; ++h) acc[size_t(h)] = started ? acc[size_t(h)] + wk * y[size_t(h)] : wk * y[size_t(h)];
      started = true;
    }
    for (int64_t h = 0; h < H; ++h) store(out, t * H + h, acc[size_t(h)]);
  }
  if (routing) *routing = LayerRouting{topk_idx, topk_weight};
  return out;
}

}  // namespace moefuse
