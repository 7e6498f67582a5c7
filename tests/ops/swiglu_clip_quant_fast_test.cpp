// swiglu_clip_quant's vector path (src/ops/swiglu_clip_quant_fast.h) against the scalar rules, every variant this
// machine runs: the steps (bf16 round trip, clip, bf16 and f16 widening) bit for bit against to_bf16 / the reference's
// loops, and the operator (the variant of each forced ISA level) bit for bit against reference::swiglu_clip_quant on
// sweeps: widths 1, 15, 16, 17, 31, 33 and 1031 (every tail of the 8- and 16-lane loops), 0, 1 and many rows with
// empty groups and rows past them, clip factors 0, subnormal, tiny, 1 and above, bf16, f16 and f32, both halves
// activated, and rows holding infinities, NaNs, signed zeros, subnormals and values whose products overflow.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "kernels/gemm/gemm.h"
#include "moefuse/cpu.h"
#include "moefuse/ops.h"
#include "moefuse/threads.h"
#include "ops/swiglu_clip_quant_fast.h"
#include "reference/swiglu_clip_quant.h"
#include "util/isa_cap.h"
#include "util/random.h"

namespace moefuse {
namespace {

using testing::Rng;

using Restore = testing::RestoreIsaAndThreads;

float from_bits(uint32_t u) { return std::bit_cast<float>(u); }

constexpr int64_t kWidths[] = {0, 1, 15, 16, 17, 31, 33, 1031};
const float kInf = std::numeric_limits<float>::infinity();
const float kNaN = std::numeric_limits<float>::quiet_NaN();

// The reference's clip loop (reference/swiglu_clip_quant.cpp), as written there.
void clip_rule(int64_t n, float alpha, float* s) {
  float m = 0.0f;
  for (int64_t j = 0; j < n; ++j) m = std::fmax(m, std::fabs(s[j]));
  const float t = alpha * m;
  for (int64_t j = 0; j < n; ++j) {
    float v = s[j];
    if (v > t) v = t;
    if (v < -t) v = -t;
    s[j] = v;
  }
}

// x with a NaN quieted (payload and sign kept): the clip's input is always an arithmetic result, never a signaling
// NaN, and on one the reference's fmax (the C library's) would return a NaN, which it does not otherwise.
float quiet(float x) { return std::isnan(x) ? from_bits(std::bit_cast<uint32_t>(x) | 0x00400000u) : x; }

// A row of fp32 values: random magnitudes over the whole exponent range, or plain values, with specials sprinkled in
// (NaNs quiet, as the clip gets them).
std::vector<float> special_row(Rng& rng, int64_t n, int kind) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) {
    switch (kind) {
      case 0: x = rng.uniform(-10.0f, 10.0f); break;
      case 1: x = quiet(from_bits(uint32_t(rng.integer(0, 0xffffffffll)))); break;  // any pattern, NaNs included
      default: {
        const float specials[] = {kInf, -kInf, kNaN, -kNaN, 0.0f, -0.0f, from_bits(1), from_bits(0x807fffffu),
                                  std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
                                  from_bits(0x7fc00001u), from_bits(0xffffffffu)};
        x = rng.coin(0.2) ? specials[rng.integer(0, 11)] : rng.uniform(-3.0f, 3.0f);
      }
    }
  }
  return v;
}

