#include "moefuse/numerics.h"

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

}  // namespace moefuse
