// The one formula source of the rounding stores (round_row.h), included by round_row.cpp (scalar) and the per-ISA
// files round_row__avx2.cpp and round_row__avx512.cpp, each in its own namespace so the definitions do not clash.
// Branch-free forms of to_bf16 and to_f16 (moefuse/dtype.h): every case computed, then selected, so that GCC
// vectorises the loops; the tests (tests/ops/round_row_test.cpp) hold every variant to the scalar functions bit for bit.
#include <cstdint>
#include <cstring>

#include "moefuse/dtype.h"

namespace moefuse::MOEFUSE_ROUND_ROW_NS {

inline uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline void round_bf16_row(int64_t n, const float* __restrict v, bfloat16* __restrict dst) {
  auto* d = reinterpret_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t u = bits_of(v[i]);
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;  // RNE on the dropped 16 bits
    const uint32_t quiet = (u >> 16) | 0x0040u;                          // NaN: quiet, sign and high payload kept
    const bool nan = int32_t(u & 0x7fffffffu) > int32_t(0x7f800000u);
    d[i] = uint16_t(nan ? quiet : rounded);
  }
}

inline void round_f16_row(int64_t n, const float* __restrict v, float16* __restrict dst) {
  auto* d = reinterpret_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t u = bits_of(v[i]);
    const uint32_t sign = (u >> 16) & 0x8000u;
    const uint32_t abs = u & 0x7fffffffu;
    const uint32_t nan = sign | 0x7e00u | ((abs >> 13) & 0x3ffu);
    const uint32_t inf = sign | 0x7c00u;
    // Normal results: rebias the exponent (127 -> 15), round the mantissa to 10 bits (a carry may bump the exponent).
    const uint32_t rebased = abs - (112u << 23);
    const uint32_t normal = sign | ((rebased + 0xfffu + ((rebased >> 13) & 1u)) >> 13);
    // Subnormal results (2^-25 <= |v| < 2^-14): the 24-bit significand shifted right by 126 - exponent (14 .. 24),
    // rounded to nearest even. The shift is clamped to that range so that other lanes compute something defined.
    const int32_t e = int32_t(abs >> 23);
    const int32_t sh = 126 - e < 14 ? 14 : 126 - e > 24 ? 24 : 126 - e;
    const uint32_t man = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t q = man >> sh, rem = man & ((1u << sh) - 1u), half = 1u << (sh - 1);
    const uint32_t sub = sign | (q + uint32_t(rem > half || (rem == half && (q & 1u))));
    const uint32_t r = int32_t(abs) > int32_t(0x7f800000u)  ? nan
                       : int32_t(abs) >= int32_t(0x477ff000u) ? inf
                       : int32_t(abs) >= int32_t(0x38800000u) ? normal
                       : int32_t(abs) >= int32_t(0x33000000u) ? sub
                                                               : sign;
    d[i] = uint16_t(r);
  }
}

}  // namespace moefuse::MOEFUSE_ROUND_ROW_NS
