// `moefuse bench`: plans its memory (bench_plan.h), measures this machine's limits (read bandwidth and the peak of
// every instruction family it has) before and after the rows, and times the layer for every (model, quant, path,
// tokens) asked, with cold weights and fresh tokens each iteration; each row is reported against its roofline lower
// bound, and each decode row also against a read of the same threads just before each of its forwards (the paired
// read); --json and --plot write the results (docs/cli.md#moefuse-bench, bench_report.h).
// Over 500 lines: the command's options, its run loop and its row bookkeeping share one state object; the plan,
// the report and the plot are in their own files.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "bench_plan.h"
#include "bench_report.h"
#include "commands.h"
#include "common.h"
#include "ep_commands.h"
#include "moefuse/cpu.h"
#include "moefuse/error.h"
#include "moefuse/files.h"
#include "moefuse/machine.h"
#include "roofline_plot.h"

namespace moefuse::cli {
namespace {

struct BenchArgs {
  ConfigArgs config;
  std::string presets;  // --presets: a list of preset names or "all"; empty: --config / --preset
  std::string tokens = "1,8,32,128,512,2048";
  std::string paths = "chain,superkernel";
  std::string quant;  // empty: the config's quant_mode
  int threads = 0;
  int iters = 5;
  int warmup = 1;
  uint64_t seed = 0;
  int64_t llc_bytes = 0;     // 0: measured (sysfs)
  int64_t memory_bytes = 0;  // 0: MemAvailable
  double read_gbps = 0;      // 0: measured
  std::string json, plot;
  bool ep = false;        // --ep: the expert-parallel layer under mpirun (ep_commands.h)
  std::string placement;  // --placement (with --ep)
  std::string numerics;   // --numerics ("" = each config's key, else the default)
};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> items;
  size_t at = 0;
  while (true) {
    const size_t comma = s.find(',', at);
    items.push_back(s.substr(at, comma == std::string::npos ? std::string::npos : comma - at));
    if (comma == std::string::npos) return items;
    at = comma + 1;
  }
}

bool positive_integer(const std::string& s) {
  int64_t v = 0;
  const char* end = s.data() + s.size();
  const auto [ptr, ec] = std::from_chars(s.data(), end, v);
  return !s.empty() && ec == std::errc() && ptr == end && v >= 1;
}

// A CLI11 check that the value is a comma-separated list of items `ok` accepts:
// "--paths: expected a comma-separated list of chain, superkernel, got chain,fused".
CLI::Validator list_of(const std::string& what, std::function<bool(const std::string&)> ok) {
  return CLI::Validator(
      [what, ok](std::string& s) -> std::string {
        for (const std::string& item : split_list(s))
          if (!ok(item)) return "expected a comma-separated list of " + what + ", got " + s;
        return {};
      },
      "LIST");
}

// A CLI11 check that the value is a finite number >= 0: "--read-gbps: expected a number >= 0, got -1".
CLI::Validator positive_number_or_zero() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        double v = 0;
        const char* end = s.data() + s.size();
        const auto [ptr, ec] = std::from_chars(s.data(), end, v);
        if (s.empty() || ec != std::errc() || ptr != end || !std::isfinite(v) || v < 0)
          return "expected a number >= 0, got " + s;
        return {};
      },
      "NUMBER>=0");
}

bool one_of(const std::string& s, std::initializer_list<const char*> names) {
  return std::any_of(names.begin(), names.end(), [&](const char* n) { return s == n; });
}

// "fp8" is a float layer (quant_mode none) whose expert weights are FP8 block-scaled (make_layer).
QuantMode parse_quant(const std::string& s) {
  return s == "w8a8"    ? QuantMode::w8a8
         : s == "w8a8c8" ? QuantMode::w8a8c8
         : s == "w4a16"  ? QuantMode::w4a16
         : s == "w4a8"   ? QuantMode::w4a8
                         : QuantMode::none;
}

// A layer of `quant` with random weights: FP8 block-scaled expert weights, one byte each, for "fp8".
MoeLayer make_layer(const std::string& quant, const MoeConfig& c, uint64_t seed, const LayerOptions& o) {
  return quant == "fp8" ? MoeLayer::with_random_fp8_weights(c, seed, o) : MoeLayer::with_random_weights(c, seed, o);
}

