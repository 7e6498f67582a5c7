// The GEMM rows of the kernel registry (kernels/registry.h), and the dispatch that reads them. Chosen once, at plan
// time; never consulted per tile.
#include <cstdlib>
#include <string>

#include "kernels/gemm/variants.h"
#include "kernels/registry.h"

namespace moefuse::gemm {

namespace {
using kernels::at_least;
using kernels::KernelInfo;
using kernels::Op;

#define MOEFUSE_GEMM_ROW(op, fn, isa, in, out, tm, tn, applies) \
  KernelInfo { "gemm", Op::op, #fn, Isa::isa, DType::in, DType::out, tm, tn, &detail::fn, applies }

// The float rows of one ISA (f32, bf16 and f16 weights; fp32 out): gemm_<dtype>w_f32_<tile>__<isa>.
#define MOEFUSE_GEMM_FLOATS(tile, isa, tm, tn)                                                          \
  MOEFUSE_GEMM_ROW(gemm_float, gemm_f32w_f32_##tile##__##isa, isa, f32, f32, tm, tn, at_least<Isa::isa>),   \
  MOEFUSE_GEMM_ROW(gemm_float, gemm_bf16w_f32_##tile##__##isa, isa, bf16, f32, tm, tn, at_least<Isa::isa>), \
  MOEFUSE_GEMM_ROW(gemm_float, gemm_f16w_f32_##tile##__##isa, isa, f16, f32, tm, tn, at_least<Isa::isa>)

// The int4 group-wise rows of one ISA (group sizes 32, 64, 128): gemm_u4g<G>w_f32_<tile>__<isa>.
#define MOEFUSE_GEMM_U4(tile, isa, tm, tn)                                                                  \
  MOEFUSE_GEMM_ROW(gemm_u4_g32, gemm_u4g32w_f32_##tile##__##isa, isa, u8, f32, tm, tn, at_least<Isa::isa>), \
  MOEFUSE_GEMM_ROW(gemm_u4_g64, gemm_u4g64w_f32_##tile##__##isa, isa, u8, f32, tm, tn, at_least<Isa::isa>), \
  MOEFUSE_GEMM_ROW(gemm_u4_g128, gemm_u4g128w_f32_##tile##__##isa, isa, u8, f32, tm, tn, at_least<Isa::isa>)

// The W4A8 rows of one ISA (int4 group-wise weights x int8 rows): gemm_u4g<G>w_s8_f32_<tile>__<suffix>, needing
// level `isa` and serving the dispatches `applies` accepts.
#define MOEFUSE_GEMM_U4S8(tile, suffix, isa, tm, tn, applies)                                                        \
  MOEFUSE_GEMM_ROW(gemm_u4s8_g32, gemm_u4g32w_s8_f32_##tile##__##suffix, isa, u8, f32, tm, tn, applies),   \
  MOEFUSE_GEMM_ROW(gemm_u4s8_g64, gemm_u4g64w_s8_f32_##tile##__##suffix, isa, u8, f32, tm, tn, applies),   \
  MOEFUSE_GEMM_ROW(gemm_u4s8_g128, gemm_u4g128w_s8_f32_##tile##__##suffix, isa, u8, f32, tm, tn, applies)

const KernelInfo kGemmRows[] = {
    MOEFUSE_GEMM_FLOATS(1x32, scalar, 1, 32),
    MOEFUSE_GEMM_U4(1x32, scalar, 1, 32),
    MOEFUSE_GEMM_ROW(gemm_fp8, gemm_fp8w_f32_1x32__scalar, scalar, u8, f32, 1, 32, at_least<Isa::scalar>),
    MOEFUSE_GEMM_ROW(gemm_s8, gemm_s8_s32_1x32__scalar, scalar, i8, i32, 1, 32, at_least<Isa::scalar>),
    MOEFUSE_GEMM_U4S8(1x32, scalar, scalar, 1, 32, at_least<Isa::scalar>),
    MOEFUSE_GEMM_FLOATS(6x16, avx2, 6, 16),
    MOEFUSE_GEMM_U4(8x8, avx2, 8, 8),
    MOEFUSE_GEMM_ROW(gemm_fp8, gemm_fp8w_f32_8x8__avx2, avx2, u8, f32, 8, 8, at_least<Isa::avx2>),
    MOEFUSE_GEMM_ROW(gemm_s8, gemm_s8_s32_2x16__avx2, avx2, i8, i32, 2, 16, at_least<Isa::avx2>),
    MOEFUSE_GEMM_U4S8(2x32, avx2, avx2, 2, 32, at_least<Isa::avx2>),
    MOEFUSE_GEMM_FLOATS(6x64, avx512, 6, 64),
    MOEFUSE_GEMM_ROW(gemm_float_bf16a, gemm_bf16w_bf16a_f32_6x64__avx512, avx512, bf16, f32, 6, 64,
                     at_least<Isa::avx512>),
    MOEFUSE_GEMM_U4(12x32, avx512, 12, 32),
    MOEFUSE_GEMM_ROW(gemm_fp8, gemm_fp8w_f32_4x64__avx512, avx512, u8, f32, 4, 64, at_least<Isa::avx512>),
    MOEFUSE_GEMM_ROW(gemm_s8, gemm_s8_s32_6x32__avx512, avx512, i8, i32, 6, 32, at_least<Isa::avx512>),
    MOEFUSE_GEMM_U4S8(6x32, avx512, avx512, 6, 32, at_least<Isa::avx512>),
    MOEFUSE_GEMM_ROW(gemm_s8, gemm_s8_s32_6x64__avx512vnni, avx512, i8, i32, 6, 64, kernels::avx512_with_vnni),
    MOEFUSE_GEMM_U4S8(6x64, avx512vnni, avx512, 6, 64, kernels::avx512_with_vnni),
    MOEFUSE_GEMM_ROW(gemm_float, gemm_bf16w_f32_6x64__avx512bf16, avx512bf16, bf16, f32, 6, 64,
                     kernels::avx512_bf16_dot),
    MOEFUSE_GEMM_ROW(gemm_fp8, gemm_fp8w_f32_4x64__avx512bf16, avx512bf16, u8, f32, 4, 64, kernels::avx512_bf16_dot),
    MOEFUSE_GEMM_ROW(gemm_float_bf16a, gemm_bf16w_bf16a_f32_6x64__avx512bf16, avx512bf16, bf16, f32, 6, 64,
                     kernels::avx512_bf16_dot),
    MOEFUSE_GEMM_ROW(gemm_fp8_bf16a, gemm_fp8w_bf16a_f32_4x64__avx512bf16, avx512bf16, u8, f32, 4, 64,
                     kernels::avx512_bf16_dot),
    MOEFUSE_GEMM_ROW(gemm_u4_g32, gemm_u4g32w_f32_12x32__avx512bf16, avx512bf16, u8, f32, 12, 32,
                     kernels::avx512_bf16_dot),
    MOEFUSE_GEMM_ROW(gemm_u4_g64, gemm_u4g64w_f32_12x32__avx512bf16, avx512bf16, u8, f32, 12, 32,
                     kernels::avx512_bf16_dot),
    MOEFUSE_GEMM_ROW(gemm_u4_g128, gemm_u4g128w_f32_12x32__avx512bf16, avx512bf16, u8, f32, 12, 32,
                     kernels::avx512_bf16_dot),
    MOEFUSE_GEMM_ROW(gemm_s8, gemm_s8_s32_32x32__amx, amx, i8, i32, 32, 32, at_least<Isa::amx>),
    MOEFUSE_GEMM_ROW(gemm_float, gemm_bf16w_f32_32x32__amx, amx, bf16, f32, 32, 32, kernels::amx_native),
    MOEFUSE_GEMM_ROW(gemm_float_bf16a, gemm_bf16w_bf16a_f32_32x32__amx, amx, bf16, f32, 32, 32, kernels::amx_native),
    MOEFUSE_GEMM_U4S8(32x32, amx, amx, 32, 32, at_least<Isa::amx>),
};
#undef MOEFUSE_GEMM_U4S8
#undef MOEFUSE_GEMM_U4
#undef MOEFUSE_GEMM_FLOATS
#undef MOEFUSE_GEMM_ROW

// The row for (op, dt) at d, except that the native tier's AMX-BF16 rows serve only with MOEFUSE_AMX_BF16=on
// (native_amx_bf16: else the portable rows), and a vdpbf16ps row (bf16, FP8 or W4A16 weights) gives way to the
// AVX-512 level's row where this process prefers the fp32 FMA kernels (bf16_dot_unused_reason: the same bits).
const KernelInfo* find_row(Op op, DType dt, const kernels::Dispatch& d) {
  const KernelInfo* k = kernels::find(op, dt, d);
  if (k && k->applies == kernels::amx_native && !native_amx_bf16())
    return find_row(op, dt, kernels::Dispatch{d.isa, d.vnni, Numerics::portable});
  if (k && k->applies == kernels::avx512_bf16_dot && *bf16_dot_unused_reason(d.isa))
    return kernels::find(op, dt, kernels::Dispatch{Isa::avx512, d.vnni, d.numerics});
  return k;
}

GemmFloatKernel float_row(DType dt, const kernels::Dispatch& d) {
  const KernelInfo* k = find_row(Op::gemm_float, dt, d);
  return GemmFloatKernel{std::get<GemmFloatFn>(k->fn), k->name};
}

GemmFloatKernel u8_row(Op op, const kernels::Dispatch& d) {  // int4 and FP8 weights: u8 rows
  const KernelInfo* k = find_row(op, DType::u8, d);
  return GemmFloatKernel{std::get<GemmFloatFn>(k->fn), k->name};
}

GemmBf16AKernel bf16a_row(Op op, DType dt, const kernels::Dispatch& d) {  // none below avx512 (FP8: avx512bf16)
  const KernelInfo* k = find_row(op, dt, d);
  return k ? GemmBf16AKernel{std::get<GemmBf16AFn>(k->fn), k->name} : GemmBf16AKernel{};
}

GemmU4S8Kernel u4s8_row(Op op, const kernels::Dispatch& d) {
  const KernelInfo* k = kernels::find(op, DType::u8, d);
  return GemmU4S8Kernel{std::get<GemmU4S8Fn>(k->fn), k->name};
}

const GemmFloatKernel kNoKernel{};
const GemmBf16AKernel kNoBf16AKernel{};
const GemmU4S8Kernel kNoU4S8Kernel{};

}  // namespace

}  // namespace moefuse::gemm

namespace moefuse::kernels {
std::span<const KernelInfo> gemm_registry() { return gemm::kGemmRows; }
}  // namespace moefuse::kernels

namespace moefuse::gemm {

const GemmFloatKernel& GemmKernels::float_kernel(DType dtype) const {
  switch (dtype) {
    case DType::f32: return f32w;
    case DType::bf16: return bf16w;
    case DType::f16: return f16w;
    default: return kNoKernel;
  }
}

const GemmFloatKernel& GemmKernels::kernel_for(const PackedWeights& w) const {
  if (w.fp8()) return fp8w;
  switch (w.group_size()) {
    case 0: return float_kernel(w.dtype());
    case 32: return u4w_g32;
    case 64: return u4w_g64;
    case 128: return u4w_g128;
    default: return kNoKernel;
  }
}

const GemmBf16AKernel& GemmKernels::bf16a_kernel_for(const PackedWeights& w) const {
  if (w.fp8()) return fp8w_bf16a;
  return w.group_size() == 0 && w.dtype() == DType::bf16 ? bf16w_bf16a : kNoBf16AKernel;
}

const GemmU4S8Kernel& GemmKernels::u4s8_kernel_for(const PackedWeights& w) const {
  switch (w.group_size()) {
    case 32: return u4s8_g32;
    case 64: return u4s8_g64;
    case 128: return u4s8_g128;
    default: return kNoU4S8Kernel;
  }
}

GemmKernels select_gemm_kernels(Isa isa, bool vnni, Numerics numerics) {
  (void)bf16_dot_unused_reason(isa);  // reads MOEFUSE_BF16_DOT: a bad value is an error wherever kernels are chosen
  if (numerics == Numerics::native) (void)native_amx_bf16();  // the same for MOEFUSE_AMX_BF16
  const kernels::Dispatch d{isa, vnni && isa >= Isa::avx512, numerics};
  GemmKernels k;
  k.isa = isa;
  k.vnni = d.vnni;
  k.numerics = numerics;
  k.f32w = float_row(DType::f32, d);
  k.bf16w = float_row(DType::bf16, d);
  k.f16w = float_row(DType::f16, d);
  k.u4w_g32 = u8_row(Op::gemm_u4_g32, d);
  k.u4w_g64 = u8_row(Op::gemm_u4_g64, d);
  k.u4w_g128 = u8_row(Op::gemm_u4_g128, d);
  k.fp8w = u8_row(Op::gemm_fp8, d);
  k.bf16w_bf16a = bf16a_row(Op::gemm_float_bf16a, DType::bf16, d);
  k.fp8w_bf16a = bf16a_row(Op::gemm_fp8_bf16a, DType::u8, d);
  k.u4s8_g32 = u4s8_row(Op::gemm_u4s8_g32, d);
  k.u4s8_g64 = u4s8_row(Op::gemm_u4s8_g64, d);
  k.u4s8_g128 = u4s8_row(Op::gemm_u4s8_g128, d);
  const KernelInfo* s8 = kernels::find(Op::gemm_s8, DType::i8, d);
  k.s8 = GemmS8Kernel{std::get<GemmS8Fn>(s8->fn), s8->name};
  return k;
}

GemmKernels select_gemm_kernels(Numerics numerics) {
  return select_gemm_kernels(active_isa(), use_avx512_vnni(), numerics);
}

std::vector<Isa> available_isas() {
  std::vector<Isa> out;
  for (Isa i : kAllIsas)
    if (int(i) <= int(detected_isa())) out.push_back(i);
  return out;
}

bool vnni_available() { return detected_isa() >= Isa::avx512 && cpu_features().avx512_vnni; }


}  // namespace moefuse::gemm

namespace moefuse {

const char* bf16_dot_unusable_reason(Isa isa) {
  if (detected_isa() < Isa::avx512bf16) return "the CPU (or the OS) lacks AVX512-BF16";
  if (isa < Isa::avx512bf16) return "the ISA level is capped below avx512bf16 (MOEFUSE_MAX_ISA or set_max_isa)";
  // Once per process (a thread-safe static), and only on a CPU that has the instruction.
  static const char* const self_test = gemm::detail::dpbf16_self_test__avx512bf16();
  return self_test ? self_test : "";
}

const char* bf16_dot_unused_reason(Isa isa) {
  const bool prefer = prefer_bf16_dot();  // first: a bad MOEFUSE_BF16_DOT is an error on every CPU
  const char* unusable = bf16_dot_unusable_reason(isa);
  if (*unusable) return unusable;
  if (prefer) return "";
  static const std::string why =
      std::getenv("MOEFUSE_BF16_DOT") && *std::getenv("MOEFUSE_BF16_DOT")
          ? std::string("MOEFUSE_BF16_DOT=off: bf16, FP8 and W4A16 weights run on the fp32 FMA kernels (the same bits)")
          : "this CPU family (" + std::string(cpu_family_name(cpu_family())) +
                ") runs bf16, FP8 and W4A16 weights on the fp32 FMA kernels, faster there (the same bits; "
                "MOEFUSE_BF16_DOT=on overrides)";
  return why.c_str();
}

}  // namespace moefuse
