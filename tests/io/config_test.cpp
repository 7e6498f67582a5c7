// MoeConfig: YAML parsing, defaults, validation rules and their messages, YAML output, config files.
// Over 500 lines: one case per key and rule of the config format, kept together so that the rules read as one list.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "io/io_test_util.h"
#include "moefuse/config.h"
#include "moefuse/error.h"
#include "util/errors.h"

namespace moefuse {
namespace {

using testing::TempDirectory;

// A config with the required keys (the seed default's values) under model_config. `changes` replaces a key's
// value, adds a key that is not there, or (value "-") removes it; keys keep this order so that line numbers are
// predictable: line 1 "exe_mode", line 2 "model_config:", then one key per line from line 3.
std::string yaml(const std::vector<std::pair<std::string, std::string>>& changes = {},
                 std::string exe_mode = "ge_graph") {
  std::vector<std::pair<std::string, std::string>> keys = {
      {"model_type", "olmoe"},           {"num_experts", "64"},
      {"num_experts_per_tok", "8"},      {"hidden_size", "2048"},
      {"moe_intermediate_size", "1024"}, {"scoring_func", "softmax"},
      {"norm_topk_prob", "false"}};
  for (const auto& [k, v] : changes) {
    bool found = false;
    for (auto& kv : keys)
      if (kv.first == k) kv.second = v, found = true;
    if (!found) keys.emplace_back(k, v);
  }
  std::string s = exe_mode.empty() ? "" : "exe_mode: " + exe_mode + "\n";
  s += "model_config:\n";
  for (const auto& [k, v] : keys)
    if (v != "-") s += "  " + k + ": " + v + "\n";
  return s;
}

MoeConfig parse(const std::string& text) { return parse_config_yaml(text, "cfg.yaml"); }

// ---- happy paths -------------------------------------------------------------------------------------------------

TEST(Config, DefaultsAreTheSeedDefault) {
  MoeConfig c;
  EXPECT_EQ(c.exe_mode, ExeMode::ge_graph);
  EXPECT_EQ(c.model_type, ModelType::olmoe);
  EXPECT_TRUE(c.enable_superkernel);
  EXPECT_EQ(c.num_experts, 64);
  EXPECT_EQ(c.num_experts_per_tok, 8);
  EXPECT_EQ(c.moe_chunk_max_len, 1024);
  EXPECT_EQ(c.hidden_size, 2048);
  EXPECT_EQ(c.moe_intermediate_size, 1024);
  EXPECT_EQ(c.n_shared_experts, 0);
  EXPECT_EQ(c.shared_expert_intermediate_size, 0);
  EXPECT_EQ(c.scoring_func, ScoringFunc::softmax);
  EXPECT_FALSE(c.norm_topk_prob);
  EXPECT_EQ(c.n_group, 1);
  EXPECT_EQ(c.topk_group, 1);
  EXPECT_EQ(c.routed_scaling_factor, 1.0);
  EXPECT_EQ(c.dtype, DType::bf16);
  EXPECT_EQ(c.quant_mode, QuantMode::none);
  EXPECT_EQ(c.router_logits_dtype, RouterLogitsDtype::fp32);
  EXPECT_NO_THROW(validate(c));
}

TEST(Config, SeedConfigOfLayerSpecParsesToTheDefault) {
  // docs/layer.md §3 verbatim (comments included).
  const char* text = R"(exe_mode: "ge_graph"
model_config:
  model_type: olmoe            # deepseek_v3 | deepseek_v2 | qwen3_moe | qwen2_moe | mixtral | olmoe
  enable_superkernel: true
  num_experts: 64
  num_experts_per_tok: 8
  moe_chunk_max_len: 1024
  hidden_size: 2048
  moe_intermediate_size: 1024
  n_shared_experts: 0          # or shared_expert_intermediate_size for qwen2_moe
  scoring_func: softmax        # softmax | sigmoid
  norm_topk_prob: false
  n_group: 1
  topk_group: 1
  routed_scaling_factor: 1.0
  dtype: bf16                  # bf16 | f16 | f32
  quant_mode: none             # none | w8a8 | w8a8c8
  router_logits_dtype: fp32    # fp32 | model
)";
  EXPECT_EQ(parse(text), MoeConfig{});
}

TEST(Config, OnlyRequiredKeysGiveDefaultsForTheRest) { EXPECT_EQ(parse(yaml({}, "")), MoeConfig{}); }

TEST(Config, EveryKeyIsRead) {
  MoeConfig c = parse(yaml({{"model_type", "deepseek_v3"},
                            {"enable_superkernel", "false"},
                            {"num_experts", "256"},
                            {"num_experts_per_tok", "8"},
                            {"moe_chunk_max_len", "77"},
                            {"hidden_size", "7168"},
                            {"moe_intermediate_size", "2048"},
                            {"n_shared_experts", "3"},
                            {"shared_expert_intermediate_size", "0"},
                            {"scoring_func", "sigmoid"},
                            {"norm_topk_prob", "true"},
                            {"n_group", "8"},
                            {"topk_group", "4"},
                            {"routed_scaling_factor", "2.5"},
                            {"dtype", "f16"},
                            {"quant_mode", "w8a8"},
                            {"router_logits_dtype", "model"}},
                           "eager"));
  EXPECT_EQ(c.exe_mode, ExeMode::eager);
  EXPECT_EQ(c.model_type, ModelType::deepseek_v3);
  EXPECT_FALSE(c.enable_superkernel);
  EXPECT_EQ(c.num_experts, 256);
  EXPECT_EQ(c.num_experts_per_tok, 8);
  EXPECT_EQ(c.moe_chunk_max_len, 77);
  EXPECT_EQ(c.hidden_size, 7168);
  EXPECT_EQ(c.moe_intermediate_size, 2048);
  EXPECT_EQ(c.n_shared_experts, 3);
  EXPECT_EQ(c.shared_expert_width(), 3 * 2048);
  EXPECT_FALSE(c.shared_expert_gated());
  EXPECT_EQ(c.scoring_func, ScoringFunc::sigmoid);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.n_group, 8);
  EXPECT_EQ(c.topk_group, 4);
  EXPECT_EQ(c.routed_scaling_factor, 2.5);
  EXPECT_EQ(c.dtype, DType::f16);
  EXPECT_EQ(c.quant_mode, QuantMode::w8a8);
  EXPECT_EQ(c.router_logits_dtype, RouterLogitsDtype::model);
}