// The items of a list in their first order, each once.
std::vector<std::string> distinct(const std::vector<std::string>& items) {
  std::vector<std::string> out;
  for (const std::string& s : items)
    if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  return out;
}

// What the rows call the model: the preset's name, or the config file's name.
std::string model_label(const ConfigArgs& a, const LoadedConfig& lc) {
  if (!a.config_path.empty()) return std::filesystem::path(a.config_path).filename().string();
  const size_t eq = lc.source.find(" = ");
  if (eq != std::string::npos) return lc.source.substr(eq + 3);
  return a.preset.empty() ? "default" : a.preset;
}

// 2·3·H·I per (token, expert) pair, 2·3·H·Is per token for the shared expert, 2·H·E per token for the router.
int64_t layer_flops(const MoeConfig& c, int64_t T) {
  const int64_t H = c.hidden_size;
  return T * c.num_experts_per_tok * 6 * H * c.moe_intermediate_size + T * 6 * H * c.shared_expert_width() +
         T * 2 * H * c.num_experts;
}

// The copies of one path, built and timed together with the other paths of its group.
struct PathSet {
  std::string asked;
  std::vector<MoeLayer> layers;
};

// Whether the machine's memory, now, holds one more copy and the room to build it (90% of what is available: other
// processes may have taken memory since the plan was made). A ResourceError saying why when it does not.
void check_machine_holds(const MoeConfig& c, int64_t cost) {
  const int64_t available = available_memory_bytes(), need = cost + build_bytes(c);
  if (need > available - available / 10)
    throw ResourceError("bench: memory: expected one more layer copy to fit in 90% of the " +
                        std::to_string(available) + " bytes available now, got " + std::to_string(need) +
                        " bytes needed to build it");
}

// One (model, quant) to measure: its config per path, and the groups of paths planned.
struct Job {
  size_t model = 0;
  std::string quant;
  std::vector<std::string> paths;
  std::vector<MoeConfig> configs;  // per path
  std::vector<CopyGroup> groups;
};

class Bench {
 public:
  Bench(const BenchArgs& a, std::vector<BenchModel> models, std::vector<std::string> quants,
        std::vector<std::string> paths, std::vector<int64_t> tokens)
      : a_(a), quants_(std::move(quants)), paths_(std::move(paths)), tokens_(std::move(tokens)) {
    r_.models = std::move(models);
    r_.iters = a.iters;
    r_.warmup = a.warmup;
    r_.seed = a.seed;
    r_.read_given = a.read_gbps * 1e9;
  }

  // Plans everything first (no allocation but the plan's arithmetic), then: the probes alone, every group's layers
  // in turn (built, timed, freed), the probes again; the rows' bounds use the better of the two probe rounds.
  void run() {
    plan();
    print_header(r_, text_);
    {
      const probe::ReadBuffer buf(size_t(r_.machine.probe_buffer_bytes), r_.machine.threads);
      r_.before = probe::probe_round(buf, r_.machine.threads);
    }
    print_probe_round("before", r_.before, text_);
    int steps = 0;
    for (const Job& j : jobs_)
      for (const CopyGroup& g : j.groups) steps += int(g.paths.size() * tokens_.size());
    {
      if (r_.machine.paired_read_bytes > 0) paired_.emplace(size_t(r_.machine.paired_read_bytes), r_.machine.threads);
      Progress progress("bench", steps);
      for (Job& j : jobs_)
        for (CopyGroup& g : j.groups) measure_group(j, g, progress);
      paired_.reset();
    }
    if (r_.rows.empty()) throw ResourceError(refused_);
    {
      const probe::ReadBuffer buf(size_t(r_.machine.probe_buffer_bytes), r_.machine.threads);
      r_.after = probe::probe_round(buf, r_.machine.threads);
    }
    print_probe_round("after", r_.after, text_);
    bound_rows(r_);
    for (const BenchRow& row : r_.rows)
      if (row.probe_failure) {
        r_.notes.push_back("rows marked PROBE ran a forward faster than their bound: the probes under-measured this "
                           "machine's limits, so those bounds are not bounds (compare the two probe rounds)");
        break;
      }
    print_table(r_, text_);
  }

  const BenchResult& result() const { return r_; }
  const std::string& text() const { return text_; }

