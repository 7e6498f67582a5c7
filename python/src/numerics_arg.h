// The numerics= argument of the layer bindings (layer.cpp, ep_layer.cpp): moefuse/layer.py passes None (the config's
// key, else the process default) or "native" / "portable", already checked; parse_numerics checks it again.
#pragma once

#include <optional>
#include <string>

#include "moefuse/numerics.h"

namespace moefuse::python {

inline std::optional<Numerics> numerics_argument(const std::optional<std::string>& value) {
  if (!value) return std::nullopt;
  return parse_numerics(*value, "numerics");
}

}  // namespace moefuse::python
