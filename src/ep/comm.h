// The layer's MPI exchanges, each bounded in time: every collective is started non-blocking and polled until it
// completes or the deadline passes, so that a rank that exited or stopped fails the others with an IoError naming
// the exchange instead of hanging them.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace moefuse::ep {

/// A duplicate of a communicator (its messages never mix with the caller's), MPI errors returned (and turned into
/// IoError) rather than aborting, and a timeout for every exchange.
class Comm {
 public:
  /// Duplicates `comm` (collective, bounded by `timeout_seconds`).
  Comm(MPI_Comm comm, double timeout_seconds);
  ~Comm();
  Comm(Comm&& o) noexcept;
  Comm& operator=(Comm&&) = delete;
  Comm(const Comm&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  MPI_Comm get() const { return comm_; }

  /// Waits for `requests` until the deadline; IoError "ExpertParallelLayer: <what>: ..." on timeout or failure.
  void wait(std::vector<MPI_Request>& requests, const char* what) const;
  /// Throws IoError naming `what` when `rc` is not MPI_SUCCESS.
  void check(int rc, const char* what) const;

  /// Every rank's `n` values of `mine` (all ranks the same n), rank-major. Bounded.
  std::vector<uint64_t> allgather(const std::vector<uint64_t>& mine, const char* what) const;
  /// Maximum over ranks. Bounded.
  int64_t allreduce_max(int64_t v, const char* what) const;

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  double timeout_ = 60;
};

}  // namespace moefuse::ep
