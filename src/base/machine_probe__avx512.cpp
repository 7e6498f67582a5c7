// The zmm peak loops (machine_probe.h): fp32 vfmadd231ps (AVX-512 F), int16 vpmaddwd + vpaddd (AVX-512 BW), int8
// vpdpbusd (AVX-512 VNNI; a lane does 4 multiply-adds) and bf16 vdpbf16ps (AVX-512 BF16; a lane does 2), all asm, so
// this file's flags only document what they need (peak_families() offers each only where the CPU has it); and the
// 64-byte read loop (AVX-512 F), the same template as the ymm one.
#include <immintrin.h>

#include "base/machine_probe.h"
#include "base/machine_probe_asm.h"
#include "base/machine_probe_stream.h"

namespace moefuse::probe {
namespace {

void fma_zmm_loop(int64_t iters) { MOEFUSE_PROBE_LOOP(iters, "vfmadd231ps ", "zmm"); }
void vpdpbusd_zmm_loop(int64_t iters) { MOEFUSE_PROBE_LOOP(iters, "vpdpbusd ", "zmm"); }
void maddwd_zmm_loop(int64_t iters) { MOEFUSE_PROBE_PAIR_LOOP(iters, "vpmaddwd ", "vpaddd ", "zmm"); }
void vdpbf16ps_zmm_loop(int64_t iters) { MOEFUSE_PROBE_LOOP(iters, "vdpbf16ps ", "zmm"); }

struct Zmm {
  using type = __m512i;
  static constexpr int kBytes = 64;
  static type zero() { return _mm512_setzero_si512(); }
  static type load(const uint8_t* p) { return _mm512_loadu_si512(p); }
  static type add(type a, type b) { return _mm512_add_epi64(a, b); }
  static uint64_t reduce(type v) {
    alignas(64) uint64_t lanes[8];
    _mm512_store_si512(lanes, v);
    uint64_t sum = 0;
    for (uint64_t lane : lanes) sum += lane;
    return sum;
  }
};

}  // namespace

const PeakLoop kFmaZmm{"vfmadd231ps_zmm", fma_zmm_loop, 12 * 16 * 2};
const PeakLoop kDpbusdZmm{"vpdpbusd_zmm", vpdpbusd_zmm_loop, 12 * 64 * 2};
const PeakLoop kMaddwdZmm{"vpmaddwd_vpaddd_zmm", maddwd_zmm_loop, 12 * 32 * 2};
const PeakLoop kDpbf16Zmm{"vdpbf16ps_zmm", vdpbf16ps_zmm_loop, 12 * 32 * 2};

namespace detail {
uint64_t stream_sum_avx512(const uint8_t* p, size_t bytes, int streams) {
  return stream_sum_streams<Zmm>(p, bytes, streams);
}
}  // namespace detail

const ReadLoop kReadZmm{"zmm", 64, detail::stream_sum_avx512};

}  // namespace moefuse::probe