TEST(SwigluClipQuantFast, StepsEqualTheScalarRulesInEveryVariant) {
  const float alphas[] = {0.0f, from_bits(1), 1e-30f, 0.37f, 1.0f, 1.5f, 1e30f, kInf};
  for (Isa isa : gemm::available_isas()) {
    const SwigluClipKernels k = select_swiglu_clip(isa);
    SCOPED_TRACE(k.name);
    Rng rng(7 + int(isa));
    for (int64_t n : kWidths)
      for (int kind = 0; kind < 3; ++kind)
        for (float alpha : alphas) {
          const std::vector<float> v = special_row(rng, n, kind);
          std::vector<float> want = v, got = v;
          clip_rule(n, alpha, want.data());
          k.clip(n, alpha, got.data());
          for (int64_t j = 0; j < n; ++j)
            ASSERT_EQ(std::bit_cast<uint32_t>(got[size_t(j)]), std::bit_cast<uint32_t>(want[size_t(j)]))
                << "clip n " << n << " kind " << kind << " alpha " << alpha << " at " << j;
        }
    // The bf16 round trip on every high half with the low halves that decide the rounding, and random patterns.
    std::vector<float> v;
    for (uint32_t hi = 0; hi < 0x10000u; ++hi)
      for (uint32_t lo : {0x0000u, 0x0001u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu}) v.push_back(from_bits(hi << 16 | lo));
    for (int i = 0; i < 100000; ++i) v.push_back(from_bits(uint32_t(rng.integer(0, 0xffffffffll))));
    for (int64_t n : kWidths) {  // tails
      std::vector<float> got(v.begin() + 1000, v.begin() + 1000 + n);
      k.round_bf16(n, got.data());
      for (int64_t j = 0; j < n; ++j)
        ASSERT_EQ(std::bit_cast<uint32_t>(got[size_t(j)]), std::bit_cast<uint32_t>(to_f32(to_bf16(v[size_t(1000 + j)]))));
    }
    std::vector<float> got = v;
    k.round_bf16(int64_t(got.size()), got.data());
    std::vector<bfloat16> b(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(to_f32(to_bf16(v[i]))))
          << std::hex << "round trip of 0x" << std::bit_cast<uint32_t>(v[i]);
      b[i] = bfloat16{uint16_t(i * 40503u)};
    }
    std::vector<float> w(v.size());
    k.widen_bf16(int64_t(b.size()), b.data(), w.data());
    for (size_t i = 0; i < b.size(); ++i) ASSERT_EQ(std::bit_cast<uint32_t>(w[i]), std::bit_cast<uint32_t>(to_f32(b[i])));
    // f16: every pattern, twice over (so the vector loop's tail holds some), and the short lengths.
    std::vector<float16> f(2 * 0x10000 + 5);
    for (size_t i = 0; i < f.size(); ++i) f[i] = float16{uint16_t(i)};
    std::vector<float> wf(f.size());
    k.widen_f16(int64_t(f.size()), f.data(), wf.data());
    for (size_t i = 0; i < f.size(); ++i)
      ASSERT_EQ(std::bit_cast<uint32_t>(wf[i]), std::bit_cast<uint32_t>(to_f32(f[i]))) << std::hex << "f16 0x" << i;
    for (int64_t n : kWidths) {
      std::vector<float> t(static_cast<size_t>(n) + 1, 7.0f);
      k.widen_f16(n, f.data() + 0x7bf0, t.data());
      for (int64_t j = 0; j < n; ++j)
        ASSERT_EQ(std::bit_cast<uint32_t>(t[size_t(j)]), std::bit_cast<uint32_t>(to_f32(f[size_t(0x7bf0 + j)])));
      ASSERT_EQ(t[size_t(n)], 7.0f);  // nothing written past n
    }
  }
}

// Writes fp32 value v into element i of a contiguous float tensor of dtype dt (rounded as .to(dt) would).
void put(Tensor& x, int64_t i, float v) {
  switch (x.dtype()) {
    case DType::f32: x.data_as<float>()[i] = v; break;
    case DType::bf16: x.data_as<bfloat16>()[i] = to_bf16(v); break;
    default: x.data_as<float16>()[i] = to_f16(v); break;
  }
}

// x [T, 2h] of dtype dt: kind 0 plain values, 1 extreme magnitudes (products overflow to inf, or underflow),
// 2 plain values with specials sprinkled over some rows.
Tensor make_x(Rng& rng, DType dt, int64_t T, int64_t h, int kind) {
  Tensor x = rng.uniform_tensor(dt, {T, 2 * h}, -12.0f, 12.0f);
  if (kind == 0) return x;
  const float big = dt == DType::f16 ? 60000.0f : 3e38f;
  for (int64_t i = 0; i < T * 2 * h; ++i) {
    if (kind == 1) {
      const int c = int(rng.integer(0, 5));
      const float v = c == 0 ? big : c == 1 ? -big : c == 2 ? 1e-40f : c == 3 ? -120.0f : rng.uniform(-1e4f, 1e4f);
      put(x, i, v);
    } else if ((i / (2 * h)) % 3 != 0 && rng.coin(0.05)) {
      const float specials[] = {kInf, -kInf, kNaN, -0.0f, 0.0f, 1e-40f, -1e-40f};
      put(x, i, specials[rng.integer(0, 6)]);
    }
  }
  return x;
}

void expect_bitwise(const SwigluClipQuantResult& want, const SwigluClipQuantResult& got, const std::string& what) {
  ASSERT_EQ(std::memcmp(want.y.data(), got.y.data(), size_t(want.y.numel())), 0) << what << ": y";
  ASSERT_EQ(std::memcmp(want.scale.data(), got.scale.data(), size_t(want.scale.numel()) * 4), 0) << what << ": scale";
}

