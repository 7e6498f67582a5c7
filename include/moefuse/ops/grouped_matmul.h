// moefuse/ops/grouped_matmul.h — the grouped (per-expert) matmul of MoE layers: npu_grouped_matmul.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "moefuse/tensor.h"

namespace moefuse {

/// Keyword arguments of torch_npu.npu_grouped_matmul, with torch_npu's defaults. torch_npu takes lists of tensors
/// for x, weight, bias, scale, ...; this is the single-tensor MoE form (one x, one weight, one y), so each list
/// argument is one Tensor here (the Python layer wraps and unwraps the lists). Undefined Tensors mean "None".
struct GroupedMatmulOptions {
  /// Per-expert bias, [E, N] ([N] is also accepted when E == 1). Its dtype depends on the path:
  /// f32 x: f32; bf16 x: f32; f16 x: f16 or f32; int8 x -> i32: i32; int8 x with scale: i32 (added to the exact
  /// integer sum) or f32/bf16/f16 (added in fp32 after the scales — with or without per_token_scale; the Ascend
  /// kernel adds a float bias only in its per-token path).
  Tensor bias;
  /// Per-channel dequantisation scale for int8 x, [E, N] ([N] when E == 1), bf16 or f32. Required when int8 x
  /// gives a bf16/f16 output; not allowed otherwise. An i64 scale (npu_trans_quant_param format, for int8 output)
  /// is rejected.
  Tensor scale;
  /// Not supported (quantisation offset of the int8-output path): must be undefined.
  Tensor offset;
  /// Not supported (weight-only antiquant): must be undefined.
  Tensor antiquant_scale;
  /// Not supported (weight-only antiquant): must be undefined.
  Tensor antiquant_offset;
  /// Per-token (per-row) scale for int8 x with a scale, [M] f32. Optional.
  Tensor per_token_scale;
  /// Rows per group, i64 or i32 (see group_list_type). Required when group_type is 0, forbidden otherwise.
  Tensor group_list;
  /// 0..3. With one x and one weight every value gives the same single output [M, N]; checked, otherwise ignored.
  int64_t split_item = 0;
  /// std::nullopt (torch_npu's None) or -1: one plain matmul, no group_list, weight [K, N] or [1, K, N].
  /// 0: rows grouped along M by group_list (the MoE form), weight [E, K, N]. 2 (grouping along K) is rejected.
  std::optional<int64_t> group_type;
  /// 0: group_list holds cumulative row ends [G] (non-decreasing); 1: row counts [G];
  /// 2: key-value rows [G, 2] = (expert id, count), decoding stops at the first count <= 0.
  int64_t group_list_type = 0;
  /// Activation applied to each output element after the bias: 0 none, 1 ReLU, 2 GELU (tanh approximation),
  /// 4 FastGELU, 5 SiLU. 3 (and anything else) is rejected. Formulas below.
  int64_t act_type = 0;
  /// Tiling hint of torch_npu (expected tokens per expert); accepted and ignored.
  std::vector<int64_t> tuning_config;
  /// Output dtype. std::nullopt = x's dtype (for float x only: int8 x needs i32, bf16 or f16 here, since an int8
  /// output needs the unsupported i64 scale). For float x it must be unset or equal to x's dtype.
  std::optional<DType> output_dtype;
};

/// torch_npu.npu_grouped_matmul([x], [weight], ..., group_type=0, split_item=2|3) in its MoE form.
///
/// Rows of x are split into consecutive groups by group_list; group g uses expert e (e = g for group_list_type 0/1,
/// the key for type 2) and computes, for every row r of the group and every column n:
///   float x (f32/bf16/f16):   v = acc(r, n) [+ bias[e][n]];                          y = cast(act(v))
///   int8 x -> i32 output:     y = isum(r, n) [+ bias[e][n]]   (exact; the bias add wraps modulo 2^32)
///   int8 x -> bf16/f16:       v = float(isum(r, n) [+ i32 bias[e][n]]) * scale[e][n] [* per_token_scale[r]]
///                                 [+ float bias[e][n]];                               y = cast(act(v))
/// Output rows not covered by any group (when the groups cover fewer than M rows) are written as zeros.
///
/// Arithmetic contract (docs/operators.md, Numerics; every optimised variant must give bitwise the same output) of
/// the portable numerics tier (moefuse/numerics.h). The call runs default_numerics(): in the native tier, on a CPU
/// with AMX-BF16, bf16 weights run on AMX tiles, whose sums differ from acc(r, n) below in their last bits (still the
/// same bits for any M, grouping or thread count); everything else keeps this contract in both tiers.
///   * acc(r, n) is accumulated in fp32 starting from +0.0f, both operands widened exactly to fp32, in the order of
///     the weight's dtype. f32 and f16 weights: over k = 0, 1, ..., K-1 in this order,
///     acc = std::fma(float(x[r][k]), float(w[e][k][n]), acc). bf16 weights (x86 vdpbf16ps's arithmetic, so that
///     AVX512-BF16 runs it at twice the fp32 FMA rate and other CPUs get the same bits): over pairs of k, the odd
///     one first, acc = fma_daz_ftz(x[r][2i+1], w[e][2i+1][n], acc); acc = fma_daz_ftz(x[r][2i], w[e][2i][n], acc)
///     for i = 0 .. ceil(K/2)-1, with x[r][K] = w[e][K][n] = 0 when K is odd; fma_daz_ftz is std::fma with
///     subnormal inputs read as zero and a result below 2^-126 after rounding (24 bits, exponent unbounded) flushed
///     to a zero of its sign, an FMA under MXCSR.DAZ|FTZ (docs/operators.md, grouped_matmul).
///   * isum(r, n) = sum over k of int32(x[r][k]) * int32(w[e][k][n]), exact (|isum| < 2^30 since K < 65536).
///   * float(int32) rounds to nearest even; every other step is one fp32 operation in the order written above;
///     cast() rounds once, to nearest even, to the output dtype (f32 output: no rounding).
///   * The result for a row depends only on that row of x, its expert's weight/bias/scale and its per-token
///     scale — never on M, on other rows, or on how the rows are grouped.
///   * Nor on the kernels, the ISA (cpu.h) or the number of threads (threads.h). One exception, from the x86 FMA
///     instructions: where a NaN is produced, which NaN (payload and sign) comes out may differ between code paths;
///     that it is a NaN does not.
/// Activations, in fp32, one operation at a time in the order written, std::exp being the C library's expf. They
/// follow the AscendC functions the Ascend kernel calls (Relu, Gelu, FasterGelu, Silu), in their order of operations:
///   1 ReLU:       v < 0 ? 0 : v                                             (NaN stays NaN, -0 stays -0)
///   2 GELU-tanh:  t = (v + ((v * v) * v) * 0.044715f) * 1.5957691216057308f;
///                 (v / (std::exp(-|t|) + 1)) * std::exp(min(t, 0))
///                 (= 0.5 v (1 + tanh(sqrt(2/pi) (v + 0.044715 v^3))), written so that exp never overflows)
///   4 FastGELU:   v / (std::exp(v * -1.702f) + 1)
///                 (= torch_npu's / MindSpore's FastGelu v / (1 + exp(-1.702 |v|)) * exp(0.851 (v - |v|)))
///   5 SiLU:       v / (1 + std::exp(-v))
///   For finite v none of them gives NaN; at v = -inf GELU-tanh, FastGELU and SiLU give NaN (as their formulas do)
///   and ReLU gives 0; at +inf all give +inf; NaN stays NaN.
///
/// Every input may have any strides.
/// x:      [M, K], f32, bf16, f16 or i8 (torch_npu's "x not transposable" does not apply: strides are free here).
/// weight: [E, K, N] (or [K, N] when group_type is None/-1), same dtype as x, any strides — in particular the
///         Hugging Face storage [E, N, K] viewed as [E, K, N] (weight.transpose(1, 2)) is read in place, never
///         copied. E >= 1; K = x.size(1); K and N < 65536 (the Ascend limit on inner dims).
/// options: see GroupedMatmulOptions. With group_type 0: group_list [G] (types 0/1, G <= E) or [G, 2] (type 2,
///         expert ids in [0, E)), at most 1024 groups, covering at most M rows in total. Type 2 is accepted for
///         float x as well (torch_npu documents it for int8 only; the decoding is the same).
/// Returns y [M, N], contiguous, dtype = output_dtype (or x's dtype).
/// Errors (nothing is written when one is thrown):
///   TypeError:  x not f32/bf16/f16/i8; weight dtype != x dtype (int8 weight with float x = antiquant, and int4
///               packed in i32, are not supported); output_dtype not allowed for x (float x: x's dtype; int8 x:
///               i32, bf16 or f16); bias/scale/per_token_scale/group_list of a dtype not listed above (scale i64
///               included).
///   ValueError: wrong ranks or shapes (x 2-D; weight 3-D, or 2-D/[1, K, N] without grouping; K mismatch; bias
///               and scale [E, N]; per_token_scale [M]); E == 0; K or N >= 65536; offset / antiquant_scale /
///               antiquant_offset given; group_type not None/-1/0 (2 included); group_list missing for
///               group_type 0 or given without it; bad group_list (see src/base/groups.h: decreasing cumsum,
///               negative count, expert id out of range, more than 1024 groups, covering more than M rows), more
///               groups than experts (types 0/1); group_list_type not 0/1/2; split_item not 0..3; act_type not
///               0/1/2/4/5 or not 0 with an i32 output; scale or per_token_scale given where not allowed (float x,
///               i32 output); scale missing for int8 x with a bf16/f16 output (per_token_scale alone is not
///               enough).
/// Execution (speed only: by the contract above every path gives the same bits): an expert with a group of at
/// least 48 rows has its weight packed for this call (as pack_grouped_weights does) and its groups run on the GEMM
/// kernels of active_isa(); the groups of the other experts run on the scalar reference, since packing an expert
/// costs about as much as 35 to 40 rows on the reference (measured on the seed shapes). The groups are spread over the operators' thread pool (threads.h). To pay for packing once,
/// not per call, pack the weights with pack_grouped_weights() and call the packed forms below.
Tensor grouped_matmul(const Tensor& x, const Tensor& weight, const GroupedMatmulOptions& options = {});

/// As grouped_matmul(), writing into `y` (the output dtype, shape [M, N], contiguous, writable).
void grouped_matmul_out(const Tensor& x, const Tensor& weight, const GroupedMatmulOptions& options, const Tensor& y);

namespace detail {
struct PackedGroupedWeightsAccess;
}

/// A grouped_matmul weight packed once for the GEMM kernels (per expert, the panel layout of the kernel family), for
/// the packed forms of grouped_matmul below, which then never repack and, in the _out form, never allocate.
///
/// Made by pack_grouped_weights(). Move-only; immutable, so any number of threads may use one at once. A
/// default-constructed or moved-from object is empty, and grouped_matmul rejects it. Memory: about the size of the
/// weight (per expert: N rounded up to a multiple of 32; int8 also K to a multiple of 4, plus 4 bytes per column).
class PackedGroupedWeights {
 public:
  PackedGroupedWeights() noexcept;
  ~PackedGroupedWeights();
  PackedGroupedWeights(PackedGroupedWeights&& other) noexcept;
  PackedGroupedWeights& operator=(PackedGroupedWeights&& other) noexcept;
  PackedGroupedWeights(const PackedGroupedWeights&) = delete;
  PackedGroupedWeights& operator=(const PackedGroupedWeights&) = delete;

