// The FP8 block-scaled panel layout of gemm.h, as addresses, and the weight the kernels compute with: shared by the
// packer and every FP8 kernel variant, so both are written once.
//
// Why tables. The contract's weight bf16(e4m3 * s) costs about 14 vector instructions per 8 weights when formed from
// the code and the scale (widen e4m3, multiply, round to bf16 with integer RNE, NaN codes). But for a normal code
// (exponent field E in 1..15, mantissa m) the value is 2^E * 2^-7 * (1 + m/8), and scaling by 2^E commutes with both
// roundings as long as every value stays a normal float: bf16(e4m3 * s) = bf16(2^-7 (1 + m/8) s) * 2^E. So with a
// table t1[m] = bf16(2^-7 (1 + m/8) s) of 8 entries, the weight is t1[m] with E added to its exponent field and the
// code's sign bit added to its sign: one vpermps (whose index is the low 3 bits of the code as they are) and three
// integer instructions. Subnormal codes (E = 0: m * 2^-9) and zeros take a second table t0[m] = bf16(2^-9 m s),
// chosen by E == 0. Whether the tables reproduce the contract for a block of 8 columns is not argued but checked:
// the packer evaluates the table formula for every code the block holds, in every column with that column's own
// scale, against fp8_weight() bit for bit, and keeps the tables only when all agree; a block where one differs
// (columns with different scales, NaN codes, scales so small or large that a value leaves the normal range) keeps
// its 8 scales and is formed from the code the long way.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/gemm/gemm.h"
#include "moefuse/dtype.h"

namespace moefuse::gemm {

/// How one 8-column vector of one 128-row block forms its weights (2 bits per vector in the panel's header).
enum class Fp8Form : uint8_t {
  table = 0,      // every code normal: t1 and the exponent add
  table_sub = 1,  // some code subnormal or zero: t1 or t0 by E == 0, then the exponent add
  scales = 2,     // the long way from the 8 scales (fp8_weight)
};

/// Bytes of a block's vector area: 8 f32 scales, or the tables t1 then t0 as 8 + 8 bf16.
inline constexpr size_t kFp8VectorBytes = 32;
/// Bytes before a block's rows: its 4 vectors' areas.
inline constexpr size_t kFp8HeadBytes = 4 * kFp8VectorBytes;

/// 128-row blocks of a panel of K rows.
constexpr int64_t fp8_blocks(int64_t K) { return (K + kFp8BlockK - 1) / kFp8BlockK; }

/// Rows of block g of a panel of K rows: kFp8BlockK, the last one K - g * kFp8BlockK.
constexpr int64_t fp8_block_rows(int64_t K, int64_t g) {
  return K - g * kFp8BlockK < kFp8BlockK ? K - g * kFp8BlockK : kFp8BlockK;
}

/// Bytes of a panel's header: one byte of forms per block (vector v in bits 2v, 2v + 1), rounded up to 64.
constexpr size_t fp8_header_bytes(int64_t K) { return (size_t(fp8_blocks(K)) + 63) / 64 * 64; }

/// Bytes of one panel of K rows: header, then per block its vector areas and 32 bytes per row; rounded up to 64.
constexpr size_t fp8_panel_bytes(int64_t K) {
  return (fp8_header_bytes(K) + size_t(fp8_blocks(K)) * kFp8HeadBytes + size_t(K) * size_t(kGemmNR) + 63) / 64 * 64;
}

/// Offset of block g in a panel of K rows (every block before it is full).
constexpr size_t fp8_block_offset(int64_t K, int64_t g) {
  return fp8_header_bytes(K) + size_t(g) * (kFp8HeadBytes + size_t(kFp8BlockK * kGemmNR));
}

/// The form of vector v of the block whose header byte is `forms`.
constexpr Fp8Form fp8_form(uint8_t forms, int v) { return Fp8Form((forms >> (2 * v)) & 3u); }

/// The contract's weight: e4m3 widened exactly, times the block's scale in fp32, rounded to bf16 (RNE), widened.
inline float fp8_weight(uint8_t q, float scale) { return to_f32(to_bf16(f32_from_e4m3(q) * scale)); }

/// The table formula of the comment above, as bits: t1 (or t0 for E = 0) widened, plus the code's exponent field at
/// bits 23..26 and its sign at bit 31. What the AVX2 kernel computes in lanes; the packer checks it against
/// fp8_weight before it stores a table.
inline uint32_t fp8_table_bits(uint8_t q, const uint16_t* t1, const uint16_t* t0) {
  const uint32_t t = uint32_t((q & 0x78u) == 0 ? t0[q & 7u] : t1[q & 7u]) << 16;
  return t + ((uint32_t(int32_t(int8_t(q))) << 20) & 0x87800000u);
}

/// Weight of code q in lane j (0..7) of a vector area of form f: what every kernel variant computes.
inline float fp8_packed_weight(Fp8Form f, const std::byte* area, int j, uint8_t q) {
  if (f == Fp8Form::scales) return fp8_weight(q, reinterpret_cast<const float*>(area)[j]);
  const auto* t1 = reinterpret_cast<const uint16_t*>(area);
  return f32_from_bits(fp8_table_bits(q, t1, t1 + 8));
}

}  // namespace moefuse::gemm
