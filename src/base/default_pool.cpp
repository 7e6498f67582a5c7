#include "base/default_pool.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "base/check.h"
#include "moefuse/threads.h"

namespace moefuse {
namespace {

// 0 = unset.
int env_threads() {
  static const int value = [] {
    const char* v = std::getenv("MOEFUSE_NUM_THREADS");
    if (!v || !*v) return 0;
    const std::string s(v);
    int n = 0;
    bool ok = s.size() <= 4;
    for (char c : s) {
      if (c < '0' || c > '9') ok = false;
      else n = n * 10 + (c - '0');
    }
    if (!ok || n < 1 || n > kMaxThreads)
      check::fail_value("MOEFUSE_NUM_THREADS", "value", "an integer in 1.." + std::to_string(kMaxThreads),
                        "'" + s + "'");
    return n;
  }();
  return value;
}

std::atomic<int> g_requested{0};  // set_num_threads; 0 = default

struct Shared {
  std::mutex mutex;  // held by the lease that uses `pool`
  std::unique_ptr<ThreadPool> pool;

  // Under `mutex`.
  ThreadPool& grown_to(int threads) {
    if (!pool) pool = std::make_unique<ThreadPool>(1);
    pool->grow(threads);
    return *pool;
  }
};

Shared& shared() {
  static Shared s;
  return s;
}

// What the outermost lease of this thread got: the pool (limited) or nothing (the caller alone).
struct Held {
  bool set = false;
  ThreadPool* pool = nullptr;
};
thread_local Held t_held;

}  // namespace

void set_num_threads(int n) {
  if (n < 0 || n > kMaxThreads)
    check::fail_value("set_num_threads", "n", "0 (the default) or a thread count in 1.." + std::to_string(kMaxThreads),
                      std::to_string(n));
  g_requested.store(n, std::memory_order_relaxed);
}

int num_threads() {
  const int requested = g_requested.load(std::memory_order_relaxed);
  if (requested > 0) return requested;
  const int env = env_threads();
  if (env > 0) return env;
  const int hw = int(std::thread::hardware_concurrency());
  return hw > 0 ? std::min(hw, kMaxThreads) : 1;
}

PoolLease::PoolLease(int threads) {
  if (ThreadPool::in_task()) return;
  if (t_held.set) {
    pool_ = t_held.pool;
    return;
  }
  const int want = threads > 0 ? threads : num_threads();
  if (want > kMaxThreads)
    check::fail_value("thread pool", "threads", "a count in 1.." + std::to_string(kMaxThreads), std::to_string(want));
  outermost_ = true;
  t_held = Held{true, nullptr};
  if (want <= 1) return;
  Shared& s = shared();
  std::unique_lock<std::mutex> lock(s.mutex, std::try_to_lock);
  if (!lock.owns_lock()) return;
  try {
    pool_ = &s.grown_to(want);
  } catch (...) {
    t_held = Held{};
    throw;
  }
  previous_limit_ = pool_->size();
  pool_->set_limit(want);
  t_held.pool = pool_;
  lock_ = std::move(lock);
}

PoolLease::~PoolLease() {
  if (!outermost_) return;
  if (pool_) pool_->set_limit(previous_limit_);
  t_held = Held{};
}

ThreadPool& PoolLease::workers() const {
  static ThreadPool inline_pool(1);  // no workers: its loops touch no shared state, so any thread may use it
  return pool_ ? *pool_ : inline_pool;
}

void reserve_pool_threads(int threads) {
  if (ThreadPool::in_task()) return;
  Shared& s = shared();
  if (t_held.pool) {
    t_held.pool->grow(threads);  // this thread holds the pool, outside any loop
    return;
  }
  std::lock_guard<std::mutex> lock(s.mutex);
  s.grown_to(threads);
}

}  // namespace moefuse
