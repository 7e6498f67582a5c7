// Every reader opens only regular files and never blocks on a special one (a FIFO given as a config, a checkpoint,
// a shard or an .npy is an IoError at once), and configs are refused above kMaxConfigFileBytes before being read.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>

#include "io/io_test_util.h"
#include "moefuse/config.h"
#include "moefuse/error.h"
#include "moefuse/io.h"

namespace moefuse {
namespace {

namespace fs = std::filesystem;
using testing::TempDirectory;
using testing::write_bytes;

// The message of the IoError `f` throws ("" and a test failure if it throws none).
std::string io_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const IoError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no IoError";
  return {};
}

TEST(SpecialFiles, FifosAreRefusedWithoutBlocking) {
  TempDirectory dir;
  const std::string f = dir.file("x.fifo");
  ASSERT_EQ(::mkfifo(f.c_str(), 0600), 0) << std::strerror(errno);
  const std::string got = ": expected a regular file, got a FIFO";
  EXPECT_EQ(io_error([&] { load_config_file(f); }), "load_config_file: " + f + got);
  EXPECT_EQ(io_error([&] { SafetensorsFile s(f); }), "SafetensorsFile: " + f + got);
  EXPECT_EQ(io_error([&] { Checkpoint c(f); }), "SafetensorsFile: " + f + got);
  EXPECT_EQ(io_error([&] { read_npy(f); }), "read_npy: " + f + got);
  const std::string index = dir.file("i.json");
  ASSERT_EQ(::mkfifo(index.c_str(), 0600), 0);
  EXPECT_EQ(io_error([&] { Checkpoint c(index); }), "Checkpoint: " + index + got);
  // A shard named by an index.
  fs::create_directories(dir.file("ck"));
  write_bytes(dir.file("ck/model.safetensors.index.json"), R"({"weight_map": {"a": "x.safetensors"}})");
  ASSERT_EQ(::mkfifo(dir.file("ck/x.safetensors").c_str(), 0600), 0);
  EXPECT_EQ(io_error([&] { Checkpoint c(dir.file("ck")); }),
            "SafetensorsFile: " + (fs::path(dir.file("ck")) / "x.safetensors").string() + got);
}

TEST(SpecialFiles, DevicesAreNotFiles) {
  if (!fs::exists("/dev/zero")) GTEST_SKIP() << "no /dev/zero";
  EXPECT_EQ(io_error([] { load_config_file("/dev/zero"); }),
            "load_config_file: /dev/zero: expected a regular file, got a character device");
  EXPECT_EQ(io_error([] { SafetensorsFile s("/dev/zero"); }),
            "SafetensorsFile: /dev/zero: expected a regular file, got a character device");
}

TEST(SpecialFiles, ConfigsOverTheLimitAreRefusedBeforeParsing) {
  TempDirectory dir;
  // Not YAML at all: were it parsed, the error would be a YAML one.
  const std::string p = dir.file("big.yaml");
  write_bytes(p, std::string(kMaxConfigFileBytes + 1, '\t'));
  EXPECT_EQ(io_error([&] { load_config_file(p); }),
            "load_config_file: " + p + ": expected a file of at most 1048576 bytes, got 1048577 bytes");
  write_bytes(p, std::string(kMaxConfigFileBytes, '\t'));
  try {
    load_config_file(p);
    ADD_FAILURE() << "a config of tabs loaded";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).find("at most 1048576 bytes"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace moefuse
