// The moefuse command, run as a subprocess: what run / verify / quantize / info print (text and JSON), that the
// output file and the checksum are those of the layer computed in this process, that results do not depend on the
// thread count, that quantize writes what a layer quantised on load holds, and one test per kind of error (exit
// status 2, one line naming the file / key / tensor, nothing written).
// Over 500 lines: one case per subcommand behaviour and per error kind, sharing one runner fixture.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "cli/cli_runner.h"
#include "io/io_test_util.h"
#include "moefuse/config.h"
#include "moefuse/cpu.h"
#include "moefuse/io.h"
#include "moefuse/layer.h"
#include "util/compare.h"
#include "util/configs.h"
#include "util/random.h"

// tests/CMakeLists.txt passes the command's path as MOEFUSE_CLI_PATH when the tools are built
// (MOEFUSE_BUILD_TOOLS); without them there is nothing to test here.
#ifdef MOEFUSE_CLI_PATH

namespace moefuse {
namespace {

using Json = nlohmann::json;
using testing::CliTest;
using testing::is_error;
using testing::kSmallYaml;
using testing::line_starting;
using testing::read_bytes;
using testing::Result;
using testing::Rng;
using testing::TempDirectory;
using testing::write_bytes;

MoeConfig small(DType dtype = DType::bf16, QuantMode quant = QuantMode::none) {
  return testing::tiny_config(dtype, quant);
}

LayerOptions one_thread() { return testing::with_threads(1); }

// FNV-1a (64 bits) of a tensor's bytes, written here from the definition.
uint64_t fnv1a(const Tensor& t) {
  const Tensor c = t.contiguous();
  uint64_t h = 0xcbf29ce484222325ull;
  const auto* p = static_cast<const unsigned char*>(c.data());
  for (size_t i = 0; i < size_t(c.numel()) * c.element_size(); ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

std::string hex(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// ---- info --------------------------------------------------------------------------------------------------------

TEST_F(CliTest, InfoListsPresetsAndKernelLevels) {
  Result r = moefuse("info");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_NE(r.out.find("isa in use:"), std::string::npos) << r.out;
  EXPECT_NE(line_starting(r.out, "kernel levels:").find("scalar (available"), std::string::npos) << r.out;
  for (const std::string& name : preset_names()) {
    const MoeConfig c = load_preset(name);
    const std::string line = line_starting(r.out, "  " + name + " ");
    ASSERT_FALSE(line.empty()) << name << " missing from\n" << r.out;
    for (int64_t v : {c.num_experts, c.hidden_size, c.moe_intermediate_size}) {
      std::string word(" ");
      word.append(std::to_string(v)).append(" ");
      EXPECT_NE(line.find(word), std::string::npos) << line;
    }
  }
  EXPECT_NE(line_starting(r.out, "  olmoe-1b-7b ").find("(default)"), std::string::npos);

  Result j = moefuse("info --json");
  ASSERT_EQ(j.status, 0) << j.err;
  const Json info = Json::parse(j.out);
  EXPECT_EQ(info["command"], "info");
  ASSERT_EQ(info["presets"].size(), preset_names().size());
  const Json& q = info["presets"][size_t(5)];
  EXPECT_EQ(q["name"], "qwen3-30b-a3b");
  EXPECT_EQ(q["num_experts"], 128);
  EXPECT_EQ(q["num_experts_per_tok"], 8);
  EXPECT_EQ(q["hidden_size"], 2048);
  EXPECT_EQ(q["moe_intermediate_size"], 768);
  EXPECT_EQ(q["dtype"], "bf16");
  EXPECT_EQ(info["kernel_levels"][0]["name"], "scalar");
  EXPECT_EQ(info["kernel_levels"][0]["available"], true);
}

// The CPU family and the prefetch settings: the family's entry, MOEFUSE_PREFETCH's keys over it, and its errors.
TEST_F(CliTest, InfoShowsTheCpuFamilyAndThePrefetchSettingsMoefusePrefetchOverrides) {
  const PrefetchSettings entry = family_prefetch(cpu_family());
  const std::string family(cpu_family_name(cpu_family()));
  ::unsetenv("MOEFUSE_PREFETCH");
  Result r = moefuse("info");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(line_starting(r.out, "cpu family:").rfind("cpu family:    " + family + " (CPUID family ", 0), 0u) << r.out;
  const std::string in_use = "prefetch:      " + prefetch_text(entry) + " (the family's entry;";
  EXPECT_EQ(line_starting(r.out, "prefetch:").rfind(in_use, 0), 0u) << r.out;

  ::setenv("MOEFUSE_PREFETCH", "int4=2K,hint=nta", 1);
  Result over = moefuse("info");
  Result j = moefuse("info --json");
  ::setenv("MOEFUSE_PREFETCH", "int4=2q", 1);
  Result bad = moefuse("info");
  ::unsetenv("MOEFUSE_PREFETCH");
  ASSERT_EQ(over.status, 0) << over.err;
  PrefetchSettings want = entry;
  want.int4 = 2048, want.hint = PrefetchHint::nta;
  EXPECT_EQ(line_starting(over.out, "prefetch:"), "prefetch:      " + prefetch_text(want) + " (family entry " +
                                                      prefetch_text(entry) +
                                                      "; override with MOEFUSE_PREFETCH=key=value,...)");
  ASSERT_EQ(j.status, 0) << j.err;
  const Json info = Json::parse(j.out);
  EXPECT_EQ(info["cpu"]["family_class"], family);
  EXPECT_EQ(info["prefetch"]["in_use"], prefetch_text(want));
  EXPECT_EQ(info["prefetch"]["family_entry"], prefetch_text(entry));
  EXPECT_TRUE(is_error(bad, {"MOEFUSE_PREFETCH", "key \"int4\"", "expected a distance in bytes", "got \"2q\""}))
      << bad.err;
}

// Where bf16 weights run: vdpbf16ps where it is usable and the family prefers it, else the fp32 FMA kernels, with
// MOEFUSE_BF16_DOT=on|off overriding the family; the two give the same bits.
TEST_F(CliTest, InfoAndRunSayWhereBf16WeightsRunAndMoefuseBf16DotOverridesWithTheSameBits) {
  const std::string cfg = small_config();
  ::setenv("MOEFUSE_BF16_DOT", "off", 1);
  Result off = moefuse("info"), run_off = moefuse("run --config '" + cfg + "' --tokens 9 --numerics portable");
  ::setenv("MOEFUSE_BF16_DOT", "on", 1);
  Result on = moefuse("info"), run_on = moefuse("run --config '" + cfg + "' --tokens 9 --numerics portable");
  ::setenv("MOEFUSE_BF16_DOT", "sometimes", 1);
  Result bad = moefuse("info");
  ::unsetenv("MOEFUSE_BF16_DOT");
  ASSERT_EQ(off.status, 0) << off.err;
  ASSERT_EQ(on.status, 0) << on.err;
  ASSERT_EQ(run_off.status, 0) << run_off.err;
  ASSERT_EQ(run_on.status, 0) << run_on.err;
  const std::string unusable = bf16_dot_unusable_reason(active_isa());
  if (!unusable.empty()) {
    EXPECT_EQ(line_starting(off.out, "bf16 weights:"), "bf16 weights:  fp32 FMA kernels: " + unusable);
    EXPECT_EQ(line_starting(on.out, "bf16 weights:"), "bf16 weights:  fp32 FMA kernels: " + unusable);
  } else {
    EXPECT_EQ(line_starting(off.out, "bf16 weights:").rfind("bf16 weights:  fp32 FMA kernels: MOEFUSE_BF16_DOT=off", 0),
              0u) << off.out;
    EXPECT_EQ(line_starting(on.out, "bf16 weights:"), "bf16 weights:  vdpbf16ps (AVX512-BF16)");
    EXPECT_NE(line_starting(run_on.out, "tier:").find("__avx512bf16"), std::string::npos) << run_on.out;
    EXPECT_EQ(line_starting(run_off.out, "tier:").find("__avx512bf16"), std::string::npos) << run_off.out;
  }
  EXPECT_EQ(line_starting(run_off.out, "checksum:"), line_starting(run_on.out, "checksum:"));
  EXPECT_TRUE(is_error(bad, {"MOEFUSE_BF16_DOT", "expected on or off", "got \"sometimes\""})) << bad.err;
}

TEST_F(CliTest, HelpAndVersionExitZero) {
  Result h = moefuse("--help");
  EXPECT_EQ(h.status, 0);
  for (const char* sub : {"info", "run", "verify", "quantize"}) EXPECT_NE(h.out.find(sub), std::string::npos);
  Result v = moefuse("--version");
  EXPECT_EQ(v.status, 0);
  EXPECT_NE(v.out.find("moefuse "), std::string::npos);
}

// ---- run ---------------------------------------------------------------------------------------------------------

TEST_F(CliTest, RunPrintsWhatRanAndAChecksumIndependentOfThreads) {
  const std::string cfg = small_config();
  Result one = moefuse("run --config '" + cfg + "' --threads 1 --tokens 5 --iters 2");
  ASSERT_EQ(one.status, 0) << one.err;
  EXPECT_EQ(one.err, "");  // no progress bar when stderr is not a terminal
  EXPECT_EQ(line_starting(one.out, "model:"), "model:      olmoe (file " + cfg + ")");
  EXPECT_EQ(line_starting(one.out, "shape:"), "shape:      H 64, I 32, E 8, K 2, shared width 0");
  EXPECT_EQ(line_starting(one.out, "numerics:"),
            "numerics:   dtype bf16, quant none, router logits fp32, scoring softmax, groups 1/1");
  EXPECT_NE(line_starting(one.out, "execution:").find("exe_mode ge_graph, superkernel on, chunk 1024, path superkernel, "
                                                      "threads 1, isa "),
            std::string::npos)
      << one.out;
  EXPECT_EQ(line_starting(one.out, "weights:"), "weights:    random (seed 0)");
  EXPECT_EQ(line_starting(one.out, "input:"), "input:      5 random tokens (seed 0), decode");
  for (const char* stage : {"router ", "gating ", "routing ", "experts ", "shared ", "combine ", "total "})
    EXPECT_FALSE(line_starting(one.out, stage).empty()) << stage;
  EXPECT_FALSE(line_starting(one.out, "tokens/s:").empty());
  const std::string sum = line_starting(one.out, "checksum:");
  ASSERT_FALSE(sum.empty());

  Result two = moefuse("run --config '" + cfg + "' --threads 2 --tokens 5 --prefill");
  ASSERT_EQ(two.status, 0) << two.err;
  EXPECT_EQ(line_starting(two.out, "checksum:"), sum);
  EXPECT_EQ(line_starting(two.out, "input:"), "input:      5 random tokens (seed 0), prefill");
  Result again = moefuse("run --config '" + cfg + "' --threads 1 --tokens 5 --iters 1");
  EXPECT_EQ(line_starting(again.out, "checksum:"), sum);
  // Another seed is another layer and input.
  Result other = moefuse("run --config '" + cfg + "' --tokens 5 --seed 1");
  ASSERT_EQ(other.status, 0) << other.err;
  EXPECT_NE(line_starting(other.out, "checksum:"), sum);
}

TEST_F(CliTest, RunOutputIsTheLayerOnTheInputAndMatchesTheChecksum) {
  const std::string cfg = small_config();
  Rng rng(11);
  const Tensor x = rng.normal_tensor(DType::f32, {6, 64});
  write_npy(path("x.npy"), x);
  Result r = moefuse("run --config '" + cfg + "' --input '" + path("x.npy") + "' --seed 3 --output '" +
                     path("y.npy") + "' --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const Tensor y = read_npy(path("y.npy"));
  ASSERT_EQ(y.dtype(), DType::f32);
  ASSERT_EQ(y.shape(), Shape({6, 64}));

  // The same layer computed here, on the input converted to bf16 with RNE.
  MoeLayer layer = MoeLayer::with_random_weights(small(), 3, one_thread());
  const Tensor expected = layer.forward(x.to(DType::bf16));
  EXPECT_TENSOR_EQ(expected.to(DType::f32), y);

  const Json j = Json::parse(r.out);
  EXPECT_EQ(j["command"], "run");
  EXPECT_EQ(j["model"]["hidden_size"], 64);
  EXPECT_EQ(j["model"]["num_experts"], 8);
  EXPECT_EQ(j["model"]["dtype"], "bf16");
  EXPECT_EQ(j["model"]["quant_mode"], "none");
  EXPECT_EQ(j["execution"]["input"]["source"], "file");
  EXPECT_EQ(j["execution"]["input"]["dtype"], "f32");
  EXPECT_EQ(j["execution"]["weights"]["seed"], 3);
  EXPECT_EQ(j["execution"]["path"], "superkernel");
  EXPECT_EQ(j["tokens"], 6);
  EXPECT_EQ(j["iters"], 3);
  for (const char* stage : {"router", "gating", "routing", "experts", "shared", "combine", "total"})
    for (const char* stat : {"median", "min", "max"})
      EXPECT_TRUE(j["timings_ms"][stage][stat].is_number()) << stage << " " << stat;
  EXPECT_EQ(j["checksum"]["fnv1a64"], hex(fnv1a(expected)));
  double sum = 0;
  for (int64_t i = 0; i < expected.numel(); ++i) sum += expected.item_flat(i);
  EXPECT_EQ(j["checksum"]["sum"].get<double>(), sum);
  EXPECT_EQ(j["output"], path("y.npy"));
}

TEST_F(CliTest, RunConvertsFloat16InputWithRoundToNearestEven) {
  const std::string cfg = small_config();
  Rng rng(12);
  const Tensor x16 = rng.normal_tensor(DType::f16, {3, 64}, 4.0f);
  write_npy(path("x16.npy"), x16);
  Result r = moefuse("run --config '" + cfg + "' --input '" + path("x16.npy") + "' --output '" + path("y.npy") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(line_starting(r.out, "input:"), "input:      3 tokens from " + path("x16.npy") + " (f16), decode");
  MoeLayer layer = MoeLayer::with_random_weights(small(), 0, one_thread());
  EXPECT_TENSOR_EQ(layer.forward(x16.to(DType::bf16)).to(DType::f32), read_npy(path("y.npy")));
}

TEST_F(CliTest, RunReadsCheckpointsInOneFileAndSharded) {
  const MoeConfig c = small(DType::f32);
  const std::string cfg = small_config("f32");
  MoeLayer layer = MoeLayer::with_random_weights(c, 21, one_thread());
  const NamedTensors tensors = layer_checkpoint_tensors(c, layer.weights(), 2);
  write_safetensors(path("one.safetensors"), tensors);
  write_sharded_checkpoint(path("sharded"), tensors, 20000);
  ASSERT_GT(Checkpoint(path("sharded")).files().size(), size_t(2));
  Rng rng(13);
  const Tensor x = rng.normal_tensor(DType::f32, {4, 64});
  write_npy(path("x.npy"), x);
  const Tensor expected = layer.forward(x);

  for (const std::string& weights : {path("one.safetensors"), path("sharded")}) {
    std::filesystem::remove(path("y.npy"));
    Result r = moefuse("run --config '" + cfg + "' --weights '" + weights + "' --layer 2 --input '" + path("x.npy") +
                       "' --output '" + path("y.npy") + "'");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(line_starting(r.out, "weights:"), "weights:    " + weights + ", layer 2");
    EXPECT_TENSOR_EQ(expected, read_npy(path("y.npy")));
  }
}

// ---- verify ------------------------------------------------------------------------------------------------------

TEST_F(CliTest, VerifyPassesForFloatQuantisedAndSharedExpertModels) {
  const std::string shared_yaml = write_text("shared.yaml", R"(model_config:
  model_type: qwen2_moe
  num_experts: 6
  num_experts_per_tok: 2
  hidden_size: 48
  moe_intermediate_size: 16
  n_shared_experts: 1
  shared_expert_intermediate_size: 40
  scoring_func: softmax
  norm_topk_prob: true
  dtype: f16
)");
  // deepseek-v3's routing (sigmoid, groups, correction bias, scale 2.5, a shared expert) at test size, in eager mode
  // with chunks of 3 tokens.
  MoeConfig v3 = testing::shrunk_preset("deepseek-v3", DType::bf16, QuantMode::none, 32, 16);
  v3.num_experts = 16;
  v3.num_experts_per_tok = 4;
  v3.n_group = 4;
  v3.topk_group = 2;
  v3.exe_mode = ExeMode::eager;
  v3.moe_chunk_max_len = 3;
  const std::string v3_yaml = write_text("v3.yaml", to_yaml(v3));
  for (const std::string& cfg : {small_config(), small_config("f32"), small_config("bf16", "w8a8"),
                                 small_config("bf16", "w8a8c8"), shared_yaml, v3_yaml}) {
    Result r = moefuse("verify --config '" + cfg + "' --tokens 7 --iters 2 --threads 2");
    ASSERT_EQ(r.status, 0) << cfg << "\n" << r.out << r.err;
    EXPECT_EQ(line_starting(r.out, "result:"), "result:     PASS");
    EXPECT_EQ(line_starting(r.out, "compared:"),
              "compared:   " + std::to_string(7 * (cfg == shared_yaml ? 48 : cfg == v3_yaml ? 32 : 64)) +
                  " elements: 0 mismatched, max abs error 0, max rel error 0, max token relative L2 error 0");
    EXPECT_NE(line_starting(r.out, "routing:").find("matched (top-k indices and weights"), std::string::npos)
        << r.out;
    EXPECT_EQ(line_starting(r.out, "finite:").rfind("finite:     yes (0 of ", 0), 0u) << r.out;
  }
  Result j = moefuse("verify --config '" + small_config("bf16", "w8a8") + "' --json --prefill");
  ASSERT_EQ(j.status, 0) << j.err;
  const Json v = Json::parse(j.out);
  EXPECT_EQ(v["pass"], true);
  EXPECT_EQ(v["max_abs_error"], 0.0);
  EXPECT_EQ(v["mismatched_elements"], 0);
  EXPECT_EQ(v["elements"], 8 * 64);
  EXPECT_EQ(v["routing"]["matched"], true);
  EXPECT_EQ(v["routing"]["indices"], 8 * 2);
  EXPECT_EQ(v["routing"]["weights_mismatched"], 0);
  EXPECT_EQ(v["non_finite_elements"], 0);
  EXPECT_EQ(v["tolerance"]["max_abs_error"], 0);
}

// verify's check can fail: a layer made wrong on purpose (the command's test hook negates its router's row of
// expert 0; the oracle keeps the true weights) is caught in the output and in the routing, with exit status 1.
TEST_F(CliTest, VerifyFailsWhenTheLayerIsWrong) {
  for (const std::string& cfg : {small_config(), small_config("bf16", "w8a8")}) {
    ::setenv("MOEFUSE_VERIFY_FAULT", "router", 1);
    Result r = moefuse("verify --config '" + cfg + "' --tokens 7");
    Result j = moefuse("verify --config '" + cfg + "' --tokens 7 --json");
    ::unsetenv("MOEFUSE_VERIFY_FAULT");
    EXPECT_EQ(r.status, 1) << r.out << r.err;
    EXPECT_EQ(line_starting(r.out, "result:"), "result:     FAIL");
    EXPECT_EQ(line_starting(r.out, "routing:").rfind("routing:    DIFFERENT", 0), 0u) << r.out;
    EXPECT_EQ(line_starting(r.out, "compared:").find(" 0 mismatched"), std::string::npos) << r.out;
    ASSERT_EQ(j.status, 1) << j.err;
    const Json v = Json::parse(j.out);
    EXPECT_EQ(v["pass"], false);
    EXPECT_GT(v["mismatched_elements"].get<int64_t>(), 0);
    EXPECT_GT(v["routing"]["mismatched"].get<int64_t>(), 0);
    // Without the hook the same layer passes.
    EXPECT_EQ(moefuse("verify --config '" + cfg + "' --tokens 7").status, 0);
  }
}

// A checkpoint holding NaN or infinite weights: run, verify and quantize refuse it (exit 2, naming the tensor and
// the index, nothing written); --allow-non-finite loads it, and verify then fails (exit 1) on the NaN output rather
// than printing PASS.
TEST_F(CliTest, NonFiniteWeightsAreRefusedAndNonFiniteOutputFailsVerify) {
  const MoeConfig c = small();
  const std::string cfg = small_config();
  MoeLayer layer = MoeLayer::with_random_weights(c, 43, one_thread());
  NamedTensors tensors = layer_checkpoint_tensors(c, layer.weights(), 0);
  const std::string router = "model.layers.0.mlp.gate.weight", down = "model.layers.0.mlp.experts.6.down_proj.weight";
  for (auto& [name, t] : tensors) {
    if (name == router) {
      t = t.clone();
      t.set_item({3, 17}, std::nan(""));
    }
  }
  write_safetensors(path("nan_router.safetensors"), tensors);
  for (const std::string cmd : {"run", "verify"})
    EXPECT_TRUE(is_error(moefuse(cmd + " --config '" + cfg + "' --weights '" + path("nan_router.safetensors") +
                                 "' --output '" + path("y.npy") + "'"),
                         {path("nan_router.safetensors"), router, "expected finite values", "got nan at [3, 17]",
                          "--allow-non-finite"}));
  EXPECT_TRUE(is_error(moefuse("quantize --config '" + cfg + "' --weights '" + path("nan_router.safetensors") +
                               "' --out '" + path("q.safetensors") + "'"),
                       {router, "got nan at [3, 17]"}));

  Result v = moefuse("verify --config '" + cfg + "' --weights '" + path("nan_router.safetensors") +
                     "' --allow-non-finite --tokens 5");
  EXPECT_EQ(v.status, 1) << v.out << v.err;
  EXPECT_EQ(line_starting(v.out, "result:"), "result:     FAIL");
  EXPECT_EQ(line_starting(v.out, "finite:").rfind("finite:     NO (", 0), 0u) << v.out;
  Result vj = moefuse("verify --config '" + cfg + "' --weights '" + path("nan_router.safetensors") +
                      "' --allow-non-finite --tokens 5 --json");
  ASSERT_EQ(vj.status, 1) << vj.err;
  EXPECT_GT(Json::parse(vj.out)["non_finite_elements"].get<int64_t>(), 0);

  // An infinity in an expert projection (quantize reads it to quantise the row: refused, no inf scale written).
  NamedTensors inf_down = layer_checkpoint_tensors(c, layer.weights(), 0);
  for (auto& [name, t] : inf_down) {
    if (name == down) {
      t = t.clone();
      t.set_item({60, 2}, -INFINITY);
    }
  }
  write_safetensors(path("inf_down.safetensors"), inf_down);
  EXPECT_TRUE(is_error(moefuse("quantize --config '" + cfg + "' --weights '" + path("inf_down.safetensors") +
                               "' --out '" + path("q.safetensors") + "'"),
                       {path("inf_down.safetensors"), down, "got -inf at [60, 2]"}));
  EXPECT_TRUE(is_error(moefuse("run --config '" + cfg + "' --weights '" + path("inf_down.safetensors") + "'"),
                       {down, "got -inf at [60, 2]"}));
  EXPECT_EQ(moefuse("run --config '" + cfg + "' --weights '" + path("inf_down.safetensors") +
                    "' --allow-non-finite").status,
            0);
  EXPECT_FALSE(std::filesystem::exists(path("y.npy")));
  EXPECT_FALSE(std::filesystem::exists(path("q.safetensors")));
}

// ---- quantize ----------------------------------------------------------------------------------------------------

TEST_F(CliTest, QuantizeWritesWhatALayerQuantisedOnLoadHolds) {
  const MoeConfig c = small();
  MoeLayer float_layer = MoeLayer::with_random_weights(c, 31, one_thread());
  write_safetensors(path("float.safetensors"), layer_checkpoint_tensors(c, float_layer.weights(), 1));
  write_npy(path("x.npy"), Rng(14).normal_tensor(DType::f32, {5, 64}));

  for (const char* mode : {"w8a8", "w8a8c8"}) {
    SCOPED_TRACE(mode);
    const std::string qcfg = small_config("bf16", mode);
    const std::string q = path(std::string("q_") + mode + ".safetensors");
    Result r = moefuse("quantize --config '" + small_config() + "' --mode " + mode + " --weights '" +
                       path("float.safetensors") + "' --layer 1 --out '" + q + "' --config-out '" +
                       path("q.yaml") + "'");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(line_starting(r.out, "quantised:"),
              std::string("quantised:  ") + mode + ", int8 weights with one f32 scale per output channel");

    // The names and formats docs/cli.md promises.
    const Checkpoint ck(q);
    const Tensor w = ck.get("model.layers.1.mlp.experts.7.down_proj.weight");
    EXPECT_EQ(w.dtype(), DType::i8);
    EXPECT_EQ(w.shape(), Shape({64, 32}));
    const Tensor s = ck.get("model.layers.1.mlp.experts.7.down_proj.weight_scale");
    EXPECT_EQ(s.dtype(), DType::f32);
    EXPECT_EQ(s.shape(), Shape({64}));
    EXPECT_EQ(ck.get("model.layers.1.mlp.experts.0.gate_proj.weight_scale").shape(), Shape({32}));
    EXPECT_EQ(ck.get("model.layers.1.mlp.gate.weight").dtype(), DType::bf16);
    EXPECT_EQ(ck.has("model.layers.1.mlp.experts.0.down_proj.clip_alpha"), std::string(mode) == "w8a8c8");
    EXPECT_EQ(load_config_file(path("q.yaml")), load_config_file(qcfg));

    // A layer quantised on load from the float checkpoint gives the same weights...
    const MoeLayer on_load = MoeLayer::from_checkpoint(load_config_file(qcfg), Checkpoint(path("float.safetensors")),
                                                       1, one_thread());
    const MoeLayer from_file = MoeLayer::from_checkpoint(load_config_file(qcfg), ck, 1, one_thread());
    EXPECT_TENSOR_EQ(on_load.weights().w13, from_file.weights().w13);
    EXPECT_TENSOR_EQ(on_load.weights().w2_scale, from_file.weights().w2_scale);

    // ... and `run` gives the same output from either.
    Result a = moefuse("run --config '" + qcfg + "' --weights '" + q + "' --layer 1 --input '" + path("x.npy") +
                       "' --output '" + path("a.npy") + "'");
    Result b = moefuse("run --config '" + qcfg + "' --weights '" + path("float.safetensors") +
                       "' --layer 1 --input '" + path("x.npy") + "' --output '" + path("b.npy") + "'");
    ASSERT_EQ(a.status, 0) << a.err;
    ASSERT_EQ(b.status, 0) << b.err;
    EXPECT_EQ(line_starting(a.out, "numerics:").find(std::string("quant ") + mode) != std::string::npos, true);
    EXPECT_EQ(line_starting(a.out, "checksum:"), line_starting(b.out, "checksum:"));
    EXPECT_TENSOR_EQ(read_npy(path("b.npy")), read_npy(path("a.npy")));
    Result v = moefuse("verify --config '" + qcfg + "' --weights '" + q + "' --layer 1");
    EXPECT_EQ(v.status, 0) << v.out << v.err;
  }
  Result j = moefuse("quantize --config '" + small_config() + "' --weights '" + path("float.safetensors") +
                     "' --layer 1 --out '" + path("q.safetensors") + "' --json");
  ASSERT_EQ(j.status, 0) << j.err;
  const Json info = Json::parse(j.out);
  EXPECT_EQ(info["quant_mode"], "w8a8");  // the default mode
  EXPECT_EQ(info["tensors"], 1 + 8 * 3 * 2);
}

// ---- errors: status 2, one line, nothing written -----------------------------------------------------------------

TEST_F(CliTest, BadFlagsAreOneErrorLine) {
  EXPECT_TRUE(is_error(moefuse("run --bogus"), {"--bogus"}));
  EXPECT_TRUE(is_error(moefuse("run --tokens many"), {"--tokens: expected an integer >= 0, got many"}));
  EXPECT_TRUE(is_error(moefuse("run --threads -1"), {"--threads: expected an integer in 0..1024, got -1"}));
  EXPECT_TRUE(is_error(moefuse("run --threads 100000"), {"--threads: expected an integer in 0..1024, got 100000"}));
  EXPECT_TRUE(is_error(moefuse("verify --iters 0"), {"--iters: expected an integer >= 1, got 0"}));
  EXPECT_TRUE(is_error(moefuse("run --seed -3"), {"--seed: expected an integer in [0, 2^64), got -3"}));
  EXPECT_TRUE(is_error(moefuse("run --layer -1 --weights w"), {"--layer: expected an integer >= 0, got -1"}));
  EXPECT_TRUE(is_error(moefuse("run --preset default --config x.yaml"), {"--config", "--preset"}));
  EXPECT_TRUE(is_error(moefuse("run --layer 1"), {"--layer", "--weights"}));
  EXPECT_TRUE(is_error(moefuse("quantize --weights w.safetensors"), {"--out"}));
  EXPECT_TRUE(is_error(moefuse("quantize --weights w --out o --mode w2a8"), {"--mode", "w2a8"}));
  EXPECT_TRUE(is_error(moefuse("quantize --weights w --out o --mode w4a16 --group-size 48"), {"--group-size", "48"}));
  EXPECT_TRUE(is_error(moefuse(""), {"subcommand", "run", "got none"}));
  EXPECT_TRUE(is_error(moefuse("frobnicate --json"), {"subcommand", "\"frobnicate\""}));
}

// Threads that cannot start (1024 stacks of 8 MiB do not fit in 3 GB of address space) are one error line, never a
// hang. The sanitizers' runtimes reserve far more address space than that at start, so plain builds only.
TEST_F(CliTest, ThreadsThatCannotStartAreOneErrorLine) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "address-space limits do not work under sanitizers";
#else
  const Result r = moefuse("run --config '" + small_config() + "' --threads 1024 --tokens 2",
                           "ulimit -s 8192 && ulimit -v 3000000 && ");
  EXPECT_TRUE(is_error(r, {"thread pool: threads: expected 1024 threads to start, got "}));
  EXPECT_EQ(files().size(), 1u);  // the config only
#endif
}

TEST_F(CliTest, ConfigErrorsNameTheFileAndKey) {
  std::string y = kSmallYaml;
  y.replace(y.find("num_experts:"), std::string("num_experts:").size(), "num_expert:");
  const std::string unknown = write_text("unknown.yaml", y);
  EXPECT_TRUE(is_error(moefuse("run --config '" + unknown + "' --output '" + path("y.npy") + "'"),
                       {unknown, "num_expert"}));
  std::string m = kSmallYaml;
  m.erase(m.find("  hidden_size: 64\n"), std::string("  hidden_size: 64\n").size());
  const std::string missing = write_text("missing.yaml", m);
  EXPECT_TRUE(is_error(moefuse("verify --config '" + missing + "' --output '" + path("y.npy") + "'"),
                       {missing, "hidden_size"}));
  EXPECT_TRUE(is_error(moefuse("run --config '" + path("absent.yaml") + "'"), {path("absent.yaml")}));
  EXPECT_TRUE(is_error(moefuse("run --preset olmoe --output '" + path("y.npy") + "'"), {"olmoe", "olmoe-1b-7b"}));
  // w8a8c8 needs a bf16 model: the combination made by --mode is refused before the checkpoint is read.
  EXPECT_TRUE(is_error(moefuse("quantize --config '" + small_config("f16") + "' --mode w8a8c8 --weights '" +
                               path("none.safetensors") + "' --out '" + path("q.safetensors") + "'"),
                       {"quant_mode", "w8a8c8"}));
  EXPECT_FALSE(std::filesystem::exists(path("y.npy")));
  EXPECT_FALSE(std::filesystem::exists(path("q.safetensors")));
}

TEST_F(CliTest, CheckpointErrorsNameTheFileAndTensor) {
  const MoeConfig c = small();
  const std::string cfg = small_config();
  MoeLayer layer = MoeLayer::with_random_weights(c, 41, one_thread());
  NamedTensors tensors = layer_checkpoint_tensors(c, layer.weights(), 0);

  const std::string gone = "model.layers.0.mlp.experts.5.up_proj.weight";
  NamedTensors missing;
  for (const auto& nt : tensors)
    if (nt.first != gone) missing.push_back(nt);
  write_safetensors(path("missing.safetensors"), missing);
  EXPECT_TRUE(is_error(moefuse("run --config '" + cfg + "' --weights '" + path("missing.safetensors") +
                               "' --output '" + path("y.npy") + "'"),
                       {path("missing.safetensors"), gone}));
  // Asking for a layer the checkpoint does not hold is a missing tensor too.
  write_safetensors(path("ok.safetensors"), tensors);
  EXPECT_TRUE(is_error(moefuse("run --config '" + cfg + "' --weights '" + path("ok.safetensors") + "' --layer 4"),
                       {"model.layers.4.mlp.gate.weight"}));

  NamedTensors misshaped = tensors;
  for (auto& nt : misshaped)
    if (nt.first == "model.layers.0.mlp.experts.3.down_proj.weight") nt.second = Tensor::zeros(DType::bf16, {64, 31});
  write_safetensors(path("misshaped.safetensors"), misshaped);
  EXPECT_TRUE(is_error(moefuse("verify --config '" + cfg + "' --weights '" + path("misshaped.safetensors") +
                               "' --output '" + path("y.npy") + "'"),
                       {"experts.3.down_proj.weight", "[64, 32]", "[64, 31]"}));

  const std::string bytes = read_bytes(path("ok.safetensors"));
  write_bytes(path("truncated.safetensors"), bytes.substr(0, bytes.size() - 100));
  EXPECT_TRUE(is_error(moefuse("run --config '" + cfg + "' --weights '" + path("truncated.safetensors") +
                               "' --output '" + path("y.npy") + "'"),
                       {path("truncated.safetensors")}));
  EXPECT_TRUE(is_error(moefuse("quantize --config '" + cfg + "' --weights '" + path("truncated.safetensors") +
                               "' --out '" + path("q.safetensors") + "'"),
                       {path("truncated.safetensors")}));

  // int8 weights need a quantised config.
  const MoeConfig qc = small(DType::bf16, QuantMode::w8a8);
  MoeLayer qlayer = MoeLayer::with_random_weights(qc, 42, one_thread());
  write_safetensors(path("int8.safetensors"), layer_checkpoint_tensors(qc, qlayer.weights(), 0));
  EXPECT_TRUE(is_error(moefuse("run --config '" + cfg + "' --weights '" + path("int8.safetensors") + "'"),
                       {path("int8.safetensors"), "experts.0.gate_proj.weight", "quant_mode"}));

  EXPECT_TRUE(is_error(moefuse("run --config '" + cfg + "' --weights '" + path("nothing") + "'"), {path("nothing")}));
  EXPECT_FALSE(std::filesystem::exists(path("y.npy")));
  EXPECT_FALSE(std::filesystem::exists(path("q.safetensors")));
}

TEST_F(CliTest, InputErrorsNameTheFile) {
  const std::string cfg = small_config();
  write_npy(path("wide.npy"), Tensor::zeros(DType::f32, {3, 65}));
  EXPECT_TRUE(is_error(moefuse("run --config '" + cfg + "' --input '" + path("wide.npy") + "' --output '" +
                               path("y.npy") + "'"),
                       {path("wide.npy"), "[T, 64]", "[3, 65]"}));
  write_npy(path("flat.npy"), Tensor::zeros(DType::f32, {64}));
  EXPECT_TRUE(is_error(moefuse("run --config '" + cfg + "' --input '" + path("flat.npy") + "'"),
                       {path("flat.npy"), "[T, 64]", "[64]"}));
  write_npy(path("ints.npy"), Tensor::zeros(DType::i32, {3, 64}));
  EXPECT_TRUE(is_error(moefuse("verify --config '" + cfg + "' --input '" + path("ints.npy") + "' --output '" +
                               path("y.npy") + "'"),
                       {path("ints.npy"), "float32", "i32"}));
  const std::string bytes = read_bytes(path("wide.npy"));
  write_bytes(path("cut.npy"), bytes.substr(0, bytes.size() - 4));
  EXPECT_TRUE(is_error(moefuse("run --config '" + cfg + "' --input '" + path("cut.npy") + "'"), {path("cut.npy")}));
  EXPECT_TRUE(is_error(moefuse("run --config '" + cfg + "' --output '" + path("no/such/dir/y.npy") + "'"),
                       {"--output", path("no/such/dir")}));
  EXPECT_FALSE(std::filesystem::exists(path("y.npy")));
}

TEST_F(CliTest, NotEnoughMemoryIsRefusedUpFront) {
  // 1.6 TB of weights: refused with the bytes needed and available, before anything is allocated or written.
  const std::string huge = write_text("huge.yaml", testing::kHugeYaml);
  EXPECT_TRUE(is_error(moefuse("run --config '" + huge + "' --tokens 1 --output '" + path("y.npy") + "'"),
                       {"memory", "bytes available", "bytes needed"}));
  EXPECT_FALSE(std::filesystem::exists(path("y.npy")));
  // Nothing but the files this test wrote is left in the directory (no temporary files either).
  EXPECT_EQ(files(), std::vector<std::string>({"huge.yaml"}));
}

}  // namespace
}  // namespace moefuse

#endif  // MOEFUSE_CLI_PATH
