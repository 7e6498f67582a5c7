// AVX-512BW W4A8 GEMM, for AVX-512 CPUs without VNNI (Skylake-SP/X): u4s8_tile__avx512.h's template with
// vpmaddubsw and vpmaddwd in place of vpdpbusd (exact: the header says why), one-panel tiles of up to 6 rows.
#include "kernels/gemm/u4s8_tile__avx512.h"

namespace moefuse::gemm::detail {
MOEFUSE_GEMM_U4S8_AVX512_DEFINE(32, 6x32, avx512, false)
MOEFUSE_GEMM_U4S8_AVX512_DEFINE(64, 6x32, avx512, false)
MOEFUSE_GEMM_U4S8_AVX512_DEFINE(128, 6x32, avx512, false)
}  // namespace moefuse::gemm::detail
