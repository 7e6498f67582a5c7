// `moefuse bench`, run as a subprocess on a tiny model: one table row and one JSON row per (quant, path, tokens)
// with every field present and self-consistent (never a speed: nothing here is timed), the machine and both probe
// rounds, the memory plan (copies, groups, skipped paths) under a given LLC size and memory, the plot in both
// formats, and every kind of error (exit status 2, one line, nothing written).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/machine_probe.h"
#include "cli/cli_runner.h"
#include "kernels/gemm/gemm.h"
#include "moefuse/config.h"
#include "moefuse/layer.h"
#include "util/configs.h"

#ifdef MOEFUSE_CLI_PATH

namespace moefuse {
namespace {

using Json = nlohmann::json;
using testing::is_error;
using testing::line_starting;
using testing::read_bytes;
using testing::Result;

class BenchCliTest : public testing::CliTest {};

// The table's data lines: those after the header line (starting "model ") up to the first line that is not a row.
std::vector<std::string> table_rows(const std::string& out) {
  std::vector<std::string> rows;
  size_t at = out.find("\nmodel ");
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

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// The small model of tests/cli/cli_runner.h (tiny_config) as the bench plans it: E 8, K 2, H 64, I 32, bf16.
MoeConfig small(QuantMode q, bool superkernel) {
  MoeConfig c = testing::tiny_config(DType::bf16, q);
  c.enable_superkernel = superkernel;
  return c;
}

// One layer copy as the plan counts it: weights, the workspace of the largest chunk (max_tokens) and a thread's
// share of it on every other thread.
int64_t copy_cost(const MoeConfig& c, int64_t max_tokens, int threads) {
  return layer_weight_bytes(c) + layer_workspace_bytes(c, max_tokens) +
         (threads - 1) * layer_workspace_bytes(c, (max_tokens + threads - 1) / threads);
}

// What building a copy takes beyond it: w13 [E, H, 2I] twice (plain and packed) until the plain one is released;
// int8 adds a float scale per column.
int64_t build_cost(const MoeConfig& c) {
  return c.quant_mode == QuantMode::none ? 8 * 64 * 64 * 2 : 8 * (64 * 64 + 64 * 4);
}

TEST_F(BenchCliTest, EveryRowAndFieldInTheTableTheJsonAndThePlots) {
  const std::string cfg = small_config();
  const std::string name = std::filesystem::path(cfg).filename().string();
  Result r = moefuse("bench --config '" + cfg + "' --tokens 3,1 --iters 1 --warmup 0 --threads 2 --quant none,w8a8,fp8 " +
                     "--json '" + path("b.json") + "' --plot '" + path("b.png") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(line_starting(r.out, "model:"),
            "model:      olmoe (file " + cfg + "): H 64, I 32, E 8, K 2, shared width 0, dtype bf16");
  const probe::CpuSignature sig = probe::cpu_signature();
  const std::string machine = line_starting(r.out, "machine:");
  EXPECT_NE(machine.find("(family " + std::to_string(sig.family) + ", model " + std::to_string(sig.model) +
                         ", stepping " + std::to_string(sig.stepping) + ": " +
                         std::string(cpu_family_name(cpu_family())) + ")"),
            std::string::npos)
      << machine;
  EXPECT_NE(machine.find("; prefetch " + prefetch_text(prefetch_settings()) + ";"), std::string::npos) << machine;
  EXPECT_NE(machine.find("2 threads of "), std::string::npos) << machine;
  EXPECT_NE(machine.find(", numerics portable; "), std::string::npos) << machine;  // the suites' MOEFUSE_NUMERICS
  // Both probe rounds, read and peaks, before the rows and after them.
  EXPECT_NE(r.out.find("read:       before "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("read:       after "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("peaks:      before "), std::string::npos) << r.out;
  EXPECT_LT(r.out.find("read:       before "), r.out.find("read:       after "));
  // AMX: measured at level amx, else listed as not present with why (amx_unused_reason(), or the cap on the level).
  const probe::PeakFamily& amx = probe::peak_families()[7];
  for (const char* when : {"before", "after"}) {
    const std::string peaks = line_starting(r.out, std::string("peaks:      ") + when);
    if (amx.present()) {
      EXPECT_NE(peaks.find(" amx_bf16 "), std::string::npos) << peaks;
      EXPECT_NE(peaks.find(" amx_int8 "), std::string::npos) << peaks;
    } else {
      EXPECT_NE(peaks.find(std::string("; amx_bf16, amx_int8 not present: ") + amx.unused_reason()), std::string::npos)
          << peaks;
      EXPECT_EQ(peaks.find("no loop"), std::string::npos) << peaks;  // every family has one
    }
  }
  EXPECT_NE(line_starting(r.out, "limits:").find("read "), std::string::npos) << r.out;

  const Json j = Json::parse(read_bytes(path("b.json")));
  const gemm::GemmKernels kernels = gemm::select_gemm_kernels();
  // Rows in the order quant x path x tokens (sorted): none/chain/1, none/chain/3, none/superkernel/1, ...
  const std::vector<std::string> rows = table_rows(r.out);
  ASSERT_EQ(rows.size(), 12u) << r.out;
  size_t i = 0;
  for (const char* quant : {"none", "w8a8", "fp8"})
    for (const char* asked : {"chain", "superkernel"})
      for (const char* T : {"1", "3"}) {
        const std::vector<std::string> w = words(rows[i]);
        const Json& row = j["rows"][i++];
        ASSERT_EQ(w.size(), 21u) << rows[i - 1];
        EXPECT_EQ(w[0], name);
        EXPECT_EQ(w[1], quant);
        EXPECT_EQ(w[2], asked);
        EXPECT_EQ(w[4], T);
        EXPECT_EQ(w[5], "decode");
        // The family whose peak bounds the row, from the kernel the layer says it ran.
        const std::string kernel = std::string(quant) == "none" ? kernels.bf16w.name
                                   : std::string(quant) == "fp8" ? kernels.fp8w.name
                                                                 : kernels.s8.name;
        if (std::string(quant) == "fp8") {  // the same routing as none's rows (same router, same tokens), 1-byte experts
          const Json& bf16_row = j["rows"][i - 1 - 8];
          EXPECT_LT(row["weight_bytes"].get<int64_t>(), bf16_row["weight_bytes"].get<int64_t>());
          EXPECT_GT(2 * row["weight_bytes"].get<int64_t>(), bf16_row["weight_bytes"].get<int64_t>());
        }
        const probe::PeakFamily* family = probe::family_of_kernel(kernel);
        EXPECT_EQ(w[13], family ? family->id : "-");
        EXPECT_EQ(row["kernel"], kernel);
        EXPECT_EQ(row["numerics"], "portable");
        EXPECT_TRUE(w[15] == "memory" || w[15] == "compute") << w[15];
        // A probe failure is flagged, never a ratio below 1.
        EXPECT_EQ(w[16] == "PROBE", row["probe_failure"].get<bool>()) << rows[i - 1];
        if (w[16] != "PROBE" && w[16] != "-") {
          EXPECT_GE(std::stod(w[16]), 1.0);
        }
        EXPECT_EQ(w[18] == "-", std::string(asked) == "chain") << rows[i - 1];  // vs chain
        // The paired read (on wherever 5% of the memory holds twice the LLC): every decode row has one.
        const bool paired = !j["plan"]["paired_read_bytes"].is_null();
        EXPECT_EQ(w[19] != "-", paired) << rows[i - 1];
        EXPECT_EQ(w[20] != "-", paired) << rows[i - 1];
      }
  EXPECT_EQ(line_starting(r.out, "json:"), "json:       " + path("b.json"));
  EXPECT_EQ(line_starting(r.out, "plot:"), "plot:       " + path("b.png"));

  EXPECT_EQ(j["command"], "bench");
  EXPECT_EQ(j["iters"], 1);
  EXPECT_EQ(j["warmup"], 0);
  ASSERT_EQ(j["models"].size(), 1u);
  EXPECT_EQ(j["models"][0]["label"], name);
  const Json& m = j["machine"];
  EXPECT_EQ(m["cpu"], probe::cpu_model());
  EXPECT_EQ(m["family"], sig.family);
  EXPECT_EQ(m["model"], sig.model);
  EXPECT_EQ(m["stepping"], sig.stepping);
  EXPECT_EQ(m["family_class"], std::string(cpu_family_name(cpu_family())));
  const PrefetchSettings pf = prefetch_settings();
  EXPECT_EQ(m["prefetch"]["text"], prefetch_text(pf));
  EXPECT_EQ(m["prefetch"]["bf16"], pf.bf16);
  EXPECT_EQ(m["prefetch"]["int4"], pf.int4);
  EXPECT_EQ(m["prefetch"]["bf16_rows"], pf.bf16_rows);
  EXPECT_EQ(m["prefetch"]["int8_rows"], pf.int8_rows);
  EXPECT_EQ(m["prefetch"]["hint"], pf.hint == PrefetchHint::nta ? "nta" : "t0");
  EXPECT_EQ(m["prefetch"]["family_entry"], pf == family_prefetch(cpu_family()));
  EXPECT_EQ(m["isa_set"].get<std::vector<std::string>>(), probe::isa_set());
  EXPECT_EQ(m["threads"], 2);
  EXPECT_GE(m["cpus"].get<int>(), 1);
  EXPECT_EQ(m["llc_bytes"], probe::llc_bytes());
  EXPECT_EQ(m["llc_given"], false);
  EXPECT_EQ(m["memory_total_bytes"], probe::total_memory_bytes());
  EXPECT_EQ(m["isa"], std::string(isa_name(active_isa())));

  // Both rounds: every read configuration and every family; the limits are the larger of the two.
  for (const char* when : {"before", "after"}) {
    const Json& round = j["probes"][when];
    EXPECT_GT(round["read_gbps"].get<double>(), 0) << when;
    EXPECT_GT(round["plain_read_gbps"].get<double>(), 0) << when;
    double best = 0;
    std::vector<int> streams;
    for (const Json& p : round["read_probes"]) {
      best = std::max(best, p["gbps"].get<double>());
      streams.push_back(p["streams_per_thread"]);
      EXPECT_EQ(p["loads"], probe::widest_read_loop().name);
    }
    EXPECT_EQ(round["read_gbps"].get<double>(), best);
    EXPECT_EQ(std::count(streams.begin(), streams.end(), 8), std::count(streams.begin(), streams.end(), 1));
    EXPECT_EQ(round["peaks"].size(), probe::peak_families().size());
    for (const Json& p : round["peaks"]) {
      EXPECT_EQ(p["peak"].is_null(), !p["probed"].get<bool>()) << p.dump();
      EXPECT_EQ(p["probed"], p["present"]) << p.dump();  // every family has a loop
      // Why a family is absent, for AMX's (the CPU's features alone do not say); null for the others.
      if (p["family"].get<std::string>().starts_with("amx_") && !p["present"].get<bool>()) {
        EXPECT_EQ(p["unused_reason"], std::string(amx.unused_reason())) << p.dump();
      } else {
        EXPECT_TRUE(p["unused_reason"].is_null()) << p.dump();
      }
    }
  }
  const double read = std::max(j["probes"]["before"]["read_gbps"].get<double>(),
                               j["probes"]["after"]["read_gbps"].get<double>());
  EXPECT_EQ(j["limits"]["read_gbps"].get<double>(), read);

  ASSERT_EQ(j["rows"].size(), 12u);
  for (const Json& row : j["rows"]) {
    SCOPED_TRACE(row.dump());
    EXPECT_EQ(row["preset"], name);
    const std::string path = row["path"].get<std::string>();
    EXPECT_TRUE(path == "chain" || path == "superkernel" || path.starts_with("chain: ")) << path;
    EXPECT_EQ(row["schedule"], "decode");
    const int64_t T = row["tokens"];
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
    // The bound is the larger of the memory time and the compute time at the peak of the family that ran.
    const double peak = row["peak_family"].is_null() ? 0.0 : j["limits"]["peaks"][row["peak_family"].get<std::string>()].get<double>();
    if (!row["peak_family"].is_null()) {
      EXPECT_EQ(row["peak"].get<double>(), peak);
    }
    const double memory_ms = double(wb) / (read * 1e9) * 1e3;
    const double compute_ms = peak > 0 ? row["flops"].get<double>() / (peak * 1e9) * 1e3 : 0;
    const double bound = row["lower_bound_ms"];
    EXPECT_NEAR(bound, std::max(memory_ms, compute_ms), 1e-9 * memory_ms + 1e-12);
    EXPECT_EQ(row["bound_by"], compute_ms > memory_ms ? "compute" : "memory");
    EXPECT_EQ(row["probe_failure"], lo < bound);
    if (lo < bound) {
      EXPECT_TRUE(row["ratio"].is_null());
    } else {
      EXPECT_NEAR(row["ratio"].get<double>(), med / bound, 1e-9 * med / bound);
    }
    // A step reads about 50 KB (both paths): 4x any LLC of 1 MiB or more wants over 32 copies, the most there are.
    EXPECT_EQ(row["copies"], 32);
    // One forward: its time over its bytes at the read just before it.
    if (!j["plan"]["paired_read_bytes"].is_null()) {
      const double read_gbps = row["paired_read_gbps"];
      EXPECT_GT(read_gbps, 0);
      EXPECT_NEAR(row["vs_read"].get<double>(), med / 1e3 / (double(wb) / (read_gbps * 1e9)), 1e-9 * med);
    } else {
      EXPECT_TRUE(row["paired_read_gbps"].is_null());
      EXPECT_TRUE(row["vs_read"].is_null());
    }
  }
  // Four times the LLC, at least 256 MiB, from the memory's 5% the budget leaves; off when that is under twice the LLC.
  {
    const int64_t llc = probe::llc_bytes(), memory = j["plan"]["memory_bytes"];
    const int64_t paired = std::min(std::max<int64_t>(int64_t(256) << 20, 4 * llc), memory / 20);
    if (paired >= 2 * llc) {
      EXPECT_EQ(j["plan"]["paired_read_bytes"], paired / 128 * 128);
      const std::string memory_line = line_starting(r.out, "memory:");
      EXPECT_NE(memory_line.find("; paired read "), std::string::npos) << memory_line;
      EXPECT_NE(memory_line.find(" before every decode forward"), std::string::npos) << memory_line;
    } else {
      EXPECT_TRUE(j["plan"]["paired_read_bytes"].is_null());
    }
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
  // The plan: per quant one group of both paths, 32 copies each, capped (not limited by memory), fully warm.
  const Json& groups = j["plan"]["groups"];
  ASSERT_EQ(groups.size(), 3u);
  for (const Json& g : groups) {
    EXPECT_EQ(g["paths"], (std::vector<std::string>{"chain", "superkernel"}));
    EXPECT_EQ(g["copies"], 32);
    EXPECT_GT(g["wanted"].get<int64_t>(), 32);
    EXPECT_EQ(g["limit"], "max_copies");
    EXPECT_EQ(g["warm"], 1.0);
  }
  // ... and the output says so, once per (quant, group).
  EXPECT_EQ(count(r.out, "note:       " + name + " none, chain + superkernel: 32 of "), 1u) << r.out;
  EXPECT_EQ(count(r.out, "note:       " + name + " w8a8, chain + superkernel: 32 of "), 1u) << r.out;
  EXPECT_EQ(count(r.out, "note:       " + name + " fp8, chain + superkernel: 32 of "), 1u) << r.out;
  EXPECT_NE(r.out.find("(at most 32): a copy is read again after"), std::string::npos) << r.out;

  const std::string png = read_bytes(path("b.png"));
  ASSERT_GE(png.size(), 8u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
}

// The plan under a given LLC and memory: how many copies fit, the note that says how warm the weights will be, and
// every copy the plan promised, and no more, in the rows.
TEST_F(BenchCliTest, MemoryLimitsTheCopiesAndTheOutputSaysHowWarm) {
  const std::string cfg = small_config();
  const int64_t llc = 128 << 10, memory = 1'000'000;
  Result r = moefuse("bench --config '" + cfg + "' --tokens 3,1 --iters 1 --warmup 0 --threads 2 --llc-bytes " +
                     std::to_string(llc) + " --memory-bytes " + std::to_string(memory) + " --json '" +
                     path("b.json") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  const Json j = Json::parse(read_bytes(path("b.json")));
  EXPECT_EQ(j["machine"]["llc_bytes"], llc);
  EXPECT_EQ(j["machine"]["llc_given"], true);
  EXPECT_NE(line_starting(r.out, "machine:").find("LLC 128.00 KiB (given by --llc-bytes)"), std::string::npos);
  EXPECT_NE(line_starting(r.out, "memory:").find("976.56 KiB given by --memory-bytes"), std::string::npos) << r.out;
  const Json& plan = j["plan"];
  EXPECT_EQ(plan["memory_bytes"], memory);
  // 90% of the memory, less the tokens: 1 + 3 tokens for the timed forward and the warm-up one, and the output.
  const int64_t tokens = 2 * (1 + 3) * 64 * 2 + 3 * 64 * 2;
  const int64_t budget = memory - memory / 10 - tokens;
  EXPECT_EQ(plan["budget_bytes"], budget);
  EXPECT_EQ(plan["probe_buffer_bytes"], budget / 2);  // the probes run alone: at most half the budget
  // 5% of 1 MB does not hold twice the LLC: no paired read (its reads would come from the cache).
  EXPECT_TRUE(plan["paired_read_bytes"].is_null());
  EXPECT_NE(line_starting(r.out, "memory:").find("; paired read off (5% of the memory does not hold twice the LLC)"),
            std::string::npos)
      << r.out;
  for (const std::string& line : table_rows(r.out)) EXPECT_EQ(words(line)[19], "-") << line;
  ASSERT_EQ(plan["groups"].size(), 1u);
  const Json& g = plan["groups"][0];
  const int64_t chain = copy_cost(small(QuantMode::none, false), 3, 2);
  const int64_t fused = copy_cost(small(QuantMode::none, true), 3, 2);
  EXPECT_EQ(g["copy_bytes"], (std::vector<int64_t>{chain, fused}));
  EXPECT_EQ(g["build_bytes"], build_cost(small(QuantMode::none, false)));
  // A step at one token reads the router and two experts, per path; 4 x LLC wants 11 copies of both.
  const int64_t step = 8 * 64 * 2 + 2 * 3 * 32 * 64 * 2;
  EXPECT_EQ(g["step_bytes"], (std::vector<int64_t>{step, step}));
  EXPECT_EQ(g["wanted"], (4 * llc + 2 * step - 1) / (2 * step));
  const int64_t copies = (budget - build_cost(small(QuantMode::none, false))) / (chain + fused);
  ASSERT_LT(copies, 11) << "the memory given must limit the copies";
  ASSERT_GE(copies, 2);
  EXPECT_EQ(g["copies"], copies);
  EXPECT_EQ(g["limit"], "memory");
  const double between = double(copies * 2 * step);
  EXPECT_DOUBLE_EQ(g["warm"].get<double>(), std::min(1.0, double(llc) / between));
  for (const Json& row : j["rows"]) EXPECT_EQ(row["copies"], copies);
  char expected[256];
  std::snprintf(expected, sizeof expected,
                ", chain + superkernel: %lld of 11 layer copies each (limited by memory): a copy is read again after ",
                static_cast<long long>(copies));
  EXPECT_NE(r.out.find(expected), std::string::npos) << r.out;
  char warm[64];
  std::snprintf(warm, sizeof warm, "so up to %.0f%% of a step's weights may come from the cache",
                100.0 * std::min(1.0, double(llc) / between));
  EXPECT_NE(r.out.find(warm), std::string::npos) << r.out;
}

TEST_F(BenchCliTest, PathsThatDoNotFitTogetherAreTimedApartAndOnesThatDoNotFitAreSkipped) {
  const std::string cfg = small_config();
  const int64_t chain = copy_cost(small(QuantMode::none, false), 1, 1);
  const int64_t chain_w8a8 = copy_cost(small(QuantMode::w8a8, false), 1, 1);
  const int64_t fused_w8a8 = copy_cost(small(QuantMode::w8a8, true), 1, 1);
  const int64_t build = build_cost(small(QuantMode::none, false)), build_w8a8 = build_cost(small(QuantMode::w8a8, false));
  // A budget that holds one bf16 copy but not two, and both w8a8 copies (int8 weights: half the bytes).
  const int64_t tokens = 2 * 1 * 64 * 2 + 64 * 2;
  const int64_t budget = chain + build + chain / 4;
  ASSERT_LT(budget, 2 * chain + build);
  ASSERT_LE(fused_w8a8 + chain_w8a8 + build_w8a8, budget);
  const int64_t memory = (budget + tokens) * 10 / 9 + 10;
  Result r = moefuse("bench --config '" + cfg + "' --tokens 1 --iters 1 --warmup 0 --threads 1 --quant none,w8a8 " +
                     "--memory-bytes " + std::to_string(memory) + " --json '" + path("b.json") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  const Json j = Json::parse(read_bytes(path("b.json")));
  const Json& groups = j["plan"]["groups"];
  ASSERT_EQ(groups.size(), 3u) << groups.dump();
  EXPECT_EQ(groups[0]["paths"], std::vector<std::string>{"chain"});
  EXPECT_EQ(groups[1]["paths"], std::vector<std::string>{"superkernel"});
  EXPECT_EQ(groups[2]["paths"], (std::vector<std::string>{"chain", "superkernel"}));
  for (const Json& g : groups) EXPECT_EQ(g["limit"], "memory");
  EXPECT_EQ(groups[0]["copies"], 1);
  EXPECT_EQ(j["rows"].size(), 4u);
  EXPECT_NE(r.out.find(" none: the paths were timed one group after the other"), std::string::npos) << r.out;

  // bf16 does not fit at all (DeepSeek-V3's case on a small machine): skipped, saying why; w8a8 measured.
  const int64_t small_budget = std::max(fused_w8a8, chain_w8a8) + build_w8a8 + 100;
  ASSERT_LT(small_budget, chain + build);
  const int64_t small_memory = (small_budget + tokens) * 10 / 9 + 10;
  r = moefuse("bench --config '" + cfg + "' --tokens 1 --iters 1 --warmup 0 --threads 1 --quant none,w8a8 " +
              "--memory-bytes " + std::to_string(small_memory) + " --json '" + path("c.json") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  const Json k = Json::parse(read_bytes(path("c.json")));
  ASSERT_EQ(k["rows"].size(), 2u);
  for (const Json& row : k["rows"]) EXPECT_EQ(row["quant"], "w8a8");
  EXPECT_NE(r.out.find(" none, chain: not measured: one layer copy needs "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(" none, superkernel: not measured: one layer copy needs "), std::string::npos) << r.out;
}

// A row that ran faster than its bound is a probe failure, flagged as such, never a ratio below 1: a read bandwidth
// given far below any machine's makes every bound longer than every forward.
TEST_F(BenchCliTest, ARowFasterThanItsBoundIsAProbeFailure) {
  Result r = moefuse("bench --config '" + small_config() + "' --tokens 1,2 --iters 2 --warmup 0 --threads 1 " +
                     "--read-gbps 0.000001 --json '" + path("b.json") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(line_starting(r.out, "limits:").find("read 0.0 GB/s (given by --read-gbps)"), std::string::npos) << r.out;
  const Json j = Json::parse(read_bytes(path("b.json")));
  EXPECT_EQ(j["limits"]["read_gbps"], 0.000001);
  EXPECT_EQ(j["limits"]["read_given"], true);
  ASSERT_EQ(j["rows"].size(), 4u);
  for (const Json& row : j["rows"]) {
    EXPECT_EQ(row["probe_failure"], true) << row.dump();
    EXPECT_TRUE(row["ratio"].is_null()) << row.dump();
    EXPECT_EQ(row["bound_by"], "memory");
  }
  for (const std::string& line : table_rows(r.out)) EXPECT_EQ(words(line)[16], "PROBE") << line;
  EXPECT_NE(r.out.find("note:       rows marked PROBE ran a forward faster than their bound"), std::string::npos)
      << r.out;
  // The same rows against the probes: none fails (a tiny layer is far slower than any machine's limits).
  r = moefuse("bench --config '" + small_config() + "' --tokens 1,2 --iters 2 --warmup 0 --threads 1 --json '" +
              path("c.json") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  const Json report = Json::parse(read_bytes(path("c.json")));  // a named object: rows must not outlive it
  for (const Json& row : report["rows"]) {
    EXPECT_EQ(row["probe_failure"], false) << row.dump();
    EXPECT_GE(row["ratio"].get<double>(), 1.0) << row.dump();
  }
  EXPECT_EQ(r.out.find("PROBE"), std::string::npos) << r.out;
}

TEST_F(BenchCliTest, SvgPlotPrefillRowsAndTheConfigsQuantByDefault) {
  Result r = moefuse("bench --config '" + small_config("bf16", "w8a8c8") +
                     "' --tokens 128,2,2 --paths superkernel --iters 2 --warmup 1 --threads 1 --plot '" +
                     path("b.SVG") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(line_starting(r.out, "machine:").find("1 thread of "), std::string::npos) << r.out;
  const std::vector<std::string> rows = table_rows(r.out);
  ASSERT_EQ(rows.size(), 2u) << r.out;  // each token count once, in increasing order
  for (const std::string& row : rows) {
    EXPECT_EQ(words(row)[1], "w8a8c8");
    EXPECT_EQ(words(row)[2], "superkernel");
  }
  EXPECT_EQ(words(rows[0])[4], "2");
  EXPECT_EQ(words(rows[0])[5], "decode");
  EXPECT_EQ(words(rows[1])[4], "128");
  EXPECT_EQ(words(rows[1])[5], "prefill");
  EXPECT_EQ(words(rows[1])[19], "-");  // no paired read: prefill rows are bound by compute
  EXPECT_EQ(words(rows[1])[20], "-");
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
  EXPECT_TRUE(is_error(moefuse(base + " --quant w2a8" + outputs),
                       {"--quant: expected a comma-separated list of none, w8a8, w8a8c8, w4a16, w4a8, fp8, got w2a8"}));
  // w4a16 with the config's group size (128 by default), which must divide H = 64: refused before any timing.
  EXPECT_TRUE(is_error(moefuse(base + " --quant w4a16" + outputs),
                       {"with quant_mode w4a16", "quant_group_size", "got 128"}));
  EXPECT_TRUE(is_error(moefuse(base + " --iters 0" + outputs), {"--iters: expected an integer >= 1, got 0"}));
  EXPECT_TRUE(is_error(moefuse(base + " --warmup -1" + outputs), {"--warmup: expected an integer >= 0, got -1"}));
  EXPECT_TRUE(is_error(moefuse(base + " --threads -2" + outputs), {"--threads: expected an integer >= 0, got -2"}));
  EXPECT_TRUE(is_error(moefuse(base + " --llc-bytes -1" + outputs), {"--llc-bytes: expected an integer >= 0, got -1"}));
  EXPECT_TRUE(
      is_error(moefuse(base + " --memory-bytes x" + outputs), {"--memory-bytes: expected an integer >= 0, got x"}));
  for (const char* bad : {"-1", "x", "inf", "nan", "''"})
    EXPECT_TRUE(is_error(moefuse(base + " --read-gbps " + bad + outputs), {"--read-gbps: expected a number >= 0, got"}))
        << bad;
  EXPECT_TRUE(is_error(moefuse(base + " --plot '" + path("b.pdf") + "'"),
                       {"--plot: expected a file name ending in .png or .svg, got " + path("b.pdf")}));
  EXPECT_TRUE(is_error(moefuse(base + " --plot '" + path("no/dir/b.svg") + "'"), {"--plot", path("no/dir")}));
  EXPECT_TRUE(is_error(moefuse(base + " --json '" + path("no/dir/b.json") + "'"), {"--json", path("no/dir")}));
  // fp8 needs a bf16 model (the FP8 kernels round the weights to bf16).
  EXPECT_TRUE(is_error(moefuse("bench --config '" + small_config("f16") + "' --quant fp8" + outputs),
                       {"--quant fp8: expected a bf16 model", "of dtype f16"}));
  // w8a8c8 needs a bf16 model.
  EXPECT_TRUE(is_error(moefuse("bench --config '" + small_config("f16") + "' --quant w8a8c8" + outputs),
                       {"quant_mode", "w8a8c8"}));
  EXPECT_TRUE(is_error(moefuse("bench --config '" + path("absent.yaml") + "'" + outputs), {path("absent.yaml")}));
  std::string y = testing::kSmallYaml;
  y.replace(y.find("num_experts:"), std::string("num_experts:").size(), "num_expert:");
  const std::string unknown = write_text("unknown.yaml", y);
  EXPECT_TRUE(is_error(moefuse("bench --config '" + unknown + "'" + outputs), {unknown, "num_expert"}));
  // 1.6 TB of weights: refused by the plan before anything is measured or written.
  const std::string huge = write_text("huge.yaml", testing::kHugeYaml);
  EXPECT_TRUE(is_error(moefuse("bench --config '" + huge + "' --tokens 1" + outputs),
                       {"memory", "bytes available", "bytes needed"}));
  // A plan made for more memory than the machine has: each copy is checked against the machine's memory when it is
  // built, so nothing is allocated and nothing written.
  EXPECT_TRUE(is_error(moefuse("bench --config '" + huge + "' --tokens 1 --memory-bytes 10000000000000" + outputs),
                       {"bench: memory", "bytes available now", "bytes needed to build it"}));
  // So is a memory too small for one copy of anything, for every preset.
  EXPECT_TRUE(is_error(moefuse("bench --presets all --tokens 1 --memory-bytes 1000000" + outputs),
                       {"bench: memory", "bytes available", "bytes needed"}));
  EXPECT_TRUE(is_error(moefuse("bench --presets olmoe-1b-7b,nope --tokens 1" + outputs), {"nope", "olmoe-1b-7b"}));
  EXPECT_TRUE(is_error(moefuse("bench --presets all --config '" + cfg + "'" + outputs),
                       {"--presets", "--config"}));
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
                           "--plot", "--config", "--preset", "--presets", "--llc-bytes", "--memory-bytes",
                           "--read-gbps"})
    EXPECT_NE(h.out.find(flag), std::string::npos) << flag;
}

}  // namespace
}  // namespace moefuse

#endif  // MOEFUSE_CLI_PATH
