// `moefuse bench`, run as a subprocess on a tiny model: one table row and one JSON row per (quant, path, tokens)
// with every field present and self-consistent (never a speed: nothing here is timed), the machine's limits, the
// plot in both formats, and every kind of error (exit status 2, one line, nothing written).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/cli_runner.h"
#include "moefuse/config.h"

#ifdef MOEFUSE_CLI_PATH

namespace moefuse {
namespace {

using Json = nlohmann::json;
using testing::is_error;
using testing::line_starting;
using testing::read_bytes;
using testing::Result;

class BenchCliTest : public testing::CliTest {};

// The table's data lines: those after the header line (starting "quant ") up to the first line that is not a row.
std::vector<std::string> table_rows(const std::string& out) {
  std::vector<std::string> rows;
  size_t at = out.find("\nquant ");
  if (at == std::string::npos) return rows;
  at = out.find('\n', at + 1) + 1;
  while (at < out.size()) {
    const size_t end = out.find('\n', at);
    const std::string line = out.substr(at, end - at);
    if (line.find(':') != std::string::npos) break;  // "note: ...", "json: ...": past the table
    rows.push_back(line);
    at = end + 1;
  }
  return rows;
}

std::vector<std::string> words(const std::string& line) {
  std::vector<std::string> w;
  size_t at = 0;
  while ((at = line.find_first_not_of(' ', at)) != std::string::npos) {
    const size_t end = line.find(' ', at);
    w.push_back(line.substr(at, end - at));
    at = end;
  }
  return w;
}

TEST_F(BenchCliTest, EveryRowAndFieldInTheTableTheJsonAndThePlots) {
  const std::string cfg = small_config();
  Result r = moefuse("bench --config '" + cfg + "' --tokens 3,1 --iters 1 --warmup 0 --threads 2 --quant none,w8a8 " +
                     "--json '" + path("b.json") + "' --plot '" + path("b.png") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(line_starting(r.out, "model:"),
            "model:      olmoe (file " + cfg + "): H 64, I 32, E 8, K 2, shared width 0, dtype bf16");
  EXPECT_NE(line_starting(r.out, "machine:").find("2 threads, isa "), std::string::npos) << r.out;
  EXPECT_NE(line_starting(r.out, "limits:").find("read "), std::string::npos) << r.out;

  // Rows in the order quant x path x tokens (sorted): none/chain/1, none/chain/3, none/superkernel/1, ...
  const std::vector<std::string> rows = table_rows(r.out);
  ASSERT_EQ(rows.size(), 8u) << r.out;
  size_t i = 0;
  for (const char* quant : {"none", "w8a8"})
    for (const char* asked : {"chain", "superkernel"})
      for (const char* T : {"1", "3"}) {
        const std::vector<std::string> w = words(rows[i++]);
        ASSERT_EQ(w.size(), 16u) << rows[i - 1];
        EXPECT_EQ(w[15] == "-", std::string(asked) == "chain") << rows[i - 1];  // vs chain
        EXPECT_EQ(w[0], quant);
        EXPECT_EQ(w[1], asked);
        EXPECT_EQ(w[3], T);
        EXPECT_EQ(w[4], "decode");
      }
  EXPECT_EQ(line_starting(r.out, "json:"), "json:       " + path("b.json"));
  EXPECT_EQ(line_starting(r.out, "plot:"), "plot:       " + path("b.png"));

  const Json j = Json::parse(read_bytes(path("b.json")));
  EXPECT_EQ(j["command"], "bench");
  EXPECT_EQ(j["iters"], 1);
  EXPECT_EQ(j["warmup"], 0);
  const Json& m = j["machine"];
  EXPECT_GT(m["read_gbps"].get<double>(), 0);
  EXPECT_TRUE(m["fp32_peak_gflops"].is_null() || m["fp32_peak_gflops"].get<double>() > 0);
  EXPECT_TRUE(m["int8_peak_gops"].is_null() || m["int8_peak_gops"].get<double>() > 0);
  EXPECT_EQ(m["threads"], 2);
  EXPECT_TRUE(m["isa"] == "scalar" || m["isa"] == "avx2" || m["isa"] == "avx512") << m["isa"];
  EXPECT_GT(m["llc_bytes"].get<int64_t>(), 0);
  EXPECT_FALSE(m["cpu"].get<std::string>().empty());

  ASSERT_EQ(j["rows"].size(), 8u);
  i = 0;
  for (const char* quant : {"none", "w8a8"})
    for (const char* asked : {"chain", "superkernel"})
      for (int64_t T : {1, 3}) {
        const Json& row = j["rows"][i++];
        SCOPED_TRACE(row.dump());
        EXPECT_EQ(row["preset"], std::filesystem::path(cfg).filename().string());
        EXPECT_EQ(row["dtype"], "bf16");
        EXPECT_EQ(row["quant"], quant);
        EXPECT_EQ(row["requested_path"], asked);
        const std::string path = row["path"].get<std::string>();
        EXPECT_TRUE(path == "chain" || path == "superkernel" || path.starts_with("chain: ")) << path;
        EXPECT_EQ(row["schedule"], "decode");
        EXPECT_EQ(row["tokens"], T);
        const double med = row["ms_median"], lo = row["ms_min"], hi = row["ms_max"];
        EXPECT_GT(lo, 0);
        EXPECT_LE(lo, med);
        EXPECT_LE(med, hi);
        EXPECT_EQ(med, lo);  // one iteration
        // flops = 2·3·H·I per (token, expert) + 2·H·E per token (no shared expert).
        EXPECT_EQ(row["flops"], T * 2 * 6 * 64 * 32 + T * 2 * 64 * 8);
        const int64_t wb = row["weight_bytes"];
        EXPECT_GT(wb, 0);
        EXPECT_DOUBLE_EQ(row["gbps"].get<double>(), double(wb) / (med / 1e3) / 1e9);
        EXPECT_DOUBLE_EQ(row["gflops"].get<double>(), row["flops"].get<double>() / (med / 1e3) / 1e9);
        // The bound is the larger of the memory and the compute time, and the ratio is the median over it.
        const double peak = std::string(quant) == "none" ? m["fp32_peak_gflops"].get<double>()
                                                         : m["int8_peak_gops"].is_null() ? 0.0
                                                                                          : m["int8_peak_gops"].get<double>();
        const double memory_ms = double(wb) / (m["read_gbps"].get<double>() * 1e9) * 1e3;
        const double compute_ms = peak > 0 ? row["flops"].get<double>() / (peak * 1e9) * 1e3 : 0;
        EXPECT_NEAR(row["lower_bound_ms"].get<double>(), std::max(memory_ms, compute_ms), 1e-9 * memory_ms + 1e-12);
        EXPECT_GT(row["ratio"].get<double>(), 0);
        EXPECT_NEAR(row["ratio"].get<double>(), med / row["lower_bound_ms"].get<double>(),
                    1e-9 * row["ratio"].get<double>());
        // A step reads about 25 KB here: 4x any LLC of 1 MiB or more wants over 32 copies, the most there are.
        EXPECT_EQ(row["copies"], 32);
      }
  // Superkernel rows carry their time over the chain's, forward by forward (one forward here: the plain ratio).
  for (const Json& row : j["rows"]) {
    if (row["requested_path"] == "chain") {
      EXPECT_TRUE(row["vs_chain"].is_null());
      continue;
    }
    for (const Json& chain : j["rows"])
      if (chain["requested_path"] == "chain" && chain["quant"] == row["quant"] && chain["tokens"] == row["tokens"]) {
        EXPECT_NEAR(row["vs_chain"].get<double>(),
                    row["ms_median"].get<double>() / chain["ms_median"].get<double>(), 1e-9);
      }
  }
  // ... and the output says so, for each (quant, path).
  EXPECT_EQ(j["notes"].size(), 4u);
  EXPECT_NE(r.out.find("note:       quant none, path chain: 32 of "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("note:       quant w8a8, path superkernel: 32 of "), std::string::npos) << r.out;

  const std::string png = read_bytes(path("b.png"));
  ASSERT_GE(png.size(), 8u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
}

TEST_F(BenchCliTest, SvgPlotPrefillRowsAndTheConfigsQuantByDefault) {
  Result r = moefuse("bench --config '" + small_config("bf16", "w8a8c8") +
                     "' --tokens 128,2,2 --paths superkernel --iters 2 --warmup 1 --threads 1 --plot '" +
                     path("b.SVG") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(line_starting(r.out, "machine:").find("1 thread, isa "), std::string::npos) << r.out;
  const std::vector<std::string> rows = table_rows(r.out);
  ASSERT_EQ(rows.size(), 2u) << r.out;  // each token count once, in increasing order
  for (const std::string& row : rows) {
    EXPECT_EQ(words(row)[0], "w8a8c8");
    EXPECT_EQ(words(row)[1], "superkernel");
  }
  EXPECT_EQ(words(rows[0])[3], "2");
  EXPECT_EQ(words(rows[0])[4], "decode");
  EXPECT_EQ(words(rows[1])[3], "128");
  EXPECT_EQ(words(rows[1])[4], "prefill");
  const std::string svg = read_bytes(path("b.SVG"));
  EXPECT_NE(svg.find("<svg"), std::string::npos);
}

TEST_F(BenchCliTest, ErrorsAreOneLineAndWriteNothing) {
  const std::string cfg = small_config();
  const std::string outputs = " --json '" + path("b.json") + "' --plot '" + path("b.png") + "'";
  const std::string base = "bench --config '" + cfg + "' --iters 1 --warmup 0";
  EXPECT_TRUE(is_error(moefuse("bench --preset olmoe" + outputs), {"olmoe", "olmoe-1b-7b"}));
  for (const char* bad : {"''", "0", "1,-2", "1,,2", "x", "8,1.5"})
    EXPECT_TRUE(is_error(moefuse(base + " --tokens " + bad + outputs),
                         {"--tokens: expected a comma-separated list of integers >= 1, got"}))
        << bad;
  EXPECT_TRUE(is_error(moefuse(base + " --paths chain,fused" + outputs),
                       {"--paths: expected a comma-separated list of chain, superkernel, got chain,fused"}));
  EXPECT_TRUE(is_error(moefuse(base + " --quant w4a16" + outputs),
                       {"--quant: expected a comma-separated list of none, w8a8, w8a8c8, got w4a16"}));
  EXPECT_TRUE(is_error(moefuse(base + " --iters 0" + outputs), {"--iters: expected an integer >= 1, got 0"}));
  EXPECT_TRUE(is_error(moefuse(base + " --warmup -1" + outputs), {"--warmup: expected an integer >= 0, got -1"}));
  EXPECT_TRUE(is_error(moefuse(base + " --threads -2" + outputs), {"--threads: expected an integer >= 0, got -2"}));
  EXPECT_TRUE(is_error(moefuse(base + " --plot '" + path("b.pdf") + "'"),
                       {"--plot: expected a file name ending in .png or .svg, got " + path("b.pdf")}));
  EXPECT_TRUE(is_error(moefuse(base + " --plot '" + path("no/dir/b.svg") + "'"), {"--plot", path("no/dir")}));
  EXPECT_TRUE(is_error(moefuse(base + " --json '" + path("no/dir/b.json") + "'"), {"--json", path("no/dir")}));
  // w8a8c8 needs a bf16 model.
  EXPECT_TRUE(is_error(moefuse("bench --config '" + small_config("f16") + "' --quant w8a8c8" + outputs),
                       {"quant_mode", "w8a8c8"}));
  EXPECT_TRUE(is_error(moefuse("bench --config '" + path("absent.yaml") + "'" + outputs), {path("absent.yaml")}));
  std::string y = testing::kSmallYaml;
  y.replace(y.find("num_experts:"), std::string("num_experts:").size(), "num_expert:");
  const std::string unknown = write_text("unknown.yaml", y);
  EXPECT_TRUE(is_error(moefuse("bench --config '" + unknown + "'" + outputs), {unknown, "num_expert"}));
  // 1.6 TB of weights: refused by the layer before anything is measured or written.
  const std::string huge = write_text("huge.yaml", testing::kHugeYaml);
  EXPECT_TRUE(is_error(moefuse("bench --config '" + huge + "' --tokens 1" + outputs),
                       {"memory", "bytes available", "bytes needed"}));
  EXPECT_TRUE(is_error(moefuse("bench --tokens 1 --preset default --config '" + cfg + "'"), {"--config", "--preset"}));
  EXPECT_FALSE(std::filesystem::exists(path("b.json")));
  EXPECT_FALSE(std::filesystem::exists(path("b.png")));
  EXPECT_FALSE(std::filesystem::exists(path("b.pdf")));
  // Only the configs this test wrote: no temporary files either.
  for (const std::string& f : files()) EXPECT_NE(f.find(".yaml"), std::string::npos) << f;
}

TEST_F(BenchCliTest, SubcommandListNamesBench) {
  EXPECT_TRUE(is_error(moefuse("frobnicate"), {"info, run, verify, quantize or bench", "\"frobnicate\""}));
  Result h = moefuse("bench --help");
  EXPECT_EQ(h.status, 0);
  for (const char* flag : {"--tokens", "--paths", "--quant", "--threads", "--iters", "--warmup", "--seed", "--json",
                           "--plot", "--config", "--preset"})
    EXPECT_NE(h.out.find(flag), std::string::npos) << flag;
}

}  // namespace
}  // namespace moefuse

#endif  // MOEFUSE_CLI_PATH
