// The GEMM kernel family (src/kernels/gemm/gemm.h): packing layout, and every variant the machine supports against
// a naive oracle written here from the contract — bitwise for floats (same fma order), exact for int8.
// Over 500 lines: one suite for the family keeps its oracles next to every layout and edge case.
#include "kernels/gemm/gemm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "kernels/registry.h"
#include "moefuse/cpu.h"
#include "moefuse/error.h"
#include "util/compare.h"
#include "util/errors.h"
#include "util/gemm_sweep.h"
#include "util/random.h"

namespace moefuse {
namespace {

using gemm::GemmKernels;
using gemm::kGemmNR;
using gemm::PackedWeights;
using testing::element_at;
using testing::random_s8;
using testing::Rng;
using testing::s8_oracle;

// Every dispatch level this machine can run, as select_gemm_kernels hands them out: each ISA level, and AVX-512 once
// more with VNNI where the CPU has it.
std::vector<GemmKernels> all_levels() {
  std::vector<GemmKernels> out;
  for (Isa isa : gemm::available_isas()) out.push_back(gemm::select_gemm_kernels(isa, false));
  if (gemm::vnni_available()) out.push_back(gemm::select_gemm_kernels(Isa::avx512, true));
  return out;
}

// Every float GEMM row of the kernel registry for weights of `dt` that this machine can run: the kernel tests walk
// the table itself, so a row that no dispatch level picks is still tested.
std::vector<gemm::GemmFloatKernel> float_rows(DType dt) {
  std::vector<gemm::GemmFloatKernel> out;
  for (const kernels::KernelInfo& k : kernels::registry())
    if (k.op == kernels::Op::gemm_float && k.in == dt && kernels::runs_here_portable(k))
      out.push_back({std::get<gemm::GemmFloatFn>(k.fn), k.name});
  EXPECT_FALSE(out.empty()) << dtype_name(dt);
  return out;
}

// Every int8 GEMM row of the registry this machine can run.
std::vector<gemm::GemmS8Kernel> s8_rows() {
  std::vector<gemm::GemmS8Kernel> out;
  for (const kernels::KernelInfo& k : kernels::registry())
    if (k.op == kernels::Op::gemm_s8 && kernels::runs_here_portable(k)) out.push_back({std::get<gemm::GemmS8Fn>(k.fn), k.name});
  EXPECT_FALSE(out.empty());
  return out;
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// The contract, literally: acc = +0; acc = fma(A[m, k], B[k, n], acc) for k = 0..K-1; C[m, n] = acc, with B
// widened exactly to fp32 (element_at reads any dtype and strides). bf16 weights: the bf16 contract's chain
// (testing::bf16_chain: pairs of k, odd first, fma_daz_ftz).
std::vector<float> float_oracle(const std::vector<float>& a, int64_t lda, const Tensor& w, int64_t M) {
  const int64_t K = w.size(0), N = w.size(1);
  std::vector<float> wf(size_t(K * N));
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < N; ++n) wf[size_t(k * N + n)] = float(element_at(w, k * w.stride(0) + n * w.stride(1)));
  if (w.dtype() == DType::bf16)
    return testing::bf16_chain(a, lda, M, K, N, [&](int64_t k, int64_t n) { return wf[size_t(k * N + n)]; });
  std::vector<float> c(size_t(M * N));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      float acc = 0.0f;
      for (int64_t k = 0; k < K; ++k) acc = std::fma(a[size_t(m * lda + k)], wf[size_t(k * N + n)], acc);
      c[size_t(m * N + n)] = acc;
    }
  return c;
}

// A as M rows of lda floats, exactly (M - 1) * lda + K long, so that a read past the last row's K-th element leaves
// the allocation (AddressSanitizer) and a read of the padding between rows hits a NaN (any sanitizer-free build).
std::vector<float> make_a(Rng& rng, int64_t M, int64_t K, int64_t lda) {
  std::vector<float> a(size_t(M == 0 ? 0 : (M - 1) * lda + K), std::numeric_limits<float>::quiet_NaN());
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) a[size_t(m * lda + k)] = rng.uniform(-1.0f, 1.0f);
  return a;
}

