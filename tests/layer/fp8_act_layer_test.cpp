// The FP8-activation chain (config fp8_activations: dynamic_1x128; docs/layer.md §7, "FP8 activations") against an
// oracle written here in plain loops from the definition — each token's row quantised per 128 input channels with
// the layer's e4m3 encoder, each block's dot product summed as an exact integer (e4m3 * 2^9 is an integer), the
// block scales applied in the definition's order — on the FP8 codes and scales themselves (nothing dequantised), with
// SwiGLU and the combine as the float chain rounds them; bitwise, for deepseek_v3 (a shared expert) and qwen3_moe,
// prefill and decode, 1 and 2 threads. Also: the cosine against the bf16-activation FP8 layer on the same weights,
// the decode path's reason, the kernel name, and the errors of the key.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "base/thread_pool.h"
#include "kernels/gemm/gemm.h"
#include "layer/fp8_weights.h"
#include "layer/weights.h"
#include "moefuse/config.h"
#include "moefuse/error.h"
#include "moefuse/layer.h"
#include "oracle/exp_f32.h"
#include "util/alloc_counter.h"
#include "util/compare.h"
#include "util/configs.h"
#include "util/errors.h"
#include "util/fp8_checkpoint.h"

namespace moefuse {
namespace {

using Vec = std::vector<float>;

MoeConfig fp8_act_config(const std::string& preset, int64_t H, int64_t I) {
  MoeConfig c = testing::shrunk_preset(preset, DType::bf16, QuantMode::none, H, I, I);
  c.num_experts = std::min<int64_t>(c.num_experts, 16);
  c.n_group = std::min<int64_t>(c.n_group, 4);
  c.topk_group = std::min<int64_t>(c.topk_group, 2);
  c.num_experts_per_tok = std::min<int64_t>(c.num_experts_per_tok, 4);
  c.fp8_activations = Fp8Activations::dynamic_1x128;
  validate(c, "test config");
  return c;
}

float round_bf16(float v) { return to_f32(to_bf16(v)); }

// out[r] for r < rows of projection (codes q [rows, in] at byte offset q0, scales [rows, ceil(in / 128)] at s0),
// rounded to bf16.
Vec project(const Tensor& q, int64_t q0, const Tensor& scale, int64_t s0, int64_t rows, int64_t in, const Vec& x) {
  std::vector<uint8_t> xa;
  Vec xs;
  testing::quantise_fp8_act_by_definition(x, xa, xs);
  const int64_t kb = (in + 127) / 128;
  auto fixed = [](uint8_t c) { return int64_t(std::ldexp(double(testing::e4m3_by_definition(c)), 9)); };
  Vec out(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    float acc = 0.0f;
    for (int64_t g = 0; g < kb; ++g) {
      int64_t sum = 0;
      for (int64_t k = g * 128; k < std::min(in, g * 128 + 128); ++k)
        sum += fixed(xa[size_t(k)]) * fixed(q.data_as<uint8_t>()[q0 + r * in + k]);
      const float d = float(std::ldexp(double(sum), -18));
      acc = acc + (d * xs[size_t(g)]) * scale.data_as<float>()[s0 + r * kb + g];
    }
    out[size_t(r)] = round_bf16(acc);
  }
  return out;
}

// One expert's MLP (codes in the FP8 form of layer/weights.h): h, SwiGLU, y, each rounded to bf16.
Vec mlp(const Tensor& w13, const Tensor& s13, const Tensor& w2, const Tensor& s2, int64_t e, int64_t W, int64_t H,
        const Vec& x) {
  const Vec h = project(w13, e * 2 * W * H, s13, e * 2 * W * ((H + 127) / 128), 2 * W, H, x);
  Vec a(static_cast<size_t>(W));
  for (int64_t i = 0; i < W; ++i) {
    const float g = h[size_t(i)];
    a[size_t(i)] = round_bf16(g / (1.0f + oracle::exp_f32(-g)) * h[size_t(W + i)]);
  }
  return project(w2, e * H * W, s2, e * H * ((W + 127) / 128), H, W, a);
}

// The layer's output for x, given its routing (which FP8 activations do not touch: the router is bf16).
Tensor oracle_forward(const MoeConfig& c, const LayerWeights& w, const Tensor& x, const LayerRouting& routing) {
  const int64_t T = x.size(0), H = c.hidden_size, K = c.num_experts_per_tok, I = c.moe_intermediate_size;
  const int64_t Is = c.shared_expert_width();
  Tensor out = Tensor::empty(DType::bf16, {T, H});
  const Tensor idx = routing.topk_idx.contiguous(), wt = routing.topk_weight.to(DType::f32).contiguous();
  for (int64_t t = 0; t < T; ++t) {
    Vec xt(static_cast<size_t>(H));
    for (int64_t h = 0; h < H; ++h) xt[size_t(h)] = to_f32(x.data_as<bfloat16>()[t * H + h]);
    Vec acc(static_cast<size_t>(H), 0.0f);
    bool started = false;
    if (Is > 0) {
      acc = mlp(w.shared_w13, w.shared_w13_scale, w.shared_w2, w.shared_w2_scale, 0, Is, H, xt);
      started = true;
    }
    for (int64_t k = 0; k < K; ++k) {
      const int64_t e = idx.data_as<int32_t>()[t * K + k];
      const float wk = wt.data_as<float>()[t * K + k];
      const Vec y = mlp(w.w13, w.w13_scale, w.w2, w.w2_scale, e, I, H, xt);
      for (int64_t h = 0; h < H; ++h) acc[size_t(h)] = started ? acc[size_t(h)] + wk * y[size_t(h)] : wk * y[size_t(h)];
      started = true;
    }
    for (int64_t h = 0; h < H; ++h) out.data_as<bfloat16>()[t * H + h] = to_bf16(acc[size_t(h)]);
  }
  return out;
}

struct Case {
  const char* preset;
  int64_t H, I;
};

// H and I off the 128 grid (partial K blocks in both projections) and on it.
const Case kCases[] = {{"deepseek-v3", 192, 96}, {"qwen3-30b-a3b", 160, 64}, {"deepseek-v3", 256, 128},
                       {"qwen3-30b-a3b", 128, 288}};

class Fp8ActLayer : public ::testing::TestWithParam<Case> {};

TEST_P(Fp8ActLayer, EqualsThePlainLoopOracleBitwise) {
  const Case& k = GetParam();
  const MoeConfig c = fp8_act_config(k.preset, k.H, k.I);
  MoeConfig cb = c;
  cb.fp8_activations = Fp8Activations::none;
  ThreadPool pool(1);
  const LayerWeights w = layer::random_fp8_weights(c, 7, pool);  // the codes and scales with_random_fp8_weights holds
  for (int threads : {1, 2}) {
    MoeLayer layer = MoeLayer::with_random_fp8_weights(c, 7, {.threads = threads});
    MoeLayer bf16a = MoeLayer::with_random_fp8_weights(cb, 7, {.threads = threads});
    ASSERT_EQ(layer.weights().w13.dtype(), DType::bf16);
    EXPECT_TENSOR_EQ(layer.weights().w13, bf16a.weights().w13);  // the same weights either way
    for (int64_t T : {1, 5, 33}) {
      const Tensor x = testing::layer_tokens(c, T, 100 + uint64_t(T));
      LayerRouting routing, want_routing;
      const Tensor want_bf16a = reference_layer_forward(cb, bf16a.weights(), x, &want_routing);
      for (bool prefill : {true, false}) {
        const Tensor y = layer.forward(x, prefill, &routing);
        EXPECT_TENSOR_EQ(want_routing.topk_idx, routing.topk_idx);
        EXPECT_TENSOR_EQ(oracle_forward(c, w, x, routing), y)
            << k.preset << " T=" << T << " threads=" << threads << " prefill=" << prefill;
        EXPECT_EQ(layer.path(), prefill ? "chain" : "chain: fp8 activations (dynamic_1x128) run on the operator chain");
        const double cos = testing::min_token_cosine(y, want_bf16a);
        EXPECT_GE(cos, 0.99) << k.preset << " T=" << T;
        if (threads == 1 && prefill)
          std::printf("[ cosine ] %s H=%lld I=%lld T=%lld: min per-token cosine vs bf16 activations %.5f\n", k.preset,
                      (long long)k.H, (long long)k.I, (long long)T, cos);
      }
    }
    EXPECT_NE(layer.kernel().find("gemm_fp8a_fp8w_f32"), std::string::npos) << layer.kernel();
  }
}

INSTANTIATE_TEST_SUITE_P(Families, Fp8ActLayer, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& i) {
                           std::string n = std::string(i.param.preset) + "_H" + std::to_string(i.param.H) + "_I" +
                                           std::to_string(i.param.I);
                           for (char& ch : n)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

TEST(Fp8ActLayer, ChunkingAndGraphModeKeepTheBits) {
  MoeConfig c = fp8_act_config("deepseek-v3", 192, 96);
  MoeLayer a = MoeLayer::with_random_fp8_weights(c, 3, {.threads = 2});
  c.moe_chunk_max_len = 3;
  c.exe_mode = ExeMode::eager;
  MoeLayer b = MoeLayer::with_random_fp8_weights(c, 3, {.threads = 1});
  const Tensor x = testing::layer_tokens(c, 11, 5);
  EXPECT_TENSOR_EQ(a.forward(x, true), b.forward(x, true));
  EXPECT_TENSOR_EQ(a.forward(x, false), a.forward(x, true));
}

// Graph mode on one thread: after a warm-up of each kind, forwards allocate nothing (docs/layer.md §2).
TEST(Fp8ActLayer, GraphModeForwardsAllocateNothing) {
  MoeConfig c = fp8_act_config("deepseek-v3", 192, 96);
  c.moe_chunk_max_len = 16;
  MoeLayer layer = MoeLayer::with_random_fp8_weights(c, 3, {.threads = 1});
  const Tensor x = testing::layer_tokens(c, 40, 4);
  Tensor out = Tensor::empty(c.dtype, {40, c.hidden_size}), out_small = Tensor::empty(c.dtype, {3, c.hidden_size});
  layer.forward_out(x, true, out);
  layer.forward_out(x.narrow(0, 0, 3), false, out_small);
  testing::AllocationCounter counter;
  layer.forward_out(x, true, out);
  layer.forward_out(x.narrow(0, 0, 3), false, out_small);
  EXPECT_EQ(counter.count(), 0u);
}

TEST(Fp8ActLayer, ConfigKeyRoundTripsAndErrors) {
  MoeConfig c = fp8_act_config("qwen3-30b-a3b", 128, 64);
  const std::string y = to_yaml(c);
  EXPECT_NE(y.find("  fp8_activations: dynamic_1x128\n"), std::string::npos) << y;
  EXPECT_EQ(parse_config_yaml(y, "y"), c);
  MoeConfig none = c;
  none.fp8_activations = Fp8Activations::none;
  EXPECT_EQ(to_yaml(none).find("fp8_activations"), std::string::npos);  // the default is not written
  std::string bad = y;
  bad.replace(bad.find("dynamic_1x128"), 13, "dynamic_1x64");
  EXPECT_THROWS_MSG(parse_config_yaml(bad, "my.yaml"), ValueError, "my.yaml", "model_config.fp8_activations",
                    "none", "dynamic_1x128", "dynamic_1x64");
  MoeConfig f16 = c;
  f16.dtype = DType::f16;
  EXPECT_THROWS_MSG(validate(f16, "cfg"), ValueError, "cfg", "fp8_activations", "none with dtype f16",
                    "got dynamic_1x128");
  MoeConfig w8 = c;
  w8.quant_mode = QuantMode::w8a8;
  EXPECT_THROWS_MSG(validate(w8, "cfg"), ValueError, "fp8_activations", "quant_mode w8a8", "got dynamic_1x128");
  // A layer whose expert weights are not FP8 held one byte.
  EXPECT_THROWS_MSG(MoeLayer::with_random_weights(c, 1), ValueError, "MoeLayer", "fp8_activations",
                    "expected none for expert weights that are not FP8", "got dynamic_1x128 with w13 of dtype bf16");
  MoeConfig plain = c;
  plain.fp8_activations = Fp8Activations::none;
  const LayerWeights w = MoeLayer::with_random_fp8_weights(plain, 1).weights();  // bf16 weights
  EXPECT_THROWS_MSG(MoeLayer(c, w), ValueError, "fp8_activations", "got dynamic_1x128 with w13 of dtype bf16");
  // The layer oracle computes the bf16-activation chain only: it refuses the key rather than disagree.
  EXPECT_THROWS_MSG(reference_layer_forward(c, w, testing::layer_tokens(c, 2, 1)), ValueError,
                    "reference_layer_forward", "fp8_activations", "expected none", "got dynamic_1x128");
}

}  // namespace
}  // namespace moefuse
