// moefuse/machine.h — this machine's own limits, measured, and what identifies it: the read bandwidth (several
// loops, stream counts and thread placements, best of several passes), a compute peak for every instruction family
// the CPU has (fp32 FMA, vpmaddwd, VNNI, vdpbf16ps, AMX), the CPU's name, signature and ISA set, its LLC and memory.
// What `moefuse bench` and bench/gemm_bench report each row as a share of.
//
// The peak loops are independent accumulator chains in registers only, written in asm so that nothing can be removed
// or reordered; their rates are per thread of CPU time (the machine may be shared) summed over the threads. The read
// loops sum a buffer with the widest loads the ISA in use has. Everything here measures; nothing is guessed: a family
// the CPU has but this build has no loop for is reported as such, and one absent is reported with why where the
// CPU's features alone do not say (AMX: the OS, the process's permission, the cap on the kernel level).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace moefuse::probe {

/// A register-only loop of one instruction (the library's own; see family rows below).
struct PeakLoop;

/// One instruction family of the CPU: a row of peak_families().
struct PeakFamily {
  const char* id;           // "fma_ymm", "maddwd_ymm", "dpbusd_zmm", "amx_bf16", ...
  const char* instruction;  // what it runs, e.g. "vfmadd231ps ymm"
  const char* unit;         // "GFLOP/s" (float) or "GOP/s" (integer)
  bool (*present)();        // the CPU has it and the OS enables its registers (AMX: level amx is active, see below)
  const PeakLoop* loop;     // nullptr: this build has no loop for it (reported, not measured)
  /// Why present() is false ("" when it is true) for the families whose presence is more than the CPU's features:
  /// amx_bf16 and amx_int8 are present when active_isa() >= Isa::amx (moefuse/cpu.h), else absent with
  /// amx_unused_reason() or, when that is "", the cap on the kernel level. nullptr for the other families.
  const char* (*unused_reason)() = nullptr;
};

/// Every family moefuse knows of, whether or not this CPU has it: fp32 FMA (ymm, zmm), int16 vpmaddwd (ymm, zmm),
/// int8 VNNI (AVX-512 zmm, AVX-VNNI ymm), bf16 vdpbf16ps (zmm), AMX-BF16 (tdpbf16ps), AMX-INT8 (tdpbssd).
const std::vector<PeakFamily>& peak_families();

/// The family a GEMM kernel of the registry computes with, by its variant name ("gemm_bf16w_f32_6x16__avx2" ->
/// fma_ymm, "gemm_s8_s32_2x16__avx2" -> maddwd_ymm, "..._6x64__avx512vnni" -> dpbusd_zmm; "..__amx": amx_int8 for
/// int8 rows, gemm_s8_* and *w_s8_*, amx_bf16 for the others); nullptr for the scalar kernels and for a name it does
/// not know.
const PeakFamily* family_of_kernel(const std::string& kernel);

/// A buffer for streaming reads: 2 MiB aligned, transparent huge pages requested (the layout of packed weights), its
/// bytes written once so that every page is mapped. `bytes` is rounded up to a multiple of 128. Throws
/// std::bad_alloc when the memory cannot be had.
class ReadBuffer {
 public:
  /// `threads` threads write their own slices (the slices they later read: first touch places the pages).
  ReadBuffer(size_t bytes, int threads);
  const uint8_t* data() const { return data_.get(); }
  size_t size() const { return size_; }

 private:
  struct Free {
    void operator()(uint8_t* p) const;
  };
  std::unique_ptr<uint8_t, Free> data_;
  size_t size_ = 0;
};

/// One read-bandwidth configuration measured.
struct ReadProbe {
  std::string placement;  // "os" (unpinned, as the layer's threads run), "compact" or "spread"
  std::vector<int> cpus;  // the CPUs pinned to ([] for "os")
  const char* loop = "";  // the read loop: "zmm", "ymm" (64- and 32-byte loads) or "scalar"
  int streams = 1;
  double bytes_per_s = 0;
};

/// Every configuration `moefuse bench` reads with: the widest loop at 1, 2, 4 and 8 streams per thread, for each
/// pinned placement of `threads` threads (compact; spread when it picks other CPUs) and unpinned, best of `passes`
/// passes each; plus the plain probe.
struct ReadBandwidth {
  std::vector<ReadProbe> probes;
  double best = 0;   // the largest bytes_per_s of `probes`
  double plain = 0;  // 8-byte scalar loads, one stream, unpinned: an independent check (best must not fall below it)
};
ReadBandwidth measure_read(const ReadBuffer& buf, int threads, int passes);

/// Read bandwidth in bytes per second of wall time of `threads` threads (unpinned) each summing its slice of `buf`
/// with the widest read loop over 4 streams: the best of `passes` passes (one pass: a read of these seconds only).
/// 0 when no pass read every byte.
double measure_read_bandwidth(const ReadBuffer& buf, int threads, int passes);

/// Bytes of the last-level (level 3) cache: /sys/devices/system/cpu/cpu0/cache/index*/ with level 3, else the
/// largest level found there, else 32 MiB.
int64_t llc_bytes();

/// The CPU's name: "model name" of /proc/cpuinfo, else the CPUID brand string, else "unknown".
std::string cpu_model();

/// CPUID leaf 1's display family, model and stepping (extended fields folded in as the vendors define them);
/// all 0 off x86.
struct CpuSignature {
  int family = 0, model = 0, stepping = 0;
};
CpuSignature cpu_signature();

/// The instruction-set features the CPU and OS both enable, by cpu_features()'s names ("avx2", "fma", "f16c",
/// "avx512f", ..., "amx_int8"), in that order.
std::vector<std::string> isa_set();

/// MemTotal of /proc/meminfo in bytes (0 when unreadable).
int64_t total_memory_bytes();

/// A peak measured for one family of peak_families().
struct FamilyPeak {
  const PeakFamily* family = nullptr;
  double ops_per_s = 0;  // 0 when the family is absent or has no loop
};

/// One round of probes: every read configuration and every present family's peak.
struct ProbeRound {
  ReadBandwidth read;
  std::vector<FamilyPeak> peaks;  // one per peak_families() row, in its order
  /// The peak measured for `family` (nullptr or not measured: 0).
  double peak(const PeakFamily* family) const;
};

/// Runs one round with `threads` threads (>= 1) over `buf`.
ProbeRound probe_round(const ReadBuffer& buf, int threads);

/// One CPU this process may run on.
struct CpuSlot {
  int cpu = 0;   // the OS's CPU number
  int core = 0;  // the physical core (package and core id): SMT siblings share it
  int llc = 0;   // the last-level-cache domain (the lowest CPU number sharing that cache)
};

/// The CPUs of this process's affinity mask, in CPU order; a CPU whose sysfs entries are unreadable is its own core
/// and shares LLC domain 0.
std::vector<CpuSlot> allowed_cpus();

}  // namespace moefuse::probe
