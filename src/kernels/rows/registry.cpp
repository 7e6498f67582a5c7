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
// The f32, bf16 and f16 rows of one operation: <op>_<dtype><mid>__<isa>.
#define MOEFUSE_ROWS_FLOATS(op, mid, isa, out, tile)                 \
  MOEFUSE_ROWS_ROW(op, op##_f32##mid##__##isa, isa, f32, out, tile),   \
  MOEFUSE_ROWS_ROW(op, op##_bf16##mid##__##isa, isa, bf16, out, tile), \
  MOEFUSE_ROWS_ROW(op, op##_f16##mid##__##isa, isa, f16, out, tile)
// One ISA's rows; tile = fp32 lanes of one vector step (rows_vec.h's intrinsics for swiglu and dequant_swiglu,
// the compiler's vectorisation of rows_impl.h for the others).
#define MOEFUSE_ROWS_ISA(isa, tile)                                                        \
  MOEFUSE_ROWS_FLOATS(swiglu, r_f32, isa, f32, tile),                                      \
  MOEFUSE_ROWS_ROW(dequant_swiglu, dequant_swiglu_s32_f32__##isa, isa, i32, f32, tile),    \
  MOEFUSE_ROWS_FLOATS(quantize, _s8, isa, i8, tile), MOEFUSE_ROWS_FLOATS(combine, _f32, isa, f32, tile), \
  MOEFUSE_ROWS_ROW(dequant, dequant_s32_f32__##isa, isa, i32, f32, tile),                  \
  MOEFUSE_ROWS_FLOATS(scale_round, , isa, f32, tile)

const KernelInfo kRowsRows[] = {MOEFUSE_ROWS_ISA(scalar, 1), MOEFUSE_ROWS_ISA(avx2, 8),
                               MOEFUSE_ROWS_ISA(avx512, 16)};
#undef MOEFUSE_ROWS_ISA
#undef MOEFUSE_ROWS_FLOATS
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
