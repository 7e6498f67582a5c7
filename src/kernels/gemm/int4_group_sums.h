// The int4 kernels' sums of A per row and group (gemm.h, "int4 group-wise": sa, and "int4 group-wise x int8": Σ a,
// shared by every column of a row): how a call cuts its rows into chunks whose sums fit a buffer on the stack
// (kernels never allocate), so that each sum is formed once per call instead of once per column tile. Plain C++
// (the ISA files pass their own sums and tiles); included by the AVX2 and AVX-512 int4 kernels, W4A16 and W4A8 (whose
// sums, integers of at most 128 G, are exact as floats).
#pragma once

#include <algorithm>
#include <cstdint>

namespace moefuse::gemm::detail {

/// Floats of an int4 kernel's sums buffer (rows x groups of one chunk): 16 KB of stack.
inline constexpr int64_t kInt4SumFloats = 4096;
/// pack_weights_u4 takes K < 65536, so a row has at most 2047 groups (G >= 32): every chunk holds whole rows.
static_assert(kInt4SumFloats >= 65535 / 32);

/// Cuts M rows of A (element type T: float rows or int8 ones; rows lda apart; K < 65536, K / G groups each) into chunks
/// of as many rows as kInt4SumFloats holds with all their groups, rows in order. For each chunk: sums(arow, groups,
/// out) for each of its rows (out: the row's sa of every group, in order), then tiles(m0, rows, sa) with the chunk's
/// sa[r * (K / G) + g]. K = 0: one chunk of all the rows (C = +0).
template <class T, class Sums, class Tiles>
inline void for_int4_sum_chunks(int64_t M, int64_t K, int64_t G, const T* a, int64_t lda, Sums&& sums,
                                Tiles&& tiles) {
  const int64_t groups = K / G;
  const int64_t rows_per_chunk = groups > 0 ? kInt4SumFloats / groups : M;
  alignas(64) float sa[kInt4SumFloats];
  for (int64_t m0 = 0; m0 < M; m0 += rows_per_chunk) {
    const int64_t rows = std::min(rows_per_chunk, M - m0);
    for (int64_t r = 0; r < rows; ++r) sums(a + (m0 + r) * lda, groups, sa + r * groups);
    tiles(m0, rows, static_cast<const float*>(sa));
  }
}

}  // namespace moefuse::gemm::detail
