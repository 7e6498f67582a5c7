// moefuse/config.h — the MoE layer's configuration (docs/layer.md §3), its YAML form and the built-in presets (§4).
//
// A config file has the seed's shape:
//
//     exe_mode: ge_graph              # optional: eager | ge_graph | graph (graph = ge_graph)
//     numerics: portable              # optional, default unset (the process default): native | portable
//     model_config:                   # required
//       model_type: olmoe             # required: deepseek_v3 | deepseek_v2 | qwen3_moe | qwen2_moe | mixtral | olmoe
//       num_experts: 64               # required
//       num_experts_per_tok: 8        # required
//       hidden_size: 2048             # required
//       moe_intermediate_size: 1024   # required
//       scoring_func: softmax         # required: softmax | sigmoid
//       norm_topk_prob: false         # required
//       enable_superkernel: true      # optional, default true
//       moe_chunk_max_len: 1024       # optional, default 1024
//       n_shared_experts: 0           # optional, default 0
//       shared_expert_intermediate_size: 0   # optional, default 0 (qwen2_moe only)
//       n_group: 1                    # optional, default 1
//       topk_group: 1                 # optional, default 1
//       routed_scaling_factor: 1.0    # optional, default 1.0
//       dtype: bf16                   # optional, default bf16: bf16 | f16 | f32
//       quant_mode: none              # optional, default none: none | w8a8 | w8a8c8 | w4a16 | w4a8
//       quant_group_size: 128         # optional, default 128, w4a16/w4a8 only: 32 | 64 | 128 (input channels per scale)
//       quant_symmetric: true         # optional, default true, w4a16/w4a8 only: zero point 8 (true) or per group (false)
//       router_logits_dtype: fp32     # optional, default fp32: fp32 | model
//       fp8_activations: none         # optional, default none: none | dynamic_1x128 (FP8 expert weights only)
//
// Required keys are those that define the model's shape and routing math (a silent default there would compute a
// different model); the rest are execution options or have an identity default (no shared experts, one group,
// scale 1). A qwen2_moe config that gives shared_expert_intermediate_size > 0 without n_shared_experts gets
// n_shared_experts = 1 (its one gated shared expert). Every key is case-sensitive; an unknown or duplicated key, a
// missing required key, a value of the wrong type (a quoted "64", 64.0 or 0x40 where an integer is needed; for
// booleans only true/false (True, TRUE, ...), not yes/no/on/off; for numbers decimal notation, not .inf/.nan) and an
// impossible combination are errors. Enum values may be plain or quoted. Messages look like
//     my.yaml:5:16: model_config.num_experts_per_tok: expected 1 <= num_experts_per_tok <= num_experts (64), got 65
// i.e. "<source>:<line>:<column>: <key path>: expected <what>, got <value>" (error.h's form, the position added).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "moefuse/dtype.h"
#include "moefuse/numerics.h"

