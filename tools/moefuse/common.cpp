#include "common.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "moefuse/cpu.h"
#include "moefuse/error.h"
#include "moefuse/io.h"
#include "moefuse/model.h"
#include "moefuse/threads.h"

namespace moefuse::cli {
namespace {

const char* on_off(bool b) { return b ? "on" : "off"; }

}  // namespace

CLI::Validator integer_at_least(int64_t lo) {
  return CLI::Validator(
      [lo](std::string& s) -> std::string {
        int64_t v = 0;
        const char* end = s.data() + s.size();
        const auto [ptr, ec] = std::from_chars(s.data(), end, v);
        if (s.empty() || ec != std::errc() || ptr != end || v < lo)
          return "expected an integer >= " + std::to_string(lo) + ", got " + s;
        return {};
      },
      "INT>=" + std::to_string(lo));
}

CLI::Validator integer_in(int64_t lo, int64_t hi) {
  return CLI::Validator(
      [lo, hi](std::string& s) -> std::string {
        int64_t v = 0;
        const char* end = s.data() + s.size();
        const auto [ptr, ec] = std::from_chars(s.data(), end, v);
        if (s.empty() || ec != std::errc() || ptr != end || v < lo || v > hi)
          return "expected an integer in " + std::to_string(lo) + ".." + std::to_string(hi) + ", got " + s;
        return {};
      },
      "INT in " + std::to_string(lo) + ".." + std::to_string(hi));
}

CLI::Validator unsigned_64() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        uint64_t v = 0;
        const char* end = s.data() + s.size();
        const auto [ptr, ec] = std::from_chars(s.data(), end, v);
        if (s.empty() || ec != std::errc() || ptr != end) return "expected an integer in [0, 2^64), got " + s;
        return {};
      },
      "UINT64");
}

void add_numerics_option(CLI::App* cmd, std::string& value) {
  cmd->add_option("--numerics", value,
                  "Numerics tier: native (AMX-BF16 for bf16 weights where the CPU has it, within the tolerance of "
                  "docs/layer.md) or portable (bitwise the reference on every CPU); default: the config's numerics "
                  "key, else MOEFUSE_NUMERICS, else native")
      ->check(CLI::Validator(
          [](std::string& s) -> std::string {
            return s == "native" || s == "portable" ? "" : "expected native or portable, got " + s;
          },
          "native|portable"));
}

std::optional<Numerics> numerics_option(const std::string& value) {
  if (value.empty()) return std::nullopt;
  return parse_numerics(value, "--numerics");
}

std::string numerics_source(const std::string& value, const MoeConfig& config) {
  if (!value.empty()) return "--numerics";
  if (config.numerics) return "config key numerics";
  const char* env = std::getenv("MOEFUSE_NUMERICS");
  return env && *env ? "MOEFUSE_NUMERICS" : "default";
}

void add_config_options(CLI::App* cmd, ConfigArgs& a) {
  CLI::Option* file = cmd->add_option("--config", a.config_path, "YAML config file (docs/cli.md, docs/layer.md §3)");
  CLI::Option* preset =
      cmd->add_option("--preset", a.preset, "Built-in preset (see `moefuse info`; default: the seed default)");
  file->excludes(preset);
}

void add_layer_options(CLI::App* cmd, LayerArgs& a, const std::string& iters_help) {
  add_config_options(cmd, a.config);
  CLI::Option* weights =
      cmd->add_option("--weights", a.weights,
                      "Hugging Face checkpoint: a .safetensors file, a model.safetensors.index.json, or a directory "
                      "(default: random weights from --seed)");
  cmd->add_option("--layer", a.layer, "Layer index in the checkpoint (default 0)")
      ->check(integer_at_least(0))
      ->needs(weights);
  CLI::Option* input =
      cmd->add_option("--input", a.input, "Input tokens: a 2-D .npy [T, H] of float32 or float16");
  CLI::Option* tokens = cmd->add_option("--tokens", a.tokens, "Number of random input tokens (default 8)")
                            ->check(integer_at_least(0));
  input->excludes(tokens);
  cmd->add_option("--output", a.output, "Write the layer's output as a float32 .npy [T, H]");
  cmd->add_flag("--prefill", a.prefill, "Run the prefill schedule (is_prefill = true)");
  cmd->add_option("--threads", a.threads, "Threads (default 0: every core; at most " + std::to_string(kMaxThreads) + ")")
      ->check(integer_in(0, kMaxThreads));
  cmd->add_option("--seed", a.seed, "Seed of the random weights and input (default 0)")
      ->check(unsigned_64());
  cmd->add_option("--iters", a.iters, iters_help)->check(integer_at_least(1));
  cmd->add_flag("--json", a.json, "Print one JSON object instead of text");
  cmd->add_flag("--allow-non-finite", a.allow_non_finite,
                "Accept NaN and infinite weights in --weights (refused by default, naming the tensor and index)");
  add_numerics_option(cmd, a.numerics);
}