// Runs `kern` into a C of ldc = N + 3 columns filled with a sentinel, checks the pad columns are untouched and
// returns the [M, N] result.
constexpr float kSentinel = -12345.0f;
std::vector<float> run_float(const gemm::GemmFloatKernel& kern, const std::vector<float>& a, int64_t lda,
                             const PackedWeights& pw, int64_t M) {
  const int64_t N = pw.n(), ldc = N + 3;
  std::vector<float> c(size_t(M * ldc), kSentinel);
  kern.fn(M, pw.k(), 0, N, a.data(), lda, pw.data(), c.data(), ldc);
  std::vector<float> out(size_t(M * N));
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) out[size_t(m * N + n)] = c[size_t(m * ldc + n)];
    for (int64_t n = N; n < ldc; ++n) EXPECT_EQ(c[size_t(m * ldc + n)], kSentinel) << kern.name << " wrote pad";
  }
  return out;
}

// Bitwise equality, except that a NaN matches any NaN (which NaN comes out is not part of the contract).
::testing::AssertionResult same_floats(const std::vector<float>& expected, const std::vector<float>& actual,
                                       int64_t N) {
  if (expected.size() != actual.size()) return ::testing::AssertionFailure() << "sizes differ";
  for (size_t i = 0; i < expected.size(); ++i) {
    const bool both_nan = std::isnan(expected[i]) && std::isnan(actual[i]);
    if (!both_nan && bits(expected[i]) != bits(actual[i]))
      return ::testing::AssertionFailure()
             << "at [" << i / size_t(N) << ", " << i % size_t(N) << "]: expected " << expected[i] << " (0x" << std::hex
             << bits(expected[i]) << "), got " << actual[i] << " (0x" << bits(actual[i]) << ")";
  }
  return ::testing::AssertionSuccess();
}

struct Mnk {
  int64_t M, N, K;
};
// Covers M in {1, 2, 3, 7, 12, 13, 25, 64} (plus 6 and 24: the last decode row count and two full 12-row blocks),
// N in {1, 31, 32, 33, 64, 95}, K in {1, 3, 4, 5, 16, 17, 64, 513}; each value several times, not the full cross.
const Mnk kShapes[] = {{1, 1, 1},    {1, 95, 513}, {1, 33, 64},  {2, 33, 5},    {2, 64, 513}, {3, 64, 17},
                       {3, 95, 4},   {6, 95, 17},  {7, 31, 4},   {7, 95, 64},   {12, 32, 64}, {12, 33, 1},
                       {13, 95, 3},  {13, 1, 5},   {24, 64, 5},  {25, 33, 513}, {25, 31, 16}, {64, 64, 16},
                       {64, 95, 17}, {64, 1, 4},   {64, 32, 513}, {1, 160, 9}, {1, 227, 7}};  // M = 1: 3 + 2, 3 + 3 + 1 panels

const DType kFloatTypes[] = {DType::f32, DType::bf16, DType::f16};

TEST(GemmRegistry, EveryLevelHasNamedKernels) {
  const std::vector<Isa> isas = gemm::available_isas();
  ASSERT_FALSE(isas.empty());
  EXPECT_EQ(isas.front(), Isa::scalar);
  EXPECT_EQ(isas.back(), detected_isa());  // up to the detected level, whatever the cap
  for (const GemmKernels& k : all_levels()) {
    // The avx512bf16 level has its own kernel for bf16 weights only (when its self-test passed); the rest is avx512's,
    // but for int8 at the amx level (AMX-INT8; the portable tier, which all_levels() selects, keeps bf16 off AMX).
    const Isa base = std::min(k.isa, Isa::avx512);
    const std::string suffix = k.isa >= Isa::amx ? "__amx" : k.vnni ? "__avx512vnni" : "__" + std::string(isa_name(base));
    for (DType dt : kFloatTypes) {
      const gemm::GemmFloatKernel& f = k.float_kernel(dt);
      ASSERT_NE(f.fn, nullptr);
      const std::string name = f.name;
      EXPECT_EQ(name.rfind("gemm_" + std::string(dtype_name(dt)) + "w_f32_", 0), 0u) << name;
      const bool dot = dt == DType::bf16 && !*bf16_dot_unused_reason(k.isa);
      EXPECT_TRUE(name.ends_with("__" + std::string(isa_name(dot ? Isa::avx512bf16 : base)))) << name;
    }
    ASSERT_NE(k.s8.fn, nullptr);
    EXPECT_EQ(std::string(k.s8.name).rfind("gemm_s8_s32_", 0), 0u) << k.s8.name;
    EXPECT_TRUE(std::string(k.s8.name).ends_with(suffix)) << k.s8.name;
  }
  EXPECT_EQ(gemm::select_gemm_kernels(Isa::scalar, false).float_kernel(DType::i8).fn, nullptr);
}

