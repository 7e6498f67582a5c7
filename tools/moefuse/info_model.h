// `moefuse info --weights DIR`: a model folder's config.json and MoE layers (cmd_info_model.cpp).
#pragma once

#include <string>

namespace moefuse::cli {

/// Prints what moefuse reads of the model folder `dir` (text, or one JSON object); returns the exit status.
int model_info(const std::string& dir, bool json);

}  // namespace moefuse::cli
