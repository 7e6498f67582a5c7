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
// The bf16-A entry (GemmBf16AFn) of the FMA kernel: bf16 rows of A widened as the tiles buffer them.
void gemm_bf16w_bf16a_f32_6x64__avx512(int64_t M, int64_t K, int64_t n0, int64_t n1, const bfloat16* a, int64_t lda,
                                       const void* b, float* c, int64_t ldc);
void gemm_s8_s32_6x32__avx512(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a, int64_t lda,
                              const int8_t* b, const int32_t* col_sums, int32_t* c, int64_t ldc);

// gemm_s8__avx512vnni.cpp — AVX-512 VNNI (vpdpbusd).
void gemm_s8_s32_6x64__avx512vnni(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a, int64_t lda,
                                  const int8_t* b, const int32_t* col_sums, int32_t* c, int64_t ldc);

// gemm_bf16__avx512bf16.cpp — AVX512-BF16 (vdpbf16ps), bf16 weights; falls back to gemm_bf16w_f32_6x64__avx512 for
// a call whose A holds a value that is not a bf16 value. dpbf16_self_test__avx512bf16 runs vdpbf16ps on crafted lanes
// against the contract: nullptr when every lane matches, else a static text naming the first that differs.
void gemm_bf16w_f32_6x64__avx512bf16(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda,
                                     const void* b, float* c, int64_t ldc);
const char* dpbf16_self_test__avx512bf16();
// The bf16-A entry (GemmBf16AFn): the same tiles reading bf16 rows of A; no fallback (every value is a bf16 value).
void gemm_bf16w_bf16a_f32_6x64__avx512bf16(int64_t M, int64_t K, int64_t n0, int64_t n1, const bfloat16* a,
                                           int64_t lda, const void* b, float* c, int64_t ldc);
// The same product with K cut into blocks of `kblock` rows (even), each block's tiles carrying their chains through C
// (tile__avx512bf16.h, tile_dp with Carry): the path a kernel that forms bf16 weights per K block (the FP8 kernel's
// block path) would run its buffer through. Bitwise the kernel's C when it returns true; false (C not the
// contract's) when A holds a value that is not a bf16 value. No fallback of its own.
bool gemm_bf16w_f32_kblocks__avx512bf16(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda,
                                        const void* b, float* c, int64_t ldc, int64_t kblock);

// The int4 kernels: one template per file (gemm_u4<G> for int4 x fp32 rows, gemm_u4s8<G> for int4 x int8 rows),
// with an entry point per group size G = 32, 64, 128 named gemm_u4g<G>w_f32_<tile>__<isa> and
// gemm_u4g<G>w_s8_f32_<tile>__<isa>. MOEFUSE_INT4_GROUPS(M, tile, isa) expands M for each G: with the _DECLARE macros
// here, with the _DEFINE ones in the kernel's file (gemm_u4_scalar.cpp, gemm_u4__avx2.cpp, gemm_u4__avx512.cpp,
// gemm_u4s8_scalar.cpp, gemm_u4s8__avx2.cpp, gemm_u4s8__avx512.cpp, gemm_u4s8__avx512vnni.cpp), which calls its own
// template.
#define MOEFUSE_INT4_GROUPS(M, tile, isa) M(32, tile, isa) M(64, tile, isa) M(128, tile, isa)
#define MOEFUSE_GEMM_U4_SIGNATURE(G, tile, isa)                                                                \
  void gemm_u4g##G##w_f32_##tile##__##isa(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a,      \
                                          int64_t lda, const void* b, float* c, int64_t ldc)
#define MOEFUSE_GEMM_U4S8_SIGNATURE(G, tile, isa)                                                                 \
  void gemm_u4g##G##w_s8_f32_##tile##__##isa(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a,     \
                                             int64_t lda, const float* a_scale, const void* b, float* c,       \
                                             int64_t ldc)
#define MOEFUSE_GEMM_U4_DECLARE(G, tile, isa) MOEFUSE_GEMM_U4_SIGNATURE(G, tile, isa);
#define MOEFUSE_GEMM_U4S8_DECLARE(G, tile, isa) MOEFUSE_GEMM_U4S8_SIGNATURE(G, tile, isa);
#define MOEFUSE_GEMM_U4_DEFINE(G, tile, isa) \
  MOEFUSE_GEMM_U4_SIGNATURE(G, tile, isa) { gemm_u4<G>(M, K, n0, n1, a, lda, b, c, ldc); }
#define MOEFUSE_GEMM_U4S8_DEFINE(G, tile, isa) \
  MOEFUSE_GEMM_U4S8_SIGNATURE(G, tile, isa) { gemm_u4s8<G>(M, K, n0, n1, a, lda, a_scale, b, c, ldc); }

