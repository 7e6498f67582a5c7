#include "base/thread_pool.h"

namespace moefuse {

ThreadPool::ThreadPool(int threads) {
  int total = threads > 0 ? threads : int(std::thread::hardware_concurrency());
  if (total < 1) total = 1;
  workers_.reserve(size_t(total - 1));
  for (int i = 1; i < total; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
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
  uint64_t seen = 0;
  for (;;) {
    Call call;
    void* ctx;
    int64_t n;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
      // A worker that wakes after the caller closed the loop must not touch it: its lambda may be gone.
      if (!open_) continue;
      call = call_;
      ctx = ctx_;
      n = n_;
      ++busy_;
    }
    drain(call, ctx, n);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (--busy_ == 0) done_.notify_one();
    }
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
    open_ = true;
    ++generation_;
  }
  wake_.notify_all();
  drain(call, ctx, n);
  std::exception_ptr error;
  {
    // Every index has been handed out; wait for the workers still running one, then close the loop so that no
    // late-waking worker joins it.
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return busy_ == 0; });
    open_ = false;
    error = error_;
    error_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace moefuse
