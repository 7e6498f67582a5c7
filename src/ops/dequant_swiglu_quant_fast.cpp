#include "ops/dequant_swiglu_quant_fast.h"

#include <algorithm>
#include <cstring>

#include "base/default_pool.h"
#include "base/groups.h"
#include "base/scratch.h"
#include "kernels/rows/rows.h"

namespace moefuse {
namespace {

constexpr int64_t kRows = 16;  // rows per task

// Pointer to row `row` of a per-group [E, N] / [N] / [1, N] fp32 tensor with unit column stride.
const float* group_row(const Tensor& t, int64_t row) {
  return t.data_as<const float>() + (t.dim() == 1 ? 0 : row * t.stride(0));
}

bool unit_columns(const Tensor& t) { return t.stride(t.dim() - 1) == 1 || t.size(t.dim() - 1) == 1; }

}  // namespace

const char* dequant_swiglu_quant_fast_declines(const DequantSwigluQuantArgs& a) {
  const Tensor& x = a.x;
  const bool f32 = x.dtype() == DType::f32;  // already dequantised (w4a8's first grouped matmul writes fp32)
  if (x.dtype() != DType::i32 && !f32) return "x is not i32 or f32";
  if (x.stride(1) != 1) return "x's rows are not contiguous";
  if (a.bias.defined()) return "a bias";
  if (!a.dynamic) return "static quantisation (quant_mode 0)";
  if (a.swiglu_mode != 0) return "swiglu_mode 1 (the clamped variant)";
  if (a.quant_offset.defined()) return "a quant_offset";
  if (!f32 && !a.activation_scale.defined()) return "no activation_scale";
  if (!f32 && !unit_columns(a.weight_scale)) return "weight_scale's rows are not contiguous";
  if (a.quant_scale.defined() && a.quant_per_group_scalar) return "a quant_scale of one value per group";
  if (a.quant_scale.defined() && a.quant_scale.dtype() != DType::f32) return "a quant_scale that is not f32";
  if (a.quant_scale.defined() && !unit_columns(a.quant_scale)) return "quant_scale's rows are not contiguous";
  return nullptr;
}

const char* dequant_swiglu_quant_fast(const DequantSwigluQuantArgs& a, const Tensor& y, const Tensor& scale) {
  if (const char* why = dequant_swiglu_quant_fast_declines(a)) return why;
  const Tensor& x = a.x;

  const int64_t T = x.size(0), h = x.size(1) / 2;
  if (y.numel() > 0) std::memset(y.data(), 0, size_t(y.numel()));
  if (scale.numel() > 0) std::memset(scale.data(), 0, size_t(scale.numel()) * sizeof(float));
  if (T == 0 || h == 0) return nullptr;

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
  const bool f32 = x.dtype() == DType::f32;
  const float* act_scale = f32 ? nullptr : a.activation_scale.data_as<const float>();
  const int64_t act_stride = f32 ? 0 : a.activation_scale.stride(0);

  const rows::RowsKernels k = rows::select_rows_kernels();  // chosen once per call
  auto block = [&](int64_t b) {
    const int64_t r0 = b * kRows, r1 = std::min(covered, r0 + kRows);
    // The rows of x come from memory (a prefill's gate/up output, int32 for w8a8 and fp32 for w4a8, is far larger
    // than the caches, and this VM's hardware prefetch is weak): row r (4-byte elements at xr) is handed to `piece`
    // in pieces of 256 elements, and before each piece the same piece of row r + 1 is prefetched, about one row's
    // work ahead. The products are element-wise, so the pieces change no bit. On the Zen 5, 2 threads, the op on
    // [8192, 2048] rows took 0.80-0.85 (int32) and 0.71-0.74 (fp32) of its time without it (docs/performance.md).
    const auto in_pieces = [&](int64_t r, const auto* xr, int64_t act_off, int64_t lin_off, auto&& piece) {
      constexpr int64_t kPiece = 256;
      const auto* next = r + 1 < r1 ? xr + x.stride(0) : nullptr;
      for (int64_t j = 0; j < h; j += kPiece) {
        const int64_t n = std::min(kPiece, h - j);
        if (next)
          for (int64_t i = 0; i < n; i += 16) {  // 16 elements: one line
            __builtin_prefetch(next + act_off + j + i, 0, 3);
            __builtin_prefetch(next + lin_off + j + i, 0, 3);
          }
        piece(j, n);
      }
    };
    Scratch<float> o(h);
    int64_t g = 0;
    while (spans[3 * g + 2] <= r0) ++g;
    for (int64_t r = r0; r < r1; ++r) {
      while (spans[3 * g + 2] <= r) ++g;
      if (r < spans[3 * g + 1]) continue;  // not covered by a group (stays zero)
      const int64_t e = spans[3 * g];
      const int64_t act_off = a.activate_left ? 0 : h, lin_off = a.activate_left ? h : 0;
      const float* qs = a.quant_scale.defined() ? group_row(a.quant_scale, e) : nullptr;
      if (f32) {  // the reference's silu(act) * lin, then * quant_scale inside the quantisation (the same products)
        const float* xr = x.data_as<const float>() + r * x.stride(0);
        in_pieces(r, xr, act_off, lin_off,
                  [&](int64_t j, int64_t n) { k.swiglu[0](n, xr + act_off + j, xr + lin_off + j, o.data() + j); });
        scale.data_as<float>()[r] = k.quantize[0](h, o.data(), qs, o.data(), y.data_as<int8_t>() + r * h);
        continue;
      }
      const int32_t* xr = x.data_as<const int32_t>() + r * x.stride(0);
      const float* ws = group_row(a.weight_scale, e);
      const float as = act_scale[r * act_stride];
      in_pieces(r, xr, act_off, lin_off, [&](int64_t j, int64_t n) {
        k.dequant_swiglu(n, xr + act_off + j, xr + lin_off + j, ws + act_off + j, ws + lin_off + j, as,
                         qs ? qs + j : nullptr, o.data() + j);
      });
      scale.data_as<float>()[r] = k.quantize[0](h, o.data(), nullptr, o.data(), y.data_as<int8_t>() + r * h);
    }
  };
  parallel_items(blocks, block);
  return nullptr;
}

}  // namespace moefuse
