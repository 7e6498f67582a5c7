// Typed reads of a JSON object's keys with errors in the project's form, for config.json (model_config.cpp):
// "<source>: <key path>: expected <what>, got <value>". A null value counts as absent (transformers writes null for
// an unset optional key).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace moefuse::model_detail {

/// "1, 3, 5": a list of layer numbers for messages.
std::string join_layers(const std::vector<int64_t>& layers);

class Keys {
 public:
  /// `obj` must outlive the Keys; `path` is the key path of `obj` ("" for the top level).
  Keys(const nlohmann::json& obj, std::string_view source, std::string path);

  /// The value of `key`, or nullptr when absent or null.
  const nlohmann::json* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }
  /// The key is present with the value null.
  bool is_null(std::string_view key) const;

  int64_t int_required(std::string_view key, int64_t min) const;
  int64_t int_or(std::string_view key, int64_t fallback, int64_t min) const;
  bool bool_or(std::string_view key, bool fallback) const;
  double number_or(std::string_view key, double fallback) const;
  std::string string_required(std::string_view key) const;
  std::string string_or(std::string_view key, std::string fallback) const;
  /// A list of integers >= 0 (empty when absent).
  std::vector<int64_t> int_list_or(std::string_view key) const;
  /// The object under `key` (ValueError when it is not an object).
  Keys object(std::string_view key) const;

  /// Throws ValueError "<source>: <path.key>: expected <expected>, got <given>".
  [[noreturn]] void fail(std::string_view key, std::string_view expected, std::string_view given) const;

 private:
  int64_t integer(std::string_view key, const nlohmann::json& v, int64_t min) const;

  const nlohmann::json& obj_;
  std::string source_;
  std::string path_;
};

}  // namespace moefuse::model_detail