TEST(SwigluClipQuantFast, OperatorEqualsTheReferenceAtEveryIsaLevel) {
  Restore restore;
  const float alphas[] = {0.0f, from_bits(1), 1e-30f, 0.6f, 1.0f, 2.5f};
  int cases = 0;
  for (Isa isa : gemm::available_isas()) {
    set_max_isa(isa);
    SCOPED_TRACE(std::string(isa_name(isa)));
    Rng rng(40 + int(isa));
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      for (int64_t h : kWidths)
        for (int64_t T : {0, 1, 37})
          for (DType dt : {DType::bf16, DType::f16, DType::f32})
            for (int kind = 0; kind < 3; ++kind) {
              Tensor x = make_x(rng, dt, T, h, kind);
              // Groups: random counts (some empty) covering a prefix of the rows, each with a clip factor.
              const int64_t G = rng.integer(1, 5);
              Tensor counts = Tensor::zeros(DType::i64, {G}), alpha = Tensor::empty(DType::f32, {G});
              int64_t left = T > 0 ? rng.integer(T / 2, T) : 0;
              for (int64_t g = 0; g < G; ++g) {
                const int64_t c = g + 1 == G ? left : rng.integer(0, left);
                counts.data_as<int64_t>()[g] = c, left -= c;
                alpha.data_as<float>()[g] = alphas[rng.integer(0, 5)];
              }
              for (bool act_left : {false, true}) {
                SwigluClipQuantOptions o;
                o.activate_left = act_left;
                SwigluClipQuantResult want{Tensor::empty(DType::i8, {T, h}), Tensor::empty(DType::f32, {T})};
                reference::swiglu_clip_quant(x, counts, alpha, act_left, want.y, want.scale);
                SwigluClipQuantResult got = swiglu_clip_quant(x, counts, alpha, o);
                expect_bitwise(want, got,
                               "h " + std::to_string(h) + " T " + std::to_string(T) + " " +
                                   std::string(dtype_name(dt)) + " kind " + std::to_string(kind) + " left " +
                                   std::to_string(act_left) + " threads " + std::to_string(threads));
                ++cases;
              }
            }
    }
  }
  EXPECT_GT(cases, 0);
}

TEST(SwigluClipQuantFast, EveryClipFactorOnOneRowOfSpecials) {
  // One row, one group, each clip factor: the row with an infinity (t = inf, or NaN for alpha 0: nothing clipped),
  // with a NaN (scale NaN, q 0) and with both.
  Restore restore;
  for (Isa isa : gemm::available_isas()) {
    set_max_isa(isa);
    SCOPED_TRACE(std::string(isa_name(isa)));
    for (float alpha : {0.0f, from_bits(1), 1e-30f, 1.0f, 3.0f})
      for (int which = 0; which < 4; ++which) {
        Tensor x = Tensor::from_values<float>({1, 66}, std::vector<float>(66, 1.5f)).to(DType::bf16);
        for (int64_t j = 0; j < 66; ++j) put(x, j, 0.25f * float(j % 13) - 1.0f);
        if (which & 1) put(x, 40, kInf);  // an activated (right half) infinity
        if (which & 2) put(x, 7, kNaN);
        Tensor counts = Tensor::from_values<int64_t>({1}, {int64_t(1)});
        Tensor a = Tensor::from_values<float>({1}, {alpha});
        SwigluClipQuantResult want{Tensor::empty(DType::i8, {1, 33}), Tensor::empty(DType::f32, {1})};
        reference::swiglu_clip_quant(x, counts, a, false, want.y, want.scale);
        expect_bitwise(want, swiglu_clip_quant(x, counts, a), "alpha " + std::to_string(alpha) + " which " +
                                                                  std::to_string(which));
      }
  }
}

TEST(SwigluClipQuantFast, DeclinesRowsThatAreNotContiguous) {
  Rng rng(3);
  Tensor x = rng.uniform_tensor(DType::bf16, {8, 6}, -4.0f, 4.0f).transpose(0, 1);  // [6, 8], column stride 6
  EXPECT_NE(swiglu_clip_quant_fast_declines(x), nullptr);
  EXPECT_EQ(swiglu_clip_quant_fast_declines(x.clone()), nullptr);
  // The operator then runs the reference: the same bits as on the contiguous copy.
  Tensor counts = Tensor::from_values<int64_t>({2}, {int64_t(2), int64_t(3)});
  Tensor a = Tensor::from_values<float>({2}, {0.5f, 1.0f});
  expect_bitwise(swiglu_clip_quant(x.clone(), counts, a), swiglu_clip_quant(x, counts, a), "strided");
}

}  // namespace
}  // namespace moefuse