TEST(Config, ExeModeGraphIsGeGraphAndQuotedEnumsAreAccepted) {
  EXPECT_EQ(parse(yaml({}, "graph")).exe_mode, ExeMode::ge_graph);
  EXPECT_EQ(parse(yaml({}, "\"eager\"")).exe_mode, ExeMode::eager);
  EXPECT_EQ(parse(yaml({{"dtype", "'f32'"}})).dtype, DType::f32);
}

TEST(Config, ValueSpellings) {
  EXPECT_TRUE(parse(yaml({{"norm_topk_prob", "True"}})).norm_topk_prob);
  EXPECT_TRUE(parse(yaml({{"norm_topk_prob", "TRUE"}})).norm_topk_prob);
  EXPECT_FALSE(parse(yaml({{"enable_superkernel", "False"}})).enable_superkernel);
  EXPECT_EQ(parse(yaml({{"num_experts", "+64"}})).num_experts, 64);
  EXPECT_EQ(parse(yaml({{"routed_scaling_factor", "2"}})).routed_scaling_factor, 2.0);
  EXPECT_EQ(parse(yaml({{"routed_scaling_factor", ".5"}})).routed_scaling_factor, 0.5);
  EXPECT_EQ(parse(yaml({{"routed_scaling_factor", "16."}})).routed_scaling_factor, 16.0);
  EXPECT_EQ(parse(yaml({{"routed_scaling_factor", "1e-3"}})).routed_scaling_factor, 1e-3);
  EXPECT_EQ(parse(yaml({{"routed_scaling_factor", "+2.5E+1"}})).routed_scaling_factor, 25.0);
  // Flow style and anchors are YAML too.
  MoeConfig c = parse(
      "model_config: {model_type: mixtral, num_experts: &e 8, num_experts_per_tok: 2, hidden_size: 4096,\n"
      "  moe_intermediate_size: 14336, scoring_func: softmax, norm_topk_prob: true, n_group: *e, topk_group: 8}\n");
  EXPECT_EQ(c.n_group, 8);
  EXPECT_EQ(c.model_type, ModelType::mixtral);
}

TEST(Config, SigmoidWithoutGroupsIsFine) {
  MoeConfig c = parse(yaml({{"scoring_func", "sigmoid"}, {"norm_topk_prob", "true"}}));
  EXPECT_EQ(c.scoring_func, ScoringFunc::sigmoid);
  EXPECT_EQ(c.n_group, 1);
}

TEST(Config, Qwen2MoeSharedExpertByWidthAlone) {
  MoeConfig c = parse(yaml({{"model_type", "qwen2_moe"}, {"shared_expert_intermediate_size", "5632"}}));
  EXPECT_EQ(c.n_shared_experts, 1);
  EXPECT_EQ(c.shared_expert_width(), 5632);
  EXPECT_TRUE(c.shared_expert_gated());
  MoeConfig none = parse(yaml({{"model_type", "qwen2_moe"}}));
  EXPECT_EQ(none.n_shared_experts, 0);
  EXPECT_EQ(none.shared_expert_width(), 0);
  EXPECT_FALSE(none.shared_expert_gated());
}

