// The AMX peak loops (machine_probe.h): tdpbf16ps (AMX-BF16) and tdpbssd (AMX-INT8), each one asm block that
// configures the tiles, loads its sources, runs the loop and releases the tiles, so that no tile state outlives a
// call and the compiler never sees a tile. peak_families() runs them only at level amx (active_isa() >= Isa::amx:
// the CPU has AMX, the OS enables the tile state and Linux gave this process the tile data; without that permission
// the first tile instruction would kill the process with SIGILL).
//
// Tiles: all 8 are 16 rows of 64 bytes. tmm0, tmm1 are A0, A1 (16 rows of 32 bf16 / 64 int8), tmm2, tmm3 are B0, B1
// (16 rows of 16 pairs of bf16 / quads of int8: the VNNI layout), tmm4..tmm7 are C0..C3 (16 x 16 fp32 / int32).
// An iteration is 4 independent products C0 += A0 B0, C1 += A0 B1, C2 += A1 B0, C3 += A1 B1, as an AMX GEMM tile
// of 32 x 32 runs them: enough to keep the tile unit busy (1080 GFLOP/s of bf16 measured on one Sapphire Rapids core
// with this loop). The sources are zero, as the vector loops' are.
#include <cstdint>

#include "base/machine_probe.h"

namespace moefuse::probe {
namespace {

// ldtilecfg's 64-byte operand, palette 1 (Intel SDM: LDTILECFG): bytes 16..47 the bytes per row of tiles 0..15,
// bytes 48..63 their rows; tiles 8..15 and the reserved bytes must be zero.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};
static_assert(sizeof(TileConfig) == 64);

constexpr TileConfig all_tiles_16x64() {
  TileConfig c;
  for (int t = 0; t < 8; ++t) {
    c.colsb[t] = 64;
    c.rows[t] = 16;
  }
  return c;
}

constexpr TileConfig kTiles = all_tiles_16x64();
// One tile's worth of zero bytes: every source tile is loaded from it (16 rows, 64 bytes apart).
alignas(64) constexpr uint8_t kZeroTile[16 * 64] = {};

// AT&T operand order: "op B, A, C" is Intel's "op C, A, B", C += A B.
#define MOEFUSE_PROBE_AMX_LOOP(iters, op)                                                                        \
  __asm__ volatile("ldtilecfg (%1)\n\t"                                                                          \
                   "tileloadd (%2,%3,1), %%tmm0\n\ttileloadd (%2,%3,1), %%tmm1\n\t"                              \
                   "tileloadd (%2,%3,1), %%tmm2\n\ttileloadd (%2,%3,1), %%tmm3\n\t"                              \
                   "tilezero %%tmm4\n\ttilezero %%tmm5\n\ttilezero %%tmm6\n\ttilezero %%tmm7\n\t"               \
                   "1:\n\t" op " %%tmm2, %%tmm0, %%tmm4\n\t" op " %%tmm3, %%tmm0, %%tmm5\n\t" op                \
                   " %%tmm2, %%tmm1, %%tmm6\n\t" op " %%tmm3, %%tmm1, %%tmm7\n\t"                                \
                   "dec %0\n\tjnz 1b\n\t"                                                                        \
                   "tilerelease"                                                                                 \
                   : "+r"(iters)                                                                                 \
                   : "r"(&kTiles), "r"(kZeroTile), "r"(int64_t(64))                                              \
                   : "memory", "cc")

void tdpbf16ps_loop(int64_t iters) { MOEFUSE_PROBE_AMX_LOOP(iters, "tdpbf16ps"); }
void tdpbssd_loop(int64_t iters) { MOEFUSE_PROBE_AMX_LOOP(iters, "tdpbssd"); }

#undef MOEFUSE_PROBE_AMX_LOOP

// One product adds to each of C's 16 x 16 elements a dot product of 32 bf16 / 64 int8 pairs: a multiply-add counts 2.
constexpr double kBf16OpsPerTile = 16 * 16 * 32 * 2;
constexpr double kInt8OpsPerTile = 16 * 16 * 64 * 2;
// An iteration takes about 4 x 16 cycles, some 10 times a vector loop's: fewer iterations for the same time.
constexpr int64_t kAmxProbeIters = 1'000'000;

}  // namespace

const PeakLoop kTdpbf16ps{"tdpbf16ps", tdpbf16ps_loop, 4 * kBf16OpsPerTile, kAmxProbeIters};
const PeakLoop kTdpbssd{"tdpbssd", tdpbssd_loop, 4 * kInt8OpsPerTile, kAmxProbeIters};

}  // namespace moefuse::probe
