// The exp-using rows kernels (swiglu in its f32/bf16/f16 rounding variants, dequant_swiglu with and without smooth):
// every variant this machine runs against the scalar one, bitwise, on lengths around its lane counts and on rows
// full of the awkward values: NaNs of both signs and several payloads (in both operands, so that NaN meets NaN),
// infinities, subnormals, exp's overflow/underflow thresholds, and values on bf16/f16 rounding ties.
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <vector>

#include "kernels/registry.h"
#include "kernels/rows/rows.h"
#include "util/random.h"

namespace moefuse {
namespace {

using kernels::KernelInfo;
using kernels::Op;

const int64_t kLengths[] = {0, 1, 2, 7, 8, 9, 15, 16, 17, 23, 31, 32, 33, 47, 48, 49, 97, 257};

std::vector<float> awkward(int64_t n, uint64_t seed) {
  const uint32_t special[] = {
      0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xffa5a5a5u, 0x7fc12345u,  // NaNs: quiet, signalling, payloads
      0x7f800000u, 0xff800000u, 0x00000001u, 0x80000001u, 0x007fffffu,  // infinities, subnormals
      0x00000000u, 0x80000000u, 0x7f7fffffu, 0xff7fffffu,               // zeros, +-FLT_MAX
      0x42b17218u, 0x42b17217u, 0xc2cff1b5u, 0xc2cff1b4u,               // around exp's thresholds (as -v too)
      0xc2b17218u, 0x3f808000u, 0x3f818000u, 0x3f801000u, 0x38800000u,  // bf16 ties, f16 min normal
      0x33000000u, 0x33000001u, 0x477ff000u, 0x477fefffu, 0xc7800000u};  // f16 underflow/overflow edges
  testing::Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    v[size_t(i)] = (i % 3 == 0) ? std::bit_cast<float>(special[(uint64_t(i) / 3 + seed) % (sizeof special / sizeof special[0])])
                                : float(rng.normal()) * (i % 5 == 0 ? 60.0f : 4.0f);
  return v;
}

// Whether a and b agree bit for bit; on the first difference, what differs (index and both bit patterns).
::testing::AssertionResult same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  for (size_t i = 0; i < a.size(); ++i)
    if (std::bit_cast<uint32_t>(a[i]) != std::bit_cast<uint32_t>(b[i]))
      return ::testing::AssertionFailure() << "at " << i << ": 0x" << std::hex << std::bit_cast<uint32_t>(a[i])
                                           << " vs scalar 0x" << std::bit_cast<uint32_t>(b[i]);
  return ::testing::AssertionSuccess();
}

TEST(RowsSwiglu, EveryVariantMatchesScalarOnAwkwardValues) {
  int checked = 0;
  for (const KernelInfo& k : kernels::registry()) {
    if (k.family != std::string("rows") || !kernels::runs_here(k)) continue;
    if (k.op != Op::swiglu && k.op != Op::dequant_swiglu) continue;
    const KernelInfo* s = kernels::find(k.op, k.in, kernels::Dispatch{Isa::scalar, false});
    ASSERT_NE(s, nullptr);
    for (int64_t n : kLengths) {
      std::vector<float> o1(static_cast<size_t>(n), 1.0f), o2(static_cast<size_t>(n), 2.0f);
      if (k.op == Op::swiglu) {
        const std::vector<float> a = awkward(n, 3), b = awkward(n, 7);
        std::get<rows::SwigluFn>(k.fn)(n, a.data(), b.data(), o1.data());
        std::get<rows::SwigluFn>(s->fn)(n, a.data(), b.data(), o2.data());
        EXPECT_TRUE(same_bits(o1, o2)) << k.name << " n = " << n;
      } else {
        testing::Rng rng(uint64_t(n) + 5);
        std::vector<int32_t> g(static_cast<size_t>(n)), u(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) {
          g[size_t(i)] = i % 4 == 0 ? INT32_MIN + int32_t(i) : int32_t(rng.normal() * 3e4);
          u[size_t(i)] = i % 6 == 0 ? INT32_MAX - int32_t(i) : int32_t(rng.normal() * 3e4);
        }
        const std::vector<float> gs = awkward(n, 11), us = awkward(n, 13), sm = awkward(n, 17);
        for (const float* smooth : {static_cast<const float*>(nullptr), sm.data()}) {
          std::get<rows::DequantSwigluFn>(k.fn)(n, g.data(), u.data(), gs.data(), us.data(), 1e-3f, smooth, o1.data());
          std::get<rows::DequantSwigluFn>(s->fn)(n, g.data(), u.data(), gs.data(), us.data(), 1e-3f, smooth, o2.data());
          EXPECT_TRUE(same_bits(o1, o2)) << k.name << " n = " << n << (smooth ? " smooth" : "");
        }
      }
    }
    ++checked;
  }
  EXPECT_GE(checked, 4);  // at least the scalar rows
}

}  // namespace
}  // namespace moefuse
