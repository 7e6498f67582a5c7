// The bf16 contract's step against the hardware of this CPU: base/bf16_dot.h's fma_daz_ftz (what the kernels and the
// scalar reference compute with) and the layer oracle's own statement (oracle/bf16_step.h) must both give, bit for
// bit, what an FMA instruction gives under MXCSR.DAZ|FTZ (base/bf16_dot.h's DenormalsAreZero), and two of them odd
// first what vdpbf16ps gives (AVX512-BF16; skipped with the reason printed on CPUs without it). The lanes: random bit
// patterns (every class: zeros, subnormals, infinities, NaN), products and sums around FLT_MIN, cancellations, and
// the crafted window just below FLT_MIN where x86's tininess after rounding flushes what std::fma rounds up to
// FLT_MIN. NaN results are compared as NaN only (which NaN comes out is not specified).
#include <gtest/gtest.h>

#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/bf16_dot.h"
#include "moefuse/cpu.h"
#include "moefuse/dtype.h"
#include "oracle/bf16_step.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define MOEFUSE_BF16_DOT_TEST_X86 1
#else
#define MOEFUSE_BF16_DOT_TEST_X86 0
#endif

namespace moefuse {
namespace {

uint32_t bits(float v) { return std::bit_cast<uint32_t>(v); }
float from_bits(uint32_t u) { return std::bit_cast<float>(u); }

bool same(float want, float got) { return std::isnan(want) ? std::isnan(got) : bits(want) == bits(got); }

// Operand triples (a, b, c) of one step: b always a bf16 value (the weights), a any float unless `bf16_a` (vdpbf16ps
// reads a as bf16 too), c any float.
struct Lanes {
  std::vector<float> a, b, c;
  void add(float x, float y, float z) { a.push_back(x), b.push_back(y), c.push_back(z); }
  size_t size() const { return a.size(); }
};

class LaneMaker {
 public:
  LaneMaker(uint64_t seed, bool bf16_a) : rng_(seed), a_mask_(bf16_a ? 0xffff0000u : 0xffffffffu) {}

  Lanes make(size_t n) {
    Lanes l;
    while (l.size() < n) {
      switch (pick(6)) {
        case 0: l.add(a_of(rand_bits()), b_of(rand_bits()), from_bits(rand_bits())); break;  // every class
        case 1: {  // product near FLT_MIN, c zero or small (subnormals included)
          const float a = a_of(bits(scaled(-80, -40))), b = b_of(bits(scaled(-90, -40)));
          l.add(a, b, pick(3) == 0 ? 0.0f : scaled(-152, -118));
          break;
        }
        case 2: {  // cancellation: c = -(a * b rounded), nudged a few units
          const float a = a_of(bits(scaled(-75, -45))), b = b_of(bits(scaled(-75, -45)));
          float c = -float(double(a) * double(b));
          for (int i = pick(5); i > 0; --i) c = std::nextafter(c, pick(2) ? INFINITY : -INFINITY);
          l.add(a, b, c);
          break;
        }
        case 3: {  // the window: c = ±FLT_MIN or ±2 FLT_MIN, a * b = ±j * 2^-152 (or * 1.5)
          const float a = (pick(2) ? -1.0f : 1.0f) * float(1 + pick(64)) * 0x1p-26f;
          const float b = (pick(2) ? 1.0f : 1.5f) * 0x1p-126f;
          const float c = (pick(2) ? -1.0f : 1.0f) * (pick(2) ? FLT_MIN : 2 * FLT_MIN);
          l.add(a_of(bits(a)), b, c);
          break;
        }
        case 4: {  // ordinary values: nothing tiny, every bit of the rounding matters
          l.add(a_of(bits(scaled(-3, 3))), b_of(bits(scaled(-3, 3))), scaled(-3, 3));
          break;
        }
        default: {  // subnormal operands with large partners: DAZ decides
          const float sub = from_bits(uint32_t(1 + pick(0x7fffff)) | (pick(2) ? 0x80000000u : 0u));
          const float big = scaled(60, 120);
          if (pick(2)) l.add(a_of(bits(sub)), b_of(bits(big)), pick(2) ? 0.0f : scaled(-10, 10));
          else l.add(a_of(bits(big)), b_of(bits(sub)), pick(2) ? sub : scaled(-10, 10));
          break;
        }
      }
    }
    return l;
  }

