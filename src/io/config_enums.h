// The names of MoeConfig's enums as they appear in YAML, messages and --json output: one table per enum.
#pragma once

#include <iterator>
#include <string>
#include <string_view>
#include <utility>

#include "moefuse/config.h"
#include "moefuse/tensor.h"

namespace moefuse::config_detail {

template <class E>
struct EnumNames;
template <>
struct EnumNames<ExeMode> {
  static constexpr std::pair<ExeMode, std::string_view> v[] = {{ExeMode::eager, "eager"},
                                                               {ExeMode::ge_graph, "ge_graph"}};
};
template <>
struct EnumNames<ModelType> {
  static constexpr std::pair<ModelType, std::string_view> v[] = {
      {ModelType::deepseek_v3, "deepseek_v3"}, {ModelType::deepseek_v2, "deepseek_v2"},
      {ModelType::qwen3_moe, "qwen3_moe"},     {ModelType::qwen2_moe, "qwen2_moe"},
      {ModelType::mixtral, "mixtral"},         {ModelType::olmoe, "olmoe"}};
};
template <>
struct EnumNames<ScoringFunc> {
  static constexpr std::pair<ScoringFunc, std::string_view> v[] = {{ScoringFunc::softmax, "softmax"},
                                                                   {ScoringFunc::sigmoid, "sigmoid"}};
};
template <>
struct EnumNames<QuantMode> {
  static constexpr std::pair<QuantMode, std::string_view> v[] = {
      {QuantMode::none, "none"}, {QuantMode::w8a8, "w8a8"}, {QuantMode::w8a8c8, "w8a8c8"}, {QuantMode::w4a16, "w4a16"}, {QuantMode::w4a8, "w4a8"}};
};
template <>
struct EnumNames<RouterLogitsDtype> {
  static constexpr std::pair<RouterLogitsDtype, std::string_view> v[] = {{RouterLogitsDtype::fp32, "fp32"},
                                                                         {RouterLogitsDtype::model, "model"}};
};
template <>
struct EnumNames<Fp8Activations> {
  static constexpr std::pair<Fp8Activations, std::string_view> v[] = {{Fp8Activations::none, "none"},
                                                                      {Fp8Activations::dynamic_1x128, "dynamic_1x128"}};
};
template <>
struct EnumNames<DType> {
  static constexpr std::pair<DType, std::string_view> v[] = {
      {DType::bf16, "bf16"}, {DType::f16, "f16"}, {DType::f32, "f32"}};
};

template <class E>
std::string_view enum_name(E value) {
  for (const auto& [e, name] : EnumNames<E>::v)
    if (e == value) return name;
  return "?";
}

template <class E>
bool enum_valid(E value) {
  for (const auto& [e, name] : EnumNames<E>::v)
    if (e == value) return true;
  return false;
}

// "one of a, b or c"
template <class E>
std::string enum_choices(std::string_view extra = {}) {
  std::string s = "one of ";
  size_t n = std::size(EnumNames<E>::v) + (extra.empty() ? 0 : 1), i = 0;
  auto add = [&](std::string_view name) {
    if (i) s += (i + 1 == n) ? " or " : ", ";
    s += name;
    ++i;
  };
  for (const auto& [e, name] : EnumNames<E>::v) add(name);
  if (!extra.empty()) add(extra);
  return s;
}

}  // namespace moefuse::config_detail
