// `moefuse bench`: measures this machine's limits (read bandwidth, fp32 FMA peak, int8 VNNI peak), then times the
// layer for every (quant, path, tokens) asked, with cold weights and fresh tokens each iteration, and reports each
// row against its roofline lower bound; --json and --plot write the results (docs/cli.md#moefuse-bench).
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/machine_probe.h"
#include "commands.h"
#include "common.h"
#include "io/files.h"
#include "moefuse/cpu.h"
#include "moefuse/error.h"
#include "roofline_plot.h"

namespace moefuse::cli {
namespace {

// Token counts from this one on run the prefill schedule (forward(x, is_prefill = true)); smaller ones decode.
constexpr int64_t kPrefillFrom = 128;
// Layer copies rotated at most (a tiny model would otherwise want thousands to fill 4x the LLC).
constexpr int kMaxCopies = 32;

struct BenchArgs {
  ConfigArgs config;
  std::string tokens = "1,8,32,128,512,2048";
  std::string paths = "chain,superkernel";
  std::string quant;  // empty: the config's quant_mode
  int threads = 0;
  int iters = 5;
  int warmup = 1;
  uint64_t seed = 0;
  std::string json, plot;
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

bool one_of(const std::string& s, std::initializer_list<const char*> names) {
  return std::any_of(names.begin(), names.end(), [&](const char* n) { return s == n; });
}

QuantMode parse_quant(const std::string& s) {
  return s == "w8a8" ? QuantMode::w8a8 : s == "w8a8c8" ? QuantMode::w8a8c8 : QuantMode::none;
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

struct Row {
  std::string quant, asked_path, path;
  int64_t tokens = 0;
  bool prefill = false;
  double ms_median = 0, ms_min = 0, ms_max = 0;
  int64_t weight_bytes = 0, flops = 0;
  double gbps = 0, gflops = 0, lower_bound_ms = 0, ratio = 0;
  double vs_chain = 0;  // superkernel rows timed beside a chain row: median over iterations of time / chain's time
  int copies = 1;
};

// Copies of one layer configuration (different seeds), each run in turn so that a step finds its weights cold.
struct Copies {
  std::vector<MoeLayer> layers;
  int64_t wanted = 1;  // enough copies that one pass over them reads 4x the LLC
  std::string limit;  // why fewer than `wanted` ("" when none)
};

// The copies of one path (chain or superkernel), as asked.
struct PathSet {
  std::string asked;
  Copies copies;
};

// 2·3·H·I per (token, expert) pair, 2·3·H·Is per token for the shared expert, 2·H·E per token for the router.
int64_t layer_flops(const MoeConfig& c, int64_t T) {
  const int64_t H = c.hidden_size;
  return T * c.num_experts_per_tok * 6 * H * c.moe_intermediate_size + T * 6 * H * c.shared_expert_width() +
         T * 2 * H * c.num_experts;
}

class Bench {
 public:
  Bench(const BenchArgs& a, const LoadedConfig& lc) : a_(a), lc_(lc) {}

  // Per quant, the layers of every path are built first and then timed together: for each token count, iteration
  // i runs each path once in turn, so the paths see the same machine state (this VM's speed drifts by tens of
  // percent over seconds) and their ratio is what the rows compare. A path whose layers no longer fit beside the
  // others' is measured after them, alone (and a note says so).
  void run(const std::vector<std::string>& quants, const std::vector<std::string>& paths,
           const std::vector<int64_t>& tokens) {
    std::unique_ptr<Progress> progress;
    for (const std::string& q : quants) {
      std::vector<PathSet> sets;
      auto measure_sets = [&] {
        std::vector<std::vector<Row>> rows(sets.size());
        for (int64_t T : tokens) {
          std::vector<Row> at_t = measure(sets, q, T);
          for (size_t i = 0; i < sets.size(); ++i) rows[i].push_back(at_t[i]);
          for (size_t i = 0; i < sets.size(); ++i) progress->step();
        }
        for (const std::vector<Row>& path_rows : rows)
          for (const Row& r : path_rows) {
            rows_.push_back(r);
            print_row(r);
          }
        sets.clear();
      };
      for (const std::string& p : paths) {
        MoeConfig c = lc_.config;
        c.quant_mode = parse_quant(q);
        c.enable_superkernel = p == "superkernel";
        try {
          sets.push_back(PathSet{p, make_copies(c, tokens.front())});
        } catch (const ResourceError&) {
          if (sets.empty()) throw;
          measure_sets();  // frees the other paths' layers
          notes_.push_back("quant " + q + ", path " + p + ": measured alone (its layers did not fit beside the " +
                           "other paths'), so its ratio to them carries the machine's drift");
          sets.push_back(PathSet{p, make_copies(c, tokens.front())});
        }
        if (!progress) {
          print_header();
          progress = std::make_unique<Progress>("bench", int(quants.size() * paths.size() * tokens.size()));
        }
        const Copies& copies = sets.back().copies;
        if (!copies.limit.empty())
          notes_.push_back("quant " + q + ", path " + p + ": " + std::to_string(copies.layers.size()) + " of " +
                           std::to_string(copies.wanted) + " layer copies (" + copies.limit +
                           "): the weights are partly cache-resident at small token counts");
      }
      measure_sets();
    }
    progress.reset();
    for (const std::string& n : notes_) std::printf("note:       %s\n", n.c_str());
  }

  Json to_json() const {
    const probe::MachineLimits& m = *machine_;
    auto positive_or_null = [](double v) { return v > 0 ? Json(v) : Json(nullptr); };
    Json machine{{"read_gbps", m.read_bytes_per_s / 1e9},
                 {"fp32_peak_gflops", positive_or_null(m.fp32_flops / 1e9)},
                 {"int8_peak_gops", positive_or_null(m.int8_ops / 1e9)},
                 {"threads", m.threads},
                 {"isa", isa_name(active_isa())},
                 {"vnni", use_avx512_vnni()},
                 {"llc_bytes", m.llc_bytes},
                 {"cpu", m.cpu},
                 {"read_buffer_bytes", m.read_buffer_bytes},
                 {"fp32_peak_instruction", *m.fp32_loop ? Json(m.fp32_loop) : Json(nullptr)},
                 {"int8_peak_instruction", *m.int8_loop ? Json(m.int8_loop) : Json(nullptr)}};
    Json rows = Json::array();
    for (const Row& r : rows_)
      rows.push_back(Json{{"preset", model_label(a_.config, lc_)},
                          {"dtype", dtype_name(lc_.config.dtype)},
                          {"quant", r.quant},
                          {"requested_path", r.asked_path},
                          {"path", r.path},
                          {"schedule", r.prefill ? "prefill" : "decode"},
                          {"tokens", r.tokens},
                          {"ms_median", r.ms_median},
                          {"ms_min", r.ms_min},
                          {"ms_max", r.ms_max},
                          {"weight_bytes", r.weight_bytes},
                          {"flops", r.flops},
                          {"gbps", r.gbps},
                          {"gflops", r.gflops},
                          {"lower_bound_ms", r.lower_bound_ms},
                          {"ratio", positive_or_null(r.ratio)},
                          {"vs_chain", positive_or_null(r.vs_chain)},
                          {"copies", r.copies}});
    return Json{{"command", "bench"},
                {"version", MOEFUSE_VERSION},
                {"model", describe_model(lc_)},
                {"iters", a_.iters},
                {"warmup", a_.warmup},
                {"seed", a_.seed},
                {"prefill_from_tokens", kPrefillFrom},
                {"machine", machine},
                {"rows", rows},
                {"notes", notes_}};
  }

  Plot to_plot() const {
    const probe::MachineLimits& m = *machine_;
    Plot plot;
    plot.title = "moefuse bench: " + model_label(a_.config, lc_) + " (" + std::string(dtype_name(lc_.config.dtype)) +
                 "), " + std::to_string(m.threads) + " thread" + (m.threads == 1 ? "" : "s");
    char sub[256];
    std::snprintf(sub, sizeof sub, "%s: read %.1f GB/s, fp32 FMA %.0f GFLOP/s", m.cpu.c_str(), m.read_bytes_per_s / 1e9,
                  m.fp32_flops / 1e9);
    plot.subtitle = sub;
    if (m.int8_ops > 0) {
      std::snprintf(sub, sizeof sub, ", int8 VNNI %.0f GOP/s", m.int8_ops / 1e9);
      plot.subtitle += sub;
    }
    plot.x_label = "tokens";
    plot.y_label = "time per forward (ms, median)";
    // One line per (quant, asked path); the lower bound once per quant, in the colour of its first line.
    std::vector<PlotLine> bounds;
    for (const Row& r : rows_) {
      const std::string label = r.quant + " " + r.asked_path;
      auto it = std::find_if(plot.lines.begin(), plot.lines.end(), [&](const PlotLine& l) { return l.label == label; });
      if (it == plot.lines.end()) {
        plot.lines.push_back(PlotLine{label, {}, {}, int(plot.lines.size()), false});
        it = plot.lines.end() - 1;
      }
      it->x.push_back(double(r.tokens));
      it->y.push_back(r.ms_median);
      const std::string bound = r.quant + " lower bound";
      auto b = std::find_if(bounds.begin(), bounds.end(), [&](const PlotLine& l) { return l.label == bound; });
      if (b == bounds.end()) {
        bounds.push_back(PlotLine{bound, {}, {}, it->color, true});
        b = bounds.end() - 1;
      }
      if (r.asked_path == rows_.front().asked_path) {
        b->x.push_back(double(r.tokens));
        b->y.push_back(r.lower_bound_ms);
      }
    }
    plot.lines.insert(plot.lines.end(), bounds.begin(), bounds.end());
    return plot;
  }

 private:
  Copies make_copies(const MoeConfig& c, int64_t first_tokens) {
    LayerOptions o;
    o.threads = a_.threads;
    Copies copies;
    const int64_t before = available_memory_bytes();
    copies.layers.push_back(MoeLayer::with_random_weights(c, a_.seed, o));
    const int64_t cost = std::max(layer_weight_bytes(c), before - available_memory_bytes());
    if (!machine_) measure_machine(copies.layers.front().threads());

    // One untimed step at the smallest token count says how many weight bytes a step reads.
    const Tensor x = inputs(first_tokens, c).back();
    const Tensor y = Tensor::empty(c.dtype, {first_tokens, c.hidden_size});
    copies.layers.front().forward_out(x, first_tokens >= kPrefillFrom, y);
    const int64_t step_bytes = copies.layers.front().last_timings().weight_bytes;
    const int64_t cold = 4 * machine_->llc_bytes;
    copies.wanted = step_bytes > 0 && step_bytes < cold ? (cold + step_bytes - 1) / step_bytes : 1;
    const int64_t target = std::min<int64_t>(copies.wanted, kMaxCopies);
    if (copies.wanted > kMaxCopies) copies.limit = "at most " + std::to_string(kMaxCopies);

    // Copies while half of the memory still available is enough for one more.
    while (int64_t(copies.layers.size()) < target) {
      if (cost > available_memory_bytes() / 2) {
        copies.limit = "limited by available memory";
        break;
      }
      try {
        copies.layers.push_back(MoeLayer::with_random_weights(c, a_.seed + copies.layers.size(), o));
      } catch (const ResourceError&) {
        copies.limit = "limited by available memory";
        break;
      }
    }
    return copies;
  }

  void measure_machine(int threads) {
    const int64_t llc = probe::llc_bytes();
    const int64_t want = std::max<int64_t>(int64_t(512) << 20, 8 * llc);
    const int64_t buffer = std::max<int64_t>(int64_t(16) << 20, std::min(want, available_memory_bytes() / 4));
    machine_ = std::make_unique<probe::MachineLimits>(probe::measure_machine(threads, size_t(buffer)));
  }

  // iters + 1 inputs of T random tokens: one per timed step, the last for the warm-up steps.
  const std::vector<Tensor>& inputs(int64_t T, const MoeConfig& c) {
    std::vector<Tensor>& v = inputs_[T];
    for (int i = int(v.size()); i <= a_.iters; ++i)
      v.push_back(random_input(T, c.hidden_size, a_.seed * 0x9e3779b97f4a7c15ull + uint64_t(T) * 65536 + uint64_t(i),
                               c.dtype));
    return v;
  }

  // One row per path set at T tokens: warm-up forwards on every copy, then iters rounds of one forward per set.
  std::vector<Row> measure(std::vector<PathSet>& sets, const std::string& quant, int64_t T) {
    const MoeConfig& c0 = sets.front().copies.layers.front().config();
    const std::vector<Tensor>& x = inputs(T, c0);
    const Tensor y = Tensor::empty(c0.dtype, {T, c0.hidden_size});
    const bool prefill = T >= kPrefillFrom;
    for (PathSet& set : sets)
      for (int w = 0; w < a_.warmup; ++w)
        for (MoeLayer& layer : set.copies.layers) layer.forward_out(x[size_t(a_.iters)], prefill, y);

    std::vector<std::vector<double>> ms(sets.size()), bytes(sets.size());
    std::vector<std::string> path(sets.size());
    for (int i = 0; i < a_.iters; ++i)
      for (size_t k = 0; k < sets.size(); ++k) {
        std::vector<MoeLayer>& layers = sets[k].copies.layers;
        MoeLayer& layer = layers[size_t(i) % layers.size()];
        const auto t0 = std::chrono::steady_clock::now();
        layer.forward_out(x[size_t(i)], prefill, y);
        const auto t1 = std::chrono::steady_clock::now();
        ms[k].push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        bytes[k].push_back(double(layer.last_timings().weight_bytes));
        path[k] = layer.path();
      }
    std::vector<Row> rows;
    for (size_t k = 0; k < sets.size(); ++k)
      rows.push_back(make_row(sets[k].copies, quant, sets[k].asked, path[k], T, prefill, ms[k], bytes[k]));
    // The fused path against the chain, forward by forward (paired, so the machine's drift cancels).
    for (size_t k = 0; k < sets.size(); ++k)
      for (size_t j = 0; j < sets.size(); ++j)
        if (sets[k].asked == "superkernel" && sets[j].asked == "chain") {
          std::vector<double> r;
          for (size_t i = 0; i < ms[k].size(); ++i)
            if (ms[j][i] > 0) r.push_back(ms[k][i] / ms[j][i]);
          if (!r.empty()) rows[k].vs_chain = median(r);
        }
    return rows;
  }

  Row make_row(const Copies& copies, const std::string& quant, const std::string& asked, const std::string& path,
               int64_t T, bool prefill, const std::vector<double>& ms, const std::vector<double>& bytes) const {
    const MoeConfig& c = copies.layers.front().config();
    const size_t n = copies.layers.size();
    Row r{.quant = quant,
          .asked_path = asked,
          .path = path,
          .tokens = T,
          .prefill = prefill,
          .ms_median = median(ms),
          .ms_min = *std::min_element(ms.begin(), ms.end()),
          .ms_max = *std::max_element(ms.begin(), ms.end()),
          .weight_bytes = int64_t(std::llround(median(bytes))),
          .flops = layer_flops(c, T),
          .copies = int(n)};
    const double s = r.ms_median / 1e3;
    r.gbps = s > 0 ? double(r.weight_bytes) / s / 1e9 : 0;
    r.gflops = s > 0 ? double(r.flops) / s / 1e9 : 0;
    const probe::MachineLimits& m = *machine_;
    const double peak = c.quant_mode == QuantMode::none ? m.fp32_flops : m.int8_ops;
    const double memory_s = m.read_bytes_per_s > 0 ? double(r.weight_bytes) / m.read_bytes_per_s : 0;
    const double compute_s = peak > 0 ? double(r.flops) / peak : 0;
    r.lower_bound_ms = std::max(memory_s, compute_s) * 1e3;
    r.ratio = r.lower_bound_ms > 0 ? r.ms_median / r.lower_bound_ms : 0;
    return r;
  }

  void print_header() const {
    const probe::MachineLimits& m = *machine_;
    const MoeConfig& c = lc_.config;
    std::printf("model:      %s (%s): H %lld, I %lld, E %lld, K %lld, shared width %lld, dtype %s\n",
                std::string(model_type_name(c.model_type)).c_str(), lc_.source.c_str(),
                static_cast<long long>(c.hidden_size), static_cast<long long>(c.moe_intermediate_size),
                static_cast<long long>(c.num_experts), static_cast<long long>(c.num_experts_per_tok),
                static_cast<long long>(c.shared_expert_width()), std::string(dtype_name(c.dtype)).c_str());
    std::printf("machine:    %s; %d thread%s, isa %s%s, LLC %.1f MiB\n", m.cpu.c_str(), m.threads,
                m.threads == 1 ? "" : "s", std::string(isa_name(active_isa())).c_str(),
                use_avx512_vnni() ? " + vnni" : "", double(m.llc_bytes) / double(1 << 20));
    std::printf("limits:     read %.1f GB/s, fp32 FMA peak %.1f GFLOP/s, int8 VNNI peak %s\n",
                m.read_bytes_per_s / 1e9, m.fp32_flops / 1e9,
                m.int8_ops > 0 ? (std::to_string(int64_t(std::llround(m.int8_ops / 1e9))) + " GOP/s").c_str()
                               : "none (no AVX-512 VNNI)");
    std::printf("timing:     median of %d timed forward%s after %d warm-up forward%s per layer copy; decode below %lld "
                "tokens, prefill from %lld\n",
                a_.iters, a_.iters == 1 ? "" : "s", a_.warmup, a_.warmup == 1 ? "" : "s",
                static_cast<long long>(kPrefillFrom), static_cast<long long>(kPrefillFrom));
    std::printf("%-7s %-12s %-12s %6s %-7s %10s %10s %10s %9s %9s %7s %8s %9s %7s %6s %8s\n", "quant", "asked", "path",
                "tokens", "mode", "median ms", "min ms", "max ms", "weight MB", "GFLOP", "GB/s", "GFLOP/s",
                "bound ms", "ratio", "copies", "vs chain");
    std::fflush(stdout);
  }

  static void print_row(const Row& r) {
    char ratio[32] = "-";
    if (r.ratio > 0) std::snprintf(ratio, sizeof ratio, "%.2f", r.ratio);
    char vs_chain[32] = "-";
    if (r.vs_chain > 0) std::snprintf(vs_chain, sizeof vs_chain, "%.3f", r.vs_chain);
    std::printf("%-7s %-12s %-12s %6lld %-7s %10.3f %10.3f %10.3f %9.1f %9.3f %7.1f %8.1f %9.3f %7s %6d %8s\n",
                r.quant.c_str(), r.asked_path.c_str(), r.path.substr(0, r.path.find(':')).c_str(),  // the table's
                static_cast<long long>(r.tokens),  // path is one word; --json keeps why the fused path declined
                r.prefill ? "prefill" : "decode", r.ms_median, r.ms_min, r.ms_max, double(r.weight_bytes) / 1e6,
                double(r.flops) / 1e9, r.gbps, r.gflops, r.lower_bound_ms, ratio, r.copies, vs_chain);
    std::fflush(stdout);
  }

  const BenchArgs& a_;
  const LoadedConfig& lc_;
  std::unique_ptr<probe::MachineLimits> machine_;
  std::map<int64_t, std::vector<Tensor>> inputs_;
  std::vector<Row> rows_;
  std::vector<std::string> notes_;
};

int bench(const BenchArgs& a) {
  // Everything that can be checked is checked before any work.
  std::vector<int64_t> tokens;
  for (const std::string& s : split_list(a.tokens)) tokens.push_back(std::stoll(s));
  std::sort(tokens.begin(), tokens.end());
  tokens.erase(std::unique(tokens.begin(), tokens.end()), tokens.end());
  const std::vector<std::string> paths = distinct(split_list(a.paths));
  const LoadedConfig lc = load_config(a.config);
  const std::vector<std::string> quants =
      a.quant.empty() ? std::vector<std::string>{std::string(quant_mode_name(lc.config.quant_mode))}
                      : distinct(split_list(a.quant));
  for (const std::string& q : quants) {
    MoeConfig c = lc.config;
    c.quant_mode = parse_quant(q);
    if (c.quant_mode != lc.config.quant_mode) validate(c, lc.source + " with quant_mode " + q);
  }
  if (!a.plot.empty() && !plot_format(a.plot))
    throw ValueError("--plot: expected a file name ending in .png or .svg, got " + a.plot);
  OutputSet files;
  files.add_input("--config", a.config.config_path);
  files.add_output("--json", a.json);
  files.add_output("--plot", a.plot);

  Bench b(a, lc);
  b.run(quants, paths, tokens);
  if (!a.json.empty()) {
    const std::string text = b.to_json().dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
    io_detail::write_file_atomic(files.staging("--json"), "--json",
                                 [&](const io_detail::ByteSink& sink) { sink(text.data(), text.size()); });
  }
  if (!a.plot.empty()) write_plot(files.staging("--plot"), b.to_plot(), "--plot");
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
  cmd->add_option("--tokens", a->tokens, "Token counts, comma-separated (default 1,8,32,128,512,2048)")
      ->check(list_of("integers >= 1", positive_integer));
  cmd->add_option("--paths", a->paths, "Paths, comma-separated: chain, superkernel (default both)")
      ->check(list_of("chain, superkernel", [](const std::string& s) { return one_of(s, {"chain", "superkernel"}); }));
  cmd->add_option("--quant", a->quant, "Quantisations, comma-separated: none, w8a8, w8a8c8 (default: the config's)")
      ->check(list_of("none, w8a8, w8a8c8",
                      [](const std::string& s) { return one_of(s, {"none", "w8a8", "w8a8c8"}); }));
  cmd->add_option("--threads", a->threads, "Threads of the layer and of the probes (default 0: every core)")
      ->check(integer_at_least(0));
  cmd->add_option("--iters", a->iters, "Timed forwards per row; the median is reported (default 5)")
      ->check(integer_at_least(1));
  cmd->add_option("--warmup", a->warmup, "Untimed forwards per layer copy before each row (default 1)")
      ->check(integer_at_least(0));
  cmd->add_option("--seed", a->seed, "Seed of the random weights and tokens (default 0)")->check(unsigned_64());
  cmd->add_option("--json", a->json, "Write the machine and the rows as JSON to this file");
  cmd->add_option("--plot", a->plot, "Draw time against tokens with the lower bounds: a .png or .svg file");
  cmd->callback([a, &status] { status = bench(*a); });
}

}  // namespace moefuse::cli
