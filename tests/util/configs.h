// Small layer configurations for tests: a few experts and test-sized widths, so that a layer builds in milliseconds.
#pragma once

#include <cstdint>
#include <string>

#include "moefuse/config.h"
#include "moefuse/layer.h"
#include "util/random.h"

namespace moefuse::testing {

/// The seed default (olmoe routing) with `experts` experts, top-`top_k`, H = 64, I = 32 and the given formats.
inline MoeConfig tiny_config(DType dtype = DType::bf16, QuantMode quant = QuantMode::none, int64_t experts = 8,
                             int64_t top_k = 2) {
  MoeConfig c;
  c.num_experts = experts;
  c.num_experts_per_tok = top_k;
  c.hidden_size = 64;
  c.moe_intermediate_size = 32;
  c.dtype = dtype;
  c.quant_mode = quant;
  return c;
}

/// A preset shrunk to test size: its routing (E, K, groups, scoring, shared experts) kept; H = `hidden`,
/// I = `intermediate` and, where the preset has a gated shared expert of its own width (qwen2_moe), that width
/// `shared_width`.
inline MoeConfig shrunk_preset(const std::string& preset, DType dtype, QuantMode quant = QuantMode::none,
                               int64_t hidden = 64, int64_t intermediate = 32, int64_t shared_width = 48) {
  MoeConfig c = load_preset(preset);
  c.hidden_size = hidden;
  c.moe_intermediate_size = intermediate;
  if (c.shared_expert_intermediate_size > 0) c.shared_expert_intermediate_size = shared_width;
  c.dtype = dtype;
  c.quant_mode = quant;
  return c;
}

/// The six presets, one per model family.
inline constexpr const char* kPresetNames[] = {"olmoe-1b-7b",      "qwen3-30b-a3b", "qwen1.5-moe-a2.7b",
                                               "deepseek-v2-lite", "deepseek-v3",   "mixtral-8x7b"};

/// T tokens of the layer's width in its dtype, N(0, 1) from `seed`.
inline Tensor layer_tokens(const MoeConfig& c, int64_t T, uint64_t seed) {
  Rng rng(seed);
  return rng.normal_tensor(c.dtype, {T, c.hidden_size}, 1.0f);
}

/// LayerOptions with `threads` threads (and the defaults otherwise).
inline LayerOptions with_threads(int threads) {
  LayerOptions o;
  o.threads = threads;
  return o;
}

}  // namespace moefuse::testing
