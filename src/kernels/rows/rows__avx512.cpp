// The rows kernels compiled for AVX-512 F/BW/VL/DQ (cmake/IsaFlags.cmake): swiglu and dequant_swiglu written with
// intrinsics (rows_vec.h, 16 lanes), the others the same source as rows_scalar.cpp (the same operations in the same
// order, no contraction) vectorised by the compiler.
#include <immintrin.h>

#include "kernels/rows/rows_vec.h"
#include "kernels/rows/variants.h"

namespace moefuse::rows::vec {
namespace {

struct Avx512 {
  using F = __m512;
  static constexpr int64_t kLanes = 16;
  static F load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, F v) { _mm512_storeu_ps(p, v); }
  static F set1(float v) { return _mm512_set1_ps(v); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F div(F a, F b) { return _mm512_div_ps(a, b); }
  static F neg(F v) {
    return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(v), _mm512_set1_epi32(int(0x80000000u))));
  }
  static F exp(F v) { return exp_f32_avx512(v); }
  // where x is NaN, a; elsewhere b.
  static F select_nan(F x, F a, F b) { return _mm512_mask_mov_ps(b, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), a); }
  static F cvt_i32(const int32_t* p) { return _mm512_maskz_cvtepi32_ps(0xffff, _mm512_loadu_si512(p)); }
  // to_bf16 then back (dtype.h): NaN -> top half | 0x0040 (quiet); else add 0x7fff + bit 16 and cut the low half.
  // (Not vcvtneps2bf16: it flushes subnormals.)
  static F round_bf16(F v) {
    const __m512i u = _mm512_castps_si512(v);
    const __mmask16 is_nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                     _mm512_set1_epi32(0x7f800000));
    const __m512i odd = _mm512_and_si512(_mm512_maskz_srli_epi32(0xffff, u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd));
    r = _mm512_mask_or_epi32(r, is_nan, u, _mm512_set1_epi32(0x00400000));
    return _mm512_castsi512_ps(_mm512_and_si512(r, _mm512_set1_epi32(int(0xffff0000u))));
  }
  // to_f16 then back: the conversions round to nearest even, make subnormals and quiet NaNs (payload cut to 10
  // bits) exactly as dtype.h's to_f16 / to_f32 do.
  // (maskz forms with every lane: the plain intrinsics' undefined source makes GCC 12 warn -Wmaybe-uninitialized)
  static F round_f16(F v) {
    const __m256i h = _mm512_maskz_cvtps_ph(0xffff, v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm512_maskz_cvtph_ps(0xffff, h);
  }
};

}  // namespace
}  // namespace moefuse::rows::vec

MOEFUSE_ROWS_VEC_VARIANTS(avx512, vec::Avx512)
MOEFUSE_ROWS_PLAIN_VARIANTS(avx512)
