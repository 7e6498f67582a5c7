#include "moefuse/ops/grouped_matmul.h"

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/check.h"
#include "base/default_pool.h"
#include "base/groups.h"
#include "base/scratch.h"
#include "ops/grouped_matmul_fp8a.h"
#include "ops/grouped_matmul_kernels.h"
#include "ops/packed_grouped_weights.h"
#include "reference/grouped_matmul.h"

namespace moefuse {
namespace {

constexpr const char* kOp = "grouped_matmul";
constexpr int64_t kMaxInnerDim = 65535;  // inner dims (K, N) < 65536
constexpr int64_t kMaxGroups = 1024;     // group_list length with a single weight tensor

std::string str(int64_t v) { return std::to_string(v); }
std::string name(DType t) { return std::string(dtype_name(t)); }

// A per-expert tensor (bias, scale): [E, N], or [N] when there is a single expert.
void check_per_expert(const char* arg, const Tensor& t, int64_t E, int64_t N) {
  const bool ok = (t.dim() == 2 && t.size(0) == E && t.size(1) == N) || (E == 1 && t.dim() == 1 && t.size(0) == N);
  if (!ok) {
    std::string expected = "shape [E, N] = [" + str(E) + ", " + str(N) + "]";
    if (E == 1) expected += " or [N] = [" + str(N) + "]";
    check::fail_value(kOp, arg, expected, "shape " + t.shape().str());
  }
}

void check_unsupported(const char* arg, const Tensor& t, const char* why) {
  if (t.defined()) check::fail_value(kOp, arg, std::string("none (") + why + ")", t.describe());
}

// What validation needs to know of the weight, a tensor or packed weights (which keep the logical shape they were
// packed from), so that both forms make the same checks with the same messages.
struct WeightDesc {
  bool defined;
  bool packed;
  DType dtype;
  Shape shape;
  bool int4 = false;
  bool fp8 = false;

  static WeightDesc of(const Tensor& w) { return {w.defined(), false, w.dtype(), w.shape()}; }
  static WeightDesc of(const PackedGroupedWeights& w) {
    return {!w.empty(), true, w.dtype(), w.shape(), is_int4(w), is_fp8(w)};
  }
  // Packed FP8 block-scaled weights (pack_grouped_fp8: the layer's one-byte FP8 projections) serve float x.
  static bool is_fp8(const PackedGroupedWeights& w) {
    const auto packed = detail::PackedGroupedWeightsAccess::packed(w);
    return packed && packed->size() > 0 && (*packed)[0].fp8();
  }
  // Packed int4 group-wise weights (ops/packed_grouped_weights.h: the layer's w4a16 and w4a8 projections) serve
  // float x (w4a16) and int8 x with a per-token scale (w4a8).
  static bool is_int4(const PackedGroupedWeights& w) {
    const auto packed = detail::PackedGroupedWeightsAccess::packed(w);
    return packed && packed->size() > 0 && (*packed)[0].group_size() > 0;
  }

