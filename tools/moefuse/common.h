// What `moefuse run` and `moefuse verify` share: their options, building the config, the weights and the input,
// the output checksum, the JSON description of what ran, and the progress bar.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "moefuse/config.h"
#include "moefuse/layer.h"
#include "moefuse/tensor.h"
#include "output_set.h"

namespace moefuse::cli {

using Json = nlohmann::ordered_json;

/// Where the config comes from: --config FILE or --preset NAME (neither: the seed default, preset "default").
struct ConfigArgs {
  std::string config_path;
  std::string preset;
};

/// The options of run and verify (docs/cli.md).
struct LayerArgs {
  ConfigArgs config;
  std::string weights;      // checkpoint path; empty = random weights from `seed`
  int64_t layer = 0;        // layer index in the checkpoint
  std::string input;        // .npy [T, H] f32 or f16; empty = `tokens` random tokens from `seed`
  int64_t tokens = 8;
  std::string output;       // .npy written with the layer's output as f32 [T, H]; empty = none
  bool prefill = false;
  int threads = 0;          // 0 = every core
  uint64_t seed = 0;
  int iters = 3;
  bool json = false;
  bool allow_non_finite = false;  // LayerOptions::allow_non_finite_weights
  std::string numerics;           // --numerics: native | portable; empty = the config's key, else the default
};

/// A CLI11 check that the value is an integer >= lo: "--tokens: expected an integer >= 0, got many".
CLI::Validator integer_at_least(int64_t lo);
/// The same for lo <= value <= hi: "--threads: expected an integer in 0..1024, got 100000".
CLI::Validator integer_in(int64_t lo, int64_t hi);
/// A CLI11 check that the value is an unsigned 64-bit integer (a seed):
/// "--seed: expected an integer in [0, 2^64), got -3".
CLI::Validator unsigned_64();

/// Registers --numerics on `cmd` (into `value`: "native" or "portable"; anything else is refused by CLI11 with
/// "--numerics: expected native or portable, got ...").
void add_numerics_option(CLI::App* cmd, std::string& value);
/// LayerOptions::numerics of a --numerics value ("" = unset: the config's key, else default_numerics()).
std::optional<Numerics> numerics_option(const std::string& value);
/// Where the tier of a layer of `config` made with --numerics `value` comes from: "--numerics", "config key
/// numerics", "MOEFUSE_NUMERICS" or "default" (native, MOEFUSE_NUMERICS unset).
std::string numerics_source(const std::string& value, const MoeConfig& config);

/// Registers --config/--preset on `cmd` (mutually exclusive).
void add_config_options(CLI::App* cmd, ConfigArgs& a);
/// Registers every LayerArgs option on `cmd`; `iters_help` describes --iters for this command.
void add_layer_options(CLI::App* cmd, LayerArgs& a, const std::string& iters_help);

/// A config and the words that say where it came from ("preset olmoe-1b-7b", "file my.yaml").
struct LoadedConfig {
  MoeConfig config;
  std::string source;
  /// The model folder's config.json the model keys came from ("" when the config is a file or preset alone).
  std::string model_source;
};
LoadedConfig load_config(const ConfigArgs& a);
/// The config of run and verify: with --weights a model folder (a directory holding config.json), its config.json
/// for layer --layer (moefuse/model.h), with the execution keys of --config/--preset when one is given; else
/// load_config(a.config).
LoadedConfig load_layer_config(const LayerArgs& a);

/// Makes an empty value of any option of any subcommand of `app` an error ("--weights: expected a non-empty value,
/// got an empty string"): an empty string never means "not given".
void refuse_empty_values(CLI::App& app);

/// The files of run and verify: --weights, --config and --input as inputs, --output as the output (checked now).
void add_layer_files(OutputSet& files, const LayerArgs& a);

/// The layer's input [T, H] in the model dtype and where it came from (JSON, for describe_execution).
struct Input {
  Tensor x;
  Json description;
};
/// --input read and converted with RNE (a 2-D f32 or f16 array of width H, else ValueError / TypeError naming the
/// file), or `tokens` random tokens from `seed` (moefuse::random_tokens).
Input make_input(const LayerArgs& a, const MoeConfig& config);

/// The layer: random weights from the seed, or layer `layer` of the checkpoint (checked against config.json's
/// shapes when the config came from one).
MoeLayer make_layer(const LayerArgs& a, const LoadedConfig& config);

/// What run and verify start from, made in this order: the config (load_layer_config), the output files, checked
/// against the inputs before any work (add_layer_files), the input tokens and the layer.
struct LayerJob {
  explicit LayerJob(const LayerArgs& a);
  LoadedConfig lc;
  OutputSet files;
  Input in;
  MoeLayer layer;
};

/// The checksum of an output tensor: the sum of its values widened to fp32 (added in double, row-major order) and
/// the 64-bit FNV-1a hash of its bytes in its own dtype, row-major.
struct Checksum {
  double sum = 0;
  uint64_t fnv1a64 = 0;
};
Checksum checksum(const Tensor& t);
/// "0x" and 16 lower-case hex digits.
std::string hex64(uint64_t v);

/// Writes `y` widened to f32 as an .npy file (atomically; into a staging file of an OutputSet).
void write_output(const std::string& path, const Tensor& y);

/// The config and execution facts both commands print (text) and put under "model" / "execution" (JSON). The
/// execution names the numerics tier the layer ran, where it came from and the kernel of its expert GEMMs
/// (MoeLayer::kernel(): call it after a forward).
Json describe_model(const LoadedConfig& c);
Json describe_execution(const LayerArgs& a, const LoadedConfig& c, const MoeLayer& layer, const Input& input);
void print_description(const Json& model, const Json& execution);

/// Prints a JSON object on stdout, 2-space indented (bytes of a path that are not UTF-8 become U+FFFD).
void print_json(const Json& j);

/// Median of a non-empty list (the mean of the two middle values for an even count).
double median(std::vector<double> v);

/// A progress bar on stderr, drawn only when stderr is a terminal and there is more than one step.
class Progress {
 public:
  Progress(std::string label, int steps);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  /// Marks one more step done and redraws.
  void step();

 private:
  void draw() const;
  std::string label_;
  int steps_;
  int done_ = 0;
  bool active_;
};

}  // namespace moefuse::cli