 private:
  uint32_t rand_bits() { return uint32_t(rng_()); }
  uint32_t pick(uint32_t n) { return uint32_t(rng_() % n); }
  // ±(1 + random mantissa) * 2^e, e in [lo, hi] (values below 2^-126 come out subnormal).
  float scaled(int lo, int hi) {
    const float m = from_bits(0x3f800000u | (rand_bits() & 0x7fffff));
    return (pick(2) ? -1.0f : 1.0f) * std::ldexp(m, lo + int(pick(uint32_t(hi - lo + 1))));
  }
  // Truncation to a bf16 pattern by a mask, not by `bf16_a ? truncated : u`: GCC 12.2 at -O2 folds that select of
  // two bit_casts into the untruncated value (seen on this project's compiler).
  float a_of(uint32_t u) { return from_bits(u & a_mask_); }
  float b_of(uint32_t u) { return from_bits(u & 0xffff0000u); }

  std::mt19937_64 rng_;
  uint32_t a_mask_;
};

// The first lane where want and got differ, as text, or "".
std::string first_difference(const Lanes& l, const std::vector<float>& want, const std::vector<float>& got) {
  size_t bad = 0, first = want.size();
  for (size_t i = 0; i < want.size(); ++i)
    if (!same(want[i], got[i])) {
      if (first == want.size()) first = i;
      ++bad;
    }
  if (bad == 0) return "";
  char buf[200];
  std::snprintf(buf, sizeof buf, "%zu of %zu lanes differ; first: a %a b %a c %a: want %a got %a", bad, want.size(),
                double(l.a[first]), double(l.b[first]), double(l.c[first]), double(want[first]), double(got[first]));
  return buf;
}

#if MOEFUSE_BF16_DOT_TEST_X86
// r[i] = fma(a[i], b[i], c[i]) by the FMA instruction, under whatever MXCSR the caller set. Not inlined, so that the
// arithmetic stays between the caller's MXCSR writes.
__attribute__((target("fma"), noinline)) void hardware_fma(const Lanes& l, float* r) {
  for (size_t i = 0; i < l.size(); ++i)
    _mm_store_ss(r + i, _mm_fmadd_ss(_mm_load_ss(&l.a[i]), _mm_load_ss(&l.b[i]), _mm_load_ss(&l.c[i])));
}

// r[i] = vdpbf16ps of one lane: c[i] + a[2i+1] b[2i+1] + a[2i] b[2i] as the instruction defines it (a, b bf16 here).
__attribute__((target("avx512f,avx512bf16"), noinline)) void hardware_dpbf16(const std::vector<uint16_t>& a,
                                                                               const std::vector<uint16_t>& b,
                                                                               const std::vector<float>& c, float* r) {
  for (size_t i = 0; i + 16 <= c.size(); i += 16) {
    const __m512i va = _mm512_loadu_si512(a.data() + 2 * i), vb = _mm512_loadu_si512(b.data() + 2 * i);
    _mm512_storeu_ps(r + i, _mm512_dpbf16_ps(_mm512_loadu_ps(c.data() + i), (__m512bh)va, (__m512bh)vb));
  }
}
#endif

constexpr size_t kLanes = size_t(1) << 21;

TEST(Bf16Dot, DenormalsAreZeroSetsAndRestoresMxcsr) {
#if MOEFUSE_BF16_DOT_TEST_X86
  const unsigned before = _mm_getcsr();
  {
    DenormalsAreZero guard;
    EXPECT_EQ(_mm_getcsr(), before | 0x8040u);
  }
  EXPECT_EQ(_mm_getcsr(), before);
#else
  GTEST_SKIP() << "not an x86 CPU: no MXCSR";
#endif
}

TEST(Bf16Dot, BothStatementsEqualAnFmaUnderMxcsrDazFtz) {
#if MOEFUSE_BF16_DOT_TEST_X86
  if (!cpu_features().fma || !cpu_features().os_avx) GTEST_SKIP() << "this CPU (or OS) has no FMA instructions";
  const Lanes l = LaneMaker(1, false).make(kLanes);
  std::vector<float> hw(l.size()), base(l.size()), own(l.size()), plain(l.size());
  {
    DenormalsAreZero guard;
    hardware_fma(l, hw.data());
  }
  for (size_t i = 0; i < l.size(); ++i) {
    base[i] = fma_daz_ftz(l.a[i], l.b[i], l.c[i]);
    own[i] = oracle::fma_daz_ftz(l.a[i], l.b[i], l.c[i]);
    plain[i] = std::fma(l.a[i], l.b[i], l.c[i]);
  }
  EXPECT_EQ(first_difference(l, hw, base), "") << "base/bf16_dot.h";
  EXPECT_EQ(first_difference(l, hw, own), "") << "oracle/bf16_step.h";
  // The comparison can fail: plain std::fma differs from the hardware on the tiny lanes (and the crafted window is
  // among them).
  size_t differ = 0, window = 0;
  for (size_t i = 0; i < l.size(); ++i)
    if (!same(hw[i], plain[i])) {
      ++differ;
      window += std::fabs(plain[i]) == FLT_MIN && hw[i] == 0.0f;
    }
  EXPECT_GT(differ, l.size() / 100);
  EXPECT_GT(window, 0u);
#else
  GTEST_SKIP() << "not an x86 CPU: no MXCSR";
#endif
}

TEST(Bf16Dot, TwoStepsOddFirstEqualVdpbf16ps) {
#if MOEFUSE_BF16_DOT_TEST_X86
  const CpuFeatures& f = cpu_features();
  if (!f.avx512_bf16 || !f.avx512f || !f.os_avx512)
    GTEST_SKIP() << "this CPU (or OS) has no AVX512-BF16: vdpbf16ps is not available to compare with";
  // Lane i of the instruction: (a, b) pairs 2i (even) and 2i + 1 (odd), c one float.
  const Lanes even = LaneMaker(2, true).make(kLanes), odd = LaneMaker(3, true).make(kLanes);
  const size_t n = kLanes;
  std::vector<uint16_t> a(2 * n), b(2 * n);
  std::vector<float> c(odd.c.begin(), odd.c.begin() + ptrdiff_t(n)), hw(n);
  for (size_t i = 0; i < n; ++i) {
    a[2 * i] = uint16_t(bits(even.a[i]) >> 16), b[2 * i] = uint16_t(bits(even.b[i]) >> 16);
    a[2 * i + 1] = uint16_t(bits(odd.a[i]) >> 16), b[2 * i + 1] = uint16_t(bits(odd.b[i]) >> 16);
  }
  hardware_dpbf16(a, b, c, hw.data());
  std::vector<float> base(n), own(n);
  for (size_t i = 0; i < n; ++i) {
    base[i] = fma_daz_ftz(even.a[i], even.b[i], fma_daz_ftz(odd.a[i], odd.b[i], c[i]));
    own[i] = oracle::fma_daz_ftz(even.a[i], even.b[i], oracle::fma_daz_ftz(odd.a[i], odd.b[i], c[i]));
  }
  EXPECT_EQ(first_difference(odd, hw, base), "") << "base/bf16_dot.h (a, b, c of the odd step shown)";
  EXPECT_EQ(first_difference(odd, hw, own), "") << "oracle/bf16_step.h (a, b, c of the odd step shown)";
  // Even first gives other bits on some lanes: the order is seen.
  size_t differ = 0;
  for (size_t i = 0; i < n; ++i)
    differ += !same(hw[i], fma_daz_ftz(odd.a[i], odd.b[i], fma_daz_ftz(even.a[i], even.b[i], c[i])));
  EXPECT_GT(differ, 0u);
#else
  GTEST_SKIP() << "not an x86 CPU: no vdpbf16ps";
#endif
}

TEST(Bf16Dot, HandPickedSteps) {
  for (auto* f : {&fma_daz_ftz, &oracle::fma_daz_ftz}) {
    EXPECT_EQ(bits(f(0x1p-130f, 0x1p100f, 0.0f)), bits(0.0f));          // subnormal a read as zero
    EXPECT_EQ(bits(f(1.0f, 1.0f, 0x1p-140f)), bits(1.0f));              // subnormal c read as zero
    EXPECT_EQ(bits(f(-0x1p-70f, 0x1p-70f, 0.0f)), bits(-0.0f));         // tiny result: a zero of its sign
    EXPECT_EQ(bits(f(0.0f, 0.0f, -0.0f)), bits(0.0f));                  // +0 + -0
    EXPECT_EQ(bits(f(-0.0f, 0.0f, -0.0f)), bits(-0.0f));                // -0 + -0
    EXPECT_EQ(bits(f(1.0f - 0x1p-24f, FLT_MIN, 0.0f)), bits(0.0f));     // FLT_MIN - 2^-150: tiny at 24 bits
    EXPECT_EQ(bits(f(-0x1p-25f, FLT_MIN, FLT_MIN)), bits(FLT_MIN));     // FLT_MIN - 2^-151: tie to FLT_MIN
    EXPECT_EQ(bits(f(1.0f, 1.0f, 0x1p-24f)), bits(1.0f));               // ties to even
    EXPECT_EQ(bits(f(0x1p127f, 4.0f, 0.0f)), bits(INFINITY));           // overflow
    EXPECT_EQ(bits(f(-0x1p127f, 4.0f, 0.0f)), bits(-INFINITY));
    EXPECT_EQ(bits(f(INFINITY, 1.0f, 0x1p-140f)), bits(INFINITY));
    EXPECT_TRUE(std::isnan(f(INFINITY, 0.0f, 1.0f)));
    EXPECT_TRUE(std::isnan(f(INFINITY, 1.0f, -INFINITY)));
    EXPECT_TRUE(std::isnan(f(NAN, 1.0f, 1.0f)));
  }
}

}  // namespace
}  // namespace moefuse
