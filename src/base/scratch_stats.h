// How often the per-thread scratch stacks of base/scratch.h have gone to the heap, for tests that prove a call
// allocates nothing but scratch growth.
#pragma once

#include <cstdint>

namespace moefuse::scratch_detail {

/// Heap allocations made so far by acquire() on any thread (a slot grown, a stack's slot array grown). A pool's
/// worker grows its slots the first time it gets a task larger than any it ran before, which with dynamic task
/// hand-out may be a call long after the warm-up; tests tell those allocations apart from any other with this count.
uint64_t allocations() noexcept;

}  // namespace moefuse::scratch_detail