TEST(GemmRegistry, DefaultSelectionFollowsTheIsaCap) {
  set_max_isa(Isa::scalar);
  GemmKernels k = gemm::select_gemm_kernels();
  EXPECT_EQ(k.isa, Isa::scalar);
  EXPECT_FALSE(k.vnni);
  EXPECT_STREQ(k.bf16w.name, "gemm_bf16w_f32_1x32__scalar");
  set_max_isa(kTopIsa);
  k = gemm::select_gemm_kernels();
  EXPECT_EQ(k.isa, active_isa());
  EXPECT_EQ(k.vnni, use_avx512_vnni());
}

TEST(GemmPack, FloatLayoutIsPanelsOf32ColumnsZeroPadded) {
  const int64_t K = 5, N = 33;
  std::vector<float> src(size_t(K * N));
  for (int64_t i = 0; i < K * N; ++i) src[size_t(i)] = float(i + 1);
  PackedWeights pw = gemm::pack_weights_f(src.data(), DType::f32, K, N, N, 1);
  EXPECT_EQ(pw.dtype(), DType::f32);
  EXPECT_EQ(pw.k(), K);
  EXPECT_EQ(pw.n(), N);
  EXPECT_EQ(pw.panels(), 2);
  EXPECT_EQ(pw.k_padded(), K);
  EXPECT_EQ(pw.panel_bytes(), size_t(K * 32 * 4));
  EXPECT_EQ(pw.col_sums(), nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(pw.data()) % 64, 0u);
  const float* d = static_cast<const float*>(pw.data());
  for (int64_t p = 0; p < 2; ++p)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < 32; ++j) {
        const int64_t n = 32 * p + j;
        EXPECT_EQ(d[(p * K + k) * 32 + j], n < N ? src[size_t(k * N + n)] : 0.0f) << k << "," << n;
      }
}

TEST(GemmPack, Int8LayoutIsVnniGroupsOfFourWithColumnSums) {
  const int64_t K = 6, N = 34;  // K pads to 8, N to 64
  std::vector<int8_t> src(size_t(K * N));
  for (int64_t i = 0; i < K * N; ++i) src[size_t(i)] = int8_t(i % 251 - 125);
  PackedWeights pw = gemm::pack_weights_s8(src.data(), K, N, N, 1);
  EXPECT_EQ(pw.dtype(), DType::i8);
  EXPECT_EQ(pw.k_padded(), 8);
  EXPECT_EQ(pw.panels(), 2);
  EXPECT_EQ(pw.panel_bytes(), size_t(8 * 32));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(pw.data()) % 64, 0u);
  const int8_t* d = static_cast<const int8_t*>(pw.data());
  for (int64_t p = 0; p < 2; ++p)
    for (int64_t k = 0; k < 8; ++k)
      for (int64_t j = 0; j < 32; ++j) {
        const int64_t n = 32 * p + j;
        const int8_t want = (k < K && n < N) ? src[size_t(k * N + n)] : int8_t(0);
        EXPECT_EQ(d[p * 8 * 32 + (k / 4) * 128 + j * 4 + k % 4], want) << k << "," << n;
      }
  for (int64_t n = 0; n < 64; ++n) {
    int32_t s = 0;
    for (int64_t k = 0; k < K && n < N; ++k) s += src[size_t(k * N + n)];
    EXPECT_EQ(pw.col_sums()[n], s) << n;
  }
}

