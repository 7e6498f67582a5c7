// This machine's own limits, measured: read bandwidth, the fp32 FMA peak and the int8 VNNI peak, for any number of
// threads, plus the last-level cache size and the CPU's name. What `moefuse bench` compares the layer against and
// what bench/gemm_bench.cpp reports kernels as a share of.
//
// The peak loops are independent accumulator chains in registers only (12 of them: enough to cover a 4-cycle latency
// at 2 instructions per cycle), written in asm so that the compiler cannot remove or reorder anything; their inputs
// are zero, so no denormal slow paths. Each loop lives in the source file of its register width
// (machine_probe__avx2.cpp: ymm, machine_probe__avx512.cpp: zmm).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

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

/// The fp32 loop of the kernels in use: zmm when active_isa() is avx512, ymm for avx2, nullptr for scalar.
const PeakLoop* fp32_peak_loop();
/// vpdpbusd on zmm when use_avx512_vnni(), else nullptr.
const PeakLoop* int8_peak_loop();

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

/// The sum of `bytes` bytes (a multiple of 128) read as 64-bit integers, with AVX2 loads when active_isa() allows
/// them: one streaming pass over memory whose result cannot be optimised away.
uint64_t stream_sum(const uint8_t* p, size_t bytes);

/// Read bandwidth in bytes per second of wall time: `threads` threads start together, each sums its own slice of
/// `buf` (stream_sum), and the pass takes from the first start to the last finish; the best of `passes` passes.
double measure_read_bandwidth(const ReadBuffer& buf, int threads, int passes);

/// Bytes of the last-level (level 3) cache: /sys/devices/system/cpu/cpu0/cache/index*/ with level 3, else the
/// largest level found there, else 32 MiB.
int64_t llc_bytes();

/// The CPU's name: "model name" of /proc/cpuinfo, else the CPUID brand string, else "unknown".
std::string cpu_model();

/// What `moefuse bench` measures once per run (each probe a fraction of a second).
struct MachineLimits {
  int threads = 1;
  double read_bytes_per_s = 0;   // measure_read_bandwidth over a buffer of read_buffer_bytes
  double fp32_flops = 0;         // fp32_peak_loop() on every thread; 0 when there is none (scalar)
  double int8_ops = 0;           // int8_peak_loop() on every thread; 0 when there is none
  const char* fp32_loop = "";    // the loops' names ("" when none)
  const char* int8_loop = "";
  int64_t read_buffer_bytes = 0;
  int64_t llc_bytes = 0;
  std::string cpu;
};
/// Measures the limits with `threads` threads (>= 1), reading a buffer of `read_buffer_bytes`.
MachineLimits measure_machine(int threads, size_t read_buffer_bytes);

namespace detail {
/// stream_sum's AVX2 variant (machine_probe__avx2.cpp).
uint64_t stream_sum_avx2(const uint8_t* p, size_t bytes);
}  // namespace detail

}  // namespace moefuse::probe
