// moefuse/cpu.h — what this CPU can run, and the cap on what moefuse will use.
//
// Features are read once from CPUID, with the operating system's support for the wider registers checked through
// XGETBV (a CPU may report AVX-512 while the OS does not save its state). The ISA moefuse dispatches to is the best
// level the CPU and OS support, capped by the environment variable MOEFUSE_MAX_ISA (scalar | avx2 | avx512 |
// avx512bf16) read at first use, and by set_max_isa(). Tests use the cap to run every variant the machine supports.
#pragma once

#include <string>
#include <string_view>

namespace moefuse {

/// Kernel levels, in increasing order. Each level implies the ones below it.
///   scalar: portable C++ (any CPU)
///   avx2:   AVX2 + FMA + F16C
///   avx512: AVX-512 F, BW, VL, DQ (int8 kernels also use AVX-512 VNNI where the CPU has it: use_avx512_vnni)
///   avx512bf16: avx512 + AVX512-BF16: bf16 weights run on vdpbf16ps (when its self-test passes:
///               bf16_dot_unused_reason). MOEFUSE_MAX_ISA=avx512 keeps them on the fp32 FMA kernel.
enum class Isa : int { scalar = 0, avx2 = 1, avx512 = 2, avx512bf16 = 3 };

/// The highest level (the default cap).
inline constexpr Isa kTopIsa = Isa::avx512bf16;

struct CpuFeatures {
  std::string vendor;  // "GenuineIntel", "AuthenticAMD", ... ("" off x86)
  std::string brand;   // "Intel(R) Xeon(R) ..." ("" when not reported)
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512_vnni = false, avx512_bf16 = false, avx_vnni = false;
  bool amx_tile = false, amx_int8 = false, amx_bf16 = false;
  bool os_avx = false, os_avx512 = false, os_amx = false;  // register state enabled by the OS (XCR0)
};

/// Features of this CPU (detected once, thread-safe).
const CpuFeatures& cpu_features();

/// Best level the CPU and OS support, ignoring any cap.
Isa detected_isa();

/// Level moefuse dispatches to: min(detected_isa(), MOEFUSE_MAX_ISA, set_max_isa()).
Isa active_isa();

/// Caps the level for kernels chosen from now on (plans and layers made later). Raising the cap above
/// detected_isa() has no effect beyond it. Not a way to make code faster: a way to test fallbacks.
void set_max_isa(Isa cap);

/// Whether int8 kernels may use AVX-512 VNNI (vpdpbusd): active_isa() is avx512 or above and the CPU has it.
bool use_avx512_vnni();

/// Why bf16 weights do not run on the AVX512-BF16 (vdpbf16ps) GEMM kernel at level `isa`, or "" when they do: the
/// CPU (or OS) lacks AVX512-BF16, `isa` is below avx512bf16, or vdpbf16ps failed the self-test that runs once per
/// process before first use (its results compared bit for bit with the bf16 dot-product contract on crafted and
/// pseudo-random lanes; the reason then names the first lane that differs). Never nullptr; thread-safe.
const char* bf16_dot_unused_reason(Isa isa);

/// "scalar", "avx2", "avx512", "avx512bf16".
std::string_view isa_name(Isa isa);

/// Parses an ISA name (as isa_name prints it); throws ValueError naming `source` for anything else.
Isa parse_isa(std::string_view name, std::string_view source);

}  // namespace moefuse
