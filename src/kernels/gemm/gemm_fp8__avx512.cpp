// AVX-512 (F/BW/VL/DQ) FP8 block-scaled GEMM (gemm.h, "FP8 block-scaled"): e4m3 widened in registers, never in
// memory, and bitwise the scalar variant for every M, n range and form.
//
// Weights are formed 32 at a time, one panel row, in 16-bit lanes: the contract's weight is a bf16, and the table
// formula of fp8_layout.h (fp8_table_bits) is, on the upper 16 bits it touches, a 16-bit add:
//     w16 = t1[code & 7] + ((int16(int8(code)) << 4) & 0x8780)        (t0[code & 7] where the exponent field is 0)
// (the code's exponent field lands on the bf16 exponent, bits 7..10, its sign on bit 15; a carry past bit 15 is
// the one fp8_table_bits drops past bit 31). Per block the four vectors' t1 (and t0) entries are gathered into one
// 32-word table (vector v's entry m at word 8v + m), so one vpermw with index (code & 7) | 8v looks up all 32
// columns. Per row: vpmovsxbw (the 32 codes), vpsllw + vpand (exponent and sign), vpternlogd (index), vpermw,
// vpaddw — 6 instructions for 32 weights (table_sub: + vptestnmw and a masked vpermw from t0) — then the same two
// instructions as the bf16 kernel's load_row widen the 32 bf16 to fp32, even columns and odd columns, whose
// accumulators are put back in column order at the store (tile__avx512.h).
// A vector of form scales is formed the long way (mixed32: the contract's arithmetic, as in the AVX2 kernel:
// e4m3 through fp16, times the scale, integer round to nearest even to bf16, NaN codes forced to all-ones) and
// blended in by a word mask; such blocks are rare in checkpoints and their speed does not matter. The kernel's FMAs
// run under DenormalsAreZero (the bf16 contract, gemm.h); that long way multiplies in fp32, so it runs in the default
// mode (form_block, FloatDefaultMode): its block is formed into a buffer first, even in the tiles below that
// otherwise form their weights in registers. The table forms are integer arithmetic, which MXCSR does not touch.
//
// Tiles (the weights of a panel row are formed once per tile):
//   M <= 4 rows: tiles of M rows x 64 columns (two panels: 4 independent chains per row, as the bf16 kernel's 6 x 64
//     tiles, so one row is not bound by FMA latency), a last single panel as M x 32.
//   up to kBlockPathRows - 1 rows: M x 32 tiles of at most kDirectRows rows (M = 5..8: one tile, so each weight is
//     formed once).
//   from kBlockPathRows rows: per pair of panels and 128-row block, the weights are formed once as bf16 into a
//     16 KiB buffer on the stack (in L1), and the bf16 kernel's own 6 x 64 tile (12 x 32 for a last single panel)
//     runs on it, its accumulators carried from block to block through C (stored and reloaded exactly, so every
//     output is still one fma chain from +0 in the bf16 contract's order: blocks but the last have an even number
//     of rows, so no pair of k straddles two blocks): prefill costs the bf16 kernel's loop plus forming each
//     weight once (not once per row block), and the kernel allocates nothing.
//
// Measured on a 2-core AMD EPYC Zen 5 (family 26 model 2; gemm_bench, 2048 x 2048, cold weights, a quiet minute
// with a 29 GB/s stream read): M = 1 181-187 us (23-24 GB/s of packed weights; the bf16 kernel 353-355 us, the AVX2
// FP8 kernel 379-400 us), M = 8 372-393 us (bf16 572-582, AVX2 FP8 1299-1366), M = 64 173-183 GFLOP/s (bf16 198,
// AVX2 FP8 82-84), M = 512 182-185 (bf16 205-207, AVX2 FP8 92-101). One row reaches 81-84% of the read bandwidth;
// what stands between is the forming: about 8 vector instructions per 32 weights beside 2 FMAs.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cstring>
#include <utility>

#include "base/bf16_dot.h"
#include "kernels/gemm/fp8_layout.h"
#include "kernels/gemm/row_blocks.h"
#include "kernels/gemm/tile__avx512.h"
#include "kernels/gemm/variants.h"

