// AVX512-BF16 GEMM for bf16 weights (vdpbf16ps; this file is compiled with AVX-512 F/BW/VL/DQ + BF16 and only called
// when the CPU has them and the self-test below passed). Bitwise the bf16 contract (gemm.h, "bf16 weights"), which
// is vdpbf16ps's own arithmetic: the tile (tile__avx512bf16.h) does two k per instruction where the AVX-512 fp32
// kernel does one, on the same packed panels.
//
// Tiles as the fp32 kernel's (gemm__avx512.cpp): 6 x 64 (two panels, 24 accumulators) for every pair of panels, rows
// in balanced blocks of at most 6 (decode: 4 independent chains for one row, two sequential streams); 12 x 32 for a
// last single panel.
//
// A must be bf16 values (the tile takes each value's high half). Every tile ORs the A values it reads; the rows and
// K are the same for every column block, so the first column block tells: if some value is not a bf16 value the
// whole call is computed again by the AVX-512 FMA kernel (gemm_bf16w_f32_6x64__avx512, the same contract: the
// result never depends on which ran). bf16 models' activations always are bf16 values, so the check costs one OR
// per 32 values.
#include <immintrin.h>

#include <algorithm>
#include <cassert>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <utility>

#include "base/bf16_dot.h"
#include "kernels/gemm/row_blocks.h"
#include "kernels/gemm/tile__avx512bf16.h"
#include "kernels/gemm/variants.h"

