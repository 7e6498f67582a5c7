#include "ep/load.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>
#include <thread>

#include "base/default_pool.h"
#include "layer/weights.h"
#include "moefuse/error.h"
#include "moefuse/threads.h"

namespace moefuse::ep {
namespace {

constexpr const char* kOp = "ExpertParallelLayer";

// FNV-1a over bytes, chained.
uint64_t fnv(uint64_t h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}
uint64_t fnv(uint64_t h, const std::string& s) { return fnv(h, s.data(), s.size()); }
uint64_t fnv(uint64_t h, const Tensor& t) {
  if (!t.defined()) return fnv(h, "-");
  const Tensor c = t.contiguous();
  h = fnv(h, t.shape().str());
  return fnv(h, c.data(), size_t(c.numel()) * c.element_size());
}

std::string hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(v));
  return b;
}

// What every rank must agree on before loading: the config, the layer index, the placement and the rank count.
uint64_t setup_hash(const MoeConfig& c, int64_t layer_index, const ExpertPlacement& p, int ranks) {
  uint64_t h = fnv(0xcbf29ce484222325ull, to_yaml(c));
  h = fnv(h, &layer_index, sizeof layer_index);
  h = fnv(h, &ranks, sizeof ranks);
  for (const std::vector<int>& rs : p.ranks) {
    h = fnv(h, rs.data(), rs.size() * sizeof(int));
    h = fnv(h, "|");
  }
  return h;
}

// What every rank reads whole: router, correction bias, smooth scale 1 and the shared expert.
uint64_t weights_hash(const LayerWeights& w) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const Tensor* t : {&w.router, &w.router_bias, &w.smooth_scale1, &w.shared_w13, &w.shared_w2,
                          &w.shared_w13_scale, &w.shared_w2_scale, &w.shared_gate})
    h = fnv(h, *t);
  return h;
}

// Every rank's (ok, hash); throws on every rank when one failed (`failure` there: its own error, rethrown) or the
// hashes differ. `what` names the stage, `differs` what a hash difference means.
void agree(const Comm& comm, const std::exception_ptr& failure, uint64_t hash, const char* what,
           const char* differs) {
  const bool ok = !failure;
  const std::vector<uint64_t> all = comm.allgather({ok ? 1u : 0u, hash}, what);
  std::string failed;
  for (int r = 0; r < comm.size(); ++r)
    if (!all[size_t(2 * r)]) failed += (failed.empty() ? "" : ", ") + std::to_string(r);
  if (!ok) std::rethrow_exception(failure);
  if (!failed.empty())
    throw ValueError(std::string(kOp) + ": " + what + ": expected every rank to succeed, got rank(s) " + failed +
                     " failing (see the error there)");
  std::string hashes;
  bool same = true;
  for (int r = 0; r < comm.size(); ++r) {
    same = same && all[size_t(2 * r + 1)] == all[1];
    hashes += (r ? ", " : "") + std::string("rank ") + std::to_string(r) + " " + hex(all[size_t(2 * r + 1)]);
  }
  if (!same)
    throw ValueError(std::string(kOp) + ": " + what + ": expected every rank to agree on " + differs + ", got " +
                     "hashes " + hashes);
}

int resolve_threads(int threads) {
  if (threads < 0 || threads > kMaxThreads)
    throw ValueError(std::string(kOp) + ": threads: expected 0 (every core) or a count in 1.." +
                     std::to_string(kMaxThreads) + ", got " + std::to_string(threads));
  return threads > 0 ? threads : std::clamp(int(std::thread::hardware_concurrency()), 1, kMaxThreads);
}

// Refuses a share that does not fit, before allocating: the fixed weights, this rank's experts and one chunk's
// workspace (an estimate: rows received from other ranks come on top).
void check_share_fits(const MoeConfig& c, int64_t held, int64_t limit) {
  MoeConfig fewer = c;
  fewer.num_experts = c.num_experts - 1;
  const int64_t router_row = c.hidden_size * int64_t(dtype_size(c.dtype)) +
                             (c.model_type == ModelType::deepseek_v3 ? 4 : 0);
  const int64_t per_expert = layer_weight_bytes(c) - layer_weight_bytes(fewer) - router_row;
  const int64_t need = layer_weight_bytes(c) - (c.num_experts - held) * per_expert +
                       layer_workspace_bytes(c, c.moe_chunk_max_len);
  const int64_t available = limit > 0 ? limit : available_memory_bytes();
  const int64_t usable = available - available / 10;
  if (need > usable)
    throw ResourceError(std::string(kOp) + ": memory: expected this rank's share to fit in " +
                        std::to_string(usable) + " bytes (90% of the " + std::to_string(available) +
                        " bytes available), got " + std::to_string(need) + " bytes needed");
}

}  // namespace

Loaded load_rank_share(const MoeConfig& config, int64_t layer_index, MPI_Comm mpi_comm, const EpOptions& options,
                       const std::function<LayerWeights(ThreadPool&, const std::vector<int64_t>*)>& load) {
  Comm comm(mpi_comm, options.timeout_seconds);
  // 1. Agree on what to make.
  ExpertPlacement placement;
  std::exception_ptr failure;
  uint64_t hash = 0;
  try {
    validate(config, std::string(kOp) + " config");
    placement = options.placement.ranks.empty() ? ExpertPlacement::contiguous(config.num_experts, comm.size())
                                                : options.placement;
    placement.validate(config.num_experts, comm.size(), std::string(kOp) + ": placement");
    hash = setup_hash(config, layer_index, placement, comm.size());
  } catch (const Error&) {
    failure = std::current_exception();
  }
  agree(comm, failure, hash, "config",
        "the config, layer index and placement (one of them differs between the ranks)");

  // 2. Load this rank's share.
  std::vector<int64_t> local = placement.experts_of(comm.rank());
  LayerWeights weights;
  layer::PackedLayerWeights packed;
  int threads = 1;
  Numerics numerics = Numerics::portable;
  try {
    threads = resolve_threads(options.layer.threads);
    numerics = layer::resolve_numerics(options.layer, config);
    check_share_fits(config, int64_t(local.size()), options.layer.memory_limit_bytes);
    reserve_pool_threads(threads);
    PoolLease lease(threads);
    weights = load(lease.workers(), &local);
    hash = weights_hash(weights);
    packed = layer::pack_layer_weights(weights, numerics, config.fp8_activations);
  } catch (const Error&) {
    failure = std::current_exception();
  }
  agree(comm, failure, hash, "weights",
        "the router, correction bias, smooth scales and shared expert (the ranks read different checkpoints)");
  return Loaded{std::move(comm), std::move(placement), std::move(local), threads, std::move(weights),
                std::move(packed)};
}

LayerWeights checkpoint_share(const MoeConfig& config, const Checkpoint& checkpoint, int64_t layer_index,
                              ThreadPool& pool, bool allow_non_finite, const std::vector<int64_t>* subset) {
  return layer::checkpoint_weights(config, checkpoint, layer_index, pool, allow_non_finite, subset);
}

LayerWeights random_share(const MoeConfig& config, uint64_t seed, ThreadPool& pool,
                          const std::vector<int64_t>* subset) {
  return layer::random_weights(config, seed, pool, subset);
}

}  // namespace moefuse::ep
