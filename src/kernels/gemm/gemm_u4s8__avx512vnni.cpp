// AVX-512 VNNI W4A8 GEMM: u4s8_tile__avx512.h's template with vpdpbusd (the header says how and why, with the
// measurements).
#include "kernels/gemm/u4s8_tile__avx512.h"

namespace moefuse::gemm::detail {
MOEFUSE_GEMM_U4S8_AVX512_DEFINE(32, 6x64, avx512vnni, true)
MOEFUSE_GEMM_U4S8_AVX512_DEFINE(64, 6x64, avx512vnni, true)
MOEFUSE_GEMM_U4S8_AVX512_DEFINE(128, 6x64, avx512vnni, true)
}  // namespace moefuse::gemm::detail
