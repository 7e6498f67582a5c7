// AVX-512 VNNI W4A8 GEMM (gemm.h, "int4 group-wise x int8"): exact integer sums per group with vpdpbusd, then the
// contract's fp32 steps.
//
// vpdpbusd multiplies 4 unsigned bytes by 4 signed bytes and adds the 4 products to an int32 lane: exactly a nibble
// q (0..15, unsigned) times an activation (int8, signed), four k at once, with no saturation (products <= 15·128,
// and a group's sum <= 15·128·G < 2^24 fits an int32 lane).
//
// Unpacking. Four packed rows k .. k+3 of a group block are 64 consecutive bytes: one zmm, row i in 128-bit lane i.
// vpermd (dword i of lane L <- dword L of row i) then vpshufb (a 4 x 4 byte transpose in each lane) leave in dword j
// the four bytes j of rows k .. k+3, k in byte order: the vpdpbusd operand of byte column j. Its low nibbles
// (& 0x0F) are column 2j's four q; its high nibbles, masked in place (& 0xF0), are 16 q of column 2j + 1, whose sums
// are shifted right by 4 once per group (exact: multiples of 16). So the even columns land in one accumulator and
// the odd ones in another: the group's scales and zero points are permuted to that order once per group, and the
// results back once per tile (tile__avx512.h).
//
// Why the zero point is subtracted once per group: Σ (q - z) a = Σ q a - z Σ a. The kernel sums q a with unsigned q
// and subtracts z · Σ a; Σ a over the group is one vpdpbusd of ones with the row's bytes per 64, per row and group,
// shared by the 32 columns. Both are exact int32, so isum_g is the contract's integer; then
// acc = fma(float(isum_g), s, acc) (exact conversion: below 2^24) group by group, and C = acc · a_scale at the end.
//
// Tiles: MR <= 6 rows x one panel (2 int32 and 2 fp32 accumulators per row); the first row block of each panel
// prefetches it 4 KB ahead (kInt4PrefetchBytes).
//
// Measured on the 2-core Zen 5 (family 26 model 2), 2048 x 2048, G = 128, cold weights, paired with the AVX2 row:
// M = 1: 74 us against 104 us (32 GB/s, 92% of one core's 34.7 GB/s read bandwidth); M = 8: 157 against 545 us;
// M = 64: 451 against 122 GOP/s (46% of the measured vpdpbusd peak).
//
// Tried and not kept (same machine, paired runs against this kernel beside another build, G = 128, 2048 x 2048): a
// block path for large M that unpacks each panel once per chunk of 256 or 512 k into a stack buffer (the vpdpbusd
// operands, 32 bytes per k, and the groups' scales and zero points) and runs every row block over it, tiles of 6, 8, 10
// or 12 rows carried through C between chunks (bitwise equal to this kernel). None was faster: M = 512 at 360-480 GOP/s
// against 410-590 for this kernel, M = 64 390-510 against 440-600, M = 16 370-390 against 510-650 (the 8-row tile:
// about equal at M = 64 and 512). The unpacking (4 ops per 4 k, off the vpdpbusd pipes) is not what bounds this tile;
// and GCC 12 spills some of a 10- or 12-row tile's 20-24 int32 sums inside the k loop even in a function of its own.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cstring>
#include <utility>

#include "kernels/gemm/int4_layout.h"
#include "kernels/gemm/row_blocks.h"
#include "kernels/gemm/tile__avx512.h"
#include "kernels/gemm/variants.h"

