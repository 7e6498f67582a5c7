// Forming FP8 block-scaled weights (fp8_layout.h) as bf16 with AVX-512 F/BW/VL/DQ, and the block path's loop, for
// the two AVX-512 FP8 kernels: gemm_fp8__avx512.cpp (whose top describes the arithmetic and the paths) and
// gemm_fp8__avx512bf16.cpp (the same block path on vdpbf16ps tiles, and direct tiles that form two rows of k at a
// time in vdpbf16ps pair order: table_pairs). Included only by files compiled with AVX-512 F/BW/VL/DQ flags or more.
//
// Everything here has internal linkage (an unnamed namespace), on purpose: each including file gets its own copy,
// compiled with its own flags. With external linkage the linker would keep one copy of the out-of-line functions
// (form_block, mixed32) for both files, and the AVX-512 kernel could end up calling code compiled with the
// AVX512-BF16 flags on a CPU without them.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>

#include "base/bf16_dot.h"
#include "base/cpu_tuning.h"
#include "kernels/gemm/fp8_layout.h"
#include "kernels/gemm/gemm.h"
#include "kernels/gemm/row_blocks.h"

namespace moefuse::gemm::detail::fp8 {
namespace {

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
  __m512i sign_exponent_high = _mm512_set1_epi16(int16_t(0x8600));  // table_code: sign, exponent bits 2 and 3
  // Software prefetch of the codes, pf.bytes ahead of the row being formed (the settings for FP8 weights, read once
  // per tile: base/cpu_tuning.h). The hardware prefetchers alone leave the stream well below the read bandwidth: a
  // row of codes is 32 bytes against the bf16 kernel's 64, so the out-of-order window holds half as many bytes in
  // flight. Measured (gemm_bench, 2048 x 2048, Zen 5): M = 1 17 -> 22..28 GB/s, M = 8 6.5 -> 12 GB/s of packed
  // weights; 1, 4, 8 and 16 KiB ahead were tried, 4 KiB (about one block) was best (the generic entry). `rows`: the
  // kernel call's rows (M), for the stream's row threshold.
  Prefetch pf;
  explicit Consts(int64_t rows) : pf(prefetch_for(PrefetchStream::fp8, rows)) {}
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

// The 32 codes at q, sign-extended to 16 bits; and a prefetch of the codes k.pf.bytes further (the next block's
// rows; past the panel's last block, skip moves it on to the next tile's: cpu_tuning.h, next_tile_skip. A prefetch
// never faults).
inline __m512i codes32(const Consts& k, const uint8_t* q, size_t skip = 0) {
  if (k.pf.on()) prefetch_ahead(q + skip, k.pf);
  return _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q)));
}

// The table formula (see the top) on 32 words x whose low byte is a code, word j of column j % 8 of vector j / 8,
// with e = x shifted so that its bits 7..10 are the code's exponent field and bit 15 its sign; Sub: t0 where the
// exponent field is 0.
template <bool Sub>
__attribute__((always_inline)) inline __m512i table_words(const Consts& k, __m512i x, __m512i e, const Tables& t) {
  const __m512i ex = _mm512_and_si512(e, k.sign_exponent);
  const __m512i idx = _mm512_ternarylogic_epi32(x, k.low3, k.vector_base, 0xEA);  // (x & 7) | base
  __m512i w = _mm512_permutexvar_epi16(idx, t.t1);
  if constexpr (Sub) w = _mm512_mask_permutexvar_epi16(w, _mm512_testn_epi16_mask(x, k.exponent_field), idx, t.t0);
  return _mm512_add_epi16(w, ex);
}

// The bf16 weights of the 32 codes at q by the table formula (see the top); Sub: t0 where the exponent field is 0.
template <bool Sub>
__attribute__((always_inline)) inline __m512i table32(const Consts& k, const uint8_t* q, const Tables& t,
                                                      size_t skip = 0) {
  const __m512i x = codes32(k, q, skip);  // sign-extended: x << 4 has the sign on bit 15
  return table_words<Sub>(k, x, _mm512_slli_epi16(x, 4), t);
}

// vdpbf16ps pair order (tile__avx512bf16.h) straight from the codes: the 64 codes of rows r and r + 1 at q (64
// bytes) as qwords (r 0..7, r+1 0..7, r 8..15, r+1 8..15, ...), so that 128-bit lane L holds both rows' codes of
// vector L; then vpshufb takes dword j of lane L = (column 8L + j of row r, of row r + 1) into `lo`, columns 8L + 4 +
// j into `hi`, each code into both bytes of its word (code * 0x0101: the low byte for the index, the high byte, shifted
// right arithmetically by 4, for the sign and exponent). Word j still belongs to vector j / 8, as in table32.
alignas(64) constexpr std::array<int64_t, 8> kRowPairQwords = {0, 4, 1, 5, 2, 6, 3, 7};
constexpr std::array<int8_t, 64> pair_bytes(int first) {
  std::array<int8_t, 64> v{};
  for (int b = 0; b < 64; ++b) {
    const int j = (b % 16) / 4, row = (b % 4) / 2;  // dword j of the lane, word `row` of it
    v[size_t(b)] = int8_t(8 * row + first + j);
  }
  return v;
}
alignas(64) constexpr std::array<int8_t, 64> kPairLo = pair_bytes(0), kPairHi = pair_bytes(4);