 private:
  // The machine's facts, the memory budget, and per (model, quant) which paths are timed together; refuses (before
  // anything is allocated) when not one layer copy fits.
  void plan() {
    BenchMachine& m = r_.machine;
    m.cpu = probe::cpu_model();
    m.signature = probe::cpu_signature();
    m.family = cpu_family();
    m.prefetch = prefetch_settings();  // read once here: MOEFUSE_PREFETCH's errors come before any work
    // The tiers the layers will run: --numerics, else each config's key, else the default (MOEFUSE_NUMERICS's
    // errors come before any work too).
    for (const BenchModel& bm : r_.models) {
      const Numerics n = !a_.numerics.empty()     ? parse_numerics(a_.numerics, "--numerics")
                         : bm.lc.config.numerics ? *bm.lc.config.numerics
                                                 : default_numerics();
      const std::string tier(numerics_name(n));
      if (std::find(m.numerics.begin(), m.numerics.end(), tier) == m.numerics.end()) m.numerics.push_back(tier);
    }
    m.isa_set = probe::isa_set();
    m.threads = a_.threads > 0 ? a_.threads : std::max(1, int(std::thread::hardware_concurrency()));
    m.cpus = std::max<int>(1, int(probe::allowed_cpus().size()));
    m.llc_given = a_.llc_bytes > 0;
    m.llc_bytes = m.llc_given ? a_.llc_bytes : probe::llc_bytes();
    m.memory_total_bytes = probe::total_memory_bytes();
    m.memory_given = a_.memory_bytes > 0;
    m.memory_bytes = m.memory_given ? a_.memory_bytes : available_memory_bytes();
    int64_t tokens_bytes = 0;  // every row's inputs and the output buffer, for the largest model
    for (const BenchModel& bm : r_.models) {
      const MoeConfig& c = bm.lc.config;
      int64_t b = tokens_.back() * c.hidden_size * int64_t(dtype_size(c.dtype));
      for (int64_t T : tokens_) b += (a_.iters + 1) * T * c.hidden_size * int64_t(dtype_size(c.dtype));
      tokens_bytes = std::max(tokens_bytes, b);
    }
    m.budget_bytes = std::max<int64_t>(0, m.memory_bytes - m.memory_bytes / 10 - tokens_bytes);
    const int64_t want = std::max<int64_t>(int64_t(512) << 20, 8 * m.llc_bytes);
    m.probe_buffer_bytes = std::max<int64_t>(int64_t(128) * 64 * m.threads, std::min(want, m.budget_bytes / 2));
    // The paired read comes out of the 10% the budget leaves (at most 5% of the memory): four times the LLC so that
    // its reads, and the forward's weights after it, come from memory; off when that 5% does not hold twice the LLC.
    const int64_t paired = std::min(std::max<int64_t>(int64_t(256) << 20, 4 * m.llc_bytes), m.memory_bytes / 20);
    m.paired_read_bytes = paired >= 2 * m.llc_bytes ? paired / 128 * 128 : 0;

    int64_t smallest = -1;
    std::string smallest_what;
    for (size_t mi = 0; mi < r_.models.size(); ++mi)
      for (const std::string& q : quants_) {
        Job j;
        j.model = mi;
        j.quant = q;
        std::vector<int64_t> costs, builds;
        for (const std::string& p : paths_) {
          MoeConfig c = r_.models[mi].lc.config;
          c.quant_mode = parse_quant(q);
          c.enable_superkernel = p == "superkernel";
          const int64_t cost = copy_bytes(c, tokens_.back(), m.threads), build = build_bytes(c);
          if (smallest < 0 || cost + build < smallest) {
            smallest = cost + build;
            smallest_what = r_.models[mi].label + " " + q + " " + p + ": " + std::to_string(layer_weight_bytes(c)) +
                            " of weights, " + std::to_string(cost - layer_weight_bytes(c)) + " of workspace, " +
                            std::to_string(build) + " more while it is built";
          }
          j.paths.push_back(p);
          j.configs.push_back(c);
          costs.push_back(cost);
          builds.push_back(build);
        }
        std::vector<std::string> skipped;
        j.groups = group_paths(j.paths, costs, builds, m.budget_bytes, skipped);
        const std::string what = r_.models[mi].label + " " + q;
        for (const std::string& p : skipped) {
          const size_t i = size_t(std::find(j.paths.begin(), j.paths.end(), p) - j.paths.begin());
          r_.notes.push_back(what + ", " + p + ": not measured: one layer copy needs " + bytes_text(costs[i]) + " (" +
                             bytes_text(layer_weight_bytes(j.configs[i])) + " of weights) and " +
                             bytes_text(builds[i]) + " more while it is built, more than the budget of " +
                             bytes_text(m.budget_bytes));
        }
        if (j.groups.size() > 1)
          r_.notes.push_back(what + ": the paths were timed one group after the other (their layers did not fit "
                             "together), so their ratio carries the machine's drift");
        jobs_.push_back(std::move(j));
      }
    const bool any = std::any_of(jobs_.begin(), jobs_.end(), [](const Job& j) { return !j.groups.empty(); });
    if (!any)
      throw ResourceError("bench: memory: expected a layer copy to fit in the budget of " +
                          std::to_string(m.budget_bytes) + " bytes (90% of the " + std::to_string(m.memory_bytes) +
                          " bytes available, less the tokens), got " + std::to_string(smallest) + " bytes needed (" +
                          smallest_what + ")");
  }

