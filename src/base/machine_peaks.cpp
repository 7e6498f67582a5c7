// The instruction families of machine_probe.h: one row each, with the test of its presence, its loop (nullptr where
// this build has none: the family is then reported, not measured) and why it is absent where the CPU's features alone
// do not say (AMX), and the registry kernels' families.
#include <string>
#include <vector>

#include "base/machine_probe.h"
#include "moefuse/cpu.h"

namespace moefuse::probe {
namespace {

bool has_fma_ymm() { return cpu_features().os_avx && cpu_features().avx2 && cpu_features().fma; }
bool has_avx2() { return cpu_features().os_avx && cpu_features().avx2; }
bool has_avx512f() { return cpu_features().os_avx512 && cpu_features().avx512f; }
bool has_avx512bw() { return cpu_features().os_avx512 && cpu_features().avx512bw; }
bool has_avx512_vnni() { return cpu_features().os_avx512 && cpu_features().avx512_vnni; }
bool has_avx_vnni() { return cpu_features().os_avx && cpu_features().avx_vnni; }
bool has_avx512_bf16() { return cpu_features().os_avx512 && cpu_features().avx512_bf16; }
// AMX counts as present at level amx only: a tile instruction without the tile data permission (asked on the way to
// that level) kills the process, and under a cap below amx no kernel runs on the tiles: nothing for a peak to bound.
bool amx_active() { return active_isa() >= Isa::amx; }
const char* amx_absent_reason() {
  if (*amx_unused_reason()) return amx_unused_reason();
  return amx_active() ? "" : "the kernel level is capped below amx (MOEFUSE_MAX_ISA or set_max_isa)";
}

}  // namespace

const std::vector<PeakFamily>& peak_families() {
  static const std::vector<PeakFamily> families{
      {"fma_ymm", "vfmadd231ps ymm", "GFLOP/s", has_fma_ymm, &kFmaYmm},
      {"fma_zmm", "vfmadd231ps zmm", "GFLOP/s", has_avx512f, &kFmaZmm},
      {"maddwd_ymm", "vpmaddwd + vpaddd ymm", "GOP/s", has_avx2, &kMaddwdYmm},
      {"maddwd_zmm", "vpmaddwd + vpaddd zmm", "GOP/s", has_avx512bw, &kMaddwdZmm},
      {"dpbusd_zmm", "vpdpbusd zmm (AVX-512 VNNI)", "GOP/s", has_avx512_vnni, &kDpbusdZmm},
      {"dpbusd_ymm", "vpdpbusd ymm (AVX-VNNI)", "GOP/s", has_avx_vnni, &kDpbusdYmm},
      {"dpbf16_zmm", "vdpbf16ps zmm (AVX-512 BF16)", "GFLOP/s", has_avx512_bf16, &kDpbf16Zmm},
      {"amx_bf16", "tdpbf16ps (AMX-BF16)", "GFLOP/s", amx_active, &kTdpbf16ps, amx_absent_reason},
      {"amx_int8", "tdpbssd (AMX-INT8)", "GOP/s", amx_active, &kTdpbssd, amx_absent_reason},
  };
  return families;
}

const PeakFamily* family_of_kernel(const std::string& kernel) {
  // The registry names a variant gemm_<weights>_<acc>_<tile>__<isa>: the weights say float or int8, the suffix
  // the registers and instructions.
  const size_t sep = kernel.rfind("__");
  if (sep == std::string::npos) return nullptr;
  const std::string isa = kernel.substr(sep + 2);
  // int8 rows: gemm_s8_* and the int4 x int8 (W4A8) gemm_u4g<G>w_s8_*.
  const bool int8 = kernel.rfind("gemm_s8_", 0) == 0 || kernel.find("w_s8_") != std::string::npos;
  const char* id = nullptr;
  if (isa == "avx2") id = int8 ? "maddwd_ymm" : "fma_ymm";
  else if (isa == "avx512") id = int8 ? "maddwd_zmm" : "fma_zmm";
  else if (isa == "avx512vnni" && int8) id = "dpbusd_zmm";
  else if (isa == "avx512bf16" && !int8) id = "dpbf16_zmm";
  else if (isa == "amx") id = int8 ? "amx_int8" : "amx_bf16";
  if (!id) return nullptr;
  for (const PeakFamily& f : peak_families())
    if (std::string(f.id) == id) return &f;
  return nullptr;
}

const PeakLoop* fp32_peak_loop() {
  const Isa isa = active_isa();
  if (isa >= Isa::avx512) return &kFmaZmm;
  if (isa == Isa::avx2) return &kFmaYmm;
  return nullptr;
}

const PeakLoop* int8_peak_loop() { return use_avx512_vnni() ? &kDpbusdZmm : nullptr; }

}  // namespace moefuse::probe
