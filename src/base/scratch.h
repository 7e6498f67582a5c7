// Per-thread reusable scratch buffers, so that steady-state loops make no heap allocation.
//
// The layer's graph-mode forward must not allocate (docs/layer.md §2): it calls the ops' `_out` forms again and again
// with the same (or smaller) shapes, and the work arrays those need (a row of fp32 values, an index array to sort,
// a widened weight tile) must not come from the heap each time. A `Scratch<T> buf(n)` instead borrows the next slot
// of a thread-local stack of byte buffers:
//
//   - slots are taken by depth: the first live Scratch of a thread gets slot 0, a second one alive at the same time
//     slot 1, and so on; destroying a Scratch gives its slot back (strictly in reverse order, as C++ destroys
//     locals and members). The same sequence of calls therefore reuses the same slots.
//   - a slot grows (one allocation, the old block freed) only when a request is larger than its capacity; it never
//     shrinks. After a first call has sized the slots, later calls with the same or smaller requests allocate
//     nothing. The blocks live until the thread ends.
//   - every buffer is 64-byte aligned (a cache line, and the widest vector load a kernel issues), so kernels may
//     use aligned loads on it.
//
// Contents are uninitialised unless a fill value is given, and hold stale data of earlier users otherwise. Each
// thread has its own stack, so Scratch is safe to use in thread-pool tasks; a Scratch must not be handed to another
// thread. It suits trivial element types only (float, integers, pointers).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <type_traits>

namespace moefuse {

inline constexpr size_t kScratchAlignment = 64;

namespace scratch_detail {
/// Takes the next slot of this thread's stack with at least `bytes` bytes (64-byte aligned, never null) and returns
/// its memory. Throws ResourceError when the memory cannot be allocated (the stack is then unchanged).
std::byte* acquire(size_t bytes);
/// Gives back the most recently taken slot.
void release() noexcept;
/// Number of slots currently taken by this thread (for tests).
size_t depth() noexcept;
/// Capacity in bytes of this thread's slot `i` (0 for a slot never used; for tests).
size_t capacity(size_t i) noexcept;
}  // namespace scratch_detail

/// `n` elements of T from this thread's scratch stack, for the lifetime of the object (see above).
template <class T>
class Scratch {
  static_assert(std::is_trivially_default_constructible_v<T> && std::is_trivially_destructible_v<T>,
                "Scratch holds trivial element types only");
  static_assert(alignof(T) <= kScratchAlignment);

 public:
  /// n uninitialised elements (n >= 0).
  explicit Scratch(int64_t n) : data_(reinterpret_cast<T*>(scratch_detail::acquire(bytes_for(n)))), size_(n) {
    std::uninitialized_default_construct_n(data_, size_t(n));  // begins the elements' lifetimes; no code
  }
  /// n elements, each set to `value`.
  Scratch(int64_t n, T value) : data_(reinterpret_cast<T*>(scratch_detail::acquire(bytes_for(n)))), size_(n) {
    std::uninitialized_fill_n(data_, size_t(n), value);
  }
  ~Scratch() { scratch_detail::release(); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  T* data() { return data_; }
  const T* data() const { return data_; }
  int64_t size() const { return size_; }
  T& operator[](int64_t i) { return data_[i]; }
  const T& operator[](int64_t i) const { return data_[i]; }
  T* begin() { return data_; }
  T* end() { return data_ + size_; }
  const T* begin() const { return data_; }
  const T* end() const { return data_ + size_; }

 private:
  // n * sizeof(T), or SIZE_MAX (which acquire() reports as too large) when n is negative or the product overflows.
  static size_t bytes_for(int64_t n) {
    return n < 0 || uint64_t(n) > SIZE_MAX / sizeof(T) ? SIZE_MAX : size_t(n) * sizeof(T);
  }

  T* data_;
  int64_t size_;
};

}  // namespace moefuse
