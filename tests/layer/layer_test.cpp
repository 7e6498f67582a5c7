// The MoE layer against an independent per-expert reference (hf_reference.h), the scalar reference chain, its own
// execution options, checkpoints, and every error it documents.
// Over 500 lines: every family x dtype x chain against one reference, and each documented layer error.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include "kernels/gemm/gemm.h"
#include "layer/chain.h"
#include "layer/hf_reference.h"
#include "layer/weights.h"
#include "moefuse/config.h"
#include "moefuse/cpu.h"
#include "moefuse/error.h"
#include "moefuse/io.h"
#include "moefuse/layer.h"
#include "util/compare.h"
#include "util/configs.h"
#include "util/errors.h"
#include "util/random.h"

namespace moefuse {
namespace {

using testing::hf_moe_forward;
using testing::Rng;
using testing::min_token_cosine;

// A preset shrunk to test size: its routing (E, K, groups, scoring, shared experts) kept, H = 64, I = 32.
MoeConfig small(const std::string& preset, DType dtype, QuantMode quant = QuantMode::none) {
  MoeConfig c = testing::shrunk_preset(preset, dtype, quant);
  validate(c, "test config");
  return c;
}

const auto& kPresets = testing::kPresetNames;

Tensor tokens(const MoeConfig& c, int64_t T, uint64_t seed) { return testing::layer_tokens(c, T, seed); }

struct Case {
  std::string preset;
  DType dtype;
  QuantMode quant;
};

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  std::string n = info.param.preset + "_" + std::string(dtype_name(info.param.dtype)) + "_" +
                  std::string(quant_mode_name(info.param.quant));
  for (char& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
}

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  for (const char* p : kPresets) {
    for (DType d : {DType::f32, DType::bf16, DType::f16}) cases.push_back({p, d, QuantMode::none});
    cases.push_back({p, DType::bf16, QuantMode::w8a8});
    cases.push_back({p, DType::f16, QuantMode::w8a8});
    cases.push_back({p, DType::bf16, QuantMode::w8a8c8});
  }
  return cases;
}

class LayerFamilies : public ::testing::TestWithParam<Case> {};

// Every family, dtype and quantised chain: the layer equals the per-expert reference bit for bit (both follow the
// rounding points of docs/layer.md §1), and so does the operator chain run on the scalar references of src/reference;
// the layer's routing (indices and combine weights) is the reference's.
TEST_P(LayerFamilies, MatchesPerExpertReferenceExactly) {
  const Case& k = GetParam();
  MoeConfig c = small(k.preset, k.dtype, k.quant);
  MoeLayer layer = MoeLayer::with_random_weights(c, 7, {.threads = 2});
  Tensor x = tokens(c, 9, 11);
  LayerRouting expected_routing;
  Tensor expected = reference_layer_forward(c, layer.weights(), x, &expected_routing);
  LayerRouting routing;
  EXPECT_TENSOR_EQ(expected, layer.forward(x, true, &routing));
  EXPECT_TENSOR_EQ(expected_routing.topk_idx, routing.topk_idx);
  EXPECT_TENSOR_EQ(expected_routing.topk_weight, routing.topk_weight);
  EXPECT_TENSOR_EQ(expected, layer.forward(x, false, &routing));
  EXPECT_TENSOR_EQ(expected_routing.topk_idx, routing.topk_idx);
  EXPECT_TENSOR_EQ(expected_routing.topk_weight, routing.topk_weight);

  layer::ChainBuffers buffers = layer::plan_chain_buffers(c, x.size(0));
  Tensor chain_out = Tensor::empty(c.dtype, {x.size(0), c.hidden_size});
  layer::run_chain(layer::reference_chain_ops(), c, layer.weights(), nullptr, x, chain_out, buffers, nullptr);
  EXPECT_TENSOR_EQ(expected, chain_out);
}

// The fused decode path (enable_superkernel, is_prefill false) against the same reference: every family, dtype and
// chain (w8a8c8 with clip factors below 1), the shared expert widened to 64 (the fused path needs widths that are multiples of
// 32), smooth scales on the quantised chains, several thread counts and batch sizes.
TEST_P(LayerFamilies, FusedDecodeMatchesThePerExpertReferenceExactly) {
  const Case& k = GetParam();
  MoeConfig c = small(k.preset, k.dtype, k.quant);
  if (c.shared_expert_intermediate_size > 0) c.shared_expert_intermediate_size = 64;
  LayerWeights w = MoeLayer::with_random_weights(c, 7).weights();
  Rng rng(5);
  if (c.quant_mode != QuantMode::none) {
    w.smooth_scale1 = rng.uniform_tensor(DType::f32, {c.num_experts, c.hidden_size}, 0.5f, 2.0f);
    if (c.quant_mode == QuantMode::w8a8)
      w.smooth_scale2 = rng.uniform_tensor(DType::f32, {c.num_experts, c.moe_intermediate_size}, 0.5f, 2.0f);
    // w8a8c8: clip factors below 1 (they clip the largest SwiGLU values of each row), and one expert's 0.
    if (c.quant_mode == QuantMode::w8a8c8) {
      w.clip_alpha = rng.uniform_tensor(DType::f32, {c.num_experts}, 0.3f, 1.0f);
      w.clip_alpha.data_as<float>()[1] = 0.0f;
    }
  }
  for (int threads : {1, 2, 3}) {
    MoeLayer layer(c, w, {.threads = threads});
    for (int64_t T : {1, 9, 40}) {
      Tensor x = tokens(c, T, 11 + uint64_t(T));
      EXPECT_TENSOR_EQ(hf_moe_forward(c, w, x), layer.forward(x)) << "threads " << threads << " T " << T;
      EXPECT_EQ(layer.path(), "superkernel");
    }
  }
  // Without smooth scales w8a8 quantises each token once for all its experts: the other branch of the fused path.
  w.smooth_scale1 = Tensor{};
  MoeLayer layer(c, w, {.threads = 2});
  Tensor x = tokens(c, 9, 3);
  EXPECT_TENSOR_EQ(hf_moe_forward(c, w, x), layer.forward(x));
}

INSTANTIATE_TEST_SUITE_P(AllChains, LayerFamilies, ::testing::ValuesIn(all_cases()), case_name);

TEST(Layer, RouterLogitsInModelDtypeAndClipFactorsFollowTheReference) {
  MoeConfig c = small("deepseek-v3", DType::bf16, QuantMode::w8a8c8);
  c.router_logits_dtype = RouterLogitsDtype::model;
  LayerWeights w = MoeLayer::with_random_weights(c, 3).weights();
  for (int64_t e = 0; e < c.num_experts; ++e) w.clip_alpha.data_as<float>()[e] = e % 2 ? 0.25f : 1.0f;
  MoeLayer layer(c, w);
  Tensor x = tokens(c, 5, 4);
  EXPECT_TENSOR_EQ(hf_moe_forward(c, layer.weights(), x), layer.forward(x));
}

// The oracle stays independent: its files (src/oracle) include the public headers, the standard library, the
// argument checks (base/check.h, layer/weights.h's validate_weights) and each other only — no operator, reference,
// kernel, router or pool header, and not base/bf16_dot.h (the oracle states the bf16 step itself, oracle/bf16_step.h).
TEST(Layer, TheOracleIncludesNoComputeCodeOfTheLibrary) {
  const std::filesystem::path folder = std::filesystem::path(MOEFUSE_SOURCE_DIR) / "src/oracle";
  int project_includes = 0;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    std::ifstream src(entry.path());
    ASSERT_TRUE(src.good()) << entry.path();
    std::string line;
    while (std::getline(src, line)) {
      if (line.rfind("#include \"", 0) != 0) continue;
      ++project_includes;
      const std::string header = line.substr(10, line.find('"', 10) - 10);
      EXPECT_TRUE(header.rfind("moefuse/", 0) == 0 || header.rfind("oracle/", 0) == 0 || header == "base/check.h" ||
                  header == "layer/weights.h")
          << entry.path().filename() << " includes " << header;
    }
  }
  EXPECT_GT(project_includes, 0);
}