  // iters + 1 inputs of T random tokens: one per timed step, the last for the warm-up steps.
  const std::vector<Tensor>& inputs(int64_t T, const MoeConfig& c) {
    std::vector<Tensor>& v = inputs_[std::make_tuple(c.hidden_size, int(c.dtype), T)];
    for (int i = int(v.size()); i <= a_.iters; ++i)
      v.push_back(random_tokens(T, c.hidden_size, a_.seed * 0x9e3779b97f4a7c15ull + uint64_t(T) * 65536 + uint64_t(i),
                               c.dtype));
    return v;
  }

  // Builds the group's copies as planned, times every token count, frees them.
  void measure_group(Job& j, CopyGroup& g, Progress& progress) {
    const std::string what = r_.models[j.model].label + " " + j.quant;
    LayerOptions o;
    o.threads = a_.threads;
    o.numerics = numerics_option(a_.numerics);
    std::vector<PathSet> sets;
    std::vector<MoeConfig> configs;
    std::vector<int64_t> costs;
    const int64_t T0 = tokens_.front();
    for (size_t i = 0; i < g.paths.size(); ++i) {
      const size_t k = size_t(std::find(j.paths.begin(), j.paths.end(), g.paths[i]) - j.paths.begin());
      try {
        sets.push_back(PathSet{g.paths[i], {}});
        check_machine_holds(j.configs[k], g.copy_bytes[i]);
        sets.back().layers.push_back(make_layer(j.quant, j.configs[k], a_.seed, o));
      } catch (const ResourceError& e) {  // the machine has less than the plan assumed (others took memory)
        sets.pop_back();
        refused_ = e.what();
        r_.notes.push_back(what + ", " + g.paths[i] + ": not measured: " + e.what());
        continue;
      }
      // One untimed step at the smallest token count says how many weight bytes a step reads.
      const Tensor x = inputs(T0, j.configs[k]).back();
      const Tensor y = Tensor::empty(j.configs[k].dtype, {T0, j.configs[k].hidden_size});
      sets.back().layers.front().forward_out(x, T0 >= kPrefillFrom, y);
      configs.push_back(j.configs[k]);
      costs.push_back(g.copy_bytes[i]);
      g.step_bytes.push_back(sets.back().layers.front().last_timings().weight_bytes);
    }
    if (sets.empty()) return;
    g.paths.clear();
    for (const PathSet& s : sets) g.paths.push_back(s.asked);
    g.copy_bytes = costs;
    plan_copies(g, r_.machine.llc_bytes, r_.machine.budget_bytes);
    // The planned copies, round by round, each checked against the machine's memory when it is built.
    for (int64_t n = 1; n < g.copies; ++n) {
      bool ok = true;
      for (size_t i = 0; i < sets.size() && ok; ++i) {
        try {
          check_machine_holds(configs[i], costs[i]);
          sets[i].layers.push_back(make_layer(j.quant, configs[i], a_.seed + uint64_t(n), o));
        } catch (const ResourceError&) {
          ok = false;
        }
      }
      if (!ok) {
        for (PathSet& s : sets) s.layers.erase(s.layers.begin() + n, s.layers.end());
        settle_copies(g, n, "memory", r_.machine.llc_bytes);
        break;
      }
    }
    const std::string note = copies_note(what, g, r_.machine.llc_bytes);
    if (!note.empty()) r_.notes.push_back(note);
    r_.groups.push_back(BenchGroup{r_.models[j.model].label, j.quant, g});

    std::vector<std::vector<BenchRow>> rows(sets.size());
    for (int64_t T : tokens_) {
      std::vector<BenchRow> at_t = measure(sets, r_.models[j.model].label, j.quant, T);
      for (size_t i = 0; i < sets.size(); ++i) {
        rows[i].push_back(at_t[i]);
        progress.step();
      }
    }
    for (const std::vector<BenchRow>& path_rows : rows) r_.rows.insert(r_.rows.end(), path_rows.begin(), path_rows.end());
  }

