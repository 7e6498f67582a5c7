// Declarations of every rows variant, for the registry only (rows/registry.cpp); callers go through RowsKernels.
// Each ISA's group is defined in the file named after it by rows_impl.h's MOEFUSE_ROWS_VARIANTS, and declared here
// by MOEFUSE_ROWS_DECLARE, with the same names: <op>_<types>__<isa>.
#pragma once

#include <cstdint>

#define MOEFUSE_ROWS_DECLARE(isa)                                                                                    \
  void swiglu_f32r_f32__##isa(int64_t n, const float* gate, const float* up, float* out);                            \
  void swiglu_bf16r_f32__##isa(int64_t n, const float* gate, const float* up, float* out);                           \
  void swiglu_f16r_f32__##isa(int64_t n, const float* gate, const float* up, float* out);                            \
  void dequant_swiglu_s32_f32__##isa(int64_t n, const int32_t* gate, const int32_t* up, const float* gate_scale,     \
                                     const float* up_scale, float row_scale, const float* smooth, float* out);       \
  float quantize_f32_s8__##isa(int64_t n, const void* x, const float* smooth, float* tmp, int8_t* q);                \
  float quantize_bf16_s8__##isa(int64_t n, const void* x, const float* smooth, float* tmp, int8_t* q);               \
  float quantize_f16_s8__##isa(int64_t n, const void* x, const float* smooth, float* tmp, int8_t* q);                \
  void combine_f32_f32__##isa(int64_t n, const void* row, float s, bool accumulate, float* acc);                     \
  void combine_bf16_f32__##isa(int64_t n, const void* row, float s, bool accumulate, float* acc);                    \
  void combine_f16_f32__##isa(int64_t n, const void* row, float s, bool accumulate, float* acc);                     \
  void dequant_s32_f32__##isa(int64_t n, const int32_t* acc, const float* scale, float row_scale, float* out);       \
  void scale_round_f32__##isa(int64_t n, const void* x, float s, float* out);                                        \
  void scale_round_bf16__##isa(int64_t n, const void* x, float s, float* out);                                       \
  void scale_round_f16__##isa(int64_t n, const void* x, float s, float* out);                                        \
  void exp_f32__##isa(int64_t n, const float* x, float* out); /* exp_f32 (base/expf.h) on a row: tests, benches */

namespace moefuse::rows::detail {

MOEFUSE_ROWS_DECLARE(scalar)  // rows_scalar.cpp
MOEFUSE_ROWS_DECLARE(avx2)    // rows__avx2.cpp
MOEFUSE_ROWS_DECLARE(avx512)  // rows__avx512.cpp
// exp_f32's scalar code under each vector file's flags (with FMA instructions): the exhaustive exp test's quick
// reference.
void exp_f32_scalar__avx2(int64_t n, const float* x, float* out);
void exp_f32_scalar__avx512(int64_t n, const float* x, float* out);

}  // namespace moefuse::rows::detail
