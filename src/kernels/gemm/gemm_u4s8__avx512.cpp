// AVX-512BW W4A8 GEMM, for AVX-512 CPUs without VNNI (Skylake-SP/X): u4s8_tile__avx512.h's template with
// vpmaddubsw and vpmaddwd in place of vpdpbusd (exact: the header says why), one-panel tiles of up to 6 rows.
#include "kernels/gemm/u4s8_tile__avx512.h"
#include "kernels/gemm/variants.h"

namespace moefuse::gemm::detail {
namespace {

template <int G>
void gemm_u4s8(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a, int64_t lda, const float* a_scale,
               const void* b, float* c, int64_t ldc) {
  gemm_u4s8_avx512<G, false>(M, K, n0, n1, a, lda, a_scale, b, c, ldc);
}

}  // namespace

MOEFUSE_INT4_GROUPS(MOEFUSE_GEMM_U4S8_DEFINE, 6x32, avx512)

}  // namespace moefuse::gemm::detail
