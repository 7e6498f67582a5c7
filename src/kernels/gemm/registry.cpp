// The GEMM registry: which variant serves each ISA level. Chosen once, at plan time; never consulted per tile.
#include "kernels/gemm/variants.h"

namespace moefuse::gemm {
namespace {

#define MOEFUSE_GEMM_F(fn) \
  GemmFloatKernel { &detail::fn, #fn }
#define MOEFUSE_GEMM_S8(fn) \
  GemmS8Kernel { &detail::fn, #fn }

GemmKernels scalar_kernels() {
  GemmKernels k;
  k.isa = Isa::scalar;
  k.f32w = MOEFUSE_GEMM_F(gemm_f32w_f32_1x32__scalar);
  k.bf16w = MOEFUSE_GEMM_F(gemm_bf16w_f32_1x32__scalar);
  k.f16w = MOEFUSE_GEMM_F(gemm_f16w_f32_1x32__scalar);
  k.s8 = MOEFUSE_GEMM_S8(gemm_s8_s32_1x32__scalar);
  return k;
}

GemmKernels avx2_kernels() {
  GemmKernels k;
  k.isa = Isa::avx2;
  k.f32w = MOEFUSE_GEMM_F(gemm_f32w_f32_6x16__avx2);
  k.bf16w = MOEFUSE_GEMM_F(gemm_bf16w_f32_6x16__avx2);
  k.f16w = MOEFUSE_GEMM_F(gemm_f16w_f32_6x16__avx2);
  k.s8 = MOEFUSE_GEMM_S8(gemm_s8_s32_2x16__avx2);
  return k;
}

GemmKernels avx512_kernels(bool vnni) {
  GemmKernels k;
  k.isa = Isa::avx512;
  k.vnni = vnni;
  k.f32w = MOEFUSE_GEMM_F(gemm_f32w_f32_6x64__avx512);
  k.bf16w = MOEFUSE_GEMM_F(gemm_bf16w_f32_6x64__avx512);
  k.f16w = MOEFUSE_GEMM_F(gemm_f16w_f32_6x64__avx512);
  k.s8 = vnni ? MOEFUSE_GEMM_S8(gemm_s8_s32_6x64__avx512vnni) : MOEFUSE_GEMM_S8(gemm_s8_s32_6x32__avx512);
  return k;
}

#undef MOEFUSE_GEMM_F
#undef MOEFUSE_GEMM_S8

const GemmFloatKernel kNoKernel{};

}  // namespace

const GemmFloatKernel& GemmKernels::float_kernel(DType dtype) const {
  switch (dtype) {
    case DType::f32: return f32w;
    case DType::bf16: return bf16w;
    case DType::f16: return f16w;
    default: return kNoKernel;
  }
}

GemmKernels select_gemm_kernels(Isa isa, bool vnni) {
  switch (isa) {
    case Isa::scalar: return scalar_kernels();
    case Isa::avx2: return avx2_kernels();
    case Isa::avx512: return avx512_kernels(vnni);
  }
  return scalar_kernels();
}

GemmKernels select_gemm_kernels() { return select_gemm_kernels(active_isa(), use_avx512_vnni()); }

std::vector<Isa> available_isas() {
  std::vector<Isa> out;
  for (Isa i : {Isa::scalar, Isa::avx2, Isa::avx512})
    if (int(i) <= int(detected_isa())) out.push_back(i);
  return out;
}

bool vnni_available() { return detected_isa() == Isa::avx512 && cpu_features().avx512_vnni; }

}  // namespace moefuse::gemm
