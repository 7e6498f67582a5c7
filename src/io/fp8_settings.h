// The FP8 keys of a quantization_config object, read in one place for config.json (model_config.cpp) and for a
// checkpoint's directory (read_fp8_settings, moefuse/io.h).
#pragma once

#include "io/model_keys.h"
#include "moefuse/io.h"

namespace moefuse::io_detail {

/// `qc` is a quantization_config whose quant_method is "fp8": checks fmt, activation_scheme and weight_block_size
/// (moefuse/io.h, Fp8Settings) and returns them with source `source`.
Fp8Settings parse_fp8_quantization(const model_detail::Keys& qc, std::string source);

}  // namespace moefuse::io_detail