// forward()'s routing covers every token whichever way the forward was cut: chunks, shares of tokens per thread
// (chain), the fused path.
TEST(Layer, AForwardsRoutingIsTheOraclesForAnyChunkingAndThreads) {
  MoeConfig c = small("deepseek-v3", DType::bf16);
  c.moe_chunk_max_len = 300;
  LayerWeights w = MoeLayer::with_random_weights(c, 5).weights();
  Tensor x = tokens(c, 700, 9);
  LayerRouting expected;
  reference_layer_forward(c, w, x, &expected);
  for (int threads : {1, 2}) {  // 2 threads: 300-token chunks run as two shares of 150
    MoeLayer layer(c, w, {.threads = threads});
    for (bool prefill : {true, false}) {
      LayerRouting got;
      layer.forward(x, prefill, &got);
      EXPECT_TENSOR_EQ(expected.topk_idx, got.topk_idx) << "threads " << threads << " prefill " << prefill;
      EXPECT_TENSOR_EQ(expected.topk_weight, got.topk_weight);
    }
  }
}

// Chunking, graph vs eager, the thread count and the prefill flag change no bit; graph mode reuses its plan for
// smaller batches and re-plans for larger ones.
TEST(Layer, ExecutionOptionsDoNotChangeTheOutput) {
  for (QuantMode q : {QuantMode::none, QuantMode::w8a8}) {
    MoeConfig base = small("qwen1.5-moe-a2.7b", DType::bf16, q);
    base.moe_chunk_max_len = 1024;
    LayerWeights w = MoeLayer::with_random_weights(base, 5).weights();
    // 400 tokens: chunks of 256 tokens or more are split between 2 threads, of 384 or more between 3; smaller
    // ones run as one part with the grouped matmuls' tasks spread over the threads (moe_layer.cpp).
    Tensor x = tokens(base, 400, 8);
    Tensor expected = MoeLayer(base, w, {.threads = 1}).forward(x, true);
    for (ExeMode mode : {ExeMode::eager, ExeMode::ge_graph})
      for (int64_t chunk : {1, 23, 300, 1024})
        for (int threads : {1, 2, 3}) {
          MoeConfig c = base;
          c.exe_mode = mode;
          c.moe_chunk_max_len = chunk;
          MoeLayer layer(c, w, {.threads = threads});
          EXPECT_TENSOR_EQ(expected, layer.forward(x, true)) << "chunk " << chunk << " threads " << threads;
          EXPECT_TENSOR_EQ(expected, layer.forward(x, false));
          EXPECT_TENSOR_EQ(expected.narrow(0, 3, 5), layer.forward(x.narrow(0, 3, 5)));  // smaller batch
          EXPECT_EQ(layer.last_timings().tokens, 5);
        }
  }
}