TEST(Config, QuantModesWithTheirDtypes) {
  EXPECT_EQ(parse(yaml({{"quant_mode", "w8a8"}, {"dtype", "bf16"}})).quant_mode, QuantMode::w8a8);
  EXPECT_EQ(parse(yaml({{"quant_mode", "w8a8"}, {"dtype", "f16"}})).quant_mode, QuantMode::w8a8);
  EXPECT_EQ(parse(yaml({{"quant_mode", "w8a8c8"}, {"dtype", "bf16"}})).quant_mode, QuantMode::w8a8c8);
}

TEST(Config, LimitsAreInclusive) {
  EXPECT_NO_THROW(parse(yaml({{"num_experts", "2048"}, {"num_experts_per_tok", "2048"}})));
  EXPECT_NO_THROW(parse(yaml({{"num_experts", "1"}, {"num_experts_per_tok", "1"}})));
  EXPECT_NO_THROW(parse(yaml({{"hidden_size", "16777216"}, {"moe_intermediate_size", "16777216"}})));
  EXPECT_NO_THROW(parse(yaml({{"moe_chunk_max_len", "268435455"}})));      // (2^31 - 1) / 8
  EXPECT_NO_THROW(parse(yaml({{"n_group", "64"}, {"topk_group", "8"}})));  // groups of one, softmax
}

TEST(Config, EnumNames) {
  EXPECT_EQ(exe_mode_name(ExeMode::ge_graph), "ge_graph");
  EXPECT_EQ(model_type_name(ModelType::qwen2_moe), "qwen2_moe");
  EXPECT_EQ(scoring_func_name(ScoringFunc::sigmoid), "sigmoid");
  EXPECT_EQ(quant_mode_name(QuantMode::w8a8c8), "w8a8c8");
  EXPECT_EQ(router_logits_dtype_name(RouterLogitsDtype::model), "model");
}

// ---- to_yaml -----------------------------------------------------------------------------------------------------

TEST(Config, ToYamlWritesEveryKeyInSpecOrder) {
  std::string y = to_yaml(MoeConfig{});
  EXPECT_EQ(y,
            "exe_mode: ge_graph\n"
            "model_config:\n"
            "  model_type: olmoe\n"
            "  enable_superkernel: true\n"
            "  num_experts: 64\n"
            "  num_experts_per_tok: 8\n"
            "  moe_chunk_max_len: 1024\n"
            "  hidden_size: 2048\n"
            "  moe_intermediate_size: 1024\n"
            "  n_shared_experts: 0\n"
            "  shared_expert_intermediate_size: 0\n"
            "  scoring_func: softmax\n"
            "  norm_topk_prob: false\n"
            "  n_group: 1\n"
            "  topk_group: 1\n"
            "  routed_scaling_factor: 1.0\n"
            "  dtype: bf16\n"
            "  quant_mode: none\n"
            "  router_logits_dtype: fp32\n");
}

TEST(Config, ToYamlRoundTrips) {
  std::vector<MoeConfig> configs;
  MoeConfig a;
  a.exe_mode = ExeMode::eager;
  a.model_type = ModelType::qwen2_moe;
  a.n_shared_experts = 1;
  a.shared_expert_intermediate_size = 5632;
  a.enable_superkernel = false;
  a.dtype = DType::f32;
  a.router_logits_dtype = RouterLogitsDtype::model;
  configs.push_back(a);
  for (double s : {0.1, 1e-7, 16.0, 2.5, 1.0 / 3.0, 123456789.125, 5e-324, 1.7976931348623157e308}) {
    MoeConfig c;
    c.routed_scaling_factor = s;
    configs.push_back(c);
  }
  MoeConfig d;
  d.model_type = ModelType::deepseek_v3;
  d.scoring_func = ScoringFunc::sigmoid;
  d.norm_topk_prob = true;
  d.num_experts = 256;
  d.n_group = 8;
  d.topk_group = 4;
  d.n_shared_experts = 1;
  d.quant_mode = QuantMode::w8a8c8;
  configs.push_back(d);
  for (const MoeConfig& c : configs) {
    ASSERT_NO_THROW(validate(c));
    std::string y = to_yaml(c);
    EXPECT_EQ(parse_config_yaml(y, "round trip"), c) << y;
  }
}

