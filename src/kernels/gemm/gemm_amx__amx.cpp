// The AMX kernels: amx_gemm.h's drivers on the tile instructions. Hand-written because no library offers a GEMM on
// moefuse's packed layouts whose order of sums is fixed independently of M and threads (docs/kernels.md).
//
// A thread must load a tile configuration before its first tile instruction, and the configuration (and the 8 KB of
// tile data the OS then saves on every context switch) stays until TILERELEASE. Each call configures on entry and
// releases on exit, so a call is self-contained on whatever thread runs it, and threads that stop calling carry no
// tile state. LDTILECFG costs well under a microsecond against the tens of microseconds a call's tiles take.
#include <immintrin.h>

#include <cassert>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "kernels/gemm/amx_gemm.h"
#include "kernels/gemm/amx_gemm_u4s8.h"
#include "kernels/gemm/variants.h"

namespace moefuse::gemm::detail {
namespace {

// GCC's tile intrinsics paste the tile number into the instruction's text, so they take a literal, not a template
// argument: each member below spells its tiles out (every case folds at compile time).
#define MOEFUSE_EACH_TILE(op) \
  switch (t) {                \
    case 0: op(0); break;     \
    case 1: op(1); break;     \
    case 2: op(2); break;     \
    case 3: op(3); break;     \
    case 4: op(4); break;     \
    case 5: op(5); break;     \
    case 6: op(6); break;     \
    case 7: op(7); break;     \
  }

struct AmxTiles {
  static void configure() {
    static const amx::TileConfig config{};
    __asm__ volatile("" ::: "memory");  // _tile_loadconfig declares 8 of the 64 bytes it reads (see load below)
    _tile_loadconfig(&config);
  }
  static void configure(const amx::TileConfig& config) {
    __asm__ volatile("" ::: "memory");
    _tile_loadconfig(&config);
  }
  static void release() { _tile_release(); }
  template <int t>
  static void zero() {
#define MOEFUSE_ZERO(i) _tile_zero(i)
    MOEFUSE_EACH_TILE(MOEFUSE_ZERO)
#undef MOEFUSE_ZERO
  }
  // GCC's _tile_loadd is an asm statement that takes the address in a register and declares no memory input, so
  // the compiler would be free to drop or move the stores that fill an edge buffer (a memset and memcpy into a local
  // array whose bytes it never sees read) past the load. The empty asm with a memory clobber on each side keeps every
  // store before the load and every later store after it. (_tile_stored declares its memory clobber itself.)
  template <int t>
  static void load(const void* p, int64_t stride) {
    __asm__ volatile("" ::: "memory");
#define MOEFUSE_LOAD(i) _tile_loadd(i, p, stride)
    MOEFUSE_EACH_TILE(MOEFUSE_LOAD)
#undef MOEFUSE_LOAD
    __asm__ volatile("" ::: "memory");
  }
  template <int t>
  static void store(void* p, int64_t stride) {
#define MOEFUSE_STORE(i) _tile_stored(i, p, stride)
    MOEFUSE_EACH_TILE(MOEFUSE_STORE)
#undef MOEFUSE_STORE
  }
  // amx_gemm.h's pair row (out[2 j] = even[j], out[2 j + 1] = odd[j] or 0) in two vpermt2w: the words of
  // (even, odd) taken alternately, columns 0-15 into the first 64 bytes and 16-31 into the second.
  static void pair_row(const uint16_t* even, const uint16_t* odd, uint16_t* out) {
    alignas(64) static constexpr uint16_t kLo[32] = {0, 32, 1, 33, 2, 34, 3, 35, 4, 36, 5, 37, 6, 38, 7, 39,
                                                     8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
    alignas(64) static constexpr uint16_t kHi[32] = {16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55,
                                                     24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63};
    const __m512i e = _mm512_loadu_si512(even);
    const __m512i o = odd ? _mm512_loadu_si512(odd) : _mm512_setzero_si512();
    _mm512_storeu_si512(out, _mm512_permutex2var_epi16(e, _mm512_load_si512(kLo), o));
    _mm512_storeu_si512(out + 32, _mm512_permutex2var_epi16(e, _mm512_load_si512(kHi), o));
  }
  // amx_gemm_u4s8.h's quad rows (byte 4 j + i of a quad row: q(4 r + i, j) - z[j]), 4 group rows (one zmm) at a
  // time: the VNNI W4A8 kernel's 4 x 4 transpose (vpermd, vpshufb) leaves in dword j the bytes j of the 4 rows,
  // whose low nibbles are column 2j and high nibbles column 2j + 1; two vpermt2d put the columns in order, and each
  // column's z, in the 4 bytes of its dword, is subtracted bytewise (0..15 minus 0..15: no wrap).
  static void unpack_quads(const uint8_t* rows, const int8_t* z, int quads, int8_t* out) {
    const __m512i transpose = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __m512i transpose8 =
        _mm512_maskz_broadcast_i32x4(0xffff, _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
    const __m512i nibble = _mm512_set1_epi8(0x0F);
    const __m512i lo_cols = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi_cols = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const __m512i spread = _mm512_set1_epi32(0x01010101);
    const auto zeros = [&](const int8_t* p) {  // column j's z in the 4 bytes of dword j
      const __m128i z16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      return _mm512_mullo_epi32(_mm512_maskz_cvtepu8_epi32(0xffff, z16), spread);
    };
    const __m512i z0 = zeros(z), z1 = zeros(z + 16);
    for (int r = 0; r < quads; ++r) {
      __m512i x = _mm512_loadu_si512(rows + 64 * r);
      x = _mm512_maskz_shuffle_epi8(~__mmask64(0), _mm512_maskz_permutexvar_epi32(0xffff, transpose, x), transpose8);
      const __m512i lo = _mm512_maskz_and_epi32(0xffff, x, nibble);
      const __m512i hi = _mm512_maskz_and_epi32(0xffff, _mm512_maskz_srli_epi16(~__mmask32(0), x, 4), nibble);
      _mm512_storeu_si512(out + 128 * r,
                          _mm512_maskz_sub_epi8(~__mmask64(0), _mm512_permutex2var_epi32(lo, lo_cols, hi), z0));
      _mm512_storeu_si512(out + 128 * r + 64,
                          _mm512_maskz_sub_epi8(~__mmask64(0), _mm512_permutex2var_epi32(lo, hi_cols, hi), z1));
    }
  }
  // amx_gemm_u4s8.h's fold of one group's int32 tiles into the fp32 chains: vcvtdq2ps (exact below 2^24) and one
  // vfmadd per 16 chains, the scales loaded once per group.
  static void fold(const int32_t (*tiles)[amx::kTileRows * 16], int halves, const float* s, float (*acc)[kGemmNR]) {
    const __m512 s0 = _mm512_loadu_ps(s), s1 = _mm512_loadu_ps(s + 16);
    for (int h = 0; h < halves; ++h)
      for (int r = 0; r < amx::kTileRows; ++r) {
        float* row = acc[16 * h + r];
        const __m512 lo = _mm512_maskz_cvtepi32_ps(0xffff, _mm512_load_si512(tiles[2 * h] + 16 * r));
        const __m512 hi = _mm512_maskz_cvtepi32_ps(0xffff, _mm512_load_si512(tiles[2 * h + 1] + 16 * r));
        _mm512_store_ps(row, _mm512_fmadd_ps(lo, s0, _mm512_load_ps(row)));
        _mm512_store_ps(row + 16, _mm512_fmadd_ps(hi, s1, _mm512_load_ps(row + 16)));
      }
  }
  // The drivers' four products: C(t, h) = tile 2t + h += A(t) = tile 4 + t times B(h) = tile 6 + h.
  template <int c, int x, int y>
  static void dp_s8() {
    static_assert(x == 4 + c / 2 && y == 6 + c % 2);
    if constexpr (c == 0) _tile_dpbssd(0, 4, 6);
    else if constexpr (c == 1) _tile_dpbssd(1, 4, 7);
    else if constexpr (c == 2) _tile_dpbssd(2, 5, 6);
    else _tile_dpbssd(3, 5, 7);
  }
  template <int c, int x, int y>
  static void dp_bf16() {
    static_assert(x == 4 + c / 2 && y == 6 + c % 2);
    if constexpr (c == 0) _tile_dpbf16ps(0, 4, 6);
    else if constexpr (c == 1) _tile_dpbf16ps(1, 4, 7);
    else if constexpr (c == 2) _tile_dpbf16ps(2, 5, 6);
    else _tile_dpbf16ps(3, 5, 7);
  }
};
#undef MOEFUSE_EACH_TILE

// Whether every A[m, k] (m < M, k < K) is a bf16 value (its low 16 bits zero).
bool rows_are_bf16(int64_t M, int64_t K, const float* a, int64_t lda) {
  const __m512i low = _mm512_set1_epi32(0xffff);
  for (int64_t m = 0; m < M; ++m) {
    const float* row = a + m * lda;
    __m512i any = _mm512_setzero_si512();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) any = _mm512_or_si512(any, _mm512_loadu_si512(row + k));
    if (k < K) any = _mm512_or_si512(any, _mm512_maskz_loadu_epi32(__mmask16((1u << (K - k)) - 1), row + k));
    if (_mm512_test_epi32_mask(any, low)) return false;
  }
  return true;
}

}  // namespace

void unpack_u4_quads__amx(const uint8_t* rows, const int8_t* z, int quads, int8_t* out) {
  AmxTiles::unpack_quads(rows, z, quads, out);
}

void fold_u4s8_tiles__amx(const int32_t (*tiles)[256], int halves, const float* s, float (*acc)[32]) {
  AmxTiles::fold(tiles, halves, s, acc);
}

void gemm_s8_s32_32x32__amx(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a, int64_t lda,
                            const int8_t* b, const int32_t* col_sums, int32_t* c, int64_t ldc) {
  assert(M >= 0 && K >= 0 && K < 65536 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  if (M <= 0 || n0 >= n1) return;
  // Few rows leave most of each 16-row tile product idle: the VNNI kernel reads the same panels and its sums are
  // exact too, so the bits are the same either way (variants.h, kAmxInt8MinRows: where the crossover was measured).
  if (M < kAmxInt8MinRows) {
    gemm_s8_s32_6x64__avx512vnni(M, K, n0, n1, a, lda, b, col_sums, c, ldc);
    return;
  }
  // signed x signed: col_sums (VNNI's unsigned-shift correction) is not needed. The schedule: amx_gemm.h's int8
  // schedules (a dense copy of A, C in the tiles for up to 2048 k, B prefetched a step ahead).
  amx::gemm_s8_packed<AmxTiles>(M, K, n0, n1, a, lda, b, c, ldc);
}

// The schedules of amx_gemm.h's int8 driver, by name, for bench/gemm_bench.cpp (amx_gemm.h).
template <auto Driver>
void s8_schedule(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a, int64_t lda, const int8_t* b,
                 const int32_t*, int32_t* c, int64_t ldc) {
  assert(M >= 0 && K >= 0 && K < 65536 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  if (M <= 0 || n0 >= n1) return;
  Driver(M, K, n0, n1, a, lda, b, c, ldc);
}

}  // namespace moefuse::gemm::detail

namespace moefuse::gemm::amx {

std::span<const S8Schedule> s8_schedules() {
  static std::deque<std::string> names;  // gemm_s8_s32_32x32_<schedule>__amx (a deque: c_str() stays put)
  static const std::vector<S8Schedule> schedules = [] {
    std::vector<S8Schedule> out;
    visit_s8_schedules<gemm::detail::AmxTiles>([&](const char* name, auto driver) {
      names.push_back("gemm_s8_s32_32x32_" + std::string(name) + "__amx");
      out.push_back({names.back().c_str(), &gemm::detail::s8_schedule<decltype(driver)::value>});
    });
    return out;
  }();
  return schedules;
}

}  // namespace moefuse::gemm::amx

namespace moefuse::gemm::detail {

namespace {
template <amx::BF16A Source>
void bf16_rows_on_tiles(int64_t M, int64_t K, int64_t n0, int64_t n1, const bfloat16* a, int64_t lda, const void* b,
                        float* c, int64_t ldc) {
  assert(M >= 0 && K >= 0 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  if (M <= 0 || n0 >= n1) return;
  amx::gemm_bf16<AmxTiles, amx::Bf16Rows, Source>(M, K, n0, n1, amx::Bf16Rows{a, lda}, static_cast<const bfloat16*>(b),
                                                  c, ldc);
}

template <amx::BF16A Source>
void f32_rows_on_tiles(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda, const void* b,
                       float* c, int64_t ldc) {
  assert(M >= 0 && K >= 0 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  if (M <= 0 || n0 >= n1) return;
  if (!rows_are_bf16(M, K, a, lda)) {  // the tiles take bf16 A only: such a call is computed portably
    gemm_bf16w_f32_6x64__avx512bf16(M, K, n0, n1, a, lda, b, c, ldc);
    return;
  }
  amx::gemm_bf16<AmxTiles, amx::F32Rows, Source>(M, K, n0, n1, amx::F32Rows{a, lda}, static_cast<const bfloat16*>(b),
                                                 c, ldc);
}
}  // namespace

void gemm_bf16w_bf16a_f32_32x32__amx(int64_t M, int64_t K, int64_t n0, int64_t n1, const bfloat16* a, int64_t lda,
                                     const void* b, float* c, int64_t ldc) {
  bf16_rows_on_tiles<amx::BF16A::in_place>(M, K, n0, n1, a, lda, b, c, ldc);
}

void gemm_bf16w_f32_32x32__amx(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda,
                               const void* b, float* c, int64_t ldc) {
  f32_rows_on_tiles<amx::BF16A::in_place>(M, K, n0, n1, a, lda, b, c, ldc);
}

// W4A8: fewer than kAmxInt8MinRows rows run the VNNI W4A8 kernel, as for int8 (the contract's integer sums are
// exact in either, and the fp32 steps the same: the same bits).
namespace {
template <int G>
void gemm_u4s8(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a, int64_t lda, const float* a_scale,
               const void* b, float* c, int64_t ldc) {
  assert(M >= 0 && K >= 0 && K % G == 0 && K < 65536 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  if (M <= 0 || n0 >= n1) return;
  if (M < kAmxInt8MinRows) {
    if constexpr (G == 32) gemm_u4g32w_s8_f32_6x64__avx512vnni(M, K, n0, n1, a, lda, a_scale, b, c, ldc);
    else if constexpr (G == 64) gemm_u4g64w_s8_f32_6x64__avx512vnni(M, K, n0, n1, a, lda, a_scale, b, c, ldc);
    else gemm_u4g128w_s8_f32_6x64__avx512vnni(M, K, n0, n1, a, lda, a_scale, b, c, ldc);
    return;
  }
  amx::gemm_u4s8<AmxTiles, G>(M, K, n0, n1, a, lda, a_scale, b, c, ldc);
}
}  // namespace

MOEFUSE_INT4_GROUPS(MOEFUSE_GEMM_U4S8_DEFINE, 32x32, amx)

}  // namespace moefuse::gemm::detail

namespace moefuse::gemm::amx {

std::span<const Bf16Schedule> bf16_schedules() {
  using gemm::detail::bf16_rows_on_tiles;
  using gemm::detail::f32_rows_on_tiles;
  static const Bf16Schedule schedules[] = {
      {"gemm_bf16w_f32_32x32_in_place__amx", &f32_rows_on_tiles<BF16A::in_place>,
       "gemm_bf16w_bf16a_f32_32x32_in_place__amx", &bf16_rows_on_tiles<BF16A::in_place>},
      {"gemm_bf16w_f32_32x32_dense__amx", &f32_rows_on_tiles<BF16A::dense>, "gemm_bf16w_bf16a_f32_32x32_dense__amx",
       &bf16_rows_on_tiles<BF16A::dense>},
  };
  return schedules;
}

std::span<const U4S8Schedule> u4s8_schedules() {
  using gemm::detail::AmxTiles;
  static const U4S8Schedule schedules[] = {
      {"gemm_u4g32w_s8_f32_32x32_in_place__amx", 32, &gemm_u4s8<AmxTiles, 32, U4S8A::in_place>},
      {"gemm_u4g32w_s8_f32_32x32_dense__amx", 32, &gemm_u4s8<AmxTiles, 32, U4S8A::dense>},
      {"gemm_u4g64w_s8_f32_32x32_in_place__amx", 64, &gemm_u4s8<AmxTiles, 64, U4S8A::in_place>},
      {"gemm_u4g64w_s8_f32_32x32_dense__amx", 64, &gemm_u4s8<AmxTiles, 64, U4S8A::dense>},
      {"gemm_u4g128w_s8_f32_32x32_in_place__amx", 128, &gemm_u4s8<AmxTiles, 128, U4S8A::in_place>},
      {"gemm_u4g128w_s8_f32_32x32_dense__amx", 128, &gemm_u4s8<AmxTiles, 128, U4S8A::dense>},
  };
  return schedules;
}

}  // namespace moefuse::gemm::amx
