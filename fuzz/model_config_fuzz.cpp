// libFuzzer target: a model's config.json (parse_model_config_json). Any input may be rejected, but only with a
// moefuse::Error; anything else escaping (another exception type, a crash, a sanitizer report) is a bug. An accepted
// config must hold a valid layer config, at least one MoE layer, and give a valid config for each of them.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "moefuse/error.h"
#include "moefuse/model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace moefuse;
  ModelConfig m;
  try {
    m = parse_model_config_json(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz/config.json");
  } catch (const Error&) {
    return 0;
  }
  if (m.moe_layers.empty()) __builtin_trap();
  validate(m.layer);  // must not throw: a parsed config is valid
  for (int64_t l : m.moe_layers) validate(m.layer_config(l));
  return 0;
}
