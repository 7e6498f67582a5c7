// moefuse/model.h — a Hugging Face model folder as it is shipped: its config.json read into the MoE layer's config,
// which of its decoder layers are MoE layers, and one of them loaded with no moefuse config at all.
//
//   moefuse::ModelConfig m = moefuse::load_model_config("/models/qwen3-30b-a3b");   // reads its config.json
//   moefuse::MoeLayer layer = moefuse::load_model_layer("/models/qwen3-30b-a3b", m.moe_layers.front());
//
// config.json is read for six families (its "model_type"): qwen3_moe, qwen2_moe, olmoe, mixtral, deepseek_v2 and
// deepseek_v3, by the keys docs/layer.md §7 lists. Keys that define the layer's shape (hidden_size,
// num_hidden_layers, the expert count and width, num_experts_per_tok) are required; keys that choose behaviour take
// the default of the family's transformers config class when absent (e.g. norm_topk_prob false for qwen3_moe,
// first_k_dense_replace 3 for deepseek_v3). A null value counts as absent. Other keys (vocabulary, attention,
// rope, ...) are not read. The execution keys of MoeConfig (exe_mode, numerics, enable_superkernel,
// moe_chunk_max_len, router_logits_dtype) are not model keys: they take MoeConfig's defaults, or come from a moefuse
// config given beside the folder (with_execution_options).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "moefuse/config.h"
#include "moefuse/io.h"
#include "moefuse/layer.h"

namespace moefuse {

/// What a model's config.json says about its MoE layers.
struct ModelConfig {
  /// The file name every error about this config starts with (load_model_config: "<dir>/config.json").
  std::string source;
  /// The MoE layer's config built from the model's keys; execution keys at MoeConfig's defaults; quant_mode none.
  MoeConfig layer;
  /// num_hidden_layers.
  int64_t num_hidden_layers = 0;
  /// The decoder layers that are MoE layers, increasing (the others have a dense MLP). Never empty.
  std::vector<int64_t> moe_layers;
  /// quantization_config written by `moefuse quantize` (quant_method "moefuse"): the int8 chain of the quantised
  /// layers and which layers are quantised (increasing, a subset of moe_layers). none / empty for a float model.
  /// A GPTQ folder (quant_method "gptq", see gptq): w4a16, or w4a8 when its "moefuse_quant_mode" says so; its
  /// "quantized_layers" when given, else every MoE layer.
  QuantMode quant_mode = QuantMode::none;
  std::vector<int64_t> quantized_layers;
  /// quantization_config of a GPTQ int4 folder (quant_method "gptq": bits 4, group_size 32, 64 or 128, sym,
  /// desc_act, checkpoint_format "gptq" or "gptq_v2") or an AWQ one (quant_method "awq": bits 4, group_size,
  /// zero_point true, version "gemm"; sym false); source "" otherwise. Its quantised layers' experts and shared
  /// experts are read from their *.qweight, *.qzeros, *.scales (and *.g_idx) tensors; the router stays float
  /// (docs/layer.md, "int4 weights", "AWQ folders").
  GptqSettings gptq;
  /// quantization_config of an FP8 block-scaled release (quant_method "fp8"): its block size; source "" otherwise.
  /// Such a model's layers are float layers (quant_mode none, dtype the model's) whose expert projections are read
  /// from F8_E4M3 tensors and their block scales (MoeLayer::from_checkpoint, docs/layer.md §7).
  Fp8Settings fp8;

