// moefuse/dtype.h — element types and exact conversions between them.
//
// All floating arithmetic in moefuse is done in fp32 (docs/operators.md, Numerics: fp32 math). bf16 and fp16 values are
// widened exactly and narrowed once, with round-to-nearest-even. NaN stays NaN (sign and leading payload bits kept,
// quiet bit set); infinities stay infinite; fp16 overflow rounds to ±inf as IEEE 754 requires; fp16 subnormals are
// produced and read exactly.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace moefuse {

enum class DType : uint8_t {
  f32,
  f16,
  bf16,
  i8,
  u8,
  i32,
  i64,
  boolean,  // one byte per element, 0 = false, anything else = true
};

/// Bytes per element.
constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f16: return 2;
    case DType::bf16: return 2;
    case DType::i8: return 1;
    case DType::u8: return 1;
    case DType::i32: return 4;
    case DType::i64: return 8;
    case DType::boolean: return 1;
  }
  return 0;
}

/// Short name used in error messages and file formats: "f32", "f16", "bf16", "i8", "u8", "i32", "i64", "bool".
constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
    case DType::i8: return "i8";
    case DType::u8: return "u8";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
    case DType::boolean: return "bool";
  }
  return "?";
}

constexpr bool dtype_is_float(DType t) { return t == DType::f32 || t == DType::f16 || t == DType::bf16; }

/// Storage types for the 16-bit floats: plain bit patterns, so that they can never be mixed up with integers.
struct bfloat16 {
  uint16_t bits = 0;
};
struct float16 {
  uint16_t bits = 0;
};

inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float f32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

/// bf16 -> f32, exact.
inline float to_f32(bfloat16 v) { return f32_from_bits(uint32_t(v.bits) << 16); }

/// f32 -> bf16, round-to-nearest-even; NaN stays NaN (quiet bit forced so a payload in the low bits cannot vanish).
inline bfloat16 to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bfloat16{uint16_t((u >> 16) | 0x0040u)};
  uint32_t rounding_bias = 0x7fffu + ((u >> 16) & 1u);
  return bfloat16{uint16_t((u + rounding_bias) >> 16)};
}

/// float8 e4m3 ("e4m3fn": 1 sign, 4 exponent bits of bias 7, 3 mantissa bits; no infinities; S.1111.111 is NaN,
/// the largest finite is 448) -> f32, exact: normal values 2^(e-7) * (1 + m/8), subnormals m/8 * 2^-6, signed zeros
/// kept, both NaN encodings a quiet NaN of their sign. The element type of FP8 checkpoints (safetensors F8_E4M3);
/// moefuse keeps no tensors of it (DType has no such member), it widens them as it reads them.
inline float f32_from_e4m3(uint8_t v) {
  const uint32_t sign = uint32_t(v & 0x80u) << 24;
  const uint32_t exp = (v >> 3) & 0xfu, man = v & 0x7u;
  if (exp == 0xf && man == 0x7) return f32_from_bits(sign | 0x7fc00000u);
  if (exp != 0) return f32_from_bits(sign | ((exp + 120u) << 23) | (man << 20));
  const float mag = float(man) * f32_from_bits(0x3b000000u);  // m * 2^-9, exact
  return sign ? -mag : mag;
}

/// f16 -> f32, exact (subnormals included).
inline float to_f32(float16 v) {
  uint32_t sign = uint32_t(v.bits & 0x8000u) << 16;
  uint32_t exp = (v.bits >> 10) & 0x1fu;
  uint32_t man = v.bits & 0x3ffu;
  if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | (man << 13));  // inf / NaN (payload kept)
  if (exp != 0) return f32_from_bits(sign | ((exp + 112u) << 23) | (man << 13));
  if (man == 0) return f32_from_bits(sign);
  // Subnormal: value = man * 2^-24, exactly representable in f32.
  float mag = float(man) * f32_from_bits(0x33800000u);  // 2^-24
  return sign ? -mag : mag;
}

/// f32 -> f16, round-to-nearest-even, overflow to ±inf, subnormals produced exactly, NaN kept (quiet).
inline float16 to_f16(float f) {
  uint32_t u = f32_bits(f);
  uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return float16{uint16_t(sign | 0x7e00u | ((abs >> 13) & 0x3ffu))};
  if (abs >= 0x477ff000u) return float16{uint16_t(sign | 0x7c00u)};  // >= 65520 rounds to inf (or is inf)
  if (abs < 0x38800000u) {
    // Result is subnormal or zero: f16 subnormal unit is 2^-24. Shift the full significand right and round RNE.
    if (abs < 0x33000000u) return float16{sign};  // < 2^-25: rounds to zero (2^-25 exactly ties to even = 0)
    uint32_t exp = abs >> 23;                     // 102..112
    uint32_t man = (abs & 0x7fffffu) | 0x800000u;  // 24-bit significand
    uint32_t shift = 126u - exp;                  // value = man * 2^(exp-150); in units of 2^-24: man >> (126-exp)
    uint32_t q = man >> shift;
    uint32_t rem = man & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return float16{uint16_t(sign | q)};
  }
  // Normal: rebias exponent (127 -> 15) and round the 23-bit mantissa to 10 bits, carry may bump the exponent.
  uint32_t rebased = abs - (112u << 23);
  uint32_t rounded = rebased + 0xfffu + ((rebased >> 13) & 1u);
  return float16{uint16_t(sign | (rounded >> 13))};
}

}  // namespace moefuse