TEST(GemmPack, TransposedAndStridedSourcesGiveIdenticalBytes) {
  Rng rng(11);
  for (DType dt : {DType::f32, DType::bf16, DType::f16, DType::i8}) {
    for (auto [K, N] : {std::pair<int64_t, int64_t>{17, 33}, {513, 95}, {4, 32}, {1, 1}}) {
      // The same logical [K, N] matrix stored three ways: [K, N] row-major, Hugging Face [N, K], and [K, N] inside
      // a wider buffer read backwards along n (negative stride).
      Tensor kn = dt == DType::i8 ? rng.int_tensor(dt, {K, N}, -128, 127) : rng.normal_tensor(dt, {K, N});
      Tensor nk = Tensor::empty(dt, {N, K});
      Tensor wide = Tensor::empty(dt, {K, N + 5});
      const size_t es = dtype_size(dt);
      const auto* src = static_cast<const std::byte*>(kn.data());
      for (int64_t k = 0; k < K; ++k)
        for (int64_t n = 0; n < N; ++n) {
          std::memcpy(static_cast<std::byte*>(nk.data()) + (n * K + k) * es, src + (k * N + n) * es, es);
          std::memcpy(static_cast<std::byte*>(wide.data()) + (k * (N + 5) + (N - 1 - n)) * es, src + (k * N + n) * es,
                      es);
        }
      auto pack = [&](const void* p, int64_t sk, int64_t sn) {
        return dt == DType::i8 ? gemm::pack_weights_s8(static_cast<const int8_t*>(p), K, N, sk, sn)
                               : gemm::pack_weights_f(p, dt, K, N, sk, sn);
      };
      PackedWeights a = pack(kn.data(), N, 1);
      PackedWeights b = pack(nk.data(), 1, K);
      PackedWeights c = pack(static_cast<const std::byte*>(wide.data()) + (N - 1) * es, N + 5, -1);
      ASSERT_EQ(a.data_bytes(), b.data_bytes());
      ASSERT_EQ(a.data_bytes(), c.data_bytes());
      EXPECT_EQ(std::memcmp(a.data(), b.data(), a.data_bytes()), 0) << dtype_name(dt) << " " << K << "x" << N;
      EXPECT_EQ(std::memcmp(a.data(), c.data(), a.data_bytes()), 0) << dtype_name(dt) << " " << K << "x" << N;
      if (dt == DType::i8) {
        const size_t sums = size_t(a.panels() * kGemmNR) * sizeof(int32_t);
        EXPECT_EQ(std::memcmp(a.col_sums(), b.col_sums(), sums), 0);
        EXPECT_EQ(std::memcmp(a.col_sums(), c.col_sums(), sums), 0);
      }
    }
  }
}

TEST(GemmPack, UnpackRestoresEveryElementIntoAnyLayout) {
  Rng rng(12);
  for (DType dt : {DType::f32, DType::bf16, DType::f16, DType::i8}) {
    for (auto [K, N] : {std::pair<int64_t, int64_t>{17, 33}, {6, 95}, {4, 32}, {1, 1}, {0, 5}}) {
      Tensor kn = dt == DType::i8 ? rng.int_tensor(dt, {K, N}, -128, 127) : rng.normal_tensor(dt, {K, N});
      PackedWeights pw = dt == DType::i8 ? gemm::pack_weights_s8(static_cast<const int8_t*>(kn.data()), K, N, N, 1)
                                         : gemm::pack_weights_f(kn.data(), dt, K, N, N, 1);
      // Back into [K, N] row-major and into the Hugging Face [N, K] storage (its [K, N] view).
      Tensor same = Tensor::zeros(dt, {K, N});
      gemm::unpack_weights(pw, same.data(), N, 1);
      EXPECT_TENSOR_EQ(same, kn);
      Tensor nk = Tensor::zeros(dt, {N, K});
      gemm::unpack_weights(pw, nk.data(), 1, K);
      EXPECT_TENSOR_EQ(nk.transpose(0, 1), kn);
    }
  }
}

TEST(GemmPack, RejectsBadArguments) {
  float x = 0.0f;
  int8_t q = 0;
  EXPECT_THROWS_MSG(gemm::pack_weights_f(&q, DType::i8, 1, 1, 1, 1), TypeError, "pack_weights_f", "dtype",
                    "f32, bf16 or f16", "i8");
  EXPECT_THROWS_MSG(gemm::pack_weights_f(&x, DType::f32, -1, 1, 1, 1), ValueError, "pack_weights_f", "K", "-1");
  EXPECT_THROWS_MSG(gemm::pack_weights_f(&x, DType::f32, 1, -2, 1, 1), ValueError, "pack_weights_f", "N", "-2");
  EXPECT_THROWS_MSG(gemm::pack_weights_s8(&q, 65536, 1, 1, 1), ValueError, "pack_weights_s8", "K", "65536",
                    "K < 65536");
  EXPECT_THROWS_MSG(gemm::pack_weights_s8(&q, -1, 1, 1, 1), ValueError, "pack_weights_s8", "K", "-1");
}

TEST(GemmFloat, EveryVariantMatchesTheOracleBitwise) {
  Rng rng(2024);
  for (DType dt : kFloatTypes) {
    for (const Mnk& s : kShapes) {
      Tensor w = rng.normal_tensor(dt, {s.K, s.N});
      PackedWeights pw = gemm::pack_weights_f(w.data(), dt, s.K, s.N, s.N, 1);
      const int64_t lda = s.K + (s.M % 2);  // odd M: rows padded with NaN that must never be read
      std::vector<float> a = make_a(rng, s.M, s.K, lda);
      const std::vector<float> expected = float_oracle(a, lda, w, s.M);
      for (const gemm::GemmFloatKernel& kern : float_rows(dt)) {
        EXPECT_TRUE(same_floats(expected, run_float(kern, a, lda, pw, s.M), s.N))
            << kern.name << " M=" << s.M << " N=" << s.N << " K=" << s.K;
      }
    }
  }
}