  bool is_moe_layer(int64_t layer) const;
  /// The config of MoE layer `layer`: `layer` with quant_mode set when it is one of quantized_layers (a GPTQ folder:
  /// and quant_group_size, quant_symmetric from gptq). ValueError
  /// "<source>: --layer: expected one of the MoE layers 1, 3, 5 (of 6 decoder layers), got 2 (a dense layer)" for a
  /// dense or out-of-range layer.
  MoeConfig layer_config(int64_t layer) const;
};

/// The config.json model_type values read (the six families), sorted.
std::vector<std::string> model_type_names();

/// The most decoder layers a config.json may declare (real models have at most a few hundred).
inline constexpr int64_t kMaxModelLayers = 65536;

/// The largest config.json load_model_config reads: 4 MiB (real ones are a few KiB).
inline constexpr uint64_t kMaxModelConfigBytes = uint64_t(4) << 20;

/// Parses a model's config.json held in memory. `source_name` starts every message. Errors: IoError for text that is
/// not one JSON object (with the parser's byte position; duplicate keys refused); ValueError
/// "<source>: <key>: expected ..., got ..." for an unknown model_type (listing the known ones), a missing required
/// key, a value of the wrong type (a string "64" or 64.5 where an integer is needed), a value out of range, a
/// combination the layer does not compute (deepseek_v2 topk_method "noaux_tc", a sigmoid family without
/// norm_topk_prob) and a quantization_config this build does not read (an unknown quant_method: the known methods
/// listed; "fp8" with fmt other than "e4m3", activation_scheme other than "dynamic" or a weight_block_size that is not
/// two integers >= 1; "gptq" with bits other than 4, a group_size other than 32, 64, 128 (-1, one group per column,
/// included) or one that does not divide hidden_size and the expert widths, a checkpoint_format other than "gptq" and
/// "gptq_v2", a moefuse_quant_mode other than "w4a16" and "w4a8").
ModelConfig parse_model_config_json(std::string_view text, std::string_view source_name = "config.json");

/// True when `path` is a directory holding a config.json (a model folder as shipped).
bool is_model_folder(const std::string& path);

/// Reads `path`/config.json when `path` is a directory, else `path` itself (a regular file of at most
/// kMaxModelConfigBytes). Errors: IoError "load_model_config: <file>: expected ..., got ..." when it cannot be read;
/// else as parse_model_config_json with the file name as source.
ModelConfig load_model_config(const std::string& path);

/// `model` (a config from config.json) with the execution keys of `options` (a moefuse config given beside the
/// folder): exe_mode, numerics, enable_superkernel, moe_chunk_max_len and router_logits_dtype always; dtype, and
/// quant_mode when the model's layer is float (a float folder quantised on load). Every model key (model_type, the shape, the
/// routing, the shared expert; quant_mode of a quantised layer) must be equal in both: ValueError
/// "<options_source>: model_config.num_experts: expected 8 (as <model_source> says), got 16". The result is
/// validated.
MoeConfig with_execution_options(const MoeConfig& model, std::string_view model_source, const MoeConfig& options,
                                 std::string_view options_source);

/// Checks the tensors of MoE layer `layer` in `checkpoint` against what `config` (built from `config_source`) says:
/// the router [E, H], expert 0's gate projection [I, H], no expert numbered E, the shared expert's gate projection
/// [Is, H]. A contradiction is ValueError naming both sides: "<config_source>: num_experts = 8, hidden_size = 64
/// contradict <checkpoint>: model.layers.1.mlp.gate.weight of shape [4, 64]"; a missing tensor is IoError as in
/// Checkpoint.
void check_model_tensors(const MoeConfig& config, std::string_view config_source, const Checkpoint& checkpoint,
                         int64_t layer);

/// Layer `layer` of the model folder `dir` (its config.json and its checkpoint): load_model_config, layer_config,
/// with_execution_options when `options_config` is given (`options_source` names it), check_model_tensors, then
/// MoeLayer::from_checkpoint. Errors: as those functions.
MoeLayer load_model_layer(const std::string& dir, int64_t layer, const LayerOptions& options = {},
                          const MoeConfig* options_config = nullptr, std::string_view options_source = "");

// ---- quantising a whole model -------------------------------------------------------------------------------------

/// What quantize_model does.
struct QuantizeModelOptions {
  /// The chain: w8a8 or w8a8c8 (int8 per output channel; w8a8c8 needs a bf16 model), w4a16 or w4a8 (int4 per group
  /// of group_size input channels, GPTQ's format; w4a8 needs a bf16 or f16 model).
  QuantMode mode = QuantMode::w8a8;
  /// w4a16, w4a8: input channels per scale and zero point (32, 64, 128; it must divide H and the expert widths).
  int64_t group_size = 128;
  /// w4a16, w4a8: zero point 8 (true) or one per group (false).
  bool symmetric = true;
  /// The MoE layers to quantise (any order, no repeats); empty = every MoE layer.
  std::vector<int64_t> layers = {};
  /// Threads of the per-layer quantisation (LayerOptions::threads).
  int threads = 0;
  /// Called after each tensor is written: bytes of tensor data written so far and in all.
  std::function<void(int64_t done, int64_t total)> progress = {};
};

/// What quantize_model wrote.
struct QuantizeModelResult {
  std::vector<int64_t> layers;       // the layers quantised, increasing
  std::vector<std::string> files;    // the files of out_dir, sorted
  int64_t tensors = 0;               // tensors written (copied and quantised)
  int64_t data_bytes = 0;            // their bytes of data
};

/// Quantises a model folder: every MoE layer of options.layers (default all) as `moefuse quantize` does one layer —
/// MoeLayer::from_checkpoint with the layer's config and quant_mode options.mode, refusing non-finite weights, its
/// expert and shared projections written as int8 "weight" + f32 "weight_scale" (w8a8c8: and each expert's
/// "clip_alpha" 1) under the same names, or (w4a16, w4a8) as GPTQ's "qweight", "qzeros", f16 "scales" and "g_idx"
/// (round to nearest per group, v1 zero points, g_idx i / G) — and every other tensor (router, correction bias, shared-expert gate,
/// attention, norms, embeddings, the layers not chosen) copied byte for byte. The output has the input's shards
/// (same file names; each tensor in the shard of the tensor it comes from) and, when the input has one, its index
/// (weight_map and total_size updated); its config.json is the input's with "quantization_config":
/// {"quant_method": "moefuse", "quant_mode": ..., "quantized_layers": [...]} (int4: {"quant_method": "gptq",
/// "bits": 4, "group_size": G, "sym": ..., "desc_act": false, "checkpoint_format": "gptq", "moefuse_quant_mode":
/// "w4a16" | "w4a8", "quantized_layers": [...]}), which load_model_config reads back; the
/// input folder's other regular files (tokenizer, ...) are copied.
///
/// Memory: one layer at a time (the layer as it is quantised and its int8 copy), tensors streamed into the files.
/// All or nothing: everything is written into a staging directory beside out_dir, renamed to out_dir at the end, and
/// removed on any error. Errors: ValueError "quantize_model: out_dir: ..." when out_dir is the input folder or
/// inside it, IoError when it exists and is not an empty directory; ValueError naming the layer for a dense layer
/// in options.layers, for an input already quantised, for a mode the model's dtype does not allow, for a group size
/// that does not divide the projections' input widths (validate's message); the errors of
/// load_model_config, check_model_tensors and MoeLayer::from_checkpoint.
QuantizeModelResult quantize_model(const std::string& dir, const std::string& out_dir,
                                   const QuantizeModelOptions& options);

}  // namespace moefuse
