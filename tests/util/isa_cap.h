// A test's ISA cap and thread count, put back when the test ends, pass or fail.
#pragma once

#include "moefuse/cpu.h"
#include "moefuse/threads.h"

namespace moefuse::testing {

/// Restores the ISA cap (set_max_isa) to the top level and the thread count to the default on destruction.
struct RestoreIsaAndThreads {
  RestoreIsaAndThreads() = default;
  RestoreIsaAndThreads(const RestoreIsaAndThreads&) = delete;
  RestoreIsaAndThreads& operator=(const RestoreIsaAndThreads&) = delete;
  ~RestoreIsaAndThreads() {
    set_max_isa(kTopIsa);
    set_num_threads(0);
  }
};

}  // namespace moefuse::testing