  /// True when default-constructed or moved from.
  bool empty() const { return impl_ == nullptr; }
  /// The weight's dtype: f32, bf16, f16 or i8 (f32 when empty).
  DType dtype() const { return dtype_; }
  /// The weight's logical shape, [E, K, N] or [K, N] as given to pack_grouped_weights ([] when empty).
  const Shape& shape() const { return shape_; }
  /// E (1 for a [K, N] weight; 0 when empty).
  int64_t num_experts() const { return shape_.rank() == 3 ? shape_[0] : shape_.rank() == 2 ? 1 : 0; }
  /// K and N (0 when empty).
  int64_t k() const { return shape_.rank() >= 2 ? shape_[shape_.rank() - 2] : 0; }
  int64_t n() const { return shape_.rank() >= 2 ? shape_[shape_.rank() - 1] : 0; }
  /// Bytes of packed data held (all experts).
  size_t bytes() const;
  /// "packed bf16[64, 2048, 1024]" (the form error messages use), or "empty packed weights".
  std::string describe() const;

 private:
  friend struct detail::PackedGroupedWeightsAccess;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  DType dtype_ = DType::f32;
  Shape shape_;
};

/// Packs `weight` for the packed forms of grouped_matmul: [E, K, N], or [K, N] (for group_type None/-1), f32, bf16,
/// f16 or i8, any strides — the Hugging Face storage [E, N, K] viewed as [E, K, N] is read in place, never copied
/// first. Element bits are kept (NaN payloads included). The experts are packed in parallel on the operators' thread
/// pool (threads.h).
/// Errors: ValueError: weight undefined, not 2-D or 3-D, E == 0, K or N >= 65536; TypeError: dtype not f32, bf16,
/// f16 or i8; ResourceError: out of memory.
PackedGroupedWeights pack_grouped_weights(const Tensor& weight);

/// grouped_matmul() with a packed weight: the same arguments, semantics, checks and errors, and bitwise the same
/// output, as grouped_matmul(x, w, options) with the tensor w the weight was packed from (messages about the weight
/// describe it as "packed <dtype>[<shape>]"; an empty PackedGroupedWeights is a ValueError: "expected packed weights").
/// Every group runs on the GEMM kernels of active_isa() (cpu.h), chosen at each call, split into tasks of (group,
/// block of rows, block of 64 to 512 columns) over the operators' thread pool (threads.h): blocks are sized so that
/// there are about 8 tasks per thread, columns first and rows too when few groups are active, whatever M is.
Tensor grouped_matmul(const Tensor& x, const PackedGroupedWeights& weight, const GroupedMatmulOptions& options = {});

/// As the packed grouped_matmul(), writing into `y` (the output dtype, shape [M, N], contiguous, writable). Its
/// scratch memory belongs to the calling thread and is reused: once a first call has grown it, later calls from the
/// same thread with the same or smaller shapes (and the same thread count) allocate nothing.
void grouped_matmul_out(const Tensor& x, const PackedGroupedWeights& weight, const GroupedMatmulOptions& options,
                        const Tensor& y);

}  // namespace moefuse
