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

constexpr int kMaxThreads = 1024;

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
};

Shared& shared() {
  static Shared s;
  return s;
}

// The pool of the innermost OperatorPoolScope of this thread.
struct PoolOverride {
  ThreadPool* pool = nullptr;
  bool set = false;
};
thread_local PoolOverride t_override;

}  // namespace

OperatorPoolScope::OperatorPoolScope(ThreadPool* pool) : previous_(t_override.pool), previous_set_(t_override.set) {
  t_override = PoolOverride{pool, true};
}

OperatorPoolScope::~OperatorPoolScope() { t_override = PoolOverride{previous_, previous_set_}; }

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

DefaultPoolLease::DefaultPoolLease() {
  if (ThreadPool::in_task()) return;
  if (t_override.set) {
    if (t_override.pool && t_override.pool->size() > 1) pool_ = t_override.pool;
    return;
  }
  const int want = num_threads();
  if (want <= 1) return;
  Shared& s = shared();
  std::unique_lock<std::mutex> lock(s.mutex, std::try_to_lock);
  if (!lock.owns_lock()) return;
  if (!s.pool || s.pool->size() != want) {
    s.pool.reset();  // joins the old workers first
    s.pool = std::make_unique<ThreadPool>(want);
  }
  pool_ = s.pool.get();
  lock_ = std::move(lock);
}

}  // namespace moefuse
