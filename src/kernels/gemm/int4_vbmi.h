// Whether the AVX512-BF16 W4A16 kernel (gemm_u4__avx512bf16.cpp) unpacks its weights with vpermb (AVX512-VBMI): the
// CPU has VBMI and nothing turned it off. Both ways give the same bits (the same bf16 pairs); the switch lets tests
// run the way without VBMI on a CPU that has it.
#pragma once

#include <atomic>

#include "moefuse/cpu.h"

namespace moefuse::gemm::detail {

/// Set by tests only: the kernel runs its path without VBMI (read at each call).
inline std::atomic<bool> g_int4_vbmi_off{false};

inline bool use_int4_vbmi() {
  return cpu_features().avx512_vbmi && !g_int4_vbmi_off.load(std::memory_order_relaxed);
}

}  // namespace moefuse::gemm::detail