// A block whose four vectors hold the same tables (one scale for the panel's 32 columns, as in every checkpoint with
// 128 x 128 blocks) needs no vector base: its 32-word table u1 has word (e << 3) | m = t1[m] + (e << 7) for e = the
// exponent field's low 2 bits, so that vpermw indexes it with the code as it is (the index's low 5 bits), and the
// add brings the exponent field's high 2 bits and the sign: t1[m] + (e << 7) + ((code << 4) & 0x8600) is the same
// 16-bit sum as the formula at the top. Its t0 is the same in every lane, so a code with exponent field 0 (index m)
// reads its own t0[m] there too. Two instructions fewer per 32 weights (the index, and its register copy).
inline bool one_table(const std::byte* blk) {
  const __m512i h0 = _mm512_loadu_si512(blk), h1 = _mm512_loadu_si512(blk + 64);
  return _mm512_cmpneq_epi64_mask(h0, h1) == 0 &&
         _mm512_cmpneq_epi64_mask(h0, _mm512_maskz_shuffle_i64x2(0xff, h0, h0, _MM_SHUFFLE(1, 0, 3, 2))) == 0;
}
constexpr std::array<int16_t, 32> low_exponents() {
  std::array<int16_t, 32> v{};
  for (int j = 0; j < 32; ++j) v[size_t(j)] = int16_t((j / 8) << 7);
  return v;
}
alignas(64) constexpr std::array<int16_t, 32> kLowExponents = low_exponents();
// u1 and t0 of a block for which one_table holds, from its block_tables.
inline Tables code_tables(const Tables& t) { return {_mm512_add_epi16(t.t1, load32w(kLowExponents)), t.t0}; }

// table_words for a block with one table (u: code_tables).
template <bool Sub>
__attribute__((always_inline)) inline __m512i table_code(const Consts& k, __m512i x, __m512i e, const Tables& u) {
  const __m512i ex = _mm512_and_si512(e, k.sign_exponent_high);
  __m512i w = _mm512_permutexvar_epi16(x, u.t1);
  if constexpr (Sub) w = _mm512_mask_permutexvar_epi16(w, _mm512_testn_epi16_mask(x, k.exponent_field), x, u.t0);
  return _mm512_add_epi16(w, ex);
}

