// libFuzzer target: YAML configs (parse_config_yaml). Any input may be rejected, but only with a moefuse::Error;
// anything else escaping (another exception type, a crash, a sanitizer report) is a bug. An accepted config must
// validate and survive a to_yaml round trip unchanged.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "moefuse/config.h"
#include "moefuse/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace moefuse;
  MoeConfig config;
  try {
    config = parse_config_yaml(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.yaml");
  } catch (const Error&) {
    return 0;
  }
  validate(config);  // must not throw: a parsed config is valid
  if (!(parse_config_yaml(to_yaml(config), "round trip") == config)) __builtin_trap();
  return 0;
}
