#include <string>

#include "base/check.h"
#include "moefuse/ops/gating.h"
#include "reference/gating.h"

namespace moefuse {
namespace {

constexpr const char* kOp = "gating_top_k";
constexpr int64_t kMaxExperts = 2048;

// Validates every input and returns the output shapes: [N, k] for y / expert_idx and [N, E] for out.
void check_inputs(const Tensor& x, int64_t k, const GatingTopKOptions& o, Shape& topk_shape, Shape& scores_shape) {
  check::dtype_in(kOp, "x", x, {DType::f32, DType::bf16, DType::f16});
  if (x.dim() != 2 || x.size(1) < 1 || x.size(1) > kMaxExperts)
    check::fail_value(kOp, "x", "a 2-D tensor [N, E] with 1 <= E <= 2048", x.describe());
  const int64_t n = x.size(0), e = x.size(1);
  // Messages are built only when a check fails (a passing call allocates nothing).
  auto e_str = [e] { return std::to_string(e); };
  check::in_range(kOp, "k", k, 1, e, [&] { return "1 <= k <= E (" + e_str() + ")"; });

  if (o.input_ids.defined())
    check::fail_value(kOp, "input_ids", "none (hash mode is not supported)", o.input_ids.describe());
  if (o.tid2eid.defined()) check::fail_value(kOp, "tid2eid", "none (hash mode is not supported)", o.tid2eid.describe());
  check::in_range(kOp, "norm_type", o.norm_type, 0, 1, "0 (softmax) or 1 (sigmoid); 2 (softplus) is not supported");
  check::in_range(kOp, "group_select_mode", o.group_select_mode, 0, 1, "0 (max) or 1 (sum of the top two)");
  check::in_range(kOp, "renorm", o.renorm, 0, 1, "0 or 1");

  const int64_t g = o.group_count;
  if (g < 1 || g > e || e % g != 0)
    check::fail_value(kOp, "group_count", "a divisor of E (" + e_str() + ") in [1, " + e_str() + "]",
                      std::to_string(g));
  check::in_range(kOp, "k_group", o.k_group, 1, g,
                  [&] { return "1 <= k_group <= group_count (" + std::to_string(g) + ")"; });
  const int64_t group_size = e / g;
  if (o.group_select_mode == 1 && group_size < 2)
    check::fail_value(kOp, "group_count", "E / group_count >= 2 with group_select_mode 1 (E = " + e_str() + ")",
                      std::to_string(g));
  if (k > o.k_group * group_size)
    check::fail_value(kOp, "k", "k <= k_group * E / group_count (" + std::to_string(o.k_group * group_size) + ")",
                      std::to_string(k));

  if (o.bias.defined()) {
    if (o.bias.dtype() != x.dtype() && o.bias.dtype() != DType::f32) {
      const std::string allowed = x.dtype() == DType::f32
                                      ? "dtype f32 (as x)"
                                      : "dtype " + std::string(dtype_name(x.dtype())) + " (as x) or f32";
      check::fail_type(kOp, "bias", allowed, std::string(dtype_name(o.bias.dtype())));
    }
    check::shape_is(kOp, "bias", o.bias, Shape{e});
  }
  topk_shape = Shape{n, k};
  scores_shape = Shape{n, e};
}

}  // namespace

GatingTopKResult gating_top_k(const Tensor& x, int64_t k, const GatingTopKOptions& options) {
  Shape topk_shape, scores_shape;
  check_inputs(x, k, options, topk_shape, scores_shape);
  GatingTopKResult r{Tensor::empty(x.dtype(), topk_shape), Tensor::empty(DType::i32, topk_shape),
                     Tensor::empty(DType::f32, scores_shape)};
  reference::gating_top_k(x, k, options, r);
  return r;
}

void gating_top_k_out(const Tensor& x, int64_t k, const GatingTopKOptions& options, const GatingTopKResult& out) {
  Shape topk_shape, scores_shape;
  check_inputs(x, k, options, topk_shape, scores_shape);
  check::output(kOp, "y", out.y, x.dtype(), topk_shape);
  check::output(kOp, "expert_idx", out.expert_idx, DType::i32, topk_shape);
  check::output(kOp, "out", out.out, DType::f32, scores_shape);
  reference::gating_top_k(x, k, options, out);
}

}  // namespace moefuse