MOEFUSE_INT4_GROUPS(MOEFUSE_GEMM_U4_DECLARE, 1x32, scalar)
MOEFUSE_INT4_GROUPS(MOEFUSE_GEMM_U4_DECLARE, 8x8, avx2)
MOEFUSE_INT4_GROUPS(MOEFUSE_GEMM_U4_DECLARE, 12x32, avx512)
// gemm_u4__avx512bf16.cpp — the group sums on vdpbf16ps; a call whose A holds a value that is not a bf16 value runs
// gemm_u4g<G>w_f32_12x32__avx512.
MOEFUSE_INT4_GROUPS(MOEFUSE_GEMM_U4_DECLARE, 12x32, avx512bf16)
MOEFUSE_INT4_GROUPS(MOEFUSE_GEMM_U4S8_DECLARE, 1x32, scalar)
MOEFUSE_INT4_GROUPS(MOEFUSE_GEMM_U4S8_DECLARE, 2x32, avx2)
MOEFUSE_INT4_GROUPS(MOEFUSE_GEMM_U4S8_DECLARE, 6x32, avx512)
MOEFUSE_INT4_GROUPS(MOEFUSE_GEMM_U4S8_DECLARE, 6x64, avx512vnni)

// gemm_fp8_scalar.cpp, gemm_fp8__avx2.cpp and gemm_fp8__avx512.cpp — FP8 block-scaled weights.
void gemm_fp8w_f32_1x32__scalar(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda,
                                const void* b, float* c, int64_t ldc);
void gemm_fp8w_f32_8x8__avx2(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda, const void* b,
                             float* c, int64_t ldc);
void gemm_fp8w_f32_4x64__avx512(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda,
                                const void* b, float* c, int64_t ldc);
// gemm_fp8__avx512bf16.cpp — the AVX-512 FP8 kernel's block path on vdpbf16ps tiles from 8 rows; fewer rows, and a
// call whose A holds a value that is not a bf16 value, run gemm_fp8w_f32_4x64__avx512.
void gemm_fp8w_f32_4x64__avx512bf16(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda,
                                    const void* b, float* c, int64_t ldc);
// Its bf16-A entry (GemmBf16AFn): the same tiles reading bf16 rows of A, from every M; no fallback.
void gemm_fp8w_bf16a_f32_4x64__avx512bf16(int64_t M, int64_t K, int64_t n0, int64_t n1, const bfloat16* a,
                                          int64_t lda, const void* b, float* c, int64_t ldc);

// gemm_amx__amx.cpp — AMX tiles (amx_gemm.h). int8: TDPBSSD, exact (every tier); a call of fewer than
// kAmxInt8MinRows rows runs gemm_s8_s32_6x64__avx512vnni instead (the same panels, the same exact sums). bf16 weights:
// TDPBF16PS, the native tier only (its rounding is the instruction's own); the fp32-A entry runs
// gemm_bf16w_f32_6x64__avx512bf16 for a call whose A holds a value that is not a bf16 value.
//
// kAmxInt8MinRows: on the Sapphire Rapids-class Xeon (16 cores, 2026-12-04; docs/performance.md), the w8a8 layer with
// every int8 GEMM on AMX against every one on VNNI: decode T = 1 and 8 (one row per expert call) 11-13% slower on AMX,
// T = 128 (16 rows per expert on average) level, T = 512 and 2048 (64, 256 rows) 1.27-1.29x faster on AMX.
inline constexpr int64_t kAmxInt8MinRows = 16;
void gemm_s8_s32_32x32__amx(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a, int64_t lda,
                            const int8_t* b, const int32_t* col_sums, int32_t* c, int64_t ldc);
void gemm_bf16w_f32_32x32__amx(int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a, int64_t lda,
                               const void* b, float* c, int64_t ldc);
void gemm_bf16w_bf16a_f32_32x32__amx(int64_t M, int64_t K, int64_t n0, int64_t n1, const bfloat16* a, int64_t lda,
                                     const void* b, float* c, int64_t ldc);
// W4A8 (amx_gemm_u4s8.h): TDPBSSD on the weights unpacked to q - z, exact (every tier); fewer than kAmxInt8MinRows
// rows run gemm_u4g<G>w_s8_f32_6x64__avx512vnni. unpack_u4_quads__amx and fold_u4s8_tiles__amx are its vector
// parts (amx_gemm_u4s8.h's T::unpack_quads and T::fold: AVX-512 only, no tile instruction), for the tests to run the
// driver with them on the tile model on any AVX-512 machine.
MOEFUSE_INT4_GROUPS(MOEFUSE_GEMM_U4S8_DECLARE, 32x32, amx)
void unpack_u4_quads__amx(const uint8_t* rows, const int8_t* z, int quads, int8_t* out);
void fold_u4s8_tiles__amx(const int32_t (*tiles)[256], int halves, const float* s, float (*acc)[32]);

}  // namespace moefuse::gemm::detail
