#include "base/scratch.h"
#include "base/scratch_stats.h"

#include <atomic>
#include <new>
#include <string>
#include <vector>

#include "moefuse/error.h"

namespace moefuse::scratch_detail {
namespace {

struct Slot {
  std::byte* data = nullptr;
  size_t capacity = 0;  // bytes
};

// One per thread. `slots` only grows when a thread nests deeper than ever before; the blocks are freed when the
// thread ends.
struct Stack {
  std::vector<Slot> slots;
  size_t depth = 0;  // slots [0, depth) are taken

  ~Stack() {
    for (Slot& s : slots) ::operator delete(s.data, std::align_val_t(kScratchAlignment));
  }
};

thread_local Stack t_stack;
std::atomic<uint64_t> g_allocations{0};

[[noreturn]] void fail(size_t bytes) {
  throw ResourceError("scratch: memory: expected " + std::to_string(bytes) +
                      " bytes to be available, allocation failed");
}

}  // namespace

std::byte* acquire(size_t bytes) {
  Stack& s = t_stack;
  if (s.depth == s.slots.size()) {
    try {
      if (s.slots.size() == s.slots.capacity()) g_allocations.fetch_add(1, std::memory_order_relaxed);
      s.slots.emplace_back();
    } catch (const std::bad_alloc&) {
      fail(sizeof(Slot) * (s.slots.size() + 1));
    }
  }
  Slot& slot = s.slots[s.depth];
  if (bytes > slot.capacity || !slot.data) {
    if (bytes > SIZE_MAX - kScratchAlignment) fail(bytes);
    // Whole cache lines, at least one (so that even an empty buffer has a valid address).
    const size_t rounded =
        bytes == 0 ? kScratchAlignment : (bytes + kScratchAlignment - 1) / kScratchAlignment * kScratchAlignment;
    void* p = ::operator new(rounded, std::align_val_t(kScratchAlignment), std::nothrow);
    if (!p) fail(rounded);
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    ::operator delete(slot.data, std::align_val_t(kScratchAlignment));
    slot.data = static_cast<std::byte*>(p);
    slot.capacity = rounded;
  }
  ++s.depth;
  return slot.data;
}

void release() noexcept { --t_stack.depth; }

size_t depth() noexcept { return t_stack.depth; }

size_t capacity(size_t i) noexcept { return i < t_stack.slots.size() ? t_stack.slots[i].capacity : 0; }

uint64_t allocations() noexcept { return g_allocations.load(std::memory_order_relaxed); }

}  // namespace moefuse::scratch_detail
