#include "moefuse/ops/init_routing.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>

#include "base/check.h"
#include "base/elements.h"
#include "base/scratch.h"
#include "reference/init_routing.h"

namespace moefuse {
namespace {

constexpr const char* kOp = "init_routing";

struct Shapes {
  Shape expanded_x;
  int64_t nk = 0;
  int64_t active_rows = 0;  // min(active_num, N) * K
};

// "[n, k]" (built with append: GCC 12 warns falsely (-Wrestrict) on "[" + std::string&&).
std::string pos(int64_t n, int64_t k) {
  std::string s(1, '[');
  s.append(std::to_string(n)).append(", ").append(std::to_string(k)).append("]");
  return s;
}

// Validates every argument (values included) and returns the output shapes.
Shapes checked(const Tensor& x, const Tensor& row_idx, const Tensor& expert_idx, int64_t active_num) {
  check::rank(kOp, "x", x, 2);
  check::dtype_in(kOp, "x", x, {DType::f32, DType::bf16, DType::f16, DType::i8});
  check::rank(kOp, "row_idx", row_idx, 2);
  check::dtype_in(kOp, "row_idx", row_idx, {DType::i32});
  check::rank(kOp, "expert_idx", expert_idx, 2);
  check::dtype_in(kOp, "expert_idx", expert_idx, {DType::i32});
  const int64_t n = x.size(0), h = x.size(1), k = expert_idx.size(1);
  if (expert_idx.size(0) != n)
    check::fail_value(kOp, "expert_idx", "shape [N, K] with N = " + std::to_string(n) + " (x.size(0))",
                      "shape " + expert_idx.shape().str());
  check::shape_is(kOp, "row_idx", row_idx, expert_idx.shape());
  if (active_num < 0) check::fail_value(kOp, "active_num", "active_num >= 0", std::to_string(active_num));
  const int64_t nk = n * k;
  if (nk > std::numeric_limits<int32_t>::max())
    check::fail_value(kOp, "expert_idx", "at most 2^31 - 1 elements (N*K, indexed by i32)", expert_idx.describe());

  // Expert ids >= 0; row_idx a permutation of [0, N*K) (each value once).
  Scratch<int64_t> seen_at(nk, -1);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c) {
      const int64_t e =
          load_element_int(expert_idx.data(), DType::i32, r * expert_idx.strides()[0] + c * expert_idx.strides()[1]);
      if (e < 0) check::fail_value(kOp, "expert_idx", "expert ids >= 0", std::to_string(e) + " at " + pos(r, c));
      const int64_t v =
          load_element_int(row_idx.data(), DType::i32, r * row_idx.strides()[0] + c * row_idx.strides()[1]);
      auto expected = [nk] { return "a permutation of [0, " + std::to_string(nk) + ") (N*K)"; };
      if (v < 0 || v >= nk) check::fail_value(kOp, "row_idx", expected(), std::to_string(v) + " at " + pos(r, c));
      int64_t& first = seen_at[v];
      if (first >= 0)
        check::fail_value(kOp, "row_idx", expected(),
                          std::to_string(v) + " twice, at " + pos(first / k, first % k) + " and " + pos(r, c));
      first = r * k + c;
    }

  Shapes s;
  s.nk = nk;
  s.active_rows = std::min(active_num, n) * k;
  s.expanded_x = Shape{s.active_rows, h};
  return s;
}

}  // namespace

InitRoutingResult init_routing(const Tensor& x, const Tensor& row_idx, const Tensor& expert_idx, int64_t active_num) {
  const Shapes s = checked(x, row_idx, expert_idx, active_num);
  InitRoutingResult out;
  out.expanded_x = Tensor::empty(x.dtype(), s.expanded_x);
  out.expanded_row_idx = Tensor::empty(DType::i32, {s.nk});
  out.expanded_expert_idx = Tensor::empty(DType::i32, {s.nk});
  reference::init_routing(x, row_idx, expert_idx, s.active_rows, out.expanded_x, out.expanded_row_idx,
                          out.expanded_expert_idx);
  return out;
}

void init_routing_out(const Tensor& x, const Tensor& row_idx, const Tensor& expert_idx, int64_t active_num,
                      const InitRoutingResult& out) {
  const Shapes s = checked(x, row_idx, expert_idx, active_num);
  check::output(kOp, "expanded_x", out.expanded_x, x.dtype(), s.expanded_x);
  check::output(kOp, "expanded_row_idx", out.expanded_row_idx, DType::i32, {s.nk});
  check::output(kOp, "expanded_expert_idx", out.expanded_expert_idx, DType::i32, {s.nk});
  reference::init_routing(x, row_idx, expert_idx, s.active_rows, out.expanded_x, out.expanded_row_idx,
                          out.expanded_expert_idx);
}

}  // namespace moefuse
