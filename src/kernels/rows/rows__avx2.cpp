// The rows kernels compiled for AVX2 + FMA + F16C (cmake/IsaFlags.cmake): swiglu and dequant_swiglu written with
// intrinsics (rows_vec.h, 8 lanes), the others the same source as rows_scalar.cpp (the same operations in the same
// order, no contraction) vectorised by the compiler.
#include <immintrin.h>

#include "kernels/rows/rows_vec.h"
#include "kernels/rows/variants.h"

namespace moefuse::rows::vec {
namespace {

struct Avx2 {
  using F = __m256;
  static constexpr int64_t kLanes = 8;
  static F load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, F v) { _mm256_storeu_ps(p, v); }
  static F set1(float v) { return _mm256_set1_ps(v); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F div(F a, F b) { return _mm256_div_ps(a, b); }
  static F neg(F v) { return _mm256_xor_ps(v, _mm256_set1_ps(-0.0f)); }
  static F exp(F v) { return exp_f32_avx2(v); }
  // where x is NaN, a; elsewhere b.
  static F select_nan(F x, F a, F b) { return _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, x, _CMP_UNORD_Q)); }
  static F cvt_i32(const int32_t* p) {
    return _mm256_cvtepi32_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  // to_bf16 then back (dtype.h): NaN -> top half | 0x0040 (quiet); else add 0x7fff + bit 16 and cut the low half.
  static F round_bf16(F v) {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i hi_mask = _mm256_set1_epi32(int(0xffff0000u));
    const __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                              _mm256_set1_epi32(0x7f800000));
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i rounded = _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), odd));
    const __m256i nan = _mm256_or_si256(u, _mm256_set1_epi32(0x00400000));
    return _mm256_castsi256_ps(_mm256_and_si256(_mm256_blendv_epi8(rounded, nan, is_nan), hi_mask));
  }
  // to_f16 then back: the F16C conversions round to nearest even, make subnormals and quiet NaNs (payload cut to
  // 10 bits) exactly as dtype.h's to_f16 / to_f32 do.
  static F round_f16(F v) { return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)); }
};

}  // namespace
}  // namespace moefuse::rows::vec

MOEFUSE_ROWS_VEC_VARIANTS(avx2, vec::Avx2)
MOEFUSE_ROWS_PLAIN_VARIANTS(avx2)