TEST(GemmFloat, RowResultsDoNotDependOnM) {
  // Batch invariance (docs/operators.md, Numerics: determinism): row r computed among 64 rows, or alone, or as row 0 of
  // a block of 5.
  Rng rng(7);
  const int64_t M = 64, N = 95, K = 200;
  Tensor w = rng.normal_tensor(DType::bf16, {K, N});
  PackedWeights pw = gemm::pack_weights_f(w.data(), DType::bf16, K, N, N, 1);
  std::vector<float> a = make_a(rng, M, K, K);
  for (const gemm::GemmFloatKernel& kern : float_rows(DType::bf16)) {
    const std::vector<float> all = run_float(kern, a, K, pw, M);
    for (int64_t r : {0, 5, 11, 12, 37, 63}) {
      std::vector<float> one(a.begin() + r * K, a.begin() + (r + 1) * K);
      const std::vector<float> alone = run_float(kern, one, K, pw, 1);
      EXPECT_TRUE(same_floats(std::vector<float>(all.begin() + r * N, all.begin() + (r + 1) * N), alone, N))
          << kern.name << " row " << r;
      if (r + 5 <= M) {
        std::vector<float> five(a.begin() + r * K, a.begin() + (r + 5) * K);
        const std::vector<float> block = run_float(kern, five, K, pw, 5);
        EXPECT_TRUE(same_floats(std::vector<float>(all.begin() + r * N, all.begin() + (r + 1) * N),
                                std::vector<float>(block.begin(), block.begin() + N), N))
            << kern.name << " row " << r << " in a block of 5";
      }
    }
  }
}

TEST(GemmFloat, ColumnRangesStartingMidMatrix) {
  Rng rng(99);
  const int64_t N = 95, K = 33;
  for (DType dt : kFloatTypes) {
    Tensor w = rng.normal_tensor(dt, {K, N});
    PackedWeights pw = gemm::pack_weights_f(w.data(), dt, K, N, N, 1);
    for (int64_t M : {1, 3, 13}) {
      std::vector<float> a = make_a(rng, M, K, K);
      const std::vector<float> expected = float_oracle(a, K, w, M);
      for (const gemm::GemmFloatKernel& kern : float_rows(dt)) {
        for (auto [n0, n1] : {std::pair<int64_t, int64_t>{32, 95}, {64, 95}, {32, 64}, {64, 80}, {0, 40}, {32, 32}}) {
          // c points at C[0, n0] of a tight scratch (ldc = n1 - n0) with one sentinel element past the end.
          const int64_t width = n1 - n0;
          std::vector<float> c(size_t(M * width + 1), kSentinel);
          kern.fn(M, K, n0, n1, a.data(), K, pw.data(), c.data(), width);
          for (int64_t m = 0; m < M; ++m)
            for (int64_t n = n0; n < n1; ++n)
              ASSERT_EQ(bits(c[size_t(m * width + n - n0)]), bits(expected[size_t(m * N + n)]))
                  << kern.name << " [" << n0 << ", " << n1 << ") M=" << M << " at " << m << "," << n;
          EXPECT_EQ(c.back(), kSentinel) << kern.name << " wrote past the range";
        }
      }
    }
  }
}

TEST(GemmFloat, EmptyAndZeroK) {
  Tensor w = Tensor::zeros(DType::f32, {0, 40});
  PackedWeights pw = gemm::pack_weights_f(w.data(), DType::f32, 0, 40, 40, 1);
  float a_dummy = 1.0f;
  for (const gemm::GemmFloatKernel& kern : float_rows(DType::f32)) {
    std::vector<float> c(size_t(3 * 40), kSentinel);
    kern.fn(3, 0, 0, 40, &a_dummy, 0, pw.data(), c.data(), 40);  // K = 0: C = +0
    for (float v : c) EXPECT_EQ(bits(v), 0u) << kern.name;
    std::vector<float> untouched(8, kSentinel);
    kern.fn(0, 0, 0, 40, &a_dummy, 0, pw.data(), untouched.data(), 40);  // M = 0
    kern.fn(2, 0, 32, 32, &a_dummy, 0, pw.data(), untouched.data(), 0);  // empty column range
    for (float v : untouched) EXPECT_EQ(v, kSentinel) << kern.name;
  }
}

