// What `moefuse bench` found, and its three forms: the text (header lines, table, notes), the JSON and the plot.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench_plan.h"
#include "common.h"
#include "moefuse/cpu.h"
#include "moefuse/machine.h"
#include "roofline_plot.h"

namespace moefuse::cli {

/// Token counts from this one on run the prefill schedule (forward(x, is_prefill = true)); smaller ones decode.
inline constexpr int64_t kPrefillFrom = 128;

/// One (model, quant, path, tokens) measured.
struct BenchRow {
  std::string model, quant, asked_path, path;
  std::string kernel;                         // MoeLayer::kernel() after the timed forwards
  std::string numerics;                       // numerics_name(MoeLayer::numerics())
  const probe::PeakFamily* family = nullptr;  // probe::family_of_kernel(kernel); nullptr: no compute bound
  int64_t tokens = 0;
  bool prefill = false;
  double ms_median = 0, ms_min = 0, ms_max = 0;
  int64_t weight_bytes = 0, flops = 0;
  double gbps = 0, gflops = 0;
  double peak_ops = 0;        // the family's peak (ops/s), the larger of the two probe rounds; 0 when none
  double lower_bound_ms = 0;  // max(weight_bytes / read bandwidth, flops / peak_ops)
  std::string bound_by;       // "memory" or "compute"
  bool probe_failure = false; // a forward ran faster than the bound: the probes under-measured the machine
  double ratio = 0;           // median / bound; 0 when there is no bound or the probes failed
  double vs_chain = 0;        // superkernel rows timed beside a chain row: median of time / the chain's time
  // Decode rows with the paired read on (BenchMachine::paired_read_bytes): the median of the reads taken just
  // before each of the row's forwards (bytes/s), and the median over the forwards of time / (that forward's weight
  // bytes / the read just before it). 0: not measured (prefill rows, or the paired read off).
  double paired_read = 0;
  double vs_read = 0;
  int copies = 1;
};

/// One model asked: its label in the rows (the preset's name or the config file's name) and its config.
struct BenchModel {
  std::string label;
  LoadedConfig lc;
};

/// The machine: what identifies it, and the limits given instead of measured.
struct BenchMachine {
  std::string cpu;
  probe::CpuSignature signature;
  CpuFamily family = CpuFamily::generic;  // cpu_family()
  PrefetchSettings prefetch;              // the settings the kernels ran with (prefetch_settings())
  std::vector<std::string> isa_set;
  std::vector<std::string> numerics;  // the numerics tiers the layers run, each once ("native", "portable")
  int threads = 1;
  int cpus = 1;  // CPUs this process may run on
  int64_t llc_bytes = 0;
  bool llc_given = false;  // --llc-bytes
  int64_t memory_total_bytes = 0;
  int64_t memory_bytes = 0;  // the memory the plan starts from
  bool memory_given = false;  // --memory-bytes (else MemAvailable)
  int64_t budget_bytes = 0;
  int64_t probe_buffer_bytes = 0;
  // The buffer of the paired read (read once before every decode forward, on the layer's threads); 0: off, because
  // the memory's 5% that it may take does not hold twice the LLC (its reads would come from the cache).
  int64_t paired_read_bytes = 0;
};

/// One planned (model, quant) group of paths, as the JSON and notes report it.
struct BenchGroup {
  std::string model, quant;
  CopyGroup plan;
};

struct BenchResult {
  std::vector<BenchModel> models;
  BenchMachine machine;
  probe::ProbeRound before, after;
  std::vector<BenchGroup> groups;
  std::vector<BenchRow> rows;
  std::vector<std::string> notes;
  int iters = 0, warmup = 0;
  uint64_t seed = 0;
  double read_given = 0;  // --read-gbps in bytes/s: the bounds' read bandwidth instead of the probes' (0: probes)

  /// The read bandwidth the bounds use: the larger of the two rounds' best, or read_given.
  double read_bytes_per_s() const;
  /// The peak of `family` the bounds use: the larger of the two rounds'.
  double peak(const probe::PeakFamily* family) const;
};

/// Fills each row's peak, bound, ratio and probe failure from the probes (after both rounds).
void bound_rows(BenchResult& r);

/// The text of the output, appended to `out` (printed once the run succeeded: a failed run prints nothing).
void print_header(const BenchResult& r, std::string& out);  // model:, machine:, memory: lines
void print_probe_round(const char* when, const probe::ProbeRound& round, std::string& out);  // read:, peaks:
void print_table(const BenchResult& r, std::string& out);   // limits:, timing:, the table, note: lines
Json bench_json(const BenchResult& r);
Plot bench_plot(const BenchResult& r);

}  // namespace moefuse::cli
