// `moefuse run`: builds a layer (random or checkpoint weights) and an input, runs one warm-up forward and --iters
// timed forwards, and prints what ran, the time per stage, tokens/s and a checksum of the output.
#include <algorithm>
#include <cstdio>
#include <memory>

#include "commands.h"
#include "common.h"
#include "ep_commands.h"

namespace moefuse::cli {
namespace {

struct Stage {
  const char* name;
  double LayerTimings::*field;
};
constexpr Stage kStages[] = {{"router", &LayerTimings::router},   {"gating", &LayerTimings::gating},
                             {"routing", &LayerTimings::routing}, {"experts", &LayerTimings::experts},
                             {"shared", &LayerTimings::shared},   {"combine", &LayerTimings::combine},
                             {"total", &LayerTimings::total}};

int run(const LayerArgs& a) {
  LayerJob job(a);
  MoeLayer& layer = job.layer;

  std::vector<LayerTimings> timings;
  Tensor y;
  {
    Progress progress("run", a.iters + 1);
    y = layer.forward(job.in.x, a.prefill);  // warm-up: plans the graph-mode workspaces, touches the weights
    progress.step();
    for (int i = 0; i < a.iters; ++i) {
      layer.forward_out(job.in.x, a.prefill, y);
      timings.push_back(layer.last_timings());
      progress.step();
    }
  }
  const Checksum sum = checksum(y);
  if (!a.output.empty()) write_output(job.files.staging("--output"), y);
  job.files.commit();

  Json stages = Json::object();
  for (const Stage& s : kStages) {
    std::vector<double> v;
    for (const LayerTimings& t : timings) v.push_back(t.*s.field);
    stages[s.name] = Json{{"median", median(v)},
                          {"min", *std::min_element(v.begin(), v.end())},
                          {"max", *std::max_element(v.begin(), v.end())}};
  }
  const int64_t T = job.in.x.size(0);
  const double total_ms = stages["total"]["median"].get<double>();
  const double tokens_per_s = T > 0 && total_ms > 0 ? double(T) / (total_ms / 1000.0) : 0.0;

  const Json model = describe_model(job.lc), execution = describe_execution(a, job.lc, layer, job.in);
  if (a.json) {
    Json j{{"command", "run"},
           {"version", MOEFUSE_VERSION},
           {"model", model},
           {"execution", execution},
           {"warmup", 1},
           {"iters", a.iters},
           {"tokens", T},
           {"chunks", timings.back().chunks},
           {"timings_ms", stages},
           {"tokens_per_second", tokens_per_s},
           {"expert_tokens", Json{{"last", layer.expert_tokens()}, {"cumulative", layer.cumulative_expert_tokens()}}},
           {"checksum", Json{{"sum", sum.sum}, {"fnv1a64", hex64(sum.fnv1a64)}}},
           {"output", a.output.empty() ? Json(nullptr) : Json(a.output)}};
    print_json(j);
    return 0;
  }
  print_description(model, execution);
  std::printf("iterations: %d timed, after 1 warm-up; %lld chunk(s) per forward\n", a.iters,
              static_cast<long long>(timings.back().chunks));
  std::printf("stage         median ms      min ms      max ms\n");
  for (const Stage& s : kStages) {
    const Json& st = stages[s.name];
    std::printf("%-10s %12.3f %11.3f %11.3f\n", s.name, st["median"].get<double>(), st["min"].get<double>(),
                st["max"].get<double>());
  }
  std::printf("tokens/s:   %.1f\n", tokens_per_s);
  std::printf("checksum:   sum %.17g, fnv1a64 %s\n", sum.sum, hex64(sum.fnv1a64).c_str());
  if (!a.output.empty())
    std::printf("output:     %s (float32 [%lld, %lld])\n", a.output.c_str(), static_cast<long long>(T),
                static_cast<long long>(job.lc.config.hidden_size));
  return 0;
}

}  // namespace

void add_run_command(CLI::App& app, int& status) {
  CLI::App* cmd = app.add_subcommand("run", "Run one MoE layer and report time per stage, tokens/s and a checksum");
  auto args = std::make_shared<LayerArgs>();
  add_layer_options(cmd, *args, "Timed forwards after the warm-up (default 3)");
  // Expert parallelism (under mpirun; ep_commands.h).
  auto ep = std::make_shared<bool>(false);
  auto placement = std::make_shared<std::string>();
  CLI::Option* ep_flag = cmd->add_flag("--ep", *ep, "Split the experts across the ranks of mpirun (expert parallel)");
  cmd->add_option("--placement", *placement, "With --ep: a JSON file {\"experts\": [[ranks of expert 0], ...]}")
      ->needs(ep_flag);
  cmd->callback([args, ep, placement, &status] { status = *ep ? run_ep(*args, *placement) : run(*args); });
}

}  // namespace moefuse::cli
