#include "reference/finalize_routing.h"

#include "base/elements.h"
#include "base/scratch.h"

namespace moefuse::reference {

void finalize_routing(const Tensor& rows, const Tensor& skip1, const Tensor& skip2, const Tensor& bias,
                      const Tensor& scales, const Tensor& src_to_dst, const Tensor& expert_ids, int64_t drop_pad_mode,
                      int64_t K, const Tensor& out) {
  const int64_t N = out.size(0), H = out.size(1);
  const bool k_major = drop_pad_mode == 0 || drop_pad_mode == 1;
  // Row d of the rows tensor: [d, :] for 2-D rows, [d / C, d % C, :] for 3-D [E, C, H] rows.
  const bool three_d = rows.dim() == 3;
  const int64_t C = three_d ? rows.size(1) : 1;
  const int64_t row_h_stride = rows.stride(-1);
  auto row_offset = [&](int64_t d) {
    return three_d ? (d / C) * rows.stride(0) + (d % C) * rows.stride(1) : d * rows.stride(0);
  };

  Scratch<float> acc(H);
  for (int64_t n = 0; n < N; ++n) {
    // acc = skip1 + skip2, or skip1, or (no skip) the first term itself.
    bool started = skip1.defined();
    for (int64_t h = 0; started && h < H; ++h) {
      float a = load_element_f32(skip1.data(), skip1.dtype(), n * skip1.stride(0) + h * skip1.stride(1));
      if (skip2.defined()) {
        float b = load_element_f32(skip2.data(), skip2.dtype(), n * skip2.stride(0) + h * skip2.stride(1));
        a = a + b;
      }
      acc[h] = a;
    }

    for (int64_t k = 0; k < K; ++k) {
      const int64_t j = k_major ? k * N + n : n * K + k;
      const int64_t d = load_element_int(src_to_dst.data(), src_to_dst.dtype(), j * src_to_dst.stride(0));
      const int64_t e = bias.defined() ? load_element_int(expert_ids.data(), expert_ids.dtype(),
                                                          n * expert_ids.stride(0) + k * expert_ids.stride(1))
                                       : 0;
      const float s = scales.defined() ? load_element_f32(scales.data(), scales.dtype(),
                                                          n * scales.stride(0) + k * scales.stride(1))
                                       : 1.0f;
      const int64_t base = d == -1 ? 0 : row_offset(d);
      for (int64_t h = 0; h < H; ++h) {
        float v = d == -1 ? 0.0f : load_element_f32(rows.data(), rows.dtype(), base + h * row_h_stride);
        if (bias.defined())
          v = v + load_element_f32(bias.data(), bias.dtype(), e * bias.stride(0) + h * bias.stride(1));
        const float term = scales.defined() ? s * v : v;
        acc[h] = started ? acc[h] + term : term;
      }
      started = true;
    }

    for (int64_t h = 0; h < H; ++h) store_element_f32(out.data(), out.dtype(), n * H + h, acc[h]);
  }
}

}  // namespace moefuse::reference
