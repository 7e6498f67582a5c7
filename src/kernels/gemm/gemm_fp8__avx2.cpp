// AVX2 + FMA + F16C FP8 block-scaled GEMM (gemm.h, "FP8 block-scaled"): e4m3 widened in registers, never in memory.
//
// Each 8-column vector of each 128-row block forms its weights as the packer chose (fp8_layout.h says why and how
// the choice is checked):
//   table      x = the 8 codes sign-extended to 32 bits (vpmovsxbd); vpermps picks t1[x & 7] per lane; adding
//              (x << 20) & 0x87800000 puts the code's exponent field on the entry's and its sign bit on bit 31.
//              Four instructions per 8 weights beside the load.
//   table_sub  as table, and t0[x & 7] (a second vpermps) replaces t1's entry where the exponent field is 0: eight.
//   scales     the contract's arithmetic (dequant8 below), about 14.
// A tile uses the table path when every vector it covers has form table, table_sub when some has table_sub (a
// table vector's t0 is stored too and its codes never select it), and otherwise forms the block's weights of the
// vectors it covers into a buffer first, each vector by its own form, and runs on them.
//
// The FMAs run under DenormalsAreZero (the bf16 contract, gemm.h), in its pairs of k (k_order.h). The scales form's
// multiplies are the contract's weight only in the default mode (an fp32 subnormal product rounds to bf16, a subnormal
// scale is not zero), so form_block runs them under FloatDefaultMode, outside the FMA loops; the table forms are
// integer arithmetic, which MXCSR does not touch.
//
// dequant8: 8 bytes are widened to 16-bit lanes, where ((q << 7) & 0x3f80) | ((q << 8) & 0x8000) is the fp16 whose
// exponent and mantissa fields hold e4m3's, i.e. e4m3's value times 2^-8 (the exponent biases are 15 and 7; e4m3's
// subnormals land on fp16 subnormals, exactly); vcvtph2ps widens it and one multiply by 2^8 gives the e4m3 value.
// Then the scale (one fp32 rounding) and the integer round-to-nearest-even to bf16 ((x + 0x7fff + bit 16) &
// 0xffff0000: to_bf16's arithmetic; a NaN product stays NaN because the packer stores NaN scales as the one quiet
// NaN); the two NaN codes are forced to all-ones (a NaN) last. Why through fp16: placing the bits straight into an
// fp32 makes e4m3's subnormal codes fp32 subnormals, and multiplies with subnormal operands are slow on Zen 3.
//
// Tiles: for M <= 2 a tile is M rows x 32 columns, the panel's weights formed in registers once per k; up to 11 rows,
// 8-column strips with tiles of up to 8 rows (one weight vector per k shared by 8 rows). From 12 rows the weights of
// one 128-row block of a panel are formed once into an fp32 buffer on the stack (16 KiB, in L1), and
// tiles of up to 6 rows x 16 columns run the float kernel's loop on it, each tile's accumulators carried from block
// to block through C (stored and reloaded exactly, so every output is still one fma chain from +0 in the contract's
// order: blocks but the last have an even number of rows, so no pair of k straddles two blocks): the
// weights cost once per block however many rows there are, as in the bf16 kernel, and the kernel allocates nothing.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <utility>

#include "base/bf16_dot.h"
#include "kernels/gemm/fp8_layout.h"
#include "kernels/gemm/row_blocks.h"
#include "kernels/gemm/tile__avx2.h"
#include "kernels/gemm/variants.h"

