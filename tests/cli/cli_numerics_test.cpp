// The numerics tier on the command line: --numerics on run / verify / bench, the config key under it, the default
// from MOEFUSE_NUMERICS (the suites run with MOEFUSE_NUMERICS=portable), what run and info say about it, verify's
// tolerance in the native tier (and that it still fails a wrong layer), and one error per way of giving a bad value.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "cli/cli_runner.h"
#include "moefuse/cpu.h"
#include "moefuse/numerics.h"

#ifdef MOEFUSE_CLI_PATH

namespace moefuse {
namespace {

using Json = nlohmann::json;
using testing::CliTest, testing::Result, testing::is_error, testing::line_starting;

// The checksum line of a run (the output's bits).
std::string checksum_of(const Result& r) { return line_starting(r.out, "checksum:"); }

TEST_F(CliTest, RunSaysWhichTierRanWhereItCameFromAndTheKernel) {
  const std::string cfg = small_config();
  Result r = moefuse("run --config '" + cfg + "' --threads 1 --iters 1");
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string line = line_starting(r.out, "tier:");
  EXPECT_EQ(line.rfind("tier:       portable (MOEFUSE_NUMERICS), expert kernel gemm_", 0), 0u) << r.out;

  Result n = moefuse("run --config '" + cfg + "' --threads 1 --iters 1 --numerics native");
  ASSERT_EQ(n.status, 0) << n.err;
  EXPECT_EQ(line_starting(n.out, "tier:").rfind("tier:       native (--numerics), expert kernel gemm_", 0), 0u);
  if (active_isa() < Isa::amx) EXPECT_EQ(checksum_of(n), checksum_of(r));  // native is portable here
  // AMX-BF16 serves the native tier only when asked (MOEFUSE_AMX_BF16=on), and only at the amx level.
  Result a = moefuse("run --config '" + cfg + "' --threads 1 --iters 1 --numerics native", "MOEFUSE_AMX_BF16=on ");
  ASSERT_EQ(a.status, 0) << a.err;
  if (active_isa() >= Isa::amx) {
    EXPECT_NE(line_starting(a.out, "tier:").find("__amx"), std::string::npos) << a.out;
    EXPECT_EQ(line_starting(n.out, "tier:").find("__amx"), std::string::npos) << n.out;
  } else {
    EXPECT_EQ(checksum_of(a), checksum_of(r));
  }

  // The config's key, and --numerics over it.
  const std::string keyed = write_text("keyed.yaml", "numerics: native\n" + testing::read_bytes(cfg));
  Result k = moefuse("run --config '" + keyed + "' --threads 1 --iters 1 --json");
  ASSERT_EQ(k.status, 0) << k.err;
  const Json e = Json::parse(k.out)["execution"];
  EXPECT_EQ(e["numerics"], "native");
  EXPECT_EQ(e["numerics_source"], "config key numerics");
  EXPECT_EQ(e["kernel"].get<std::string>().rfind("gemm_", 0), 0u) << e;
  Result o = moefuse("run --config '" + keyed + "' --threads 1 --iters 1 --numerics portable");
  ASSERT_EQ(o.status, 0) << o.err;
  EXPECT_EQ(line_starting(o.out, "tier:").rfind("tier:       portable (--numerics)", 0), 0u) << o.out;
  EXPECT_EQ(checksum_of(o), checksum_of(r));

  // MOEFUSE_NUMERICS unset: the built-in default.
  Result d = moefuse("run --config '" + cfg + "' --threads 1 --iters 1", "MOEFUSE_NUMERICS= ");
  ASSERT_EQ(d.status, 0) << d.err;
  EXPECT_EQ(line_starting(d.out, "tier:").rfind("tier:       native (default)", 0), 0u) << d.out;
}

TEST_F(CliTest, VerifyInTheNativeTierComparesWithinTheToleranceAndStillFailsAWrongLayer) {
  const std::string cfg = small_config();
  Result r = moefuse("verify --config '" + cfg + "' --numerics native --tokens 9 --iters 2 --json");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const Json j = Json::parse(r.out);
  EXPECT_EQ(j["tolerance"]["kind"], "relative_l2_per_token");
  EXPECT_EQ(j["tolerance"]["max_relative_l2"], 1.0 / 64);
  EXPECT_LE(j["max_token_relative_l2"].get<double>(), 1.0 / 64);
  EXPECT_EQ(j["routing"]["matched"], true);
  EXPECT_EQ(j["execution"]["numerics"], "native");
  EXPECT_EQ(j["pass"], true);

  Result t = moefuse("verify --config '" + cfg + "' --numerics native");
  ASSERT_EQ(t.status, 0) << t.out << t.err;
  EXPECT_EQ(line_starting(t.out, "tolerance:").find("native tier: per token"), 12u) << t.out;
  EXPECT_EQ(line_starting(t.out, "result:"), "result:     PASS");

  // The portable tier stays bitwise.
  Result p = moefuse("verify --config '" + cfg + "' --json");
  ASSERT_EQ(p.status, 0) << p.out << p.err;
  EXPECT_EQ(Json::parse(p.out)["tolerance"]["kind"], "bitwise");

  Result f = moefuse("verify --config '" + cfg + "' --numerics native", "MOEFUSE_VERIFY_FAULT=router ");
  EXPECT_EQ(f.status, 1) << f.out << f.err;
  EXPECT_EQ(line_starting(f.out, "result:"), "result:     FAIL");
}

TEST_F(CliTest, InfoSaysTheDefaultTierAndWhereItCameFrom) {
  Result r = moefuse("info");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(line_starting(r.out, "numerics:").rfind("numerics:      portable (from MOEFUSE_NUMERICS;", 0), 0u) << r.out;
  Result d = moefuse("info --json", "MOEFUSE_NUMERICS= ");
  ASSERT_EQ(d.status, 0) << d.err;
  const Json n = Json::parse(d.out)["numerics"];
  EXPECT_EQ(n["default"], "native");
  EXPECT_EQ(n["source"], "default");
  EXPECT_EQ(n["native_differs_from_portable"], active_isa() >= Isa::amx && native_amx_bf16());
}

TEST_F(CliTest, BadTiersAreOneLineErrors) {
  const std::string cfg = small_config();
  for (const char* cmd : {"run", "verify", "bench"})
    EXPECT_TRUE(is_error(moefuse(std::string(cmd) + " --config '" + cfg + "' --numerics fast"),
                         {"--numerics", "expected native or portable, got fast"}))
        << cmd;
  EXPECT_TRUE(is_error(moefuse("run --config '" + cfg + "'", "MOEFUSE_NUMERICS=exact "),
                       {"MOEFUSE_NUMERICS: expected native or portable, got \"exact\""}));
  EXPECT_TRUE(is_error(moefuse("info", "MOEFUSE_NUMERICS=exact "), {"MOEFUSE_NUMERICS"}));
  for (const char* cmd : {"info", "run --numerics native --config"})
    EXPECT_TRUE(is_error(moefuse(std::string(cmd) + (cmd[0] == 'r' ? " '" + cfg + "'" : ""), "MOEFUSE_AMX_BF16=yes "),
                         {"MOEFUSE_AMX_BF16: expected on or off (unset: off), got \"yes\""}))
        << cmd;
  const std::string bad = write_text("bad.yaml", "numerics: fast\n" + testing::read_bytes(cfg));
  EXPECT_TRUE(is_error(moefuse("run --config '" + bad + "'"), {"bad.yaml:1:11: numerics", "expected native or portable"}));
}

}  // namespace
}  // namespace moefuse

#endif  // MOEFUSE_CLI_PATH
