#include "bench_report.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <utility>

#include "moefuse/cpu.h"

namespace moefuse::cli {
namespace {

// printf onto the end of `out`.
__attribute__((format(printf, 2, 3))) void appendf(std::string& out, const char* format, ...) {
  va_list args, again;
  va_start(args, format);
  va_copy(again, args);
  const int n = std::vsnprintf(nullptr, 0, format, args);
  va_end(args);
  if (n > 0) {
    const size_t at = out.size();
    out.resize(at + size_t(n) + 1);
    std::vsnprintf(out.data() + at, size_t(n) + 1, format, again);
    out.resize(at + size_t(n));
  }
  va_end(again);
}

std::string gbps_text(double bytes_per_s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GB/s", bytes_per_s / 1e9);
  return buf;
}

std::string join(const std::vector<std::string>& items, const char* sep) {
  std::string s;
  for (const std::string& i : items) s += (s.empty() ? "" : sep) + i;
  return s;
}

const probe::ReadProbe* best_probe(const probe::ReadBandwidth& r) {
  const probe::ReadProbe* best = nullptr;
  for (const probe::ReadProbe& p : r.probes)
    if (!best || p.bytes_per_s > best->bytes_per_s) best = &p;
  return best;
}

std::string cpus_text(const std::vector<int>& cpus) {
  std::vector<std::string> s;
  for (int c : cpus) s.push_back(std::to_string(c));
  return join(s, ",");
}

// Why an absent family is absent, where its row says more than that the CPU lacks it (AMX); "" otherwise.
const char* unused_reason(const probe::PeakFamily& f) {
  return f.unused_reason && !f.present() ? f.unused_reason() : "";
}

Json round_json(const probe::ProbeRound& round) {
  Json probes = Json::array();
  for (const probe::ReadProbe& p : round.read.probes)
    probes.push_back(Json{{"placement", p.placement},
                          {"cpus", p.cpus},
                          {"loads", p.loop},
                          {"streams_per_thread", p.streams},
                          {"gbps", p.bytes_per_s / 1e9}});
  Json peaks = Json::array();
  for (const probe::FamilyPeak& p : round.peaks) {
    const bool present = p.family->present();
    const char* why = unused_reason(*p.family);
    peaks.push_back(Json{{"family", p.family->id},
                         {"instruction", p.family->instruction},
                         {"unit", p.family->unit},
                         {"present", present},
                         {"unused_reason", *why ? Json(why) : Json(nullptr)},
                         {"probed", present && p.family->loop != nullptr},
                         {"peak", p.ops_per_s > 0 ? Json(p.ops_per_s / 1e9) : Json(nullptr)}});
  }
  return Json{{"read_gbps", round.read.best / 1e9},
              {"plain_read_gbps", round.read.plain / 1e9},
              {"read_probes", probes},
              {"peaks", peaks}};
}

}  // namespace

double BenchResult::read_bytes_per_s() const {
  return read_given > 0 ? read_given : std::max(before.read.best, after.read.best);
}

double BenchResult::peak(const probe::PeakFamily* family) const {
  return std::max(before.peak(family), after.peak(family));
}

void bound_rows(BenchResult& r) {
  const double read = r.read_bytes_per_s();
  for (BenchRow& row : r.rows) {
    row.peak_ops = r.peak(row.family);
    const double memory_s = read > 0 ? double(row.weight_bytes) / read : 0;
    const double compute_s = row.peak_ops > 0 ? double(row.flops) / row.peak_ops : 0;
    row.lower_bound_ms = std::max(memory_s, compute_s) * 1e3;
    row.bound_by = compute_s > memory_s ? "compute" : "memory";
    row.probe_failure = row.lower_bound_ms > 0 && row.ms_min < row.lower_bound_ms;
    row.ratio = row.lower_bound_ms > 0 && !row.probe_failure ? row.ms_median / row.lower_bound_ms : 0;
  }
}

void print_header(const BenchResult& r, std::string& out) {
  for (const BenchModel& m : r.models) {
    const MoeConfig& c = m.lc.config;
    appendf(out, "model:      %s (%s): H %lld, I %lld, E %lld, K %lld, shared width %lld, dtype %s\n",
                std::string(model_type_name(c.model_type)).c_str(), m.lc.source.c_str(),
                static_cast<long long>(c.hidden_size), static_cast<long long>(c.moe_intermediate_size),
                static_cast<long long>(c.num_experts), static_cast<long long>(c.num_experts_per_tok),
                static_cast<long long>(c.shared_expert_width()), std::string(dtype_name(c.dtype)).c_str());
  }
  const BenchMachine& m = r.machine;
  appendf(out, "machine:    %s (family %d, model %d, stepping %d: %s); isa set %s; kernels %s%s, numerics %s; "
               "prefetch %s; %d "
              "thread%s of %d CPU%s; LLC %s%s; memory %s\n",
              m.cpu.c_str(), m.signature.family, m.signature.model, m.signature.stepping,
              std::string(cpu_family_name(m.family)).c_str(),
              m.isa_set.empty() ? "none" : join(m.isa_set, " ").c_str(), std::string(isa_name(active_isa())).c_str(),
              use_avx512_vnni() ? " + vnni" : "", join(m.numerics, "/").c_str(),
              prefetch_text(m.prefetch).c_str(), m.threads,
              m.threads == 1 ? "" : "s", m.cpus, m.cpus == 1 ? "" : "s",
              bytes_text(m.llc_bytes).c_str(), m.llc_given ? " (given by --llc-bytes)" : "",
              bytes_text(m.memory_total_bytes).c_str());
  appendf(out, "memory:     %s %s; budget %s (90%% of it, less the tokens); probe buffer %s (alone: before and "
              "after the layers); %s\n",
              bytes_text(m.memory_bytes).c_str(), m.memory_given ? "given by --memory-bytes" : "available",
              bytes_text(m.budget_bytes).c_str(), bytes_text(m.probe_buffer_bytes).c_str(),
              m.paired_read_bytes > 0
                  ? ("paired read " + bytes_text(m.paired_read_bytes) + " before every decode forward").c_str()
                  : "paired read off (5% of the memory does not hold twice the LLC)");
}

void print_probe_round(const char* when, const probe::ProbeRound& round, std::string& out) {
  const probe::ReadProbe* best = best_probe(round.read);
  appendf(out, "read:       %-6s %s (%s loads, %d stream%s per thread, %s%s%s); plain 8-byte read %s\n", when,
              gbps_text(round.read.best).c_str(), best ? best->loop : "-", best ? best->streams : 0,
              best && best->streams == 1 ? "" : "s", best ? best->placement.c_str() : "-",
              best && !best->cpus.empty() ? " on CPUs " : "", best ? cpus_text(best->cpus).c_str() : "",
              gbps_text(round.read.plain).c_str());
  std::vector<std::string> measured, unprobed, absent;
  // Families absent for a reason of their own (AMX), grouped by it: (reason, ids) in the rows' order.
  std::vector<std::pair<std::string, std::vector<std::string>>> unused;
  for (const probe::FamilyPeak& p : round.peaks) {
    char buf[128];
    if (p.ops_per_s > 0) {
      std::snprintf(buf, sizeof buf, "%s %.1f %s", p.family->id, p.ops_per_s / 1e9, p.family->unit);
      measured.push_back(buf);
    } else if (p.family->present()) {
      unprobed.push_back(p.family->id);
    } else if (const std::string why = unused_reason(*p.family); !why.empty()) {
      if (unused.empty() || unused.back().first != why) unused.push_back({why, {}});
      unused.back().second.push_back(p.family->id);
    } else {
      absent.push_back(p.family->id);
    }
  }
  appendf(out, "peaks:      %-6s %s", when, measured.empty() ? "none measured" : join(measured, ", ").c_str());
  if (!unprobed.empty()) appendf(out, "; present, no loop in this build: %s", join(unprobed, ", ").c_str());
  if (!absent.empty()) appendf(out, "; not present on this CPU: %s", join(absent, ", ").c_str());
  for (const auto& [why, ids] : unused) appendf(out, "; %s not present: %s", join(ids, ", ").c_str(), why.c_str());
  appendf(out, "\n");
}

void print_table(const BenchResult& r, std::string& out) {
  std::vector<std::string> peaks;
  for (const probe::FamilyPeak& p : r.before.peaks) {
    const double v = r.peak(p.family);
    if (v <= 0) continue;
    char buf[96];
    std::snprintf(buf, sizeof buf, "%s %.1f %s", p.family->id, v / 1e9, p.family->unit);
    peaks.push_back(buf);
  }
  appendf(out, "limits:     read %s%s, %s (each the larger of the two rounds)\n",
          gbps_text(r.read_bytes_per_s()).c_str(), r.read_given > 0 ? " (given by --read-gbps)" : "",
          peaks.empty() ? "no compute peak" : join(peaks, ", ").c_str());
  appendf(out, "timing:     median of %d timed forward%s after %d warm-up forward%s per layer copy; decode below %lld "
              "tokens, prefill from %lld\n",
              r.iters, r.iters == 1 ? "" : "s", r.warmup, r.warmup == 1 ? "" : "s",
              static_cast<long long>(kPrefillFrom), static_cast<long long>(kPrefillFrom));
  int w = 5;
  for (const BenchRow& row : r.rows) w = std::max(w, int(row.model.size()));
  appendf(out, "%-*s %-6s %-11s %-11s %6s %-7s %10s %10s %10s %9s %8s %7s %8s %-10s %9s %-7s %6s %6s %8s %7s %7s\n", w,
              "model", "quant", "asked", "path", "tokens", "mode", "median ms", "min ms", "max ms", "weight MB", "GFLOP",
              "GB/s", "GFLOP/s", "peak", "bound ms", "by", "ratio", "copies", "vs chain", "read", "vs read");
  for (const BenchRow& row : r.rows) {
    char ratio[32] = "-";
    if (row.probe_failure) std::snprintf(ratio, sizeof ratio, "PROBE");
    else if (row.ratio > 0) std::snprintf(ratio, sizeof ratio, "%.2f", row.ratio);
    char vs_chain[32] = "-";
    if (row.vs_chain > 0) std::snprintf(vs_chain, sizeof vs_chain, "%.3f", row.vs_chain);
    char read[32] = "-", vs_read[32] = "-";
    if (row.paired_read > 0) std::snprintf(read, sizeof read, "%.1f", row.paired_read / 1e9);
    if (row.vs_read > 0) std::snprintf(vs_read, sizeof vs_read, "%.2f", row.vs_read);
    appendf(out, "%-*s %-6s %-11s %-11s %6lld %-7s %10.3f %10.3f %10.3f %9.1f %8.3f %7.1f %8.1f %-10s %9.3f %-7s %6s %6d "
                "%8s %7s %7s\n",
                w, row.model.c_str(), row.quant.c_str(), row.asked_path.c_str(),
                row.path.substr(0, row.path.find(':')).c_str(),  // one word; the JSON keeps why the fused path declined
                static_cast<long long>(row.tokens), row.prefill ? "prefill" : "decode", row.ms_median, row.ms_min,
                row.ms_max, double(row.weight_bytes) / 1e6, double(row.flops) / 1e9, row.gbps, row.gflops,
                row.family ? row.family->id : "-", row.lower_bound_ms, row.bound_by.c_str(), ratio, row.copies,
                vs_chain, read, vs_read);
  }
  for (const std::string& n : r.notes) appendf(out, "note:       %s\n", n.c_str());
}

Json bench_json(const BenchResult& r) {
  const BenchMachine& m = r.machine;
  Json models = Json::array();
  for (const BenchModel& bm : r.models) {
    Json d = describe_model(bm.lc);
    d["label"] = bm.label;
    models.push_back(d);
  }
  Json machine{{"cpu", m.cpu},
               {"family", m.signature.family},
               {"model", m.signature.model},
               {"stepping", m.signature.stepping},
               {"family_class", cpu_family_name(m.family)},
               {"prefetch", Json{{"bf16", m.prefetch.bf16},
                                 {"int8", m.prefetch.int8},
                                 {"fp8", m.prefetch.fp8},
                                 {"int4", m.prefetch.int4},
                                 {"hint", m.prefetch.hint == PrefetchHint::nta ? "nta" : "t0"},
                                 {"bf16_rows", m.prefetch.bf16_rows},  // prefetch in calls over >= this many rows
                                 {"int8_rows", m.prefetch.int8_rows},
                                 {"fp8_rows", m.prefetch.fp8_rows},
                                 {"int4_rows", m.prefetch.int4_rows},
                                 {"text", prefetch_text(m.prefetch)},
                                 {"family_entry", m.prefetch == family_prefetch(m.family)}}},
               {"isa_set", m.isa_set},
               {"isa", isa_name(active_isa())},
               {"numerics", m.numerics},
               {"vnni", use_avx512_vnni()},
               {"threads", m.threads},
               {"cpus", m.cpus},
               {"llc_bytes", m.llc_bytes},
               {"llc_given", m.llc_given},
               {"memory_total_bytes", m.memory_total_bytes}};
  Json limits{{"read_gbps", r.read_bytes_per_s() / 1e9}, {"read_given", r.read_given > 0}};
  Json peaks = Json::object();
  for (const probe::FamilyPeak& p : r.before.peaks)
    if (r.peak(p.family) > 0) peaks[p.family->id] = r.peak(p.family) / 1e9;
  limits["peaks"] = peaks;
  Json groups = Json::array();
  for (const BenchGroup& g : r.groups)
    groups.push_back(Json{{"preset", g.model},
                          {"quant", g.quant},
                          {"paths", g.plan.paths},
                          {"copy_bytes", g.plan.copy_bytes},
                          {"build_bytes", g.plan.build_bytes},
                          {"step_bytes", g.plan.step_bytes},
                          {"wanted", g.plan.wanted},
                          {"copies", g.plan.copies},
                          {"limit", g.plan.limit.empty() ? Json(nullptr) : Json(g.plan.limit)},
                          {"warm", g.plan.warm}});
  Json plan{{"memory_bytes", m.memory_bytes},
            {"memory_given", m.memory_given},
            {"budget_bytes", m.budget_bytes},
            {"probe_buffer_bytes", m.probe_buffer_bytes},
            {"paired_read_bytes", m.paired_read_bytes > 0 ? Json(m.paired_read_bytes) : Json(nullptr)},
            {"groups", groups}};
  Json rows = Json::array();
  auto positive_or_null = [](double v) { return v > 0 ? Json(v) : Json(nullptr); };
  for (const BenchRow& row : r.rows)
    rows.push_back(Json{{"preset", row.model},
                        {"quant", row.quant},
                        {"requested_path", row.asked_path},
                        {"path", row.path},
                        {"kernel", row.kernel},
                        {"numerics", row.numerics},
                        {"peak_family", row.family ? Json(row.family->id) : Json(nullptr)},
                        {"peak", positive_or_null(row.peak_ops / 1e9)},
                        {"schedule", row.prefill ? "prefill" : "decode"},
                        {"tokens", row.tokens},
                        {"ms_median", row.ms_median},
                        {"ms_min", row.ms_min},
                        {"ms_max", row.ms_max},
                        {"weight_bytes", row.weight_bytes},
                        {"flops", row.flops},
                        {"gbps", row.gbps},
                        {"gflops", row.gflops},
                        {"lower_bound_ms", row.lower_bound_ms},
                        {"bound_by", row.bound_by},
                        {"probe_failure", row.probe_failure},
                        {"ratio", positive_or_null(row.ratio)},
                        {"vs_chain", positive_or_null(row.vs_chain)},
                        {"paired_read_gbps", positive_or_null(row.paired_read / 1e9)},
                        {"vs_read", positive_or_null(row.vs_read)},
                        {"copies", row.copies}});
  return Json{{"command", "bench"},
              {"version", MOEFUSE_VERSION},
              {"models", models},
              {"iters", r.iters},
              {"warmup", r.warmup},
              {"seed", r.seed},
              {"prefill_from_tokens", kPrefillFrom},
              {"machine", machine},
              {"probes", Json{{"before", round_json(r.before)}, {"after", round_json(r.after)}}},
              {"limits", limits},
              {"plan", plan},
              {"rows", rows},
              {"notes", r.notes}};
}

Plot bench_plot(const BenchResult& r) {
  const BenchMachine& m = r.machine;
  Plot plot;
  const std::string what = r.models.size() == 1 ? r.models.front().label : std::to_string(r.models.size()) + " models";
  plot.title = "moefuse bench: " + what + ", " + std::to_string(m.threads) + " thread" + (m.threads == 1 ? "" : "s");
  std::string sub = m.cpu + ": read " + gbps_text(r.read_bytes_per_s());
  for (const probe::FamilyPeak& p : r.before.peaks)
    if (r.peak(p.family) > 0) {
      char buf[96];
      std::snprintf(buf, sizeof buf, ", %s %.0f %s", p.family->id, r.peak(p.family) / 1e9, p.family->unit);
      sub += buf;
    }
  plot.subtitle = sub;
  plot.x_label = "tokens";
  plot.y_label = "time per forward (ms, median)";
  // One line per (model, quant, asked path); the lower bound once per (model, quant), in its first line's colour.
  std::vector<PlotLine> bounds;
  for (const BenchRow& row : r.rows) {
    const std::string prefix = r.models.size() == 1 ? "" : row.model + " ";
    const std::string label = prefix + row.quant + " " + row.asked_path;
    auto it = std::find_if(plot.lines.begin(), plot.lines.end(), [&](const PlotLine& l) { return l.label == label; });
    const bool first_path = it == plot.lines.end() && std::none_of(plot.lines.begin(), plot.lines.end(), [&](const PlotLine& l) {
      return l.label.rfind(prefix + row.quant + " ", 0) == 0;
    });
    if (it == plot.lines.end()) {
      plot.lines.push_back(PlotLine{label, {}, {}, int(plot.lines.size()), false});
      it = plot.lines.end() - 1;
    }
    it->x.push_back(double(row.tokens));
    it->y.push_back(row.ms_median);
    const std::string bound = prefix + row.quant + " lower bound";
    auto b = std::find_if(bounds.begin(), bounds.end(), [&](const PlotLine& l) { return l.label == bound; });
    if (b == bounds.end() && first_path) {
      bounds.push_back(PlotLine{bound, {}, {}, it->color, true});
      b = bounds.end() - 1;
    }
    if (b != bounds.end() && b->color == it->color) {
      b->x.push_back(double(row.tokens));
      b->y.push_back(row.lower_bound_ms);
    }
  }
  plot.lines.insert(plot.lines.end(), bounds.begin(), bounds.end());
  return plot;
}

}  // namespace moefuse::cli
