// GPTQ checkpoints (int4, the layout GPTQ / AutoGPTQ / transformers write) for the layer's w4a16 experts: reading a
// projection into the layer's int4 form, and writing one back (docs/layer.md §5, "int4 weights").
//
// A projection `<p>.weight` [out, in] is stored as
//   <p>.qweight  [in / 8, out]  i32: eight 4-bit values along the input dim, value i of a word at bits 4i..4i+3;
//   <p>.qzeros   [in / G, out / 8] i32: the zero points, eight per word along the output dim, the same bit order;
//   <p>.scales   [in / G, out]  f16 (bf16 and f32 read too);
//   <p>.g_idx    [in] i32, optional: the group of each input channel.
// The zero point convention is GPTQ's: its original ("gptq", v1) format stores z - 1 and its readers add 1 back;
// checkpoint_format "gptq_v2" stores z. The weight is (q - z) * scale.
#pragma once

#include <cstdint>
#include <string>

#include "moefuse/io.h"

namespace moefuse::layer {

/// What a checkpoint declares about its GPTQ quantisation (quantize_config.json, or config.json's
/// quantization_config, in the checkpoint's directory; absent: GPTQ's defaults, v1 zero points).
struct GptqFormat {
  bool zeros_v2 = false;  // checkpoint_format "gptq_v2": qzeros hold z itself
  std::string source;     // the file the settings came from ("" when none)
};

/// Reads and checks the checkpoint's GPTQ settings against the config's group size G: quant_method "gptq" (when
/// given), bits 4, group_size G, checkpoint_format "gptq" or "gptq_v2". desc_act true is accepted: each projection's
/// g_idx must then still be i / G (read_gptq_projection; a permuted one, real act order, is refused). Errors: ValueError naming the file, the key, what was expected and what it holds.
GptqFormat read_gptq_format(const Checkpoint& ck, int64_t G);

/// Whether `base` ("....experts.3.gate_proj.") names a GPTQ projection in the checkpoint (base + "qweight").
bool has_gptq_projection(const Checkpoint& ck, const std::string& base);

/// Reads GPTQ projection `base` ([out, in], names as above) into q (rows [out, in], u8 values 0..15), scale
/// ([out, in / G] f32) and zero ([out, in / G] u8). out_name / in_name name the dims in messages. Errors: IoError for
/// a missing tensor; ValueError/TypeError naming the tensor for a wrong shape or dtype (a qweight of another bit
/// width, a group size other than G), a g_idx that is not i / G (act order), a v1 zero point of 16; with
/// check_finite, a non-finite scale.
void read_gptq_projection(const Checkpoint& ck, const std::string& base, const GptqFormat& format, int64_t G,
                          int64_t out, int64_t in, const char* out_name, const char* in_name, uint8_t* q, float* scale,
                          uint8_t* zero, bool check_finite);

/// The GPTQ tensors (v1 zero points, g_idx = i / G) of a projection held as q [out, in], scale [out, in / G] and
/// zero [out, in / G] (views of any strides), appended to `out` under base + "qweight", ... . Scales are written in
/// f16 when every one is an f16 value (as round-to-nearest quantisation makes them), else in f32.
void append_gptq_tensors(const std::string& base, const Tensor& q, const Tensor& scale, const Tensor& zero,
                         NamedTensors& out);

}  // namespace moefuse::layer