  // One row per path set at T tokens: warm-up forwards on every copy, then iters rounds of one forward per set.
  std::vector<BenchRow> measure(std::vector<PathSet>& sets, const std::string& model, const std::string& quant,
                                int64_t T) {
    const MoeConfig& c0 = sets.front().layers.front().config();
    const std::vector<Tensor>& x = inputs(T, c0);
    const Tensor y = Tensor::empty(c0.dtype, {T, c0.hidden_size});
    const bool prefill = T >= kPrefillFrom;
    for (PathSet& set : sets)
      for (int w = 0; w < a_.warmup; ++w)
        for (MoeLayer& layer : set.layers) layer.forward_out(x[size_t(a_.iters)], prefill, y);

    // Decode rows: the paired read, one pass on the layer's threads just before every forward, so that each forward
    // has a read bandwidth of its own seconds (this VM-class machine's bandwidth moves by 2x between minutes, more
    // than any gap the rows are meant to show) and starts with its weights out of the cache.
    const bool paired = paired_.has_value() && !prefill;
    std::vector<std::vector<double>> ms(sets.size()), bytes(sets.size()), reads(sets.size());
    for (int i = 0; i < a_.iters; ++i)
      for (size_t k = 0; k < sets.size(); ++k) {
        std::vector<MoeLayer>& layers = sets[k].layers;
        MoeLayer& layer = layers[size_t(i) % layers.size()];
        if (paired) reads[k].push_back(probe::measure_read_bandwidth(*paired_, r_.machine.threads, 1));
        const auto t0 = std::chrono::steady_clock::now();
        layer.forward_out(x[size_t(i)], prefill, y);
        const auto t1 = std::chrono::steady_clock::now();
        ms[k].push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        bytes[k].push_back(double(layer.last_timings().weight_bytes));
      }
    std::vector<BenchRow> rows;
    for (size_t k = 0; k < sets.size(); ++k) {
      const MoeLayer& layer = sets[k].layers.front();
      BenchRow r;
      r.model = model;
      r.quant = quant;
      r.asked_path = sets[k].asked;
      r.path = layer.path();
      r.kernel = layer.kernel();
      r.numerics = std::string(numerics_name(layer.numerics()));
      r.family = probe::family_of_kernel(r.kernel);
      r.tokens = T;
      r.prefill = prefill;
      r.ms_median = median(ms[k]);
      r.ms_min = *std::min_element(ms[k].begin(), ms[k].end());
      r.ms_max = *std::max_element(ms[k].begin(), ms[k].end());
      r.weight_bytes = int64_t(std::llround(median(bytes[k])));
      r.flops = layer_flops(layer.config(), T);
      r.copies = int(sets[k].layers.size());
      const double s = r.ms_median / 1e3;
      r.gbps = s > 0 ? double(r.weight_bytes) / s / 1e9 : 0;
      r.gflops = s > 0 ? double(r.flops) / s / 1e9 : 0;
      if (paired) {
        std::vector<double> vs;
        for (size_t i = 0; i < ms[k].size(); ++i)
          if (reads[k][i] > 0 && bytes[k][i] > 0) vs.push_back(ms[k][i] / 1e3 / (bytes[k][i] / reads[k][i]));
        r.paired_read = median(reads[k]);
        if (!vs.empty()) r.vs_read = median(vs);
      }
      rows.push_back(r);
    }
    // The fused path against the chain, forward by forward (paired, so the machine's drift cancels).
    for (size_t k = 0; k < sets.size(); ++k)
      for (size_t j = 0; j < sets.size(); ++j)
        if (sets[k].asked == "superkernel" && sets[j].asked == "chain") {
          std::vector<double> ratio;
          for (size_t i = 0; i < ms[k].size(); ++i)
            if (ms[j][i] > 0) ratio.push_back(ms[k][i] / ms[j][i]);
          if (!ratio.empty()) rows[k].vs_chain = median(ratio);
        }
    return rows;
  }