TEST(Layer, WeightsComeBackBitwiseFromThePackedCopy) {
  for (QuantMode q : {QuantMode::none, QuantMode::w8a8, QuantMode::w8a8c8}) {
    MoeConfig c = small("qwen1.5-moe-a2.7b", DType::bf16, q);  // with a gated shared expert
    const LayerWeights w = MoeLayer::with_random_weights(c, 4).weights();
    const LayerWeights back = MoeLayer(c, w).weights();
    EXPECT_TENSOR_EQ(w.w13, back.w13);
    EXPECT_TENSOR_EQ(w.w2, back.w2);
    EXPECT_TENSOR_EQ(w.shared_w13, back.shared_w13);
    EXPECT_TENSOR_EQ(w.shared_w2, back.shared_w2);
    EXPECT_TENSOR_EQ(w.router, back.router);
    EXPECT_TENSOR_EQ(w.shared_gate, back.shared_gate);
    if (q != QuantMode::none) {
      EXPECT_TENSOR_EQ(w.w13_scale, back.w13_scale);
    }
  }
}

TEST(Layer, CountsTheWeightBytesEachChunkReads) {
  MoeConfig c = small("olmoe-1b-7b", DType::bf16);  // E 64, K 8, H 64, I 32, no shared expert
  const int64_t router = 64 * 64 * 2, expert = 3 * 32 * 64 * 2;
  MoeLayer one = MoeLayer::with_random_weights(c, 1);
  one.forward(tokens(c, 1, 2));
  EXPECT_EQ(one.last_timings().active_experts, 8);
  EXPECT_EQ(one.last_timings().weight_bytes, router + 8 * expert);
  c.moe_chunk_max_len = 1;  // three chunks of one token: each reads the router and its own 8 experts
  MoeLayer chunked = MoeLayer::with_random_weights(c, 1);
  chunked.forward(tokens(c, 3, 2));
  EXPECT_EQ(chunked.last_timings().active_experts, 24);
  EXPECT_EQ(chunked.last_timings().weight_bytes, 3 * router + 24 * expert);
  // w8a8: per expert, the int8 projections plus the fp32 scales, smooth scales and clip factor the chain reads.
  MoeConfig q = small("olmoe-1b-7b", DType::bf16, QuantMode::w8a8);
  MoeLayer quant = MoeLayer::with_random_weights(q, 1);
  quant.forward(tokens(q, 1, 2));
  const LayerWeights w = quant.weights();
  int64_t per_expert = 3 * 32 * 64 + (2 * 32 + 64) * 4;
  if (w.smooth_scale1.defined()) per_expert += 64 * 4;
  if (w.smooth_scale2.defined()) per_expert += 32 * 4;
  if (w.clip_alpha.defined()) per_expert += 4;
  EXPECT_EQ(quant.last_timings().weight_bytes, router + 8 * per_expert);
}

