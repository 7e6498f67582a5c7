#include "moefuse/cpu.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "moefuse/error.h"

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define MOEFUSE_X86 1
#endif

namespace moefuse {
namespace {

#ifdef MOEFUSE_X86
uint64_t read_xcr0() {
  uint32_t eax, edx;
  // xgetbv with ecx = 0; only valid when CPUID reports OSXSAVE, which the caller checks.
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (uint64_t(edx) << 32) | eax;
}
#endif

CpuFeatures detect() {
  CpuFeatures f;
#ifdef MOEFUSE_X86
  unsigned a, b, c, d;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return f;
  const unsigned max_leaf = a;
  char vendor[13] = {};
  std::memcpy(vendor, &b, 4);
  std::memcpy(vendor + 4, &d, 4);
  std::memcpy(vendor + 8, &c, 4);
  f.vendor = vendor;

  __get_cpuid(1, &a, &b, &c, &d);
  const int base_family = int((a >> 8) & 0xf), base_model = int((a >> 4) & 0xf);
  f.stepping = int(a & 0xf);
  f.family = base_family == 0xf ? base_family + int((a >> 20) & 0xff) : base_family;
  f.model = base_family == 0x6 || base_family == 0xf ? base_model + (int((a >> 16) & 0xf) << 4) : base_model;
  const bool osxsave = c & (1u << 27);
  f.fma = c & (1u << 12);
  f.f16c = c & (1u << 29);
  const bool avx = c & (1u << 28);
  if (osxsave) {
    const uint64_t xcr0 = read_xcr0();
    f.os_avx = avx && (xcr0 & 0x6) == 0x6;                 // XMM and YMM state
    f.os_avx512 = f.os_avx && (xcr0 & 0xe0) == 0xe0;       // opmask, ZMM_Hi256, Hi16_ZMM
    f.os_amx = (xcr0 & 0x60000) == 0x60000;                // XTILECFG, XTILEDATA
  }
  if (max_leaf >= 7) {
    __get_cpuid_count(7, 0, &a, &b, &c, &d);
    f.avx2 = b & (1u << 5);
    f.avx512f = b & (1u << 16);
    f.avx512dq = b & (1u << 17);
    f.avx512bw = b & (1u << 30);
    f.avx512vl = b & (1u << 31);
    f.avx512_vbmi = c & (1u << 1);
    f.avx512_vnni = c & (1u << 11);
    f.amx_bf16 = d & (1u << 22);
    f.amx_tile = d & (1u << 24);
    f.amx_int8 = d & (1u << 25);
    __get_cpuid_count(7, 1, &a, &b, &c, &d);
    f.avx_vnni = a & (1u << 4);
    f.avx512_bf16 = a & (1u << 5);
  }
  __get_cpuid(0x80000000u, &a, &b, &c, &d);
  if (a >= 0x80000004u) {
    char brand[49] = {};
    for (unsigned i = 0; i < 3; ++i) {
      __get_cpuid(0x80000002u + i, &a, &b, &c, &d);
      std::memcpy(brand + 16 * i, &a, 4);
      std::memcpy(brand + 16 * i + 4, &b, 4);
      std::memcpy(brand + 16 * i + 8, &c, 4);
      std::memcpy(brand + 16 * i + 12, &d, 4);
    }
    std::string s = brand;
    s.erase(0, s.find_first_not_of(' '));
    s.erase(s.find_last_not_of(" \0") + 1);
    f.brand = s;
  }
#endif
  return f;
}

Isa detect_vector_isa(const CpuFeatures& f) {
  if (f.os_avx512 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx2 && f.fma && f.f16c)
    return f.avx512_bf16 ? Isa::avx512bf16 : Isa::avx512;
  if (f.os_avx && f.avx2 && f.fma && f.f16c) return Isa::avx2;
  return Isa::scalar;
}

// Linux keeps the 8 KB of tile data out of a process's state until the process asks for it (kernel 5.16 on); a
// process that executes an AMX instruction without asking is killed with SIGILL. The permission is process-wide and
// is asked before any thread touches a tile, so it also covers threads started later.
std::string request_amx(const CpuFeatures& f) {
  if (detect_vector_isa(f) < Isa::avx512bf16) return "the CPU (or the OS) lacks the avx512bf16 level below amx";
  if (!f.amx_tile || !f.amx_int8 || !f.amx_bf16) return "the CPU lacks AMX-TILE, AMX-INT8 or AMX-BF16";
  // Every AMX CPU has it; the int8 AMX kernel hands calls of few rows to the VNNI kernel (variants.h).
  if (!f.avx512_vnni) return "the CPU lacks AVX512-VNNI";
  if (!f.os_amx) return "the OS does not enable the AMX tile state (XCR0 bits 17 and 18)";
#if defined(__linux__) && defined(MOEFUSE_X86)
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0)
    return std::string("the kernel refused the AMX tile data (arch_prctl ARCH_REQ_XCOMP_PERM: ") +
           std::strerror(errno) + ")";
  return "";
#else
  return "AMX is used on Linux only (the tile data permission is asked through Linux's arch_prctl)";
#endif
}

const std::string& amx_reason() {
  static const std::string reason = request_amx(cpu_features());
  return reason;
}

Isa detect_isa(const CpuFeatures& f) {
  const Isa vector = detect_vector_isa(f);
  return vector == Isa::avx512bf16 && amx_reason().empty() ? Isa::amx : vector;
}

Isa env_cap() {
  const char* v = std::getenv("MOEFUSE_MAX_ISA");
  if (!v || !*v) return kDefaultIsaCap;
  return parse_isa(v, "MOEFUSE_MAX_ISA");
}

std::atomic<int> api_cap{int(kTopIsa)};

}  // namespace


Isa detected_isa() {
  static const Isa isa = detect_isa(cpu_features());
  return isa;
}

Isa env_isa_cap() {
  static const Isa env = env_cap();
  return env;
}

Isa active_isa() {
  const Isa env = env_isa_cap();
  return Isa(std::min({int(detected_isa()), int(env), api_cap.load(std::memory_order_relaxed)}));
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

const char* amx_unused_reason() { return amx_reason().c_str(); }

void set_max_isa(Isa cap) { api_cap.store(int(cap), std::memory_order_relaxed); }

bool use_avx512_vnni() { return active_isa() >= Isa::avx512 && cpu_features().avx512_vnni; }

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::avx512bf16: return "avx512bf16";
    case Isa::amx: return "amx";
  }
  return "?";
}

Isa parse_isa(std::string_view name, std::string_view source) {
  for (Isa i : kAllIsas)
    if (name == isa_name(i)) return i;
  throw ValueError(std::string(source) + ": expected scalar, avx2, avx512, avx512bf16 or amx, got \"" +
                   std::string(name) + "\"");
}

}  // namespace moefuse
