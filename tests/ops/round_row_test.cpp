// The rounding stores (src/ops/round_row.h): every variant this machine runs against the scalar to_bf16 / to_f16
// (moefuse/dtype.h) bit for bit, on every high half of an fp32 pattern with the low halves that decide a rounding
// (0, 1, the tie below and above, all ones), and on random patterns; lengths 0 .. 3 vectors + 1 and a long one, so
// every tail of the vector loops runs. Sign, NaN payloads, infinities, overflow, denormal inputs and results included.
#include <gtest/gtest.h>

#include <bit>
#include <cstring>
#include <string>
#include <vector>

#include "base/elements.h"
#include "kernels/gemm/gemm.h"
#include "ops/round_row.h"
#include "util/random.h"

namespace moefuse {
namespace {

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Every high half, each with the low halves that decide RNE for bf16; for f16 the decisive bits are 13 and below,
// which the random patterns and the f16-specific set below cover.
std::vector<float> patterns() {
  std::vector<float> v;
  for (uint32_t hi = 0; hi < 0x10000u; ++hi)
    for (uint32_t lo : {0x0000u, 0x0001u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu, 0x1000u, 0x0fffu, 0x2000u, 0x3000u})
      v.push_back(from_bits(hi << 16 | lo));
  testing::Rng rng(5);
  for (int i = 0; i < 200000; ++i) v.push_back(from_bits(uint32_t(rng.integer(0, 0xffffffffll))));
  // f16's subnormal window and its edges, every significand pattern near the ties (exponents 101 .. 113).
  for (uint32_t e = 101; e <= 113; ++e)
    for (uint32_t m = 0; m < (1u << 23); m += 4093) {
      v.push_back(from_bits(e << 23 | m));
      v.push_back(from_bits(0x80000000u | e << 23 | m));
    }
  return v;
}

TEST(RoundRow, EveryVariantEqualsTheScalarRule) {
  const std::vector<float> v = patterns();
  std::vector<uint16_t> want_b(v.size()), want_h(v.size());
  for (size_t i = 0; i < v.size(); ++i) want_b[i] = to_bf16(v[i]).bits, want_h[i] = to_f16(v[i]).bits;
  for (Isa isa : gemm::available_isas()) {
    const RoundRowKernels k = select_round_row(isa);
    SCOPED_TRACE(k.name);
    std::vector<bfloat16> b(v.size());
    std::vector<float16> h(v.size());
    k.bf16(int64_t(v.size()), v.data(), b.data());
    k.f16(int64_t(v.size()), v.data(), h.data());
    for (size_t i = 0; i < v.size(); ++i) {
      ASSERT_EQ(b[i].bits, want_b[i]) << std::hex << "bf16 of 0x" << std::bit_cast<uint32_t>(v[i]);
      ASSERT_EQ(h[i].bits, want_h[i]) << std::hex << "f16 of 0x" << std::bit_cast<uint32_t>(v[i]);
    }
  }
}

// Lengths across the vector tails, writing exactly n elements (the sentinel after them stays).
TEST(RoundRow, EveryLengthWritesExactlyItsElements) {
  testing::Rng rng(9);
  for (Isa isa : gemm::available_isas()) {
    const RoundRowKernels k = select_round_row(isa);
    for (int64_t n = 0; n <= 3 * 64 + 1; ++n) {
      std::vector<float> v(size_t(n) + 1);
      for (float& x : v) x = rng.normal() * 1e3f;
      std::vector<uint16_t> out(size_t(n) + 1, 0xabcd), want(size_t(n) + 1, 0xabcd);
      for (DType dt : {DType::bf16, DType::f16}) {
        store_row_with(k, v.data(), n, dt, out.data());
        store_row(v.data(), n, dt, want.data());
        EXPECT_EQ(out, want) << k.name << " n = " << n << " " << dtype_name(dt);
      }
    }
  }
}

}  // namespace
}  // namespace moefuse
