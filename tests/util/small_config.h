// A preset shrunk to test size: its routing (E, K, groups, scoring, shared experts) kept, H = 64, I = 32.
#pragma once

#include <string>

#include "moefuse/config.h"

namespace moefuse::testing {

/// load_preset(preset) with H 64, I 32, the shared expert (qwen2_moe's width) `shared_width` when it has one, the
/// given dtype and quantisation; validated.
MoeConfig small_config(const std::string& preset, DType dtype, QuantMode quant = QuantMode::none,
                       int64_t shared_width = 48);

}  // namespace moefuse::testing
