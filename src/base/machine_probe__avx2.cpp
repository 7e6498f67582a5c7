// The ymm peak loops and the AVX2 read loop (machine_probe.h).
#include <immintrin.h>

#include "base/machine_probe.h"
#include "base/machine_probe_asm.h"
#include "base/machine_probe_stream.h"

namespace moefuse::probe {
namespace {

void fma_ymm_loop(int64_t iters) { MOEFUSE_PROBE_LOOP(iters, "vfmadd231ps ", "ymm"); }
void maddwd_ymm_loop(int64_t iters) { MOEFUSE_PROBE_PAIR_LOOP(iters, "vpmaddwd ", "vpaddd ", "ymm"); }
// AVX-VNNI is the VEX encoding of vpdpbusd; without the {vex} prefix the assembler would pick the EVEX (AVX-512 VL)
// one, which a CPU with AVX-VNNI alone cannot run. "%{" and "%}" are literal braces in an asm template.
void vpdpbusd_ymm_loop(int64_t iters) { MOEFUSE_PROBE_LOOP(iters, "%{vex%} vpdpbusd ", "ymm"); }

struct Ymm {
  using type = __m256i;
  static constexpr int kBytes = 32;
  static type zero() { return _mm256_setzero_si256(); }
  static type load(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static type add(type a, type b) { return _mm256_add_epi64(a, b); }
  static uint64_t reduce(type v) {
    alignas(32) uint64_t lanes[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), v);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3];
  }
};

}  // namespace

const PeakLoop kFmaYmm{"vfmadd231ps_ymm", fma_ymm_loop, 12 * 8 * 2};
const PeakLoop kMaddwdYmm{"vpmaddwd_vpaddd_ymm", maddwd_ymm_loop, 12 * 16 * 2};
const PeakLoop kDpbusdYmm{"vpdpbusd_ymm", vpdpbusd_ymm_loop, 12 * 32 * 2};

namespace detail {
uint64_t stream_sum_avx2(const uint8_t* p, size_t bytes, int streams) {
  return stream_sum_streams<Ymm>(p, bytes, streams);
}
}  // namespace detail

const ReadLoop kReadYmm{"ymm", 32, detail::stream_sum_avx2};

}  // namespace moefuse::probe
