// The int4 group-wise GEMM kernels (src/kernels/gemm/gemm.h, "int4 group-wise"): packing, and every registry row this
// machine runs against an oracle written here from the contract — per group the sums Σ a q and Σ a in pairs of k
// (odd first, each step the layer oracle's own fma_daz_ftz), then acc = fma_daz_ftz(s, fma_daz_ftz(-z, Σ a, Σ a q),
// acc) — bitwise, over M, N and K edges (each variant's row blocks and panel groups) and every group size, on random
// and on extreme values, with A of fp32 values and of bf16 values (the AVX512-BF16 rows' own path; one value that is
// not a bf16 value sends them to the AVX-512 FMA kernel), with data that tells the contract from its near misses;
// how close that is to GPTQ's "dequantise, then the fp32 product"; and the W4A8 kernels (int8 rows) against the
// contract's integer definition, written as plain loops.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "base/bf16_dot.h"
#include "kernels/gemm/gemm.h"
#include "kernels/gemm/int4_vbmi.h"
#include "kernels/registry.h"
#include "moefuse/cpu.h"
#include "moefuse/dtype.h"
#include "moefuse/error.h"
#include "oracle/bf16_step.h"
#include "util/errors.h"
#include "util/gemm_sweep.h"
#include "util/random.h"
#include "util/int4_matrix.h"

