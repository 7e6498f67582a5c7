// `moefuse run`, `verify` and `info` on a model folder as shipped (tests/data/models/): no moefuse config needed,
// the same checksum as the same layer run with an explicit config, and errors that name the MoE layers and keys.
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/cli_runner.h"
#include "moefuse/io.h"
#include "moefuse/model.h"
#include "util/compare.h"
#include "util/fp8_checkpoint.h"
#include "util/gptq_folder.h"
#include "util/model_families.h"

#ifdef MOEFUSE_CLI_PATH

namespace moefuse::testing {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

class CliModel : public CliTest {};

// The checkpoint of a folder without its config.json: the single file or the index.
std::string checkpoint_file(const std::string& family) {
  const fs::path d = model_dir(family);
  return fs::exists(d / "model.safetensors") ? (d / "model.safetensors").string()
                                             : (d / "model.safetensors.index.json").string();
}

TEST_F(CliModel, RunOnAFolderEqualsTheExplicitConfig) {
  for (const Family& f : kFamilies) {
    SCOPED_TRACE(f.name);
    const std::string yaml = write_text(std::string(f.name) + ".yaml", f.yaml);
    for (int64_t l : f.moe_layers) {
      const std::string layer = " --layer " + std::to_string(l) + " --tokens 9 --iters 1 --json --threads 2";
      const Result a = moefuse("run --weights " + model_dir(f.name) + layer);
      const Result b = moefuse("run --weights " + checkpoint_file(f.name) + " --config " + yaml + layer);
      ASSERT_EQ(a.status, 0) << a.err;
      ASSERT_EQ(b.status, 0) << b.err;
      const Json ja = Json::parse(a.out), jb = Json::parse(b.out);
      EXPECT_EQ(ja["checksum"], jb["checksum"]);
      EXPECT_EQ(ja["model"]["model_type"], f.name);
      EXPECT_NE(ja["model"]["source"].get<std::string>().find("config.json, layer " + std::to_string(l)),
                std::string::npos);
    }
  }
}

TEST_F(CliModel, VerifyOnAFolderPasses) {
  const Result r = moefuse("verify --weights " + model_dir("deepseek_v3") + " --layer 2 --tokens 5 --iters 1");
  EXPECT_EQ(r.status, 0) << r.err << r.out;
}

TEST_F(CliModel, ExecutionKeysFromAConfigBesideTheFolder) {
  const Family& f = kFamilies[0];
  std::string y = f.yaml;
  y = "exe_mode: eager\n" + y + "  moe_chunk_max_len: 3\n  enable_superkernel: false\n";
  const std::string yaml = write_text("exec.yaml", y);
  const Result r = moefuse("run --weights " + model_dir(f.name) + " --config " + yaml + " --tokens 7 --iters 1 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const Json j = Json::parse(r.out);
  EXPECT_EQ(j["model"]["exe_mode"], "eager");
  EXPECT_EQ(j["model"]["moe_chunk_max_len"], 3);
  EXPECT_EQ(j["chunks"], 3);
  const Result plain = moefuse("run --weights " + model_dir(f.name) + " --tokens 7 --iters 1 --json");
  EXPECT_EQ(Json::parse(plain.out)["checksum"], j["checksum"]);
  // A model key that disagrees with config.json names both.
  y.replace(y.find("num_experts: 8"), 14, "num_experts: 4");
  EXPECT_TRUE(is_error(moefuse("run --weights " + model_dir(f.name) + " --config " + write_text("bad.yaml", y)),
                       {"bad.yaml: model_config.num_experts: expected 8 (as ", "config.json says), got 4"}));
  EXPECT_TRUE(is_error(moefuse("run --weights " + model_dir(f.name) + " --preset deepseek-v3"),
                       {"preset deepseek-v3: model_config.model_type: expected qwen3_moe"}));
}

TEST_F(CliModel, DenseLayerNamesTheMoeLayers) {
  EXPECT_TRUE(is_error(moefuse("run --weights " + model_dir("deepseek_v3") + " --layer 0"),
                       {"config.json: --layer: expected one of the MoE layers 1, 2 (of 3 decoder layers), got 0 (a "
                        "dense layer)"}));
}

TEST_F(CliModel, UnknownModelTypeListsTheKnownOnes) {
  const fs::path d = dir.path() / "llama";
  fs::create_directories(d);
  fs::copy_file(fs::path(model_dir("mixtral")) / "model.safetensors", d / "model.safetensors");
  write_bytes((d / "config.json").string(), R"({"model_type": "llama", "hidden_size": 32})");
  EXPECT_TRUE(is_error(moefuse("run --weights " + d.string()),
                       {"config.json: model_type: expected one of the MoE families moefuse reads: deepseek_v2, "
                        "deepseek_v3, mixtral, olmoe, qwen2_moe, qwen3_moe, got \"llama\""}));
  EXPECT_TRUE(is_error(moefuse("info --weights " + d.string()), {"got \"llama\""}));
}

TEST_F(CliModel, InfoShowsTheModel) {
  const Result r = moefuse("info --weights " + model_dir("qwen2_moe") + " --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const Json j = Json::parse(r.out);
  EXPECT_EQ(j["model"]["model_type"], "qwen2_moe");
  EXPECT_EQ(j["num_hidden_layers"], 4);
  EXPECT_EQ(j["checkpoint_files"], 3);
  ASSERT_EQ(j["moe_layers"].size(), 2u);
  EXPECT_EQ(j["moe_layers"][0]["layer"], 1);
  EXPECT_EQ(j["moe_layers"][1]["layer"], 3);
  // router [6, 32] + 6 experts x 3 x [16, 32] + shared 3 x [32, 32] + shared gate [1, 32], bf16.
  const int64_t bytes = (6 * 32 + 6 * 3 * 16 * 32 + 3 * 32 * 32 + 32) * 2;
  EXPECT_EQ(j["moe_layers"][0]["checkpoint_bytes"], bytes);
  EXPECT_EQ(j["moe_layers"][0]["resident_bytes"], bytes);
  const Result text = moefuse("info --weights " + model_dir("qwen2_moe"));
  ASSERT_EQ(text.status, 0) << text.err;
  EXPECT_NE(text.out.find("4 decoder layers, 2 MoE: 1, 3"), std::string::npos) << text.out;
}

// FP8 block-scaled folders: run's output is the oracle's (dequantise in fp32, round to bf16, the float layer) bit
// for bit, verify passes, info names the block size and reads about half the bytes of the float folder.
TEST_F(CliModel, Fp8FolderRunsAsTheOracle) {
  const std::pair<const char*, int64_t> cases[] = {{"qwen3_moe_fp8", 2}, {"deepseek_v3_fp8", 1}};
  const int64_t blocks[][2] = {{128, 128}, {8, 12}};
  for (size_t i = 0; i < 2; ++i) {
    const auto [name, l] = cases[i];
    SCOPED_TRACE(name);
    const Tensor x = random_tokens(6, 32, 3, DType::bf16);
    write_npy(path("x.npy"), x.to(DType::f32));
    const Result r = moefuse("run --weights " + model_dir(name) + " --layer " + std::to_string(l) + " --input " +
                             path("x.npy") + " --output " + path("y.npy") + " --iters 1 --threads 2");
    ASSERT_EQ(r.status, 0) << r.err;
    const MoeLayer layer = load_model_layer(model_dir(name), l, {.threads = 1});
    const LayerWeights oracle =
        fp8_oracle_weights(layer.config(), Checkpoint(model_dir(name)), l, layer.weights(), blocks[i][0], blocks[i][1]);
    EXPECT_TRUE(tensors_equal(reference_layer_forward(layer.config(), oracle, x).to(DType::f32), read_npy(path("y.npy"))));
    const Result v = moefuse("verify --weights " + model_dir(name) + " --layer " + std::to_string(l) + " --tokens 5");
    EXPECT_EQ(v.status, 0) << v.err << v.out;
    const Result info = moefuse("info --weights " + model_dir(name) + " --json");
    ASSERT_EQ(info.status, 0) << info.err;
    const Json j = Json::parse(info.out);
    EXPECT_EQ(j["fp8_weight_block"], Json({blocks[i][0], blocks[i][1]}));
    const Json float_info = Json::parse(moefuse("info --weights " + model_dir(name == std::string("qwen3_moe_fp8") ? "qwen3_moe" : "deepseek_v3") + " --json").out);
    const double ratio = j["moe_layers"][0]["checkpoint_bytes"].get<double>() /
                         float_info["moe_layers"][0]["checkpoint_bytes"].get<double>();
    EXPECT_LT(ratio, 0.75);  // experts at 1 byte (plus scales) instead of 2; the router stays bf16
    // Resident: qwen3_moe_fp8's [128, 128] blocks are held one byte; deepseek_v3_fp8's [8, 12] are dequantised.
    const bool one_byte = i == 0;
    EXPECT_EQ(j["moe_layers"][0]["fp8_one_byte"], one_byte);
    const int64_t resident = j["moe_layers"][0]["resident_bytes"], float_resident = float_info["moe_layers"][0]["resident_bytes"];
    if (one_byte) EXPECT_LT(resident, float_resident * 3 / 4);
    else EXPECT_EQ(resident, float_resident);
  }
  EXPECT_NE(moefuse("info --weights " + model_dir("qwen3_moe_fp8"))
                .out.find("fp8:        expert weights float8 e4m3 with block scales [128, 128] (held one byte per weight"),
            std::string::npos);
  EXPECT_NE(moefuse("info --weights " + model_dir("deepseek_v3_fp8"))
                .out.find("fp8:        expert weights float8 e4m3 with block scales [8, 12] (dequantised to bf16 on "
                          "load: blocks of 12 input channels do not fit the kernels' 128)"),
            std::string::npos);
}

TEST_F(CliModel, QuantizeAWholeModelAndRunIt) {
  const std::string out = path("v3-w8a8");
  const Result q = moefuse("quantize --weights " + model_dir("deepseek_v3") + " --out " + out + " --json --threads 2");
  ASSERT_EQ(q.status, 0) << q.err;
  EXPECT_EQ(q.err, "");  // no progress bar: stderr is not a terminal
  const Json j = Json::parse(q.out);
  EXPECT_EQ(j["quant_mode"], "w8a8");
  EXPECT_EQ(j["layers"], Json::parse("[1, 2]"));
  EXPECT_EQ(j["files"], Json::parse(R"(["config.json", "model-00001-of-00003.safetensors",
    "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors", "model.safetensors.index.json"])"));
  for (int64_t l : {1, 2}) {
    const Result r = moefuse("run --weights " + out + " --layer " + std::to_string(l) + " --iters 1 --json");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(Json::parse(r.out)["model"]["quant_mode"], "w8a8");
    // The float folder quantised on load gives the same bits.
    const std::string yaml = write_text("v3q.yaml", std::string(kFamilies[5].yaml) + "  quant_mode: w8a8\n");
    const Result on_load = moefuse("run --weights " + model_dir("deepseek_v3") + " --config " + yaml + " --layer " +
                                   std::to_string(l) + " --iters 1 --json");
    ASSERT_EQ(on_load.status, 0) << on_load.err;
    EXPECT_EQ(Json::parse(r.out)["checksum"], Json::parse(on_load.out)["checksum"]);
  }
  const Result text = moefuse("quantize --weights " + model_dir("qwen3_moe") + " --out " + path("q3") +
                              " --mode w8a8c8 --layers 2");
  ASSERT_EQ(text.status, 0) << text.err;
  EXPECT_NE(text.out.find("quantised:  w8a8c8, layers 2"), std::string::npos) << text.out;
  const Result info = moefuse("info --weights " + path("q3") + " --json");
  ASSERT_EQ(info.status, 0) << info.err;
  EXPECT_EQ(Json::parse(info.out)["moe_layers"][0]["quant_mode"], "none");
  EXPECT_EQ(Json::parse(info.out)["moe_layers"][1]["quant_mode"], "w8a8c8");
}

TEST_F(CliModel, QuantizeErrors) {
  const std::string v3 = model_dir("deepseek_v3");
  EXPECT_TRUE(is_error(moefuse("quantize --weights " + v3 + " --out " + path("o") + " --layers 0"),
                       {"quantize_model: layers: expected distinct MoE layers of", "(1, 2), got 0"}));
  EXPECT_TRUE(is_error(moefuse("quantize --weights " + v3 + " --out " + path("o") + " --layers 1-x"),
                       {"--layers: expected layer numbers and ranges separated by commas (e.g. 3,5-7), got 1-x"}));
  EXPECT_TRUE(is_error(moefuse("quantize --weights " + v3 + " --out " + path("o") + " --layer 1"),
                       {"--layer: expected --layers for a model folder"}));
  EXPECT_TRUE(is_error(moefuse("quantize --weights " + v3 + " --out " + v3 + "/q"),
                       {"quantize_model: out_dir: expected a directory outside the input folder", "(inside it)"}));
  EXPECT_FALSE(fs::exists(v3 + "/q"));
  EXPECT_TRUE(is_error(moefuse("quantize --weights " + checkpoint_file("qwen3_moe") + " --preset default --out " +
                               path("o.safetensors") + " --layers 1"),
                       {"--layers: expected a model folder as --weights"}));
  EXPECT_TRUE(files().empty());
}

// A whole float folder quantised to int4 (a GPTQ folder), then run, verified and shown from that folder alone; the
// same layer from a GPTQ folder packed independently runs as its explicit w4a16 config.
// The derived qwen2_moe folder's config (expert width 32) with an int4 quant_mode, group size 32 and `extra` lines.
std::string qwen2_yaml(const std::string& mode, const std::string& extra) {
  return R"(model_config:
  model_type: qwen2_moe
  num_experts: 6
  num_experts_per_tok: 2
  hidden_size: 32
  moe_intermediate_size: 32
  shared_expert_intermediate_size: 32
  scoring_func: softmax
  norm_topk_prob: false
  dtype: bf16
  quant_mode: )" + mode + "\n  quant_group_size: 32\n" + extra;
}

TEST_F(CliModel, Int4FolderQuantizeRunVerifyInfo) {
  write_derived_folder(DerivedFolder{.family = "qwen2_moe", .gptq = false}, path("float"));
  const std::string out = path("int4");
  const Result q = moefuse("quantize --weights " + path("float") + " --out " + out +
                           " --mode w4a8 --group-size 32 --asymmetric --json --threads 2");
  ASSERT_EQ(q.status, 0) << q.err;
  const Json j = Json::parse(q.out);
  EXPECT_EQ(j["quant_mode"], "w4a8");
  EXPECT_EQ(j["group_size"], 32);
  EXPECT_EQ(j["symmetric"], false);
  EXPECT_EQ(j["layers"], Json::parse("[1, 3]"));
  const std::string yaml = write_text("q.yaml", qwen2_yaml("w4a8", "  quant_symmetric: false\n"));
  for (int64_t l : {1, 3}) {
    const std::string layer = " --layer " + std::to_string(l) + " --tokens 7 --iters 1 --json --threads 2";
    const Result r = moefuse("run --weights " + out + layer);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(Json::parse(r.out)["model"]["quant_mode"], "w4a8");
    // The float folder quantised on load gives the same bits.
    const Result on_load = moefuse("run --weights " + path("float") + "/model.safetensors --config " + yaml + layer);
    ASSERT_EQ(on_load.status, 0) << on_load.err;
    EXPECT_EQ(Json::parse(r.out)["checksum"], Json::parse(on_load.out)["checksum"]);
    const Result v = moefuse("verify --weights " + out + " --layer " + std::to_string(l) + " --tokens 5");
    EXPECT_EQ(v.status, 0) << v.err << v.out;
  }
  const Result info = moefuse("info --weights " + out + " --json");
  ASSERT_EQ(info.status, 0) << info.err;
  const Json ji = Json::parse(info.out);
  EXPECT_EQ(ji["gptq"], Json::parse(R"({"quant_method": "gptq", "bits": 4, "group_size": 32, "sym": false,
                                        "desc_act": false, "checkpoint_format": "gptq"})"));
  EXPECT_EQ(ji["moe_layers"][0]["quant_mode"], "w4a8");
  const Result text = moefuse("info --weights " + out);
  EXPECT_NE(text.out.find("gptq:       int4 experts (w4a8), group size 32, asymmetric"), std::string::npos) << text.out;
  // Refusals of the folder path: a mode without groups, an already quantised input.
  EXPECT_TRUE(is_error(moefuse("quantize --weights " + path("float") + " --out " + path("x") + " --group-size 32"),
                       {"--group-size: expected --mode w4a16 or w4a8 (int4 groups), got quant_mode w8a8"}));
  EXPECT_TRUE(is_error(moefuse("quantize --weights " + out + " --out " + path("x") + " --mode w4a16"),
                       {"expected a float model, got one already quantised (w4a8)"}));
  EXPECT_FALSE(fs::exists(path("x")));

  // A GPTQ folder packed here: run from the folder = run with the explicit config.
  write_derived_folder(DerivedFolder{.family = "qwen2_moe", .quantization_json = R"({"quant_method": "gptq", "bits": 4,
    "group_size": 32, "sym": false, "desc_act": true})"}, path("gptq"));
  const std::string w4a16 = write_text("w4a16.yaml", qwen2_yaml("w4a16", "  quant_symmetric: false\n"));
  const std::string layer = " --layer 3 --tokens 7 --iters 1 --json --threads 2";
  const Result a = moefuse("run --weights " + path("gptq") + layer);
  const Result b = moefuse("run --weights " + path("gptq") + "/model.safetensors --config " + w4a16 + layer);
  ASSERT_EQ(a.status, 0) << a.err;
  ASSERT_EQ(b.status, 0) << b.err;
  EXPECT_EQ(Json::parse(a.out)["checksum"], Json::parse(b.out)["checksum"]);
  EXPECT_EQ(moefuse("verify --weights " + path("gptq") + " --layer 1 --tokens 4").status, 0);
  // --config beside the folder: execution keys only, its groups must agree.
  const Result c = moefuse("run --weights " + path("gptq") + " --config " + w4a16 + layer);
  ASSERT_EQ(c.status, 0) << c.err;
  EXPECT_EQ(Json::parse(a.out)["checksum"], Json::parse(c.out)["checksum"]);
  const std::string sym = write_text("sym.yaml", qwen2_yaml("w4a16", ""));
  EXPECT_TRUE(is_error(moefuse("run --weights " + path("gptq") + " --config " + sym + layer),
                       {"model_config.quant_symmetric: expected false (as", "got true"}));
}

}  // namespace
}  // namespace moefuse::testing

#endif  // MOEFUSE_CLI_PATH
