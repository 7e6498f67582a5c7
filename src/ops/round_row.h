// Rounding stores: fp32 values into a row of bf16 or f16, one rounding each, bitwise the scalar rule of
// moefuse/dtype.h (to_bf16, to_f16: round to nearest even; bf16: NaN kept quiet with its sign and high payload; f16:
// overflow to inf, subnormals produced exactly, NaN kept quiet). The vector variants are the same branch-free
// formula (round_row_impl.h) compiled per ISA, so GCC turns it into vector code; no conversion instruction is used
// (vcvtneps2bf16 reads subnormal inputs as zero, where to_bf16 rounds them).
#pragma once

#include <cstdint>

#include "moefuse/cpu.h"
#include "moefuse/dtype.h"

namespace moefuse {

/// dst[i] = to_bf16(v[i]) for i < n (n >= 0; dst and v must not overlap).
using RoundBf16RowFn = void (*)(int64_t n, const float* v, bfloat16* dst);
/// dst[i] = to_f16(v[i]) for i < n (n >= 0; dst and v must not overlap).
using RoundF16RowFn = void (*)(int64_t n, const float* v, float16* dst);

struct RoundRowKernels {
  RoundBf16RowFn bf16 = nullptr;
  RoundF16RowFn f16 = nullptr;
  const char* name = "";  // "round_row__<isa>"
};

/// The variant of level `isa` (scalar, avx2, or avx512 for avx512 and above); the caller must pass a level the
/// machine runs (an entry of gemm::available_isas()).
RoundRowKernels select_round_row(Isa isa);

/// Stores v[0..n) into dst, a contiguous row of dtype dt, as store_row (base/elements.h) does, with the variant k for
/// bf16 and f16 (f32: copied; other dtypes: nothing written).
void store_row_with(const RoundRowKernels& k, const float* v, int64_t n, DType dt, void* dst);

}  // namespace moefuse