namespace moefuse::gemm::detail {
namespace {

constexpr int kMaxRowsFullPanel = 2;
constexpr int kMaxRowsStrip = 8;
// From this many rows the block path (see the top) is faster than 8-column strips; measured on Zen 3 with K = N =
// 2048 (M = 8: strips 1.2 ms, blocks 1.5 ms; M = 12 equal; M = 32: strips 4.9 ms, blocks 4.0 ms). Both give the
// same bits.
constexpr int kBlockPathRows = 12;
constexpr int kBlockTileRows = 6;

struct Consts {
  __m128i magnitude16 = _mm_set1_epi16(0x3F80);
  __m128i sign16 = _mm_set1_epi16(int16_t(0x8000));
  __m128i low7 = _mm_set1_epi16(0x7F);
  __m256 two8 = _mm256_set1_ps(256.0f);
  __m256i one = _mm256_set1_epi32(1);
  __m256i half = _mm256_set1_epi32(0x7FFF);
  __m256i high = _mm256_set1_epi32(int(0xFFFF0000u));
  __m256i sign_exponent = _mm256_set1_epi32(int(0x87800000u));
  __m256i exponent_field = _mm256_set1_epi32(0x78);
};

// The fp32 weights of 8 columns from their 8 e4m3 bytes at q8 and their scales s: the contract's arithmetic.
__attribute__((always_inline)) inline __m256 dequant8(const Consts& k, const uint8_t* q8, __m256 s) {
  const __m128i x = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q8)));
  const __m128i h = _mm_or_si128(_mm_and_si128(_mm_slli_epi16(x, 7), k.magnitude16),
                                 _mm_and_si128(_mm_slli_epi16(x, 8), k.sign16));
  const __m256 v = _mm256_mul_ps(_mm256_cvtph_ps(h), k.two8);  // the e4m3 value, exactly
  const __m256i p = _mm256_castps_si256(_mm256_mul_ps(v, s));
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(p, 16), k.one);
  const __m256i r = _mm256_and_si256(_mm256_add_epi32(_mm256_add_epi32(p, k.half), lsb), k.high);
  const __m128i nan = _mm_cmpeq_epi16(_mm_and_si128(x, k.low7), k.low7);
  return _mm256_castsi256_ps(_mm256_or_si256(r, _mm256_cvtepi16_epi32(nan)));
}

// The weights of 8 columns by the table formula (fp8_layout.h's fp8_table_bits); with Sub, t0 where E == 0.
template <bool Sub>
__attribute__((always_inline)) inline __m256 table8(const Consts& k, const uint8_t* q8, __m256 t1, __m256 t0) {
  const __m256i x = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q8)));
  __m256 t = _mm256_permutevar8x32_ps(t1, x);
  if constexpr (Sub) {
    const __m256i e0 = _mm256_cmpeq_epi32(_mm256_and_si256(x, k.exponent_field), _mm256_setzero_si256());
    t = _mm256_blendv_ps(t, _mm256_permutevar8x32_ps(t0, x), _mm256_castsi256_ps(e0));
  }
  const __m256i ex = _mm256_and_si256(_mm256_slli_epi32(x, 20), k.sign_exponent);
  return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(t), ex));
}

// 8 bf16 at p widened to fp32 lanes.
inline __m256 widen_bf16x8(const std::byte* p) {
  return _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}

// One block of `rows` rows for vectors v0 .. v0 + NV - 1, every vector formed by the table path (Sub: table_sub).
template <int MR, int NV, bool Sub>
__attribute__((always_inline)) inline void table_block(const Consts& k, const std::byte* blk, int v0, int64_t rows,
                                                       const float* ak, int64_t lda, __m256 (&acc)[MR][NV]) {
  __m256 t1[NV], t0[NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    t1[v] = widen_bf16x8(blk + size_t(v0 + v) * kFp8VectorBytes);
    t0[v] = Sub ? widen_bf16x8(blk + size_t(v0 + v) * kFp8VectorBytes + 16) : t1[v];
  }
  const auto* q = reinterpret_cast<const uint8_t*>(blk + kFp8HeadBytes) + 8 * v0;
  const auto step = [&](int64_t r) __attribute__((always_inline)) {
    __m256 w[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) w[v] = table8<Sub>(k, q + r * kGemmNR + 8 * v, t1[v], t0[v]);
    fma_step<MR, NV>(ak + r, lda, w, acc);
  };
  walk_k<true>(rows, step, [&]() __attribute__((always_inline)) { zero_pair(acc); });
}

