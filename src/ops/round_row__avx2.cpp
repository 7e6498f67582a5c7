// The rounding stores (round_row.h) compiled for AVX2 (flags from the file name): round_row_impl.h's formula.
#define MOEFUSE_ROUND_ROW_NS round_avx2
#include "ops/round_row_impl.h"

namespace moefuse {

void round_bf16_row__avx2(int64_t n, const float* v, bfloat16* dst) { round_avx2::round_bf16_row(n, v, dst); }
void round_f16_row__avx2(int64_t n, const float* v, float16* dst) { round_avx2::round_f16_row(n, v, dst); }

}  // namespace moefuse
