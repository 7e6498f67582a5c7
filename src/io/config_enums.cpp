#include "io/config_enums.h"

namespace moefuse {

using config_detail::enum_name;

std::string_view exe_mode_name(ExeMode m) { return enum_name(m); }
std::string_view model_type_name(ModelType t) { return enum_name(t); }
std::string_view scoring_func_name(ScoringFunc f) { return enum_name(f); }
std::string_view quant_mode_name(QuantMode q) { return enum_name(q); }
std::string_view router_logits_dtype_name(RouterLogitsDtype d) { return enum_name(d); }
std::string_view fp8_activations_name(Fp8Activations a) { return enum_name(a); }

}  // namespace moefuse
