// What the GEMM kernels of every ISA share that is plain C++: how M rows are cut into register-tile row blocks, and
// how the int8 kernels read four int8 of A.
#pragma once

#include <cstdint>
#include <cstring>

namespace moefuse::gemm::detail {

/// Calls fn(m0, rows) for M rows cut into the fewest blocks of at most `max_rows`, balanced (sizes differ by at most
/// one, the larger first: 64 rows in blocks of 12 are 4 x 11 + 2 x 10), in row order. Which rows share a tile never
/// changes a result (rows do not interact); balancing keeps every tile near its full height.
template <class Fn>
inline void for_row_blocks(int64_t M, int64_t max_rows, Fn&& fn) {
  if (M <= 0) return;
  const int64_t blocks = (M + max_rows - 1) / max_rows;
  const int64_t base = M / blocks, extra = M % blocks;
  int64_t m0 = 0;
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t rows = base + (blk < extra ? 1 : 0);
    fn(m0, rows);
    m0 += rows;
  }
}

/// The 4 int8 of A[m, 4g .. 4g+4) as one little-endian word, only the first n (< 4: a tail group) read, zeros after:
/// a tail group never reads past the row.
inline int32_t load_a4(const int8_t* p, int n) {
  if (n >= 4) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return v;
  }
  uint32_t v = 0;
  for (int t = 0; t < n; ++t) v |= uint32_t(uint8_t(p[t])) << (8 * t);
  return int32_t(v);
}

}  // namespace moefuse::gemm::detail
