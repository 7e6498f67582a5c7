// `moefuse info`: version, what this CPU supports, the kernel levels and which one moefuse uses, and the presets
// (with --weights DIR: the model folder instead, cmd_info_model.cpp).
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "commands.h"
#include "common.h"
#include "info_model.h"
#include "moefuse/cpu.h"
#include "moefuse/numerics.h"

namespace moefuse::cli {
namespace {



Json preset_json(const std::string& name) {
  const MoeConfig c = load_preset(name);
  return Json{{"name", name},
              {"model_type", model_type_name(c.model_type)},
              {"num_experts", c.num_experts},
              {"num_experts_per_tok", c.num_experts_per_tok},
              {"hidden_size", c.hidden_size},
              {"moe_intermediate_size", c.moe_intermediate_size},
              {"shared_expert_width", c.shared_expert_width()},
              {"dtype", dtype_name(c.dtype)},
              {"weight_bytes", layer_weight_bytes(c)},
              {"default", c == MoeConfig{}}};
}

int info(bool json) {
  const Isa in_use = active_isa();  // validates MOEFUSE_MAX_ISA before anything is printed
  const PrefetchSettings prefetch = prefetch_settings();  // and MOEFUSE_PREFETCH
  const Numerics numerics = default_numerics();           // and MOEFUSE_NUMERICS
  const char* numerics_env = std::getenv("MOEFUSE_NUMERICS");
  const std::string numerics_from = numerics_env && *numerics_env ? "MOEFUSE_NUMERICS" : "default";
  // Only the amx level has kernels of its own in the native tier, AMX-BF16, with MOEFUSE_AMX_BF16=on
  // (moefuse/numerics.h).
  const bool amx_bf16 = native_amx_bf16();  // read on every CPU: a bad MOEFUSE_AMX_BF16 is an error everywhere
  const bool native_differs = in_use >= Isa::amx && amx_bf16;
  const PrefetchSettings family_entry = family_prefetch(cpu_family());
  const CpuFeatures& f = cpu_features();
  Json levels = Json::array();
  for (Isa l : kAllIsas)
    levels.push_back(Json{{"name", isa_name(l)}, {"available", l <= detected_isa()}, {"in_use", l == in_use}});
  Json presets = Json::array();
  for (const std::string& name : preset_names()) presets.push_back(preset_json(name));
  // Whether bf16 weights run on vdpbf16ps, and why not when they do not.
  const std::string bf16_not_dot = bf16_dot_unused_reason(in_use);

  if (json) {
    Json j{{"command", "info"},
           {"version", MOEFUSE_VERSION},
           {"cpu", Json{{"brand", f.brand},
                        {"vendor", f.vendor},
                        {"avx2", f.avx2},
                        {"fma", f.fma},
                        {"f16c", f.f16c},
                        {"avx512f", f.avx512f},
                        {"avx512bw", f.avx512bw},
                        {"avx512vl", f.avx512vl},
                        {"avx512dq", f.avx512dq},
                        {"avx512_vnni", f.avx512_vnni},
                        {"avx512_bf16", f.avx512_bf16},
                        {"avx_vnni", f.avx_vnni},
                        {"amx_tile", f.amx_tile},
                        {"amx_int8", f.amx_int8},
                        {"amx_bf16", f.amx_bf16},
                        {"os_avx", f.os_avx},
                        {"os_avx512", f.os_avx512},
                        {"os_amx", f.os_amx},
                        {"family", f.family},
                        {"model", f.model},
                        {"stepping", f.stepping},
                        {"family_class", cpu_family_name(cpu_family())}}},
           {"prefetch", Json{{"in_use", prefetch_text(prefetch)}, {"family_entry", prefetch_text(family_entry)}}},
           {"isa_detected", isa_name(detected_isa())},
           {"isa_in_use", isa_name(in_use)},
           {"kernel_levels", levels},
           {"bf16_dot", Json{{"in_use", bf16_not_dot.empty()}, {"unused_reason", bf16_not_dot}}},
           {"amx", Json{{"available", *amx_unused_reason() == 0}, {"unused_reason", amx_unused_reason()}}},
           {"numerics", Json{{"default", numerics_name(numerics)},
                             {"source", numerics_from},
                             {"native_differs_from_portable", native_differs}}},
           {"presets", presets}};
    print_json(j);
    return 0;
  }

  auto yn = [](bool b) { return b ? "yes" : "no"; };
  std::printf("moefuse %s\n", MOEFUSE_VERSION);
  std::printf("cpu:           %s (%s)\n", f.brand.empty() ? "unknown" : f.brand.c_str(),
              f.vendor.empty() ? "not x86" : f.vendor.c_str());
  std::printf("cpu family:    %s (CPUID family %d, model %d, stepping %d)\n",
              std::string(cpu_family_name(cpu_family())).c_str(), f.family, f.model, f.stepping);
  std::printf("prefetch:      %s (%s; override with MOEFUSE_PREFETCH=key=value,...)\n",
              prefetch_text(prefetch).c_str(),
              prefetch == family_entry ? "the family's entry"
                                       : ("family entry " + prefetch_text(family_entry)).c_str());
  std::printf("avx2+fma+f16c: %s\n", yn(f.avx2 && f.fma && f.f16c && f.os_avx));
  std::printf("avx512 f/bw/vl/dq: %s/%s/%s/%s (os support: %s)\n", yn(f.avx512f), yn(f.avx512bw), yn(f.avx512vl),
              yn(f.avx512dq), yn(f.os_avx512));
  std::printf("avx512 vnni:   %s   avx512 bf16: %s   avx-vnni: %s\n", yn(f.avx512_vnni), yn(f.avx512_bf16),
              yn(f.avx_vnni));
  std::printf("amx tile/int8/bf16: %s/%s/%s (os support: %s)\n", yn(f.amx_tile), yn(f.amx_int8), yn(f.amx_bf16),
              yn(f.os_amx));
  std::printf("amx level:     %s\n", *amx_unused_reason() ? amx_unused_reason()
                                      : in_use >= Isa::amx ? "available, in use"
                                                           : "available, not in use (MOEFUSE_MAX_ISA caps below it)");
  std::printf("isa detected:  %s\n", std::string(isa_name(detected_isa())).c_str());
  std::printf("isa in use:    %s (cap with MOEFUSE_MAX_ISA=scalar|avx2|avx512|avx512bf16|amx)\n",
              std::string(isa_name(in_use)).c_str());
  std::printf("kernel levels:");
  for (const Json& l : levels)
    std::printf(" %s (%s%s)", l["name"].get<std::string>().c_str(),
                l["available"].get<bool>() ? "available" : "not available", l["in_use"].get<bool>() ? ", in use" : "");
  std::printf("\n");
  std::printf("bf16 weights:  %s\n",
              bf16_not_dot.empty() ? "vdpbf16ps (AVX512-BF16)" : ("fp32 FMA kernels: " + bf16_not_dot).c_str());
  std::printf("numerics:      %s (%s; set MOEFUSE_NUMERICS=native|portable); native %s\n",
              std::string(numerics_name(numerics)).c_str(),
              numerics_from == "default" ? "the default, MOEFUSE_NUMERICS unset" : "from MOEFUSE_NUMERICS",
              native_differs       ? "runs bf16 weights on AMX-BF16 here (amx level in use, MOEFUSE_AMX_BF16=on)"
              : in_use >= Isa::amx ? "runs the portable kernels here (AMX-BF16 for bf16 weights: MOEFUSE_AMX_BF16=on)"
                                   : "runs the portable kernels here (amx level not in use)");
  std::printf("presets:\n");
  std::printf("  %-20s %-12s %5s %3s %6s %6s %7s %5s %10s\n", "name", "model_type", "E", "K", "H", "I", "shared",
              "dtype", "weights");
  for (const Json& p : presets)
    std::printf("  %-20s %-12s %5lld %3lld %6lld %6lld %7lld %5s %7.2f GiB%s\n", p["name"].get<std::string>().c_str(),
                p["model_type"].get<std::string>().c_str(), p["num_experts"].get<long long>(),
                p["num_experts_per_tok"].get<long long>(), p["hidden_size"].get<long long>(),
                p["moe_intermediate_size"].get<long long>(), p["shared_expert_width"].get<long long>(),
                p["dtype"].get<std::string>().c_str(), double(p["weight_bytes"].get<long long>()) / double(1 << 30),
                p["default"].get<bool>() ? "  (default)" : "");
  return 0;
}

}  // namespace

void add_info_command(CLI::App& app, int& status) {
  CLI::App* cmd =
      app.add_subcommand("info", "Show the version, CPU features, kernel levels (and the one in use) and the presets");
  auto json = std::make_shared<bool>(false);
  auto weights = std::make_shared<std::string>();
  cmd->add_flag("--json", *json, "Print one JSON object instead of text");
  cmd->add_option("--weights", *weights,
                  "A model folder (config.json and its checkpoint): show its model, MoE layers, the layer config read "
                  "and the bytes per layer instead");
  cmd->callback([json, weights, &status] { status = weights->empty() ? info(*json) : model_info(*weights, *json); });
}

}  // namespace moefuse::cli
