// moefuse/ep.h — expert parallelism across processes over MPI: one MoE layer whose routed experts are split across
// the ranks of a communicator (docs/layer.md §8).
//
// Only in builds that found MPI (CMake target moefuse::moefuse_ep, which defines MOEFUSE_HAVE_MPI); the other public
// headers never include <mpi.h>.
//
//   MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
//   moefuse::ExpertParallelLayer layer =
//       moefuse::ExpertParallelLayer::from_checkpoint(cfg, moefuse::Checkpoint(dir), 3, MPI_COMM_WORLD);
//   moefuse::Tensor y = layer.forward(x);   // every rank: its own tokens x [T_r, H] (T_r may be 0), y [T_r, H]
//
// Each rank routes its own tokens, sends every (token, expert) row to a rank that holds the expert (the counts
// first, then the rows, with MPI_Alltoallv; int8 rows with their scale in the int8 chains), runs the rows it
// received through its experts on the path MoeLayer would take (the fused decode path's expert tasks or the chain's
// operators), sends the outputs back, and the token's home rank combines
// them in slot order with the shared expert's output, which it computes while the rows are in flight. Every token's
// output is bitwise what the single-process MoeLayer gives it, for any number of ranks, any split of the tokens
// between them, any placement and every chain.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "moefuse/config.h"
#include "moefuse/io.h"
#include "moefuse/layer.h"
#include "moefuse/tensor.h"

namespace moefuse {

/// Which ranks hold each routed expert.
struct ExpertPlacement {
  /// [E]: the ranks holding expert e — at least one, each in 0..P-1, no repeats. An expert on several ranks (a hot
  /// expert replicated) has the rows each home rank sends it cut into as many contiguous parts as it has replicas,
  /// in row order (sizes differing by at most one, the larger first); part j goes to replica (j + home rank) mod
  /// n, in the order listed. The output does not depend on the placement.
  std::vector<std::vector<int>> ranks;

  /// Contiguous blocks: expert e on rank e * P / E (rank r holds experts [ceil(r E / P), ceil((r+1) E / P)));
  /// with P > E some ranks hold none. ValueError for experts < 1 or ranks < 1.
  static ExpertPlacement contiguous(int64_t experts, int ranks);
  /// A JSON file {"experts": [[ranks of expert 0], [ranks of expert 1], ...]}, e.g. {"experts": [[0], [0, 1], [1]]}.
  /// IoError when it cannot be read, ValueError naming the file and entry when it is not such a map for
  /// `experts` experts on `ranks` ranks.
  static ExpertPlacement from_file(const std::string& path, int64_t experts, int ranks);
  /// ValueError ("<where>: ranks[e]: expected ...") unless this is a placement of `experts` experts on `ranks` ranks.
  void validate(int64_t experts, int ranks, const std::string& where = "ExpertPlacement") const;
  /// The experts rank `rank` holds, ascending.
  std::vector<int64_t> experts_of(int rank) const;
};

/// Options of an expert-parallel layer.
struct EpOptions {
  /// Threads, memory limit (checked against this rank's share of the weights) and non-finite weights, as for
  /// MoeLayer (layer.h).
  LayerOptions layer;
  /// Empty: ExpertPlacement::contiguous(E, P).
  ExpertPlacement placement;
  /// How long a rank waits for the others in any exchange (making the layer, each forward) before it gives up
  /// with an IoError naming the exchange: a rank that exited or stopped then fails the others in bounded time
  /// instead of hanging them. The layer cannot be used after such an error (the communicator may hold messages
  /// in flight). Must be > 0.
  double timeout_seconds = 60;
};

/// Milliseconds and bytes of the last forward on this rank, summed over its rounds (a forward runs
/// ceil(max over ranks of T_r / moe_chunk_max_len) rounds on every rank).
struct EpTimings {
  double routing = 0;   // router, gating and the expansion of the rows (init_routing_v2, quantisation)
  double dispatch = 0;  // the count exchange, packing, and the wait for the rows not hidden by the shared expert
  double shared = 0;    // the shared expert, run while the rows are in flight
  double experts = 0;   // this rank's experts over the rows it received
  double combine = 0;   // sending the outputs back, the wait for them, and the weighted combine
  double total = 0;     // the forward's wall time
  int64_t tokens = 0;   // this rank's tokens
  int64_t rounds = 0;
  /// Rows this rank's tokens sent out, and rows it received to run (both counting rows to and from itself).
  int64_t rows_sent = 0, rows_received = 0;
  /// Bytes over the communicator to and from other ranks (rows to oneself excluded), per direction of each
  /// exchange: dispatch out (rows of this rank's tokens), dispatch in (rows for its experts), combine out (their
  /// outputs) and combine in (the outputs of its tokens' rows).
  int64_t dispatch_bytes_out = 0, dispatch_bytes_in = 0, combine_bytes_out = 0, combine_bytes_in = 0;
};

class ExpertParallelLayer {
 public:
  /// Collective over `comm` (every rank calls it with the same config, layer index and placement). Each rank reads
  /// from the checkpoint only its own experts' tensors (ExpertPlacement::experts_of) and the parts every rank
  /// needs: router (and correction bias), smooth scale 1 of every expert (quantised chains with smooth scales:
  /// the home rank quantises the rows it sends) and the shared expert. The same rules and errors as
  /// MoeLayer::from_checkpoint apply to what it reads. Before loading, the ranks compare a hash of their config,
  /// layer index and placement; after it, a hash of the router, correction bias and shared expert they read: when
  /// they differ, or when a rank failed to load, every rank throws (ValueError "ExpertParallelLayer: ...: expected
  /// every rank to agree, got ..." naming the ranks; the rank that failed its own error). A rank that does not take
  /// part fails the others with an IoError after options.timeout_seconds. `comm` is duplicated: the layer's
  /// messages never mix with the caller's. MPI must be initialised (MPI_THREAD_FUNNELED or more when
  /// options.layer.threads > 1: only the calling thread calls MPI).
  static ExpertParallelLayer from_checkpoint(const MoeConfig& config, const Checkpoint& checkpoint,
                                             int64_t layer_index, MPI_Comm comm, const EpOptions& options = {});
  /// As from_checkpoint, the experts of MoeLayer::with_random_weights(config, seed): expert e gets the values it
  /// has in that single-process layer, so the two compute the same function.
  static ExpertParallelLayer with_random_weights(const MoeConfig& config, uint64_t seed, MPI_Comm comm,
                                                 const EpOptions& options = {});
  ~ExpertParallelLayer();
  ExpertParallelLayer(ExpertParallelLayer&&) noexcept;
  ExpertParallelLayer& operator=(ExpertParallelLayer&&) noexcept;

