// The files the moefuse command reads and writes, as a careless or hostile user gives them: special files (FIFOs,
// sockets, devices) as inputs and outputs, empty option values, outputs that are inputs or each other, and an output
// that cannot be written. Each is one error line, exit status 2, and nothing written or replaced.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "cli/cli_runner.h"
#include "io/io_test_util.h"
#include "layer/weights.h"
#include "moefuse/config.h"
#include "moefuse/error.h"
#include "moefuse/io.h"
#include "moefuse/layer.h"
#include "util/configs.h"
#include "util/random.h"

#ifdef MOEFUSE_CLI_PATH

namespace moefuse {
namespace {

namespace fs = std::filesystem;
using testing::CliTest;
using testing::is_error;
using testing::read_bytes;
using testing::Result;

std::string q(const std::string& s) { return "'" + s + "'"; }

class CliFilesTest : public CliTest {
 protected:
  // A small bf16 checkpoint (layer 0) of the small model, and its config.
  void SetUp() override {
    const MoeConfig c = testing::tiny_config();
    const MoeLayer layer = MoeLayer::with_random_weights(c, 5, testing::with_threads(1));
    write_safetensors(path("w.safetensors"), layer::checkpoint_tensors(c, layer.weights(), 0));
    cfg = small_config();
  }

  std::string fifo(const std::string& name) const {
    const std::string p = path(name);
    EXPECT_EQ(::mkfifo(p.c_str(), 0600), 0) << std::strerror(errno);
    return p;
  }

  // A bound Unix socket at `name` (the descriptor is left open for the test's lifetime).
  std::string socket_file(const std::string& name) {
    const std::string p = path(name);
    sock = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (p.size() >= sizeof addr.sun_path) return {};
    std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);
    EXPECT_EQ(::bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
    return p;
  }
  void TearDown() override {
    if (sock >= 0) ::close(sock);
  }