LoadedConfig load_config(const ConfigArgs& a) {
  if (!a.config_path.empty()) return LoadedConfig{load_config_file(a.config_path), "file " + a.config_path, ""};
  const std::string name = a.preset.empty() ? "default" : a.preset;
  MoeConfig c = load_preset(name);
  std::string source = "preset " + name;
  if (name == "default")
    for (const std::string& p : preset_names())
      if (load_preset(p) == c) source += " = " + p;
  return LoadedConfig{c, source, ""};
}

LoadedConfig load_layer_config(const LayerArgs& a) {
  if (a.weights.empty() || !is_model_folder(a.weights)) return load_config(a.config);
  const ModelConfig m = load_model_config(a.weights);
  LoadedConfig lc{m.layer_config(a.layer), "file " + m.source + ", layer " + std::to_string(a.layer), m.source};
  if (!a.config.config_path.empty() || !a.config.preset.empty()) {
    const LoadedConfig options = load_config(a.config);
    lc.config = with_execution_options(lc.config, m.source, options.config, options.source);
    lc.source += ", execution keys from " + options.source;
  }
  return lc;
}

void refuse_empty_values(CLI::App& app) {
  const CLI::Validator non_empty(
      [](std::string& s) -> std::string { return s.empty() ? "expected a non-empty value, got an empty string" : ""; },
      "NON-EMPTY");
  for (CLI::App* sub : app.get_subcommands({}))
    for (CLI::Option* opt : sub->get_options())
      if (opt->get_type_size() != 0 && opt->get_items_expected_max() > 0 && !opt->get_name().empty() &&
          opt->get_name() != "--help")
        opt->check(non_empty);
}

void add_layer_files(OutputSet& files, const LayerArgs& a) {
  if (a.output.empty()) return;  // nothing to compare (and the checkpoint is opened once, by make_layer)
  files.add_input("--config", a.config.config_path);
  files.add_input("--input", a.input);
  files.add_checkpoint("--weights", a.weights);
  files.add_output("--output", a.output);
}

Input make_input(const LayerArgs& a, const MoeConfig& c) {
  const int64_t H = c.hidden_size;
  if (a.input.empty()) {
    Input in{random_tokens(a.tokens, H, a.seed, c.dtype), Json::object()};
    in.description = Json{{"source", "random"}, {"tokens", a.tokens}, {"seed", a.seed}};
    return in;
  }
  Tensor t = read_npy(a.input);
  if (t.dtype() != DType::f32 && t.dtype() != DType::f16)
    throw TypeError(a.input + ": descr: expected float32 ('<f4') or float16 ('<f2') input tokens, got " +
                    std::string(dtype_name(t.dtype())));
  if (t.dim() != 2 || t.size(1) != H)
    throw ValueError(a.input + ": shape: expected [T, " + std::to_string(H) + "] (T tokens of hidden_size " +
                     std::to_string(H) + "), got " + t.shape().str());
  Input in{t.dtype() == c.dtype ? t : t.to(c.dtype), Json::object()};
  in.description = Json{{"source", "file"}, {"path", a.input}, {"dtype", dtype_name(t.dtype())}, {"tokens", t.size(0)}};
  return in;
}

MoeLayer make_layer(const LayerArgs& a, const LoadedConfig& lc) {
  const MoeConfig& c = lc.config;
  LayerOptions o;
  o.threads = a.threads;
  o.allow_non_finite_weights = a.allow_non_finite;
  o.numerics = numerics_option(a.numerics);
  if (a.weights.empty()) return MoeLayer::with_random_weights(c, a.seed, o);
  const Checkpoint ck(a.weights);
  if (!lc.model_source.empty()) check_model_tensors(c, lc.model_source, ck, a.layer);
  return MoeLayer::from_checkpoint(c, ck, a.layer, o);
}

Checksum checksum(const Tensor& t) {
  const Tensor c = t.contiguous();
  Checksum r;
  r.fnv1a64 = 0xcbf29ce484222325ull;
  const auto* bytes = static_cast<const unsigned char*>(c.data());
  const size_t nbytes = size_t(c.numel()) * c.element_size();
  for (size_t i = 0; i < nbytes; ++i) {
    r.fnv1a64 ^= bytes[i];
    r.fnv1a64 *= 0x100000001b3ull;
  }
  const Tensor f = c.to(DType::f32);  // exact
  const float* v = f.data_as<const float>();
  for (int64_t i = 0; i < f.numel(); ++i) r.sum += double(v[i]);
  return r;
}

std::string hex64(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%016llx", static_cast<unsigned long long>(v));
  return buf;
}

void write_output(const std::string& path, const Tensor& y) { write_npy(path, y.to(DType::f32)); }

