// The presets compiled into the library (configs/*.yaml).
#include <string>
#include <vector>

#include "base/check.h"
#include "io/files.h"
#include "io/presets.h"
#include "moefuse/config.h"
#include "moefuse/error.h"

namespace moefuse {
namespace {

std::string preset_list() {
  std::string s = "one of default";
  for (size_t i = 0; i < io_detail::kEmbeddedPresetCount; ++i) {
    s += (i + 1 == io_detail::kEmbeddedPresetCount) ? " or " : ", ";
    s += io_detail::kEmbeddedPresets[i].name;
  }
  return s;
}

}  // namespace

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (size_t i = 0; i < io_detail::kEmbeddedPresetCount; ++i) names.emplace_back(io_detail::kEmbeddedPresets[i].name);
  return names;
}

std::string_view preset_text(std::string_view name) {
  std::string_view wanted = name == "default" ? std::string_view("olmoe-1b-7b") : name;
  for (size_t i = 0; i < io_detail::kEmbeddedPresetCount; ++i) {
    const auto& p = io_detail::kEmbeddedPresets[i];
    if (wanted == p.name) return {reinterpret_cast<const char*>(p.data), p.size};
  }
  throw ValueError(check::message("preset", "name", preset_list(), io_detail::quote_for_message(name)));
}

MoeConfig load_preset(std::string_view name) {
  std::string_view text = preset_text(name);
  return parse_config_yaml(text, "preset " + std::string(name == "default" ? "olmoe-1b-7b" : name));
}

}  // namespace moefuse
