#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <vector>

#include "base/thread_pool.h"

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

}  // namespace
}  // namespace moefuse