namespace moefuse {

/// How the layer runs (docs/layer.md §2). The YAML names are "eager" and "ge_graph" ("graph" is read as ge_graph).
enum class ExeMode : uint8_t { eager, ge_graph };
/// Which Hugging Face model family the weights and routing come from (docs/layer.md §5: tensor names).
enum class ModelType : uint8_t { deepseek_v3, deepseek_v2, qwen3_moe, qwen2_moe, mixtral, olmoe };
/// Router normalisation: gating_top_k norm_type 0 (softmax) or 1 (sigmoid).
enum class ScoringFunc : uint8_t { softmax, sigmoid };
/// Expert weight format (docs/layer.md §1, experts).
enum class QuantMode : uint8_t { none, w8a8, w8a8c8, w4a16, w4a8 };

/// Whether a chain keeps int4 group-wise weights (w4a16: model-dtype activations; w4a8: int8 activations).
constexpr bool int4_weights(QuantMode m) { return m == QuantMode::w4a16 || m == QuantMode::w4a8; }
/// Whether a chain quantises its activations to int8 (w8a8, w8a8c8, w4a8; w4a16 keeps them in the model dtype).
constexpr bool int8_activations(QuantMode m) {
  return m == QuantMode::w8a8 || m == QuantMode::w8a8c8 || m == QuantMode::w4a8;
}
/// Router logits kept in fp32, or rounded to the model dtype before gating (docs/layer.md §1, router).
enum class RouterLogitsDtype : uint8_t { fp32, model };
/// Activations of the expert projections of a layer whose expert weights are FP8 block-scaled, held one byte per
/// weight (docs/layer.md §7): none keeps them in the model dtype (the bf16 chain on the weights bf16(e4m3 * s));
/// dynamic_1x128 is DeepSeek-V3's FP8 inference mode: each activation row quantised to e4m3 per block of 128 input
/// channels (s = max|x| / 448, RNE, saturating; an all-zero block s = 0, codes 0), each projection output
/// Σ over 128-wide K blocks, ascending, from +0, of acc = acc + ((fp32(exact block dot) * s_act) * s_weight), then
/// rounded to the model dtype; h, a and y round where the bf16 chain rounds them (kernels/gemm/fp8_act.h).
enum class Fp8Activations : uint8_t { none, dynamic_1x128 };

/// One MoE layer's configuration. The member defaults are the seed default (the olmoe-1b-7b preset), so
/// `MoeConfig{}` is a valid configuration.
struct MoeConfig {
  ExeMode exe_mode = ExeMode::ge_graph;
  /// The numerics tier (moefuse/numerics.h) a layer of this config runs unless LayerOptions::numerics says
  /// otherwise; unset (the YAML key absent; every preset) = default_numerics(). to_yaml writes it only when set.
  std::optional<Numerics> numerics = std::nullopt;
  // model_config:
  ModelType model_type = ModelType::olmoe;
  bool enable_superkernel = true;
  int64_t num_experts = 64;             // E, 1..2048 (gating_top_k's limit)
  int64_t num_experts_per_tok = 8;      // K, 1..E
  int64_t moe_chunk_max_len = 1024;     // >= 1, and moe_chunk_max_len * K <= 2^31 - 1 (int32 row indices)
  int64_t hidden_size = 2048;           // H, 1..2^24
  int64_t moe_intermediate_size = 1024; // I, 1..2^24
  /// deepseek_v2/v3: number of shared experts, each of width I, stored as one MLP of width n_shared_experts * I.
  /// qwen2_moe: 0 or 1 (its one gated shared expert). Other model types: 0.
  int64_t n_shared_experts = 0;
  /// qwen2_moe only: width of the gated shared expert (> 0 exactly when n_shared_experts = 1); 0 elsewhere.
  int64_t shared_expert_intermediate_size = 0;
  ScoringFunc scoring_func = ScoringFunc::softmax;
  /// softmax: renormalise the top-k weights (gating_top_k renorm = 1). sigmoid: must be true (gating_top_k always
  /// renormalises sigmoid weights).
  bool norm_topk_prob = false;
  int64_t n_group = 1;                  // divides E
  int64_t topk_group = 1;               // 1..n_group, and K <= topk_group * E / n_group
  double routed_scaling_factor = 1.0;   // finite, > 0 (the layer passes it to gating_top_k, used there as fp32)
  DType dtype = DType::bf16;            // bf16, f16 or f32
  QuantMode quant_mode = QuantMode::none;  // w8a8, w4a8: dtype bf16 or f16; w8a8c8: dtype bf16; w4a16: any dtype
  /// w4a16, w4a8: input channels per scale and zero point, 32, 64 or 128, dividing hidden_size, moe_intermediate_size
  /// and the shared expert's width (checked with those modes, unused otherwise; to_yaml writes it for them or
  /// when it is not the default).
  int64_t quant_group_size = 128;
  /// w4a16, w4a8: how random weights and `moefuse quantize` round to int4: symmetric (zero point 8, GPTQ's sym) or with a
  /// zero point per group. A checkpoint's own zero points are used as they are either way.
  bool quant_symmetric = true;
  RouterLogitsDtype router_logits_dtype = RouterLogitsDtype::fp32;
  /// dynamic_1x128: only with dtype bf16 and quant_mode none, and the layer must hold FP8 expert weights one byte
  /// (MoeLayer refuses other weights by this key's name). to_yaml writes it only when not none.
  Fp8Activations fp8_activations = Fp8Activations::none;

