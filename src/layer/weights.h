// Where the layer's weights come from: deterministic random initialisation, Hugging Face checkpoints, and the
// per-output-channel int8 quantisation both use for the quantised chains.
#pragma once

#include <string>
#include <vector>

#include "base/thread_pool.h"
#include "moefuse/config.h"
#include "moefuse/io.h"
#include "moefuse/layer.h"

namespace moefuse::layer {

/// Checks presence, shape and dtype of every weight the config needs (ValueError / TypeError naming the weight).
void validate_weights(const MoeConfig& config, const LayerWeights& w);

/// Random weights (MoeLayer::with_random_weights documents the distribution). `subset`, when given, lists the
/// routed experts to make (global ids, in order; an expert-parallel rank's share): the expert tensors then hold
/// those experts only, in that order, each with the values it has in the whole layer. Router, correction bias,
/// smooth scale 1 (read by routing) and shared expert are always whole.
LayerWeights random_weights(const MoeConfig& config, uint64_t seed, ThreadPool& pool,
                            const std::vector<int64_t>* subset = nullptr);

/// Weights of one layer of a checkpoint (MoeLayer::from_checkpoint documents the rules). Unless
/// `allow_non_finite`, a NaN or infinity in any float tensor read (projections, router, bias, scales, smooth scales,
/// clip factors) is a ValueError naming the checkpoint, the tensor and the value's index in it.
/// `subset` as for random_weights: only the listed experts' tensors are read from the checkpoint.
LayerWeights checkpoint_weights(const MoeConfig& config, const Checkpoint& checkpoint, int64_t layer_index,
                                ThreadPool& pool, bool allow_non_finite = false,
                                const std::vector<int64_t>* subset = nullptr);

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