namespace moefuse::gemm::detail {
namespace {

constexpr int kPairRows = 4;    // two-panel tiles up to this many rows
constexpr int kDirectRows = 8;  // rows of the single-panel tiles that form weights in registers
// From this many rows the block path (see the top). Below it the direct tiles are as fast or faster, although they
// form each weight once per 8 rows: the forming instructions run beside the FMAs (which use two of Zen 5's four
// vector pipes), and there is no buffer, no carry through C and no restart of the A buffer per block. Measured on
// Zen 5 (2048 x 2048, cold weights, time against the bf16 kernel's): M = 16 direct 0.74, blocks 1.2; M = 32 and 48
// both about 1.0..1.1; M = 512 direct 1.1..1.3, blocks 1.0..1.1. Both give the same bits.
constexpr int kBlockPathRows = 64;
constexpr int kBlockPairRows = 6, kBlockSingleRows = 12;  // the bf16 kernel's tiles
// Software prefetch of the codes, this far ahead of the row being formed. The hardware prefetchers alone leave the
// stream well below the read bandwidth: a row of codes is 32 bytes against the bf16 kernel's 64, so the out-of-order
// window holds half as many bytes in flight. Measured (gemm_bench, 2048 x 2048, Zen 5): M = 1 17 -> 22..28 GB/s,
// M = 8 6.5 -> 12 GB/s of packed weights; 1, 4, 8 and 16 KiB ahead were tried, 4 KiB (about one block) was best.
constexpr int kPrefetchBytes = 4096;

// Word j of the index base: 8 (j / 8), where column j's vector starts in a 32-word table.
alignas(64) constexpr std::array<int16_t, 32> kVectorBase = [] {
  std::array<int16_t, 32> v{};
  for (int j = 0; j < 32; ++j) v[size_t(j)] = int16_t(8 * (j / 8));
  return v;
}();
// Word j: where column j's t1 entry m = j % 8 lies in the block's head (vector v's area starts at word 16 v; t1 is
// its first 8 words, t0 the next 8: `table` = 0 or 8).
constexpr std::array<int16_t, 32> head_words(int table) {
  std::array<int16_t, 32> v{};
  for (int j = 0; j < 32; ++j) v[size_t(j)] = int16_t(16 * (j / 8) + table + j % 8);
  return v;
}
alignas(64) constexpr std::array<int16_t, 32> kT1Gather = head_words(0);
alignas(64) constexpr std::array<int16_t, 32> kT0Gather = head_words(8);

inline __m512i load32w(const std::array<int16_t, 32>& v) { return _mm512_load_si512(v.data()); }

struct Consts {
  __m512i low3 = _mm512_set1_epi16(7);
  __m512i vector_base = load32w(kVectorBase);
  __m512i sign_exponent = _mm512_set1_epi16(int16_t(0x8780));
  __m512i exponent_field = _mm512_set1_epi16(0x78);
};

// One block's lookup tables for the 32 columns of a panel (words: vector v's entry m at 8v + m). For a vector of
// form scales they hold its scales' bits, which dequant32's blend discards.
struct Tables {
  __m512i t1, t0;
};

inline Tables block_tables(const std::byte* blk) {
  const __m512i h0 = _mm512_loadu_si512(blk), h1 = _mm512_loadu_si512(blk + 64);
  return {_mm512_permutex2var_epi16(h0, load32w(kT1Gather), h1), _mm512_permutex2var_epi16(h0, load32w(kT0Gather), h1)};
}

// The 32 codes at q, sign-extended to 16 bits; and a prefetch of the codes kPrefetchBytes further (the next block's
// rows, or the next panel's past the last block: a prefetch never faults).
inline __m512i codes32(const uint8_t* q) {
  _mm_prefetch(reinterpret_cast<const char*>(q) + kPrefetchBytes, _MM_HINT_T0);
  return _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q)));
}

// The bf16 weights of the 32 codes at q by the table formula (see the top); Sub: t0 where the exponent field is 0.
template <bool Sub>
__attribute__((always_inline)) inline __m512i table32(const Consts& k, const uint8_t* q, const Tables& t) {
  const __m512i x = codes32(q);
  const __m512i ex = _mm512_and_si512(_mm512_slli_epi16(x, 4), k.sign_exponent);
  const __m512i idx = _mm512_ternarylogic_epi32(x, k.low3, k.vector_base, 0xEA);  // (x & 7) | base
  __m512i w = _mm512_permutexvar_epi16(idx, t.t1);
  if constexpr (Sub) w = _mm512_mask_permutexvar_epi16(w, _mm512_testn_epi16_mask(x, k.exponent_field), idx, t.t0);
  return _mm512_add_epi16(w, ex);
}