// A prefill chunk split between threads: each thread runs the chain on its share of the tokens and reads the router
// and every expert its share routes to itself, so the bytes count once per share (the distinct experts once).
TEST(Layer, CountsTheWeightBytesEachThreadsShareOfAPrefillChunkReads) {
  MoeConfig c = small("olmoe-1b-7b", DType::bf16);  // E 64, K 8: 128 tokens route to every expert
  c.moe_chunk_max_len = 1024;
  const int64_t router = 64 * 64 * 2, expert = 3 * 32 * 64 * 2;
  const Tensor x = tokens(c, 256, 4);
  LayerOptions two;
  two.threads = 2;
  MoeLayer split = MoeLayer::with_random_weights(c, 1, two);
  split.forward(x, /*is_prefill=*/true);  // 256 tokens on 2 threads: two shares of 128
  EXPECT_EQ(split.last_timings().active_experts, 64);
  EXPECT_EQ(split.last_timings().weight_bytes, 2 * (router + 64 * expert));
  LayerOptions one;
  one.threads = 1;
  MoeLayer whole = MoeLayer::with_random_weights(c, 1, one);
  whole.forward(x, /*is_prefill=*/true);
  EXPECT_EQ(whole.last_timings().weight_bytes, router + 64 * expert);
}

// The kernel the layer reports is the registry's variant for the weights' kind, at the ISA level in use.
TEST(Layer, ReportsTheKernelItsExpertsRanOn) {
  MoeConfig c = small("olmoe-1b-7b", DType::bf16);
  MoeLayer f = MoeLayer::with_random_weights(c, 1);
  EXPECT_EQ(f.kernel(), "");
  f.forward(tokens(c, 2, 2));
  EXPECT_EQ(f.kernel(), gemm::select_gemm_kernels(default_numerics()).bf16w.name);
  MoeConfig q = small("olmoe-1b-7b", DType::bf16, QuantMode::w8a8);
  MoeLayer s8 = MoeLayer::with_random_weights(q, 1);
  s8.forward(tokens(q, 2, 2));
  EXPECT_EQ(s8.kernel(), gemm::select_gemm_kernels().s8.name);
  // Under a lower cap the chain's grouped matmuls choose again at each call; the fused path keeps the kernels the
  // layer was packed with.
  const std::string packed = s8.kernel();
  set_max_isa(Isa::scalar);
  s8.forward(tokens(q, 2, 2), /*is_prefill=*/true);
  const std::string chain = s8.kernel();
  s8.forward(tokens(q, 2, 2));
  const std::string fused = s8.kernel(), fused_path = s8.path();
  set_max_isa(kTopIsa);
  EXPECT_EQ(chain, "gemm_s8_s32_1x32__scalar");
  EXPECT_EQ(fused_path, "superkernel");
  EXPECT_EQ(fused, packed);
}