TEST(GemmFloat, SpecialValuesPropagateTheSameInEveryVariant) {
  // inf, NaN, signed zeros, subnormals in both operands: inf * 0 makes NaN, inf + -inf makes NaN, -0 * +0 + +0
  // stays +0, subnormal products round once. NaN positions must agree; everything else bitwise.
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const float sub = std::numeric_limits<float>::denorm_min() * 7.0f;
  const float pool[] = {inf, -inf, nan, 0.0f, -0.0f, sub, -sub, 1e-30f, 3.0f, -2.5f, 1e30f, 0.5f};
  Rng rng(5);
  const int64_t M = 13, N = 64, K = 37;
  for (DType dt : kFloatTypes) {
    Tensor w = Tensor::empty(dt, {K, N});
    std::vector<float> a(size_t(M * K));
    for (int64_t i = 0; i < K * N; ++i) {
      const float v = rng.coin(0.3) ? pool[rng.integer(0, 11)] : rng.normal();
      w.reshape({K * N}).set_item({i}, v);  // rounded to dt (f16: 1e30 becomes inf, 1e-30 becomes 0)
    }
    for (float& v : a) v = rng.coin(0.3) ? pool[rng.integer(0, 11)] : rng.normal();
    // Row 2 of A finite and non-zero; column 7 of B finite (so finite results are compared too), column 9 finite
    // but for one +inf (so row 2 gives +inf there).
    for (int64_t k = 0; k < K; ++k) a[size_t(2 * K + k)] = 0.125f * float(k % 7) + 0.25f;
    for (int64_t k = 0; k < K; ++k) w.set_item({k, 7}, 0.25 * double(k % 5) - 0.5);
    for (int64_t k = 0; k < K; ++k) w.set_item({k, 9}, k == 3 ? double(inf) : 1.0);
    PackedWeights pw = gemm::pack_weights_f(w.data(), dt, K, N, N, 1);
    const std::vector<float> expected = float_oracle(a, K, w, M);
    int nans = 0, infs = 0;
    for (float v : expected) nans += std::isnan(v), infs += std::isinf(v);
    EXPECT_GT(nans, 0);
    EXPECT_GT(infs, 0);
    for (const gemm::GemmFloatKernel& kern : float_rows(dt))
      EXPECT_TRUE(same_floats(expected, run_float(kern, a, K, pw, M), N)) << kern.name;
  }
}

TEST(GemmFloat, SignedZeroAndExactCancellation) {
  // -0 * x accumulated onto +0 is +0; a chain that cancels exactly gives +0 (round to nearest), and -0 results
  // appear only when every product is -0 ... which cannot happen from acc = +0. Checked bit for bit.
  const int64_t M = 2, N = 32, K = 4;
  std::vector<float> w(size_t(K * N), 1.0f);
  std::vector<float> a = {-0.0f, -0.0f, -0.0f, -0.0f, 3.0f, -3.0f, 5.0f, -5.0f};
  PackedWeights pw = gemm::pack_weights_f(w.data(), DType::f32, K, N, N, 1);
  for (const gemm::GemmFloatKernel& kern : float_rows(DType::f32)) {
    std::vector<float> c(size_t(M * N), kSentinel);
    kern.fn(M, K, 0, N, a.data(), K, pw.data(), c.data(), N);
    for (float v : c) EXPECT_EQ(bits(v), 0u) << kern.name;
  }
}

// ─── int8 ──────────────────────────────────────────────────────────────────────────────────────────────────────

std::vector<int32_t> run_s8(const gemm::GemmS8Kernel& kern, const std::vector<int8_t>& a, int64_t lda,
                            const PackedWeights& pw, int64_t M) {
  const int64_t N = pw.n(), ldc = N + 2;
  std::vector<int32_t> c(size_t(M * ldc), -777);
  kern.fn(M, pw.k(), 0, N, a.data(), lda, static_cast<const int8_t*>(pw.data()), pw.col_sums(), c.data(), ldc);
  std::vector<int32_t> out(size_t(M * N));
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) out[size_t(m * N + n)] = c[size_t(m * ldc + n)];
    for (int64_t n = N; n < ldc; ++n) EXPECT_EQ(c[size_t(m * ldc + n)], -777) << kern.name << " wrote pad";
  }
  return out;
}