// The contract's weights of the 16 codes at q with their scales s, as fp32 with bf16 values (the high half of each
// dword): the AVX2 kernel's dequant8. The fp16 with e4m3's exponent and mantissa fields is e4m3's value times 2^-8
// (biases 15 and 7; e4m3 subnormals land on fp16 subnormals, exactly), widened and times 2^8; then the scale (one
// rounding) and to_bf16's integer round to nearest even (a NaN product stays NaN: the packer stores NaN scales as
// the one quiet NaN). NaN codes are the caller's (nan16).
inline __m512i dequant16(const uint8_t* q, __m512 s) {
  const __m256i x = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)));
  const __m256i h = _mm256_or_si256(_mm256_and_si256(_mm256_slli_epi16(x, 7), _mm256_set1_epi16(0x3F80)),
                                    _mm256_and_si256(_mm256_slli_epi16(x, 8), _mm256_set1_epi16(int16_t(0x8000))));
  const __m512 v = _mm512_mul_ps(_mm512_maskz_cvtph_ps(0xffff, h), _mm512_set1_ps(256.0f));
  const __m512i p = _mm512_castps_si512(_mm512_mul_ps(v, s));
  const __m512i lsb = _mm512_and_si512(_mm512_maskz_srli_epi32(0xffff, p, 16), _mm512_set1_epi32(1));
  return _mm512_add_epi32(_mm512_add_epi32(p, _mm512_set1_epi32(0x7FFF)), lsb);
}

// Word j of a 32-word vector: the high word of dword j of two 16-dword vectors (the second from word 32 on).
constexpr std::array<int16_t, 32> high_words() {
  std::array<int16_t, 32> v{};
  for (int j = 0; j < 32; ++j) v[size_t(j)] = int16_t(2 * j + 1);
  return v;
}
alignas(64) constexpr std::array<int16_t, 32> kHighWords = high_words();

// The bf16 weights of the 32 codes at q of a block whose vectors in `scales` (a bit per column) have form scales:
// those the contract's way from the block's scales (NaN codes all-ones), the others by the table formula.
__attribute__((noinline)) __m512i mixed32(const Consts& k, const uint8_t* q, const Tables& t, const std::byte* blk,
                                          __mmask32 scales) {
  const __m512i r = _mm512_permutex2var_epi16(dequant16(q, _mm512_loadu_ps(blk)), load32w(kHighWords),
                                              dequant16(q + 16, _mm512_loadu_ps(blk + 64)));
  const __m512i x = codes32(q);
  const __m512i low7 = _mm512_set1_epi16(0x7F);
  const __mmask32 nan = _mm512_cmpeq_epi16_mask(_mm512_and_si512(x, low7), low7);
  const __m512i w = _mm512_mask_mov_epi16(r, nan, _mm512_set1_epi16(-1));
  return _mm512_mask_blend_epi16(scales, table32<true>(k, q, t), w);
}

// The word mask of the columns whose vector has form scales in a block with header byte `forms`.
inline __mmask32 scales_mask(uint8_t forms) {
  uint32_t m = 0;
  for (int v = 0; v < 4; ++v)
    if (fp8_form(forms, v) == Fp8Form::scales) m |= 0xFFu << (8 * v);
  return __mmask32(m);
}

// The rows of a block with a vector of form scales into out (mixed32). Not inlined: its caller switches MXCSR to the
// default mode around it, and the compiler must not move this arithmetic across the switch.
__attribute__((noinline)) void form_mixed_rows(const Consts& k, const uint8_t* q, int64_t rows, const Tables& t,
                                               const std::byte* blk, __mmask32 scales, __m512i* out) {
  for (int64_t r = 0; r < rows; ++r) _mm512_store_si512(out + r, mixed32(k, q + r * kGemmNR, t, blk, scales));
}