  const BenchArgs& a_;
  std::vector<std::string> quants_, paths_;
  std::vector<int64_t> tokens_;
  std::vector<Job> jobs_;
  std::map<std::tuple<int64_t, int, int64_t>, std::vector<Tensor>> inputs_;
  BenchResult r_;
  std::optional<probe::ReadBuffer> paired_;  // while the layers are timed, when BenchMachine::paired_read_bytes > 0
  std::string refused_;  // why the last layer copy was refused by the machine's memory
  std::string text_;     // the output's text, printed after a successful run
};

// The models asked: --presets (each name once; "all": every built-in preset), else --config / --preset.
std::vector<BenchModel> load_models(const BenchArgs& a) {
  std::vector<BenchModel> models;
  if (a.presets.empty()) {
    LoadedConfig lc = load_config(a.config);
    models.push_back(BenchModel{model_label(a.config, lc), std::move(lc)});
    return models;
  }
  std::vector<std::string> names = distinct(split_list(a.presets));
  if (names == std::vector<std::string>{"all"}) names = preset_names();
  for (const std::string& name : names) {
    ConfigArgs c;
    c.preset = name;
    models.push_back(BenchModel{name, load_config(c)});
  }
  return models;
}

int bench(const BenchArgs& a) {
  // Everything that can be checked is checked before any work.
  std::vector<int64_t> tokens;
  for (const std::string& s : split_list(a.tokens)) tokens.push_back(std::stoll(s));
  std::sort(tokens.begin(), tokens.end());
  tokens.erase(std::unique(tokens.begin(), tokens.end()), tokens.end());
  if (a.ep) {
    if (!a.presets.empty() || !a.plot.empty() || !a.quant.empty())
      throw ValueError("--ep: expected one model (--config / --preset) without --presets, --quant or --plot, got " +
                       std::string(!a.presets.empty() ? "--presets" : !a.plot.empty() ? "--plot" : "--quant"));
    return bench_ep(
        EpBenchArgs{a.config, tokens, a.threads, a.iters, a.warmup, a.seed, a.placement, a.json, a.numerics});
  }
  const std::vector<std::string> paths = distinct(split_list(a.paths));
  if (!a.presets.empty() && (!a.config.config_path.empty() || !a.config.preset.empty()))
    throw ValueError("--presets: expected no --config or --preset beside it, got " +
                     std::string(a.config.config_path.empty() ? "--preset" : "--config"));
  std::vector<BenchModel> models = load_models(a);
  std::vector<std::string> quants;
  if (!a.quant.empty()) quants = distinct(split_list(a.quant));
  else
    for (const BenchModel& m : models) {
      const std::string q(quant_mode_name(m.lc.config.quant_mode));
      if (std::find(quants.begin(), quants.end(), q) == quants.end()) quants.push_back(q);
    }
  for (const BenchModel& m : models)
    for (const std::string& q : quants) {
      MoeConfig c = m.lc.config;
      c.quant_mode = parse_quant(q);
      if (c.quant_mode != m.lc.config.quant_mode) validate(c, m.lc.source + " with quant_mode " + q);
      if (q == "fp8" && c.dtype != DType::bf16)
        throw ValueError("--quant fp8: expected a bf16 model (the FP8 kernels round the weights to bf16), got " +
                         m.label + " of dtype " + std::string(dtype_name(c.dtype)));
    }
  if (!a.plot.empty() && !plot_format(a.plot))
    throw ValueError("--plot: expected a file name ending in .png or .svg, got " + a.plot);
  OutputSet files;
  files.add_input("--config", a.config.config_path);
  files.add_output("--json", a.json);
  files.add_output("--plot", a.plot);

  Bench b(a, std::move(models), quants, paths, tokens);
  b.run();
  std::fputs(b.text().c_str(), stdout);
  if (!a.json.empty()) {
    const std::string text = bench_json(b.result()).dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
    write_file_atomic(files.staging("--json"), "--json",
                                 [&](const ByteSink& sink) { sink(text.data(), text.size()); });
  }
  if (!a.plot.empty()) write_plot(files.staging("--plot"), bench_plot(b.result()), "--plot");
  files.commit();
  if (!a.json.empty()) std::printf("json:       %s\n", a.json.c_str());
  if (!a.plot.empty()) std::printf("plot:       %s\n", a.plot.c_str());
  return 0;
}

}  // namespace

