// This machine's own limits, measured: read bandwidth and a compute peak for every instruction family the CPU has,
// for any number of threads, plus what identifies the machine (CPU name and signature, ISA set, LLC, memory). What
// `moefuse bench` compares the layer against and what bench/gemm_bench.cpp reports kernels as a share of.
//
// The peak loops are independent accumulator chains in registers only (12 of them: enough to cover a 4-cycle latency
// at 2 instructions per cycle), written in asm so that the compiler cannot remove or reorder anything; their inputs
// are zero, so no denormal slow paths. Each loop lives in the source file of its register width
// (machine_probe__avx2.cpp: ymm, machine_probe__avx512.cpp: zmm); the AMX loops (machine_probe__amx.cpp) keep 4
// independent tile products going instead, their sources loaded once into tiles. An instruction family is one row of
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

#include "moefuse/machine.h"

namespace moefuse::probe {

/// A register-only loop of one instruction: `ops_per_iter` operations per iteration (a multiply-add counts 2).
struct PeakLoop {
  const char* name;  // the instruction and register width, e.g. "vfmadd231ps_zmm"
  void (*run)(int64_t iters);  // iters >= 1
  double ops_per_iter;
  int64_t probe_iters = 8'000'000;  // what probe_round runs per repetition: some tens of ms at a few GHz
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
/// 12 x (vpmaddwd + vpaddd) on zmm per iteration (needs AVX-512 BW): the AVX-512 int8 kernel without VNNI.
extern const PeakLoop kMaddwdZmm;
/// 12 x vpdpbusd on ymm per iteration, VEX-encoded (needs AVX-VNNI; machine_probe__avx2.cpp, asm).
extern const PeakLoop kDpbusdYmm;
/// 12 x vdpbf16ps on zmm per iteration (needs AVX-512 BF16; a lane does 2 bf16 multiply-adds = 4 operations).
extern const PeakLoop kDpbf16Zmm;
/// 4 x tdpbf16ps on 16 x 64-byte tiles per iteration (machine_probe__amx.cpp, asm; needs level amx, i.e.
/// active_isa() >= Isa::amx: the tile data permission is asked there): 16 x 16 x 32 multiply-adds each.
extern const PeakLoop kTdpbf16ps;
/// 4 x tdpbssd on the same tiles (needs level amx): 16 x 16 x 64 multiply-adds each.
extern const PeakLoop kTdpbssd;

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
// measure_read_bandwidth(buf, threads, passes), the widest loop over 4 streams unpinned, is in moefuse/machine.h.

namespace detail {
/// The read loops' variants (machine_probe__avx2.cpp, machine_probe__avx512.cpp).
uint64_t stream_sum_avx2(const uint8_t* p, size_t bytes, int streams);
uint64_t stream_sum_avx512(const uint8_t* p, size_t bytes, int streams);
}  // namespace detail

}  // namespace moefuse::probe
