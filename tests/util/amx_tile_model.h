// A scalar model of the AMX tiles that honours the tile configuration (rows and bytes per row of each tile, as
// LDTILECFG sets them), for drivers that configure tiles other than 16 x 64 bytes (amx_gemm_u4s8.h's G = 32 step).
// Loads and stores touch only the configured rows and bytes (so a sanitizer sees what the hardware would read);
// a product whose shapes the hardware would refuse (#UD), or a tile instruction outside configure/release, counts a
// fault instead of computing, and the tests check that none happened. TDPBSSD only (signed x signed, exact).
#pragma once

#include <array>
#include <cstdint>
#include <cstring>

#include "kernels/gemm/amx_gemm.h"

namespace moefuse::testing {

struct ConfiguredTiles {
  static inline thread_local std::array<std::array<uint8_t, 1024>, 8> tile{};
  static inline thread_local gemm::amx::TileConfig config{};
  static inline thread_local int configured = 0;
  static inline thread_local int faults = 0;

  static void configure() { configure(gemm::amx::TileConfig{}); }
  static void configure(const gemm::amx::TileConfig& c) {
    config = c;
    ++configured;
  }
  static void release() { --configured; }
  static int rows(int t) { return config.rows[t]; }
  static int colsb(int t) { return config.colsb[t]; }
  static bool usable(int t) {
    const bool ok = configured > 0 && rows(t) >= 1 && rows(t) <= 16 && colsb(t) >= 4 && colsb(t) <= 64 &&
                    colsb(t) % 4 == 0;
    if (!ok) ++faults;
    return ok;
  }

  template <int t>
  static void zero() {
    if (usable(t)) tile[t].fill(0);
  }
  template <int t>
  static void load(const void* p, int64_t stride) {
    if (!usable(t)) return;
    tile[t].fill(0);  // rows and bytes past the configuration read as zero
    for (int r = 0; r < rows(t); ++r)
      std::memcpy(tile[t].data() + 64 * r, static_cast<const uint8_t*>(p) + r * stride, size_t(colsb(t)));
  }
  template <int t>
  static void store(void* p, int64_t stride) {
    if (!usable(t)) return;
    for (int r = 0; r < rows(t); ++r)
      std::memcpy(static_cast<uint8_t*>(p) + r * stride, tile[t].data() + 64 * r, size_t(colsb(t)));
  }
  template <class E>
  static E get(int t, int r, int i) {
    E e;
    std::memcpy(&e, tile[t].data() + 64 * r + sizeof(E) * i, sizeof(E));
    return e;
  }
  // C (rows M x N int32) += A (M x 4 K bytes) . B (K x 4 N bytes): TDPBSSD's shapes, checked as the hardware does.
  template <int c, int x, int y>
  static void dp_s8() {
    if (!usable(c) || !usable(x) || !usable(y)) return;
    if (rows(c) != rows(x) || colsb(c) != colsb(y) || colsb(x) / 4 != rows(y)) {
      ++faults;
      return;
    }
    for (int m = 0; m < rows(c); ++m)
      for (int n = 0; n < colsb(c) / 4; ++n) {
        int32_t acc = get<int32_t>(c, m, n);
        for (int r = 0; r < rows(y); ++r)
          for (int i = 0; i < 4; ++i) acc += int32_t(get<int8_t>(x, m, 4 * r + i)) * get<int8_t>(y, r, 4 * n + i);
        std::memcpy(tile[c].data() + 64 * m + 4 * n, &acc, 4);
      }
  }
};

}  // namespace moefuse::testing