// The bf16 weights of block g of the panel at `panel` into w (row r at w + 32 r). Called inside the kernel's
// DenormalsAreZero scope: the table forms are integer arithmetic (exact whatever MXCSR says); the scales form
// multiplies in fp32 (dequant16), and the contract's weight is that product in the default mode, a subnormal one
// rounded to bf16 and not flushed (and a subnormal scale not read as zero), so it runs under FloatDefaultMode.
void form_block(const Consts& k, const std::byte* panel, int64_t K, int64_t g, bfloat16* w) {
  const std::byte* blk = panel + fp8_block_offset(K, g);
  const uint8_t forms = reinterpret_cast<const uint8_t*>(panel)[g];
  const auto* q = reinterpret_cast<const uint8_t*>(blk + kFp8HeadBytes);
  const int64_t rows = fp8_block_rows(K, g);
  const Tables t = block_tables(blk);
  int worst = 0;
  for (int v = 0; v < 4; ++v) worst = std::max(worst, int(fp8_form(forms, v)));
  auto* out = reinterpret_cast<__m512i*>(w);
  if (worst == int(Fp8Form::table)) {
    for (int64_t r = 0; r < rows; ++r) _mm512_store_si512(out + r, table32<false>(k, q + r * kGemmNR, t));
  } else if (worst == int(Fp8Form::table_sub)) {
    for (int64_t r = 0; r < rows; ++r) _mm512_store_si512(out + r, table32<true>(k, q + r * kGemmNR, t));
  } else {
    const FloatDefaultMode mode;
    form_mixed_rows(k, q, rows, t, blk, scales_mask(forms), out);
  }
}

// MR rows x 32·NP columns from NP panels (panel_bytes apart) starting at `panel`, weights formed in registers.
template <int MR, int NP>
void tile(int64_t K, const float* a, int64_t lda, const std::byte* panel, size_t panel_bytes, float* c, int64_t ldc,
          int width) {
  constexpr int NV = 2 * NP;
  const Consts k;
  __m512 acc[MR][NV];
  zero_tile(acc);
  for (int64_t g = 0; g < fp8_blocks(K); ++g) {
    const uint8_t* q[NP];
    Tables t[NP];
    int worst = 0;
#pragma GCC unroll 2
    for (int p = 0; p < NP; ++p) {
      const std::byte* pp = panel + size_t(p) * panel_bytes;
      const uint8_t forms = reinterpret_cast<const uint8_t*>(pp)[g];
      const std::byte* blk = pp + fp8_block_offset(K, g);
      q[p] = reinterpret_cast<const uint8_t*>(blk + kFp8HeadBytes);
      t[p] = block_tables(blk);
      for (int v = 0; v < 4; ++v) worst = std::max(worst, int(fp8_form(forms, v)));
    }
    const float* ak = a + g * kFp8BlockK;
    const int64_t rows = fp8_block_rows(K, g);
    const auto run = [&]<int Form>() __attribute__((always_inline)) {
      const auto row = [&](int64_t r, __m512 (&bv)[NV]) __attribute__((always_inline)) {
#pragma GCC unroll 2
        for (int p = 0; p < NP; ++p) {
          const uint8_t* qr = q[p] + r * kGemmNR;
          const __m512i w = Form == int(Fp8Form::table) ? table32<false>(k, qr, t[p]) : table32<true>(k, qr, t[p]);
          widen_bf16_pairs(w, bv[2 * p], bv[2 * p + 1]);
        }
      };
      fma_k<MR, NV, true>(rows, ak, lda, row, acc);
    };
    if (worst == int(Fp8Form::table)) {
      run.template operator()<int(Fp8Form::table)>();
    } else if (worst == int(Fp8Form::table_sub)) {
      run.template operator()<int(Fp8Form::table_sub)>();
    } else {
      // A vector of form scales: the block's weights formed first, in the default mode (form_block), then the bf16
      // loop on them. Such blocks are rare in checkpoints.
      alignas(64) bfloat16 w[NP][kFp8BlockK * kGemmNR];
#pragma GCC unroll 2
      for (int p = 0; p < NP; ++p) form_block(k, panel + size_t(p) * panel_bytes, K, g, w[p]);
      const auto row = [&](int64_t r, __m512 (&bv)[NV]) __attribute__((always_inline)) {
#pragma GCC unroll 2
        for (int p = 0; p < NP; ++p) load_row(w[p] + r * kGemmNR, bv[2 * p], bv[2 * p + 1]);
      };
      fma_k<MR, NV, true>(rows, ak, lda, row, acc);
    }
  }
  store_tile<bfloat16, MR, NV>(acc, c, ldc, width);
}

using TileFn = void (*)(int64_t, const float*, int64_t, const std::byte*, size_t, float*, int64_t, int);

template <int NP, int... R>
constexpr auto make_tiles(std::integer_sequence<int, R...>) {
  return std::array<TileFn, sizeof...(R)>{&tile<R + 1, NP>...};
}