// One block of `rows` rows for vectors v0 .. v0 + NV - 1 from its weights formed in w (row r at w + 32 r).
template <int MR, int NV>
__attribute__((always_inline)) inline void formed_block(const float* w, int v0, int64_t rows, const float* ak,
                                                        int64_t lda, __m256 (&acc)[MR][NV]) {
  const auto step = [&](int64_t r) __attribute__((always_inline)) {
    __m256 wv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) wv[v] = _mm256_load_ps(w + r * kGemmNR + 8 * (v0 + v));
    fma_step<MR, NV>(ak + r, lda, wv, acc);
  };
  walk_k<true>(rows, step, [&]() __attribute__((always_inline)) { zero_pair(acc); });
}

// The contract's weights of `rows` rows of one vector of form scales (dequant8), into w (row r at w + 32 r). Not
// inlined: its caller switches MXCSR to the default mode around it, and the compiler must not move this arithmetic
// across the switch.
__attribute__((noinline)) void form_scales_rows(const Consts& k, const uint8_t* q, __m256 s, int64_t rows, float* w) {
  for (int64_t r = 0; r < rows; ++r) _mm256_store_ps(w + r * kGemmNR, dequant8(k, q + r * kGemmNR, s));
}

// The fp32 weights of block g's vectors v0 .. v0 + nv - 1 into w (row r at w + 32 r, vector v at column 8 v), each
// vector by its form. Called inside the kernel's DenormalsAreZero scope: the table forms are integer arithmetic
// (exact whatever MXCSR says); the scales form multiplies in fp32 (dequant8), and the contract's weight is that
// product in the default mode, a subnormal one rounded to bf16 and not flushed (and a subnormal scale not read as
// zero), so it runs under FloatDefaultMode.
void form_block(const Consts& k, const std::byte* panel, int64_t K, int64_t g, float* w, int v0 = 0, int nv = 4) {
  const std::byte* blk = panel + fp8_block_offset(K, g);
  const uint8_t forms = reinterpret_cast<const uint8_t*>(panel)[g];
  const auto* q = reinterpret_cast<const uint8_t*>(blk + kFp8HeadBytes);
  const int64_t rows = fp8_block_rows(K, g);
  for (int v = v0; v < v0 + nv; ++v) {
    const std::byte* area = blk + size_t(v) * kFp8VectorBytes;
    const Fp8Form f = fp8_form(forms, v);
    if (f == Fp8Form::scales) {
      const FloatDefaultMode mode;
      form_scales_rows(k, q + 8 * v, _mm256_loadu_ps(reinterpret_cast<const float*>(area)), rows, w + 8 * v);
    } else {
      const __m256 t1 = widen_bf16x8(area), t0 = widen_bf16x8(area + 16);
      for (int64_t r = 0; r < rows; ++r)
        _mm256_store_ps(w + r * kGemmNR + 8 * v, table8<true>(k, q + r * kGemmNR + 8 * v, t1, t0));
    }
  }
}

// MR rows x 8*NV columns starting at vector v0 of the panel at `panel`; `width`: valid columns counted from 8*v0.
template <int MR, int NV>
void tile(int64_t K, const float* a, int64_t lda, const std::byte* panel, int v0, float* c, int64_t ldc, int width) {
  const Consts k;
  __m256 acc[MR][NV];
  zero_tile(acc);
  for (int64_t g = 0; g < fp8_blocks(K); ++g) {
    const std::byte* blk = panel + fp8_block_offset(K, g);
    const uint8_t forms = reinterpret_cast<const uint8_t*>(panel)[g];
    int worst = 0;
    for (int v = 0; v < NV; ++v) worst = std::max(worst, int(fp8_form(forms, v0 + v)));
    const float* ak = a + g * kFp8BlockK;
    const int64_t rows = fp8_block_rows(K, g);
    if (worst == int(Fp8Form::table)) {
      table_block<MR, NV, false>(k, blk, v0, rows, ak, lda, acc);
    } else if (worst == int(Fp8Form::table_sub)) {
      table_block<MR, NV, true>(k, blk, v0, rows, ak, lda, acc);
    } else {
      // A vector of form scales: the tile's vectors formed first, in the default mode (form_block), then the loop on
      // them. Such blocks are rare in checkpoints.
      alignas(64) float w[kFp8BlockK * kGemmNR];
      form_block(k, panel, K, g, w, v0, NV);
      formed_block<MR, NV>(w, v0, rows, ak, lda, acc);
    }
  }
  store_tile<MR, NV>(acc, c, ldc, width);
}