TEST(GemmS8, EveryVariantMatchesTheOracleExactly) {
  Rng rng(31337);
  for (const Mnk& s : kShapes) {
    const std::vector<int8_t> b = random_s8(rng, size_t(s.K * s.N));
    PackedWeights pw = gemm::pack_weights_s8(b.data(), s.K, s.N, s.N, 1);
    const int64_t lda = s.K + (s.M % 3);
    // Exactly (M - 1) * lda + K bytes: a read past the last row is caught by AddressSanitizer.
    const std::vector<int8_t> a = random_s8(rng, size_t((s.M - 1) * lda + s.K));
    const std::vector<int32_t> expected = s8_oracle(a, lda, b, s.K, s.N, s.M);
    for (const gemm::GemmS8Kernel& kern : s8_rows())
      EXPECT_EQ(run_s8(kern, a, lda, pw, s.M), expected) << kern.name << " M=" << s.M << " N=" << s.N << " K=" << s.K;
  }
}

TEST(GemmS8, PrefillShapesMatchTheOracleExactly) {
  // Many row blocks over several panel pairs, as an expert's rows in prefill: the VNNI kernel's later row blocks
  // fetch the next pair and the tiles' C rows ahead (cache hints only: the sums must not change). Column ranges
  // ending in a partial pair or a single panel, K with and without a partial 64, and row counts that leave blocks
  // of 5 and 6.
  Rng rng(2718);
  for (int64_t K : {64, 65, 1000})
    for (int64_t N : {160, 227, 512}) {
      const std::vector<int8_t> b = random_s8(rng, size_t(K * N));
      PackedWeights pw = gemm::pack_weights_s8(b.data(), K, N, N, 1);
      for (int64_t M : {25, 31, 61, 128}) {
        const std::vector<int8_t> a = random_s8(rng, size_t(M * K));
        const std::vector<int32_t> expected = s8_oracle(a, K, b, K, N, M);
        for (const gemm::GemmS8Kernel& kern : s8_rows())
          EXPECT_EQ(run_s8(kern, a, K, pw, M), expected) << kern.name << " M=" << M << " N=" << N << " K=" << K;
      }
    }
}

TEST(GemmS8, ExtremesAreExact) {
  // All -128 x -128 (the largest products), -128 x 127 and 127 x 127, with K = 4099 (not a multiple of 4) and
  // K = 65535 (the largest K allowed: |C| up to 65535 * 16384 = 1073725440).
  for (int64_t K : {4099, 65535}) {
    const int64_t M = K > 5000 ? 2 : 13, N = 33;
    for (auto [av, bv] : {std::pair<int, int>{-128, -128}, {-128, 127}, {127, 127}, {127, -128}}) {
      const std::vector<int8_t> b(size_t(K * N), int8_t(bv));
      const std::vector<int8_t> a(size_t(M * K), int8_t(av));
      PackedWeights pw = gemm::pack_weights_s8(b.data(), K, N, N, 1);
      const std::vector<int32_t> expected(size_t(M * N), int32_t(int64_t(av) * bv * K));
      for (const gemm::GemmS8Kernel& kern : s8_rows())
        EXPECT_EQ(run_s8(kern, a, K, pw, M), expected) << kern.name << " K=" << K << " a=" << av << " b=" << bv;
    }
  }
}

TEST(GemmS8, RowsWithAndWithoutMinusOneTwentyEight) {
  // Rows take vpmaddubsw on AVX2 when no activation is -128 (exact there; blocks of 1 and 2 rows), the widening
  // path otherwise: both, with weights over the whole range (-128 included), K with a partial group of 4, several
  // panels.
  Rng rng(4242);
  for (int64_t K : {37, 513})
    for (int64_t M : {1, 2, 3, 5})
      for (bool with_min : {false, true}) {
        const int64_t N = 95;
        const std::vector<int8_t> b = random_s8(rng, size_t(K * N));
        PackedWeights pw = gemm::pack_weights_s8(b.data(), K, N, N, 1);
        std::vector<int8_t> a(size_t(M * K));
        for (auto& v : a) v = int8_t(rng.integer(-127, 127));
        a[size_t(M * K - 3)] = int8_t(-127);
        if (with_min) a[size_t(M * K - 2)] = int8_t(-128);
        const std::vector<int32_t> expected = s8_oracle(a, K, b, K, N, M);
        for (const gemm::GemmS8Kernel& kern : s8_rows())
          EXPECT_EQ(run_s8(kern, a, K, pw, M), expected)
              << kern.name << " M=" << M << " K=" << K << (with_min ? " with -128" : "");
      }
}

