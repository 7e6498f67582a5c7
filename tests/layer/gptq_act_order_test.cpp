// GPTQ checkpoints in act order (desc_act: a permuted g_idx, each group G channels spread over the input; gptq.h,
// docs/layer.md §5 "act order"), with tensors packed here from GPTQ's definition and a random g_idx per expert
// (gate = up, down its own): the layer equals its oracle bit for bit on both paths for any thread count and token
// count, stays close to GPTQ's own dequantised weights (w = (q - z[g_idx[i]]) s[g_idx[i]]) in double precision,
// equals bit for bit the layer of the equivalent checkpoint written with consecutive groups (its input permuted),
// round trips through the layer's writer, and refuses g_idx tensors it cannot read with clear errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "io/io_test_util.h"
#include "moefuse/threads.h"
#include "util/alloc_counter.h"
#include "layer/weights.h"
#include "moefuse/config.h"
#include "moefuse/error.h"
#include "moefuse/io.h"
#include "moefuse/layer.h"
#include "util/compare.h"
#include "util/configs.h"
#include "util/errors.h"
#include "util/gptq_folder.h"
#include "util/random.h"

namespace moefuse {
namespace {

using testing::GptqProjection;
using testing::Rng;
using testing::TempDirectory;

MoeConfig act_config(const std::string& preset, QuantMode mode, int64_t G, bool symmetric) {
  MoeConfig c = load_preset(preset);
  c.hidden_size = 256;
  c.moe_intermediate_size = 256;  // two groups of 128 in down's input too
  if (c.shared_expert_intermediate_size > 0) c.shared_expert_intermediate_size = 256;
  c.num_experts = std::min<int64_t>(c.num_experts, 8);
  c.n_group = std::min<int64_t>(c.n_group, 4);
  c.topk_group = std::min<int64_t>(c.topk_group, 2);
  c.num_experts_per_tok = std::min<int64_t>(c.num_experts_per_tok, 3);
  c.quant_mode = mode;
  c.quant_group_size = G;
  c.quant_symmetric = symmetric;
  validate(c, "test config");
  return c;
}

// A g_idx with every group holding G channels drawn at random from the whole input.
std::vector<int32_t> random_g_idx(Rng& rng, int64_t in, int64_t G) {
  std::vector<int32_t> channels(static_cast<size_t>(in));
  std::iota(channels.begin(), channels.end(), 0);
  for (int64_t k = in - 1; k > 0; --k) std::swap(channels[size_t(k)], channels[size_t(rng.integer(0, k))]);
  std::vector<int32_t> g(static_cast<size_t>(in));
  for (int64_t k = 0; k < in; ++k) g[size_t(channels[size_t(k)])] = int32_t(k / G);
  return g;
}

Tensor g_idx_tensor(const std::vector<int32_t>& g) {
  Tensor t = Tensor::empty(DType::i32, {int64_t(g.size())});
  std::copy(g.begin(), g.end(), t.data_as<int32_t>());
  return t;
}

// The input channels sorted stably by group (the order the layer reads an act-order projection in).
std::vector<int32_t> order_of(const std::vector<int32_t>& g) {
  std::vector<int32_t> o(g.size());
  std::iota(o.begin(), o.end(), 0);
  std::stable_sort(o.begin(), o.end(), [&](int32_t a, int32_t b) { return g[size_t(a)] < g[size_t(b)]; });
  return o;
}

struct ActProjection {
  GptqProjection p;
  std::vector<int32_t> g_idx;
};

// A layer-0 checkpoint of config c: the router (and bias, shared gate) of a random layer, every expert projection
// GPTQ tensors packed here, g_idx random per expert (gate and up one, down another).
struct ActCheckpoint {
  NamedTensors tensors;
  std::map<std::string, ActProjection> projections;  // by base ("...experts.3.gate_proj.")
};

bool is_down(const std::string& base) { return base.ends_with("down_proj.") || base.ends_with(".w2."); }
std::string expert_of(const std::string& base) { return base.substr(0, base.rfind('.', base.size() - 2) + 1); }

void replace(NamedTensors& tensors, const std::string& name, const Tensor& t) {
  for (auto& [n, v] : tensors)
    if (n == name) v = t;
}

// `input_g_idx(expert base)`, when given, chooses an expert's input g_idx (else random).
ActCheckpoint act_checkpoint(const MoeConfig& c, uint64_t seed,
                             const std::function<std::vector<int32_t>(const std::string&)>& input_g_idx = {}) {
  ActCheckpoint ck;
  ck.tensors = layer_checkpoint_tensors(c, MoeLayer::with_random_weights(c, seed).weights(), 0);
  Rng rng(seed + 1);
  const int64_t G = c.quant_group_size;
  std::map<std::string, std::vector<int32_t>> input, inner;  // by expert base
  std::vector<std::pair<std::string, Tensor>> qweights;
  for (const auto& [name, t] : ck.tensors)
    if (name.ends_with(".qweight")) qweights.emplace_back(name, t);
  for (const auto& [name, qw] : qweights) {
    const std::string base = name.substr(0, name.size() - std::string("qweight").size()), e = expert_of(base);
    const int64_t in = qw.size(0) * 8, out = qw.size(1);
    auto& g = is_down(base) ? inner[e] : input[e];
    if (g.empty()) g = !is_down(base) && input_g_idx ? input_g_idx(e) : random_g_idx(rng, in, G);
    ActProjection a{testing::random_projection(rng, out, in, G, c.quant_symmetric), g};
    replace(ck.tensors, base + "qweight", a.p.qweight());
    replace(ck.tensors, base + "qzeros", a.p.qzeros(false));
    replace(ck.tensors, base + "scales", a.p.scales());
    replace(ck.tensors, base + "g_idx", g_idx_tensor(g));
    ck.projections.emplace(base, std::move(a));
  }
  return ck;
}

MoeLayer load_layer(const MoeConfig& c, const NamedTensors& tensors, TempDirectory& dir, const std::string& name,
                    int threads = 2) {
  write_safetensors(dir.file(name), tensors);
  return MoeLayer::from_checkpoint(c, Checkpoint(dir.file(name)), 0, {.threads = threads});
}

// ---- GPTQ's dequantised weights, in double --------------------------------------------------------------------

using Vec = std::vector<double>;

// w[o, i] = (q[o, i] - z[g_idx[i], o]) * s[g_idx[i], o], times v.
Vec dequantised_matvec(const ActProjection& a, const Vec& v) {
  const GptqProjection& p = a.p;
  Vec y(static_cast<size_t>(p.out), 0.0);
  for (int64_t o = 0; o < p.out; ++o)
    for (int64_t i = 0; i < p.in; ++i) {
      const size_t gz = size_t(a.g_idx[size_t(i)] * p.out + o);
      y[size_t(o)] += double(p.q[size_t(o * p.in + i)] - p.z[gz]) * double(p.scale[gz]) * v[size_t(i)];
    }
  return y;
}

Vec expert_mlp(const ActCheckpoint& ck, const std::string& gate, const std::string& up, const std::string& down,
               const Vec& x) {
  const Vec g = dequantised_matvec(ck.projections.at(gate), x), u = dequantised_matvec(ck.projections.at(up), x);
  Vec a(g.size());
  for (size_t i = 0; i < g.size(); ++i) a[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
  return dequantised_matvec(ck.projections.at(down), a);
}

// Per token: cos(layer output, GPTQ's dequantised layer on the layer's own routing); the smallest.
double min_cosine_to_dequantised(const MoeConfig& c, const ActCheckpoint& ck, const Tensor& x, const Tensor& out,
                                 const LayerRouting& routing) {
  const int64_t T = x.size(0), H = c.hidden_size, K = c.num_experts_per_tok;
  const Tensor xf = x.to(DType::f32).contiguous(), of = out.to(DType::f32).contiguous();
  const Tensor idx = routing.topk_idx.contiguous(), wk = routing.topk_weight.to(DType::f32).contiguous();
  const std::string p = layer_checkpoint_prefix(c, 0);
  const layer::ProjectionNames pn = layer::projection_names(c);
  std::string shared;
  for (const auto& [base, a] : ck.projections)
    if (base.find(".shared_expert") != std::string::npos) shared = expert_of(base);
  double worst = 1.0;
  for (int64_t t = 0; t < T; ++t) {
    const Vec xt(xf.data_as<const float>() + t * H, xf.data_as<const float>() + (t + 1) * H);
    Vec y(static_cast<size_t>(H), 0.0);
    if (!shared.empty()) {
      const Vec s = expert_mlp(ck, shared + "gate_proj.", shared + "up_proj.", shared + "down_proj.", xt);
      double gate = 1.0;
      if (c.shared_expert_gated()) {
        Tensor wsg;
        for (const auto& [n, v] : ck.tensors)
          if (n == p + ".shared_expert_gate.weight") wsg = v.to(DType::f32).contiguous();
        double z = 0;
        for (int64_t h = 0; h < H; ++h) z += double(wsg.data_as<const float>()[h]) * xt[size_t(h)];
        gate = 1.0 / (1.0 + std::exp(-z));
      }
      for (int64_t h = 0; h < H; ++h) y[size_t(h)] += gate * s[size_t(h)];
    }
    for (int64_t k = 0; k < K; ++k) {
      const std::string e = p + ".experts." + std::to_string(idx.data_as<const int32_t>()[t * K + k]) + ".";
      const Vec ye = expert_mlp(ck, e + pn.gate + ".", e + pn.up + ".", e + pn.down + ".", xt);
      for (int64_t h = 0; h < H; ++h) y[size_t(h)] += double(wk.data_as<const float>()[t * K + k]) * ye[size_t(h)];
    }
    double ab = 0, aa = 0, bb = 0;
    for (int64_t h = 0; h < H; ++h) {
      const double u = of.data_as<const float>()[t * H + h], v = y[size_t(h)];
      ab += u * v;
      aa += u * u;
      bb += v * v;
    }
    worst = std::min(worst, ab / std::sqrt(aa * bb));
  }
  return worst;
}

// ---- the layer on act-order checkpoints --------------------------------------------------------------------------

struct Case {
  const char* preset;
  QuantMode mode;
  int64_t G;
  bool sym;
};

// Every path (prefill chain, fused decode), 1 and 2 threads, T = 1, 8, 130: bitwise the oracle on the weights read
// (which gathers x in each expert's order), and close to GPTQ's dequantised weights — with gate's and up's rows left
// in the checkpoint's order (down's order not followed) the smallest cosine was below 0.35 in every case.
TEST(GptqActOrder, EqualsTheOracleOnEveryPathAndStaysCloseToGptqsDequantisedWeights) {
  for (const Case& k :
       {Case{"qwen1.5-moe-a2.7b", QuantMode::w4a16, 32, false}, Case{"qwen1.5-moe-a2.7b", QuantMode::w4a8, 128, true},
        Case{"mixtral-8x7b", QuantMode::w4a16, 128, true}, Case{"mixtral-8x7b", QuantMode::w4a8, 32, false},
        Case{"deepseek-v2-lite", QuantMode::w4a16, 128, false}, Case{"deepseek-v2-lite", QuantMode::w4a8, 32, true}}) {
    SCOPED_TRACE(std::string(k.preset) + " " + std::string(quant_mode_name(k.mode)) + " G=" + std::to_string(k.G) +
                 (k.sym ? " sym" : " asym"));
    const MoeConfig c = act_config(k.preset, k.mode, k.G, k.sym);
    const ActCheckpoint ck = act_checkpoint(c, 11);
    TempDirectory dir;
    MoeLayer one = load_layer(c, ck.tensors, dir, "a.safetensors", 1),
             two = MoeLayer::from_checkpoint(c, Checkpoint(dir.file("a.safetensors")), 0, {.threads = 2});
    const LayerWeights w = two.weights();
    ASSERT_TRUE(w.w13_perm.defined());
    EXPECT_EQ(w.shared_w13_perm.defined(), c.shared_expert_width() > 0);
    for (int64_t T : {1, 8, 130}) {
      SCOPED_TRACE("T=" + std::to_string(T));
      const Tensor x = testing::layer_tokens(c, T, 30 + uint64_t(T));
      LayerRouting want_routing, routing;
      const Tensor want = reference_layer_forward(c, w, x, &want_routing);
      for (MoeLayer* layer : {&one, &two})
        for (bool prefill : {true, false}) {
          EXPECT_TENSOR_EQ(want, layer->forward(x, prefill, &routing)) << "prefill " << prefill;
          EXPECT_TENSOR_EQ(want_routing.topk_idx, routing.topk_idx);
        }
      const double cosine = min_cosine_to_dequantised(c, ck, x, want, want_routing);
      EXPECT_GE(cosine, k.mode == QuantMode::w4a16 ? 0.999 : 0.995);
    }
  }
}

// The equivalent checkpoint with consecutive groups: gate's and up's columns in the expert's input order and their
// rows in down's, down's columns in down's, g_idx i / G. With the router (and qwen2_moe's shared gate) zero, every
// token goes to the same experts with the same weights whatever its channel order, so the act-order layer on x is
// bitwise that layer on x's channels in the input order the routed experts (0..K-1) and the shared expert share.
TEST(GptqActOrder, IsBitwiseTheConsecutiveGroupCheckpointOnPermutedInputs) {
  for (const Case& k :
       {Case{"qwen1.5-moe-a2.7b", QuantMode::w4a16, 32, false}, Case{"mixtral-8x7b", QuantMode::w4a8, 128, true},
        Case{"olmoe-1b-7b", QuantMode::w4a16, 128, true}, Case{"qwen1.5-moe-a2.7b", QuantMode::w4a8, 32, false}}) {
    SCOPED_TRACE(std::string(k.preset) + " " + std::string(quant_mode_name(k.mode)) + " G=" + std::to_string(k.G));
    const MoeConfig c = act_config(k.preset, k.mode, k.G, k.sym);
    const int64_t H = c.hidden_size, G = c.quant_group_size;
    Rng rng(5);
    const std::vector<int32_t> common = random_g_idx(rng, H, G);
    const std::string p = layer_checkpoint_prefix(c, 0);
    auto routed_first = [&](const std::string& e) {
      for (int64_t i = 0; i < c.num_experts_per_tok; ++i)
        if (e == p + ".experts." + std::to_string(i) + ".") return common;
      return e.find(".experts.") != std::string::npos ? random_g_idx(rng, H, G) : common;
    };
    ActCheckpoint ck = act_checkpoint(c, 12, routed_first);
    for (auto& [n, t] : ck.tensors)
      if (n == p + ".gate.weight" || n == p + ".shared_expert_gate.weight") t = Tensor::zeros(t.dtype(), t.shape());
    // The same weights written with consecutive groups.
    NamedTensors plain = ck.tensors;
    for (const auto& [base, a] : ck.projections) {
      const std::string e = expert_of(base);
      const std::string down_base =
          is_down(base) ? base : e + (base.ends_with(".w1.") || base.ends_with(".w3.") ? "w2." : "down_proj.");
      const std::vector<int32_t> in_order = order_of(a.g_idx),
                                 rows = is_down(base) ? std::vector<int32_t>{}
                                                      : order_of(ck.projections.at(down_base).g_idx);
      GptqProjection q = a.p;
      for (int64_t o = 0; o < q.out; ++o) {
        const int64_t so = rows.empty() ? o : rows[size_t(o)];
        for (int64_t j = 0; j < q.in; ++j) q.q[size_t(o * q.in + j)] = a.p.q[size_t(so * q.in + in_order[size_t(j)])];
        for (int64_t g = 0; g < q.in / q.G; ++g) {
          q.z[size_t(g * q.out + o)] = a.p.z[size_t(g * q.out + so)];
          q.scale[size_t(g * q.out + o)] = a.p.scale[size_t(g * q.out + so)];
        }
      }
      replace(plain, base + "qweight", q.qweight());
      replace(plain, base + "qzeros", q.qzeros(false));
      replace(plain, base + "scales", q.scales());
      replace(plain, base + "g_idx", q.g_idx());
    }
    TempDirectory dir;
    MoeLayer act = load_layer(c, ck.tensors, dir, "act.safetensors"),
             consecutive = load_layer(c, plain, dir, "plain.safetensors");
    EXPECT_FALSE(consecutive.weights().w13_perm.defined());
    EXPECT_FALSE(consecutive.weights().shared_w13_perm.defined());
    const std::vector<int32_t> order = order_of(common);
    for (int64_t T : {1, 8, 130}) {
      const Tensor x = testing::layer_tokens(c, T, 50 + uint64_t(T)).contiguous();
      Tensor xp = Tensor::empty(c.dtype, {T, H});
      const size_t es = dtype_size(c.dtype);
      for (int64_t t = 0; t < T; ++t)
        for (int64_t j = 0; j < H; ++j)
          std::memcpy(static_cast<std::byte*>(xp.data()) + (t * H + j) * int64_t(es),
                      static_cast<const std::byte*>(x.data()) + (t * H + order[size_t(j)]) * int64_t(es), es);
      for (bool prefill : {true, false})
        EXPECT_TENSOR_EQ(act.forward(x, prefill), consecutive.forward(xp, prefill)) << "T=" << T << " " << prefill;
    }
  }
}

// The layer's writer keeps act order (each w13 column written as its input channel, g_idx from the order): the
// same weights, orders and output read back.
TEST(GptqActOrder, RoundTripsThroughTheLayersWriter) {
  const MoeConfig c = act_config("qwen1.5-moe-a2.7b", QuantMode::w4a16, 32, false);
  TempDirectory dir;
  MoeLayer a = load_layer(c, act_checkpoint(c, 13).tensors, dir, "a.safetensors");
  MoeLayer b = load_layer(c, layer_checkpoint_tensors(c, a.weights(), 0), dir, "b.safetensors");
  const LayerWeights wa = a.weights(), wb = b.weights();
  for (Tensor LayerWeights::*m :
       {&LayerWeights::w13, &LayerWeights::w13_scale, &LayerWeights::w13_zero, &LayerWeights::w2,
        &LayerWeights::w2_scale, &LayerWeights::w2_zero, &LayerWeights::w13_perm, &LayerWeights::shared_w13,
        &LayerWeights::shared_w13_perm, &LayerWeights::shared_w2})
    EXPECT_TENSOR_EQ(wa.*m, wb.*m);
  const Tensor x = testing::layer_tokens(c, 7, 3);
  EXPECT_TENSOR_EQ(a.forward(x), b.forward(x));
}

TEST(GptqActOrder, RefusesGIdxItCannotReadWithClearErrors) {
  const MoeConfig c = act_config("olmoe-1b-7b", QuantMode::w4a16, 32, false);
  const ActCheckpoint ck = act_checkpoint(c, 14);
  const std::string e1 = layer_checkpoint_prefix(c, 0) + ".experts.1.";
  const std::vector<int32_t> g = ck.projections.at(e1 + "gate_proj.").g_idx;
  auto load_with = [&](const std::string& name, const Tensor& t) {
    NamedTensors tensors = ck.tensors;
    replace(tensors, name, t);
    TempDirectory dir;
    return load_layer(c, tensors, dir, "m.safetensors");
  };
  // Gate and up in other groups: two channels of up's g_idx swapped between groups.
  std::vector<int32_t> up = g;
  const int64_t i0 = std::find(up.begin(), up.end(), 0) - up.begin(),
                i1 = std::find(up.begin(), up.end(), 1) - up.begin();
  std::swap(up[size_t(i0)], up[size_t(i1)]);
  const int64_t first = std::min(i0, i1);
  EXPECT_THROWS_MSG(load_with(e1 + "up_proj.g_idx", g_idx_tensor(up)), ValueError,
                    e1 + "gate_proj.g_idx and " + e1 + "up_proj.g_idx: expected the same groups",
                    "got g_idx[" + std::to_string(first) + "] = " + std::to_string(g[size_t(first)]) + " and " +
                        std::to_string(up[size_t(first)]));
  // A group of 33 channels (and one of 31).
  std::vector<int32_t> big = g;
  big[size_t(i1)] = 0;
  EXPECT_THROWS_MSG(load_with(e1 + "gate_proj.g_idx", g_idx_tensor(big)), ValueError,
                    "m.safetensors: " + e1 +
                        "gate_proj.g_idx: expected 32 input channels in each group (group size 32), got 33 in group 0");
  // A group past in / G.
  std::vector<int32_t> far = g;
  far[5] = 8;
  EXPECT_THROWS_MSG(load_with(e1 + "gate_proj.g_idx", g_idx_tensor(far)), ValueError, e1 + "gate_proj.g_idx",
                    "expected groups 0..7 (H / 32 groups), got g_idx[5] = 8");
  far[5] = -1;
  EXPECT_THROWS_MSG(load_with(e1 + "gate_proj.g_idx", g_idx_tensor(far)), ValueError, "got g_idx[5] = -1");
  // Shape and dtype.
  EXPECT_THROWS_MSG(load_with(e1 + "up_proj.g_idx", Tensor::zeros(DType::i32, {255})), ValueError,
                    e1 + "up_proj.g_idx: expected an i32 tensor of shape [H] = [256]", "[255]");
  EXPECT_THROWS_MSG(load_with(e1 + "down_proj.g_idx", Tensor::zeros(DType::i64, {256})), ValueError,
                    e1 + "down_proj.g_idx: expected an i32 tensor of shape [I] = [256]", "i64");
  // A float up (quantised on load, in the checkpoint's order) beside a permuted gate (no quantize_config here, so a
  // float projection is allowed): the order could not be followed.
  NamedTensors mixed;
  for (const auto& [n, t] : ck.tensors)
    if (n.rfind(e1 + "up_proj.", 0) != 0) mixed.emplace_back(n, t);
  mixed.emplace_back(e1 + "up_proj.weight", Rng(3).normal_tensor(c.dtype, {c.moe_intermediate_size, c.hidden_size}));
  TempDirectory dir;
  EXPECT_THROWS_MSG(load_layer(c, mixed, dir, "mixed.safetensors"), ValueError,
                    "mixed.safetensors: " + e1 + "gate_proj.g_idx: expected the g_idx i / G",
                    "(act order needs gate and up both as GPTQ tensors)",
                    "got a permuted g_idx with " + e1 + "up_proj.weight a float tensor");
}

// Input orders given to the constructor: a permutation per row, ascending within each group, int4 chains only.
TEST(GptqActOrder, TheConstructorChecksInputOrders) {
  const MoeConfig c = act_config("olmoe-1b-7b", QuantMode::w4a8, 32, true);
  LayerWeights w = MoeLayer::with_random_weights(c, 2).weights();
  Tensor perm = Tensor::empty(DType::i32, {c.num_experts, c.hidden_size});
  for (int64_t e = 0; e < c.num_experts; ++e)
    for (int64_t j = 0; j < c.hidden_size; ++j)  // group j / 32 holds channels j % 32 * 8 + j / 32: every eighth
      perm.data_as<int32_t>()[e * c.hidden_size + j] = int32_t((j % 32) * 8 + j / 32);
  w.w13_perm = perm;
  MoeLayer layer(c, w, {.threads = 2});
  const Tensor x = testing::layer_tokens(c, 9, 4);
  EXPECT_TENSOR_EQ(reference_layer_forward(c, w, x), layer.forward(x, false));
  EXPECT_TENSOR_EQ(reference_layer_forward(c, w, x), layer.forward(x, true));
  Tensor bad = perm.clone();
  std::swap(bad.data_as<int32_t>()[3], bad.data_as<int32_t>()[4]);  // descending within group 0
  w.w13_perm = bad;
  EXPECT_THROWS_MSG(MoeLayer(c, w), ValueError, "w13_perm", "ascending within each group of 32", "[0, 4] = 24");
  bad = perm.clone();
  bad.data_as<int32_t>()[40] = 8;  // channel 8 twice
  w.w13_perm = bad;
  EXPECT_THROWS_MSG(MoeLayer(c, w), ValueError, "w13_perm", "a permutation of 0..255", "[0, 40] = 8");
  w.w13_perm = perm;
  w.shared_w13_perm = Tensor::zeros(DType::i32, {1, c.hidden_size});
  EXPECT_THROWS_MSG(MoeLayer(c, w), ValueError, "shared_w13_perm", "no shared expert");
}

// The gathers copy through per-thread scratch rows: graph mode's steady-state forward still allocates nothing
// (docs/layer.md §2), on the chain and the fused path, with a shared expert.
TEST(GptqActOrder, GraphModeSteadyStateForwardAllocatesNothing) {
  set_num_threads(1);  // as LayerAllocation: the warm-up then sizes every scratch slot
  for (QuantMode q : {QuantMode::w4a16, QuantMode::w4a8}) {
    MoeConfig c = testing::shrunk_preset("qwen1.5-moe-a2.7b", DType::bf16, q, 64, 32, 32);
    c.quant_group_size = 32;
    c.exe_mode = ExeMode::ge_graph;
    c.moe_chunk_max_len = 16;
    validate(c, "test config");
    LayerWeights w = MoeLayer::with_random_weights(c, 3, {.threads = 1}).weights();
    Rng rng(8);
    auto orders = [&](int64_t n) {
      Tensor t = Tensor::empty(DType::i32, {n, c.hidden_size});
      for (int64_t e = 0; e < n; ++e) {
        const std::vector<int32_t> o = order_of(random_g_idx(rng, c.hidden_size, c.quant_group_size));
        std::copy(o.begin(), o.end(), t.data_as<int32_t>() + e * c.hidden_size);
      }
      return t;
    };
    w.w13_perm = orders(c.num_experts);
    w.shared_w13_perm = orders(1);
    MoeLayer layer(c, w, {.threads = 1});
    const Tensor x = testing::layer_tokens(c, 40, 4);  // three chunks of at most 16
    Tensor out = Tensor::empty(c.dtype, {40, 64}), out_small = Tensor::empty(c.dtype, {3, 64});
    layer.forward_out(x, true, out);  // plans
    layer.forward_out(x.narrow(0, 0, 3), false, out_small);
    {
      testing::AllocationCounter counter;
      layer.forward_out(x, true, out);
      layer.forward_out(x.narrow(0, 0, 3), false, out_small);
      EXPECT_EQ(counter.count(), 0u) << quant_mode_name(q);
    }
    EXPECT_EQ(layer.path(), "superkernel");
    EXPECT_TENSOR_EQ(reference_layer_forward(c, w, x), out);
  }
  set_num_threads(0);
}

}  // namespace
}  // namespace moefuse