// MR rows x 16 columns (half h of the panel) of one block from the formed weights w; acc starts from C unless first.
template <int MR>
void block_tile(int64_t rows, const float* w, int h, const float* a, int64_t lda, float* c, int64_t ldc, int width,
                bool first) {
  __m256 acc[MR][2];
  if (first) zero_tile(acc);
  else load_tile<MR, 2>(acc, c, ldc, width);
  formed_block<MR, 2>(w, 2 * h, rows, a, lda, acc);
  store_tile<MR, 2>(acc, c, ldc, width);
}

using BlockTileFn = void (*)(int64_t, const float*, int, const float*, int64_t, float*, int64_t, int, bool);

template <int... R>
constexpr auto make_block_tiles(std::integer_sequence<int, R...>) {
  return std::array<BlockTileFn, sizeof...(R)>{&block_tile<R + 1>...};
}

// Panels of [n0, n1) for M > kMaxRowsFullPanel rows: block by block, weights formed once (see the top).
void gemm_by_blocks(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda, const std::byte* b,
                    float* c, int64_t ldc) {
  static constexpr auto tiles = make_block_tiles(std::make_integer_sequence<int, kBlockTileRows>{});
  const Consts k;
  alignas(64) float w[kFp8BlockK * kGemmNR];
  const size_t panel_bytes = fp8_panel_bytes(K);
  if (K == 0) {  // no block: C = +0, the empty chain
    for (int64_t m = 0; m < M; ++m) std::fill(c + m * ldc, c + m * ldc + (n1 - n0), 0.0f);
    return;
  }
  for (int64_t p0 = n0; p0 < n1; p0 += kGemmNR) {
    const std::byte* panel = b + size_t(p0 / kGemmNR) * panel_bytes;
    const int width = int(std::min<int64_t>(kGemmNR, n1 - p0));
    for (int64_t g = 0; g < fp8_blocks(K); ++g) {
      form_block(k, panel, K, g, w);
      for (int h = 0; h < 2 && 16 * h < width; ++h)
        for_row_blocks(M, kBlockTileRows, [&](int64_t m0, int64_t rows) {
          tiles[size_t(rows - 1)](fp8_block_rows(K, g), w, h, a + m0 * lda + g * kFp8BlockK, lda,
                                  c + m0 * ldc + (p0 - n0) + 16 * h, ldc, std::min(16, width - 16 * h), g == 0);
        });
    }
  }
}

using TileFn = void (*)(int64_t, const float*, int64_t, const std::byte*, int, float*, int64_t, int);

template <int NV, int... R>
constexpr auto make_tiles(std::integer_sequence<int, R...>) {
  return std::array<TileFn, sizeof...(R)>{&tile<R + 1, NV>...};
}

}  // namespace

void gemm_fp8w_f32_8x8__avx2(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda,
                             const void* b_data, float* c, int64_t ldc) {
  assert(M >= 0 && K >= 0 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  const DenormalsAreZero guard;  // the bf16 contract's FMAs (weights formed in the default mode: form_block)
  if (M >= kBlockPathRows) return gemm_by_blocks(M, K, n0, n1, a, lda, static_cast<const std::byte*>(b_data), c, ldc);
  static constexpr auto full = make_tiles<4>(std::make_integer_sequence<int, kMaxRowsFullPanel>{});
  static constexpr auto strip = make_tiles<1>(std::make_integer_sequence<int, kMaxRowsStrip>{});
  run_tiles(M, K, n0, n1, a, lda, static_cast<const std::byte*>(b_data), fp8_panel_bytes(K), c, ldc, full, strip);
}

}  // namespace moefuse::gemm::detail
