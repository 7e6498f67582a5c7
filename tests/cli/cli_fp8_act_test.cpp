// `moefuse run` on an FP8 model folder with fp8_activations: dynamic_1x128 given beside it (an execution option of
// the folder): the FP8-activation chain runs (its kernel, the decode path's reason and the key printed), decode and
// prefill give the same bits, and they differ from the bf16-activation run; on random bf16 weights the key is an
// error naming it.
#include <string>

#include "cli/cli_runner.h"
#include "util/model_families.h"

#ifdef MOEFUSE_CLI_PATH

namespace moefuse::testing {
namespace {

class CliFp8Act : public CliTest {};

std::string checksum(const std::string& out) {
  const size_t p = out.find("checksum:");
  return p == std::string::npos ? "" : out.substr(p, out.find('\n', p) - p);
}

// qwen3_moe's explicit config (the folder's model keys) with the execution key.
std::string qwen_yaml() {
  for (const Family& f : kFamilies)
    if (std::string(f.name) == "qwen3_moe") return std::string(f.yaml) + "  fp8_activations: dynamic_1x128\n";
  return "";
}

TEST_F(CliFp8Act, RunsOnAnFp8FolderAndRefusesOtherWeights) {
  const std::string yaml = write_text("fp8a.yaml", qwen_yaml());
  const std::string dir = model_dir("qwen3_moe_fp8");
  const Result decode = moefuse("run --weights " + dir + " --layer 0 --tokens 5 --iters 1 --config " + yaml);
  ASSERT_EQ(decode.status, 0) << decode.err;
  EXPECT_NE(decode.out.find("expert kernel gemm_fp8a_fp8w_f32"), std::string::npos) << decode.out;
  EXPECT_NE(decode.out.find("path chain: fp8 activations (dynamic_1x128) run on the operator chain"), std::string::npos)
      << decode.out;
  EXPECT_NE(decode.out.find(", fp8 activations dynamic_1x128\n"), std::string::npos) << decode.out;  // numerics line
  const Result prefill = moefuse("run --weights " + dir + " --layer 0 --tokens 5 --iters 1 --prefill --config " + yaml);
  ASSERT_EQ(prefill.status, 0) << prefill.err;
  EXPECT_EQ(checksum(decode.out), checksum(prefill.out));
  const Result plain = moefuse("run --weights " + dir + " --layer 0 --tokens 5 --iters 1");
  ASSERT_EQ(plain.status, 0) << plain.err;
  EXPECT_NE(checksum(plain.out), checksum(decode.out));
  EXPECT_EQ(plain.out.find("fp8 activations"), std::string::npos) << plain.out;  // said only when not none
  EXPECT_TRUE(is_error(moefuse("run --tokens 3 --config " + yaml), {"fp8_activations", "got dynamic_1x128"}));
}

}  // namespace
}  // namespace moefuse::testing

#endif