// ---- files -------------------------------------------------------------------------------------------------------

TEST(Config, LoadConfigFile) {
  TempDirectory dir;
  std::string path = dir.file("layer.yaml");
  testing::write_bytes(path, yaml({{"num_experts", "32"}}));
  EXPECT_EQ(load_config_file(path).num_experts, 32);
  testing::write_bytes(path, yaml({{"num_experts", "0"}}));
  EXPECT_THROWS_MSG(load_config_file(path), ValueError,
                    path + ":4:16: model_config.num_experts: expected 1 <= num_experts <= 2048", "got 0");
}

TEST(Config, UnreadableFilesAreIoErrors) {
  TempDirectory dir;
  std::string missing = dir.file("missing.yaml");
  EXPECT_THROWS_MSG(load_config_file(missing), IoError, "load_config_file: " + missing + ": expected a readable file",
                    "No such file or directory");
  EXPECT_THROWS_MSG(load_config_file(dir.path().string()), IoError, "expected a readable file, got a directory");
}

// ---- errors ------------------------------------------------------------------------------------------------------

TEST(ConfigErrors, YamlSyntaxHasLineAndColumn) {
  EXPECT_THROWS_MSG(parse("model_config:\n  num_experts: [1, 2\n"), IoError, "cfg.yaml:3:1: YAML: expected valid YAML",
                    "got a syntax error");
  EXPECT_THROWS_MSG(parse("model_config:\n  a: 1\n b: 2\n"), IoError, "cfg.yaml:3:", "YAML: expected valid YAML");
  EXPECT_THROWS_MSG(parse("exe_mode: eager\nmodel_config: a: b\n"), IoError,
                    "cfg.yaml:2:16: YAML: expected valid YAML");
  EXPECT_THROWS_MSG(parse("model_config: {a: 1\n"), IoError, "cfg.yaml:", "YAML: expected valid YAML");
  // yaml-cpp 0.7 loops forever on these when loading every document (jbeder/yaml-cpp#1040): found by the fuzzer.
  EXPECT_THROWS_MSG(parse(","), IoError,
                    "cfg.yaml:1:1: YAML: expected valid YAML, got a syntax error: a token that "
                    "cannot start a node");
  EXPECT_THROWS_MSG(parse(yaml() + "]\n"), IoError, "cfg.yaml:10:1: YAML: expected valid YAML");
  EXPECT_THROWS_MSG(parse(std::string(",e\0e_", 5)), IoError,
                    "cfg.yaml:1:3: YAML: expected valid YAML (printable "
                    "characters), got the control character \\x00");
  EXPECT_THROWS_MSG(parse(yaml() + "\x7f"), IoError, "cfg.yaml:10:1:", "got the control character \\x7f");
  EXPECT_NO_THROW(parse(yaml() + "# a comment\twith a tab\r\n"));
}

TEST(ConfigErrors, DocumentShape) {
  EXPECT_THROWS_MSG(parse(yaml() + "---\n" + yaml()), IoError,
                    "cfg.yaml:10:1: YAML: expected one YAML document, got a second document");
  EXPECT_THROWS_MSG(parse("---\n" + yaml() + "...\n---\n"), IoError, "cfg.yaml:12:1: YAML: expected one YAML document");
  EXPECT_THROWS_MSG(parse(""), ValueError, "cfg.yaml: (top level): expected a mapping with the key model_config",
                    "got an empty document");
  EXPECT_THROWS_MSG(parse("# only a comment\n"), ValueError, "got an empty document");
  EXPECT_THROWS_MSG(parse("- model_config\n"), ValueError, "cfg.yaml:1:1: (top level): expected a mapping",
                    "got a sequence");
  EXPECT_THROWS_MSG(parse("hello\n"), ValueError, "(top level): expected a mapping", "got hello");
  EXPECT_THROWS_MSG(parse("exe_mode: eager\n"), ValueError,
                    "cfg.yaml:1:1: model_config: expected a mapping (a required key), got no value");
  EXPECT_THROWS_MSG(parse("model_config: 3\n"), ValueError, "cfg.yaml:1:15: model_config: expected a mapping, got 3");
  EXPECT_THROWS_MSG(parse("model_config:\n"), ValueError, "model_config: expected a mapping, got null");
}