TEST(GemmS8, ColumnRangesStartingMidMatrix) {
  Rng rng(4);
  const int64_t N = 95, K = 21;
  const std::vector<int8_t> b = random_s8(rng, size_t(K * N));
  PackedWeights pw = gemm::pack_weights_s8(b.data(), K, N, N, 1);
  for (int64_t M : {1, 2, 7, 13}) {
    const std::vector<int8_t> a = random_s8(rng, size_t(M * K));
    const std::vector<int32_t> expected = s8_oracle(a, K, b, K, N, M);
    for (const gemm::GemmS8Kernel& kern : s8_rows()) {
      for (auto [n0, n1] : {std::pair<int64_t, int64_t>{32, 95}, {64, 95}, {32, 64}, {64, 71}, {0, 40}, {64, 64}}) {
        const int64_t width = n1 - n0;
        std::vector<int32_t> c(size_t(M * width + 1), -777);
        kern.fn(M, K, n0, n1, a.data(), K, static_cast<const int8_t*>(pw.data()), pw.col_sums(), c.data(), width);
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = n0; n < n1; ++n)
            ASSERT_EQ(c[size_t(m * width + n - n0)], expected[size_t(m * N + n)])
                << kern.name << " [" << n0 << ", " << n1 << ") M=" << M << " at " << m << "," << n;
        EXPECT_EQ(c.back(), -777) << kern.name << " wrote past the range";
      }
    }
  }
}

TEST(GemmS8, ZeroK) {
  PackedWeights pw = gemm::pack_weights_s8(nullptr, 0, 33, 33, 1);
  ASSERT_NE(pw.col_sums(), nullptr);
  int8_t a_dummy = 1;
  for (const gemm::GemmS8Kernel& kern : s8_rows()) {
    std::vector<int32_t> c(size_t(2 * 33), -777);
    kern.fn(2, 0, 0, 33, &a_dummy, 0, static_cast<const int8_t*>(pw.data()), pw.col_sums(), c.data(), 33);
    for (int32_t v : c) EXPECT_EQ(v, 0) << kern.name;
  }
}

// Each GEMM row of the registry at the edges of its own register tile: M of 1, tile_m - 1, tile_m, tile_m + 1 and
// 2 tile_m + 1; N of tile_n - 1, tile_n + 1 and 2 tile_n + 1 (a partial vector and a partial panel); K of 1 and a
// prime. Floats bitwise against the fma-order oracle, int8 exactly.
TEST(GemmRegistry, EveryRowAtTheEdgesOfItsTile) {
  Rng rng(99);
  int rows = 0;
  for (const kernels::KernelInfo& k : kernels::registry()) {
    if (k.family != std::string("gemm") || !kernels::runs_here_portable(k)) continue;
    if (k.in == DType::u8) continue;  // int4 rows (K a multiple of G): tests/kernels/gemm_u4_test.cpp
    if (std::holds_alternative<gemm::GemmBf16AFn>(k.fn)) continue;  // tests/kernels/gemm_bf16a_test.cpp
    ++rows;
    const int64_t tm = k.tile_m, tn = k.tile_n;
    for (int64_t M : {int64_t(1), tm - 1, tm, tm + 1, 2 * tm + 1})
      for (int64_t N : {tn - 1, tn + 1, 2 * tn + 1})
        for (int64_t K : {int64_t(1), int64_t(37)}) {
          if (M < 1 || N < 1) continue;
          SCOPED_TRACE(std::string(k.name) + " M=" + std::to_string(M) + " N=" + std::to_string(N) +
                       " K=" + std::to_string(K));
          if (k.op == kernels::Op::gemm_float) {
            Tensor w = rng.normal_tensor(k.in, {K, N});
            PackedWeights pw = gemm::pack_weights_f(w.data(), k.in, K, N, N, 1);
            const std::vector<float> a = make_a(rng, M, K, K);
            const gemm::GemmFloatKernel kern{std::get<gemm::GemmFloatFn>(k.fn), k.name};
            EXPECT_TRUE(same_floats(float_oracle(a, K, w, M), run_float(kern, a, K, pw, M), N));
          } else {
            const std::vector<int8_t> a = random_s8(rng, size_t(M * K)), b = random_s8(rng, size_t(K * N));
            PackedWeights pw = gemm::pack_weights_s8(b.data(), K, N, N, 1);
            const gemm::GemmS8Kernel kern{std::get<gemm::GemmS8Fn>(k.fn), k.name};
            EXPECT_EQ(run_s8(kern, a, K, pw, M), s8_oracle(a, K, b, K, N, M));
          }
        }
  }
  EXPECT_GE(rows, 4);  // at least the scalar rows
}

}  // namespace
}  // namespace moefuse
