// `moefuse info`: version, what this CPU supports and which kernel level moefuse uses.
#include <cstdio>

#include "commands.h"
#include "moefuse/cpu.h"

namespace moefuse::cli {

void add_info_command(CLI::App& app, int& status) {
  CLI::App* cmd = app.add_subcommand("info", "Show the version, CPU features and the kernel level in use");
  cmd->callback([&status] {
    const Isa in_use = active_isa();  // validates MOEFUSE_MAX_ISA before anything is printed
    const CpuFeatures& f = cpu_features();
    auto yn = [](bool b) { return b ? "yes" : "no"; };
    std::printf("moefuse %s\n", MOEFUSE_VERSION);
    std::printf("cpu:           %s (%s)\n", f.brand.empty() ? "unknown" : f.brand.c_str(),
                f.vendor.empty() ? "not x86" : f.vendor.c_str());
    std::printf("avx2+fma+f16c: %s\n", yn(f.avx2 && f.fma && f.f16c && f.os_avx));
    std::printf("avx512 f/bw/vl/dq: %s/%s/%s/%s (os support: %s)\n", yn(f.avx512f), yn(f.avx512bw), yn(f.avx512vl),
                yn(f.avx512dq), yn(f.os_avx512));
    std::printf("avx512 vnni:   %s   avx512 bf16: %s   avx-vnni: %s\n", yn(f.avx512_vnni), yn(f.avx512_bf16),
                yn(f.avx_vnni));
    std::printf("amx tile/int8/bf16: %s/%s/%s (os support: %s)\n", yn(f.amx_tile), yn(f.amx_int8), yn(f.amx_bf16),
                yn(f.os_amx));
    std::printf("isa detected:  %s\n", std::string(isa_name(detected_isa())).c_str());
    std::printf("isa in use:    %s (cap with MOEFUSE_MAX_ISA=scalar|avx2|avx512)\n",
                std::string(isa_name(in_use)).c_str());
    status = 0;
  });
}

}  // namespace moefuse::cli
