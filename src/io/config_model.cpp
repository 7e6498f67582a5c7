// MoeConfig's derived sizes.
#include "moefuse/config.h"

namespace moefuse {

int64_t MoeConfig::shared_expert_width() const {
  switch (model_type) {
    case ModelType::deepseek_v2:
    case ModelType::deepseek_v3: return n_shared_experts * moe_intermediate_size;
    case ModelType::qwen2_moe: return n_shared_experts > 0 ? shared_expert_intermediate_size : 0;
    default: return 0;
  }
}

bool MoeConfig::shared_expert_gated() const { return model_type == ModelType::qwen2_moe && n_shared_experts > 0; }

}  // namespace moefuse
