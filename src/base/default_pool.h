// The process's one thread pool (moefuse/threads.h says how big it is and who may use it).
//
// A caller borrows it through a PoolLease with a limit: the operators with the count of set_num_threads, a layer
// with its LayerOptions::threads. The lease is empty (pool() == nullptr: run on the calling thread) when the limit
// is one thread, when another thread holds the pool, or when the caller is itself a task of a pool; otherwise it holds
// the pool exclusively, limited to its count, until it is destroyed. A lease taken on a thread that already holds one
// gets the same as the outer one (a layer's operators run on the layer's threads, under its limit). Borrowing
// allocates nothing once the pool has enough workers (it grows under the lease, or by reserve_pool_threads; it never
// shrinks).
#pragma once

#include <algorithm>
#include <cstdint>
#include <mutex>

#include "base/thread_pool.h"

namespace moefuse {

class PoolLease {
 public:
  /// Up to `threads` threads (1..kMaxThreads); 0 = the operators' count, num_threads(). Throws ValueError for a bad
  /// MOEFUSE_NUM_THREADS (see num_threads()), ResourceError when worker threads cannot be started.
  explicit PoolLease(int threads);
  ~PoolLease();
  PoolLease(const PoolLease&) = delete;
  PoolLease& operator=(const PoolLease&) = delete;

  /// The pool, or nullptr: run on the calling thread.
  ThreadPool* pool() const { return pool_; }
  /// The pool, or a one-thread pool that runs loops inline (shared, stateless).
  ThreadPool& workers() const;
  /// Threads available to this lease (1 without a pool).
  int threads() const { return pool_ ? pool_->size() : 1; }

 private:
  std::unique_lock<std::mutex> lock_;
  ThreadPool* pool_ = nullptr;
  bool outermost_ = false;  // this lease set the thread's record (and restores it)
  int previous_limit_ = 1;
};

/// The operators' lease: num_threads() threads.
class DefaultPoolLease : public PoolLease {
 public:
  DefaultPoolLease() : PoolLease(0) {}
};

/// Starts workers until the process pool has `threads` threads (1..kMaxThreads), waiting for the pool if another
/// thread holds it; nothing when called from a pool task. Throws ResourceError when a thread cannot be started.
void reserve_pool_threads(int threads);

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

/// Calls fn(i) for every i in [0, count): on the operators' pool when count > 1 and a lease gives one, else in order
/// on the calling thread. For independent items (blocks of rows an operator cut itself): the results cannot depend on
/// which thread runs which.
template <class Fn>
void parallel_items(int64_t count, Fn&& fn) {
  DefaultPoolLease lease;
  if (lease.pool() && count > 1) {
    lease.pool()->parallel_for(count, fn);
    return;
  }
  for (int64_t i = 0; i < count; ++i) fn(i);
}

}  // namespace moefuse
