// Bounded polling before a thread blocks: the wait policy of the thread pool's loops and of the fused decode path's
// waits between its tasks (base/thread_pool.h says why a decode step polls before it sleeps).
#pragma once

#include <algorithm>
#include <chrono>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MOEFUSE_SPIN_PAUSE() _mm_pause()
#else
#define MOEFUSE_SPIN_PAUSE() ((void)0)
#endif

namespace moefuse {

/// A poller spins without yielding for this long (the awaited task usually ends within it), then yields between polls.
inline constexpr int kPureSpinMicros = 30;

/// Polls done() until it holds or `micros` microseconds pass (micros <= 0: one call); returns whether it held. Past the
/// first kPureSpinMicros it yields between polls: when another process holds the other core, the thread this one
/// waits for may be queued for the very core the poller holds, and a poll that never yields would keep it off until
/// the scheduler's tick. The caller blocks (futex, condition variable) when this returns false.
/// `pure_micros` replaces kPureSpinMicros (0: yield from the first round of polls).
template <class Done>
bool poll_until(Done done, int micros, int pure_micros = kPureSpinMicros) {
  if (micros <= 0) return done();
  const auto start = std::chrono::steady_clock::now();
  const auto yield_from = start + std::chrono::microseconds(std::min(micros, pure_micros));
  const auto deadline = start + std::chrono::microseconds(micros);
  for (;;) {
    // The clock is read every 32 polls (a pause is tens of cycles; a clock read about as much).
    for (int i = 0; i < 32; ++i) {
      if (done()) return true;
      MOEFUSE_SPIN_PAUSE();
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return done();
    if (now >= yield_from) std::this_thread::yield();
  }
}

}  // namespace moefuse
