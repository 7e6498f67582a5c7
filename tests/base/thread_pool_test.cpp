#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "base/thread_pool.h"
#include "moefuse/error.h"
#include "util/errors.h"

namespace moefuse {
namespace {

TEST(ThreadPool, EveryIndexRunsExactlyOnceForAnySize) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (int64_t n : {0, 1, 2, 7, 1000}) {
      std::vector<std::atomic<int>> hits(size_t(n > 0 ? n : 1));
      pool.parallel_for(n, [&](int64_t i) { hits[size_t(i)].fetch_add(1); });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)].load(), 1) << threads << " threads, n=" << n;
    }
  }
}

TEST(ThreadPool, ManyShortLoopsInARow) {
  ThreadPool pool(4);
  std::atomic<int64_t> sum{0};
  for (int rep = 0; rep < 2000; ++rep) pool.parallel_for(3, [&](int64_t i) { sum.fetch_add(i + 1); });
  EXPECT_EQ(sum.load(), 2000 * 6);
}

// Waiting threads poll for spin_micros() before they sleep: every setting, and loops that come after the spin ran
// out (the workers asleep again) or within it, run every index once.
TEST(ThreadPool, EveryIndexRunsOnceWhateverTheSpinBeforeSleeping) {
  for (int spin : {0, 1, 200, 5000}) {
    ThreadPool pool(3);
    pool.set_spin_micros(spin);
    EXPECT_EQ(pool.spin_micros(), spin);
    for (int rep = 0; rep < 20; ++rep) {
      if (rep % 5 == 4) std::this_thread::sleep_for(std::chrono::milliseconds(2));  // past a short spin: asleep
      std::vector<std::atomic<int>> hits(97);
      pool.parallel_for(97, [&](int64_t i) { hits[size_t(i)].fetch_add(1); });
      for (int64_t i = 0; i < 97; ++i) ASSERT_EQ(hits[size_t(i)].load(), 1) << "spin " << spin << ", rep " << rep;
    }
  }
  ThreadPool pool(2);
  pool.set_spin_micros(-5);
  EXPECT_EQ(pool.spin_micros(), 0);
}

TEST(ThreadPool, FirstExceptionIsRethrownAndThePoolStaysUsable) {
  ThreadPool pool(3);
  EXPECT_THROW(pool.parallel_for(100,
                                 [](int64_t i) {
                                   if (i == 17) throw std::runtime_error("task 17");
                                 }),
               std::runtime_error);
  std::atomic<int> count{0};
  pool.parallel_for(50, [&](int64_t) { count.fetch_add(1); });
  EXPECT_EQ(count.load(), 50);
}

TEST(ThreadPool, InTaskIsTrueExactlyInsideTasks) {
  EXPECT_FALSE(ThreadPool::in_task());
  for (int threads : {1, 3}) {
    ThreadPool pool(threads);
    for (int64_t n : {1, 50}) {
      std::atomic<int> inside{0};
      pool.parallel_for(n, [&](int64_t) { inside.fetch_add(ThreadPool::in_task() ? 1 : 0); });
      EXPECT_EQ(inside.load(), n) << threads << " threads, n=" << n;
      EXPECT_FALSE(ThreadPool::in_task());
    }
    // Nested in another pool's task, and still true after an inner loop ends.
    ThreadPool inner(2);
    std::atomic<int> after{0};
    pool.parallel_for(4, [&](int64_t) {
      inner.parallel_for(1, [](int64_t) {});
      after.fetch_add(ThreadPool::in_task() ? 1 : 0);
    });
    EXPECT_EQ(after.load(), 4);
  }
  EXPECT_FALSE(ThreadPool::in_task());
}

