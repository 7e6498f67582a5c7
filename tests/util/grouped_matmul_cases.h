// What the grouped_matmul tests share: the six dtype paths they sweep (float weights f32, bf16, f16; int8 weights
// with int32, bf16 or f16 outputs) and random group lists of every type.
#pragma once

#include <cstdint>
#include <ostream>
#include <span>
#include <vector>

#include "moefuse/tensor.h"
#include "util/random.h"

namespace moefuse::testing {

enum class GmmPath { f32, bf16, f16, i8_i32, i8_bf16, i8_f16 };
inline constexpr GmmPath kGmmPaths[] = {GmmPath::f32,    GmmPath::bf16,    GmmPath::f16,
                                        GmmPath::i8_i32, GmmPath::i8_bf16, GmmPath::i8_f16};

inline const char* path_name(GmmPath p) {
  switch (p) {
    case GmmPath::f32: return "f32";
    case GmmPath::bf16: return "bf16";
    case GmmPath::f16: return "f16";
    case GmmPath::i8_i32: return "i8_i32";
    case GmmPath::i8_bf16: return "i8_bf16";
    case GmmPath::i8_f16: return "i8_f16";
  }
  return "?";
}

inline void PrintTo(GmmPath p, std::ostream* os) { *os << path_name(p); }

/// A random group list of group_list_type `type` (0 cumulative ends, 1 counts, 2 key-value pairs) for M rows and E
/// experts: some empty groups, possibly fewer rows than M when `allow_short`; key-value lists end with a terminator
/// followed by a pair that must never be read.
inline Tensor random_group_list(Rng& rng, int64_t type, int64_t M, int64_t E, bool allow_short) {
  const int64_t G = type == 2 ? rng.integer(1, E + 2) : rng.integer(1, E);
  std::vector<int64_t> counts(static_cast<size_t>(G), 0);
  int64_t total = allow_short && rng.coin(0.3) ? rng.integer(0, M) : M;
  for (int64_t i = 0; i < total; ++i) counts[size_t(rng.integer(0, G - 1))]++;
  if (type == 0) {
    std::vector<int64_t> ends(static_cast<size_t>(G));
    int64_t acc = 0;
    for (int64_t g = 0; g < G; ++g) ends[size_t(g)] = acc += counts[size_t(g)];
    return Tensor::from_values<int64_t>({G}, std::span<const int64_t>(ends));
  }
  if (type == 1) return Tensor::from_values<int64_t>({G}, std::span<const int64_t>(counts));
  // Key-value: decoding stops at the first count <= 0, so drop empty rows and end with a terminator sometimes.
  std::vector<int64_t> kv;
  for (int64_t g = 0; g < G; ++g) {
    if (counts[size_t(g)] == 0) continue;
    kv.push_back(rng.integer(0, E - 1));
    kv.push_back(counts[size_t(g)]);
  }
  kv.push_back(rng.integer(0, E - 1));
  kv.push_back(0);  // terminator (and what follows is never read)
  kv.push_back(E + 100);
  kv.push_back(5);
  return Tensor::from_values<int64_t>({int64_t(kv.size() / 2), 2}, std::span<const int64_t>(kv));
}

}  // namespace moefuse::testing
