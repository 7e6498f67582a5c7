// A set of worker threads that run index-parallel loops. The caller thread takes part in every loop, so a pool of
// size 1 runs everything inline. A loop allocates nothing (the task is passed as a pointer to the caller's lambda),
// which the layer's allocation-free forward relies on.
//
// The process has one pool (src/base/default_pool.h leases it); a caller limits how many of its threads a loop uses
// (set_limit) rather than starting a pool of its own. Standalone pools exist in tests only.
//
// Results never depend on how tasks land on threads: each task writes its own outputs (docs/operators.md), so the
// pool hands out indices dynamically, in increasing order, from one atomic counter.
//
// Waits spin before they sleep: a worker that finished a loop polls for the next one, and the caller polls for the
// workers' last tasks, for up to spin_micros() (default kDefaultSpinMicros) before blocking on the condition variable.
// A decode step is a few loops of about a millisecond with tens of microseconds between them (the router, SwiGLU,
// the next forward's routing); a sleeping worker is back only after the futex wake and the scheduler (and, on a VM,
// the host) give it a core again, during which one thread streams alone: 1.4-1.7 ms on the 2-core Zen 5 VM while
// other processes ran, against 11 us polling (bench/layer_scaling.cpp --wake 1; docs/performance.md, "Decode on two
// threads"). The spin is bounded so that an idle pool sleeps, and after its first 30 us it yields between polls: on a
// machine shared with other processes the thread being waited for may be queued for the very core the poller holds.
// The split of a loop stays dynamic (one task at a time, not halves): the layer's tasks are 1-2 MB of weights, so the
// threads' shares differ by at most one task, and a preempted thread holds back only the task it is in.
//
// A thread knows while it runs a task of any pool (in_task()): operators that would parallelise on their own run on
// the calling thread then, so that nested loops — the layer's token-split tasks calling grouped_matmul, say — never
// oversubscribe the cores.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "moefuse/threads.h"  // kMaxThreads

namespace moefuse {

class ThreadPool {
 public:
  /// `threads` in total, the caller included, in 1..kMaxThreads. Throws ResourceError when a worker thread cannot be
  /// started (the ones already started are stopped first).
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  /// Threads a loop uses now: the limit (set_limit), at most capacity().
  int size() const { return limit_; }
  /// Threads started: the workers and the caller.
  int capacity() const { return int(workers_.size()) + 1; }

  /// Loops from now on use at most `threads` threads (clamped to 1..capacity()). Not thread-safe: only the holder of
  /// the pool (the one calling parallel_for) sets it.
  void set_limit(int threads);

  /// How long a waiting thread polls before it sleeps (microseconds, >= 0; 0: sleep at once). Not while a loop runs.
  void set_spin_micros(int micros) { spin_micros_.store(micros < 0 ? 0 : micros, std::memory_order_relaxed); }
  int spin_micros() const { return spin_micros_.load(std::memory_order_relaxed); }
  static constexpr int kDefaultSpinMicros = 200;

  /// Wakes the workers that a loop under the current limit would use, so that they poll for the next loop (for up to
  /// spin_micros()) rather than sleep: a caller with serial work to do before its next loop (a decode step's routing)
  /// calls this first, and the workers' wake-up runs during that work instead of after the loop has started. Workers
  /// already polling are left as they are. Only the holder of the pool calls it; not while a loop runs.
  void prewake();
  /// Whether prewake() wakes anything (default true; off: it does nothing). Only the holder of the pool sets it.
  void set_prewake(bool on) { prewake_on_ = on; }

  /// Starts workers until capacity() >= threads (<= kMaxThreads); allocates only when it starts some. Throws
  /// ResourceError when a thread cannot be started; the pool keeps the workers started before and stays usable.
  /// Not while a loop runs.
  void grow(int threads);

  /// Whether the calling thread is inside fn of some pool's parallel_for (inline runs included).
  static bool in_task() { return task_depth_ > 0; }

  /// Calls fn(i) once for every i in [0, n), spread over size() threads; returns when all calls are done. If calls
  /// throw, the remaining indices are still handed out but skipped, and the first exception is rethrown here. Not
  /// re-entrant: fn must not call parallel_for on the same pool.
  template <class Fn>
  void parallel_for(int64_t n, Fn&& fn) {
    if (n <= 0) return;
    if (limit_ <= 1 || n == 1) {
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
  void notify_workers(int wanted);  // wakes `wanted` sleeping workers (all when that is every worker)
  void drain(Call call, void* ctx, int64_t n);
  void stop() noexcept;
  // Polls until done() holds or spin_micros() pass; whether it held. yield_at_once: yield between polls from the
  // start (poll.h), not only after its first kPureSpinMicros.
  template <class Done>
  bool spin_until(Done done, bool yield_at_once = false) const;

  std::vector<std::thread> workers_;
  int limit_ = 1;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  // Written under mutex_; atomic so that spinning threads may poll them without it.
  std::atomic<uint64_t> generation_{0};
  std::atomic<uint64_t> prewakes_{0};  // prewake() calls so far
  bool prewake_on_ = true;
  std::atomic<bool> stopping_{false};
  std::atomic<int> busy_{0};  // workers inside drain() for the open loop
  std::atomic<int> spin_micros_{kDefaultSpinMicros};
  int joined_ = 0;       // workers that joined the open loop
  int max_joined_ = 0;   // workers the open loop may take (size() - 1)
  bool open_ = false;    // a loop is running and workers may still join it

  // The open loop; read and written under mutex_ only.
  Call call_ = nullptr;
  void* ctx_ = nullptr;
  int64_t n_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;
};

namespace thread_pool_testing {
/// For tests: the next `n` thread starts succeed and every later one fails as std::thread does when the system has
/// no threads left (std::system_error, EAGAIN); n < 0 turns this off. Process-wide.
void fail_thread_starts_after(int n);
}  // namespace thread_pool_testing

}  // namespace moefuse
