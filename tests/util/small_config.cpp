#include "util/small_config.h"

namespace moefuse::testing {

MoeConfig small_config(const std::string& preset, DType dtype, QuantMode quant, int64_t shared_width) {
  MoeConfig c = load_preset(preset);
  c.hidden_size = 64;
  c.moe_intermediate_size = 32;
  if (c.shared_expert_intermediate_size > 0) c.shared_expert_intermediate_size = shared_width;
  c.dtype = dtype;
  c.quant_mode = quant;
  validate(c, "test config");
  return c;
}

}  // namespace moefuse::testing