  static bool is_fifo(const std::string& p) {
    struct stat st {};
    return ::lstat(p.c_str(), &st) == 0 && S_ISFIFO(st.st_mode);
  }
  static bool is_socket(const std::string& p) {
    struct stat st {};
    return ::lstat(p.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
  }

  std::string cfg;
  int sock = -1;
};

// ---- 1. outputs never replace special files ----------------------------------------------------------------------

TEST_F(CliFilesTest, OutputsNeverReplaceFifosOrSockets) {
  const std::string f = fifo("out.fifo");
  const std::string s = socket_file("out.sock");
  ASSERT_FALSE(s.empty());
  const std::vector<std::string> before = files();
  for (const std::string& target : {f, s}) {
    const std::string kind = target == f ? "a FIFO" : "a socket";
    SCOPED_TRACE(target);
    EXPECT_TRUE(is_error(moefuse("run --config " + q(cfg) + " --tokens 1 --iters 1 --output " + q(target)),
                         {"--output: " + target + ": expected a regular file or a new file name", "got " + kind}));
    EXPECT_TRUE(is_error(moefuse("verify --config " + q(cfg) + " --tokens 1 --output " + q(target)),
                         {"--output: " + target, "got " + kind}));
    EXPECT_TRUE(is_error(moefuse("quantize --config " + q(cfg) + " --weights " + q(path("w.safetensors")) +
                                 " --out " + q(target)),
                         {"--out: " + target, "got " + kind}));
    EXPECT_TRUE(is_error(moefuse("quantize --config " + q(cfg) + " --weights " + q(path("w.safetensors")) +
                                 " --out " + q(path("q.safetensors")) + " --config-out " + q(target)),
                         {"--config-out: " + target, "got " + kind}));
    EXPECT_TRUE(is_error(moefuse("bench --config " + q(cfg) + " --tokens 1 --iters 1 --warmup 0 --paths chain --json " +
                                 q(target)),
                         {"--json: " + target, "got " + kind}));
  }
  EXPECT_TRUE(is_fifo(f));
  EXPECT_TRUE(is_socket(s));
  EXPECT_EQ(files(), before);
}

// The library's writers refuse the same way (the command's staging files are written by them).
TEST_F(CliFilesTest, WritersRefuseSpecialFiles) {
  const std::string f = fifo("lib.fifo");
  const Tensor t = Tensor::zeros(DType::f32, {2, 2});
  try {
    write_npy(f, t);
    ADD_FAILURE() << "write_npy replaced a FIFO";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("write_npy: " + f + ": expected a regular file or a new file name, got a FIFO"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(write_safetensors(f, {{"t", t}}), IoError);
  EXPECT_TRUE(is_fifo(f));
}

// ---- 2. special files as inputs never hang -----------------------------------------------------------------------

TEST_F(CliFilesTest, FifoInputsAreRefusedWithoutBlocking) {
  const std::string f = fifo("in.fifo");
  EXPECT_TRUE(is_error(moefuse("run --weights " + q(f) + " --config " + q(cfg)),
                       {"SafetensorsFile: " + f + ": expected a regular file, got a FIFO"}));
  EXPECT_TRUE(is_error(moefuse("run --config " + q(f)), {"load_config_file: " + f + ": expected a regular file, got a FIFO"}));
  EXPECT_TRUE(is_error(moefuse("run --config " + q(cfg) + " --input " + q(f)),
                       {"read_npy: " + f + ": expected a regular file, got a FIFO"}));
  EXPECT_TRUE(is_error(moefuse("quantize --config " + q(cfg) + " --weights " + q(f) + " --out " +
                               q(path("q.safetensors"))),
                       {f, "expected a regular file, got a FIFO"}));
  // A FIFO as an index, as a shard named by an index, and as a directory's model.safetensors.
  const std::string index_fifo = fifo("fifo.index.json");
  EXPECT_TRUE(is_error(moefuse("run --config " + q(cfg) + " --weights " + q(index_fifo)),
                       {index_fifo, "expected a regular file, got a FIFO"}));
  fs::create_directories(path("sharded"));
  testing::write_bytes(path("sharded/model.safetensors.index.json"),
                       R"({"weight_map": {"model.layers.0.mlp.gate.weight": "model-00001-of-00001.safetensors"}})");
  ASSERT_EQ(::mkfifo(path("sharded/model-00001-of-00001.safetensors").c_str(), 0600), 0);
  EXPECT_TRUE(is_error(moefuse("run --config " + q(cfg) + " --weights " + q(path("sharded"))),
                       {"model-00001-of-00001.safetensors: expected a regular file, got a FIFO"}));
  fs::create_directories(path("single"));
  ASSERT_EQ(::mkfifo(path("single/model.safetensors").c_str(), 0600), 0);
  EXPECT_TRUE(is_error(moefuse("run --config " + q(cfg) + " --weights " + q(path("single"))),
                       {"single/model.safetensors: expected a regular file, got a FIFO"}));
}

// ---- 3. configs: devices and oversized files refused before reading ----------------------------------------------

TEST_F(CliFilesTest, ConfigsAreRegularFilesOfAtMostOneMebibyte) {
  for (const char* dev : {"/dev/zero", "/dev/urandom"}) {
    if (!fs::exists(dev)) continue;
    EXPECT_TRUE(is_error(moefuse(std::string("run --config ") + dev),
                         {std::string("load_config_file: ") + dev + ": expected a regular file, got a character device"}));
  }
  // A valid config padded with comments to one byte over the limit; at the limit it is read.
  std::string yaml = testing::kSmallYaml;
  const std::string pad = "# " + std::string(1021, 'x') + "\n";  // 1024 bytes a line
  while (yaml.size() + pad.size() <= kMaxConfigFileBytes) yaml += pad;
  yaml += "#" + std::string(kMaxConfigFileBytes - yaml.size() - 1, 'y');
  ASSERT_EQ(yaml.size(), kMaxConfigFileBytes);
  write_text("limit.yaml", yaml);
  write_text("over.yaml", yaml + "\n");
  EXPECT_EQ(moefuse("run --config " + q(path("limit.yaml")) + " --tokens 1 --iters 1").status, 0);
  EXPECT_TRUE(is_error(moefuse("run --config " + q(path("over.yaml"))),
                       {"load_config_file: " + path("over.yaml") + ": expected a file of at most 1048576 bytes",
                        "got 1048577 bytes"}));
}

// ---- 6. an empty value is an error, never "not given" ------------------------------------------------------------

TEST_F(CliFilesTest, EmptyValuesAreErrors) {
  const std::string w = " --weights " + q(path("w.safetensors"));
  const std::string c = " --config " + q(cfg);
  struct Case {
    std::string args, fragment;
  };
  // Paths and names say "expected a non-empty value"; numbers and lists say what they expect in their own words.
  auto fragment = [](const std::string& opt) {
    for (const char* own : {"--tokens", "--layer", "--threads", "--seed", "--iters", "--warmup", "--mode", "--paths",
                            "--quant"})
      if (opt == own) return opt + ": ";
    return opt + ": expected a non-empty value, got an empty string";
  };
  std::vector<Case> cases;
  for (const std::string cmd : {"run", "verify"})
    for (const std::string opt : {"--weights", "--config", "--preset", "--input", "--output", "--tokens", "--layer",
                                  "--threads", "--seed", "--iters"})
      cases.push_back({cmd + " " + opt + " ''" + (opt == "--layer" ? w : ""), fragment(opt)});
  for (const std::string opt : {"--weights", "--out", "--config-out", "--config", "--preset", "--mode", "--layer",
                                "--threads"}) {
    std::string rest = (opt == "--weights" ? "" : w) + (opt == "--out" ? "" : " --out " + q(path("q.safetensors")));
    cases.push_back({"quantize " + opt + " ''" + rest, fragment(opt)});
  }
  for (const std::string opt : {"--json", "--plot", "--config", "--preset", "--tokens", "--paths", "--quant",
                                "--threads", "--iters", "--warmup", "--seed"})
    cases.push_back({"bench " + opt + " ''" + (opt == "--config" || opt == "--preset" ? "" : c), fragment(opt)});
  for (const Case& k : cases) {
    SCOPED_TRACE(k.args);
    EXPECT_TRUE(is_error(moefuse(k.args), {k.fragment}));
  }
  const std::vector<std::string> expected = {"small_bf16_none.yaml", "w.safetensors"};
  EXPECT_EQ(files(), expected);
}

// ---- 7. outputs are neither inputs nor each other ----------------------------------------------------------------

TEST_F(CliFilesTest, OutputsAreNeitherInputsNorEachOther) {
  const std::string w = path("w.safetensors");
  const std::string weights_bytes = read_bytes(w), cfg_bytes = read_bytes(cfg);
  write_npy(path("x.npy"), testing::Rng(3).normal_tensor(DType::f32, {2, 64}));
  fs::create_symlink(w, path("link.safetensors"));
  fs::create_hard_link(cfg, path("hard.yaml"));
  const std::string quantize = "quantize --config " + q(cfg) + " --weights " + q(w);
  const std::string run = "run --config " + q(cfg) + " --weights " + q(w) + " --tokens 1 --iters 1";
  struct Case {
    std::string args;
    std::vector<std::string> fragments;
  };
  const std::vector<Case> cases = {
      {quantize + " --out " + q(path("x.st")) + " --config-out " + q(path("x.st")),
       {"--config-out: " + path("x.st") + ": expected a file of its own", "the same file as --out"}},
      {quantize + " --out " + q(path("x.st")) + " --config-out " + q(path("./x.st")), {"the same file as --out"}},
      {quantize + " --out " + q(path("q.st")) + " --config-out " + q(w),
       {"--config-out: " + w + ": expected a file that is not an input", "the same file as --weights"}},
      {quantize + " --out " + q(w), {"--out: " + w, "the same file as --weights"}},
      {quantize + " --out " + q(path("q.st")) + " --config-out " + q(cfg), {"the same file as --config"}},
      {run + " --output " + q(w), {"--output: " + w, "the same file as --weights"}},
      {run + " --output " + q(path("link.safetensors")), {"the same file as --weights"}},
      {run + " --output " + q(cfg), {"--output: " + cfg, "the same file as --config"}},
      {run + " --output " + q(path("hard.yaml")), {"the same file as --config"}},
      {"run --config " + q(cfg) + " --input " + q(path("x.npy")) + " --output " + q(path("x.npy")),
       {"the same file as --input"}},
      {"bench --config " + q(cfg) + " --tokens 1 --iters 1 --warmup 0 --paths chain --json " + q(path("p.svg")) +
           " --plot " + q(path("p.svg")),
       {"--plot: " + path("p.svg") + ": expected a file of its own", "the same file as --json"}},
  };
  const std::vector<std::string> before = files();
  for (const Case& k : cases) {
    SCOPED_TRACE(k.args);
    Result r = moefuse(k.args);
    for (const std::string& fragment : k.fragments) EXPECT_TRUE(is_error(r, {fragment}));
    EXPECT_EQ(files(), before);
  }
  EXPECT_EQ(read_bytes(w), weights_bytes);
  EXPECT_EQ(read_bytes(cfg), cfg_bytes);
  // Distinct outputs next to the inputs are fine.
  Result ok = moefuse(quantize + " --out " + q(path("q.st")) + " --config-out " + q(path("q.yaml")));
  ASSERT_EQ(ok.status, 0) << ok.err;
  EXPECT_TRUE(fs::exists(path("q.st")));
  EXPECT_TRUE(fs::exists(path("q.yaml")));
}

// ---- 8. all outputs or none --------------------------------------------------------------------------------------

TEST_F(CliFilesTest, AnOutputThatCannotBeWrittenLeavesNoOtherOutput) {
  // /proc/self is a directory in which no file can be created, whoever runs the test (root included).
  if (!fs::is_directory("/proc/self")) GTEST_SKIP() << "no /proc";
  const std::string unwritable = "/proc/self/moefuse-q.yaml";
  const std::vector<std::string> before = files();
  EXPECT_TRUE(is_error(moefuse("quantize --config " + q(cfg) + " --weights " + q(path("w.safetensors")) + " --out " +
                               q(path("q.safetensors")) + " --config-out " + unwritable),
                       {"--config-out: " + unwritable + ": expected a writable location"}));
  EXPECT_TRUE(is_error(moefuse("bench --config " + q(cfg) + " --tokens 1 --iters 1 --warmup 0 --paths chain --json " +
                               q(path("b.json")) + " --plot /proc/self/moefuse-b.svg"),
                       {"--plot: /proc/self/moefuse-b.svg: expected a writable location"}));
  EXPECT_EQ(files(), before);
}

}  // namespace
}  // namespace moefuse

#endif  // MOEFUSE_CLI_PATH
