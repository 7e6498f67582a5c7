// GPTQ checkpoints (int4, the layout GPTQ / AutoGPTQ / transformers write) for the layer's w4a16 experts: reading a
// projection into the layer's int4 form, and writing one back (docs/layer.md §5, "int4 weights").
//
// A projection `<p>.weight` [out, in] is stored as
//   <p>.qweight  [in / 8, out]  i32: eight 4-bit values along the input dim, value i of a word at bits 4i..4i+3;
//   <p>.qzeros   [in / G, out / 8] i32: the zero points, eight per word along the output dim, the same bit order;
//   <p>.scales   [in / G, out]  f16 (bf16 and f32 read too);
//   <p>.g_idx    [in] i32, optional: the group of each input channel (absent: i / G).
// Act order (desc_act, a permuted g_idx): each group still holds G input channels, not consecutive ones. The layer
// reads such a projection with its input channels sorted stably by g_idx (gptq_input_order), so that its groups are
// runs of G consecutive columns again, and gathers the projection's input in that order at run time (docs/layer.md
// §5, "act order").
// The zero point convention is GPTQ's: its original ("gptq", v1) format stores z - 1 and its readers add 1 back;
// checkpoint_format "gptq_v2" stores z. The weight is (q - z) * scale.
//
// AWQ checkpoints (AutoAWQ's GEMM packing, quant_method "awq", version "gemm") hold the same three tensors packed
// along the output dim instead:
//   <p>.qweight  [in, out / 8]     i32: word c of row i holds the 4-bit values of outputs 8c .. 8c + 7, output 8c + j
//                                  at bits 4 kAwqNibble[j] .. (AWQ's interleaved order, so that its GPU kernel can
//                                  unpack pairs with one shift);
//   <p>.qzeros   [in / G, out / 8] i32: z itself (no offset), in the same order;
//   <p>.scales   [in / G, out]     f16;
// no g_idx (groups are always runs of G input channels). The weight is (q - z) * scale, as GPTQ's.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "moefuse/io.h"

namespace moefuse::layer {

/// What a checkpoint declares about its GPTQ quantisation (quantize_config.json, or config.json's
/// quantization_config, in the checkpoint's directory; absent: GPTQ's defaults, v1 zero points).
struct GptqFormat {
  bool zeros_v2 = false;  // checkpoint_format "gptq_v2": qzeros hold z itself
  bool awq = false;       // quant_method "awq": AutoAWQ's GEMM packing (above)
  std::string source;     // the file the settings came from ("" when none)
};

/// AWQ's order: output 8c + j of a packed word sits at nibble kAwqNibble[j].
inline constexpr int kAwqNibble[8] = {0, 4, 1, 5, 2, 6, 3, 7};

/// Reads and checks the checkpoint's int4 settings against the config's group size G: quant_method "gptq" (when
/// given) or "awq", bits 4, group_size G; GPTQ: checkpoint_format "gptq" or "gptq_v2" (desc_act is read either way:
/// each projection's g_idx says its order, gptq_input_order); AWQ: zero_point true, version "gemm" (any case).
/// Errors: ValueError naming the file, the key, what was expected and what it holds.
GptqFormat read_gptq_format(const Checkpoint& ck, int64_t G);

/// Whether `base` ("....experts.3.gate_proj.") names a GPTQ projection in the checkpoint (base + "qweight").
bool has_gptq_projection(const Checkpoint& ck, const std::string& base);

/// The input order of GPTQ projection `base` ([out, in]) from its g_idx: empty when the g_idx is absent or i / G
/// (groups of consecutive channels: nothing to reorder); otherwise P [in], the input channels sorted stably by
/// g_idx (within a group by ascending channel), so that column j of the layer's projection holds channel P[j] and
/// columns [g G, (g + 1) G) are group g. Errors: ValueError naming the file and the tensor for a g_idx that is not
/// i32 of shape [in] (in_name names the dim), holds a group outside 0..in / G - 1, or a group of other than G
/// channels.
std::vector<int32_t> gptq_input_order(const Checkpoint& ck, const std::string& base, int64_t G, int64_t in,
                                      const char* in_name);

/// Reads GPTQ (or, with format.awq, AWQ) projection `base` ([out, in], names as above) into q (rows [out, in], u8
/// values 0..15), scale ([out, in / G] f32) and zero ([out, in / G] u8). `in_order` (nullptr: the identity) is the projection's input
/// order (gptq_input_order): column j of q holds input channel in_order[j]; `out_order` (nullptr: the identity) says
/// which of the checkpoint's output rows row r of q, scale and zero holds (the gate and up rows put in the down
/// projection's input order). The g_idx itself is not read here. out_name / in_name name the dims in messages.
/// Errors: IoError for a missing tensor; ValueError/TypeError naming the tensor for a wrong shape or dtype (a
/// qweight of another bit width, a group size other than G), a v1 zero point of 16; with check_finite, a non-finite
/// scale.
void read_gptq_projection(const Checkpoint& ck, const std::string& base, const GptqFormat& format, int64_t G,
                          int64_t out, int64_t in, const char* out_name, const char* in_name, uint8_t* q, float* scale,
                          uint8_t* zero, bool check_finite, const int32_t* in_order = nullptr,
                          const int32_t* out_order = nullptr);

/// The GPTQ tensors (v1 zero points) of a projection held as q [out, in], scale [out, in / G] and zero
/// [out, in / G] (views of any strides), appended to `out` under base + "qweight", ... . `in_order` (nullptr: the
/// identity, g_idx = i / G) is its input order as gptq_input_order gives it (ascending within each group): column j
/// is then written as input channel in_order[j] of group j / G (act order). Scales are written in f16 when every one
/// is an f16 value (as round-to-nearest quantisation makes them), else in f32.
void append_gptq_tensors(const std::string& base, const Tensor& q, const Tensor& scale, const Tensor& zero,
                         NamedTensors& out, const int32_t* in_order = nullptr);

}  // namespace moefuse::layer
