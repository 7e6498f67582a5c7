#include "ops/dequant_swiglu_quant_fast.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/default_pool.h"
#include "base/groups.h"
#include "base/quantize.h"
#include "base/scratch.h"

namespace moefuse {
namespace {

constexpr int64_t kRows = 16;  // rows per task

// Pointer to row `row` of a per-group [E, N] / [N] / [1, N] fp32 tensor with unit column stride.
const float* group_row(const Tensor& t, int64_t row) {
  return t.data_as<const float>() + (t.dim() == 1 ? 0 : row * t.stride(0));
}

bool unit_columns(const Tensor& t) { return t.stride(t.dim() - 1) == 1 || t.size(t.dim() - 1) == 1; }

}  // namespace

bool dequant_swiglu_quant_fast(const reference::DequantSwigluQuantArgs& a, const Tensor& y, const Tensor& scale) {
  const Tensor& x = a.x;
  if (x.dtype() != DType::i32 || x.dim() != 2 || x.stride(1) != 1) return false;
  if (a.bias.defined() || !a.dynamic || a.swiglu_mode != 0 || a.quant_offset.defined()) return false;
  if (!a.activation_scale.defined() || a.weight_scale.dtype() != DType::f32 || !unit_columns(a.weight_scale))
    return false;
  if (a.quant_scale.defined() &&
      (a.quant_per_group_scalar || a.quant_scale.dtype() != DType::f32 || !unit_columns(a.quant_scale)))
    return false;

  const int64_t T = x.size(0), h = x.size(1) / 2;
  if (y.numel() > 0) std::memset(y.data(), 0, size_t(y.numel()));
  if (scale.numel() > 0) std::memset(scale.data(), 0, size_t(scale.numel()) * sizeof(float));
  if (T == 0 || h == 0) return true;

  // The groups as (expert, begin, end) spans, in row order; without group_index every row uses scale row 0.
  const int64_t max_groups = a.group_index.defined() ? a.group_index.size(0) : 1;
  Scratch<int64_t> spans(3 * max_groups);
  int64_t groups = 0;
  if (!a.group_index.defined()) {
    spans[0] = 0, spans[1] = 0, spans[2] = T;
    groups = 1;
  } else {
    for_each_group(a.group_index, a.group_type, [&](const GroupSpan& g) {
      spans[3 * groups] = g.expert, spans[3 * groups + 1] = g.begin, spans[3 * groups + 2] = g.end;
      ++groups;
    });
  }
  const int64_t covered = groups > 0 ? spans[3 * (groups - 1) + 2] : 0;
  const int64_t blocks = (covered + kRows - 1) / kRows;
  const float* act_scale = a.activation_scale.data_as<const float>();
  const int64_t act_stride = a.activation_scale.stride(0);

  auto block = [&](int64_t b) {
    const int64_t r0 = b * kRows, r1 = std::min(covered, r0 + kRows);
    Scratch<float> o(h);
    int64_t g = 0;
    while (spans[3 * g + 2] <= r0) ++g;
    for (int64_t r = r0; r < r1; ++r) {
      while (spans[3 * g + 2] <= r) ++g;
      if (r < spans[3 * g + 1]) continue;  // not covered by a group (stays zero)
      const int64_t e = spans[3 * g];
      const int32_t* xr = x.data_as<const int32_t>() + r * x.stride(0);
      const float* ws = group_row(a.weight_scale, e);
      const float as = act_scale[r * act_stride];
      const int64_t act_off = a.activate_left ? 0 : h, lin_off = a.activate_left ? h : 0;
      // reference::dequant_swiglu_quant: float(x) * weight_scale * activation_scale, SwiGLU, the smooth scale.
      for (int64_t j = 0; j < h; ++j) {
        float act = float(xr[act_off + j]) * ws[act_off + j];
        act = act * as;
        float lin = float(xr[lin_off + j]) * ws[lin_off + j];
        lin = lin * as;
        o[j] = act / (std::exp(-act) + 1.0f) * lin;
      }
      if (a.quant_scale.defined()) {
        const float* qs = group_row(a.quant_scale, e);
        for (int64_t j = 0; j < h; ++j) o[j] = o[j] * qs[j];
      }
      scale.data_as<float>()[r] = quantize_row_dynamic(o.data(), h, y.data_as<int8_t>() + r * h);
    }
  };
  DefaultPoolLease lease;
  if (lease.pool() && blocks > 1) lease.pool()->parallel_for(blocks, block);
  else
    for (int64_t b = 0; b < blocks; ++b) block(b);
  return true;
}

}  // namespace moefuse
