// What the tests of the moefuse command share: a fixture that runs the built binary as a subprocess in a temporary
// directory, the small model's YAML, and checks of its output and of its one-line errors.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "io/io_test_util.h"

// tests/CMakeLists.txt passes the command's path as MOEFUSE_CLI_PATH when the tools are built
// (MOEFUSE_BUILD_TOOLS); without them there is nothing to test.
#ifdef MOEFUSE_CLI_PATH

namespace moefuse::testing {

struct Result {
  int status = -1;
  std::string out, err;
};

// The small model every test runs: olmoe routing, H 64, I 32, E 8, K 2.
inline constexpr const char* kSmallYaml = R"(exe_mode: ge_graph
model_config:
  model_type: olmoe
  num_experts: 8
  num_experts_per_tok: 2
  hidden_size: 64
  moe_intermediate_size: 32
  scoring_func: softmax
  norm_topk_prob: false
  dtype: bf16
)";

// 1.6 TB of weights (64 experts of 65536 x 65536): more than any machine has, refused before anything is allocated.
inline constexpr const char* kHugeYaml = R"(model_config:
  model_type: olmoe
  num_experts: 64
  num_experts_per_tok: 8
  hidden_size: 65536
  moe_intermediate_size: 65536
  scoring_func: softmax
  norm_topk_prob: false
)";

class CliTest : public ::testing::Test {
 protected:
  TempDirectory dir;


  std::string path(const std::string& name) const { return dir.file(name); }

  // Runs `moefuse <args>` with stdout and stderr captured in files (so stderr is not a terminal: no progress bar),
  // after the shell commands `setup` (e.g. ulimit) when given.
  Result moefuse(const std::string& args, const std::string& setup = "") const {
    const std::string out = path("stdout.txt"), err = path("stderr.txt");
    const std::string cmd = setup + std::string("'") + MOEFUSE_CLI_PATH + "' " + args + " >'" + out + "' 2>'" + err + "'";
    const int raw = std::system(cmd.c_str());
    Result r;
    r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    r.out = read_bytes(out);
    r.err = read_bytes(err);
    std::filesystem::remove(out);
    std::filesystem::remove(err);
    return r;
  }

  std::string write_text(const std::string& name, const std::string& text) const {
    write_bytes(path(name), text);
    return path(name);
  }

  std::string small_config(const std::string& extra_dtype = "bf16", const std::string& quant = "none") const {
    std::string y = kSmallYaml;
    y.replace(y.find("dtype: bf16"), std::string("dtype: bf16").size(), "dtype: " + extra_dtype);
    y += "  quant_mode: " + quant + "\n";
    return write_text("small_" + extra_dtype + "_" + quant + ".yaml", y);
  }

  // The entries of the temporary directory, for "nothing was written" checks.
  std::vector<std::string> files() const { return dir.listing(); }
};

// The line of `text` that starts with `prefix` (empty if none).
inline std::string line_starting(const std::string& text, const std::string& prefix) {
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    if (text.compare(at, prefix.size(), prefix) == 0) return text.substr(at, end - at);
    at = end + 1;
  }
  return {};
}

// An error: status 2, nothing on stdout, exactly one stderr line "moefuse: error: ..." holding every fragment.
inline ::testing::AssertionResult is_error(const Result& r, std::initializer_list<std::string_view> fragments) {
  if (r.status != 2) return ::testing::AssertionFailure() << "status " << r.status << ", stderr: " << r.err;
  if (!r.out.empty()) return ::testing::AssertionFailure() << "stdout not empty: " << r.out;
  if (r.err.rfind("moefuse: error: ", 0) != 0 || r.err.find('\n') != r.err.size() - 1)
    return ::testing::AssertionFailure() << "stderr is not one error line: \"" << r.err << "\"";
  for (std::string_view f : fragments)
    if (r.err.find(f) == std::string::npos)
      return ::testing::AssertionFailure() << "\"" << r.err << "\" lacks \"" << f << "\"";
  return ::testing::AssertionSuccess();
}

}  // namespace moefuse::testing

#endif  // MOEFUSE_CLI_PATH
