// The AVX512-BF16 (vdpbf16ps) kernel for bf16 weights (src/kernels/gemm/gemm_bf16__avx512bf16.cpp) against the
// scalar kernel of the same contract, bitwise: every M of a decode/prefill sweep, odd/even/prime K (the zero pair of
// an odd K), N cut inside panels, column ranges starting mid-matrix, bf16 denormals, tiny products, inf and NaN; A
// holding values that are not bf16 values (the call then runs the AVX-512 FMA kernel); and the selection: the
// self-test, the ISA cap. Skipped, with the reason, where the CPU lacks AVX512-BF16.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "kernels/gemm/gemm.h"
#include "kernels/gemm/variants.h"
#include "kernels/registry.h"
#include "moefuse/cpu.h"
#include "util/random.h"

namespace moefuse {
namespace {

using gemm::kGemmNR;
using gemm::PackedWeights;
using testing::Rng;

constexpr const char* kDot = "gemm_bf16w_f32_6x64__avx512bf16";

gemm::GemmFloatFn row_fn(const char* name) {
  for (const kernels::KernelInfo& k : kernels::registry())
    if (std::string(k.name) == name) return std::get<gemm::GemmFloatFn>(k.fn);
  return nullptr;
}

// The dot kernel's row when this machine runs it; nullptr (and the reason in `why`) when not.
gemm::GemmFloatFn dot_kernel(std::string& why) {
  for (const kernels::KernelInfo& k : kernels::registry())
    if (std::string(k.name) == kDot) {
      if (kernels::runs_here(k)) return std::get<gemm::GemmFloatFn>(k.fn);
      why = bf16_dot_unusable_reason(detected_isa());
      return nullptr;
    }
  why = "no registry row";
  return nullptr;
}

int64_t kblock_ = 0;  // the block size gemm_bf16w_f32_kblocks__avx512bf16 gets in KBlocksCarriedThroughC...

#define REQUIRE_DOT_KERNEL(fn)                                           \
  std::string why;                                                       \
  const gemm::GemmFloatFn fn = dot_kernel(why);                          \
  if (!fn) GTEST_SKIP() << kDot << " does not run on this machine: " << why

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// What a bf16 tensor's values look like to the kernels, with some special values mixed in: `special` of the values
// (in 1/1000) are drawn from bf16 denormals, values whose products with each other are tiny (about 2^-140, below
// FLT_MIN, or near it), zeros of both signs, and (with `non_finite`) infinities and NaN.
uint16_t random_bf16(Rng& rng, int special, bool non_finite) {
  if (rng.integer(0, 999) < special) {
    switch (rng.integer(0, non_finite ? 6 : 4)) {
      case 0: return uint16_t(rng.integer(1, 0x7f) | (rng.coin() ? 0x8000 : 0));  // denormal
      case 1: return uint16_t(((127 - 70) << 7) | rng.integer(0, 0x7f) | (rng.coin() ? 0x8000 : 0));  // ~2^-70
      case 2: return uint16_t(((127 - 63) << 7) | rng.integer(0, 0x7f) | (rng.coin() ? 0x8000 : 0));  // ~2^-63
      case 3: return rng.coin() ? 0x8000 : 0x0000;
      case 4: return uint16_t((1 << 7) | rng.integer(0, 0x7f));  // FLT_MIN-sized
      case 5: return rng.coin() ? 0x7f80 : 0xff80;                // +-inf
      default: return 0x7fc0;                                     // NaN
    }
  }
  return to_bf16(rng.normal()).bits;
}

struct Case {
  int64_t M, K, N;
  int special = 0;          // in 1/1000 of the values of A and B
  bool non_finite = false;  // infinities and NaN among the special values
};

// A (M rows, lda = K + 5, bf16 values unless noted) and B (K x N bf16, packed).
struct Inputs {
  int64_t lda = 0;
  std::vector<float> a;
  PackedWeights w;
};

Inputs make_inputs(Rng& rng, const Case& c) {
  Inputs in;
  in.lda = c.K + 5;
  // Padding between rows is a NaN that is not a bf16 value: a read past K would show (NaN out, or the fallback).
  in.a.assign(size_t(c.M * in.lda), from_bits(0x7fc00001u));
  for (int64_t m = 0; m < c.M; ++m)
    for (int64_t k = 0; k < c.K; ++k)
      in.a[size_t(m * in.lda + k)] = from_bits(uint32_t(random_bf16(rng, c.special, c.non_finite)) << 16);
  std::vector<bfloat16> b(size_t(c.K * c.N));
  for (bfloat16& v : b) v.bits = random_bf16(rng, c.special, c.non_finite);
  in.w = gemm::pack_weights_f(b.data(), DType::bf16, c.K, c.N, c.N, 1);
  return in;
}

// C[0..M) x [n0, n1) by fn into ldc = n1 - n0 + 3 columns of a sentinel; checks the pad is untouched.
std::vector<float> run(gemm::GemmFloatFn fn, const Inputs& in, int64_t M, int64_t n0, int64_t n1) {
  const int64_t ldc = n1 - n0 + 3;
  std::vector<float> c(size_t(M * ldc), -12345.0f);
  fn(M, in.w.k(), n0, n1, in.a.data(), in.lda, in.w.data(), c.data(), ldc);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = n1 - n0; n < ldc; ++n) EXPECT_EQ(c[size_t(m * ldc + n)], -12345.0f) << "pad written";
  return c;
}

// Bitwise, except that a NaN matches any NaN (the contract leaves the payload open).
::testing::AssertionResult same(const std::vector<float>& want, const std::vector<float>& got) {
  for (size_t i = 0; i < want.size(); ++i)
    if (!(std::isnan(want[i]) && std::isnan(got[i])) && bits(want[i]) != bits(got[i]))
      return ::testing::AssertionFailure() << "element " << i << ": want 0x" << std::hex << bits(want[i]) << " ("
                                           << want[i] << "), got 0x" << bits(got[i]) << " (" << got[i] << ")";
  return ::testing::AssertionSuccess();
}

const int64_t kKs[] = {1, 2, 3, 15, 16, 17, 31, 33, 127, 257};
const int64_t kNs[] = {1, 31, 33, 64, 95, 100, 130};

std::vector<int64_t> sweep_ms() {
  std::vector<int64_t> ms;
  for (int64_t m = 1; m <= 25; ++m) ms.push_back(m);
  ms.push_back(64);
  ms.push_back(65);
  return ms;
}

TEST(GemmBf16Dot, EqualsTheScalarKernelBitwiseOnEveryMAndK) {
  REQUIRE_DOT_KERNEL(dot);
  const gemm::GemmFloatFn scalar = row_fn("gemm_bf16w_f32_1x32__scalar");
  ASSERT_NE(scalar, nullptr);
  Rng rng(2026);
  int i = 0;
  for (int64_t M : sweep_ms())
    for (int64_t K : kKs) {
      const int64_t N = kNs[size_t(i++) % std::size(kNs)];
      SCOPED_TRACE("M=" + std::to_string(M) + " K=" + std::to_string(K) + " N=" + std::to_string(N));
      const Inputs in = make_inputs(rng, Case{M, K, N});
      ASSERT_TRUE(same(run(scalar, in, M, 0, N), run(dot, in, M, 0, N)));
    }
}

TEST(GemmBf16Dot, EqualsTheScalarKernelWithDenormalsTinyProductsInfAndNan) {
  REQUIRE_DOT_KERNEL(dot);
  const gemm::GemmFloatFn scalar = row_fn("gemm_bf16w_f32_1x32__scalar");
  Rng rng(7);
  for (bool non_finite : {false, true})
    for (int special : {200, 1000})
      for (int64_t M : {1, 5, 6, 7, 13, 64})
        for (int64_t K : {1, 2, 17, 33, 257}) {
          const int64_t N = 95;
          SCOPED_TRACE("M=" + std::to_string(M) + " K=" + std::to_string(K) + " special=" + std::to_string(special) +
                       (non_finite ? " with inf/NaN" : ""));
          const Inputs in = make_inputs(rng, Case{M, K, N, special, non_finite});
          ASSERT_TRUE(same(run(scalar, in, M, 0, N), run(dot, in, M, 0, N)));
        }
}

TEST(GemmBf16Dot, ColumnRangesStartingMidMatrix) {
  REQUIRE_DOT_KERNEL(dot);
  const gemm::GemmFloatFn scalar = row_fn("gemm_bf16w_f32_1x32__scalar");
  Rng rng(11);
  const Inputs in = make_inputs(rng, Case{9, 45, 161, 50});
  for (int64_t n0 : {int64_t(0), int64_t(32), int64_t(64), int64_t(128)})
    for (int64_t n1 : {n0 + 1, n0 + 32, n0 + 33, int64_t(161)}) {
      if (n1 > 161 || n1 <= n0) continue;
      SCOPED_TRACE("n0=" + std::to_string(n0) + " n1=" + std::to_string(n1));
      EXPECT_TRUE(same(run(scalar, in, 9, n0, n1), run(dot, in, 9, n0, n1)));
    }
}

// The tile with its chains carried through C from one K block to the next (what a kernel forming bf16 weights per
// block would run): bitwise the scalar kernel for blocks of 2 .. 128 rows, K not a multiple of the block.
TEST(GemmBf16Dot, KBlocksCarriedThroughCEqualTheScalarKernel) {
  REQUIRE_DOT_KERNEL(dot);
  const gemm::GemmFloatFn scalar = row_fn("gemm_bf16w_f32_1x32__scalar");
  Rng rng(13);
  for (int64_t kblock : {2, 34, 128})
    for (int64_t M : {1, 6, 7, 13, 64})
      for (int64_t K : {0, 1, 33, 127, 257, 300}) {
        const int64_t N = 95;
        SCOPED_TRACE("kblock=" + std::to_string(kblock) + " M=" + std::to_string(M) + " K=" + std::to_string(K));
        const Inputs in = make_inputs(rng, Case{M, K, N, 100, true});
        const gemm::GemmFloatFn blocks = [](int64_t M, int64_t K, int64_t n0, int64_t n1, const float* a,
                                            int64_t lda, const void* b, float* c, int64_t ldc) {
          EXPECT_TRUE(gemm::detail::gemm_bf16w_f32_kblocks__avx512bf16(M, K, n0, n1, a, lda, b, c, ldc, kblock_));
        };
        kblock_ = kblock;
        ASSERT_TRUE(same(run(scalar, in, M, 0, N), run(blocks, in, M, 0, N)));
        ASSERT_TRUE(same(run(scalar, in, M, 32, 64), run(blocks, in, M, 32, 64)));
      }
}

// A value of A that is not a bf16 value (low 16 bits set) anywhere in the rows used sends the call to the AVX-512
// FMA kernel: the result is that kernel's, bitwise (the same contract; tests/kernels/gemm_test.cpp checks that
// kernel against the scalar one). Positions: the first value, the last of a row, the last of the last row, a middle
// value past the first 32 columns of k.
TEST(GemmBf16Dot, AValuesThatAreNotBf16RunTheFmaKernel) {
  REQUIRE_DOT_KERNEL(dot);
  const gemm::GemmFloatFn fma = row_fn("gemm_bf16w_f32_6x64__avx512");
  ASSERT_NE(fma, nullptr);
  Rng rng(5);
  for (int64_t M : {1, 6, 7, 13, 64})
    for (int64_t K : {1, 2, 3, 33, 257}) {
      const int64_t lda = K + 5;  // make_inputs' lda
      for (int64_t at : {int64_t(0), K - 1, (M - 1) * lda + K - 1, (M / 2) * lda + K / 2}) {
        SCOPED_TRACE("M=" + std::to_string(M) + " K=" + std::to_string(K) + " at=" + std::to_string(at));
        Inputs one = make_inputs(rng, Case{M, K, 95, 100});
        one.a[size_t(at)] = from_bits(bits(one.a[size_t(at)]) | 0x1234u);
        ASSERT_TRUE(same(run(fma, one, M, 0, 95), run(dot, one, M, 0, 95)));
        // Uniform fp32 values (rarely bf16 values) in every row.
        for (float& v : one.a) v = rng.uniform(-1.0f, 1.0f);
        ASSERT_TRUE(same(run(fma, one, M, 0, 95), run(dot, one, M, 0, 95)));
      }
    }
}

TEST(GemmBf16Dot, SelfTestPassesAndTheTablePicksItOnlyAtItsLevel) {
  REQUIRE_DOT_KERNEL(dot);
  EXPECT_STREQ(bf16_dot_unusable_reason(Isa::avx512bf16), "");
  // Where the CPU family (or MOEFUSE_BF16_DOT=off) prefers the FMA kernels, the level's bf16 weights take those.
  const char* picked = prefer_bf16_dot() ? kDot : "gemm_bf16w_f32_6x64__avx512";
  EXPECT_EQ(*bf16_dot_unused_reason(Isa::avx512bf16) == '\0', prefer_bf16_dot())
      << bf16_dot_unused_reason(Isa::avx512bf16);
  EXPECT_STREQ(gemm::select_gemm_kernels(Isa::avx512bf16, true).bf16w.name, picked);
  EXPECT_STREQ(gemm::select_gemm_kernels(Isa::avx512bf16, false).bf16w.name, picked);
  EXPECT_STREQ(gemm::select_gemm_kernels(Isa::avx512, true).bf16w.name, "gemm_bf16w_f32_6x64__avx512");
  EXPECT_NE(std::string(bf16_dot_unused_reason(Isa::avx512)), "");
  // The other dtypes keep the AVX-512 kernels at the bf16 level.
  EXPECT_STREQ(gemm::select_gemm_kernels(Isa::avx512bf16, false).f32w.name, "gemm_f32w_f32_6x64__avx512");
  EXPECT_STREQ(gemm::select_gemm_kernels(Isa::avx512bf16, true).s8.name, "gemm_s8_s32_6x64__avx512vnni");
  // A cap below the level takes the kernel away (MOEFUSE_MAX_ISA may cap lower still: then another level's kernel).
  set_max_isa(Isa::avx512);
  EXPECT_STRNE(gemm::select_gemm_kernels().bf16w.name, kDot);
  if (active_isa() == Isa::avx512)
    EXPECT_STREQ(gemm::select_gemm_kernels().bf16w.name, "gemm_bf16w_f32_6x64__avx512");
  set_max_isa(kTopIsa);
  if (active_isa() == Isa::avx512bf16) {
    EXPECT_STREQ(gemm::select_gemm_kernels().bf16w.name, picked);
  }
}

// Where the dot kernel does not run, the reason says why and the table never picks it.
TEST(GemmBf16Dot, NotPickedWhereItDoesNotRun) {
  for (Isa isa : gemm::available_isas()) {
    const bool picked = std::string(gemm::select_gemm_kernels(isa, false).bf16w.name) == kDot;
    EXPECT_EQ(picked, *bf16_dot_unused_reason(isa) == '\0') << isa_name(isa);
  }
  EXPECT_NE(std::string(bf16_dot_unused_reason(Isa::scalar)), "");
}

}  // namespace
}  // namespace moefuse
