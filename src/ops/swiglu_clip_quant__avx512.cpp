// swiglu_clip_quant's per-ISA steps (swiglu_clip_quant_fast.h) compiled for AVX512 (flags from the file name):
// swiglu_clip_quant_impl.h's formulas.
#define MOEFUSE_SWIGLU_CLIP_NS swiglu_clip_avx512
#include "ops/swiglu_clip_quant_impl.h"

namespace moefuse {

void round_bf16_in_place__avx512(int64_t n, float* v) { swiglu_clip_avx512::round_bf16_in_place(n, v); }
void clip_row__avx512(int64_t n, float alpha, float* v) { swiglu_clip_avx512::clip_row(n, alpha, v); }
void widen_bf16__avx512(int64_t n, const bfloat16* src, float* out) { swiglu_clip_avx512::widen_bf16(n, src, out); }
void widen_f16__avx512(int64_t n, const float16* src, float* out) { swiglu_clip_avx512::widen_f16(n, src, out); }

}  // namespace moefuse