TEST(Layer, ATokensResultDoesNotDependOnItsBatch) {
  MoeConfig c = small("deepseek-v3", DType::f32);
  MoeLayer layer = MoeLayer::with_random_weights(c, 2);
  Tensor x = tokens(c, 6, 9);
  Tensor all = layer.forward(x);
  for (int64_t t = 0; t < 6; ++t) EXPECT_TENSOR_EQ(all.narrow(0, t, 1), layer.forward(x.narrow(0, t, 1)));
}

TEST(Layer, EmptyBatchAndStridedInput) {
  MoeConfig c = small("olmoe-1b-7b", DType::bf16);
  MoeLayer layer = MoeLayer::with_random_weights(c, 1);
  EXPECT_EQ(layer.forward(Tensor::empty(DType::bf16, {0, 64})).shape(), (Shape{0, 64}));
  Tensor wide = tokens(c, 4, 3);
  Tensor strided = wide.transpose(0, 1).contiguous().transpose(0, 1);  // same values, column-major strides
  EXPECT_TENSOR_EQ(layer.forward(wide), layer.forward(strided));
}

TEST(Layer, RandomWeightsAreDeterministicAndScaledLikeAModel) {
  MoeConfig c = small("qwen3-30b-a3b", DType::f32);
  LayerWeights a = MoeLayer::with_random_weights(c, 42, {.threads = 1}).weights();
  LayerWeights b = MoeLayer::with_random_weights(c, 42, {.threads = 3}).weights();
  EXPECT_TENSOR_EQ(a.w13, b.w13);
  EXPECT_TENSOR_EQ(a.w2, b.w2);
  EXPECT_TENSOR_EQ(a.router, b.router);
  double sum2 = 0;
  for (int64_t i = 0; i < a.w13.numel(); ++i) sum2 += a.w13.item_flat(i) * a.w13.item_flat(i);
  const double sd = std::sqrt(sum2 / double(a.w13.numel()));
  EXPECT_NEAR(sd, 1.0 / std::sqrt(64.0), 0.01);
  LayerWeights other = MoeLayer::with_random_weights(c, 43).weights();
  EXPECT_FALSE(::moefuse::testing::tensors_equal(a.w13, other.w13));
}