// The bf16 weights of rows r and r + 1 (64 codes at q) in pair order, lo and hi (see kPairLo). One: a block with
// one table, t its code_tables; skip: as codes32's.
template <bool Sub, bool One>
__attribute__((always_inline)) inline void table_pairs(const Consts& k, const uint8_t* q, const Tables& t, __m512i& lo,
                                                       __m512i& hi, size_t skip = 0) {
  if (k.pf.on()) prefetch_ahead(q + skip, k.pf);
  // (maskz with all lanes: the unmasked intrinsic's undefined source makes GCC 12 warn, as for dequant16's)
  const __m512i x =
      _mm512_maskz_permutexvar_epi64(0xff, _mm512_load_si512(kRowPairQwords.data()), _mm512_loadu_si512(q));
  const __m512i xl = _mm512_shuffle_epi8(x, _mm512_load_si512(kPairLo.data()));
  const __m512i xh = _mm512_shuffle_epi8(x, _mm512_load_si512(kPairHi.data()));
  if constexpr (One) {
    lo = table_code<Sub>(k, xl, _mm512_srai_epi16(xl, 4), t);
    hi = table_code<Sub>(k, xh, _mm512_srai_epi16(xh, 4), t);
  } else {
    lo = table_words<Sub>(k, xl, _mm512_srai_epi16(xl, 4), t);
    hi = table_words<Sub>(k, xh, _mm512_srai_epi16(xh, 4), t);
  }
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
  const __m512i x = codes32(k, q);
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

// The bf16 weights of block g of the panel at `panel` into w (row r at w + 32 r), whatever MXCSR's DAZ and FTZ
// (the AVX-512 kernel calls it inside its DenormalsAreZero scope): the table forms are integer arithmetic; the
// scales form multiplies in fp32 (dequant16), and the contract's weight is that product in the default mode, a
// subnormal one rounded to bf16 and not flushed (and a subnormal scale not read as zero), so it runs under
// FloatDefaultMode.
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

// The direct tiles' walk over the panels of [n0, n1) (both kernels): pairs of panels while `pairs` (a last single
// panel alone), then single panels, each as tile(np, panel, c_offset, width) with panel = b at the first panel,
// c_offset = its first column - n0 and width the columns it covers; stops at the first tile that returns false,
// and returns false then.
template <class Tile>
bool direct_panels(int64_t K, int64_t n0, int64_t n1, const std::byte* b, bool pairs, Tile&& tile) {
  const size_t panel_bytes = fp8_panel_bytes(K);
  int64_t p0 = n0;
  if (pairs)
    for (; p0 + kGemmNR < n1; p0 += 2 * kGemmNR)
      if (!tile(2, b + size_t(p0 / kGemmNR) * panel_bytes, p0 - n0, int(std::min<int64_t>(2 * kGemmNR, n1 - p0))))
        return false;
  for (; p0 < n1; p0 += kGemmNR)
    if (!tile(1, b + size_t(p0 / kGemmNR) * panel_bytes, p0 - n0, int(std::min<int64_t>(kGemmNR, n1 - p0))))
      return false;
  return true;
}

constexpr int kBlockPairRows = 6, kBlockSingleRows = 12;  // the bf16 kernels' tiles: 6 x 64 and 12 x 32
// Blocks formed at a time per panel (512 rows of K: 64 KiB of stack for two panels, in L2), so that a tile carries
// its chains through C once per 512 rows instead of once per 128: with one block at a time, a sixth of the 6 x 64
// vdpbf16ps tile's samples were its C round trip and start (Zen 5, M = 512), and 4 blocks ran the AVX512-BF16 kernel
// at M = 64 / 512 in 1.36-1.58 / 9.6-11.0 ms against 1.47-1.77 / 11.1-12.8 (gemm_bench, 2048 x 2048, one thread,
// the two builds alternating in 4 rounds; performance.md, "FP8 prefill: formed blocks").
constexpr int64_t kFormBlocks = 4;

// The block path over the panels of [n0, n1) (K > 0; each kernel chooses from how many rows): pair of panels by
// pair (a last single panel alone), kFormBlocks blocks at a time, the weights formed once into a 64 KiB buffer w
// (form_block; panel p's blocks at w + p * kWStride, one after the other), then for each block of rows
//     tile(np, carry, mr, rows, a_block, w, kWStride, c_block, width)
// with np the panels (2: mr <= kBlockPairRows, 1: mr <= kBlockSingleRows), carry false for the first blocks and
// true after (the chains carried through C: every block but the last has an even number of rows, so no pair of k
// straddles two calls), rows the formed blocks' k rows, a_block = A at their first row and k, c_block = C at the
// first row and column. A tile returns false when its C is not the contract's (the vdpbf16ps tile: an A value
// that is not a bf16 value); since every column block reads all of A, the loop stops after the first column block
// with a false, and returns false. TA: A's element type (fp32, or bf16 rows for the vdpbf16ps tiles).
template <class TA, class Tile>
bool by_blocks(int64_t M, int64_t K, int64_t n0, int64_t n1, const TA* a, int64_t lda, const std::byte* b,
               float* c, int64_t ldc, Tile&& tile) {
  const Consts k(M);
  constexpr int64_t kBlockElems = kFp8BlockK * kGemmNR;        // one panel's formed block
  constexpr int64_t kWStride = kFormBlocks * kBlockElems;     // elements from one panel's blocks to the next in w
  alignas(64) bfloat16 w[2 * kWStride];
  const size_t panel_bytes = fp8_panel_bytes(K);
  const int64_t blocks = fp8_blocks(K);
  for (int64_t p0 = n0; p0 < n1; p0 += 2 * kGemmNR) {
    const int np = p0 + kGemmNR < n1 ? 2 : 1;
    const std::byte* panel = b + size_t(p0 / kGemmNR) * panel_bytes;
    const int width = int(std::min<int64_t>(np * kGemmNR, n1 - p0));
    bool ok = true;
    for (int64_t g0 = 0; g0 < blocks; g0 += kFormBlocks) {
      const int64_t g1 = std::min(g0 + kFormBlocks, blocks);
      for (int p = 0; p < np; ++p)
        for (int64_t g = g0; g < g1; ++g)
          form_block(k, panel + size_t(p) * panel_bytes, K, g, w + p * kWStride + (g - g0) * kBlockElems);
      // every block but K's last is 128 rows, so the formed rows are consecutive in w
      const int64_t rows = (g1 - 1 - g0) * kFp8BlockK + fp8_block_rows(K, g1 - 1);
      const TA* ag = a + g0 * kFp8BlockK;
      for_row_blocks(M, np == 2 ? kBlockPairRows : kBlockSingleRows, [&](int64_t m0, int64_t mr) {
        ok &= tile(np, g0 > 0, mr, rows, ag + m0 * lda, w, kWStride, c + m0 * ldc + (p0 - n0), width);
      });
    }
    if (!ok) return false;
  }
  return true;
}

}  // namespace
}  // namespace moefuse::gemm::detail::fp8
