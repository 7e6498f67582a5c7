#include "base/thread_pool.h"

#include <algorithm>
#include <cerrno>
#include <string>
#include <system_error>
#include <thread>

#include "base/check.h"
#include "base/poll.h"
#include "moefuse/error.h"

namespace moefuse {
namespace {

std::atomic<int> g_starts_left{-1};  // thread_pool_testing: < 0 = off

std::thread start_thread(ThreadPool* pool, void (ThreadPool::*loop)()) {
  int left = g_starts_left.load(std::memory_order_relaxed);
  while (left > 0 && !g_starts_left.compare_exchange_weak(left, left - 1, std::memory_order_relaxed)) {
  }
  if (left == 0)
    throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again), "thread start (test)");
  return std::thread(loop, pool);
}

}  // namespace

namespace thread_pool_testing {
void fail_thread_starts_after(int n) { g_starts_left.store(n < 0 ? -1 : n, std::memory_order_relaxed); }
}  // namespace thread_pool_testing

ThreadPool::ThreadPool(int threads) {
  try {
    grow(threads);
  } catch (...) {
    // The workers already started wait on wake_: stop and join them before the members go.
    stop();
    throw;
  }
  limit_ = capacity();
}

ThreadPool::~ThreadPool() { stop(); }

void ThreadPool::stop() noexcept {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
}

void ThreadPool::set_limit(int threads) { limit_ = threads < 1 ? 1 : threads > capacity() ? capacity() : threads; }

void ThreadPool::grow(int threads) {
  if (threads < 1 || threads > kMaxThreads)
    check::fail_value("ThreadPool", "threads", "a count in 1.." + std::to_string(kMaxThreads), std::to_string(threads));
  if (threads <= capacity()) return;
  const int had = capacity();
  try {
    workers_.reserve(size_t(threads - 1));
    while (capacity() < threads) workers_.push_back(start_thread(this, &ThreadPool::worker_loop));
  } catch (const std::system_error& e) {
    throw ResourceError("thread pool: threads: expected " + std::to_string(threads) + " threads to start, got " +
                        std::to_string(capacity()) + " (" + std::to_string(had) + " before this request; " +
                        e.what() + ")");
  } catch (const std::bad_alloc&) {
    throw ResourceError("thread pool: memory: expected room for " + std::to_string(threads) +
                        " threads, allocation failed");
  }
}

template <class Done>
bool ThreadPool::spin_until(Done done, bool yield_at_once) const {
  return poll_until(done, spin_micros(), yield_at_once ? 0 : kPureSpinMicros);
}

void ThreadPool::drain(Call call, void* ctx, int64_t n) {
  TaskScope scope;
  for (;;) {
    int64_t i = next_.fetch_add(1, std::memory_order_relaxed);
    if (i >= n) return;
    if (failed_.load(std::memory_order_relaxed)) continue;
    try {
      call(ctx, i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
      failed_.store(true, std::memory_order_relaxed);
    }
  }
}

void ThreadPool::worker_loop() {
  uint64_t seen = 0, seen_prewakes = 0;
  bool ran = false;       // this worker ran the last loop or was prewoken: poll for the next before sleeping
  bool prewoken = false;  // prewoken: the caller has serial work to do, which may need this very core
  for (;;) {
    Call call;
    void* ctx;
    int64_t n;
    if (ran)
      spin_until(
          [&] {
            return stopping_.load(std::memory_order_acquire) || generation_.load(std::memory_order_acquire) != seen;
          },
          prewoken);
    ran = prewoken = false;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || generation_ != seen || prewakes_ != seen_prewakes; });
      if (stopping_) return;
      // A prewake counts as seen once this worker polls or joins a loop: one that came while it was polling anyway
      // must not have it poll a second spin time after its next loop.
      seen_prewakes = prewakes_;
      if (generation_ == seen) {  // prewoken, no loop yet: poll for it
        ran = prewoken = true;
        continue;
      }
      seen = generation_;
      // A worker that wakes after the caller closed the loop must not touch it: its lambda may be gone. Beyond the
      // loop's limit, workers stay out.
      if (!open_ || joined_ >= max_joined_) continue;
      ++joined_;
      call = call_;
      ctx = ctx_;
      n = n_;
      ++busy_;
    }
    drain(call, ctx, n);
    ran = true;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (--busy_ == 0) done_.notify_one();
    }
  }
}

void ThreadPool::prewake() {
  if (!prewake_on_ || limit_ <= 1 || spin_micros() <= 0) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++prewakes_;
  }
  notify_workers(limit_ - 1);
}

void ThreadPool::notify_workers(int wanted) {
  // Only as many workers as may join (a pool grown for a wide layer keeps the rest asleep under a low limit).
  if (wanted >= int(workers_.size())) {
    wake_.notify_all();
  } else {
    for (int i = 0; i < wanted; ++i) wake_.notify_one();
  }
}

void ThreadPool::run(int64_t n, Call call, void* ctx) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    call_ = call;
    ctx_ = ctx;
    n_ = n;
    next_.store(0, std::memory_order_relaxed);
    failed_.store(false, std::memory_order_relaxed);
    error_ = nullptr;
    joined_ = 0;
    max_joined_ = limit_ - 1;
    open_ = true;
    ++generation_;
  }
  notify_workers(max_joined_);
  drain(call, ctx, n);
  std::exception_ptr error;
  {
    // Every index has been handed out; wait for the workers still running one, then close the loop so that no
    // late-waking worker joins it.
    spin_until([&] { return busy_.load(std::memory_order_acquire) == 0; });
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return busy_ == 0; });
    open_ = false;
    error = error_;
    error_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace moefuse
