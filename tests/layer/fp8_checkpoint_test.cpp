// FP8 block-scaled checkpoints (docs/layer.md §7): the two test folders (made with torch's float8_e4m3fn by
// tests/data/models/make_models.py, named as the DeepSeek-V3 and Qwen3 FP8 releases) and checkpoints written here
// (qwen3_moe and deepseek_v3 with blocks [128, 128], K past one block; blocks that do not fit the kernels' 128 rows;
// an f16 model), each equal bit for bit to the oracle "dequantise in fp32, round to the model dtype, run the float
// layer" on the chain and the fused decode path, 1 and 2 threads; the layers that keep the weights one byte read
// them one byte per weight plus scales (LayerTimings::weight_bytes), the others as the model dtype; every bad FP8
// checkpoint refused with an error naming what is wrong; random FP8 layers (MoeLayer::with_random_fp8_weights).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "io/io_test_util.h"
#include "kernels/gemm/gemm.h"
#include "layer/fp8_weights.h"
#include "moefuse/error.h"
#include "moefuse/model.h"
#include "util/compare.h"
#include "util/errors.h"
#include "util/fp8_checkpoint.h"
#include "util/model_families.h"

namespace moefuse {
namespace {

namespace fs = std::filesystem;
using testing::model_dir;

// Bytes of one [out, in] projection kept one byte (as the kernels' packed form holds it: weights plus scales).
int64_t fp8_projection_bytes(int64_t out, int64_t in) {
  std::vector<uint8_t> q(size_t(out * in), 0);
  std::vector<float> s(size_t((out + 127) / 128 * ((in + 127) / 128)), 1.0f);
  const gemm::Fp8Source src{q.data(), 1, in, s.data(), 1, (in + 127) / 128};
  const int64_t bytes = int64_t(gemm::pack_weights_fp8(src, in, out).data_bytes());
  EXPECT_LT(bytes, out * in * 2);  // less than bf16: one byte per weight plus scales (and padding)
  return bytes;
}

// The weight bytes a forward of `layer` read, as LayerTimings counts them: per chunk part, the router (+ bias),
// the shared expert and every active expert — their projections one byte (+ scales) when `one_byte`, else 2.
int64_t expected_weight_bytes(const MoeLayer& layer, bool one_byte) {
  const MoeConfig& c = layer.config();
  const int64_t H = c.hidden_size, I = c.moe_intermediate_size, Is = c.shared_expert_width();
  const int64_t ms = int64_t(dtype_size(c.dtype));
  auto mlp = [&](int64_t w) {
    return one_byte ? fp8_projection_bytes(2 * w, H) + fp8_projection_bytes(H, w) : 3 * w * H * ms;
  };
  const int64_t fixed = c.num_experts * H * ms + (c.model_type == ModelType::deepseek_v3 ? c.num_experts * 4 : 0) +
                        (Is > 0 ? mlp(Is) : 0);
  const LayerTimings& t = layer.last_timings();
  return t.chunks * fixed + t.active_experts * mlp(I);
}

// Runs `layer` on T tokens (decode or prefill) and checks it against the oracle weights: output and routing bitwise,
// the path taken, the kernel (FP8 when one_byte) and the weight bytes read.
void expect_layer_equals_oracle(MoeLayer& layer, const LayerWeights& oracle, int64_t T, bool prefill, bool one_byte,
                                uint64_t seed) {
  const MoeConfig& c = layer.config();
  SCOPED_TRACE("T " + std::to_string(T) + (prefill ? " prefill" : " decode") + ", " + std::to_string(layer.threads()) +
               " threads, superkernel " + std::to_string(c.enable_superkernel));
  const Tensor x = random_tokens(T, c.hidden_size, seed, c.dtype);
  LayerRouting got_r, want_r;
  const Tensor got = layer.forward(x, prefill, &got_r);
  EXPECT_TENSOR_EQ(reference_layer_forward(c, oracle, x, &want_r), got);
  EXPECT_TENSOR_EQ(want_r.topk_idx, got_r.topk_idx);
  EXPECT_EQ(layer.kernel().find("fp8") != std::string::npos, one_byte) << layer.kernel();
  EXPECT_EQ(layer.last_timings().weight_bytes, expected_weight_bytes(layer, one_byte));
}

TEST(Fp8, EveryE4m3EncodingWidensToItsValue) {
  for (int v = 0; v < 256; ++v) {
    const float want = testing::e4m3_by_definition(uint8_t(v)), got = f32_from_e4m3(uint8_t(v));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << v;
    } else {
      EXPECT_EQ(f32_bits(want), f32_bits(got)) << v;  // signed zeros included
    }
  }
  EXPECT_EQ(f32_from_e4m3(0x7e), 448.0f);
  EXPECT_EQ(f32_from_e4m3(0x01), std::ldexp(1.0f, -9));
}

struct Fp8Folder {
  const char* name;
  std::vector<int64_t> moe_layers;
  int64_t bn, bk;
  bool one_byte;  // [128, 128] blocks: kept one byte; deepseek_v3_fp8's [8, 12] (K 32 and 16) do not fit 128 rows
};

const Fp8Folder kFolders[] = {{"qwen3_moe_fp8", {0, 2}, 128, 128, true}, {"deepseek_v3_fp8", {1, 2}, 8, 12, false}};

class Fp8ModelFolder : public ::testing::TestWithParam<Fp8Folder> {};

TEST_P(Fp8ModelFolder, LayerEqualsTheDequantiseThenFloatOracleBitwise) {
  const Fp8Folder& f = GetParam();
  const ModelConfig m = load_model_config(model_dir(f.name));
  EXPECT_FALSE(m.fp8.source.empty());
  EXPECT_EQ(m.fp8.block_n, f.bn);
  EXPECT_EQ(m.fp8.block_k, f.bk);
  EXPECT_EQ(m.quant_mode, QuantMode::none);
  const Checkpoint ck(model_dir(f.name));
  for (int64_t l : f.moe_layers) {
    SCOPED_TRACE("layer " + std::to_string(l));
    EXPECT_EQ(layer::fp8_held_one_byte(m.layer_config(l), m.fp8), f.one_byte);
    for (int threads : {1, 2}) {
      MoeLayer layer = load_model_layer(model_dir(f.name), l, {.threads = threads});
      const LayerWeights oracle = testing::fp8_oracle_weights(layer.config(), ck, l, layer.weights(), f.bn, f.bk);
      for (bool prefill : {false, true})
        expect_layer_equals_oracle(layer, oracle, prefill ? 37 : 3, prefill, f.one_byte, uint64_t(l) + 5);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Folders, Fp8ModelFolder, ::testing::ValuesIn(kFolders),
                         [](const ::testing::TestParamInfo<Fp8Folder>& i) { return std::string(i.param.name); });

// A qwen3_moe layer (H 64, I 32: the fused decode path's widths) written as an FP8 checkpoint with blocks [bn, bk]
// (by default [16, 24]: K = 64 and 32 both end in a partial block), random e4m3 values (no NaN) and scales for
// every expert projection (routed and shared); `edit` may change the tensors and the quantization_config before
// they are written.
constexpr const char* kYaml = R"(model_config:
  model_type: qwen3_moe
  num_experts: 4
  num_experts_per_tok: 2
  hidden_size: 64
  moe_intermediate_size: 32
  scoring_func: softmax
  norm_topk_prob: true
  dtype: bf16
)";
// deepseek_v3 with a shared expert, as the test folder's config (util/model_families.h) but with H = 160 and I = 32:
// K past one block of 128 rows, ending in a partial one.
const char* deepseek_yaml() {
  static const std::string yaml = [] {
    std::string y;
    for (const testing::Family& f : testing::kFamilies)
      if (std::string(f.name) == "deepseek_v3") y = f.yaml;
    for (auto [from, to] : {std::pair<std::string, std::string>{"hidden_size: 32\n", "hidden_size: 160\n"},
                            {"moe_intermediate_size: 16\n", "moe_intermediate_size: 32\n"}}) {
      const size_t at = y.find(from);
      if (at == std::string::npos) throw std::logic_error("the deepseek_v3 test config lost its " + from);
      y.replace(at, from.size(), to);
    }
    return y;
  }();
  return yaml.c_str();
}

std::string quant_config(int64_t bn, int64_t bk) {
  return R"({"quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8", )"
         R"("weight_block_size": [)" + std::to_string(bn) + ", " + std::to_string(bk) + "]}}";
}

template <class Edit>
std::string write_fp8_checkpoint(const testing::TempDirectory& dir, Edit edit, const MoeConfig& c, int64_t bn,
                                 int64_t bk) {
  const MoeLayer random = MoeLayer::with_random_weights(c, 7, {.threads = 1});
  std::mt19937 rng(11);
  std::vector<testing::RawTensor> raw;
  for (const auto& [name, t] : layer_checkpoint_tensors(c, random.weights(), 0)) {
    if (name.find("experts.") == std::string::npos) {  // router, correction bias
      raw.push_back(testing::raw_tensor(name, t));
      continue;
    }
    const int64_t n = t.size(0), k = t.size(1);
    testing::RawTensor q{name, "F8_E4M3", {n, k}, std::vector<std::byte>(size_t(n * k))};
    for (std::byte& b : q.bytes) {
      uint8_t v = uint8_t(rng());
      if ((v & 0x7f) == 0x7f) v = 0x7e;  // NaN -> 448
      b = std::byte(v);
    }
    Tensor s = Tensor::empty(DType::f32, {(n + bn - 1) / bn, (k + bk - 1) / bk});
    for (int64_t i = 0; i < s.numel(); ++i) s.data_as<float>()[i] = 1e-3f * float(1 + rng() % 1000) / 64.0f;
    raw.push_back(std::move(q));
    raw.push_back(testing::raw_tensor(name + "_scale_inv", s));
  }
  std::string config = quant_config(bn, bk);
  edit(raw, config);
  const fs::path out = dir.path() / "fp8";
  fs::create_directories(out);
  testing::write_raw_safetensors((out / "model.safetensors").string(), raw);
  if (!config.empty()) testing::write_bytes((out / "config.json").string(), config);
  return out.string();
}

template <class Edit>
std::string write_fp8_checkpoint(const testing::TempDirectory& dir, Edit edit) {
  return write_fp8_checkpoint(dir, edit, parse_config_yaml(kYaml, "fp8.yaml"), 16, 24);
}

struct Fp8Case {
  const char* name;
  const char* yaml;
  DType dtype;
  int64_t bn, bk;
  bool one_byte;
};

const Fp8Case kCases[] = {
    {"qwen3_moe_blocks_128", kYaml, DType::bf16, 128, 128, true},
    {"deepseek_v3_blocks_128", deepseek_yaml(), DType::bf16, 128, 128, true},
    {"deepseek_v3_blocks_128_by_256", deepseek_yaml(), DType::bf16, 128, 256, true},
    {"qwen3_moe_blocks_16_24_dequantised", kYaml, DType::bf16, 16, 24, false},  // bk 24: not 128 rows
    {"deepseek_v3_f16_dequantised", deepseek_yaml(), DType::f16, 128, 128, false},  // the kernels round to bf16
};

class Fp8Checkpoints : public ::testing::TestWithParam<Fp8Case> {};

TEST_P(Fp8Checkpoints, FusedAndChainPathsEqualTheOracleBitwise) {
  const Fp8Case& f = GetParam();
  MoeConfig c = parse_config_yaml(f.yaml, "fp8.yaml");
  c.dtype = f.dtype;
  testing::TempDirectory dir;
  const Checkpoint ck(write_fp8_checkpoint(dir, [](std::vector<testing::RawTensor>&, std::string&) {}, c, f.bn, f.bk));
  const LayerWeights oracle = testing::fp8_oracle_weights(
      c, ck, 0, MoeLayer::from_checkpoint(c, ck, 0, {.threads = 1}).weights(), f.bn, f.bk);
  for (bool fused : {true, false})
    for (int threads : {1, 2}) {
      c.enable_superkernel = fused;
      MoeLayer layer = MoeLayer::from_checkpoint(c, ck, 0, {.threads = threads});
      for (int64_t T : {1, 5}) {
        expect_layer_equals_oracle(layer, oracle, T, false, f.one_byte, uint64_t(T));
        EXPECT_EQ(layer.path(), fused ? "superkernel" : "chain");
      }
      expect_layer_equals_oracle(layer, oracle, 37, true, f.one_byte, 3);
    }
}

INSTANTIATE_TEST_SUITE_P(Layers, Fp8Checkpoints, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Fp8Case>& i) { return std::string(i.param.name); });

// A layer whose routed experts are FP8 but whose shared expert is bf16 dequantises them all (one kernel a layer).
TEST(Fp8Checkpoint, ALayerWithSomeFloatProjectionsIsDequantised) {
  MoeConfig c = parse_config_yaml(deepseek_yaml(), "fp8.yaml");
  testing::TempDirectory dir;
  const MoeLayer random = MoeLayer::with_random_weights(c, 3, {.threads = 1});
  const std::string path = write_fp8_checkpoint(
      dir,
      [&](std::vector<testing::RawTensor>& raw, std::string&) {
        for (const auto& [name, t] : layer_checkpoint_tensors(c, random.weights(), 0))
          if (name.find("shared_experts.") != std::string::npos)
            for (testing::RawTensor& r : raw)
              if (r.name == name) r = testing::raw_tensor(name, t);
      },
      c, 128, 128);
  const Checkpoint ck(path);
  MoeLayer layer = MoeLayer::from_checkpoint(c, ck, 0, {.threads = 1});
  const LayerWeights loaded = layer.weights();
  EXPECT_TENSOR_EQ(random.weights().shared_w13, loaded.shared_w13);
  LayerWeights oracle = testing::fp8_oracle_weights(c, ck, 0, loaded, 128, 128);
  oracle.shared_w13 = loaded.shared_w13;
  oracle.shared_w2 = loaded.shared_w2;
  expect_layer_equals_oracle(layer, oracle, 1, false, false, 1);
}

// The first routed-expert weight of the checkpoint (gate_proj of expert 0), and its scale.
testing::RawTensor* find(std::vector<testing::RawTensor>& raw, const std::string& suffix) {
  for (testing::RawTensor& t : raw)
    if (t.name == "model.layers.0.mlp.experts.0.gate_proj." + suffix) return &t;
  ADD_FAILURE() << suffix;
  return nullptr;
}

MoeLayer load(const std::string& path) {
  return MoeLayer::from_checkpoint(parse_config_yaml(kYaml, "fp8.yaml"), Checkpoint(path), 0, {.threads = 1});
}

TEST(Fp8Checkpoint, BadCheckpointsAreClearErrors) {
  using Raw = std::vector<testing::RawTensor>;
  const std::string w = "model.layers.0.mlp.experts.0.gate_proj.weight";
  {
    testing::TempDirectory dir;
    const std::string p = write_fp8_checkpoint(dir, [](Raw& raw, std::string&) { find(raw, "weight")->dtype = "F8_E5M2"; });
    EXPECT_THROWS_MSG(load(p), TypeError, w + ": expected dtype F8_E4M3 (", "config.json: quantization_config declares fmt \"e4m3\"), got F8_E5M2");
  }
  {
    testing::TempDirectory dir;
    const std::string p = write_fp8_checkpoint(dir, [](Raw& raw, std::string&) {
      raw.erase(raw.begin() + (find(raw, "weight_scale_inv") - raw.data()));
    });
    EXPECT_THROWS_MSG(load(p), ValueError, w + "_scale_inv: expected a tensor of this checkpoint (the block scales of the F8_E4M3 weight " + w + "), got none");
  }
  {
    testing::TempDirectory dir;
    const std::string p = write_fp8_checkpoint(dir, [](Raw& raw, std::string&) {
      testing::RawTensor* s = find(raw, "weight_scale_inv");
      s->shape = {2, 2};  // [ceil(32 / 16), ceil(64 / 24)] is [2, 3]
      s->bytes.resize(16);
    });
    EXPECT_THROWS_MSG(load(p), ValueError, w + "_scale_inv: expected shape [2, 3] (weight [32, 64] in blocks of [16, 24], ",
                      "weight_block_size), got [2, 2]");
  }
  {
    testing::TempDirectory dir;
    const std::string p = write_fp8_checkpoint(dir, [](Raw& raw, std::string&) {
      const float inf = INFINITY;
      std::memcpy(find(raw, "weight_scale_inv")->bytes.data() + 4, &inf, 4);
    });
    EXPECT_THROWS_MSG(load(p), ValueError, w + "_scale_inv: expected finite values", "got inf at [0, 1]");
  }
  {
    testing::TempDirectory dir;
    const std::string p = write_fp8_checkpoint(dir, [](Raw& raw, std::string&) {
      find(raw, "weight")->bytes[70] = std::byte(0xff);  // row 1, column 6: NaN
    });
    EXPECT_THROWS_MSG(load(p), ValueError, w + ": expected finite values", "got nan at [1, 6]");
  }
  {
    testing::TempDirectory dir;
    const std::string p = write_fp8_checkpoint(dir, [](Raw&, std::string& config) { config.clear(); });
    EXPECT_THROWS_MSG(load(p), ValueError, w + ": expected a config.json beside the checkpoint whose quantization_config has quant_method \"fp8\"",
                      "for a weight of dtype F8_E4M3, got none");
  }
  {
    testing::TempDirectory dir;
    const std::string p = write_fp8_checkpoint(dir, [](Raw&, std::string& config) {
      config.replace(config.find("dynamic"), 7, "static");
    });
    EXPECT_THROWS_MSG(load(p), ValueError, "config.json: quantization_config.activation_scheme: expected \"dynamic\"",
                      "got \"static\"");
  }
  {
    testing::TempDirectory dir;
    const std::string p = write_fp8_checkpoint(dir, [](Raw&, std::string& config) {
      config.replace(config.find("[16, 24]"), 8, "[16]");
    });
    EXPECT_THROWS_MSG(load(p), ValueError, "config.json: quantization_config.weight_block_size: expected two integers >= 1",
                      "got [16]");
  }
}

// The memory check before a load counts FP8 weights held one byte as such: a limit between the one-byte layer's
// need and the bf16 layer's admits the one, refuses the other (ResourceError before anything is read).
TEST(Fp8Checkpoint, TheMemoryCheckCountsOneByteWeights) {
  MoeConfig c = parse_config_yaml(deepseek_yaml(), "fp8.yaml");
  testing::TempDirectory dir;
  const Checkpoint ck(write_fp8_checkpoint(dir, [](std::vector<testing::RawTensor>&, std::string&) {}, c, 128, 128));
  const Fp8Settings fp8 = read_fp8_settings(ck);
  ASSERT_TRUE(fp8_weights_kept_one_byte(c, fp8));
  const int64_t one_byte = layer_weight_bytes(c, fp8), bf16 = layer_weight_bytes(c);
  EXPECT_LT(one_byte * 10, bf16 * 6);
  // One thread: the largest workspace is one chunk's (the fused path's plan covers the whole chunk).
  const int64_t limit = (one_byte + layer_workspace_bytes(c, c.moe_chunk_max_len)) * 10 / 9 + 16;
  EXPECT_NO_THROW(MoeLayer::from_checkpoint(c, ck, 0, {.threads = 1, .memory_limit_bytes = limit}));
  c.dtype = DType::f16;  // dequantised: 2 bytes per weight
  EXPECT_THROWS_MSG(MoeLayer::from_checkpoint(c, ck, 0, {.threads = 1, .memory_limit_bytes = limit}), ResourceError,
                    "MoeLayer: memory: expected the layer to fit in");
}

TEST(Fp8Checkpoint, NonFiniteValuesKeptOneByteAreRefusedByName) {
  const MoeConfig c = parse_config_yaml(kYaml, "fp8.yaml");
  const std::string w = "model.layers.0.mlp.experts.0.gate_proj.weight";
  using Raw = std::vector<testing::RawTensor>;
  {
    testing::TempDirectory dir;
    const std::string p = write_fp8_checkpoint(
        dir, [](Raw& raw, std::string&) { find(raw, "weight")->bytes[70] = std::byte(0x7f); }, c, 128, 128);
    EXPECT_THROWS_MSG(MoeLayer::from_checkpoint(c, Checkpoint(p), 0, {.threads = 1}), ValueError,
                      w + ": expected finite values", "got nan at [1, 6]");
    MoeLayer allowed = MoeLayer::from_checkpoint(c, Checkpoint(p), 0, {.threads = 1, .allow_non_finite_weights = true});
    EXPECT_TRUE(std::isnan(to_f32(allowed.weights().w13.data_as<bfloat16>()[70])));
  }
  {
    testing::TempDirectory dir;  // 448 x 2^127 overflows: the kernels' bf16 value is infinite
    const std::string p = write_fp8_checkpoint(
        dir,
        [](Raw& raw, std::string&) {
          std::vector<std::byte>& q = find(raw, "weight")->bytes;
          std::fill(q.begin(), q.begin() + 64, std::byte(0));  // row 0 (its scale's block): zeros but [0, 3]
          q[3] = std::byte(0x7e);
          const float big = 0x1p127f;
          std::memcpy(find(raw, "weight_scale_inv")->bytes.data(), &big, 4);
        },
        c, 128, 128);
    EXPECT_THROWS_MSG(MoeLayer::from_checkpoint(c, Checkpoint(p), 0, {.threads = 1}), ValueError,
                      w + ": expected finite values", "at [0, 3]");
  }
}

TEST(Fp8, E4m3EncodingRoundsToNearestEvenAndSaturates) {
  for (int v = 0; v < 256; ++v) {
    if ((v & 0x7f) == 0x7f) continue;  // NaN
    const float x = f32_from_e4m3(uint8_t(v));
    EXPECT_EQ(layer::e4m3_from_f32(x), v == 0x80 ? 0x80 : v) << v;  // every value encodes to itself (-0 kept)
    if ((v & 0x7f) < 0x7e) {  // halfway to the next magnitude: to the even code
      const float next = f32_from_e4m3(uint8_t(v + 1));
      const uint8_t even = (v & 1) ? uint8_t(v + 1) : uint8_t(v);
      EXPECT_EQ(layer::e4m3_from_f32((x + next) / 2), even) << v;
    }
  }
  EXPECT_EQ(layer::e4m3_from_f32(1000.0f), 0x7e);
  EXPECT_EQ(layer::e4m3_from_f32(-1e30f), 0xfe);
  EXPECT_EQ(layer::e4m3_from_f32(NAN) & 0x7f, 0x7f);
  EXPECT_EQ(layer::e4m3_from_f32(0x1p-12f), 0x00);  // below half the smallest subnormal (2^-9)
}

TEST(Fp8, RandomFp8LayerKeepsOneByteAndEqualsItsWeightsLayer) {
  MoeConfig c = parse_config_yaml(deepseek_yaml(), "fp8.yaml");
  for (bool fused : {true, false}) {
    c.enable_superkernel = fused;
    MoeLayer layer = MoeLayer::with_random_fp8_weights(c, 5, {.threads = 2});
    const LayerWeights w = layer.weights();
    expect_layer_equals_oracle(layer, w, 3, false, true, 9);
    // The FP8 weights stand for the random bf16 ones: within e4m3's rounding (3 mantissa bits) of each.
    const LayerWeights f = MoeLayer::with_random_weights(c, 5, {.threads = 1}).weights();
    const bfloat16* a = w.w13.data_as<bfloat16>();
    const bfloat16* b = f.w13.data_as<bfloat16>();
    for (int64_t i = 0; i < f.w13.numel(); ++i)
      ASSERT_LE(std::fabs(to_f32(a[i]) - to_f32(b[i])), std::fabs(to_f32(b[i])) / 14 + 1e-6f) << i;
  }
  c.dtype = DType::f16;
  EXPECT_THROWS_MSG(MoeLayer::with_random_fp8_weights(c, 5), ValueError,
                    "MoeLayer: FP8 weights: expected a bf16 float config (dtype bf16, quant_mode none), got dtype f16");
}

TEST(Fp8Checkpoint, QuantizeRefusesAnFp8Folder) {
  testing::TempDirectory dir;
  EXPECT_THROWS_MSG(quantize_model(model_dir("qwen3_moe_fp8"), (dir.path() / "out").string(), {}), ValueError,
                    "config.json: quantization_config: expected a float model, got an FP8 block-scaled one");
  EXPECT_FALSE(fs::exists(dir.path() / "out"));
}

TEST(Fp8Checkpoint, ConfigJsonErrors) {
  const std::string base = R"({"model_type": "qwen3_moe", "hidden_size": 32, "num_hidden_layers": 1, "num_experts": 4,
    "num_experts_per_tok": 2, "moe_intermediate_size": 16, "dtype": "bfloat16", "quantization_config": )";
  auto parse = [&](const std::string& qc) { return parse_model_config_json(base + qc + "}", "m/config.json"); };
  const ModelConfig m = parse(R"({"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 64], "activation_scheme": "dynamic"})");
  EXPECT_EQ(m.fp8.block_n, 128);
  EXPECT_EQ(m.fp8.block_k, 64);
  EXPECT_EQ(m.fp8.source, "m/config.json: quantization_config");
  EXPECT_EQ(parse(R"({"quant_method": "fp8"})").fp8.block_k, 128);  // transformers' defaults
  EXPECT_THROWS_MSG(parse(R"({"quant_method": "fp8", "fmt": "e5m2"})"), ValueError,
                    "m/config.json: quantization_config.fmt: expected \"e4m3\" (the FP8 format moefuse reads), got \"e5m2\"");
  EXPECT_THROWS_MSG(parse(R"({"quant_method": "fp8", "activation_scheme": "static"})"), ValueError,
                    "m/config.json: quantization_config.activation_scheme: expected \"dynamic\"", "got \"static\"");
  EXPECT_THROWS_MSG(parse(R"({"quant_method": "fp8", "weight_block_size": [0, 128]})"), ValueError,
                    "quantization_config.weight_block_size: expected two integers >= 1", "got [0, 128]");
  EXPECT_THROWS_MSG(parse(R"({"quant_method": "bitsandbytes"})"), ValueError,
                    "m/config.json: quantization_config.quant_method: expected one of: moefuse, fp8",
                    "got \"bitsandbytes\"");
}

}  // namespace
}  // namespace moefuse
