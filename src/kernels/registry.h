// The kernel registry: one table of every kernel variant of every family (gemm, rows), in the manner of XNNPACK.
// A row names the kernel, the ISA level it needs, its element types and tile, its function pointer and a predicate
// saying when it applies. Dispatch (select_gemm_kernels, select_rows_kernels) takes, for each (op, dtype), the last
// row of the table that applies at the requested level; the kernel tests (tests/kernels/registry_test.cpp) and the
// micro-benchmarks (bench/rows_bench.cpp, bench/gemm_bench.cpp) walk the same table. Adding an ISA variant or a
// family is adding rows (kernels/<family>/registry.cpp) and a file, not editing dispatch code.
#pragma once

#include <span>
#include <variant>
#include <vector>

#include "kernels/gemm/gemm.h"
#include "kernels/rows/rows.h"
#include "moefuse/numerics.h"

namespace moefuse::kernels {

/// What a dispatch asks for: an ISA level, for int8 GEMM whether AVX-512 VNNI may be used, and the numerics tier
/// (native admits kernels whose rounding is their hardware's own: AMX-BF16).
struct Dispatch {
  Isa isa = Isa::scalar;
  bool vnni = false;
  Numerics numerics = Numerics::portable;
};

/// The operation a kernel performs (its contract is in the family's header).
/// gemm_u4_g<G>: int4 group-wise weights of group size G (in = u8), with the float kernels' signature.
/// gemm_u4s8_g<G>: int4 group-wise weights x int8 rows (W4A8, in = u8), signature GemmU4S8Fn.
/// gemm_float_bf16a / gemm_fp8_bf16a: bf16 rows of A with bf16 / FP8 weights (GemmBf16AFn; avx512bf16 rows only).
enum class Op { gemm_float, gemm_float_bf16a, gemm_fp8_bf16a, gemm_u4_g32, gemm_u4_g64, gemm_u4_g128, gemm_fp8, gemm_s8, gemm_u4s8_g32, gemm_u4s8_g64, gemm_u4s8_g128, swiglu, dequant_swiglu, quantize, combine, dequant, scale_round };

using KernelFn = std::variant<gemm::GemmFloatFn, gemm::GemmBf16AFn, gemm::GemmS8Fn, gemm::GemmU4S8Fn, rows::SwigluFn, rows::DequantSwigluFn,
                              rows::QuantizeFn, rows::CombineFn, rows::DequantFn, rows::ScaleRoundFn>;

struct KernelInfo {
  const char* family = "";  // "gemm" or "rows"
  Op op = Op::gemm_float;
  const char* name = "";    // <op>_<types>_<tile>__<isa>, e.g. "gemm_bf16w_f32_6x16__avx2", "combine_bf16_f32__avx2"
  Isa isa = Isa::scalar;    // the level the kernel needs
  DType in = DType::f32;    // gemm: the weight dtype; rows: the input (swiglu: the rounding dtype)
  DType out = DType::f32;   // the output's dtype
  int tile_m = 1, tile_n = 1;  // gemm: the register tile; rows: 1 x the elements of one vector step
  KernelFn fn;
  bool (*applies)(const Dispatch&) = nullptr;  // whether this row may serve a dispatch at that level
};

/// Every row, families in order (gemm, rows), each family's rows scalar first.
std::span<const KernelInfo> registry();

/// The row serving (op, in) at `d`: the last row of the table that applies; nullptr when none.
const KernelInfo* find(Op op, DType in, const Dispatch& d);

/// The dispatch levels this machine can run, scalar first (with and without VNNI where the CPU has it).
std::vector<Dispatch> available_dispatches();

/// Whether this machine can run `k` (some available dispatch level applies to it).
bool runs_here(const KernelInfo& k);

/// Whether `k` serves a portable dispatch this machine runs: the rows whose results the contracts define bit for bit
/// (every row but the native tier's, amx_native). The bitwise kernel tests walk these.
bool runs_here_portable(const KernelInfo& k);

/// Row predicates: "at this level or above", the AVX-512 VNNI int8 kernels, and the AVX512-BF16 bf16-weights kernel
/// (level avx512bf16 or above and its self-test passed: bf16_dot_unusable_reason in moefuse/cpu.h; whether the layer
/// takes it is gemm::select_gemm_kernels's choice, bf16_dot_unused_reason).
template <Isa L>
bool at_least(const Dispatch& d) {
  return int(d.isa) >= int(L);
}
bool avx512_with_vnni(const Dispatch& d);
bool amx_native(const Dispatch& d);  // level amx and the native tier
bool avx512_bf16_dot(const Dispatch& d);

/// The families' tables (kernels/<family>/registry.cpp).
std::span<const KernelInfo> gemm_registry();
std::span<const KernelInfo> rows_registry();

}  // namespace moefuse::kernels
