// FP8 block-scaled checkpoints for the tests: a safetensors writer that takes any dtype string (the library's writer
// only writes the dtypes moefuse keeps, and F8_E4M3 is not one), the e4m3 decoding written independently of
// moefuse/dtype.h (std::ldexp), and the oracle's weights: every FP8 expert projection dequantised in fp32 and
// rounded to the model dtype, the rest as the layer read it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "moefuse/config.h"
#include "moefuse/io.h"
#include "moefuse/layer.h"

namespace moefuse::testing {

struct RawTensor {
  std::string name;
  std::string dtype;  // safetensors dtype string
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;
};

/// A raw tensor of `t`'s dtype and contents.
RawTensor raw_tensor(const std::string& name, const Tensor& t);

/// Writes a .safetensors file holding `tensors` (data in the given order).
void write_raw_safetensors(const std::string& path, const std::vector<RawTensor>& tensors);

/// e4m3 (fn) -> float by the format's definition.
float e4m3_by_definition(uint8_t v);

/// `w` (weights the layer read from FP8 checkpoint `ck`, layer `layer`) with every expert projection (routed and
/// shared) recomputed from the checkpoint: element [r, i] of "<name>" = round_to_dtype(e4m3(q[r, i]) *
/// scale_inv[r / bn, i / bk]), the fp32 product rounded once to the model dtype.
LayerWeights fp8_oracle_weights(const MoeConfig& config, const Checkpoint& ck, int64_t layer, const LayerWeights& w,
                                int64_t bn, int64_t bk);

/// DeepSeek's dynamic FP8 activation quantiser of one row x (docs/layer.md §7, "FP8 activations"), written from its
/// definition with the layer's own e4m3 encoder (not the kernels'): codes q[0, K), one scale per block of 128 in s
/// (NaN for a block holding a NaN or an infinity, whose codes stay 0; codes 0 where the scale is 0).
void quantise_fp8_act_by_definition(const std::vector<float>& x, std::vector<uint8_t>& q, std::vector<float>& s);

}  // namespace moefuse::testing
