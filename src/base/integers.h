// Integer helpers for block and tile arithmetic (non-negative a, positive b).
#pragma once

#include <cstdint>

namespace moefuse {

/// a / b rounded up.
constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
/// a rounded up to a multiple of b.
constexpr int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

}  // namespace moefuse
