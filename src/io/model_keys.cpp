#include "io/model_keys.h"

#include <cmath>

#include "base/check.h"
#include "io/json_util.h"
#include "moefuse/error.h"

namespace moefuse::model_detail {

using nlohmann::json;
using io_detail::describe_json;

Keys::Keys(const json& obj, std::string_view source, std::string path)
    : obj_(obj), source_(source), path_(std::move(path)) {
  if (!obj_.is_object())
    throw ValueError(
        check::message(source_, path_.empty() ? "(top level)" : path_, "a JSON object", describe_json(obj_)));
}

void Keys::fail(std::string_view key, std::string_view expected, std::string_view given) const {
  throw ValueError(check::message(source_, path_.empty() ? std::string(key) : path_ + "." + std::string(key), expected,
                                  given));
}

const json* Keys::find(std::string_view key) const {
  const auto it = obj_.find(std::string(key));
  return it == obj_.end() || it->is_null() ? nullptr : &*it;
}

std::string join_layers(const std::vector<int64_t>& layers) {
  std::string s;
  for (size_t i = 0; i < layers.size(); ++i) s += (i ? ", " : "") + std::to_string(layers[i]);
  return s;
}

bool Keys::is_null(std::string_view key) const {
  const auto it = obj_.find(std::string(key));
  return it != obj_.end() && it->is_null();
}

int64_t Keys::integer(std::string_view key, const json& v, int64_t min) const {
  int64_t x = 0;
  if (v.is_number_integer()) x = v.get<int64_t>();
  else if (v.is_number_unsigned() && v.get<uint64_t>() <= uint64_t(INT64_MAX)) x = int64_t(v.get<uint64_t>());
  else fail(key, "an integer >= " + std::to_string(min), describe_json(v));
  if (x < min) fail(key, "an integer >= " + std::to_string(min), std::to_string(x));
  return x;
}

int64_t Keys::int_required(std::string_view key, int64_t min) const {
  const json* v = find(key);
  if (v == nullptr) fail(key, "an integer >= " + std::to_string(min) + " (a required key)", "none");
  return integer(key, *v, min);
}

int64_t Keys::int_or(std::string_view key, int64_t fallback, int64_t min) const {
  const json* v = find(key);
  return v == nullptr ? fallback : integer(key, *v, min);
}

bool Keys::bool_or(std::string_view key, bool fallback) const {
  const json* v = find(key);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) fail(key, "true or false", describe_json(*v));
  return v->get<bool>();
}

double Keys::number_or(std::string_view key, double fallback) const {
  const json* v = find(key);
  if (v == nullptr) return fallback;
  if (!v->is_number()) fail(key, "a number", describe_json(*v));
  return v->get<double>();
}

std::string Keys::string_required(std::string_view key) const {
  const json* v = find(key);
  if (v == nullptr) fail(key, "a string (a required key)", "none");
  if (!v->is_string()) fail(key, "a string", describe_json(*v));
  return v->get<std::string>();
}

std::string Keys::string_or(std::string_view key, std::string fallback) const {
  return find(key) == nullptr ? fallback : string_required(key);
}

std::vector<int64_t> Keys::int_list_or(std::string_view key) const {
  const json* v = find(key);
  std::vector<int64_t> out;
  if (v == nullptr) return out;
  if (!v->is_array()) fail(key, "a list of integers >= 0", describe_json(*v));
  for (const json& e : *v) out.push_back(integer(key, e, 0));
  return out;
}

Keys Keys::object(std::string_view key) const {
  const json* v = find(key);
  if (v == nullptr || !v->is_object()) fail(key, "a JSON object", v ? describe_json(*v) : "none");
  return Keys(*v, source_, path_.empty() ? std::string(key) : path_ + "." + std::string(key));
}

}  // namespace moefuse::model_detail
