// Making an expert-parallel layer: the ranks agree on what they make (a hash of config, layer index and placement
// before loading; of the weights every rank holds after), each loads its share, and a failure anywhere fails every
// rank with a clear error instead of leaving some waiting.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "base/thread_pool.h"
#include "ep/comm.h"
#include "layer/packed_weights.h"
#include "moefuse/ep.h"
#include "moefuse/layer.h"

namespace moefuse::ep {

struct Loaded {
  Comm comm;
  ExpertPlacement placement;
  std::vector<int64_t> local;  // this rank's experts
  int threads;
  LayerWeights weights;        // routed-expert tensors hold `local` only; projections only in `packed`
  layer::PackedLayerWeights packed;
};

/// Loads this rank's share: `load(pool, &local)` -> LayerWeights (its experts only), packed on the layer's threads,
/// between the two agreements (a failure anywhere in between fails every rank).
/// `layer_index` goes into the hash (-1 for random weights).
Loaded load_rank_share(const MoeConfig& config, int64_t layer_index, MPI_Comm comm, const EpOptions& options,
                       const std::function<LayerWeights(ThreadPool&, const std::vector<int64_t>*)>& load);

/// The share's weights from a checkpoint (only the listed experts' tensors read) or from random weights.
LayerWeights checkpoint_share(const MoeConfig& config, const Checkpoint& checkpoint, int64_t layer_index,
                              ThreadPool& pool, bool allow_non_finite, const std::vector<int64_t>* subset);
LayerWeights random_share(const MoeConfig& config, uint64_t seed, ThreadPool& pool,
                          const std::vector<int64_t>* subset);

}  // namespace moefuse::ep
