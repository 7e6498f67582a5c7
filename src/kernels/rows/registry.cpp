// The rows family's rows of the kernel registry (kernels/registry.h) and its dispatch.
#include "kernels/registry.h"
#include "kernels/rows/variants.h"

namespace moefuse::rows {
namespace {
using kernels::at_least;
using kernels::KernelInfo;
using kernels::Op;

#define MOEFUSE_ROWS_ROW(op, fn, isa, in, out, tile) \
  KernelInfo { "rows", Op::op, #fn, Isa::isa, DType::in, DType::out, 1, tile, &detail::fn, at_least<Isa::isa> }
// One ISA's rows; tile = fp32 lanes of one vector step (the compiler vectorises rows_impl.h).
#define MOEFUSE_ROWS_ISA(isa, tile)                                                  \
  MOEFUSE_ROWS_ROW(swiglu, swiglu_f32r_f32__##isa, isa, f32, f32, tile),             \
  MOEFUSE_ROWS_ROW(swiglu, swiglu_bf16r_f32__##isa, isa, bf16, f32, tile),           \
  MOEFUSE_ROWS_ROW(swiglu, swiglu_f16r_f32__##isa, isa, f16, f32, tile),             \
  MOEFUSE_ROWS_ROW(dequant_swiglu, dequant_swiglu_s32_f32__##isa, isa, i32, f32, tile), \
  MOEFUSE_ROWS_ROW(quantize, quantize_f32_s8__##isa, isa, f32, i8, tile),            \
  MOEFUSE_ROWS_ROW(quantize, quantize_bf16_s8__##isa, isa, bf16, i8, tile),          \
  MOEFUSE_ROWS_ROW(quantize, quantize_f16_s8__##isa, isa, f16, i8, tile),            \
  MOEFUSE_ROWS_ROW(combine, combine_f32_f32__##isa, isa, f32, f32, tile),            \
  MOEFUSE_ROWS_ROW(combine, combine_bf16_f32__##isa, isa, bf16, f32, tile),          \
  MOEFUSE_ROWS_ROW(combine, combine_f16_f32__##isa, isa, f16, f32, tile),            \
  MOEFUSE_ROWS_ROW(dequant, dequant_s32_f32__##isa, isa, i32, f32, tile),            \
  MOEFUSE_ROWS_ROW(scale_round, scale_round_f32__##isa, isa, f32, f32, tile),        \
  MOEFUSE_ROWS_ROW(scale_round, scale_round_bf16__##isa, isa, bf16, f32, tile),      \
  MOEFUSE_ROWS_ROW(scale_round, scale_round_f16__##isa, isa, f16, f32, tile)

const KernelInfo kRowsRows[] = {MOEFUSE_ROWS_ISA(scalar, 1), MOEFUSE_ROWS_ISA(avx2, 8)};
#undef MOEFUSE_ROWS_ISA
#undef MOEFUSE_ROWS_ROW

template <class Fn>
Fn pick(Op op, DType in, const kernels::Dispatch& d) {
  return std::get<Fn>(kernels::find(op, in, d)->fn);
}

}  // namespace

RowsKernels select_rows_kernels(Isa isa) {
  const kernels::Dispatch d{isa, false};
  RowsKernels k;
  k.isa = isa;
  const DType floats[3] = {DType::f32, DType::bf16, DType::f16};
  for (int i = 0; i < 3; ++i) {
    k.swiglu[i] = pick<SwigluFn>(Op::swiglu, floats[i], d);
    k.quantize[i] = pick<QuantizeFn>(Op::quantize, floats[i], d);
    k.combine[i] = pick<CombineFn>(Op::combine, floats[i], d);
    k.scale_round[i] = pick<ScaleRoundFn>(Op::scale_round, floats[i], d);
  }
  k.dequant_swiglu = pick<DequantSwigluFn>(Op::dequant_swiglu, DType::i32, d);
  k.dequant = pick<DequantFn>(Op::dequant, DType::i32, d);
  return k;
}

RowsKernels select_rows_kernels() { return select_rows_kernels(active_isa()); }

}  // namespace moefuse::rows

namespace moefuse::kernels {
std::span<const KernelInfo> rows_registry() { return rows::kRowsRows; }
}  // namespace moefuse::kernels
