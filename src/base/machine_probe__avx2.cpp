// The fp32 peak loop on ymm registers and the AVX2 streaming read (machine_probe.h).
#include <immintrin.h>

#include "base/machine_probe.h"
#include "base/machine_probe_asm.h"

namespace moefuse::probe {
namespace {

void fma_ymm_loop(int64_t iters) { MOEFUSE_PROBE_LOOP(iters, "vfmadd231ps ", "ymm"); }

}  // namespace

const PeakLoop kFmaYmm{"vfmadd231ps_ymm", fma_ymm_loop, 12 * 8 * 2};

namespace detail {

// Four independent sums of 32-byte loads per 128 bytes.
uint64_t stream_sum_avx2(const uint8_t* p, size_t bytes) {
  __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
  for (size_t i = 0; i < bytes; i += 128) {
    s0 = _mm256_add_epi64(s0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
    s1 = _mm256_add_epi64(s1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    s2 = _mm256_add_epi64(s2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    s3 = _mm256_add_epi64(s3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  const __m256i s = _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3));
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), s);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

}  // namespace detail
}  // namespace moefuse::probe
