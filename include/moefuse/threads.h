// moefuse/threads.h — how many threads the operators use.
//
// Operators that split their work (grouped_matmul with packed or per-call-packed weights, pack_grouped_weights, the
// fast paths of init_routing_v2 and finalize_routing on large calls) run it on one process-wide pool of worker
// threads, started at the first such call and kept for the next ones (the calling thread works too, so N threads
// means N - 1 workers). The number of threads is, in order of precedence:
//   1. the last set_num_threads(n) with n >= 1;
//   2. the environment variable MOEFUSE_NUM_THREADS (a decimal integer 1..1024), read once, at first use;
//   3. std::thread::hardware_concurrency().
// Results never depend on it: every operator gives bitwise the same output for any thread count (docs/operators.md).
//
// The pool serves one call at a time. A call made while another thread's call holds it, or made from inside a task
// of a moefuse thread pool (the layer's own threads, for instance), runs on its calling thread alone: nested or
// concurrent calls never oversubscribe the cores, and never wait for each other.
#pragma once

namespace moefuse {

/// Sets the number of threads operators use from their next call on: n in 1..1024, or 0 to return to the default
/// (MOEFUSE_NUM_THREADS, else hardware_concurrency()). A changed count takes effect at the next call, which restarts
/// the pool (a call that finds the pool busy keeps running alone, as above). Thread-safe.
/// Throws ValueError for n < 0 or n > 1024.
void set_num_threads(int n);

/// The number of threads an operator call uses at most now (see above; always >= 1). Throws ValueError when
/// MOEFUSE_NUM_THREADS is set to something other than an integer in 1..1024 (and no set_num_threads(n >= 1) overrides
/// it); the operators that use the pool throw the same error.
int num_threads();

}  // namespace moefuse
