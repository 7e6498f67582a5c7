#include "layer/router.h"

#include <algorithm>
#include <cmath>

#include "base/elements.h"
#include "base/scratch.h"
#include "kernels/rows/rows.h"
#include "reference/grouped_matmul.h"

namespace moefuse::layer {

void router_logits(const Tensor& x, const Tensor& weight, const Tensor& out) {
  // The grouped-matmul reference with an f32 output: it accumulates with the documented fma order and stores in
  // the output's dtype, which the public operator (output = x's dtype) cannot express.
  reference::GroupedMatmulArgs a;
  a.x = x;
  a.weight = weight.transpose(0, 1);  // [H, E] view of the [E, H] storage
  reference::grouped_matmul(a, out);
}

void router_logits(const gemm::GemmKernels& kernels, const Tensor& x, const gemm::PackedWeights& weight,
                   const Tensor& out) {
  constexpr int64_t kRows = 48;  // rows widened per kernel call: a multiple of the kernels' 6-row tiles
  const int64_t T = x.size(0), H = x.size(1), E = weight.n();
  const gemm::GemmFloatFn kernel = kernels.float_kernel(weight.dtype()).fn;
  Scratch<float> a(std::min(T, kRows) * H);
  float* logits = out.data_as<float>();
  for (int64_t t0 = 0; t0 < T; t0 += kRows) {
    const int64_t m = std::min(kRows, T - t0);
    const auto* rows = static_cast<const std::byte*>(x.data());
    for (int64_t r = 0; r < m; ++r)
      widen_row(rows + (t0 + r) * x.stride(0) * int64_t(x.element_size()), x.dtype(), H, x.stride(1), a.data() + r * H);
    kernel(m, H, 0, E, a.data(), H, weight.data(), logits + t0 * E, E);
  }
}

void round_to(const Tensor& src, const Tensor& dst) {
  for (int64_t i = 0; i < src.numel(); ++i)
    store_element_f32(dst.data(), dst.dtype(), i, load_element_f32(src.data(), src.dtype(), i));
}

void apply_sigmoid_gate(const Tensor& gate_logit, const Tensor& y, const Tensor& out) {
  const int64_t T = y.size(0), H = y.size(1), es = int64_t(y.element_size());
  const float* g = gate_logit.data_as<const float>();
  // Any ISA gives the same bits (rows.h); the scalar one serves the reference chain as well.
  const rows::ScaleRoundFn scale_round = rows::select_rows_kernels(Isa::scalar).scale_round[rows::slot(y.dtype())];
  Scratch<float> v(H);
  for (int64_t t = 0; t < T; ++t) {
    scale_round(H, static_cast<const std::byte*>(y.data()) + t * H * es, sigmoid_gate(g[t]), v.data());
    store_row(v.data(), H, out.dtype(), static_cast<std::byte*>(out.data()) + t * H * es);
  }
}

}  // namespace moefuse::layer
