// The seeded random numbers of random layer weights and random input tokens: a counter-based hash, so that value i of
// a stream depends only on the seed and i (never on thread count or fill order).
#pragma once

#include <cstdint>

namespace moefuse {

/// SplitMix64's finaliser: a bijective 64-bit hash.
inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/// 24 bits of a hash as a uniform value in [-1, 1), exact in fp32.
inline float uniform_pm1(uint64_t h) {
  return float(int64_t(h >> 40) - (int64_t(1) << 23)) * (1.0f / float(1 << 23));
}

/// Stream step: value i of a stream with key `base` is a function of splitmix64(base + i * kStreamStride).
inline constexpr uint64_t kStreamStride = 0x632be59bd9b4e019ull;

}  // namespace moefuse
