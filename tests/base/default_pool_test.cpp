// Which threads an operator or layer call gets: the process's one pool under the caller's limit, or the caller alone.
#include <gtest/gtest.h>

#include <thread>

#include "base/default_pool.h"
#include "moefuse/error.h"
#include "moefuse/threads.h"
#include "util/errors.h"

namespace moefuse {
namespace {

struct ThreadCount {
  explicit ThreadCount(int n) { set_num_threads(n); }
  ~ThreadCount() { set_num_threads(0); }
};

TEST(DefaultPool, LeaseGetsTheProcessPoolOutsideTasksAndNothingInside) {
  ThreadCount three(3);
  {
    DefaultPoolLease lease;
    ASSERT_NE(lease.pool(), nullptr);
    EXPECT_EQ(lease.threads(), 3);
    EXPECT_EQ(&lease.workers(), lease.pool());
  }
  ThreadPool other(2);
  other.parallel_for(2, [](int64_t) {
    DefaultPoolLease inner;
    EXPECT_EQ(inner.pool(), nullptr);
    EXPECT_EQ(inner.workers().size(), 1);
  });
}

// One pool: a layer's count is a limit on the process pool, and the operators it calls get the same pool and limit.
TEST(DefaultPool, ALayerLimitIsALimitOnTheOnePool) {
  ThreadCount three(3);
  ThreadPool* process = nullptr;
  {
    DefaultPoolLease ops;
    process = ops.pool();
  }
  ASSERT_NE(process, nullptr);
  {
    PoolLease layer(2);
    EXPECT_EQ(layer.pool(), process);
    EXPECT_EQ(layer.threads(), 2);
    {
      DefaultPoolLease nested;  // an operator called by the layer on its thread
      EXPECT_EQ(nested.pool(), process);
      EXPECT_EQ(nested.threads(), 2);
    }
    EXPECT_EQ(layer.threads(), 2);
    layer.pool()->parallel_for(2, [&](int64_t) {
      DefaultPoolLease inner;  // inside the layer's tasks, operators run alone
      EXPECT_EQ(inner.pool(), nullptr);
    });
  }
  {
    PoolLease one(1);  // a one-thread layer: neither it nor its operators take the pool
    EXPECT_EQ(one.pool(), nullptr);
    DefaultPoolLease nested;
    EXPECT_EQ(nested.pool(), nullptr);
  }
  {
    PoolLease wide(5);  // more than the pool has: it grows, it is not a second pool
    EXPECT_EQ(wide.pool(), process);
    EXPECT_EQ(wide.threads(), 5);
    EXPECT_GE(process->capacity(), 5);
  }
  DefaultPoolLease after;
  EXPECT_EQ(after.pool(), process);
  EXPECT_EQ(after.threads(), 3);
}

// While one thread holds the pool, another thread's lease runs alone rather than waiting.
TEST(DefaultPool, ABusyPoolLeavesOtherThreadsAlone) {
  ThreadCount two(2);
  DefaultPoolLease mine;
  ASSERT_NE(mine.pool(), nullptr);
  bool other_alone = false;
  std::thread([&] {
    DefaultPoolLease theirs;
    other_alone = theirs.pool() == nullptr && theirs.workers().size() == 1;
  }).join();
  EXPECT_TRUE(other_alone);
}

TEST(DefaultPool, CountsOverTheMaximumAreRefused) {
  EXPECT_THROWS_MSG(PoolLease(kMaxThreads + 1), ValueError, "thread pool", "threads", "1..1024", "got 1025");
  EXPECT_THROWS_MSG(reserve_pool_threads(100000), ValueError, "ThreadPool", "threads", "got 100000");
}

}  // namespace
}  // namespace moefuse
