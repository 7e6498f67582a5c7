// A fixed set of worker threads that run index-parallel loops. The caller thread takes part in every loop, so a
// pool of size 1 runs everything inline. A loop allocates nothing (the task is passed as a pointer to the caller's
// lambda), which the layer's allocation-free forward relies on.
//
// Results never depend on how tasks land on threads: each task writes its own outputs (docs/operators.md), so the
// pool hands out indices dynamically, in increasing order, from one atomic counter.
//
// A thread knows while it runs a task of any pool (in_task()): operators that would parallelise on their own (the
// process-wide pool of src/base/default_pool.h) run on the calling thread then, so that nested loops — the layer's
// token-split tasks calling grouped_matmul, say — never oversubscribe the cores.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace moefuse {

class ThreadPool {
 public:
  /// `threads` in total, the caller included; 0 means std::thread::hardware_concurrency().
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }

  /// Whether the calling thread is inside fn of some pool's parallel_for (inline runs included).
  static bool in_task() { return task_depth_ > 0; }

  /// Calls fn(i) once for every i in [0, n), spread over the pool; returns when all calls are done. If calls throw,
  /// the remaining indices are still handed out but skipped, and the first exception is rethrown here. Not
  /// re-entrant: fn must not call parallel_for on the same pool.
  template <class Fn>
  void parallel_for(int64_t n, Fn&& fn) {
    if (n <= 0) return;
    if (workers_.empty() || n == 1) {
      TaskScope scope;
      for (int64_t i = 0; i < n; ++i) fn(i);
      return;
    }
    run(n, [](void* ctx, int64_t i) { (*static_cast<std::remove_reference_t<Fn>*>(ctx))(i); }, &fn);
  }

 private:
  // Marks the calling thread as running tasks for its lifetime (nests).
  struct TaskScope {
    TaskScope() { ++task_depth_; }
    ~TaskScope() { --task_depth_; }
    TaskScope(const TaskScope&) = delete;
    TaskScope& operator=(const TaskScope&) = delete;
  };
  static inline thread_local int task_depth_ = 0;

  using Call = void (*)(void*, int64_t);
  void run(int64_t n, Call call, void* ctx);
  void worker_loop();
  void drain(Call call, void* ctx, int64_t n);

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  uint64_t generation_ = 0;
  bool stopping_ = false;
  int busy_ = 0;     // workers inside drain() for the open loop
  bool open_ = false;  // a loop is running and workers may still join it

  // The open loop; read and written under mutex_ only.
  Call call_ = nullptr;
  void* ctx_ = nullptr;
  int64_t n_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;
};

}  // namespace moefuse