namespace moefuse {
namespace {

using gemm::kGemmNR;
using testing::Rng;

using testing::Int4Matrix;

// Scales are fp16 values (as GPTQ stores them), so every product is exact; some are 0 and some negative.
Int4Matrix random_int4(Rng& rng, int64_t K, int64_t N, int64_t G) {
  Int4Matrix m;
  m.K = K, m.N = N, m.G = G;
  m.q.resize(size_t(K * N));
  for (auto& v : m.q) v = uint8_t(rng.integer(0, 15));
  m.zero.resize(size_t(K / G * N));
  m.scale.resize(m.zero.size());
  for (size_t i = 0; i < m.zero.size(); ++i) {
    m.zero[i] = uint8_t(rng.integer(0, 15));
    m.scale[i] = rng.coin(0.05) ? 0.0f : to_f32(to_f16(rng.uniform(-0.05f, 0.1f)));
  }
  return m;
}

// The extremes: q and z at 0 and 15 (|q - z| = 15 both ways, and q = z), scales with full fp32 mantissas (the
// product rounds), huge, subnormal, zero of both signs and negative.
Int4Matrix extreme_int4(Rng& rng, int64_t K, int64_t N, int64_t G) {
  Int4Matrix m = random_int4(rng, K, N, G);
  for (auto& v : m.q) v = rng.coin() ? uint8_t(15) : uint8_t(rng.coin(0.3) ? 0 : rng.integer(0, 15));
  const float scales[] = {1e30f, -3e29f, 1.1754942e-38f, 1e-40f, -0.0f, 0.0f, 0.7071068f, -1.3333334f};
  for (size_t i = 0; i < m.zero.size(); ++i) {
    m.zero[i] = i % 3 == 0 ? 0 : i % 3 == 1 ? 15 : uint8_t(rng.integer(0, 15));
    m.scale[i] = rng.coin(0.5) ? scales[rng.integer(0, 7)] : rng.uniform(-1.0f, 1.0f);
  }
  return m;
}

using testing::gemm_variants;

kernels::Op u4_op(int64_t G, bool w4a8) {
  using kernels::Op;
  if (w4a8) return G == 32 ? Op::gemm_u4s8_g32 : G == 64 ? Op::gemm_u4s8_g64 : Op::gemm_u4s8_g128;
  return G == 32 ? Op::gemm_u4_g32 : G == 64 ? Op::gemm_u4_g64 : Op::gemm_u4_g128;
}

// The registry rows of `op` that this machine runs: the tests walk the table itself, so a row that no dispatch level
// picks is still tested. Checks that the rows this machine should have are there: each ISA level's (the W4A8
// AVX-512 one needs VNNI).
template <class Kernel, class Fn>
std::vector<Kernel> rows_of(kernels::Op op) {
  std::vector<Kernel> out;
  std::string names;
  for (const kernels::KernelInfo& k : kernels::registry())
    if (k.op == op && kernels::runs_here_portable(k)) {
      out.push_back({std::get<Fn>(k.fn), k.name});
      names += std::string(k.name) + " ";
    }
  const bool w4a8 = std::is_same_v<Kernel, gemm::GemmU4S8Kernel>;
  EXPECT_NE(names.find("__scalar "), std::string::npos) << names;
  if (int(detected_isa()) >= int(Isa::avx2)) {
    EXPECT_NE(names.find("__avx2 "), std::string::npos) << names;
  }
  if (int(detected_isa()) >= int(Isa::avx512)) {
    EXPECT_NE(names.find("__avx512 "), std::string::npos) << names;
  }
  if (w4a8 && int(detected_isa()) >= int(Isa::avx512) && gemm::vnni_available()) {
    EXPECT_NE(names.find("__avx512vnni "), std::string::npos) << names;
  }
  // W4A16 on vdpbf16ps, where its self-test passed.
  if (!w4a8 && !*bf16_dot_unusable_reason(detected_isa())) {
    EXPECT_NE(names.find("__avx512bf16 "), std::string::npos) << names;
  }
  return out;
}

std::vector<gemm::GemmFloatKernel> u4_rows(int64_t G) {
  return rows_of<gemm::GemmFloatKernel, gemm::GemmFloatFn>(u4_op(G, false));
}

std::vector<gemm::GemmU4S8Kernel> u4s8_rows(int64_t G) {
  return rows_of<gemm::GemmU4S8Kernel, gemm::GemmU4S8Fn>(u4_op(G, true));
}

// M edges of every variant's row blocks: AVX2's tiles of 1 row x 2 panels, 2 x 1 and up to 4 x half a panel (1, 2,
// 3, 4, 5, 8, 9); AVX-512's tiles of 1 row x 4 panels, 4 x 2 and 12 x 1 (3, 4, 5, 11, 12, 13, 23, 24, 25); primes.
const int64_t kRowsW4A16[] = {1, 2, 3, 4, 5, 7, 8, 9, 11, 12, 13, 17, 23, 24, 25};
// Columns: the 8-column strips' and 32-column panels' edges, and 4-panel groups with 0..3 panels after them.
const int64_t kColsW4A16[] = {1, 7, 9, 17, 31, 32, 33, 64, 97, 100, 128, 160, 200, 225};

// How the W4A16 oracle below orders its steps: the contract, or one of its near misses (each must be told apart by
// the tests' data, or a kernel making that mistake could pass).
enum class Steps {
  contract,
  even_first,  // each pair's even k first
  plain_fma,   // std::fma: no DAZ / FTZ
  split_zero,  // sq - z * sa rounded twice instead of one fma
};

// C [M, N] of A (rows lda apart) times b by the W4A16 contract (gemm.h, "int4 group-wise"), or a near miss. Each
// step is the layer oracle's own fma_daz_ftz (oracle/bf16_step.h) when `own_step`, else the library's (which
// tests/kernels/bf16_dot_test.cpp checks against that one and the hardware; several times faster, for the big sweep).
std::vector<float> w4a16_oracle(const std::vector<float>& a, int64_t lda, int64_t M, const Int4Matrix& b, bool own_step,
                                Steps steps = Steps::contract) {
  const auto step = [&](float x, float y, float acc) {
    if (steps == Steps::plain_fma) return std::fma(x, y, acc);
    return own_step ? oracle::fma_daz_ftz(x, y, acc) : fma_daz_ftz(x, y, acc);
  };
  const bool even_first = steps == Steps::even_first;
  std::vector<float> c(size_t(M * b.N), 0.0f);  // the accumulators, from +0
  for (int64_t m = 0; m < M; ++m)
    for (int64_t g = 0; g < b.K / b.G; ++g) {
      const auto pairs = [&](auto weight) {  // Σ a · weight(k) over the group, in the contract's pairs
        float sum = 0.0f;
        for (int64_t k = g * b.G; k < (g + 1) * b.G; k += 2)
          for (int64_t kk : {even_first ? k : k + 1, even_first ? k + 1 : k})
            sum = step(a[size_t(m * lda + kk)], weight(kk), sum);
        return sum;
      };
      const float sa = pairs([](int64_t) { return 1.0f; });  // per row and group: the same for every column
      for (int64_t n = 0; n < b.N; ++n) {
        const float sq = pairs([&](int64_t k) { return float(b.q[size_t(k * b.N + n)]); });
        const size_t gi = size_t(g * b.N + n);
        const float z = float(b.zero[gi]);
        const float t = steps == Steps::split_zero ? sq - z * sa : step(-z, sa, sq);
        float& acc = c[size_t(m * b.N + n)];
        acc = step(b.scale[gi], t, acc);
      }
    }
  return c;
}

// Elements (by bits) where two results differ.
int64_t differing(const std::vector<float>& x, const std::vector<float>& y) {
  int64_t d = 0;
  for (size_t i = 0; i < x.size(); ++i) d += std::bit_cast<uint32_t>(x[i]) != std::bit_cast<uint32_t>(y[i]);
  return d;
}

// How many results of the contract the near misses (and GPTQ's dequantise-then-fp32 chain) got wrong, over a test.
struct NearMisses {
  int64_t even_first = 0, plain_fma = 0, split_zero = 0, dequantised = 0;
};

// What A holds: fp32 values (a vdpbf16ps row then runs the AVX-512 FMA kernel), bf16 values (the vdpbf16ps rows'
// own path), or bf16 values but one, somewhere in a random row (the fallback again, decided on all of A).
enum class AValues { fp32, bf16, bf16_but_one };

// Checks every W4A16 row on weights b against the contract's oracle, for each M of `rows` (extreme_a: A with special
// values, and the oracle's own fma_daz_ftz).
void expect_w4a16_rows_match(Rng& rng, const Int4Matrix& b, std::span<const int64_t> rows, bool extreme_a,
                             NearMisses& misses, AValues values = AValues::fp32) {
  const gemm::PackedWeights packed = gemm::pack_weights_u4(b.source(), b.K, b.N, b.G);
  ASSERT_EQ(packed.group_size(), b.G);
  const std::vector<gemm::GemmFloatKernel> kernels = u4_rows(b.G);
  for (int64_t M : rows) {
    const int64_t lda = b.K + 3;  // rows of A not contiguous
    std::vector<float> a(size_t(M * lda));
    const float special[] = {0.0f, -0.0f, 1e-40f, -3.5f, 4.0f};
    for (auto& v : a) v = extreme_a && rng.coin(0.2) ? special[rng.integer(0, 4)] : rng.uniform(-2.0f, 2.0f);
    if (values != AValues::fp32)
      for (auto& v : a) v = to_f32(to_bf16(v));
    if (values == AValues::bf16_but_one && b.K > 0) {
      float& v = a[size_t(rng.integer(0, int(M - 1)) * lda + rng.integer(0, int(b.K - 1)))];
      v = std::bit_cast<float>(std::bit_cast<uint32_t>(v) | 0x10u);
    }
    const std::vector<float> want = w4a16_oracle(a, lda, M, b, extreme_a);
    if (M <= 2) {  // enough rows to tell the near misses apart, at a fraction of the oracle work
      misses.even_first += differing(want, w4a16_oracle(a, lda, M, b, extreme_a, Steps::even_first));
      misses.plain_fma += differing(want, w4a16_oracle(a, lda, M, b, extreme_a, Steps::plain_fma));
      misses.split_zero += differing(want, w4a16_oracle(a, lda, M, b, extreme_a, Steps::split_zero));
      const auto weight = [&](int64_t k, int64_t n) { return b.weight(k, n); };
      misses.dequantised += differing(want, testing::fma_chain(a, lda, M, b.K, b.N, weight));
    }
    for (const gemm::GemmFloatKernel& kern : kernels)
      testing::expect_columns_match(kern, M, b.K, b.N, a, lda, packed.data(), want,
                                    "G=" + std::to_string(b.G) + " K=" + std::to_string(b.K) + " N=" +
                                        std::to_string(b.N) + (extreme_a ? " extreme" : "") +
                                        (values == AValues::fp32 ? " fp32 A" : values == AValues::bf16 ? " bf16 A"
                                                                                                       : " bf16 A but one"));
  }
}

TEST(GemmU4, EveryVariantEqualsTheContractOracleBitwise) {
  Rng rng(1204);
  NearMisses misses;
  for (int64_t G : gemm::kInt4GroupSizes)
    for (int64_t groups : {0, 1, 2, 3})  // K = 0: C = +0
      for (int64_t N : kColsW4A16)
        for (AValues values : {AValues::fp32, AValues::bf16})
          expect_w4a16_rows_match(rng, random_int4(rng, G * groups, N, G), kRowsW4A16, false, misses, values);
  EXPECT_GT(misses.even_first, 0);
  EXPECT_GT(misses.split_zero, 0);
  EXPECT_GT(misses.dequantised, 0);
}

// The AVX512-BF16 kernel unpacks with vpermb where the CPU has AVX512-VBMI (int4_vbmi.h); its path without VBMI,
// which the tests above do not reach on such a CPU, over the same sweep (bf16 A: fp32 A leaves that kernel).
TEST(GemmU4, EveryVariantEqualsTheContractOracleWithoutVbmi) {
  if (!cpu_features().avx512_vbmi) GTEST_SKIP() << "no AVX512-VBMI: the tests above run the path without it";
  struct VbmiOff {
    VbmiOff() { gemm::detail::g_int4_vbmi_off = true; }
    ~VbmiOff() { gemm::detail::g_int4_vbmi_off = false; }
  } off;
  Rng rng(1205);
  NearMisses misses;
  for (int64_t G : gemm::kInt4GroupSizes)
    for (int64_t groups : {1, 2, 3})
      for (int64_t N : kColsW4A16)
        expect_w4a16_rows_match(rng, random_int4(rng, G * groups, N, G), kRowsW4A16, false, misses, AValues::bf16);
  EXPECT_GT(misses.even_first, 0);
}

TEST(GemmU4, EveryVariantEqualsTheOracleOnExtremeValues) {
  // Subnormal activations and scales (read as zero), products and sums that underflow (flushed), huge scales.
  Rng rng(4040);
  NearMisses misses;
  const int64_t rows[] = {1, 2, 4, 5, 12, 13};
  for (int64_t G : gemm::kInt4GroupSizes)
    for (int64_t N : {33, 97, 200})
      for (AValues values : {AValues::fp32, AValues::bf16, AValues::bf16_but_one})
        expect_w4a16_rows_match(rng, extreme_int4(rng, 2 * G, N, G), rows, true, misses, values);
  EXPECT_GT(misses.plain_fma, 0);
}

// Prefill-sized M, and K of many groups: the SIMD kernels form Σ a per row and group once per call, for as many rows
// as their stack buffer holds with all their groups (int4_group_sums.h, kInt4SumFloats: 64 rows at 64 groups, so
// M = 150 is 3 runs of rows), and the AVX512-BF16 rows decide on their fallback from all of A (the value that is not
// a bf16 value may be in the last run).
TEST(GemmU4, EveryVariantEqualsTheOracleOnManyRows) {
  Rng rng(4811);
  NearMisses misses;
  const int64_t rows[] = {16, 25, 150};
  for (int64_t G : gemm::kInt4GroupSizes)
    for (AValues values : {AValues::bf16, AValues::bf16_but_one, AValues::fp32})
      expect_w4a16_rows_match(rng, random_int4(rng, G == 32 ? 2048 : 4 * G, 33, G), rows, false, misses, values);
}

TEST(GemmU4, IsCloseToTheDequantisedProduct) {
  // GPTQ's definition, "dequantise to fp32, then the fp32 product" (the library's f32 kernel of each level on the
  // dequantised weights), and the contract differ only in where they round: per element by at most
  // 2^-24 (K + 2 G + 4) Σ_k |a| (q + z) |s| (first order in 2^-24, with room; docs/layer.md states it).
  Rng rng(77);
  for (int64_t G : gemm::kInt4GroupSizes) {
    const int64_t K = 4 * G, N = 80, M = 6;
    const Int4Matrix b = random_int4(rng, K, N, G);
    std::vector<float> wf(size_t(K * N));
    for (int64_t k = 0; k < K; ++k)
      for (int64_t n = 0; n < N; ++n) wf[size_t(k * N + n)] = b.weight(k, n);
    const gemm::PackedWeights p4 = gemm::pack_weights_u4(b.source(), K, N, G);
    const gemm::PackedWeights pf = gemm::pack_weights_f(wf.data(), DType::f32, K, N, N, 1);
    std::vector<float> a(size_t(M * K));
    for (auto& v : a) v = rng.normal();
    for (const gemm::GemmKernels& k : gemm_variants()) {
      std::vector<float> c4(size_t(M * N)), cf(size_t(M * N));
      k.kernel_for(p4).fn(M, K, 0, N, a.data(), K, p4.data(), c4.data(), N);
      k.f32w.fn(M, K, 0, N, a.data(), K, pf.data(), cf.data(), N);
      int64_t unequal = 0;
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
          double mass = 0;
          for (int64_t kk = 0; kk < K; ++kk) {
            const size_t gi = size_t((kk / G) * N + n);
            mass += std::fabs(double(a[size_t(m * K + kk)])) * (b.q[size_t(kk * N + n)] + b.zero[gi]) *
                    std::fabs(double(b.scale[gi]));
          }
          const double bound = std::ldexp(double(K + 2 * G + 4), -24) * mass;
          const size_t i = size_t(m * N + n);
          EXPECT_LE(std::fabs(double(c4[i]) - double(cf[i])), bound) << k.kernel_for(p4).name << " " << m << " " << n;
          unequal += c4[i] != cf[i];
        }
      EXPECT_GT(unequal, 0) << k.kernel_for(p4).name << ": the data should tell the two orders apart";
    }
  }
}

TEST(GemmU4, UnpackGivesBackWhatWasPacked) {
  Rng rng(5);
  const Int4Matrix b = random_int4(rng, 128, 45, 32);
  const gemm::PackedWeights p = gemm::pack_weights_u4(b.source(), 128, 45, 32);
  Int4Matrix back = b;
  std::fill(back.q.begin(), back.q.end(), 0xFF);
  std::fill(back.zero.begin(), back.zero.end(), 0xFF);
  std::fill(back.scale.begin(), back.scale.end(), -1.0f);
  gemm::unpack_weights_u4(p, back.source());
  EXPECT_EQ(back.q, b.q);
  EXPECT_EQ(back.zero, b.zero);
  EXPECT_EQ(back.scale, b.scale);
}

TEST(GemmU4, BadShapesAndValuesAreClearErrors) {
  Rng rng(9);
  Int4Matrix b = random_int4(rng, 64, 8, 32);
  EXPECT_THROWS_MSG(gemm::pack_weights_u4(b.source(), 64, 8, 48), ValueError, "G", "expected a group size of 32, 64 or 128", "got 48");
  EXPECT_THROWS_MSG(gemm::pack_weights_u4(b.source(), 48, 8, 32), ValueError, "K", "expected a multiple of the group size 32", "got 48");
  b.q[size_t(3 * 8 + 5)] = 16;
  EXPECT_THROWS_MSG(gemm::pack_weights_u4(b.source(), 64, 8, 32), ValueError, "pack_weights_u4", "q", "expected values 0..15", "got 16 at [3, 5]");
  b.q[size_t(3 * 8 + 5)] = 1;
  b.zero[9] = 200;
  EXPECT_THROWS_MSG(gemm::pack_weights_u4(b.source(), 64, 8, 32), ValueError, "zero", "expected values 0..15", "got 200 at [1, 1]");
}

TEST(GemmU4, DispatchPicksTheTableRows) {
  for (const gemm::GemmKernels& k : gemm_variants()) {
    const kernels::Dispatch d{k.isa, k.vnni};
    EXPECT_STREQ(k.u4w_g32.name, testing::selected_row(kernels::Op::gemm_u4_g32, DType::u8, d)->name);
    EXPECT_STREQ(k.u4w_g128.name, testing::selected_row(kernels::Op::gemm_u4_g128, DType::u8, d)->name);
  }
  EXPECT_STREQ(gemm::select_gemm_kernels(Isa::scalar, false).u4w_g64.name, "gemm_u4g64w_f32_1x32__scalar");
  // The vdpbf16ps rows serve the avx512bf16 level and above (where the self-test passed and this process prefers
  // them: bf16_dot_unused_reason) and no level below it.
  for (Isa isa : gemm::available_isas()) {
    const std::string name = gemm::select_gemm_kernels(isa, false).u4w_g128.name;
    EXPECT_EQ(name == "gemm_u4g128w_f32_12x32__avx512bf16", isa >= Isa::avx512bf16 && !*bf16_dot_unused_reason(isa))
        << name;
    if (isa == Isa::avx512) {
      EXPECT_EQ(name, "gemm_u4g128w_f32_12x32__avx512");
    }
  }
}

// Checks every W4A8 row on weights b against the integer definition, for each M of `rows`; with `extreme`, the
// activations are all -128 or 127.
void expect_w4a8_rows_match(Rng& rng, const Int4Matrix& b, std::span<const int64_t> rows, bool extreme) {
  const gemm::PackedWeights packed = gemm::pack_weights_u4(b.source(), b.K, b.N, b.G);
  const std::vector<gemm::GemmU4S8Kernel> kernels = u4s8_rows(b.G);
  const int64_t K = b.K, N = b.N, G = b.G;
  for (int64_t M : rows) {
    const int64_t lda = K + 5;
    std::vector<int8_t> a(size_t(M * lda));
    for (auto& v : a) v = int8_t(extreme ? (rng.coin() ? -128 : 127) : rng.integer(-128, 127));
    std::vector<float> a_scale(static_cast<size_t>(M));
    for (auto& v : a_scale) v = rng.uniform(1e-4f, 0.05f);
    const std::vector<float> want = testing::w4a8_oracle(a, lda, a_scale, b, M);
    for (const gemm::GemmU4S8Kernel& kern : kernels) {
      for (auto [n0, n1] : {std::pair<int64_t, int64_t>{0, N}, {kGemmNR, N - 1}}) {
        if (n0 > n1) continue;
        const int64_t ldc = n1 - n0 + 2;
        std::vector<float> c(size_t(std::max<int64_t>(M, 1) * ldc), -7.0f);
        kern.fn(M, K, n0, n1, a.data(), lda, a_scale.data(), packed.data(), c.data(), ldc);
        if (M == 0) {
          ASSERT_EQ(c[0], -7.0f) << kern.name;
        }
        for (int64_t m = 0; m < M; ++m) {
          for (int64_t n = n0; n < n1; ++n)
            ASSERT_EQ(std::bit_cast<uint32_t>(c[size_t(m * ldc + n - n0)]),
                      std::bit_cast<uint32_t>(want[size_t(m * N + n)]))
                << kern.name << " G=" << G << " K=" << K << " N=" << N << " M=" << M << " m=" << m << " n=" << n;
          for (int64_t n = n1 - n0; n < ldc; ++n) ASSERT_EQ(c[size_t(m * ldc + n)], -7.0f) << kern.name;
        }
      }
    }
  }
}

TEST(GemmU4S8, EveryVariantEqualsTheIntegerDefinitionBitwise) {
  Rng rng(4808);
  // Empty; the 1- and 2-row tiles (AVX2); AVX-512BW: one-panel tiles of up to 6 rows (6, 7); AVX-512 VNNI: one-panel
  // tiles up to 10 rows (M < 11), from 11 on two-panel tiles of 4-6 rows and a last odd panel in one-panel tiles of up
  // to 12 rows (N = 160: 12 and 13 rows), or for G = 32 one-panel tiles of 4-6 rows; primes.
  const int64_t rows[] = {0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13};
  for (int64_t G : gemm::kInt4GroupSizes)
    for (int64_t groups : {0, 1, 3})  // K = 0: C = +0 · the row scale
      for (int64_t N : {1, 31, 33, 64, 97, 160}) {  // panel edges (32 columns)
        Int4Matrix b = random_int4(rng, G * groups, N, G);
        if (N == 33) std::fill(b.q.begin(), b.q.end(), uint8_t(15));  // the extremes: 15 - 0 and 0 - 15 with ±128
        if (N == 33) for (size_t i = 0; i < b.zero.size(); ++i) b.zero[i] = i % 2 ? 0 : 15;
        expect_w4a8_rows_match(rng, b, rows, N == 33);
      }
}

// Prefill-sized M (many row blocks of every variant, blocks of 5 and 6 rows, of 1 and 2), on K of one group up to
// 11 groups (K = 512 + G, 640, 704): a blocked variant (one that forms the weights per chunk of K and carries its
// tiles through C) would meet its chunk edges here.
TEST(GemmU4S8, EveryVariantEqualsTheIntegerDefinitionOnManyRows) {
  Rng rng(4810);
  const int64_t rows[] = {15, 16, 17, 24, 25, 37, 150};
  for (int64_t G : gemm::kInt4GroupSizes)
    for (int64_t K : {G, int64_t(512), 512 + G, G == 128 ? int64_t(640) : 11 * G})
      for (int64_t N : {33, 97}) expect_w4a8_rows_match(rng, random_int4(rng, K, N, G), rows, N == 33);
  for (int64_t G : gemm::kInt4GroupSizes) expect_w4a8_rows_match(rng, extreme_int4(rng, 5 * G, 64, G), rows, false);
  // The AVX-512 kernels form Σ a per row and group once per call, for as many rows as kInt4SumFloats holds with all
  // their groups (int4_group_sums.h: 64 rows at 64 groups): M = 65 and 150 cross runs of rows, in tiles of one and
  // two panels (N = 97).
  const int64_t runs[] = {64, 65, 150};
  for (int64_t G : gemm::kInt4GroupSizes) expect_w4a8_rows_match(rng, random_int4(rng, 64 * G, 97, G), runs, false);
}

TEST(GemmU4S8, EveryVariantEqualsTheIntegerDefinitionOnExtremeValues) {
  Rng rng(4809);
  const int64_t rows[] = {1, 6, 7};
  for (int64_t G : gemm::kInt4GroupSizes)
    for (int64_t N : {33, 97}) {
      expect_w4a8_rows_match(rng, extreme_int4(rng, 2 * G, N, G), rows, true);
      expect_w4a8_rows_match(rng, extreme_int4(rng, 3 * G, N, G), rows, false);
    }
}

TEST(GemmU4S8, DispatchPicksTheTableRows) {
  for (const gemm::GemmKernels& k : gemm_variants()) {
    const kernels::Dispatch d{k.isa, k.vnni};
    EXPECT_STREQ(k.u4s8_g32.name, kernels::find(kernels::Op::gemm_u4s8_g32, DType::u8, d)->name);
    EXPECT_STREQ(k.u4s8_g64.name, kernels::find(kernels::Op::gemm_u4s8_g64, DType::u8, d)->name);
    EXPECT_STREQ(k.u4s8_g128.name, kernels::find(kernels::Op::gemm_u4s8_g128, DType::u8, d)->name);
  }
  EXPECT_STREQ(gemm::select_gemm_kernels(Isa::scalar, false).u4s8_g64.name, "gemm_u4g64w_s8_f32_1x32__scalar");
  // AVX-512 without VNNI (Skylake-SP/X): the vpmaddubsw rows, not AVX2's.
  EXPECT_STREQ(gemm::select_gemm_kernels(Isa::avx512, false).u4s8_g128.name, "gemm_u4g128w_s8_f32_6x32__avx512");
  EXPECT_STREQ(gemm::select_gemm_kernels(Isa::avx512, true).u4s8_g128.name, "gemm_u4g128w_s8_f32_6x64__avx512vnni");
  const gemm::PackedWeights f32 = gemm::pack_weights_f(std::vector<float>(32 * 4).data(), DType::f32, 32, 4, 4, 1);
  EXPECT_EQ(gemm::select_gemm_kernels(Isa::scalar, false).u4s8_kernel_for(f32).fn, nullptr);
}

}  // namespace
}  // namespace moefuse
