#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "base/check.h"
#include "moefuse/ops/gating.h"
#include "reference/gating.h"

namespace moefuse {
namespace {

constexpr const char* kOpV1 = "gating_top_k_softmax";
constexpr const char* kOpV2 = "gating_top_k_softmax_v2";

// Validates x, finished and k (shared by v1 and v2); returns the output shape x.shape[:-1] + [k].
Shape check_inputs(std::string_view op, const Tensor& x, const Tensor& finished, int64_t k) {
  check::dtype_in(op, "x", x, {DType::f32, DType::bf16, DType::f16});
  if (x.dim() != 2 && x.dim() != 3) check::fail_value(op, "x", "a 2-D [N, E] or 3-D [B, S, E] tensor", x.describe());
  Shape lead;
  for (int d = 0; d + 1 < x.dim(); ++d) lead.push_back(x.size(d));
  if (finished.defined()) {
    check::dtype_in(op, "finished", finished, {DType::boolean});
    if (!(finished.shape() == lead))
      check::fail_value(op, "finished", "shape " + lead.str() + " (x.shape[:-1])", "shape " + finished.shape().str());
  }
  const int64_t e = x.size(-1);
  if (e > std::numeric_limits<int32_t>::max())  // expert_idx holds E for finished rows
    check::fail_value(op, "x", "E <= 2147483647 (expert_idx is i32)", x.describe());
  check::in_range(op, "k", k, 0, e, [e] { return "0 <= k <= E (" + std::to_string(e) + ")"; });
  Shape out_shape = lead;
  out_shape.push_back(k);
  return out_shape;
}

// v1's row_idx holds j * R + r in i32: R * k must fit.
void check_row_idx_range(std::string_view op, const Tensor& x, int64_t k) {
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  int64_t rows = 1;
  for (int d = 0; d + 1 < x.dim(); ++d) rows *= x.size(d);
  if (k != 0 && rows > kMax / k)
    check::fail_value(op, "k", "rows * k <= 2147483647 (row_idx is i32; rows = " + std::to_string(rows) + ")",
                      std::to_string(k));
}

void check_v2_options(const GatingTopKSoftmaxV2Options& o) {
  check::in_range(kOpV2, "renorm", o.renorm, 0, 1, "0 (softmax, then top-k) or 1 (top-k, then softmax)");
}

bool v2_produces_softmax(const GatingTopKSoftmaxV2Options& o) { return o.renorm == 0 && o.output_softmax; }

}  // namespace

GatingTopKSoftmaxResult gating_top_k_softmax(const Tensor& x, const Tensor& finished, int64_t k) {
  Shape out_shape = check_inputs(kOpV1, x, finished, k);
  check_row_idx_range(kOpV1, x, k);
  GatingTopKSoftmaxResult r{Tensor::empty(x.dtype(), out_shape), Tensor::empty(DType::i32, out_shape),
                            Tensor::empty(DType::i32, out_shape)};
  reference::gating_top_k_softmax(x, finished, k, 0, r.y, r.expert_idx, r.row_idx, Tensor{});
  return r;
}

void gating_top_k_softmax_out(const Tensor& x, const Tensor& finished, int64_t k, const GatingTopKSoftmaxResult& out) {
  Shape out_shape = check_inputs(kOpV1, x, finished, k);
  check_row_idx_range(kOpV1, x, k);
  check::output(kOpV1, "y", out.y, x.dtype(), out_shape);
  check::output(kOpV1, "expert_idx", out.expert_idx, DType::i32, out_shape);
  check::output(kOpV1, "row_idx", out.row_idx, DType::i32, out_shape);
  reference::gating_top_k_softmax(x, finished, k, 0, out.y, out.expert_idx, out.row_idx, Tensor{});
}

GatingTopKSoftmaxV2Result gating_top_k_softmax_v2(const Tensor& x, const GatingTopKSoftmaxV2Options& options) {
  Shape out_shape = check_inputs(kOpV2, x, options.finished, options.k);
  check_v2_options(options);
  GatingTopKSoftmaxV2Result r{
      Tensor::empty(x.dtype(), out_shape), Tensor::empty(DType::i32, out_shape),
      v2_produces_softmax(options) ? Tensor::empty(DType::f32, x.shape()) : Tensor::empty(DType::f32, Shape{0})};
  reference::gating_top_k_softmax(x, options.finished, options.k, options.renorm, r.y, r.expert_idx, Tensor{},
                                  r.softmax_out);
  return r;
}

void gating_top_k_softmax_v2_out(const Tensor& x, const GatingTopKSoftmaxV2Options& options,
                                 const GatingTopKSoftmaxV2Result& out) {
  Shape out_shape = check_inputs(kOpV2, x, options.finished, options.k);
  check_v2_options(options);
  check::output(kOpV2, "y", out.y, x.dtype(), out_shape);
  check::output(kOpV2, "expert_idx", out.expert_idx, DType::i32, out_shape);
  const bool produce = v2_produces_softmax(options);
  if (produce) {
    check::output(kOpV2, "softmax_out", out.softmax_out, DType::f32, x.shape());
  } else if (out.softmax_out.defined() && out.softmax_out.numel() != 0) {
    check::fail_value(kOpV2, "softmax_out",
                      "an undefined or empty tensor (no softmax is produced unless renorm == 0 and output_softmax)",
                      out.softmax_out.describe());
  }
  reference::gating_top_k_softmax(x, options.finished, options.k, options.renorm, out.y, out.expert_idx, Tensor{},
                                  produce ? out.softmax_out : Tensor{});
}

}  // namespace moefuse
