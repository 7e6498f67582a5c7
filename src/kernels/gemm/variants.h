// Declarations of every GEMM variant, for the registry (registry.cpp) only; callers go through GemmKernels.
// Each group is defined in the file named after its ISA (one ISA per file, flags chosen by CMake from the name).
#pragma once

#include "kernels/gemm/gemm.h"

namespace moefuse::gemm::detail {

// gemm_scalar.cpp — portable C++ (std::fma), any CPU.
void gemm_f32w_f32_1x32__scalar(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda,
                                const void* b, float* c, int64_t ldc);
void gemm_bf16w_f32_1x32__scalar(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda,
                                 const void* b, float* c, int64_t ldc);
void gemm_f16w_f32_1x32__scalar(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda,
                                const void* b, float* c, int64_t ldc);
void gemm_s8_s32_1x32__scalar(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a, int64_t lda,
                              const int8_t* b, const int32_t* col_sums, int32_t* c, int64_t ldc);

// gemm__avx2.cpp — AVX2 + FMA + F16C.
void gemm_f32w_f32_6x16__avx2(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda, const void* b,
                              float* c, int64_t ldc);
void gemm_bf16w_f32_6x16__avx2(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda, const void* b,
                               float* c, int64_t ldc);
void gemm_f16w_f32_6x16__avx2(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda, const void* b,
                              float* c, int64_t ldc);
void gemm_s8_s32_2x16__avx2(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a, int64_t lda, const int8_t* b,
                            const int32_t* col_sums, int32_t* c, int64_t ldc);

// gemm__avx512.cpp — AVX-512 F/BW/VL/DQ.
void gemm_f32w_f32_6x64__avx512(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda,
                                const void* b, float* c, int64_t ldc);
void gemm_bf16w_f32_6x64__avx512(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda,
                                 const void* b, float* c, int64_t ldc);
void gemm_f16w_f32_6x64__avx512(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda,
                                const void* b, float* c, int64_t ldc);
void gemm_s8_s32_6x32__avx512(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a, int64_t lda,
                              const int8_t* b, const int32_t* col_sums, int32_t* c, int64_t ldc);

// gemm_s8__avx512vnni.cpp — AVX-512 VNNI (vpdpbusd).
void gemm_s8_s32_6x64__avx512vnni(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a, int64_t lda,
                                  const int8_t* b, const int32_t* col_sums, int32_t* c, int64_t ldc);

// gemm_u4_scalar.cpp and gemm_u4__avx2.cpp — int4 group-wise weights, one kernel per group size G.
#define MOEFUSE_GEMM_U4_DECLARE(G, tile, isa)                                                                  \
  void gemm_u4g##G##w_f32_##tile##__##isa(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a,      \
                                          int64_t lda, const void* b, float* c, int64_t ldc);
MOEFUSE_GEMM_U4_DECLARE(32, 1x32, scalar)
MOEFUSE_GEMM_U4_DECLARE(64, 1x32, scalar)
MOEFUSE_GEMM_U4_DECLARE(128, 1x32, scalar)
MOEFUSE_GEMM_U4_DECLARE(32, 8x8, avx2)
MOEFUSE_GEMM_U4_DECLARE(64, 8x8, avx2)
MOEFUSE_GEMM_U4_DECLARE(128, 8x8, avx2)
#undef MOEFUSE_GEMM_U4_DECLARE

// gemm_fp8_scalar.cpp and gemm_fp8__avx2.cpp — FP8 block-scaled weights.
void gemm_fp8w_f32_1x32__scalar(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda,
                                const void* b, float* c, int64_t ldc);
void gemm_fp8w_f32_8x8__avx2(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda, const void* b,
                             float* c, int64_t ldc);

// gemm_u4s8_scalar.cpp and gemm_u4s8__avx2.cpp — int4 group-wise weights x int8 rows (W4A8), one per group size G.
#define MOEFUSE_GEMM_U4S8_DECLARE(G, tile, isa)                                                                   \
  void gemm_u4g##G##w_s8_f32_##tile##__##isa(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a,     \
                                             int64_t lda, const float* a_scale, const void* b, float* c,       \
                                             int64_t ldc);
MOEFUSE_GEMM_U4S8_DECLARE(32, 1x32, scalar)
MOEFUSE_GEMM_U4S8_DECLARE(64, 1x32, scalar)
MOEFUSE_GEMM_U4S8_DECLARE(128, 1x32, scalar)
MOEFUSE_GEMM_U4S8_DECLARE(32, 2x32, avx2)
MOEFUSE_GEMM_U4S8_DECLARE(64, 2x32, avx2)
MOEFUSE_GEMM_U4S8_DECLARE(128, 2x32, avx2)
#undef MOEFUSE_GEMM_U4S8_DECLARE

}  // namespace moefuse::gemm::detail
