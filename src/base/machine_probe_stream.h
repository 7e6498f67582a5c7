// The read loops of machine_probe.h, written once for every load width: each per-ISA file instantiates
// stream_sum_streams with its vector type. The range is cut into S contiguous parts of whole 128-byte blocks read
// side by side (one block of each part per step, S accumulators), then the blocks left over by the cut.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace moefuse::probe::detail {

// V provides: using type; static constexpr int kBytes; static type zero(); static type load(const uint8_t*);
// static type add(type, type); static uint64_t reduce(type) (the sum of its 64-bit lanes).
template <class V, int S>
uint64_t stream_sum_s(const uint8_t* p, size_t bytes) {
  constexpr size_t kPerBlock = 128 / V::kBytes;
  const size_t blocks = bytes / 128, per = blocks / S;
  typename V::type acc[S];
  for (int s = 0; s < S; ++s) acc[s] = V::zero();
  for (size_t b = 0; b < per; ++b)
    for (int s = 0; s < S; ++s) {
      const uint8_t* q = p + (size_t(s) * per + b) * 128;
      for (size_t j = 0; j < kPerBlock; ++j) acc[s] = V::add(acc[s], V::load(q + j * V::kBytes));
    }
  for (size_t b = per * S; b < blocks; ++b)
    for (size_t j = 0; j < kPerBlock; ++j) acc[0] = V::add(acc[0], V::load(p + b * 128 + j * V::kBytes));
  uint64_t sum = 0;
  for (int s = 0; s < S; ++s) sum += V::reduce(acc[s]);
  return sum;
}

/// `streams` is rounded down to 1, 2, 4 or 8 (clamped to that range).
template <class V>
uint64_t stream_sum_streams(const uint8_t* p, size_t bytes, int streams) {
  if (streams >= 8) return stream_sum_s<V, 8>(p, bytes);
  if (streams >= 4) return stream_sum_s<V, 4>(p, bytes);
  if (streams >= 2) return stream_sum_s<V, 2>(p, bytes);
  return stream_sum_s<V, 1>(p, bytes);
}

}  // namespace moefuse::probe::detail