  /// Width of the shared-expert MLP: n_shared_experts * moe_intermediate_size for deepseek_v2/v3,
  /// shared_expert_intermediate_size for qwen2_moe, 0 when there is none.
  int64_t shared_expert_width() const;
  /// True for qwen2_moe with a shared expert: its output is multiplied by sigmoid(x · shared_expert_gate^T).
  bool shared_expert_gated() const;

  friend bool operator==(const MoeConfig&, const MoeConfig&) = default;
};

/// YAML spellings of the enum values ("ge_graph", "deepseek_v3", "softmax", "w8a8c8", "fp32", ...).
std::string_view exe_mode_name(ExeMode m);
std::string_view model_type_name(ModelType t);
std::string_view scoring_func_name(ScoringFunc f);
std::string_view quant_mode_name(QuantMode q);
std::string_view router_logits_dtype_name(RouterLogitsDtype d);
std::string_view fp8_activations_name(Fp8Activations a);

/// Checks every value and combination (the rules in the comments of MoeConfig's members). Throws ValueError whose
/// message starts with `source_name` and names the key path (e.g. "model_config.n_group"), the value and what was
/// expected.
void validate(const MoeConfig& config, std::string_view source_name = "MoeConfig");

/// Parses a YAML config (the form at the top of this file) held in memory and validates it. `source_name` (a file
/// name, "preset deepseek-v3", ...) starts every error message. Errors: IoError for text that is not YAML (with line
/// and column; control characters other than TAB/LF/CR are not YAML) or holds more than one document; ValueError
/// for everything about keys and values (an empty document included).
MoeConfig parse_config_yaml(std::string_view text, std::string_view source_name = "<config>");

/// The largest config file load_config_file reads: 1 MiB (a real config is under 2 KiB).
inline constexpr uint64_t kMaxConfigFileBytes = uint64_t(1) << 20;

/// Reads and parses a YAML config file (a regular file of at most kMaxConfigFileBytes, its size checked before
/// anything is read or parsed). Errors: IoError "load_config_file: <path>: expected ..., got ..." when the file
/// cannot be read, is not a regular file (a FIFO, a device such as /dev/zero, a directory) or is larger than
/// kMaxConfigFileBytes; else as parse_config_yaml with the path as source name.
MoeConfig load_config_file(const std::string& path);

/// The built-in presets (docs/layer.md §4), embedded in the library at build time from configs/<name>.yaml, sorted by
/// name: deepseek-v2-lite, deepseek-v3, mixtral-8x7b, olmoe-1b-7b, qwen1.5-moe-a2.7b, qwen3-30b-a3b.
std::vector<std::string> preset_names();

/// The embedded YAML text of a preset (exactly the bytes of configs/<name>.yaml at build time). "default" names
/// olmoe-1b-7b, the seed default. Throws ValueError naming the preset and listing the known names.
std::string_view preset_text(std::string_view name);

/// Parses and validates a preset (preset_text()). load_preset("default") == MoeConfig{}.
MoeConfig load_preset(std::string_view name);

/// The YAML form of a config: every key, in the order of docs/layer.md §3, enums by their YAML names (exe_mode as
/// "ge_graph", never the alias "graph"), the scaling factor with the shortest digits that read back to the same
/// double. Does not validate. parse_config_yaml(to_yaml(c)) == c for every valid c.
std::string to_yaml(const MoeConfig& config);

/// Writes to_yaml(config) to `path` the way every moefuse writer writes (a temporary file next to `path`, flushed
/// and renamed over it), so a failed write leaves no partial file and an existing `path` untouched. Errors: IoError
/// "write_config_file: <path>: expected ..., got <reason>" when the file cannot be written.
void write_config_file(const std::string& path, const MoeConfig& config);

}  // namespace moefuse
