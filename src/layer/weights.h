// Where the layer's weights come from: deterministic random initialisation, Hugging Face checkpoints, and the
// per-output-channel int8 quantisation both use for the quantised chains.
#pragma once

#include <string>
#include <vector>

#include "base/thread_pool.h"
#include "layer/fp8_weights.h"
#include "moefuse/config.h"
#include "moefuse/io.h"
#include "moefuse/layer.h"

namespace moefuse::layer {

/// The FP8 form of a bf16 float layer (quant_mode none), in which the layer carries FP8 block-scaled expert
/// projections from a checkpoint to its packed weights, one byte per weight: w13, w2, shared_w13 and shared_w2 are
/// u8 holding e4m3 bit patterns (storage shapes as for floats), and w13_scale, w2_scale, shared_w13_scale and
/// shared_w2_scale f32 [E, out, fp8_blocks(in)]: the scale of element (e, r, i) is scale[e, r, i / 128]; the weight
/// is bf16(e4m3 * scale) (gemm.h, "FP8 block-scaled"). No zero points (what tells it from w4a16's u8 storage).
/// Internal: the public constructor takes float weights; MoeLayer::weights() gives the dequantised bf16 back.
bool fp8_form(const LayerWeights& w);

/// Checks presence, shape and dtype of every weight the config needs (ValueError / TypeError naming the weight).
/// With `allow_fp8`, weights in the FP8 form are accepted for a bf16 float config.
void validate_weights(const MoeConfig& config, const LayerWeights& w, bool allow_fp8 = false);

/// Random weights (MoeLayer::with_random_weights documents the distribution). `subset`, when given, lists the
/// routed experts to make (global ids, in order; an expert-parallel rank's share): the expert tensors then hold
/// those experts only, in that order, each with the values it has in the whole layer. Router, correction bias,
/// smooth scale 1 (read by routing) and shared expert are always whole.
LayerWeights random_weights(const MoeConfig& config, uint64_t seed, ThreadPool& pool,
                            const std::vector<int64_t>* subset = nullptr);

/// random_weights (bf16 model, quant_mode none), then every expert projection (routed and shared, gate and up
/// apart) quantised to the FP8 form as the FP8 releases are made (quantise_fp8_blocks: 128 x 128 blocks, scale
/// max|w| / 448), each float projection released once converted. ValueError for another dtype or quant_mode.
LayerWeights random_fp8_weights(const MoeConfig& config, uint64_t seed, ThreadPool& pool);

/// Weights of one layer of a checkpoint (MoeLayer::from_checkpoint documents the rules). Unless
/// `allow_non_finite`, a NaN or infinity in any float tensor read (projections, router, bias, scales, smooth scales,
/// clip factors) is a ValueError naming the checkpoint, the tensor and the value's index in it.
/// `subset` as for random_weights: only the listed experts' tensors are read from the checkpoint. FP8 projections
/// come in the FP8 form when the layer keeps them one byte (every projection FP8, fp8_held_one_byte), else are
/// dequantised to the model dtype.
LayerWeights checkpoint_weights(const MoeConfig& config, const Checkpoint& checkpoint, int64_t layer_index,
                                ThreadPool& pool, bool allow_non_finite = false,
                                const std::vector<int64_t>* subset = nullptr);

/// Whether checkpoint_weights keeps the FP8 projections of layer `layer_index` one byte (the FP8 form): every
/// projection it reads (the held experts' — `subset` as for random_weights — and the shared expert's) is FP8 and
/// fp8_held_one_byte holds for the checkpoint's settings. Otherwise FP8 projections are dequantised on load.
/// Errors: those of read_fp8_settings, when the projections are FP8.
bool keeps_fp8_one_byte(const MoeConfig& config, const Checkpoint& checkpoint, int64_t layer_index,
                        const std::vector<int64_t>* subset = nullptr);
bool keeps_fp8_one_byte(const MoeConfig& config, const Checkpoint& checkpoint, const std::string& prefix,
                        const std::vector<int64_t>& held, Fp8Reader& fp8);

/// The Hugging Face name prefix of a layer's MoE block: "model.layers.L.mlp" ("...block_sparse_moe" for mixtral).
std::string moe_prefix(const MoeConfig& config, int64_t layer_index);

/// Names of the expert projections for a model type: {gate, up, down} ("w1", "w3", "w2" for mixtral).
struct ProjectionNames {
  const char* gate;
  const char* up;
  const char* down;
};
ProjectionNames projection_names(const MoeConfig& config);

/// The checkpoint names of every weight of a layer (for `moefuse quantize` and the docs), as (name, tensor) of
/// `weights`, in the int8 format when the weights are quantised. Inverse of checkpoint_weights().
NamedTensors checkpoint_tensors(const MoeConfig& config, const LayerWeights& weights, int64_t layer_index);

}  // namespace moefuse::layer