Json describe_model(const LoadedConfig& lc) {
  const MoeConfig& c = lc.config;
  return Json{{"source", lc.source},
              {"model_type", model_type_name(c.model_type)},
              {"hidden_size", c.hidden_size},
              {"moe_intermediate_size", c.moe_intermediate_size},
              {"num_experts", c.num_experts},
              {"num_experts_per_tok", c.num_experts_per_tok},
              {"shared_expert_width", c.shared_expert_width()},
              {"shared_expert_gated", c.shared_expert_gated()},
              {"scoring_func", scoring_func_name(c.scoring_func)},
              {"norm_topk_prob", c.norm_topk_prob},
              {"n_group", c.n_group},
              {"topk_group", c.topk_group},
              {"routed_scaling_factor", c.routed_scaling_factor},
              {"dtype", dtype_name(c.dtype)},
              {"quant_mode", quant_mode_name(c.quant_mode)},
              {"router_logits_dtype", router_logits_dtype_name(c.router_logits_dtype)},
              {"fp8_activations", fp8_activations_name(c.fp8_activations)},
              {"exe_mode", exe_mode_name(c.exe_mode)},
              {"enable_superkernel", c.enable_superkernel},
              {"moe_chunk_max_len", c.moe_chunk_max_len}};
}

Json describe_execution(const LayerArgs& a, const LoadedConfig& lc, const MoeLayer& layer, const Input& input) {
  Json weights = a.weights.empty() ? Json{{"source", "random"}, {"seed", a.seed}}
                                   : Json{{"source", "checkpoint"}, {"path", a.weights}, {"layer", a.layer}};
  return Json{{"weights", weights},
              {"input", input.description},
              {"prefill", a.prefill},
              {"path", layer.path()},
              {"threads", layer.threads()},
              {"isa", isa_name(active_isa())},
              {"numerics", numerics_name(layer.numerics())},
              {"numerics_source", numerics_source(a.numerics, lc.config)},
              {"kernel", layer.kernel()}};
}

void print_description(const Json& m, const Json& e) {
  auto s = [](const Json& j) { return j.is_string() ? j.get<std::string>() : j.dump(); };
  std::printf("model:      %s (%s)\n", s(m["model_type"]).c_str(), s(m["source"]).c_str());
  std::printf("shape:      H %s, I %s, E %s, K %s, shared width %s%s\n", s(m["hidden_size"]).c_str(),
              s(m["moe_intermediate_size"]).c_str(), s(m["num_experts"]).c_str(), s(m["num_experts_per_tok"]).c_str(),
              s(m["shared_expert_width"]).c_str(), m["shared_expert_gated"].get<bool>() ? " (gated)" : "");
  const std::string fp8_act = s(m["fp8_activations"]);
  std::printf("numerics:   dtype %s, quant %s, router logits %s, scoring %s, groups %s/%s%s\n", s(m["dtype"]).c_str(),
              s(m["quant_mode"]).c_str(), s(m["router_logits_dtype"]).c_str(), s(m["scoring_func"]).c_str(),
              s(m["n_group"]).c_str(), s(m["topk_group"]).c_str(),
              fp8_act == "none" ? "" : (", fp8 activations " + fp8_act).c_str());
  std::printf("execution:  exe_mode %s, superkernel %s, chunk %s, path %s, threads %s, isa %s\n",
              s(m["exe_mode"]).c_str(), on_off(m["enable_superkernel"].get<bool>()), s(m["moe_chunk_max_len"]).c_str(),
              s(e["path"]).c_str(), s(e["threads"]).c_str(), s(e["isa"]).c_str());
  std::printf("tier:       %s (%s), expert kernel %s\n", s(e["numerics"]).c_str(), s(e["numerics_source"]).c_str(),
              s(e["kernel"]).c_str());
  const Json& w = e["weights"];
  if (w["source"] == "random")
    std::printf("weights:    random (seed %s)\n", s(w["seed"]).c_str());
  else
    std::printf("weights:    %s, layer %s\n", s(w["path"]).c_str(), s(w["layer"]).c_str());
  const Json& in = e["input"];
  const char* schedule = e["prefill"].get<bool>() ? "prefill" : "decode";
  if (in["source"] == "random")
    std::printf("input:      %s random tokens (seed %s), %s\n", s(in["tokens"]).c_str(), s(in["seed"]).c_str(),
                schedule);
  else
    std::printf("input:      %s tokens from %s (%s), %s\n", s(in["tokens"]).c_str(), s(in["path"]).c_str(),
                s(in["dtype"]).c_str(), schedule);
}

void print_json(const Json& j) {
  std::printf("%s\n", j.dump(2, ' ', false, Json::error_handler_t::replace).c_str());
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

Progress::Progress(std::string label, int steps)
    : label_(std::move(label)), steps_(steps), active_(steps > 1 && isatty(STDERR_FILENO) == 1) {
  if (active_) draw();
}

Progress::~Progress() {
  if (active_) std::fprintf(stderr, "\r\033[K");  // erase the bar: it is no part of the output
}

void Progress::step() {
  ++done_;
  if (active_) draw();
}

void Progress::draw() const {
  constexpr int kWidth = 30;
  const int filled = steps_ > 0 ? done_ * kWidth / steps_ : kWidth;
  std::string bar(size_t(filled), '#');
  bar.append(size_t(kWidth - filled), '.');
  std::fprintf(stderr, "\r%s [%s] %d/%d", label_.c_str(), bar.c_str(), done_, steps_);
  std::fflush(stderr);
}

LayerJob::LayerJob(const LayerArgs& a)
    : lc(load_layer_config(a)),
      in((add_layer_files(files, a), make_input(a, lc.config))),
      layer(make_layer(a, lc)) {}

}  // namespace moefuse::cli