namespace moefuse::gemm::detail {
namespace {

constexpr int kMaxRows = 6;

struct Consts {
  __m512i nibble = _mm512_set1_epi8(0x0F);
  __m512i ones8 = _mm512_set1_epi8(1);
  // vpermd indices: dword 4L + i <- dword 4i + L; vpshufb indices (per lane): byte 4c + i <- byte 4i + c. The same
  // 4 x 4 transpose, of dwords across lanes and of bytes within one.
  __m512i transpose = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  __m512i transpose8 =
      _mm512_maskz_broadcast_i32x4(0xffff, _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
  __m512i magic = _mm512_set1_epi32(int(kInt4MagicBits));
};

// Σ a[0 .. G) of one row (int8) as int32 in every lane.
template <int G>
__attribute__((always_inline)) inline __m512i row_sum(const Consts& k, const int8_t* a) {
  __m512i s = _mm512_setzero_si512();
  if constexpr (G == 32) {
    s = _mm512_dpbusd_epi32(s, k.ones8, _mm512_maskz_loadu_epi8(__mmask64(0xffffffffull), a));
  } else {
#pragma GCC unroll 2
    for (int c = 0; c < G / 64; ++c) s = _mm512_dpbusd_epi32(s, k.ones8, _mm512_loadu_si512(a + 64 * c));
  }
  // Every lane the sum of all 16 (maskz forms, as in tile below; _mm512_reduce_add_epi32 would trip the warning too).
  s = _mm512_add_epi32(s, _mm512_maskz_shuffle_i32x4(0xffff, s, s, 0x4E));
  s = _mm512_add_epi32(s, _mm512_maskz_shuffle_i32x4(0xffff, s, s, 0xB1));
  s = _mm512_add_epi32(s, _mm512_maskz_shuffle_epi32(0xffff, s, _MM_PERM_BADC));
  return _mm512_add_epi32(s, _mm512_maskz_shuffle_epi32(0xffff, s, _MM_PERM_CDAB));
}

// MR rows x the 32 columns of the panel at `panel`; `width`: valid columns. pf > 0: prefetch the panel pf bytes
// ahead (tile__avx512.h, kInt4PrefetchBytes); the first row block of a panel does, the others find it in cache.
template <int G, int MR>
void tile(int64_t K, const int8_t* a, int64_t lda, const float* a_scale, std::byte* panel, float* c, int64_t ldc,
          int width, int64_t pf) {
  const Consts k;
  __m512 facc[MR][2];  // fp32 chains, even and odd columns
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m) facc[m][0] = facc[m][1] = _mm512_setzero_ps();
  for (int64_t g = 0; g < K / G; ++g) {
    const Int4Block blk = int4_block(panel, G, g);
    const int8_t* ag = a + g * G;
    __m512i acc[MR][2];  // Σ q a (even columns), Σ 16 q a (odd columns)
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) acc[m][0] = acc[m][1] = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int r = 0; r < G; r += 4) {
      if (pf > 0) prefetch_t0(blk.rows + r * kInt4RowBytes + pf);  // the line this step reads, pf bytes on
      __m512i x = _mm512_loadu_si512(blk.rows + r * kInt4RowBytes);
      // maskz forms (all lanes set) here and below: the plain intrinsics trip a GCC 12 false -Wmaybe-uninitialized
      // (see load_row in gemm__avx512.cpp); they compile to the plain instructions.
      x = _mm512_maskz_shuffle_epi8(~__mmask64(0), _mm512_maskz_permutexvar_epi32(0xffff, k.transpose, x),
                                    k.transpose8);
      const __m512i even = _mm512_maskz_and_epi32(0xffff, x, k.nibble);
      const __m512i odd16 = _mm512_maskz_andnot_epi32(0xffff, k.nibble, x);
#pragma GCC unroll 8
      for (int m = 0; m < MR; ++m) {
        int32_t a4;
        std::memcpy(&a4, ag + m * lda + r, 4);
        const __m512i av = _mm512_set1_epi32(a4);
        acc[m][0] = _mm512_dpbusd_epi32(acc[m][0], even, av);
        acc[m][1] = _mm512_dpbusd_epi32(acc[m][1], odd16, av);
      }
    }
    // isum_g = Σ q a - z Σ a, then acc = fma(float(isum_g), s, acc): in even/odd column order.
    __m512 se, so, zbe, zbo;
    columns_to_even_odd(blk.scale, se, so);
    columns_to_even_odd(blk.zero_bias, zbe, zbo);
    const __m512i ze = _mm512_sub_epi32(_mm512_castps_si512(zbe), k.magic);  // bits of 2^23 + z less 2^23's: z
    const __m512i zo = _mm512_sub_epi32(_mm512_castps_si512(zbo), k.magic);
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      const __m512i asum = row_sum<G>(k, ag + m * lda);
      const __m512i ie = _mm512_sub_epi32(acc[m][0], _mm512_maskz_mullo_epi32(0xffff, ze, asum));
      const __m512i io =
          _mm512_sub_epi32(_mm512_maskz_srai_epi32(0xffff, acc[m][1], 4), _mm512_maskz_mullo_epi32(0xffff, zo, asum));
      facc[m][0] = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(0xffff, ie), se, facc[m][0]);
      facc[m][1] = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(0xffff, io), so, facc[m][1]);
    }
  }
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m) {
    const __m512 rs = _mm512_set1_ps(a_scale[m]);
    __m512 lo = _mm512_mul_ps(facc[m][0], rs), hi = _mm512_mul_ps(facc[m][1], rs);
    even_odd_to_columns(lo, hi);
    _mm512_mask_storeu_ps(c + m * ldc, column_mask(width, 0), lo);
    _mm512_mask_storeu_ps(c + m * ldc + 16, column_mask(width, 1), hi);
  }
}

using TileFn = void (*)(int64_t, const int8_t*, int64_t, const float*, std::byte*, float*, int64_t, int, int64_t);

template <int G, int... R>
constexpr auto make_tiles(std::integer_sequence<int, R...>) {
  return std::array<TileFn, sizeof...(R)>{&tile<G, R + 1>...};
}

template <int G>
void gemm_u4s8(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a, int64_t lda, const float* a_scale,
               const void* b_data, float* c, int64_t ldc) {
  assert(M >= 0 && K >= 0 && K % G == 0 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  static constexpr auto tiles = make_tiles<G>(std::make_integer_sequence<int, kMaxRows>{});
  if (M <= 0) return;
  for_each_int4_panel(b_data, K, G, n0, n1, [&](std::byte* panel, int64_t p0, int64_t width) {
    for_row_blocks(M, kMaxRows, [&](int64_t m0, int64_t rows) {
      tiles[rows - 1](K, a + m0 * lda, lda, a_scale + m0, panel, c + m0 * ldc + (p0 - n0), ldc, int(width),
                      m0 == 0 ? kInt4PrefetchBytes : 0);
    });
  });
}

}  // namespace

MOEFUSE_INT4_GROUPS(MOEFUSE_GEMM_U4S8_DEFINE, 6x32, avx512vnni)

}  // namespace moefuse::gemm::detail