  int dim() const { return shape.rank(); }
  int64_t size(int d) const { return shape[d < 0 ? d + shape.rank() : d]; }
  std::string describe() const { return (packed ? "packed " : "") + name(dtype) + shape.str(); }
};

// Validates everything and returns the reference arguments (weight left undefined) and the output dtype/shape.
GroupedMatmulArgs validate(const Tensor& x, const WeightDesc& weight, const GroupedMatmulOptions& o,
                                      DType& out_dtype, Shape& out_shape) {
  // x
  check::defined(kOp, "x", x);
  check::dtype_in(kOp, "x", x, {DType::f32, DType::bf16, DType::f16, DType::i8});
  if (x.dim() != 2) check::fail_value(kOp, "x", "a 2-D tensor [M, K]", x.describe());
  const int64_t M = x.size(0), K = x.size(1);
  const bool int8 = x.dtype() == DType::i8;

  // weight
  if (!weight.defined) {
    if (weight.packed)
      check::fail_value(kOp, "weight", "packed weights (from pack_grouped_weights)", "empty packed weights");
    check::fail_value(kOp, "weight", "a tensor", "none");
  }
  if (weight.fp8 && int8)
    check::fail_type(kOp, "x", "dtype f32, bf16 or f16 (FP8 weights run with float x)", name(x.dtype()));
  if (weight.dtype != x.dtype() && !weight.int4 && !weight.fp8) {
    std::string expected = "dtype " + name(x.dtype()) + " (the dtype of x)";
    if (!int8 && weight.dtype == DType::i8) expected += "; int8 weights with float x (antiquant) are not supported";
    if (int8 && weight.dtype == DType::i32) expected += "; int4 weights packed in i32 are not supported";
    check::fail_type(kOp, "weight", expected, name(weight.dtype));
  }
  const int64_t group_type = o.group_type.value_or(-1);  // None = -1
  if (group_type != -1 && group_type != 0)
    check::fail_value(kOp, "group_type",
                      "None or -1 (one matmul) or 0 (groups of rows, the MoE form); 2 (groups along K) is not "
                      "supported",
                      str(group_type));
  const bool grouped = group_type == 0;
  if (grouped ? weight.dim() != 3 : (weight.dim() != 2 && weight.dim() != 3))
    check::fail_value(kOp, "weight", grouped ? "a 3-D tensor [E, K, N] (group_type 0)" : "a tensor [K, N] or [1, K, N]",
                      weight.describe());
  const int64_t E = weight.dim() == 3 ? weight.size(0) : 1;
  const int64_t N = weight.size(-1);
  if (E < 1) check::fail_value(kOp, "weight", "at least one expert (E >= 1)", weight.describe());
  if (!grouped && E != 1)
    check::fail_value(kOp, "weight", "a single expert [1, K, N] when group_type is None/-1 (use group_type 0 to "
                      "group rows among experts)", weight.describe());
  if (weight.size(-2) != K)
    check::fail_value(kOp, "weight", "K = size(-2) equal to x.size(1) = " + str(K), weight.describe());
  if (K > kMaxInnerDim) check::fail_value(kOp, "x", "K < 65536", x.describe());
  if (N > kMaxInnerDim) check::fail_value(kOp, "weight", "N < 65536", weight.describe());

  // Options that are not supported.
  check_unsupported("offset", o.offset, "offset is not supported");
  check_unsupported("antiquant_scale", o.antiquant_scale, "weight-only antiquant is not supported");
  check_unsupported("antiquant_offset", o.antiquant_offset, "weight-only antiquant is not supported");

  // Flags.
  check::in_range(kOp, "split_item", o.split_item, 0, 3, "0, 1, 2 or 3");
  check::in_range(kOp, "group_list_type", o.group_list_type, 0, 2, "0 (cumsum), 1 (count) or 2 (key-value)");
  const int64_t act = o.act_type;
  if (act != 0 && act != 1 && act != 2 && act != 4 && act != 5)
    check::fail_value(kOp, "act_type", "0 (none), 1 (ReLU), 2 (GELU-tanh), 4 (FastGELU) or 5 (SiLU)", str(act));

  // Groups.
  if (grouped) {
    if (!o.group_list.defined())
      check::fail_value(kOp, "group_list", "a tensor (group_type 0 needs a group_list)", "none");
    check_group_list(kOp, "group_list", o.group_list, o.group_list_type, E, M, kMaxGroups);
    if (o.group_list_type != 2 && o.group_list.size(0) > E)
      check::fail_value(kOp, "group_list", "at most E = " + str(E) + " groups (one per expert)",
                        str(o.group_list.size(0)) + " groups");
  } else if (o.group_list.defined()) {
    check::fail_value(kOp, "group_list", "none when group_type is None/-1 (set group_type=0 to group rows)",
                      o.group_list.describe());
  }

  // Dtype paths.
  if (!int8) {
    out_dtype = o.output_dtype.value_or(x.dtype());
    if (out_dtype != x.dtype())
      check::fail_type(kOp, "output_dtype", "none or " + name(x.dtype()) + " (the dtype of x)", name(out_dtype));
    check_unsupported("scale", o.scale, "scale is for int8 x");
    check_unsupported("per_token_scale", o.per_token_scale, "per_token_scale is for int8 x");
    if (o.bias.defined()) {
      if (x.dtype() == DType::f16) check::dtype_in(kOp, "bias", o.bias, {DType::f16, DType::f32});
      else check::dtype_in(kOp, "bias", o.bias, {DType::f32});
      check_per_expert("bias", o.bias, E, N);
    }
  } else if (weight.int4) {
    // int8 x with int4 weights (W4A8, gemm.h): the group scales are in the packed weights; the row scale is
    // per_token_scale, applied last in fp32.
    out_dtype = o.output_dtype.value_or(DType::f32);
    if (out_dtype != DType::f32 && out_dtype != DType::bf16 && out_dtype != DType::f16)
      check::fail_type(kOp, "output_dtype", "none, f32, bf16 or f16 for int8 x with int4 weights", name(out_dtype));
    check_unsupported("scale", o.scale, "int4 weights carry their group scales");
    check_unsupported("bias", o.bias, "bias is not supported with int4 weights");
    if (!o.per_token_scale.defined())
      check::fail_value(kOp, "per_token_scale", "a per-row scale [M] (int8 x with int4 weights)", "none");
    check::dtype_in(kOp, "per_token_scale", o.per_token_scale, {DType::f32});
    if (o.per_token_scale.dim() != 1 || o.per_token_scale.size(0) != M)
      check::fail_value(kOp, "per_token_scale", "shape [M] = [" + str(M) + "]", "shape " + o.per_token_scale.shape().str());
  } else {
    if (!o.output_dtype)
      check::fail_type(kOp, "output_dtype", "i32, bf16 or f16 for int8 x (an int8 output needs an i64 scale, which "
                       "is not supported)", "none (= i8)");
    out_dtype = *o.output_dtype;
    if (out_dtype != DType::i32 && out_dtype != DType::bf16 && out_dtype != DType::f16) {
      std::string expected = "i32, bf16 or f16 for int8 x";
      if (out_dtype == DType::i8) expected += " (an int8 output needs an i64 scale, which is not supported)";
      check::fail_type(kOp, "output_dtype", expected, name(out_dtype));
    }
    if (o.scale.defined() && o.scale.dtype() == DType::i64)
      check::fail_type(kOp, "scale", "dtype bf16 or f32 (an i64 npu_trans_quant_param scale, for int8 output, is "
                       "not supported)", "i64");
    if (out_dtype == DType::i32) {
      check_unsupported("scale", o.scale, "output_dtype is i32: no dequantisation");
      check_unsupported("per_token_scale", o.per_token_scale, "output_dtype is i32: no dequantisation");
      if (act != 0)
        check::fail_value(kOp, "act_type", "0 when output_dtype is i32 (activations need a float output)", str(act));
      if (o.bias.defined()) {
        check::dtype_in(kOp, "bias", o.bias, {DType::i32});
        check_per_expert("bias", o.bias, E, N);
      }
    } else {
      if (!o.scale.defined())
        check::fail_value(kOp, "scale", "a per-channel scale [E, N] (int8 x with a " + name(out_dtype) + " output)",
                          "none");
      check::dtype_in(kOp, "scale", o.scale, {DType::bf16, DType::f32});
      check_per_expert("scale", o.scale, E, N);
      if (o.per_token_scale.defined()) {
        check::dtype_in(kOp, "per_token_scale", o.per_token_scale, {DType::f32});
        if (o.per_token_scale.dim() != 1 || o.per_token_scale.size(0) != M)
          check::fail_value(kOp, "per_token_scale", "shape [M] = [" + str(M) + "]",
                            "shape " + o.per_token_scale.shape().str());
      }
      if (o.bias.defined()) {
        check::dtype_in(kOp, "bias", o.bias, {DType::i32, DType::f32, DType::bf16, DType::f16});
        check_per_expert("bias", o.bias, E, N);
      }
    }
  }
  out_shape = Shape{M, N};

  GroupedMatmulArgs args;
  args.x = x;
  args.bias = o.bias;
  args.scale = o.scale;
  args.per_token_scale = o.per_token_scale;
  args.group_list = grouped ? o.group_list : Tensor{};
  args.group_list_type = o.group_list_type;
  args.act_type = act;
  return args;
}

// The Tensor-weight form packs an expert's weight for this call only when one of its groups has at least this many
// rows. Measured (bench/grouped_matmul_bench.cpp, seed shapes, bf16 and w8a8, one thread): packing an expert per
// call costs as much as 35 to 40 rows on the reference, whose rows cost about 6 to 10 times the kernels' rows; so
// from 48 rows packing gains at least a quarter, and below about 35 it loses. Smaller groups stay on the reference.
constexpr int64_t kPackMinRows = 48;

// Whether kernels `k` compute float weights of `dtype` with other arithmetic than the portable kernels (which are
// the reference's): the native tier's AMX-BF16 kernels, on a CPU that has them.
bool differs_from_portable(const gemm::GemmKernels& k, DType dtype) {
  if (k.numerics == Numerics::portable || k.float_kernel(dtype).fn == nullptr) return false;  // int8: exact anyway
  const gemm::GemmKernels p = gemm::select_gemm_kernels(k.isa, k.vnni, Numerics::portable);
  return k.float_kernel(dtype).fn != p.float_kernel(dtype).fn ||
         (dtype == DType::bf16 && k.bf16w_bf16a.fn != p.bf16w_bf16a.fn);
}

void run_tensor_weight(GroupedMatmulArgs& args, const Tensor& weight, const Tensor& y, Numerics numerics) {
  args.weight = weight;
  const gemm::GemmKernels kernels = gemm::select_gemm_kernels(numerics);
  // Small groups run on the reference, which computes the portable tier's bits. Where the tier's kernels compute
  // other bits, every group is packed instead, so that a row's result does not depend on its group's size.
  const bool pack_all = differs_from_portable(kernels, weight.dtype());
  const int64_t E = weight.dim() == 3 ? weight.size(0) : 1;
  const int64_t M = args.x.size(0);
  // Per-thread scratch, so that a call that packs nothing allocates nothing (the layer's graph mode relies on it).
  Scratch<bool> need(E, false);
  int64_t groups = 0;
  bool any = false;
  auto visit = [&](int64_t e, int64_t begin, int64_t end) {
    ++groups;
    if (end - begin >= kPackMinRows || (pack_all && end > begin)) need[e] = any = true;
  };
  if (!args.group_list.defined()) {
    if (M > 0) visit(0, 0, M);
  } else {
    for_each_group(args.group_list, GroupListType(args.group_list_type),
                   [&](const GroupSpan& s) { visit(s.expert, s.begin, s.end); });
  }
  DefaultPoolLease lease;
  if (!any && (!lease.pool() || groups <= 1)) {
    reference::grouped_matmul(to_reference(args), y);
    return;
  }
  Scratch<const gemm::PackedWeights*> experts(E, nullptr);
  std::vector<gemm::PackedWeights> packed;  // allocated only when packing for this call
  if (any) {
    packed.resize(static_cast<size_t>(E));
    gmm::pack_experts(weight, std::span<const bool>(need.data(), size_t(E)), packed, lease.pool());
    for (int64_t e = 0; e < E; ++e)
      if (need[e]) experts[e] = &packed[size_t(e)];
  }
  gmm::run_grouped_gemm(args, std::span<const gemm::PackedWeights* const>(experts.data(), size_t(E)), kernels,
                        lease.pool(), y);
}

void run_packed(const GroupedMatmulArgs& args, const PackedGroupedWeights& weight, const Tensor& y,
                Numerics numerics) {
  if (fp8_activations(weight)) return run_grouped_fp8_act(args, weight, y);  // one arithmetic in both tiers
  DefaultPoolLease lease;
  gmm::run_grouped_gemm(args, detail::PackedGroupedWeightsAccess::experts(weight),
                        gemm::select_gemm_kernels(numerics), lease.pool(), y);
}

}  // namespace

Tensor grouped_matmul(const Tensor& x, const Tensor& weight, const GroupedMatmulOptions& options) {
  DType out_dtype;
  Shape out_shape;
  GroupedMatmulArgs args = validate(x, WeightDesc::of(weight), options, out_dtype, out_shape);
  Tensor y = Tensor::empty(out_dtype, out_shape);
  run_tensor_weight(args, weight, y, default_numerics());
  return y;
}

void grouped_matmul_out(const Tensor& x, const Tensor& weight, const GroupedMatmulOptions& options, const Tensor& y) {
  grouped_matmul_out(x, weight, options, y, default_numerics());
}

void grouped_matmul_out(const Tensor& x, const Tensor& weight, const GroupedMatmulOptions& options, const Tensor& y,
                        Numerics numerics) {
  DType out_dtype;
  Shape out_shape;
  GroupedMatmulArgs args = validate(x, WeightDesc::of(weight), options, out_dtype, out_shape);
  check::output(kOp, "y", y, out_dtype, out_shape);
  run_tensor_weight(args, weight, y, numerics);
}

Tensor grouped_matmul(const Tensor& x, const PackedGroupedWeights& weight, const GroupedMatmulOptions& options) {
  DType out_dtype;
  Shape out_shape;
  GroupedMatmulArgs args = validate(x, WeightDesc::of(weight), options, out_dtype, out_shape);
  Tensor y = Tensor::empty(out_dtype, out_shape);
  run_packed(args, weight, y, default_numerics());
  return y;
}

void grouped_matmul_out(const Tensor& x, const PackedGroupedWeights& weight, const GroupedMatmulOptions& options,
                        const Tensor& y) {
  grouped_matmul_out(x, weight, options, y, default_numerics());
}

void grouped_matmul_out(const Tensor& x, const PackedGroupedWeights& weight, const GroupedMatmulOptions& options,
                        const Tensor& y, Numerics numerics) {
  DType out_dtype;
  Shape out_shape;
  GroupedMatmulArgs args = validate(x, WeightDesc::of(weight), options, out_dtype, out_shape);
  check::output(kOp, "y", y, out_dtype, out_shape);
  run_packed(args, weight, y, numerics);
}

PackedGroupedWeights pack_grouped_weights(const Tensor& weight) {
  static constexpr const char* op = "pack_grouped_weights";
  check::defined(op, "weight", weight);
  check::dtype_in(op, "weight", weight, {DType::f32, DType::bf16, DType::f16, DType::i8});
  if (weight.dim() != 2 && weight.dim() != 3)
    check::fail_value(op, "weight", "a tensor [E, K, N] or [K, N]", weight.describe());
  const int64_t E = weight.dim() == 3 ? weight.size(0) : 1;
  if (E < 1) check::fail_value(op, "weight", "at least one expert (E >= 1)", weight.describe());
  if (weight.size(-2) > kMaxInnerDim) check::fail_value(op, "weight", "K = size(-2) < 65536", weight.describe());
  if (weight.size(-1) > kMaxInnerDim) check::fail_value(op, "weight", "N = size(-1) < 65536", weight.describe());
  DefaultPoolLease lease;
  std::vector<gemm::PackedWeights> experts(static_cast<size_t>(E));
  gmm::pack_experts(weight, {}, experts, lease.pool());
  return detail::PackedGroupedWeightsAccess::make(weight.dtype(), weight.shape(), std::move(experts));
}

}  // namespace moefuse