class TempDir {
 public:
  explicit TempDir(const std::string& name)
      : path_(std::filesystem::path(::testing::TempDir()) / ("moefuse_layer_" + name + "_" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& n) const { return (path_ / n).string(); }

 private:
  std::filesystem::path path_;
};

// w8a8 and w8a8c8 against the bf16 layer on the same weights (quantised on load from its checkpoint).
TEST(Layer, QuantisedChainsTrackTheBf16Layer) {
  TempDir dir("quant");
  for (const char* preset : {"olmoe-1b-7b", "deepseek-v3", "qwen1.5-moe-a2.7b"}) {
    MoeConfig c = small(preset, DType::bf16);
    MoeLayer bf16 = MoeLayer::with_random_weights(c, 12);
    const std::string path = dir.file(std::string(preset) + ".safetensors");
    write_safetensors(path, layer::checkpoint_tensors(c, bf16.weights(), 3));
    Checkpoint ck(path);
    Tensor x = tokens(c, 16, 5);
    Tensor y = bf16.forward(x);
    for (QuantMode q : {QuantMode::w8a8, QuantMode::w8a8c8}) {
      MoeConfig qc = c;
      qc.quant_mode = q;
      MoeLayer quant = MoeLayer::from_checkpoint(qc, ck, 3);
      const double cos = min_token_cosine(y, quant.forward(x));
      EXPECT_GE(cos, 0.99) << preset << " " << quant_mode_name(q);
      RecordProperty(std::string(preset) + "_" + std::string(quant_mode_name(q)) + "_min_cosine", std::to_string(cos));
    }
  }
}

TEST(Layer, CheckpointRoundTripsOneFileAndSharded) {
  TempDir dir("ckpt");
  for (QuantMode q : {QuantMode::none, QuantMode::w8a8, QuantMode::w8a8c8}) {
    MoeConfig c = small("mixtral-8x7b", DType::bf16, q);
    MoeLayer a = MoeLayer::with_random_weights(c, 21);
    NamedTensors named = layer::checkpoint_tensors(c, a.weights(), 0);
    const std::string one = dir.file(std::string("one_") + std::string(quant_mode_name(q)) + ".safetensors");
    write_safetensors(one, named);
    const std::string sharded = dir.file(std::string("sharded_") + std::string(quant_mode_name(q)));
    write_sharded_checkpoint(sharded, named, 20000);
    Tensor x = tokens(c, 4, 2);
    const Tensor expected = a.forward(x);
    for (const std::string& path : {one, sharded}) {
      MoeLayer b = MoeLayer::from_checkpoint(c, Checkpoint(path), 0);
      EXPECT_TENSOR_EQ(a.weights().w13, b.weights().w13) << path;
      EXPECT_TENSOR_EQ(a.weights().w2_scale, b.weights().w2_scale) << path;
      EXPECT_TENSOR_EQ(expected, b.forward(x)) << path;
    }
  }
}

TEST(Layer, CheckpointInAnotherDtypeIsConverted) {
  TempDir dir("convert");
  MoeConfig c32 = small("deepseek-v2-lite", DType::f32);
  MoeLayer a = MoeLayer::with_random_weights(c32, 4);
  const std::string path = dir.file("f32.safetensors");
  write_safetensors(path, layer::checkpoint_tensors(c32, a.weights(), 1));
  MoeConfig c16 = small("deepseek-v2-lite", DType::bf16);
  MoeLayer b = MoeLayer::from_checkpoint(c16, Checkpoint(path), 1);
  EXPECT_TENSOR_EQ(a.weights().w2.to(DType::bf16), b.weights().w2);
  EXPECT_TENSOR_EQ(a.weights().shared_w13.to(DType::bf16), b.weights().shared_w13);
}

TEST(Layer, Errors) {
  MoeConfig c = small("olmoe-1b-7b", DType::bf16);
  MoeLayer layer = MoeLayer::with_random_weights(c, 1);
  EXPECT_THROWS_MSG(layer.forward(Tensor::zeros(DType::f32, {2, 64})), TypeError, "MoeLayer", "x", "bf16", "f32");
  EXPECT_THROWS_MSG(layer.forward(Tensor::zeros(DType::bf16, {2, 63})), ValueError, "MoeLayer", "x",
                    "[T, 64] (hidden_size)", "[2, 63]");
  EXPECT_THROWS_MSG(layer.forward(Tensor::zeros(DType::bf16, {64})), ValueError, "MoeLayer", "x", "2-D");
  Tensor out = Tensor::full(DType::bf16, {2, 32}, 3.0);
  EXPECT_THROWS_MSG(layer.forward_out(Tensor::zeros(DType::bf16, {2, 64}), false, out), ValueError, "out",
                    "[2, 64]");
  EXPECT_EQ(out.item({0, 0}), 3.0);

  LayerWeights missing = layer.weights();
  missing.w2 = Tensor{};
  EXPECT_THROWS_MSG(MoeLayer(c, missing), ValueError, "MoeLayer", "w2", "a tensor", "none");
  LayerWeights wrong = layer.weights();
  wrong.w13 = wrong.w13.narrow(1, 0, 10);
  EXPECT_THROWS_MSG(MoeLayer(c, wrong), ValueError, "w13", "[64, 64, 64]", "[64, 10, 64]");
  EXPECT_THROWS_MSG(MoeLayer::with_random_weights(c, 1, {.threads = -1}), ValueError, "threads", "-1");

  // Refused before allocating: both numbers in the message.
  EXPECT_THROWS_MSG(MoeLayer::with_random_weights(c, 1, {.memory_limit_bytes = 100000}), ResourceError, "MoeLayer",
                    "memory", "90000 bytes", "needed");
  MoeConfig v3 = load_preset("deepseek-v3");
  EXPECT_THROWS_MSG(MoeLayer::with_random_weights(v3, 1, {.memory_limit_bytes = int64_t(16) << 30}), ResourceError,
                    std::to_string(layer_weight_bytes(v3)));

  TempDir dir("errors");
  NamedTensors named = layer::checkpoint_tensors(c, layer.weights(), 0);
  NamedTensors without;
  for (auto& [n, t] : named)
    if (n != "model.layers.0.mlp.experts.5.up_proj.weight") without.emplace_back(n, t);
  write_safetensors(dir.file("missing.safetensors"), without);
  EXPECT_THROWS_MSG(MoeLayer::from_checkpoint(c, Checkpoint(dir.file("missing.safetensors")), 0), IoError,
                    "missing.safetensors", "model.layers.0.mlp.experts.5.up_proj.weight");
  EXPECT_THROWS_MSG(MoeLayer::from_checkpoint(c, Checkpoint(dir.file("missing.safetensors")), 4), IoError,
                    "model.layers.4.mlp.gate.weight");
  NamedTensors reshaped = named;
  for (auto& [n, t] : reshaped)
    if (n == "model.layers.0.mlp.experts.2.down_proj.weight") t = t.narrow(1, 0, 16);
  write_safetensors(dir.file("shape.safetensors"), reshaped);
  EXPECT_THROWS_MSG(MoeLayer::from_checkpoint(c, Checkpoint(dir.file("shape.safetensors")), 0), ValueError,
                    "model.layers.0.mlp.experts.2.down_proj.weight", "[H, I] = [64, 32]", "[64, 16]");
  MoeConfig q = c;
  q.quant_mode = QuantMode::w8a8;
  MoeLayer quant = MoeLayer::with_random_weights(q, 1);
  write_safetensors(dir.file("int8.safetensors"), layer::checkpoint_tensors(q, quant.weights(), 0));
  EXPECT_THROWS_MSG(MoeLayer::from_checkpoint(c, Checkpoint(dir.file("int8.safetensors")), 0), ValueError,
                    "int8 weights need quant_mode w8a8 or w8a8c8", "got i8");
}

// Non-finite weights are refused where the layer is made, naming the weight and the index of the first one (in
// the order the weights are read, for any thread count), unless LayerOptions::allow_non_finite_weights.
TEST(Layer, NonFiniteWeightsAreRefusedUnlessAllowed) {
  MoeConfig c = small("olmoe-1b-7b", DType::bf16);
  MoeLayer layer = MoeLayer::with_random_weights(c, 1);
  LayerWeights nan_w13 = layer.weights();
  nan_w13.w13.set_item({2, 5, 7}, std::nan(""));
  EXPECT_THROWS_MSG(MoeLayer(c, nan_w13), ValueError, "MoeLayer: w13: expected finite values",
                    "allow_non_finite_weights", "got nan at [2, 5, 7]");
  LayerWeights inf_router = layer.weights();
  inf_router.router = inf_router.router.clone();
  inf_router.router.set_item({1, 3}, INFINITY);
  EXPECT_THROWS_MSG(MoeLayer(c, inf_router), ValueError, "MoeLayer: router:", "got inf at [1, 3]");
  EXPECT_NO_THROW(MoeLayer(c, nan_w13, {.allow_non_finite_weights = true}));

  TempDir dir("non_finite");
  const std::string up5 = "model.layers.0.mlp.experts.5.up_proj.weight";
  const std::string gate1 = "model.layers.0.mlp.experts.1.gate_proj.weight";
  NamedTensors named = layer::checkpoint_tensors(c, layer.weights(), 0);
  for (auto& [n, t] : named) {
    if (n == up5 || n == gate1) t = t.clone();
    if (n == up5) t.set_item({4, 9}, std::nan(""));
    if (n == gate1) t.set_item({30, 63}, -INFINITY);
  }
  const std::string file = dir.file("nan.safetensors");
  write_safetensors(file, named);
  MoeConfig q = c;
  q.quant_mode = QuantMode::w8a8;
  for (int threads : {1, 3}) {
    for (const MoeConfig& cfg : {c, q}) {  // converted, or quantised on load
      EXPECT_THROWS_MSG(MoeLayer::from_checkpoint(cfg, Checkpoint(file), 0, {.threads = threads}), ValueError,
                        file + ": " + gate1 + ": expected finite values", "got -inf at [30, 63]");
    }
  }
  // A finite value that overflows in the model dtype is refused too.
  MoeConfig c16 = c;
  c16.dtype = DType::f16;
  NamedTensors big = layer::checkpoint_tensors(c, layer.weights(), 0);
  for (auto& [n, t] : big)
    if (n == up5) {
      t = t.to(DType::f32);
      t.set_item({2, 1}, 70000.0);
    }
  write_safetensors(dir.file("big.safetensors"), big);
  EXPECT_THROWS_MSG(MoeLayer::from_checkpoint(c16, Checkpoint(dir.file("big.safetensors")), 0), ValueError, up5,
                    "got 70000 at [2, 1], which is inf in f16");
  EXPECT_NO_THROW(MoeLayer::from_checkpoint(c, Checkpoint(dir.file("big.safetensors")), 0));  // bf16 holds it

  MoeLayer allowed = MoeLayer::from_checkpoint(c, Checkpoint(file), 0, {.allow_non_finite_weights = true});
  EXPECT_TRUE(std::isnan(allowed.weights().w13.item({5, 32 + 4, 9})));

  // int8 checkpoints: their scales and smooth scales are read as given.
  MoeLayer quant = MoeLayer::with_random_weights(q, 1);
  const std::string scale3 = "model.layers.0.mlp.experts.3.down_proj.weight_scale";
  NamedTensors int8 = layer::checkpoint_tensors(q, quant.weights(), 0);
  for (auto& [n, t] : int8)
    if (n == scale3) {
      t = t.clone();
      t.set_item({17}, std::nan(""));
    }
  write_safetensors(dir.file("int8.safetensors"), int8);
  EXPECT_THROWS_MSG(MoeLayer::from_checkpoint(q, Checkpoint(dir.file("int8.safetensors")), 0), ValueError,
                    scale3, "got nan at [17]");
  LayerWeights smooth = quant.weights();
  smooth.smooth_scale1 = Tensor::full(DType::f32, {c.num_experts, c.hidden_size}, 1.0);
  smooth.smooth_scale1.set_item({6, 40}, INFINITY);
  NamedTensors with_smooth = layer::checkpoint_tensors(q, smooth, 0);
  write_safetensors(dir.file("smooth.safetensors"), with_smooth);
  EXPECT_THROWS_MSG(MoeLayer::from_checkpoint(q, Checkpoint(dir.file("smooth.safetensors")), 0), ValueError,
                    "model.layers.0.mlp.experts.6.gate_proj.smooth_scale", "got inf at [40]");
  EXPECT_THROWS_MSG(MoeLayer(q, smooth), ValueError, "MoeLayer: smooth_scale1:", "got inf at [6, 40]");
}

}  // namespace
}  // namespace moefuse
