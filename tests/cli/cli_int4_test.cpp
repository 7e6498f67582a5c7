// `moefuse quantize --mode w4a16` (and w4a8) and `moefuse run` / `verify` on what it writes: GPTQ's int4 tensors,
// read back to the weights a layer quantised on load holds, and the same output from either.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli/cli_runner.h"
#include "moefuse/config.h"
#include "moefuse/io.h"
#include "moefuse/layer.h"
#include "util/compare.h"
#include "util/random.h"

#ifdef MOEFUSE_CLI_PATH

namespace moefuse {
namespace {

using testing::CliTest;
using testing::is_error;
using testing::line_starting;
using testing::Result;
using testing::Rng;

// The layer both quantize tests write: 8 experts, top-2, H 64, I 32 (the seed's other keys).
MoeConfig eight_small_experts() {
  MoeConfig c;
  c.num_experts = 8;
  c.num_experts_per_tok = 2;
  c.hidden_size = 64;
  c.moe_intermediate_size = 32;
  return c;
}

TEST_F(CliTest, QuantizeW4a16WritesGptqTensorsThatRunReadsBack) {
  const MoeConfig c = eight_small_experts();
  MoeLayer float_layer = MoeLayer::with_random_weights(c, 31, {.threads = 1});
  write_safetensors(path("float.safetensors"), layer_checkpoint_tensors(c, float_layer.weights(), 1));
  write_npy(path("x.npy"), Rng(14).normal_tensor(DType::f32, {5, 64}));

  for (const bool asym : {false, true}) {
    SCOPED_TRACE(asym ? "asymmetric" : "symmetric");
    const std::string q = path(asym ? "q_asym.safetensors" : "q_sym.safetensors");
    Result r = moefuse("quantize --config '" + small_config() + "' --mode w4a16 --group-size 32" +
                       (asym ? " --asymmetric" : "") + " --weights '" + path("float.safetensors") +
                       "' --layer 1 --out '" + q + "' --config-out '" + path("q4.yaml") + "'");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(line_starting(r.out, "quantised:"),
              std::string("quantised:  w4a16, int4 weights in GPTQ's format (qweight, qzeros, scales, g_idx), round to "
                          "nearest, group size 32, ") +
                  (asym ? "asymmetric (a zero point per group)" : "symmetric"));
    const MoeConfig qc = load_config_file(path("q4.yaml"));
    EXPECT_EQ(qc.quant_mode, QuantMode::w4a16);
    EXPECT_EQ(qc.quant_group_size, 32);
    EXPECT_EQ(qc.quant_symmetric, !asym);

    // GPTQ's names, dtypes and shapes.
    const Checkpoint ck(q);
    const std::string e7 = "model.layers.1.mlp.experts.7.down_proj.";
    EXPECT_FALSE(ck.has(e7 + "weight"));
    EXPECT_EQ(ck.get(e7 + "qweight").dtype(), DType::i32);
    EXPECT_EQ(ck.get(e7 + "qweight").shape(), Shape({32 / 8, 64}));
    EXPECT_EQ(ck.get(e7 + "qzeros").shape(), Shape({1, 64 / 8}));
    EXPECT_EQ(ck.get(e7 + "scales").dtype(), DType::f16);
    EXPECT_EQ(ck.get(e7 + "scales").shape(), Shape({1, 64}));
    EXPECT_EQ(ck.get(e7 + "g_idx").shape(), Shape({32}));
    EXPECT_EQ(ck.get("model.layers.1.mlp.gate.weight").dtype(), DType::bf16);

    // The same weights as a layer quantised on load, and the same output from either through `run`.
    const MoeLayer on_load = MoeLayer::from_checkpoint(qc, Checkpoint(path("float.safetensors")), 1, {.threads = 1});
    const MoeLayer from_file = MoeLayer::from_checkpoint(qc, ck, 1, {.threads = 1});
    EXPECT_TENSOR_EQ(on_load.weights().w13, from_file.weights().w13);
    EXPECT_TENSOR_EQ(on_load.weights().w13_zero, from_file.weights().w13_zero);
    EXPECT_TENSOR_EQ(on_load.weights().w2_scale, from_file.weights().w2_scale);
    Result a = moefuse("run --config '" + path("q4.yaml") + "' --weights '" + q + "' --layer 1 --input '" +
                       path("x.npy") + "' --output '" + path("a.npy") + "'");
    Result b = moefuse("run --config '" + path("q4.yaml") + "' --weights '" + path("float.safetensors") +
                       "' --layer 1 --input '" + path("x.npy") + "' --output '" + path("b.npy") + "'");
    ASSERT_EQ(a.status, 0) << a.err;
    ASSERT_EQ(b.status, 0) << b.err;
    EXPECT_NE(line_starting(a.out, "numerics:").find("quant w4a16"), std::string::npos) << a.out;
    EXPECT_TENSOR_EQ(read_npy(path("b.npy")), read_npy(path("a.npy")));
    Result v = moefuse("verify --config '" + path("q4.yaml") + "' --weights '" + q + "' --layer 1");
    EXPECT_EQ(v.status, 0) << v.out << v.err;
  }
  Result j = moefuse("quantize --config '" + small_config() + "' --mode w4a16 --group-size 32 --weights '" +
                     path("float.safetensors") + "' --layer 1 --out '" + path("q.safetensors") + "' --json");
  ASSERT_EQ(j.status, 0) << j.err;
  const nlohmann::json info = nlohmann::json::parse(j.out);
  EXPECT_EQ(info["quant_mode"], "w4a16");
  EXPECT_EQ(info["group_size"], 32);
  EXPECT_EQ(info["symmetric"], true);
  EXPECT_EQ(info["tensors"], 1 + 8 * 3 * 4);

  // The default group size (128) does not divide I = 32: refused before anything is read or written.
  EXPECT_TRUE(is_error(moefuse("quantize --config '" + small_config() + "' --mode w4a16 --weights '" +
                               path("float.safetensors") + "' --out '" + path("bad.safetensors") + "'"),
                       {"quant_group_size", "dividing the hidden_size (64)", "got 128"}));
  EXPECT_TRUE(is_error(moefuse("quantize --config '" + small_config() + "' --mode w8a8 --group-size 32 --weights '" +
                               path("float.safetensors") + "' --out '" + path("bad.safetensors") + "'"),
                       {"--group-size", "expected --mode w4a16"}));
}

// w4a8 writes the w4a16 tensors; the activation mode is in the metadata and the config it writes, and `run` with that
// config gives what a w4a8 layer quantised on load gives.
TEST_F(CliTest, QuantizeW4a8WritesGptqTensorsThatRunReadsBackAsW4a8) {
  const MoeConfig c = eight_small_experts();
  MoeLayer float_layer = MoeLayer::with_random_weights(c, 32, {.threads = 1});
  write_safetensors(path("float.safetensors"), layer_checkpoint_tensors(c, float_layer.weights(), 0));
  write_npy(path("x.npy"), Rng(15).normal_tensor(DType::f32, {6, 64}));
  const std::string q = path("q8.safetensors");
  Result r = moefuse("quantize --config '" + small_config() + "' --mode w4a8 --group-size 32 --asymmetric --weights '" +
                     path("float.safetensors") + "' --out '" + q + "' --config-out '" + path("q8.yaml") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  const MoeConfig qc = load_config_file(path("q8.yaml"));
  EXPECT_EQ(qc.quant_mode, QuantMode::w4a8);
  EXPECT_EQ(qc.quant_group_size, 32);
  const Checkpoint ck(q);
  const SafetensorsFile file(q);
  EXPECT_EQ(file.metadata().at("moefuse_quant_mode"), "w4a8");
  EXPECT_EQ(file.metadata().at("quant_method"), "gptq");
  EXPECT_EQ(ck.get("model.layers.0.mlp.experts.3.up_proj.qweight").shape(), Shape({64 / 8, 32}));
  Result a = moefuse("run --config '" + path("q8.yaml") + "' --weights '" + q + "' --input '" + path("x.npy") +
                     "' --output '" + path("a.npy") + "'");
  Result b = moefuse("run --config '" + path("q8.yaml") + "' --weights '" + path("float.safetensors") + "' --input '" +
                     path("x.npy") + "' --output '" + path("b.npy") + "'");
  ASSERT_EQ(a.status, 0) << a.err;
  ASSERT_EQ(b.status, 0) << b.err;
  EXPECT_NE(line_starting(a.out, "numerics:").find("quant w4a8"), std::string::npos) << a.out;
  EXPECT_TENSOR_EQ(read_npy(path("b.npy")), read_npy(path("a.npy")));
  Result v = moefuse("verify --config '" + path("q8.yaml") + "' --weights '" + q + "'");
  EXPECT_EQ(v.status, 0) << v.out << v.err;
}

}  // namespace
}  // namespace moefuse

#endif  // MOEFUSE_CLI_PATH
