// moefuse/cpu.h — what this CPU can run, and the cap on what moefuse will use.
//
// Features are read once from CPUID, with the operating system's support for the wider registers checked through
// XGETBV (a CPU may report AVX-512 while the OS does not save its state). The ISA moefuse dispatches to is the best
// level the CPU and OS support, capped by the environment variable MOEFUSE_MAX_ISA (scalar | avx2 | avx512 |
// avx512bf16 | amx) read at first use, and by set_max_isa(). Tests use the cap to run every variant the machine
// supports.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace moefuse {

/// Kernel levels, in increasing order. Each level implies the ones below it.
///   scalar: portable C++ (any CPU)
///   avx2:   AVX2 + FMA + F16C
///   avx512: AVX-512 F, BW, VL, DQ (int8 kernels also use AVX-512 VNNI where the CPU has it: use_avx512_vnni)
///   avx512bf16: avx512 + AVX512-BF16: bf16 weights run on vdpbf16ps (when its self-test passes:
///               bf16_dot_unused_reason). MOEFUSE_MAX_ISA=avx512 keeps them on the fp32 FMA kernel.
///   amx:    avx512bf16 + AMX tiles (AMX-TILE, AMX-INT8, AMX-BF16) that the OS enables and lets this process use
///           (amx_unused_reason). int8 GEMMs run on AMX-INT8 (exact: the same bits as every other level); bf16
///           weights run on AMX-BF16 in the native numerics tier only (moefuse/numerics.h).
enum class Isa : int { scalar = 0, avx2 = 1, avx512 = 2, avx512bf16 = 3, amx = 4 };

/// The highest level.
inline constexpr Isa kTopIsa = Isa::amx;

/// The cap when MOEFUSE_MAX_ISA is unset: the highest level, so every level the CPU has is used. (The amx level was
/// opt-in until its kernels had passed the test suite on AMX hardware: scripts/amx-check.sh on a Sapphire
/// Rapids-class Xeon, docs/kernels.md "AMX".)
inline constexpr Isa kDefaultIsaCap = kTopIsa;

/// Every level, lowest first.
inline constexpr Isa kAllIsas[] = {Isa::scalar, Isa::avx2, Isa::avx512, Isa::avx512bf16, Isa::amx};

struct CpuFeatures {
  std::string vendor;  // "GenuineIntel", "AuthenticAMD", ... ("" off x86)
  std::string brand;   // "Intel(R) Xeon(R) ..." ("" when not reported)
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512_vnni = false, avx512_bf16 = false, avx_vnni = false;
  bool avx512_vbmi = false;  // vpermb (AVX512-VBMI: CPUID leaf 7 ECX bit 1)
  bool amx_tile = false, amx_int8 = false, amx_bf16 = false;
  bool os_avx = false, os_avx512 = false, os_amx = false;  // register state enabled by the OS (XCR0)
  int family = 0, model = 0, stepping = 0;  // CPUID leaf 1's display family and model (extended fields folded in)
};

/// Features of this CPU (detected once, thread-safe).
const CpuFeatures& cpu_features();

/// Best level the CPU and OS support, ignoring any cap.
Isa detected_isa();

/// Level moefuse dispatches to: min(detected_isa(), MOEFUSE_MAX_ISA (kDefaultIsaCap when unset), set_max_isa()).
Isa active_isa();

/// The cap MOEFUSE_MAX_ISA sets (read once, at first use): kDefaultIsaCap when it is unset.
Isa env_isa_cap();

/// Caps the level for kernels chosen from now on (plans and layers made later). Raising the cap above
/// detected_isa() has no effect beyond it. Not a way to make code faster: a way to test fallbacks.
void set_max_isa(Isa cap);

/// Whether int8 kernels may use AVX-512 VNNI (vpdpbusd): active_isa() is avx512 or above and the CPU has it.
bool use_avx512_vnni();

/// Why the AVX512-BF16 (vdpbf16ps) GEMM kernels cannot run at level `isa`, or "" when they can: the CPU (or OS) lacks
/// AVX512-BF16, `isa` is below avx512bf16, or vdpbf16ps failed the self-test that runs once per process before first
/// use (its results compared bit for bit with the bf16 dot-product contract on crafted and pseudo-random lanes; the
/// reason then names the first lane that differs). Never nullptr; thread-safe.
const char* bf16_dot_unusable_reason(Isa isa);

/// Why bf16, FP8 and W4A16 weights do not run on the vdpbf16ps kernels at level `isa` in the layer and the
/// operators, or "" when they do: bf16_dot_unusable_reason, or this process prefers the fp32 FMA kernels
/// (prefer_bf16_dot; the same bits). Never nullptr; thread-safe.
const char* bf16_dot_unused_reason(Isa isa);

/// Why the amx level is not available, or "" when it is: the CPU lacks AMX-TILE, AMX-INT8 or AMX-BF16 (or the
/// avx512bf16 level), the OS does not enable the tile state (XCR0 bits 17 and 18), or the kernel refused this process
/// the tile data (Linux: arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA), asked once per process, at the first
/// call of this function or of detected_isa(); the reason then names the error). Never nullptr; thread-safe.
const char* amx_unused_reason();

/// "scalar", "avx2", "avx512", "avx512bf16", "amx".
std::string_view isa_name(Isa isa);

/// Parses an ISA name (as isa_name prints it); throws ValueError naming `source` for anything else.
Isa parse_isa(std::string_view name, std::string_view source);

