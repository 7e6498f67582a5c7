// AVX-512 VNNI W4A8 GEMM: u4s8_tile__avx512.h's template with vpdpbusd (the header says how and why, with the
// measurements).
#include "kernels/gemm/u4s8_tile__avx512.h"
#include "kernels/gemm/variants.h"

namespace moefuse::gemm::detail {
namespace {

template <int G>
void gemm_u4s8(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a, int64_t lda, const float* a_scale,
               const void* b, float* c, int64_t ldc) {
  gemm_u4s8_avx512<G, true>(M, K, n0, n1, a, lda, a_scale, b, c, ldc);
}

}  // namespace

MOEFUSE_INT4_GROUPS(MOEFUSE_GEMM_U4S8_DEFINE, 6x64, avx512vnni)

}  // namespace moefuse::gemm::detail