void add_bench_command(CLI::App& app, int& status) {
  CLI::App* cmd = app.add_subcommand(
      "bench", "Time the layer against this machine's measured bandwidth and peaks (roofline), over token counts");
  auto a = std::make_shared<BenchArgs>();
  add_config_options(cmd, a->config);
  cmd->add_option("--presets", a->presets,
                  "Several models: preset names, comma-separated, or all (instead of --config / --preset)")
      ->check(list_of("preset names or all", [](const std::string& s) { return !s.empty(); }));
  cmd->add_option("--tokens", a->tokens, "Token counts, comma-separated (default 1,8,32,128,512,2048)")
      ->check(list_of("integers >= 1", positive_integer));
  cmd->add_option("--paths", a->paths, "Paths, comma-separated: chain, superkernel (default both)")
      ->check(list_of("chain, superkernel", [](const std::string& s) { return one_of(s, {"chain", "superkernel"}); }));
  cmd->add_option("--quant", a->quant,
                  "Quantisations, comma-separated: none, w8a8, w8a8c8, w4a16, w4a8, fp8 (default: the config's; w4a16 "
                  "and w4a8 use the config's quant_group_size; fp8: a bf16 float layer whose expert weights are e4m3 "
                  "with 128 x 128 block scales, one byte each)")
      ->check(list_of("none, w8a8, w8a8c8, w4a16, w4a8, fp8", [](const std::string& s) {
        return one_of(s, {"none", "w8a8", "w8a8c8", "w4a16", "w4a8", "fp8"});
      }));
  add_numerics_option(cmd, a->numerics);
  cmd->add_option("--threads", a->threads, "Threads of the layer and of the machine probes (default 0: every core)")
      ->check(integer_at_least(0));
  cmd->add_option("--iters", a->iters, "Timed forwards per row; the median is reported (default 5)")
      ->check(integer_at_least(1));
  cmd->add_option("--warmup", a->warmup, "Untimed forwards per layer copy before each row (default 1)")
      ->check(integer_at_least(0));
  cmd->add_option("--seed", a->seed, "Seed of the random weights and tokens (default 0)")->check(unsigned_64());
  cmd->add_option("--llc-bytes", a->llc_bytes,
                  "Plan the layer copies for a last-level cache of this many bytes (default 0: this machine's)")
      ->check(integer_at_least(0));
  cmd->add_option("--memory-bytes", a->memory_bytes,
                  "Plan within this many bytes of memory (default 0: what the machine has available)")
      ->check(integer_at_least(0));
  cmd->add_option("--read-gbps", a->read_gbps,
                  "Bound the rows with this read bandwidth in GB/s (e.g. a data sheet's) instead of the probes' "
                  "(default 0: measured)")
      ->check(positive_number_or_zero());
  cmd->add_option("--json", a->json, "Write the machine and the rows as JSON to this file");
  cmd->add_option("--plot", a->plot, "Draw time against tokens with the lower bounds: a .png or .svg file");
  CLI::Option* ep = cmd->add_flag("--ep", a->ep,
                                  "The expert-parallel layer under mpirun: per rank, the time of dispatch, experts and "
                                  "combine and the bytes moved (--tokens per rank)");
  cmd->add_option("--placement", a->placement, "With --ep: a JSON file {\"experts\": [[ranks of expert 0], ...]}")
      ->needs(ep);
  cmd->callback([a, &status] { status = bench(*a); });
}

}  // namespace moefuse::cli