// A loop uses at most size() threads: the limit, not the threads started.
// prewake() only changes when workers wake: every loop after it runs each index once, whether the loop comes while
// the prewoken workers poll, after they went back to sleep, or never (the pool then stops as usual); under a limit,
// with the spin off, with prewake off, and twice in a row.
TEST(ThreadPool, PrewakeLeavesEveryLoopWhole) {
  for (int spin : {0, 50, 200}) {
    for (int limit : {1, 2, 4}) {
      for (bool on : {true, false}) {
        ThreadPool pool(4);
        pool.set_spin_micros(spin);
        pool.set_limit(limit);
        pool.set_prewake(on);
        for (int rep = 0; rep < 12; ++rep) {
          pool.prewake();
          if (rep % 3 == 1) pool.prewake();
          if (rep % 4 == 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));  // past the spin: asleep again
          std::vector<std::atomic<int>> hits(61);
          pool.parallel_for(61, [&](int64_t i) { hits[size_t(i)].fetch_add(1); });
          for (int64_t i = 0; i < 61; ++i)
            ASSERT_EQ(hits[size_t(i)].load(), 1) << "spin " << spin << ", limit " << limit << ", rep " << rep;
        }
        pool.prewake();  // and none after it
      }
    }
  }
}

TEST(ThreadPool, ALimitBoundsTheThreadsOfALoop) {
  ThreadPool pool(4);
  EXPECT_EQ(pool.capacity(), 4);
  for (int limit : {1, 2, 3, 4}) {
    pool.set_limit(limit);
    EXPECT_EQ(pool.size(), limit);
    for (int rep = 0; rep < 20; ++rep) {
      std::atomic<int> inside{0}, most{0};
      std::vector<int> hits(64, 0);
      pool.parallel_for(64, [&](int64_t i) {
        const int now = inside.fetch_add(1) + 1;
        int m = most.load();
        while (now > m && !most.compare_exchange_weak(m, now)) {
        }
        // Long enough that free threads would pile in if the limit let them.
        for (int k = 0; k < 2000; ++k) hits[size_t(i)] += (k & 1);
        inside.fetch_sub(1);
      });
      EXPECT_LE(most.load(), limit);
      for (int h : hits) EXPECT_EQ(h, 1000);
    }
  }
  pool.set_limit(100);
  EXPECT_EQ(pool.size(), 4);
  pool.grow(6);
  EXPECT_EQ(pool.capacity(), 6);
  EXPECT_EQ(pool.size(), 4);  // growing leaves the limit alone
}

TEST(ThreadPool, CountsOutsideOneToTheMaximumAreRefused) {
  EXPECT_THROWS_MSG(ThreadPool(0), ValueError, "ThreadPool", "threads", "1..1024", "got 0");
  EXPECT_THROWS_MSG(ThreadPool(kMaxThreads + 1), ValueError, "ThreadPool", "threads", "got 1025");
  ThreadPool pool(2);
  EXPECT_THROWS_MSG(pool.grow(100000), ValueError, "ThreadPool", "threads", "got 100000");
  EXPECT_EQ(pool.capacity(), 2);
}

struct FailThreadStartsAfter {
  explicit FailThreadStartsAfter(int n) { thread_pool_testing::fail_thread_starts_after(n); }
  ~FailThreadStartsAfter() { thread_pool_testing::fail_thread_starts_after(-1); }
};

// A thread that cannot start is a ResourceError, never a hang or a crash: the workers already started are stopped
// (constructor) or kept (grow), and the pool stays usable.
TEST(ThreadPool, AThreadThatCannotStartIsAResourceError) {
  {
    FailThreadStartsAfter two(2);
    EXPECT_THROWS_MSG(ThreadPool(5), ResourceError, "thread pool", "threads", "expected 5 threads to start, got 3");
  }
  ThreadPool pool(2);
  {
    FailThreadStartsAfter one(1);
    EXPECT_THROWS_MSG(pool.grow(4), ResourceError, "thread pool", "expected 4 threads to start, got 3");
  }
  EXPECT_EQ(pool.capacity(), 3);
  pool.set_limit(3);
  std::vector<int> hits(100, 0);
  pool.parallel_for(100, [&](int64_t i) { hits[size_t(i)]++; });
  for (int h : hits) EXPECT_EQ(h, 1);
}

}  // namespace
}  // namespace moefuse
