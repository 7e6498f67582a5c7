// The process-wide thread pool of the operators (moefuse/threads.h says how big it is and who may use it).
//
// An operator borrows it for one call through a DefaultPoolLease. The lease is empty (pool() == nullptr: run on the
// calling thread) when one thread is configured, when another call holds the pool, or when the caller is itself a
// task of some ThreadPool; otherwise it holds the pool exclusively until it is destroyed. Borrowing allocates nothing
// once the pool exists (it is created, or restarted after set_num_threads changed the count, under the lease).
#pragma once

#include <algorithm>
#include <cstdint>
#include <mutex>

#include "base/thread_pool.h"

namespace moefuse {

/// While alive, leases taken on the constructing thread hand out `pool` (nullptr: the calling thread alone) instead
/// of the process-wide pool: a MoeLayer runs the operators it calls on its own threads (LayerOptions::threads), with
/// the same rules (a caller inside a pool task still runs alone). Scopes nest; construct and destroy on one thread.
class OperatorPoolScope {
 public:
  explicit OperatorPoolScope(ThreadPool* pool);
  ~OperatorPoolScope();
  OperatorPoolScope(const OperatorPoolScope&) = delete;
  OperatorPoolScope& operator=(const OperatorPoolScope&) = delete;

 private:
  ThreadPool* previous_;
  bool previous_set_;
};

class DefaultPoolLease {
 public:
  /// Throws ValueError for a bad MOEFUSE_NUM_THREADS (see num_threads()), std::system_error when worker threads
  /// cannot be started.
  DefaultPoolLease();
  DefaultPoolLease(const DefaultPoolLease&) = delete;
  DefaultPoolLease& operator=(const DefaultPoolLease&) = delete;

  /// The pool, or nullptr: run on the calling thread.
  ThreadPool* pool() const { return pool_; }
  /// Threads available to this call (1 without a pool).
  int threads() const { return pool_ ? pool_->size() : 1; }

 private:
  std::unique_lock<std::mutex> lock_;
  ThreadPool* pool_ = nullptr;
};

/// Calls fn(begin, end) on consecutive blocks covering [0, rows), each of about 16K elements (`row_elements` per
/// row), on the operators' pool when there are 64K elements or more and a lease gives one, else on the calling thread.
/// For row-wise operators whose rows are independent: the results cannot depend on the split. Allocates nothing
/// once the pool exists.
template <class Fn>
void parallel_rows(int64_t rows, int64_t row_elements, Fn&& fn) {
  if (rows <= 0) return;
  const int64_t per_row = std::max<int64_t>(row_elements, 1);
  if (rows * per_row >= (int64_t(1) << 16)) {
    DefaultPoolLease lease;
    if (lease.pool()) {
      const int64_t block = std::max<int64_t>(1, (int64_t(1) << 14) / per_row);
      lease.pool()->parallel_for((rows + block - 1) / block, [&](int64_t b) {
        fn(b * block, std::min(rows, (b + 1) * block));
      });
      return;
    }
  }
  fn(int64_t{0}, rows);
}

}  // namespace moefuse