  /// Collective: every rank calls it, each with its own tokens x [T_r, H] (model dtype, any strides, T_r >= 0 and
  /// free to differ between ranks) and gets [T_r, H] in the model dtype: bitwise MoeLayer::forward's output for
  /// those tokens. The ranks' experts take the path MoeLayer takes: the fused decode path's expert tasks for a
  /// decode step (`is_prefill` false) of a config with enable_superkernel that the fused path handles, the chain's
  /// operators otherwise (path() says which; both give the same bits). `routing`, when given, receives this rank's
  /// tokens' routing.
  /// Errors: as MoeLayer::forward for x (on the rank that passed it; the others then time out with an IoError);
  /// IoError after timeout_seconds when a rank does not take part.
  Tensor forward(const Tensor& x, bool is_prefill = false, LayerRouting* routing = nullptr);
  /// As forward(), into `out` ([T_r, H], model dtype, contiguous, writable; must not overlap x).
  void forward_out(const Tensor& x, bool is_prefill, const Tensor& out, LayerRouting* routing = nullptr);

  const MoeConfig& config() const;
  /// Threads a forward uses on this rank (options.layer.threads, 0 resolved to the core count).
  int threads() const;
  /// Which path the experts ran in the last forward that had tokens on any rank, as MoeLayer::path: "superkernel",
  /// "chain", or "chain: <why>" when the fused path was asked for and declined; "chain" before any.
  const std::string& path() const;
  int rank() const;
  int size() const;
  const ExpertPlacement& placement() const;
  /// The experts this rank holds (global ids, ascending).
  const std::vector<int64_t>& local_experts() const;
  const EpTimings& last_timings() const;
  /// [E]: rows routed to each expert in the last forward, over every rank's tokens (the same on every rank).
  const std::vector<int64_t>& expert_tokens() const;
  /// [E]: the same, summed over every forward since the layer was made.
  const std::vector<int64_t>& cumulative_expert_tokens() const;

 private:
  struct Impl;
  explicit ExpertParallelLayer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace moefuse
