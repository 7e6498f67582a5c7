// Which pool an operator call gets: the process-wide one, the caller alone, or a layer's own (OperatorPoolScope).
#include <gtest/gtest.h>

#include "base/default_pool.h"
#include "moefuse/threads.h"

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
  }
  ThreadPool other(2);
  other.parallel_for(2, [](int64_t) {
    DefaultPoolLease inner;
    EXPECT_EQ(inner.pool(), nullptr);
  });
}

TEST(DefaultPool, ScopeHandsItsPoolToLeasesOfThisThreadOnly) {
  ThreadCount three(3);
  ThreadPool mine(2);
  {
    OperatorPoolScope scope(&mine);
    DefaultPoolLease lease;
    EXPECT_EQ(lease.pool(), &mine);
    EXPECT_EQ(lease.threads(), 2);
    {
      OperatorPoolScope alone(nullptr);  // nested: the caller alone
      DefaultPoolLease inner;
      EXPECT_EQ(inner.pool(), nullptr);
    }
    DefaultPoolLease again;
    EXPECT_EQ(again.pool(), &mine);
    // Inside a task of the scope's own pool, operators still run alone (no nested parallel_for on one pool).
    mine.parallel_for(2, [&](int64_t) {
      DefaultPoolLease inner;
      EXPECT_EQ(inner.pool(), nullptr);
    });
  }
  DefaultPoolLease after;
  ASSERT_NE(after.pool(), nullptr);
  EXPECT_EQ(after.threads(), 3);
}

TEST(DefaultPool, ScopeWithOneThreadPoolRunsOnTheCaller) {
  ThreadPool one(1);
  OperatorPoolScope scope(&one);
  DefaultPoolLease lease;
  EXPECT_EQ(lease.pool(), nullptr);
}

}  // namespace
}  // namespace moefuse