// ─── Tuning per CPU family ─────────────────────────────────────────────────────────────────────────────────
// Speed only: no setting here changes a result bit. The weight-streaming GEMM kernels (bf16, int8, FP8 and int4
// weights) can prefetch their packed panels `distance` bytes ahead of the line they read, into L1 (t0) or as
// non-temporal (nta: read-once weights kept out of the outer caches). Each CPU family has an entry (cpu_tuning.cpp:
// which were measured, where, with what figures; an unmeasured family gets the generic entry); the environment
// variable MOEFUSE_PREFETCH, read at first use, overrides it key by key, and set_prefetch_settings() replaces it.
// Kernels read the settings once per call (the FP8 kernels once per tile). docs/performance.md, "Software prefetch
// per CPU family", has the table and how to sweep a new CPU.

/// CPU families with an entry of their own (CPUID vendor, family and model).
enum class CpuFamily : int {
  generic = 0,            // anything else (and non-x86)
  intel_skylake_sp,       // family 6 model 0x55: Skylake-SP, Cascade Lake, Cooper Lake
  intel_icelake_sp,       // 0x6a, 0x6c
  intel_sapphire_rapids,  // 0x8f, and Emerald Rapids 0xcf
  intel_granite_rapids,   // 0xad, 0xae
  amd_zen2,               // family 0x17 models 0x30-0x4f, 0x60-0x7f, 0x90-0x91, 0xa0-0xaf
  amd_zen3,               // 0x19 models 0x00-0x0f, 0x20-0x5f
  amd_zen4,               // 0x19 models 0x10-0x1f, 0x60-0xaf
  amd_zen5,               // 0x1a models 0x00-0x2f, 0x40-0x4f, 0x60-0x7f
};

/// The family of a CPU with this CPUID vendor string and display family and model (pure: for tests and tools).
CpuFamily classify_cpu(std::string_view vendor, int family, int model);

/// This CPU's family (classify_cpu of cpu_features(); computed once).
CpuFamily cpu_family();

/// "generic", "intel-skylake-sp", "intel-icelake-sp", "intel-sapphire-rapids", "intel-granite-rapids", "amd-zen2",
/// "amd-zen3", "amd-zen4", "amd-zen5".
std::string_view cpu_family_name(CpuFamily family);

enum class PrefetchHint : int { t0 = 0, nta = 1 };

/// Software prefetch distance in bytes for each weight stream (0: off; at most 1 MiB), the hint they all use, and for
/// each stream the rows from which a kernel call prefetches: a call over M rows of activations (the rows its tile
/// loop runs over; in a layer, the tokens routed to one expert) prefetches when M >= that stream's `*_rows` (0 or 1:
/// from the first row; at most 1 MiB too). Why: with more rows a kernel spends longer per weight line, so the lines
/// a prefetch brings in early pay off, where a one-row call is already bound by the hardware prefetchers' stream.
struct PrefetchSettings {
  int32_t bf16 = 0, int8 = 0, fp8 = 0, int4 = 0;
  PrefetchHint hint = PrefetchHint::t0;
  int32_t bf16_rows = 0, int8_rows = 0, fp8_rows = 0, int4_rows = 0;
  bool operator==(const PrefetchSettings&) const = default;
};

/// The table's entry for `family`.
PrefetchSettings family_prefetch(CpuFamily family);

/// The settings in effect: set_prefetch_settings()'s if called, else family_prefetch(cpu_family()) with
/// MOEFUSE_PREFETCH's keys over it (read once, at first use; a bad value throws ValueError, see parse_prefetch).
PrefetchSettings prefetch_settings();

/// Replaces the settings for kernel calls from now on (a call already running keeps what it read). Throws
/// ValueError for a distance or a row threshold outside 0 .. 1 MiB (1048576) or an unknown hint. Thread-safe.
void set_prefetch_settings(const PrefetchSettings& settings);

/// Back to the family's entry with MOEFUSE_PREFETCH over it.
void reset_prefetch_settings();

/// `base` with the keys of `spec` over it: comma-separated key=value, keys bf16, int8, fp8, int4 (a distance in
/// bytes, 0 = off, a K suffix multiplies by 1024: "4K" = 4096; then optionally @R: prefetch only in calls over at
/// least R rows, "8K@4"; without @R from the first row: a key sets its stream's distance and rows both), all (the
/// four streams at once) and hint (t0 or nta); e.g. "int4=4096,fp8=4K,bf16=4K@4,hint=nta". Throws ValueError naming
/// `source`, the key, what was expected and what it got.
PrefetchSettings parse_prefetch(std::string_view spec, const PrefetchSettings& base, std::string_view source);

/// "bf16=0,int8=8192@4,fp8=4096,int4=4096,hint=t0" (@R where a stream's rows are not 0; parse_prefetch reads it back).
std::string prefetch_text(const PrefetchSettings& settings);

/// Whether the family's entry runs bf16, FP8 and W4A16 weights on vdpbf16ps where it is usable (true) or on the fp32
/// FMA kernels (false; the same bits: the bf16 contract is vdpbf16ps's arithmetic, which the FMA kernels compute).
/// False for intel_sapphire_rapids, where vdpbf16ps retires at half the FMA rate (cpu_tuning.cpp has the figures).
bool family_prefers_bf16_dot(CpuFamily family);

/// This process's choice: MOEFUSE_BF16_DOT=on|off (read once, at first use; unset: family_prefers_bf16_dot of this
/// CPU). Throws ValueError naming the variable for any other value. Speed only; bf16_dot_unused_reason reports it.
bool prefer_bf16_dot();

}  // namespace moefuse
