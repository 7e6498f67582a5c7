#include "moefuse/numerics.h"

#include <cstdlib>
#include <string>

#include "moefuse/error.h"

namespace moefuse {

std::string_view numerics_name(Numerics numerics) {
  return numerics == Numerics::native ? "native" : "portable";
}

Numerics parse_numerics(std::string_view name, std::string_view source) {
  if (name == "native") return Numerics::native;
  if (name == "portable") return Numerics::portable;
  throw ValueError(std::string(source) + ": expected native or portable, got \"" + std::string(name) + "\"");
}

Numerics default_numerics() {
  // A throwing initialiser leaves the static uninitialised: a bad value is reported again at the next call.
  static const Numerics numerics = [] {
    const char* v = std::getenv("MOEFUSE_NUMERICS");
    return v && *v ? parse_numerics(v, "MOEFUSE_NUMERICS") : Numerics::native;
  }();
  return numerics;
}

bool native_amx_bf16() {
  static const bool on = [] {
    const char* v = std::getenv("MOEFUSE_AMX_BF16");
    if (!v || !*v) return false;
    const std::string_view t(v);
    if (t == "on") return true;
    if (t == "off") return false;
    throw ValueError("MOEFUSE_AMX_BF16: expected on or off (unset: off), got \"" + std::string(t) + "\"");
  }();
  return on;
}

}  // namespace moefuse
