// The rounding stores' scalar variant (round_row_impl.h for baseline x86-64) and the choice of variant.
#include "ops/round_row.h"

#include <cstring>

#define MOEFUSE_ROUND_ROW_NS round_scalar
#include "ops/round_row_impl.h"

namespace moefuse {

// round_row__avx2.cpp, round_row__avx512.cpp.
void round_bf16_row__avx2(int64_t n, const float* v, bfloat16* dst);
void round_f16_row__avx2(int64_t n, const float* v, float16* dst);
void round_bf16_row__avx512(int64_t n, const float* v, bfloat16* dst);
void round_f16_row__avx512(int64_t n, const float* v, float16* dst);

namespace {
void round_bf16_row__scalar(int64_t n, const float* v, bfloat16* dst) { round_scalar::round_bf16_row(n, v, dst); }
void round_f16_row__scalar(int64_t n, const float* v, float16* dst) { round_scalar::round_f16_row(n, v, dst); }
}  // namespace

RoundRowKernels select_round_row(Isa isa) {
  if (int(isa) >= int(Isa::avx512)) return {round_bf16_row__avx512, round_f16_row__avx512, "round_row__avx512"};
  if (int(isa) >= int(Isa::avx2)) return {round_bf16_row__avx2, round_f16_row__avx2, "round_row__avx2"};
  return {round_bf16_row__scalar, round_f16_row__scalar, "round_row__scalar"};
}

void store_row_with(const RoundRowKernels& k, const float* v, int64_t n, DType dt, void* dst) {
  switch (dt) {
    case DType::f32: std::memcpy(dst, v, size_t(n) * sizeof(float)); return;
    case DType::bf16: k.bf16(n, v, static_cast<bfloat16*>(dst)); return;
    case DType::f16: k.f16(n, v, static_cast<float16*>(dst)); return;
    default: return;
  }
}

}  // namespace moefuse
