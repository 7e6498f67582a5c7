// Counts heap allocations made through C++ operator new, so a test can prove that a call allocates nothing (the
// layer's steady-state forward in graph mode must not allocate: docs/layer.md §2).
//
// alloc_counter.cpp replaces every form of the global operator new / delete in the test binary (plain, array,
// nothrow, aligned, sized) with versions built on malloc / posix_memalign / free that add one to a global atomic per
// allocation. new and delete are replaced together, so every block is released by the allocator that made it; this
// keeps AddressSanitizer's allocation/deallocation checks meaningful (ASan intercepts malloc/free underneath).
//
// What is counted: every operator new of any thread (std::vector, std::string, std::function, shared_ptr control
// blocks, the library's scratch buffers, ...). What is not: direct calls to malloc / aligned_alloc. Tensor storage
// comes from aligned_alloc, but every owning Tensor also allocates its shared_ptr control block with operator new,
// so making a tensor is counted too (a test below checks it).
#pragma once

#include <cstdint>

namespace moefuse::testing {

/// Number of operator new calls (all forms, all threads) since the program started.
uint64_t allocations_so_far();

/// Counts the allocations made while it is alive:
///   AllocationCounter c;  op_out(...);  EXPECT_EQ(c.count(), 0u);
class AllocationCounter {
 public:
  AllocationCounter() : start_(allocations_so_far()) {}
  AllocationCounter(const AllocationCounter&) = delete;
  AllocationCounter& operator=(const AllocationCounter&) = delete;

  /// Allocations since construction.
  uint64_t count() const { return allocations_so_far() - start_; }

 private:
  uint64_t start_;
};

}  // namespace moefuse::testing