TEST(ConfigErrors, UnknownAndDuplicateKeys) {
  EXPECT_THROWS_MSG(parse(yaml() + "exe_mod: eager\n"), ValueError,
                    "cfg.yaml:10:1: exe_mod: expected a known key (exe_mode, numerics, model_config), got an unknown key "
                    "(did you mean exe_mode?)");
  EXPECT_THROWS_MSG(parse(yaml({{"num_expert", "4"}})), ValueError,
                    "cfg.yaml:10:3: model_config.num_expert: expected a known key (model_type,",
                    "got an unknown key (did you mean num_experts?)");
  EXPECT_THROWS_MSG(parse(yaml({{"banana", "4"}})), ValueError, "model_config.banana: expected a known key",
                    "got an unknown key");
  EXPECT_FALSE(testing::throws_with<ValueError>([&] { parse(yaml({{"banana", "4"}})); }, {"did you mean"}));
  EXPECT_THROWS_MSG(parse(yaml({{"Num_Experts", "4"}})), ValueError, "model_config.Num_Experts",
                    "did you mean num_experts?");  // keys are case-sensitive
  EXPECT_THROWS_MSG(parse(yaml() + "  num_experts: 64\n"), ValueError,
                    "cfg.yaml:10:3: model_config.num_experts: expected each key once, got a duplicate key");
  EXPECT_THROWS_MSG(parse(yaml() + "model_config: {}\n"), ValueError, "model_config: expected each key once");
  EXPECT_THROWS_MSG(parse("model_config:\n  [a, b]: 1\n"), ValueError,
                    "cfg.yaml:2:3: model_config.(key): expected a string key, got a sequence");
}

TEST(ConfigErrors, MissingRequiredKeys) {
  const std::pair<const char*, const char*> required[] = {
      {"model_type",
       "expected one of deepseek_v3, deepseek_v2, qwen3_moe, qwen2_moe, mixtral or olmoe (a required "
       "key), got no value"},
      {"num_experts", "expected an integer (a required key), got no value"},
      {"num_experts_per_tok", "expected an integer (a required key)"},
      {"hidden_size", "expected an integer (a required key)"},
      {"moe_intermediate_size", "expected an integer (a required key)"},
      {"scoring_func", "expected one of softmax or sigmoid (a required key)"},
      {"norm_topk_prob", "expected true or false (a required key)"}};
  for (const auto& [key, msg] : required)
    EXPECT_THROWS_MSG(parse(yaml({{key, "-"}})), ValueError,
                      std::string("cfg.yaml:3:3: model_config.") + key + ": " + msg);
}

