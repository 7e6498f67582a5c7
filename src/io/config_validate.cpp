#include "io/config_validate.h"

#include <charconv>
#include <cmath>

#include "base/check.h"
#include "io/config_enums.h"
#include "moefuse/error.h"

namespace moefuse {
namespace config_detail {
namespace {

constexpr int64_t kMaxExperts = 2048;           // gating_top_k's limit
constexpr int64_t kMaxWidth = int64_t(1) << 24;  // H, I, shared width: keeps every weight byte count in int64
constexpr int64_t kMaxRows = 2147483647;         // expanded rows (T*K) are indexed by int32

[[noreturn]] void fail_key(const WhereFn& where, std::string_view key, std::string_view expected,
                           std::string_view got) {
  std::string path = top_level_key(key) ? std::string(key) : "model_config." + std::string(key);
  throw ValueError(check::message(where(key), path, expected, got));
}

std::string num(int64_t v) { return std::to_string(v); }

}  // namespace

bool top_level_key(std::string_view key) { return key == "exe_mode" || key == "numerics"; }

void validate_config(const MoeConfig& c, const WhereFn& where) {
  if (!enum_valid(c.exe_mode)) fail_key(where, "exe_mode", enum_choices<ExeMode>(), num(int(c.exe_mode)));
  if (c.numerics && *c.numerics != Numerics::native && *c.numerics != Numerics::portable)
    fail_key(where, "numerics", "native or portable", num(int(*c.numerics)));
  if (!enum_valid(c.model_type))
    fail_key(where, "model_type", enum_choices<ModelType>(), num(int(c.model_type)));

  const int64_t E = c.num_experts, K = c.num_experts_per_tok;
  if (E < 1 || E > kMaxExperts)
    fail_key(where, "num_experts", "1 <= num_experts <= 2048 (gating_top_k's limit)", num(E));
  if (K < 1 || K > E)
    fail_key(where, "num_experts_per_tok", "1 <= num_experts_per_tok <= num_experts (" + num(E) + ")", num(K));
  if (c.moe_chunk_max_len < 1 || c.moe_chunk_max_len > kMaxRows / K)
    fail_key(where, "moe_chunk_max_len",
             "1 <= moe_chunk_max_len <= " + num(kMaxRows / K) +
                 " (moe_chunk_max_len * num_experts_per_tok rows must fit in int32)",
             num(c.moe_chunk_max_len));
  if (c.hidden_size < 1 || c.hidden_size > kMaxWidth)
    fail_key(where, "hidden_size", "1 <= hidden_size <= " + num(kMaxWidth), num(c.hidden_size));
  if (c.moe_intermediate_size < 1 || c.moe_intermediate_size > kMaxWidth)
    fail_key(where, "moe_intermediate_size", "1 <= moe_intermediate_size <= " + num(kMaxWidth),
             num(c.moe_intermediate_size));

  const std::string type(enum_name(c.model_type));
  switch (c.model_type) {
    case ModelType::deepseek_v2:
    case ModelType::deepseek_v3:
      if (c.n_shared_experts < 0 || c.n_shared_experts > kMaxWidth / c.moe_intermediate_size)
        fail_key(where, "n_shared_experts",
                 "0 <= n_shared_experts <= " + num(kMaxWidth / c.moe_intermediate_size) +
                     " (the shared MLP is n_shared_experts * moe_intermediate_size wide, at most " + num(kMaxWidth) +
                     ")",
                 num(c.n_shared_experts));
      if (c.shared_expert_intermediate_size != 0)
        fail_key(where, "shared_expert_intermediate_size",
                 "0 for " + type + " (its shared experts are n_shared_experts * moe_intermediate_size wide)",
                 num(c.shared_expert_intermediate_size));
      break;
    case ModelType::qwen2_moe:
      if (c.n_shared_experts != 0 && c.n_shared_experts != 1)
        fail_key(where, "n_shared_experts", "0 or 1 for qwen2_moe (one gated shared expert)",
                 num(c.n_shared_experts));
      if (c.n_shared_experts == 1 &&
          (c.shared_expert_intermediate_size < 1 || c.shared_expert_intermediate_size > kMaxWidth))
        fail_key(where, "shared_expert_intermediate_size",
                 "1 <= shared_expert_intermediate_size <= " + num(kMaxWidth) + " for qwen2_moe with a shared expert",
                 num(c.shared_expert_intermediate_size));
      if (c.n_shared_experts == 0 && c.shared_expert_intermediate_size != 0)
        fail_key(where, "shared_expert_intermediate_size", "0 when n_shared_experts is 0",
                 num(c.shared_expert_intermediate_size));
      break;
    default:
      if (c.n_shared_experts != 0)
        fail_key(where, "n_shared_experts", "0 for " + type + " (it has no shared experts)", num(c.n_shared_experts));
      if (c.shared_expert_intermediate_size != 0)
        fail_key(where, "shared_expert_intermediate_size", "0 for " + type + " (it has no shared experts)",
                 num(c.shared_expert_intermediate_size));
      break;
  }

  if (!enum_valid(c.scoring_func))
    fail_key(where, "scoring_func", enum_choices<ScoringFunc>(), num(int(c.scoring_func)));
  if (c.n_group < 1 || c.n_group > E || E % c.n_group != 0)
    fail_key(where, "n_group", "a divisor of num_experts (" + num(E) + ")", num(c.n_group));
  if (c.topk_group < 1 || c.topk_group > c.n_group)
    fail_key(where, "topk_group", "1 <= topk_group <= n_group (" + num(c.n_group) + ")", num(c.topk_group));
  const int64_t per_group = E / c.n_group;
  if (K > c.topk_group * per_group)
    fail_key(where, "num_experts_per_tok",
             "num_experts_per_tok <= topk_group * num_experts / n_group = " + num(c.topk_group) + " * " +
                 num(per_group) + " = " + num(c.topk_group * per_group) + " (the experts of the chosen groups)",
             num(K));
  if (c.scoring_func == ScoringFunc::sigmoid) {
    if (per_group < 2)
      fail_key(where, "n_group",
               "num_experts / n_group >= 2 with scoring_func sigmoid (groups are ranked by their two best experts)",
               num(c.n_group) + " (" + num(E) + " / " + num(c.n_group) + " = " + num(per_group) + ")");
    if (!c.norm_topk_prob)
      fail_key(where, "norm_topk_prob",
               "true with scoring_func sigmoid (gating_top_k always renormalises sigmoid weights)", "false");
  }
  if (!std::isfinite(c.routed_scaling_factor) || !(c.routed_scaling_factor > 0.0)) {
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, c.routed_scaling_factor);
    fail_key(where, "routed_scaling_factor", "a finite number > 0", std::string(buf, r.ptr));
  }
  if (!enum_valid(c.dtype)) fail_key(where, "dtype", enum_choices<DType>(), std::string(dtype_name(c.dtype)));
  if (!enum_valid(c.quant_mode)) fail_key(where, "quant_mode", enum_choices<QuantMode>(), num(int(c.quant_mode)));
  if (c.quant_mode == QuantMode::w8a8 && c.dtype == DType::f32)
    fail_key(where, "quant_mode", "none with dtype f32 (w8a8 experts output bf16 or f16)", "w8a8");
  if (c.quant_mode == QuantMode::w4a8 && c.dtype == DType::f32)
    fail_key(where, "quant_mode", "none or w4a16 with dtype f32 (w4a8 experts output bf16 or f16)", "w4a8");
  if (c.quant_mode == QuantMode::w8a8c8 && c.dtype != DType::bf16)
    fail_key(where, "quant_mode",
             std::string("none or w8a8 with dtype ") + std::string(dtype_name(c.dtype)) + " (w8a8c8 needs dtype bf16)",
             "w8a8c8");
  if (int4_weights(c.quant_mode)) {
    const int64_t G = c.quant_group_size;
    if (G != 32 && G != 64 && G != 128) fail_key(where, "quant_group_size", "32, 64 or 128", num(G));
    const std::pair<const char*, int64_t> widths[] = {{"hidden_size", c.hidden_size},
                                                      {"moe_intermediate_size", c.moe_intermediate_size},
                                                      {"shared expert width", c.shared_expert_width()}};
    for (const auto& [what, v] : widths)
      if (v % G != 0)
        fail_key(where, "quant_group_size", std::string("a group size dividing the ") + what + " (" + num(v) + ")",
                 num(G));
  }
  if (!enum_valid(c.router_logits_dtype))
    fail_key(where, "router_logits_dtype", enum_choices<RouterLogitsDtype>(), num(int(c.router_logits_dtype)));
  if (!enum_valid(c.fp8_activations))
    fail_key(where, "fp8_activations", enum_choices<Fp8Activations>(), num(int(c.fp8_activations)));
  if (c.fp8_activations != Fp8Activations::none && (c.dtype != DType::bf16 || c.quant_mode != QuantMode::none))
    fail_key(where, "fp8_activations",
             std::string("none with dtype ") + std::string(dtype_name(c.dtype)) + " and quant_mode " +
                 std::string(enum_name(c.quant_mode)) +
                 " (FP8 activations run on FP8 block-scaled expert weights held one byte, in a bf16 layer with "
                 "quant_mode none)",
             std::string(enum_name(c.fp8_activations)));
}

}  // namespace config_detail

void validate(const MoeConfig& config, std::string_view source_name) {
  config_detail::validate_config(config, [&](std::string_view) { return std::string(source_name); });
}

}  // namespace moefuse