namespace moefuse::gemm::detail {
namespace {

constexpr int kMaxRowsPair = 6;     // rows of the two-panel tile
constexpr int kMaxRowsSingle = 12;  // rows of the single-panel tile

// Runs the tiles over [n0, n1); false as soon as a column block found an A value that is not a bf16 value.
// Pf: the tiles prefetch the panels pf.bytes ahead (the bf16 entry of the prefetch settings, base/cpu_tuning.h);
// without it the loop is the one without prefetch.
// TA: A's element type (fp32, or bf16 for the bf16-A entry, whose values are all bf16 values: never false).
template <bool Pf, class TA>
bool gemm_dp(int64_t M, int64_t K, int64_t n0, int64_t n1, const TA* a, int64_t lda, const bfloat16* b, float* c,
             int64_t ldc, Prefetch pf) {
  // Only the first row block's tiles prefetch: later passes over a panel find it in the caches (as in the int8
  // VNNI kernel).
  static constexpr auto pairs =
      dp::make_tiles_dp<2, false, Pf, TA>(std::make_integer_sequence<int, kMaxRowsPair>{});
  static constexpr auto singles =
      dp::make_tiles_dp<1, false, Pf, TA>(std::make_integer_sequence<int, kMaxRowsSingle>{});
  static constexpr auto pairs_cached =
      dp::make_tiles_dp<2, false, false, TA>(std::make_integer_sequence<int, kMaxRowsPair>{});
  static constexpr auto singles_cached =
      dp::make_tiles_dp<1, false, false, TA>(std::make_integer_sequence<int, kMaxRowsSingle>{});
  const int64_t pstride = K * kGemmNR;
  int64_t p0 = n0;
  for (; p0 + kGemmNR < n1; p0 += 2 * kGemmNR) {
    bool ok = true;
    const int width = int(std::min<int64_t>(2 * kGemmNR, n1 - p0));
    for_row_blocks(M, kMaxRowsPair, [&](int64_t m0, int64_t rows) {
      ok &= (m0 == 0 ? pairs : pairs_cached)[size_t(rows - 1)](K, a + m0 * lda, lda, b + (p0 / kGemmNR) * pstride,
                                                               pstride, c + m0 * ldc + (p0 - n0), ldc, width, pf);
    });
    if (!ok) return false;
  }
  for (; p0 < n1; p0 += kGemmNR) {
    bool ok = true;
    const int width = int(std::min<int64_t>(kGemmNR, n1 - p0));
    for_row_blocks(M, kMaxRowsSingle, [&](int64_t m0, int64_t rows) {
      ok &= (m0 == 0 ? singles : singles_cached)[size_t(rows - 1)](K, a + m0 * lda, lda, b + (p0 / kGemmNR) * pstride,
                                                                   pstride, c + m0 * ldc + (p0 - n0), ldc, width, pf);
    });
    if (!ok) return false;
  }
  return true;
}

// ─── The self-test ───────────────────────────────────────────────────────────────────────────────────────────────
// vdpbf16ps is specified with DAZ/FTZ and round to nearest even per product, odd element first; this CPU's was
// checked against fma_daz_ftz, but another vendor's implementation need not round the same (or order the two
// products the same). So before the kernel is chosen, these lanes run through it and must match the contract
// bit for bit: cancellation, the order of the two products, one rounding per product, tiny products and results
// (the FTZ window [FLT_MIN - 2^-150, FLT_MIN - 2^-151) included), subnormal a, b and acc, signed zeros, overflow, and
// pseudo-random lanes over a wide exponent range.

struct Lane {
  float a_odd, b_odd, a_even, b_even, acc;
};

uint16_t bf16_bits(float x) {  // x must be a bf16 value (the crafted lanes are)
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return uint16_t(u >> 16);
}
float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint32_t to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

constexpr int kCrafted = 16, kRandom = 48, kLanes = kCrafted + kRandom;  // a multiple of 16

void crafted(Lane* out) {
  const float tiny = std::ldexp(1.0f, -75), fmin = FLT_MIN, one_16th = 1.0f + 0x1p-4f;
  const Lane lanes[kCrafted] = {
      {1, -1, 0x1p-20f, 1, 1},                                      // cancellation, then a small term
      {0, -1, -0.0f, 1, -0.0f},                                     // -0 + -0 + -0 = -0
      {0, 0, -0.0f, 1, -0.0f},                                      // -0 + +0 = +0
      {-tiny, tiny, 0, 0, fmin},                                    // exact FLT_MIN - 2^-150: tiny, flushed
      {-tiny * one_16th, tiny * 0.5f * one_16th, 0, 0, fmin},       // inside the window: tiny, flushed
      {-tiny, tiny * 0.5f, 0, 0, fmin},                             // FLT_MIN - 2^-151: a tie to FLT_MIN, kept
      {tiny, tiny, 0, 0, -fmin},                                    // -FLT_MIN + 2^-150: flushed to -0
      {from_bits(0x00010000u), 0x1p100f, from_bits(0x80010000u), 0x1p99f, 0},  // subnormal a: read as 0
      {0x1p120f, from_bits(0x00400000u), 0, 0, 0},                  // subnormal b: read as 0
      {1, fmin, 0, 0, from_bits(0x00400000u)},                      // subnormal acc: read as 0
      {0x1p-70f, 0x1p-70f, 0x1p-70f, -0x1p-70f, 0},                 // tiny products: +0, then -0
      {0x1p-24f, 1, 1.5f * 0x1p-24f, 1, 1},                         // the order of the two products matters
      {0x1p-24f, 1, 0x1p-24f, 1, 1},                                // one rounding per product (not per pair)
      {0x1p127f, 2, 1, 1, 0},                                       // overflow to +inf
      {3, 5, 7, 11, 0.1f},                                          // plain
      {-1.5f, fmin, 1, fmin, fmin},                                 // -FLT_MIN / 2 flushed to -0, then FLT_MIN
  };
  std::copy(lanes, lanes + kCrafted, out);
}

// Pseudo-random bf16 values with exponents in [-80, 20) (products from below FLT_MIN up), a fifth of them zero or
// subnormal, and accumulators with exponents in [-130, 20).
void pseudo_random(Lane* out, int n) {
  uint64_t s = 0x9e3779b97f4a7c15ull;
  const auto next = [&] {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    return s;
  };
  const auto value = [&](int lo, int hi, bool bf16) {
    const uint64_t r = next();
    if (r % 5 == 0) return from_bits(uint32_t(((r >> 8) & 0x807f0000u)));  // zero or subnormal of either sign
    const float mant = 1.0f + float((r >> 16) & 0x7f) / 128.0f;
    float x = std::ldexp(mant, lo + int((r >> 24) % uint64_t(hi - lo)));
    if (!bf16) x *= 1.0f + float((r >> 32) & 0xffff) * 0x1p-23f;
    return (r >> 40) & 1 ? -x : x;
  };
  for (int i = 0; i < n; ++i)
    out[i] = Lane{value(-80, 20, true), value(-80, 20, true), value(-80, 20, true), value(-80, 20, true),
                  value(-130, 20, false)};
}

}  // namespace

void gemm_bf16w_f32_6x64__avx512bf16(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda,
                                     const void* b, float* c, int64_t ldc) {
  assert(M >= 0 && K >= 0 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  if (M <= 0 || n0 >= n1) return;
  const Prefetch pf = prefetch_for(PrefetchStream::bf16, M);
  const auto* bw = static_cast<const bfloat16*>(b);
  const bool ok = pf.on() ? gemm_dp<true>(M, K, n0, n1, a, lda, bw, c, ldc, pf)
                          : gemm_dp<false>(M, K, n0, n1, a, lda, bw, c, ldc, pf);
  if (!ok)
    gemm_bf16w_f32_6x64__avx512(M, K, n0, n1, a, lda, b, c, ldc);
}

// bf16 rows of A: the same tiles, their A pairs copied from the rows as they are (dp::fill_pairs), no check and no
// fallback (every value is a bf16 value).
void gemm_bf16w_bf16a_f32_6x64__avx512bf16(int64_t M, int64_t K, int64_t n0, int64_t n1, const bfloat16* a,
                                           int64_t lda, const void* b, float* c, int64_t ldc) {
  assert(M >= 0 && K >= 0 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  if (M <= 0 || n0 >= n1) return;
  const Prefetch pf = prefetch_for(PrefetchStream::bf16, M);
  const auto* bw = static_cast<const bfloat16*>(b);
  if (pf.on()) gemm_dp<true>(M, K, n0, n1, a, lda, bw, c, ldc, pf);
  else gemm_dp<false>(M, K, n0, n1, a, lda, bw, c, ldc, pf);
}

bool gemm_bf16w_f32_kblocks__avx512bf16(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda,
                                        const void* b_data, float* c, int64_t ldc, int64_t kblock) {
  assert(M >= 0 && K >= 0 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0 && kblock > 0 && kblock % 2 == 0);
  static constexpr auto pairs_first = dp::make_tiles_dp<2, false>(std::make_integer_sequence<int, kMaxRowsPair>{});
  static constexpr auto pairs_carry = dp::make_tiles_dp<2, true>(std::make_integer_sequence<int, kMaxRowsPair>{});
  static constexpr auto singles_first = dp::make_tiles_dp<1, false>(std::make_integer_sequence<int, kMaxRowsSingle>{});
  static constexpr auto singles_carry = dp::make_tiles_dp<1, true>(std::make_integer_sequence<int, kMaxRowsSingle>{});
  const auto* b = static_cast<const bfloat16*>(b_data);
  const int64_t pstride = K * kGemmNR;
  bool ok = true;
  for (int64_t p0 = n0; p0 < n1; p0 += 2 * kGemmNR) {
    const bool pair = p0 + kGemmNR < n1;
    const int width = int(std::min<int64_t>(pair ? 2 * kGemmNR : kGemmNR, n1 - p0));
    // K = 0 still runs one (empty) block: C = +0.
    for (int64_t k0 = 0; k0 < K || k0 == 0; k0 += kblock) {
      const int64_t rows = std::min(kblock, K - k0);
      const bfloat16* block = b + (p0 / kGemmNR) * pstride + k0 * kGemmNR;
      for_row_blocks(M, pair ? kMaxRowsPair : kMaxRowsSingle, [&](int64_t m0, int64_t mr) {
        const auto tile = pair ? (k0 == 0 ? pairs_first : pairs_carry)[size_t(mr - 1)]
                               : (k0 == 0 ? singles_first : singles_carry)[size_t(mr - 1)];
        ok &= tile(rows, a + m0 * lda + k0, lda, block, pstride, c + m0 * ldc + (p0 - n0), ldc, width, Prefetch{});
      });
      if (K == 0) break;
    }
    if (!pair) break;  // a last single panel
  }
  return ok;
}

const char* dpbf16_self_test__avx512bf16() {
  alignas(64) Lane lanes[kLanes];
  crafted(lanes);
  pseudo_random(lanes + kCrafted, kRandom);
  alignas(64) uint16_t av[2 * kLanes], bv[2 * kLanes];
  alignas(64) float acc[kLanes], got[kLanes];
  for (int i = 0; i < kLanes; ++i) {
    // A subnormal fp32 accumulator may have low bits; a, b must be bf16 (their low halves are dropped here).
    av[2 * i] = bf16_bits(lanes[i].a_even), av[2 * i + 1] = bf16_bits(lanes[i].a_odd);
    bv[2 * i] = bf16_bits(lanes[i].b_even), bv[2 * i + 1] = bf16_bits(lanes[i].b_odd);
    acc[i] = lanes[i].acc;
  }
  for (int v = 0; v < kLanes / 16; ++v) {
    const __m512i x = _mm512_load_si512(av + 32 * v), y = _mm512_load_si512(bv + 32 * v);
    _mm512_store_ps(got + 16 * v, _mm512_dpbf16_ps(_mm512_load_ps(acc + 16 * v), (__m512bh)x, (__m512bh)y));
  }
  for (int i = 0; i < kLanes; ++i) {
    const auto bf = [](uint16_t h) { return from_bits(uint32_t(h) << 16); };
    float want = fma_daz_ftz(bf(av[2 * i + 1]), bf(bv[2 * i + 1]), acc[i]);
    want = fma_daz_ftz(bf(av[2 * i]), bf(bv[2 * i]), want);
    if (std::isnan(want) && std::isnan(got[i])) continue;  // NaN payloads are not part of the contract
    if (to_bits(want) != to_bits(got[i])) {
      static char reason[160];
      std::snprintf(reason, sizeof reason,
                    "vdpbf16ps self-test: lane %d gives 0x%08x where the bf16 contract gives 0x%08x", i,
                    unsigned(to_bits(got[i])), unsigned(to_bits(want)));
      return reason;
    }
  }
  return nullptr;
}

}  // namespace moefuse::gemm::detail