TEST(ConfigErrors, WrongTypes) {
  // Line 4 holds num_experts, its value starts at column 16.
  EXPECT_THROWS_MSG(parse(yaml({{"num_experts", "\"64\""}})), ValueError,
                    "cfg.yaml:4:16: model_config.num_experts: expected an integer, got the string \"64\"");
  EXPECT_THROWS_MSG(parse(yaml({{"num_experts", "64.0"}})), ValueError, "num_experts: expected an integer, got 64.0");
  EXPECT_THROWS_MSG(parse(yaml({{"num_experts", "1e3"}})), ValueError, "expected an integer, got 1e3");
  EXPECT_THROWS_MSG(parse(yaml({{"num_experts", "0x40"}})), ValueError, "expected an integer, got 0x40");
  EXPECT_THROWS_MSG(parse(yaml({{"num_experts", "sixty"}})), ValueError, "expected an integer, got sixty");
  EXPECT_THROWS_MSG(parse(yaml({{"num_experts", "[64]"}})), ValueError, "expected an integer, got a sequence");
  EXPECT_THROWS_MSG(parse(yaml({{"num_experts", "{a: 1}"}})), ValueError, "expected an integer, got a mapping");
  EXPECT_THROWS_MSG(parse(yaml({{"num_experts", ""}})), ValueError,
                    "model_config.num_experts: expected an integer, got null");
  EXPECT_THROWS_MSG(parse(yaml({{"num_experts", "~"}})), ValueError, "expected an integer, got null");
  EXPECT_THROWS_MSG(parse(yaml({{"num_experts", "!!str 64"}})), ValueError,
                    "expected an integer, got the string \"64\"");
  EXPECT_THROWS_MSG(parse(yaml({{"num_experts", "99999999999999999999"}})), ValueError,
                    "num_experts: expected an integer in the int64 range, got 99999999999999999999");
  EXPECT_THROWS_MSG(parse(yaml({{"norm_topk_prob", "yes"}})), ValueError,
                    "cfg.yaml:9:19: model_config.norm_topk_prob: expected true or false, got yes");
  EXPECT_THROWS_MSG(parse(yaml({{"norm_topk_prob", "\"true\""}})), ValueError,
                    "norm_topk_prob: expected true or false, got the string \"true\"");
  EXPECT_THROWS_MSG(parse(yaml({{"enable_superkernel", "1"}})), ValueError,
                    "enable_superkernel: expected true or false, got 1");
  EXPECT_THROWS_MSG(parse(yaml({{"routed_scaling_factor", "abc"}})), ValueError,
                    "routed_scaling_factor: expected a number, got abc");
  EXPECT_THROWS_MSG(parse(yaml({{"routed_scaling_factor", ".inf"}})), ValueError, "expected a number, got .inf");
  EXPECT_THROWS_MSG(parse(yaml({{"routed_scaling_factor", ".nan"}})), ValueError, "expected a number, got .nan");
  EXPECT_THROWS_MSG(parse(yaml({{"routed_scaling_factor", "1e999"}})), ValueError,
                    "routed_scaling_factor: expected a finite number, got 1e999");
  EXPECT_THROWS_MSG(parse(yaml({{"routed_scaling_factor", "'2.5'"}})), ValueError,
                    "expected a number, got the string \"2.5\"");
  EXPECT_THROWS_MSG(parse(yaml({{"model_type", "llama"}})), ValueError,
                    "cfg.yaml:3:15: model_config.model_type: expected one of deepseek_v3, deepseek_v2, qwen3_moe, "
                    "qwen2_moe, mixtral or olmoe, got llama");
  EXPECT_THROWS_MSG(parse(yaml({{"scoring_func", "Softmax"}})), ValueError,
                    "scoring_func: expected one of softmax or sigmoid, got Softmax");
  EXPECT_THROWS_MSG(parse(yaml({{"dtype", "bfloat16"}})), ValueError,
                    "dtype: expected one of bf16, f16 or f32, got bfloat16");
  EXPECT_THROWS_MSG(parse(yaml({{"dtype", "i8"}})), ValueError, "dtype: expected one of bf16, f16 or f32, got i8");
  EXPECT_THROWS_MSG(parse(yaml({{"quant_mode", "w2a8"}})), ValueError,
                    "quant_mode: expected one of none, w8a8, w8a8c8, w4a16 or w4a8, got w2a8");
  EXPECT_THROWS_MSG(parse(yaml({{"router_logits_dtype", "bf16"}})), ValueError,
                    "router_logits_dtype: expected one of fp32 or model, got bf16");
  EXPECT_THROWS_MSG(parse(yaml({}, "fast")), ValueError,
                    "cfg.yaml:1:11: exe_mode: expected one of eager, ge_graph or graph, got fast");
  EXPECT_THROWS_MSG(parse(yaml({{"model_type", "[olmoe]"}})), ValueError, "model_type: expected one of",
                    "got a sequence");
}

TEST(ConfigErrors, OutOfRangeValues) {
  EXPECT_THROWS_MSG(
      parse(yaml({{"num_experts", "-1"}})), ValueError,
      "cfg.yaml:4:16: model_config.num_experts: expected 1 <= num_experts <= 2048 (gating_top_k's limit), got -1");
  EXPECT_THROWS_MSG(parse(yaml({{"num_experts", "2049"}, {"num_experts_per_tok", "8"}})), ValueError,
                    "num_experts <= 2048", "got 2049");
  EXPECT_THROWS_MSG(parse(yaml({{"num_experts_per_tok", "0"}})), ValueError,
                    "model_config.num_experts_per_tok: expected 1 <= num_experts_per_tok <= num_experts (64), got 0");
  EXPECT_THROWS_MSG(
      parse(yaml({{"num_experts_per_tok", "65"}})), ValueError,
      "cfg.yaml:5:24: model_config.num_experts_per_tok: expected 1 <= num_experts_per_tok <= num_experts (64), got 65");
  EXPECT_THROWS_MSG(parse(yaml({{"hidden_size", "0"}})), ValueError,
                    "model_config.hidden_size: expected 1 <= hidden_size <= 16777216, got 0");
  EXPECT_THROWS_MSG(parse(yaml({{"hidden_size", "-2048"}})), ValueError, "hidden_size: expected 1 <= hidden_size",
                    "got -2048");
  EXPECT_THROWS_MSG(
      parse(yaml({{"moe_intermediate_size", "16777217"}})), ValueError,
      "model_config.moe_intermediate_size: expected 1 <= moe_intermediate_size <= 16777216, got 16777217");
  EXPECT_THROWS_MSG(parse(yaml({{"moe_chunk_max_len", "0"}})), ValueError,
                    "model_config.moe_chunk_max_len: expected 1 <= moe_chunk_max_len <= 268435455 (moe_chunk_max_len * "
                    "num_experts_per_tok rows must fit in int32), got 0");
  EXPECT_THROWS_MSG(parse(yaml({{"moe_chunk_max_len", "268435456"}})), ValueError, "moe_chunk_max_len <= 268435455",
                    "got 268435456");
  EXPECT_THROWS_MSG(parse(yaml({{"routed_scaling_factor", "0"}})), ValueError,
                    "model_config.routed_scaling_factor: expected a finite number > 0, got 0");
  EXPECT_THROWS_MSG(parse(yaml({{"routed_scaling_factor", "-2.5"}})), ValueError,
                    "routed_scaling_factor: expected a finite number > 0, got -2.5");
}

