// Per-thread scratch buffers (src/base/scratch.h): slots taken by depth, 64-byte aligned, grown only for a larger
// request, reused without allocating, one stack per thread.
#include "base/scratch.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <thread>

#include "moefuse/error.h"
#include "util/alloc_counter.h"

namespace moefuse {
namespace {

using scratch_detail::capacity;
using scratch_detail::depth;
using testing::AllocationCounter;

bool aligned64(const void* p) { return reinterpret_cast<uintptr_t>(p) % 64 == 0; }

TEST(ScratchTest, SlotsAreTakenByDepthAndGivenBackInReverse) {
  const size_t base = depth();
  {
    Scratch<float> a(10);
    EXPECT_EQ(depth(), base + 1);
    {
      Scratch<int64_t> b(3);
      EXPECT_EQ(depth(), base + 2);
      EXPECT_NE(static_cast<void*>(a.data()), static_cast<void*>(b.data()));
    }
    EXPECT_EQ(depth(), base + 1);
  }
  EXPECT_EQ(depth(), base);
}

TEST(ScratchTest, SixtyFourByteAlignedAndNeverNull) {
  Scratch<int8_t> a(1);
  Scratch<float> b(0);
  Scratch<double> c(1000);
  EXPECT_TRUE(aligned64(a.data()));
  EXPECT_NE(b.data(), nullptr);
  EXPECT_TRUE(aligned64(b.data()));
  EXPECT_TRUE(aligned64(c.data()));
  EXPECT_EQ(b.size(), 0);
  EXPECT_EQ(c.size(), 1000);
}

TEST(ScratchTest, FillValueSetsEveryElement) {
  {
    Scratch<int64_t> dirty(100);
    for (int64_t& v : dirty) v = 12345;
  }
  Scratch<int64_t> s(100, -1);  // the same slot, so its old contents are overwritten
  for (int64_t v : s) EXPECT_EQ(v, -1);
}

TEST(ScratchTest, SameSlotIsReusedAndGrowsOnlyForALargerRequest) {
  const size_t slot = depth();
  const float* first;
  {
    Scratch<float> s(1000);
    first = s.data();
  }
  const size_t cap = capacity(slot);
  EXPECT_GE(cap, 1000 * sizeof(float));
  EXPECT_EQ(cap % 64, 0u);
  {
    Scratch<float> same(1000);
    Scratch<int32_t> next(1000);  // sizes the next slot too
    EXPECT_EQ(same.data(), first);
  }
  {
    AllocationCounter c;
    Scratch<float> smaller(10);
    Scratch<int32_t> next(500);
    EXPECT_EQ(c.count(), 0u);
    EXPECT_EQ(smaller.data(), first);
    EXPECT_EQ(capacity(slot), cap);
  }
  {
    AllocationCounter c;
    Scratch<float> larger(cap / sizeof(float) + 1);
    EXPECT_EQ(c.count(), 1u);
    EXPECT_GT(capacity(slot), cap);
  }
}

TEST(ScratchTest, NestedLoopsRunAllocationFreeAfterTheFirstPass) {
  auto pass = [](int64_t n) {
    float sum = 0;
    for (int64_t r = 0; r < 4; ++r) {
      Scratch<float> row(n, float(r));
      Scratch<int32_t> idx(2 * n);
      for (int64_t i = 0; i < idx.size(); ++i) idx[i] = int32_t(i);
      for (int64_t i = 0; i < n; ++i) sum += row[i] + float(idx[2 * i]);
    }
    return sum;
  };
  const float first = pass(300);
  AllocationCounter c;
  const float again = pass(300);
  const float shorter = pass(7);
  EXPECT_EQ(c.count(), 0u);
  EXPECT_EQ(first, again);
  EXPECT_GT(shorter, 0.0f);
}

TEST(ScratchTest, EachThreadHasItsOwnStack) {
  Scratch<float> here(16);
  const size_t here_depth = depth();
  size_t there_depth = 0;
  const void* there = nullptr;
  std::thread t([&] {
    Scratch<float> s(16);
    there_depth = depth();
    there = s.data();
  });
  t.join();
  EXPECT_EQ(there_depth, 1u);
  EXPECT_NE(there, static_cast<const void*>(here.data()));
  EXPECT_EQ(depth(), here_depth);
}

TEST(ScratchTest, ImpossibleRequestThrowsResourceErrorAndLeavesTheStackUnchanged) {
  const size_t base = depth();
  EXPECT_THROW(Scratch<double> s(INT64_MAX / 4), ResourceError);
  EXPECT_THROW(Scratch<float> s(-1), ResourceError);
  EXPECT_EQ(depth(), base);
  Scratch<float> ok(4);
  EXPECT_EQ(depth(), base + 1);
}

}  // namespace
}  // namespace moefuse
