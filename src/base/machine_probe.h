// This machine's own limits, measured: read bandwidth and a compute peak for every instruction family the CPU has,
// for any number of threads, plus what identifies the machine (CPU name and signature, ISA set, LLC, memory). What
// `moefuse bench` compares the layer against and what bench/gemm_bench.cpp reports kernels as a share of.
//
// The peak loops are independent accumulator chains in registers only (12 of them: enough to cover a 4-cycle latency
// at 2 instructions per cycle), written in asm so that the compiler cannot remove or reorder anything; their inputs
// are zero, so no denormal slow paths. Each loop lives in the source file of its register width
// (machine_probe__avx2.cpp: ymm, machine_probe__avx512.cpp: zmm). An instruction family is one row of
// peak_families(); a family the CPU has but this build has no loop for is reported as such, never guessed.
//
// The read loops sum a buffer with the widest loads the ISA in use has (64-byte zmm, 32-byte ymm, 8-byte scalar),
// reading 1 to 8 streams side by side per thread (machine_probe_stream.h): one stream alone does not keep enough
// misses in flight on every CPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace moefuse::probe {

/// A register-only loop of one instruction: `ops_per_iter` operations per iteration (a multiply-add counts 2).
struct PeakLoop {
  const char* name;  // the instruction and register width, e.g. "vfmadd231ps_zmm"
  void (*run)(int64_t iters);
  double ops_per_iter;
};

/// 12 x vfmadd231ps on zmm per iteration (needs AVX-512 F).
extern const PeakLoop kFmaZmm;
/// 12 x vfmadd231ps on ymm per iteration (needs AVX2 + FMA).
extern const PeakLoop kFmaYmm;
/// 12 x vpdpbusd on zmm per iteration (needs AVX-512 VNNI; defined in machine_probe__avx512.cpp, asm).
extern const PeakLoop kDpbusdZmm;
/// 12 x (vpmaddwd + vpaddd) on ymm per iteration (needs AVX2): the int16 multiply-add and the accumulation of the
/// AVX2 int8 kernel (16 multiply-adds = 32 operations per pair).
extern const PeakLoop kMaddwdYmm;

/// The fp32 loop of the kernels in use: zmm when active_isa() is avx512, ymm for avx2, nullptr for scalar.
const PeakLoop* fp32_peak_loop();
/// vpdpbusd on zmm when use_avx512_vnni(), else nullptr.
const PeakLoop* int8_peak_loop();

/// One instruction family of the CPU: a row of peak_families().
struct PeakFamily {
  const char* id;           // "fma_ymm", "maddwd_ymm", "dpbusd_zmm", "amx_bf16", ...
  const char* instruction;  // what it runs, e.g. "vfmadd231ps ymm"
  const char* unit;         // "GFLOP/s" (float) or "GOP/s" (integer)
  bool (*present)();        // the CPU has it and the OS enables its registers
  const PeakLoop* loop;     // nullptr: this build has no loop for it (reported, not measured)
};

/// Every family moefuse knows of, whether or not this CPU has it: fp32 FMA (ymm, zmm), int16 vpmaddwd (ymm, zmm),
/// int8 VNNI (AVX-512 zmm, AVX-VNNI ymm), bf16 vdpbf16ps (zmm), AMX-BF16, AMX-INT8.
const std::vector<PeakFamily>& peak_families();

/// The family a GEMM kernel of the registry computes with, by its variant name ("gemm_bf16w_f32_6x16__avx2" ->
/// fma_ymm, "gemm_s8_s32_2x16__avx2" -> maddwd_ymm, "..._6x64__avx512vnni" -> dpbusd_zmm); nullptr for the scalar
/// kernels and for a name it does not know.
const PeakFamily* family_of_kernel(const std::string& kernel);

/// Runs `loop` for `iters` iterations `reps` times on each of `threads` threads at once and returns the sum over the
/// threads of each one's best rate, in operations per second of that thread's CPU time (the machine is shared:
/// wall time would count the time other processes hold a core).
double measure_peak(const PeakLoop& loop, int threads, int64_t iters, int reps);

/// Seconds of CPU time the calling thread has used.
double thread_seconds();

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

/// A streaming read loop: the sum of `bytes` bytes (a multiple of 128) read as 64-bit integers, in `streams` (1..8)
/// contiguous parts read side by side; its result cannot be optimised away.
struct ReadLoop {
  const char* name;  // "zmm", "ymm", "scalar"
  int load_bytes;    // bytes per load: 64, 32, 8
  uint64_t (*sum)(const uint8_t* p, size_t bytes, int streams);
};
extern const ReadLoop kReadZmm;     // AVX-512 F (machine_probe__avx512.cpp)
extern const ReadLoop kReadYmm;     // AVX2 (machine_probe__avx2.cpp)
extern const ReadLoop kReadScalar;  // any CPU

/// The widest read loop active_isa() allows.
const ReadLoop& widest_read_loop();

/// widest_read_loop()'s sum over 4 streams.
uint64_t stream_sum(const uint8_t* p, size_t bytes);

/// Read bandwidth in bytes per second of wall time: `threads` threads start together, each sums its own slice of
/// `buf` with `loop` over `streams` streams, pinned to cpus[i] when `cpus` is not empty (else where the OS puts
/// them); the pass takes from the first start to the last finish; the best of `passes` passes. A pass whose sum is
/// wrong (not every byte read) does not count; 0 when none counted.
double measure_read_bandwidth(const ReadBuffer& buf, int threads, int passes, const ReadLoop& loop, int streams,
                              const std::vector<int>& cpus = {});
/// The same with widest_read_loop() over 4 streams, unpinned.
double measure_read_bandwidth(const ReadBuffer& buf, int threads, int passes);

/// One read-bandwidth configuration measured.
struct ReadProbe {
  std::string placement;  // "os" (unpinned, as the layer's threads run), "compact" or "spread"
  std::vector<int> cpus;  // the CPUs pinned to ([] for "os")
  const char* loop = "";  // ReadLoop::name
  int streams = 1;
  double bytes_per_s = 0;
};

/// Every configuration `moefuse bench` reads with: the widest loop at 1, 2, 4 and 8 streams per thread, for each
/// placement of placements(threads) and unpinned, best of `passes` passes each; plus the plain probe.
struct ReadBandwidth {
  std::vector<ReadProbe> probes;
  double best = 0;   // the largest bytes_per_s of `probes`
  double plain = 0;  // kReadScalar, one stream, unpinned: an independent check (best must not fall below it)
};
ReadBandwidth measure_read(const ReadBuffer& buf, int threads, int passes);

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

namespace detail {
/// The read loops' variants (machine_probe__avx2.cpp, machine_probe__avx512.cpp).
uint64_t stream_sum_avx2(const uint8_t* p, size_t bytes, int streams);
uint64_t stream_sum_avx512(const uint8_t* p, size_t bytes, int streams);
}  // namespace detail

}  // namespace moefuse::probe
