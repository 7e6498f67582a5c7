// MoeConfig's rules (docs/config.md), checked for a config built in code (validate) or read from YAML, where an
// error names the file, line and column of the offending key.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "moefuse/config.h"

namespace moefuse::config_detail {

/// The "<source>[:line:col]" prefix of an error about `key` (short name under model_config, or a top-level key).
using WhereFn = std::function<std::string(std::string_view key)>;

/// Whether `key` is a top-level key of the YAML form (exe_mode, numerics) rather than one under model_config.
bool top_level_key(std::string_view key);

/// Throws ValueError naming the first key that breaks a rule.
void validate_config(const MoeConfig& c, const WhereFn& where);

}  // namespace moefuse::config_detail