TEST(ConfigErrors, Groups) {
  EXPECT_THROWS_MSG(parse(yaml({{"n_group", "3"}})), ValueError,
                    "model_config.n_group: expected a divisor of num_experts (64), got 3");
  EXPECT_THROWS_MSG(parse(yaml({{"n_group", "0"}})), ValueError,
                    "n_group: expected a divisor of num_experts (64), got 0");
  EXPECT_THROWS_MSG(parse(yaml({{"n_group", "128"}})), ValueError, "n_group: expected a divisor", "got 128");
  EXPECT_THROWS_MSG(parse(yaml({{"n_group", "8"}, {"topk_group", "9"}})), ValueError,
                    "cfg.yaml:11:15: model_config.topk_group: expected 1 <= topk_group <= n_group (8), got 9");
  EXPECT_THROWS_MSG(parse(yaml({{"topk_group", "2"}})), ValueError, "topk_group <= n_group (1), got 2");
  EXPECT_THROWS_MSG(parse(yaml({{"n_group", "8"}, {"topk_group", "0"}})), ValueError,
                    "topk_group: expected 1 <= topk_group", "got 0");
  EXPECT_THROWS_MSG(
      parse(yaml({{"n_group", "16"}, {"topk_group", "1"}})), ValueError,
      "model_config.num_experts_per_tok: expected num_experts_per_tok <= topk_group * num_experts / n_group "
      "= 1 * 4 = 4 (the experts of the chosen groups), got 8");
  EXPECT_NO_THROW(parse(yaml({{"n_group", "16"}, {"topk_group", "2"}})));
}

TEST(ConfigErrors, SigmoidScoring) {
  EXPECT_THROWS_MSG(parse(yaml({{"scoring_func", "sigmoid"}})), ValueError,
                    "cfg.yaml:9:19: model_config.norm_topk_prob: expected true with scoring_func sigmoid (gating_top_k "
                    "always renormalises sigmoid weights), got false");
  EXPECT_THROWS_MSG(
      parse(yaml({{"scoring_func", "sigmoid"}, {"norm_topk_prob", "true"}, {"n_group", "64"}, {"topk_group", "8"}})),
      ValueError,
      "model_config.n_group: expected num_experts / n_group >= 2 with scoring_func sigmoid (groups are "
      "ranked by their two best experts), got 64 (64 / 64 = 1)");
  EXPECT_THROWS_MSG(parse(yaml({{"num_experts", "1"},
                                {"num_experts_per_tok", "1"},
                                {"scoring_func", "sigmoid"},
                                {"norm_topk_prob", "true"}})),
                    ValueError, "n_group: expected num_experts / n_group >= 2", "got 1 (1 / 1 = 1)");
}

TEST(ConfigErrors, QuantModeNeedsItsDtype) {
  EXPECT_THROWS_MSG(
      parse(yaml({{"quant_mode", "w8a8"}, {"dtype", "f32"}})), ValueError,
      "cfg.yaml:10:15: model_config.quant_mode: expected none with dtype f32 (w8a8 experts output bf16 or "
      "f16), got w8a8");
  EXPECT_THROWS_MSG(
      parse(yaml({{"quant_mode", "w8a8c8"}, {"dtype", "f16"}})), ValueError,
      "model_config.quant_mode: expected none or w8a8 with dtype f16 (w8a8c8 needs dtype bf16), got w8a8c8");
  EXPECT_THROWS_MSG(parse(yaml({{"quant_mode", "w8a8c8"}, {"dtype", "f32"}})), ValueError, "w8a8c8 needs dtype bf16");
}

