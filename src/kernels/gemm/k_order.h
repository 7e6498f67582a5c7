// The order in which a float GEMM tile walks k, for the SIMD kernels of every ISA: the contract (gemm.h) fixes it per
// weight type, and every variant must take exactly that order to give the scalar kernel's bits.
//   f32, f16 (and int4, which dequantises to f32): k = 0 .. K-1 ascending.
//   bf16 (and FP8, which dequantises to bf16): pairs (k + 1, k) for k = 0, 2, 4, ..; when K is odd the last pair is
//   (K, K - 1) with a zero pair standing for k = K: acc = fma(0, 0, acc) (acc + +0: a -0 becomes +0), then k = K - 1.
//   That is vdpbf16ps's order (base/bf16_dot.h). The FMAs run under DenormalsAreZero there (the kernels' entry points).
// A tile that runs over part of K and carries its accumulators to the next part through C (the FP8 block paths, 128-row
// blocks) takes the same order, because every part but the last has an even number of rows.
#pragma once

#include <cstdint>
#include <type_traits>

#include "moefuse/dtype.h"

namespace moefuse::gemm::detail {

/// Whether products with weights of type W take k in the bf16 contract's pairs (true for bf16) or ascending.
template <class W>
inline constexpr bool kPairsOfK = std::is_same_v<W, bfloat16>;

/// Calls step(k) for k = 0 .. K-1 in the contract's order: ascending (Pairs false), or in pairs (k + 1, k) with
/// zero() (the zero pair's fma) before the last step of an odd K.
template <bool Pairs, class Step, class Zero>
__attribute__((always_inline)) inline void walk_k(int64_t K, const Step& step, const Zero& zero) {
  if constexpr (!Pairs) {
    for (int64_t k = 0; k < K; ++k) step(k);
  } else {
    int64_t k = 0;
    for (; k + 1 < K; k += 2) {
      step(k + 1);
      step(k);
    }
    if (k < K) {
      zero();
      step(k);
    }
  }
}

}  // namespace moefuse::gemm::detail