// Panels of [n0, n1) with weights formed in registers (M < kBlockPathRows, or K = 0).
void gemm_direct(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda, const std::byte* b,
                 float* c, int64_t ldc) {
  static constexpr auto pairs = make_tiles<2>(std::make_integer_sequence<int, kPairRows>{});
  static constexpr auto singles = make_tiles<1>(std::make_integer_sequence<int, kDirectRows>{});
  const size_t panel_bytes = fp8_panel_bytes(K);
  int64_t p0 = n0;
  if (M <= kPairRows)
    for (; p0 + kGemmNR < n1; p0 += 2 * kGemmNR)
      pairs[size_t(M - 1)](K, a, lda, b + size_t(p0 / kGemmNR) * panel_bytes, panel_bytes, c + (p0 - n0), ldc,
                           int(std::min<int64_t>(2 * kGemmNR, n1 - p0)));
  for (; p0 < n1; p0 += kGemmNR)
    for_row_blocks(M, kDirectRows, [&](int64_t m0, int64_t rows) {
      singles[size_t(rows - 1)](K, a + m0 * lda, lda, b + size_t(p0 / kGemmNR) * panel_bytes, panel_bytes,
                                c + m0 * ldc + (p0 - n0), ldc, int(std::min<int64_t>(kGemmNR, n1 - p0)));
    });
}


// Panels of [n0, n1) for M >= kBlockPathRows rows: pair by pair (a last single panel alone), block by block, the
// weights formed once into w and the bf16 tiles run on them (see the top).
void gemm_by_blocks(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda, const std::byte* b,
                    float* c, int64_t ldc) {
  static constexpr auto pairs_first = make_tiles_f<bfloat16, 2, false>(std::make_integer_sequence<int, kBlockPairRows>{});
  static constexpr auto pairs_carry = make_tiles_f<bfloat16, 2, true>(std::make_integer_sequence<int, kBlockPairRows>{});
  static constexpr auto singles_first =
      make_tiles_f<bfloat16, 1, false>(std::make_integer_sequence<int, kBlockSingleRows>{});
  static constexpr auto singles_carry =
      make_tiles_f<bfloat16, 1, true>(std::make_integer_sequence<int, kBlockSingleRows>{});
  const Consts k;
  constexpr int64_t kWStride = kFp8BlockK * kGemmNR;  // elements from one panel's block to the next in w
  alignas(64) bfloat16 w[2 * kWStride];
  const size_t panel_bytes = fp8_panel_bytes(K);
  int64_t p0 = n0;
  for (; p0 < n1; p0 += 2 * kGemmNR) {
    const int np = p0 + kGemmNR < n1 ? 2 : 1;
    const std::byte* panel = b + size_t(p0 / kGemmNR) * panel_bytes;
    const int width = int(std::min<int64_t>(np * kGemmNR, n1 - p0));
    for (int64_t g = 0; g < fp8_blocks(K); ++g) {
      for (int p = 0; p < np; ++p) form_block(k, panel + size_t(p) * panel_bytes, K, g, w + p * kWStride);
      const int64_t rows = fp8_block_rows(K, g);
      const float* ag = a + g * kFp8BlockK;
      if (np == 2) {
        const auto& tiles = g == 0 ? pairs_first : pairs_carry;
        for_row_blocks(M, kBlockPairRows, [&](int64_t m0, int64_t mr) {
          tiles[size_t(mr - 1)](rows, ag + m0 * lda, lda, w, kWStride, c + m0 * ldc + (p0 - n0), ldc, width);
        });
      } else {
        const auto& tiles = g == 0 ? singles_first : singles_carry;
        for_row_blocks(M, kBlockSingleRows, [&](int64_t m0, int64_t mr) {
          tiles[size_t(mr - 1)](rows, ag + m0 * lda, lda, w, kWStride, c + m0 * ldc + (p0 - n0), ldc, width);
        });
      }
    }
  }
}

}  // namespace

void gemm_fp8w_f32_4x64__avx512(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda,
                                const void* b_data, float* c, int64_t ldc) {
  assert(M >= 0 && K >= 0 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  if (M <= 0) return;
  const auto* b = static_cast<const std::byte*>(b_data);
  const DenormalsAreZero guard;  // the bf16 contract's FMAs (weights formed in the default mode: form_block)
  if (M >= kBlockPathRows && K > 0) return gemm_by_blocks(M, K, n0, n1, a, lda, b, c, ldc);
  gemm_direct(M, K, n0, n1, a, lda, b, c, ldc);
}

}  // namespace moefuse::gemm::detail