TEST(ConfigErrors, SharedExperts) {
  EXPECT_THROWS_MSG(
      parse(yaml({{"n_shared_experts", "1"}})), ValueError,
      "cfg.yaml:10:21: model_config.n_shared_experts: expected 0 for olmoe (it has no shared experts), got 1");
  EXPECT_THROWS_MSG(
      parse(yaml({{"model_type", "mixtral"}, {"shared_expert_intermediate_size", "5632"}})), ValueError,
      "model_config.shared_expert_intermediate_size: expected 0 for mixtral (it has no shared experts), got 5632");
  EXPECT_THROWS_MSG(parse(yaml({{"model_type", "qwen3_moe"}, {"n_shared_experts", "-1"}})), ValueError,
                    "n_shared_experts: expected 0 for qwen3_moe", "got -1");
  EXPECT_THROWS_MSG(parse(yaml({{"model_type", "deepseek_v2"}, {"n_shared_experts", "-1"}})), ValueError,
                    "model_config.n_shared_experts: expected 0 <= n_shared_experts <= 16384 (the shared MLP is "
                    "n_shared_experts * moe_intermediate_size wide, at most 16777216), got -1");
  EXPECT_THROWS_MSG(parse(yaml({{"model_type", "deepseek_v3"}, {"n_shared_experts", "16385"}})), ValueError,
                    "n_shared_experts <= 16384", "got 16385");
  EXPECT_THROWS_MSG(
      parse(yaml(
          {{"model_type", "deepseek_v2"}, {"n_shared_experts", "2"}, {"shared_expert_intermediate_size", "2816"}})),
      ValueError,
      "model_config.shared_expert_intermediate_size: expected 0 for deepseek_v2 (its shared experts are "
      "n_shared_experts * moe_intermediate_size wide), got 2816");
  EXPECT_THROWS_MSG(
      parse(
          yaml({{"model_type", "qwen2_moe"}, {"n_shared_experts", "2"}, {"shared_expert_intermediate_size", "5632"}})),
      ValueError, "model_config.n_shared_experts: expected 0 or 1 for qwen2_moe (one gated shared expert), got 2");
  EXPECT_THROWS_MSG(parse(yaml({{"model_type", "qwen2_moe"}, {"n_shared_experts", "1"}})), ValueError,
                    "model_config.shared_expert_intermediate_size: expected 1 <= shared_expert_intermediate_size <= "
                    "16777216 for qwen2_moe with a shared expert, got 0");
  EXPECT_THROWS_MSG(
      parse(
          yaml({{"model_type", "qwen2_moe"}, {"n_shared_experts", "0"}, {"shared_expert_intermediate_size", "5632"}})),
      ValueError, "model_config.shared_expert_intermediate_size: expected 0 when n_shared_experts is 0, got 5632");
  EXPECT_THROWS_MSG(parse(yaml({{"model_type", "qwen2_moe"}, {"shared_expert_intermediate_size", "-5"}})), ValueError,
                    "shared_expert_intermediate_size: expected 0 when n_shared_experts is 0, got -5");
}

TEST(ConfigErrors, ValidateWithoutAFile) {
  MoeConfig c;
  c.num_experts_per_tok = 65;
  EXPECT_THROWS_MSG(
      validate(c), ValueError,
      "MoeConfig: model_config.num_experts_per_tok: expected 1 <= num_experts_per_tok <= num_experts (64), got 65");
  EXPECT_THROWS_MSG(validate(c, "my layer"), ValueError, "my layer: model_config.num_experts_per_tok");
  MoeConfig d;
  d.dtype = DType::i8;
  EXPECT_THROWS_MSG(validate(d), ValueError, "MoeConfig: model_config.dtype: expected one of bf16, f16 or f32, got i8");
  MoeConfig e;
  e.model_type = static_cast<ModelType>(42);
  EXPECT_THROWS_MSG(validate(e), ValueError, "model_config.model_type: expected one of deepseek_v3", "got 42");
  MoeConfig x;
  x.exe_mode = static_cast<ExeMode>(9);
  EXPECT_THROWS_MSG(validate(x), ValueError, "MoeConfig: exe_mode: expected one of eager or ge_graph, got 9");
  MoeConfig f;
  f.routed_scaling_factor = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THROWS_MSG(validate(f), ValueError, "routed_scaling_factor: expected a finite number > 0, got nan");
  f.routed_scaling_factor = std::numeric_limits<double>::infinity();
  EXPECT_THROWS_MSG(validate(f), ValueError, "routed_scaling_factor: expected a finite number > 0, got inf");
}

TEST(ConfigErrors, CombinationErrorsPointAtTheModelConfigWhenTheKeyIsDefaulted) {
  // An error about a key given in the file points at its value (n_group on line 10)...
  EXPECT_THROWS_MSG(parse(yaml({{"n_group", "5"}})), ValueError, "cfg.yaml:10:12: model_config.n_group");
  // ...one about a key left at its default points at model_config's mapping (line 3, column 3).
  EXPECT_THROWS_MSG(parse(yaml({{"model_type", "qwen2_moe"}, {"n_shared_experts", "1"}})), ValueError,
                    "cfg.yaml:3:3: model_config.shared_expert_intermediate_size");
}

}  // namespace
}  // namespace moefuse
