// The AMX GEMM kernels (src/kernels/gemm/amx_gemm.h, gemm_amx__amx.cpp).
//
// On every machine: the drivers run on a scalar model of the tiles (EmulatedTiles below: each tile 16 rows x 64
// bytes, TDPBSSD exact, TDPBF16PS modelled as the portable bf16 contract's two fma_daz_ftz per pair), so the layout,
// the A/B/C edge buffers, the k blocks and the column ranges are checked bit for bit against the contracts' oracles
// without AMX hardware: int8 against exact sums, bf16 against the bf16 chain (with that model the driver computes
// the portable contract exactly).
// On a machine with the amx level: the real kernels — int8 exactly (tests/kernels/gemm_test.cpp walks the int8 rows
// too), bf16 (native tier) within the stated tolerance of the portable chain and bit for bit independent of M, of
// the rows beside a row, of the column range and of the thread.
#include <gtest/gtest.h>

#include <array>
#include <bit>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "base/bf16_dot.h"
#include "kernels/gemm/amx_gemm.h"
#include "kernels/gemm/gemm.h"
#include "kernels/registry.h"
#include "moefuse/cpu.h"
#include "util/gemm_sweep.h"
#include "util/random.h"

namespace moefuse {
namespace {

using gemm::kGemmNR;
using gemm::PackedWeights;
using testing::random_s8;
using testing::Rng;
using testing::s8_oracle;

// A scalar model of the eight tiles (16 rows x 64 bytes each).
struct EmulatedTiles {
  static inline thread_local std::array<std::array<uint8_t, 1024>, 8> tile{};
  static inline thread_local int configured = 0;
  static void configure() { ++configured; }
  static void release() { --configured; }
  template <int t>
  static void zero() {
    tile[t].fill(0);
  }
  template <int t>
  static void load(const void* p, int64_t stride) {
    for (int r = 0; r < 16; ++r) std::memcpy(tile[t].data() + 64 * r, static_cast<const uint8_t*>(p) + r * stride, 64);
  }
  template <int t>
  static void store(void* p, int64_t stride) {
    for (int r = 0; r < 16; ++r) std::memcpy(static_cast<uint8_t*>(p) + r * stride, tile[t].data() + 64 * r, 64);
  }
  template <class E>
  static E get(int t, int r, int i) {
    E e;
    std::memcpy(&e, tile[t].data() + 64 * r + sizeof(E) * i, sizeof(E));
    return e;
  }
  template <class E>
  static void put(int t, int r, int i, E e) {
    std::memcpy(tile[t].data() + 64 * r + sizeof(E) * i, &e, sizeof(E));
  }
  template <int c, int x, int y>
  static void dp_s8() {
    for (int m = 0; m < 16; ++m)
      for (int n = 0; n < 16; ++n) {
        int32_t acc = get<int32_t>(c, m, n);
        for (int r = 0; r < 16; ++r)
          for (int i = 0; i < 4; ++i) acc += int32_t(get<int8_t>(x, m, 4 * r + i)) * get<int8_t>(y, r, 4 * n + i);
        put<int32_t>(c, m, n, acc);
      }
  }
  template <int c, int x, int y>
  static void dp_bf16() {
    const auto f = [](uint16_t b) { return std::bit_cast<float>(uint32_t(b) << 16); };
    for (int m = 0; m < 16; ++m)
      for (int n = 0; n < 16; ++n) {
        float acc = get<float>(c, m, n);
        for (int r = 0; r < 16; ++r) {
          acc = fma_daz_ftz(f(get<uint16_t>(x, m, 2 * r + 1)), f(get<uint16_t>(y, r, 2 * n + 1)), acc);
          acc = fma_daz_ftz(f(get<uint16_t>(x, m, 2 * r)), f(get<uint16_t>(y, r, 2 * n)), acc);
        }
        put<float>(c, m, n, acc);
      }
  }
};

// Shapes at the edges of the 32 x 32 block, of a tile's 16 rows and columns, of the 64-k (int8) and 32-k (bf16)
// steps, of the VNNI groups of 4 and of the 512-k bf16 blocks.
const int64_t kMs[] = {1, 2, 15, 16, 17, 31, 32, 33, 50};
const int64_t kNs[] = {1, 16, 17, 32, 33, 70};
const int64_t kS8Ks[] = {1, 3, 4, 5, 63, 64, 65, 130, 257};
const int64_t kBf16Ks[] = {1, 2, 3, 31, 32, 33, 64, 97, 511, 512, 513, 1100};

// Runs `run(n0, n1, c, ldc)` over [0, N) and over [32, N - 1) and compares with the oracle; -7 sentinels catch
// writes past n1.
template <class Run>
void check_s8(const Run& run, const std::string& name, const std::vector<int32_t>& want, int64_t M, int64_t K,
              int64_t N) {
  for (auto [n0, n1] : {std::pair<int64_t, int64_t>{0, N}, {kGemmNR, N - 1}}) {
    if (n0 >= n1) continue;
    const int64_t ldc = n1 - n0 + 3;
    std::vector<int32_t> c(size_t(M * ldc), -7);
    run(n0, n1, c.data(), ldc);
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t n = n0; n < n1; ++n)
        ASSERT_EQ(c[size_t(m * ldc + n - n0)], want[size_t(m * N + n)])
            << name << " M=" << M << " K=" << K << " N=" << N << " m=" << m << " n=" << n << " n0=" << n0;
      for (int64_t n = n1 - n0; n < ldc; ++n) ASSERT_EQ(c[size_t(m * ldc + n)], -7) << name << ": wrote past n1";
    }
  }
}

// Every int8 shape of the sweep, with `run(M, K, a, lda, pw, n0, n1, c, ldc)` the kernel under test.
template <class Kernel>
void sweep_s8(uint64_t seed, const std::string& name, const Kernel& kernel) {
  Rng rng(seed);
  for (int64_t K : kS8Ks)
    for (int64_t N : kNs)
      for (int64_t M : kMs) {
        const std::vector<int8_t> b = random_s8(rng, size_t(K * N));
        const PackedWeights pw = gemm::pack_weights_s8(b.data(), K, N, N, 1);
        const int64_t lda = K + M % 3;
        const std::vector<int8_t> a = random_s8(rng, size_t((M - 1) * lda + K));  // no byte past the last row
        check_s8([&](int64_t n0, int64_t n1, int32_t* c, int64_t ldc) { kernel(M, K, a, lda, pw, n0, n1, c, ldc); },
                 name, s8_oracle(a, lda, b, K, N, M), M, K, N);
      }
}

TEST(GemmAmxModel, Int8DriverEqualsExactSumsAtEveryEdge) {
  sweep_s8(4242, "model", [](int64_t M, int64_t K, const std::vector<int8_t>& a, int64_t lda, const PackedWeights& pw,
                             int64_t n0, int64_t n1, int32_t* c, int64_t ldc) {
    gemm::amx::gemm_s8<EmulatedTiles>(M, K, n0, n1, a.data(), lda, static_cast<const int8_t*>(pw.data()), c, ldc);
  });
  EXPECT_EQ(EmulatedTiles::configured, 0) << "every configure has its release";
}

// ─── The int8 schedules (amx_gemm.h): every one on the model, bit for bit against the exact sums ────────────────

// Each schedule of the int8 driver on the model, with its name.
template <class Fn>
void for_each_s8_schedule(const Fn& fn) {
  gemm::amx::visit_s8_schedules<EmulatedTiles>(
      [&](const char* name, auto driver) { fn(name, decltype(driver)::value); });
}

using S8Driver = void (*)(int64_t, int64_t, int64_t, int64_t, const int8_t*, int64_t, const int8_t*, int32_t*, int64_t);

void run_s8_driver(S8Driver d, int64_t M, int64_t K, const std::vector<int8_t>& a, int64_t lda, const PackedWeights& pw,
                   int64_t n0, int64_t n1, int32_t* c, int64_t ldc) {
  d(M, K, n0, n1, a.data(), lda, static_cast<const int8_t*>(pw.data()), c, ldc);
}

TEST(GemmAmxModel, Int8SchedulesEqualExactSumsAtEveryEdge) {
  for_each_s8_schedule([](const char* name, S8Driver d) {
    sweep_s8(4243, name, [d](int64_t M, int64_t K, const std::vector<int8_t>& a, int64_t lda, const PackedWeights& pw,
                             int64_t n0, int64_t n1, int32_t* c, int64_t ldc) {
      run_s8_driver(d, M, K, a, lda, pw, n0, n1, c, ldc);
    });
  });
  EXPECT_EQ(EmulatedTiles::configured, 0);
}

// Shapes at the edges of the k blocks (multiples of 256, the smallest k block tested, and a last step short of 64 k
// after whole blocks), of the row blocks (multiples of 128) and of the column blocks (multiples of 256; the range
// [32, N - 1) shifts them by a panel).
TEST(GemmAmxModel, Int8SchedulesAtTheBlockEdges) {
  using gemm::amx::kS8ColBlock;
  using gemm::amx::kS8RowBlock;
  constexpr int64_t kS8KBlock = 512;  // the smallest k block the schedules take (multiples of it are tested too)
  struct Shape {
    int64_t M, K, N;
  };
  const Shape shapes[] = {
      {50, kS8KBlock - 1, 70},          {50, kS8KBlock, 70},          {50, kS8KBlock + 1, 70},
      {33, kS8KBlock + 64, 40},         {17, 2 * kS8KBlock + 3, 33},  {50, 2 * kS8KBlock + 76, 70},
      {kS8RowBlock - 1, 600, 40},       {kS8RowBlock + 1, 600, 40},   {kS8RowBlock + 44, 1030, 33},
      {20, 520, kS8ColBlock},           {20, 520, kS8ColBlock + 33},  {3, 1100, kS8ColBlock + 100},
      {50, 2 * kS8KBlock - 1, 70},      {40, 2 * kS8KBlock, 40},      {33, 4 * kS8KBlock + 1, 33},
      // the other row and column blocks the schedules take (128 and 512 rows, 256 and 1024 columns)
      {2 * kS8RowBlock + 8, 130, 33},   {5, 300, 2 * kS8ColBlock + 40},
      // the copy of A's k block (gemm::amx::kS8KBlock = 2048)
      {17, 2047, 40},                   {33, 2048, 33},               {3, 2049, 33},
      {20, 4096 + 63, 33},
  };
  Rng rng(4244);
  for (const Shape& s : shapes) {
    const std::vector<int8_t> b = random_s8(rng, size_t(s.K * s.N));
    const PackedWeights pw = gemm::pack_weights_s8(b.data(), s.K, s.N, s.N, 1);
    const int64_t lda = s.K + s.M % 3;
    const std::vector<int8_t> a = random_s8(rng, size_t((s.M - 1) * lda + s.K));
    const std::vector<int32_t> want = s8_oracle(a, lda, b, s.K, s.N, s.M);
    for_each_s8_schedule([&](const char* name, S8Driver d) {
      check_s8(
          [&](int64_t n0, int64_t n1, int32_t* c, int64_t ldc) {
            run_s8_driver(d, s.M, s.K, a, lda, pw, n0, n1, c, ldc);
          },
          name, want, s.M, s.K, s.N);
    });
  }
  EXPECT_EQ(EmulatedTiles::configured, 0);
}

// Extreme values: every product -128 x -128 (and -128 x 127) over the longest K of the sweep, carried through the k
// blocks; and K = 0 (no step: zeros).
TEST(GemmAmxModel, Int8SchedulesAtExtremeValuesAndZeroK) {
  const int64_t M = 33, K = gemm::amx::kS8KBlock + 65, N = 40;
  std::vector<int8_t> b(size_t(K * N), int8_t(-128)), a(size_t(M * K), int8_t(-128));
  for (int64_t n = 0; n < N; n += 2)
    for (int64_t k = 0; k < K; ++k) b[size_t(k * N + n)] = 127;
  const PackedWeights pw = gemm::pack_weights_s8(b.data(), K, N, N, 1);
  const std::vector<int32_t> want = s8_oracle(a, K, b, K, N, M);
  ASSERT_EQ(want[1], int32_t(K * 128 * 128));
  const PackedWeights empty = gemm::pack_weights_s8(nullptr, 0, N, N, 1);
  for_each_s8_schedule([&](const char* name, S8Driver d) {
    check_s8([&](int64_t n0, int64_t n1, int32_t* c, int64_t ldc) { run_s8_driver(d, M, K, a, K, pw, n0, n1, c, ldc); },
             name, want, M, K, N);
    std::vector<int32_t> c(size_t(M * N), -7);
    run_s8_driver(d, M, 0, a, 0, empty, 0, N, c.data(), N);
    for (int32_t x : c) ASSERT_EQ(x, 0) << name << " K=0";
  });
  EXPECT_EQ(EmulatedTiles::configured, 0);
}

std::vector<bfloat16> random_bf16(Rng& rng, size_t n) {
  std::vector<bfloat16> v(n);
  for (bfloat16& x : v) x = to_bf16(rng.normal());
  return v;
}

std::vector<float> widen(const std::vector<bfloat16>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = to_f32(v[i]);
  return out;
}

// The bf16 driver of schedule `Source` on the model against the bf16 contract, fp32 rows and bf16 rows.
template <gemm::amx::BF16A Source>
void check_bf16_driver_on_the_model(uint64_t seed, const std::string& schedule) {
  Rng rng(seed);
  for (int64_t K : kBf16Ks)
    for (int64_t N : kNs)
      for (int64_t M : {int64_t(1), int64_t(16), int64_t(17), int64_t(33), int64_t(50), int64_t(64)}) {
        const std::vector<bfloat16> b = random_bf16(rng, size_t(K * N));
        const PackedWeights pw = gemm::pack_weights_f(b.data(), DType::bf16, K, N, N, 1);
        const int64_t lda = K + M % 3;
        const std::vector<bfloat16> a = random_bf16(rng, size_t((M - 1) * lda + K));
        const std::vector<float> af = widen(a);
        const std::vector<float> want =
            testing::bf16_chain(af, lda, M, K, N, [&](int64_t k, int64_t n) { return to_f32(b[size_t(k * N + n)]); });
        const auto* bw = static_cast<const bfloat16*>(pw.data());
        gemm::GemmFloatKernel f32_entry{
            [](int64_t M_, int64_t K_, int64_t n0, int64_t n1, const float* a_, int64_t lda_, const void* b_,
               float* c, int64_t ldc) {
              gemm::amx::gemm_bf16<EmulatedTiles, gemm::amx::F32Rows, Source>(
                  M_, K_, n0, n1, gemm::amx::F32Rows{a_, lda_}, static_cast<const bfloat16*>(b_), c, ldc);
            },
            "model, fp32 rows"};
        testing::expect_columns_match(f32_entry, M, K, N, af, lda, pw.data(), want,
                                      schedule + " K=" + std::to_string(K));
        // bf16 rows, read in place where a tile is whole
        for (auto [n0, n1] : {std::pair<int64_t, int64_t>{0, N}, {kGemmNR, N - 1}}) {
          if (n0 >= n1) continue;
          const int64_t ldc = n1 - n0 + 1;
          std::vector<float> c(size_t(M * ldc), -7.0f);
          gemm::amx::gemm_bf16<EmulatedTiles, gemm::amx::Bf16Rows, Source>(M, K, n0, n1,
                                                                           gemm::amx::Bf16Rows{a.data(), lda}, bw,
                                                                           c.data(), ldc);
          for (int64_t m = 0; m < M; ++m) {
            for (int64_t n = n0; n < n1; ++n)
              ASSERT_EQ(std::bit_cast<uint32_t>(c[size_t(m * ldc + n - n0)]),
                        std::bit_cast<uint32_t>(want[size_t(m * N + n)]))
                  << schedule << ", bf16 rows M=" << M << " K=" << K << " N=" << N << " m=" << m << " n=" << n;
            ASSERT_EQ(c[size_t(m * ldc + ldc - 1)], -7.0f) << "wrote past n1";
          }
        }
      }
  EXPECT_EQ(EmulatedTiles::configured, 0);
}

TEST(GemmAmxModel, Bf16DriverOnTheModelIsTheBf16ContractBitwise) {
  check_bf16_driver_on_the_model<gemm::amx::BF16A::in_place>(777, "in place");
}

// The dense copy of A (its zero rows past M and zero k past K in the last step).
TEST(GemmAmxModel, Bf16DenseScheduleOnTheModelIsTheBf16ContractBitwise) {
  check_bf16_driver_on_the_model<gemm::amx::BF16A::dense>(778, "dense");
}

TEST(GemmAmxModel, Bf16DriverWithZeroKWritesZeros) {
  std::vector<float> c(3 * 40, -7.0f);
  const PackedWeights pw = gemm::pack_weights_f(nullptr, DType::bf16, 0, 40, 40, 1);
  const float a = 1.0f;
  gemm::amx::gemm_bf16<EmulatedTiles>(3, 0, 0, 40, gemm::amx::F32Rows{&a, 0},
                                      static_cast<const bfloat16*>(pw.data()), c.data(), 40);
  for (float x : c) ASSERT_EQ(std::bit_cast<uint32_t>(x), 0u);
  std::fill(c.begin(), c.end(), -7.0f);
  gemm::amx::gemm_bf16<EmulatedTiles, gemm::amx::F32Rows, gemm::amx::BF16A::dense>(
      3, 0, 0, 40, gemm::amx::F32Rows{&a, 0}, static_cast<const bfloat16*>(pw.data()), c.data(), 40);
  for (float x : c) ASSERT_EQ(std::bit_cast<uint32_t>(x), 0u);
}

// ─── On AMX hardware ────────────────────────────────────────────────────────────────────────────────────────────

// The real AMX kernels run where the level is available.
#define SKIP_WITHOUT_AMX() \
  if (detected_isa() < Isa::amx) GTEST_SKIP() << "no amx level: " << amx_unused_reason()

TEST(GemmAmx, TheTiersSelectTheAmxKernelsAsDocumented) {
  SKIP_WITHOUT_AMX();
  const gemm::GemmKernels native = gemm::select_gemm_kernels(Isa::amx, true, Numerics::native);
  const gemm::GemmKernels portable = gemm::select_gemm_kernels(Isa::amx, true, Numerics::portable);
  EXPECT_STREQ(native.s8.name, "gemm_s8_s32_32x32__amx");
  EXPECT_STREQ(portable.s8.name, "gemm_s8_s32_32x32__amx");  // exact: every tier
  // bf16 in portable (and in native without MOEFUSE_AMX_BF16=on): vdpbf16ps, or the FMA kernels where the family
  // prefers them (the same bits).
  const std::string isa = prefer_bf16_dot() ? "avx512bf16" : "avx512";
  EXPECT_EQ(portable.bf16w.name, "gemm_bf16w_f32_6x64__" + isa);
  EXPECT_EQ(portable.bf16w_bf16a.name, "gemm_bf16w_bf16a_f32_6x64__" + isa);
  EXPECT_EQ(native.bf16w.name, native_amx_bf16() ? "gemm_bf16w_f32_32x32__amx" : "gemm_bf16w_f32_6x64__" + isa);
  EXPECT_EQ(native.bf16w_bf16a.name,
            native_amx_bf16() ? "gemm_bf16w_bf16a_f32_32x32__amx" : "gemm_bf16w_bf16a_f32_6x64__" + isa);
  EXPECT_EQ(gemm::select_gemm_kernels(Isa::avx512bf16, true, Numerics::native).bf16w.name,
            "gemm_bf16w_f32_6x64__" + isa);
}

TEST(GemmAmx, Int8KernelEqualsExactSums) {
  SKIP_WITHOUT_AMX();
  const gemm::GemmKernels k = gemm::select_gemm_kernels(Isa::amx, true, Numerics::portable);
  sweep_s8(99, k.s8.name, [&](int64_t M, int64_t K, const std::vector<int8_t>& a, int64_t lda, const PackedWeights& pw,
                              int64_t n0, int64_t n1, int32_t* c, int64_t ldc) {
    k.s8.fn(M, K, n0, n1, a.data(), lda, static_cast<const int8_t*>(pw.data()), pw.col_sums(), c, ldc);
  });
}

// Every schedule of the int8 driver on the tile instructions (gemm_bench's schedule rows), over the sweep and the
// block edges: exact.
TEST(GemmAmx, Int8SchedulesEqualExactSums) {
  SKIP_WITHOUT_AMX();
  for (const gemm::amx::S8Schedule& s : gemm::amx::s8_schedules()) {
    const auto run = [&](int64_t M, int64_t K, const std::vector<int8_t>& a, int64_t lda, const PackedWeights& pw,
                         int64_t n0, int64_t n1, int32_t* c, int64_t ldc) {
      s.fn(M, K, n0, n1, a.data(), lda, static_cast<const int8_t*>(pw.data()), pw.col_sums(), c, ldc);
    };
    sweep_s8(98, s.name, run);
    Rng rng(97);
    for (int64_t K : {511, 1024, 1100, 2049})
      for (auto [M, N] : {std::pair<int64_t, int64_t>{300, 70}, {37, 545}}) {
        const std::vector<int8_t> b = random_s8(rng, size_t(K * N));
        const PackedWeights pw = gemm::pack_weights_s8(b.data(), K, N, N, 1);
        const int64_t lda = K + 1;
        const std::vector<int8_t> a = random_s8(rng, size_t((M - 1) * lda + K));
        check_s8([&](int64_t n0, int64_t n1, int32_t* c, int64_t ldc) { run(M, K, a, lda, pw, n0, n1, c, ldc); },
                 s.name, s8_oracle(a, lda, b, K, N, M), M, K, N);
      }
  }
}

// The native tier's tolerance against the portable result (docs/layer.md): both are fp32 accumulations of the same
// products, each within about K/2 roundings of 2^-24 relative to Σ|a b| of the exact sum, and both flush subnormals;
// so |native - portable| <= K * 2^-23 * Σ_k |a_k b_k| + 2^-126 (the flush).
void expect_native_close(const std::vector<float>& c, const std::vector<float>& portable, const std::vector<float>& a,
                         int64_t lda, const std::vector<bfloat16>& b, int64_t M, int64_t K, int64_t N,
                         const std::string& what) {
  int differ = 0;
  double worst = 0;  // the largest |native - portable| as a share of its bound
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double mag = 0;
      for (int64_t k = 0; k < K; ++k) mag += std::fabs(double(a[size_t(m * lda + k)]) * to_f32(b[size_t(k * N + n)]));
      const double bound = double(K) * 0x1p-23 * mag + 0x1p-126;
      const float x = c[size_t(m * N + n)], y = portable[size_t(m * N + n)];
      ASSERT_LE(std::fabs(double(x) - double(y)), bound) << what << " m=" << m << " n=" << n << " native " << x
                                                          << " portable " << y;
      differ += x != y;
      worst = std::max(worst, std::fabs(double(x) - double(y)) / bound);
    }
  // Printed so that a run on AMX hardware shows how far inside the bound the tier is (docs/layer.md quotes it).
  std::printf("[ native ] %s: %d of %lld outputs differ from portable; the largest difference is %.3g of the bound\n",
              what.c_str(), differ, static_cast<long long>(M * N), worst);
}

std::vector<float> run_float(gemm::GemmFloatFn fn, int64_t M, int64_t K, int64_t N, const float* a, int64_t lda,
                             const PackedWeights& pw) {
  std::vector<float> c(size_t(M * N));
  fn(M, K, 0, N, a, lda, pw.data(), c.data(), N);
  return c;
}

TEST(GemmAmx, Bf16NativeIsWithinTheToleranceOfPortableAndDeterministic) {
  SKIP_WITHOUT_AMX();
  const gemm::GemmKernels nat = gemm::select_gemm_kernels(Isa::amx, true, Numerics::native);
  const gemm::GemmKernels port = gemm::select_gemm_kernels(Isa::amx, true, Numerics::portable);
  Rng rng(2026);
  for (int64_t K : kBf16Ks)
    for (int64_t N : kNs) {
      const int64_t M = 37;
      const std::vector<bfloat16> b = random_bf16(rng, size_t(K * N));
      const PackedWeights pw = gemm::pack_weights_f(b.data(), DType::bf16, K, N, N, 1);
      const int64_t lda = K + 1;
      const std::vector<bfloat16> a = random_bf16(rng, size_t((M - 1) * lda + K));
      const std::vector<float> af = widen(a);
      const std::vector<float> portable = run_float(port.bf16w.fn, M, K, N, af.data(), lda, pw);
      const std::vector<float> native = run_float(nat.bf16w.fn, M, K, N, af.data(), lda, pw);
      const std::string what = "K" + std::to_string(K) + "N" + std::to_string(N);
      expect_native_close(native, portable, af, lda, b, M, K, N, what);
      // bf16 rows give the fp32 rows' bits
      std::vector<float> c(size_t(M * N));
      nat.bf16w_bf16a.fn(M, K, 0, N, a.data(), lda, pw.data(), c.data(), N);
      ASSERT_EQ(c, native) << what;
      // every row alone, and in blocks of 1..5 rows starting anywhere: the same bits
      for (int64_t m0 = 0, rows = 1; m0 < M; m0 += rows, rows = rows % 5 + 1) {
        const int64_t r = std::min(rows, M - m0);
        std::vector<float> part(size_t(r * N));
        nat.bf16w_bf16a.fn(r, K, 0, N, a.data() + m0 * lda, lda, pw.data(), part.data(), N);
        for (int64_t i = 0; i < r * N; ++i)
          ASSERT_EQ(std::bit_cast<uint32_t>(part[size_t(i)]), std::bit_cast<uint32_t>(native[size_t(m0 * N + i)]))
              << what << " rows " << m0 << "+" << r;
      }
      // a column range that starts at the second panel
      if (N > kGemmNR) {
        std::vector<float> cr(size_t(M * (N - kGemmNR)));
        nat.bf16w.fn(M, K, kGemmNR, N, af.data(), lda, pw.data(), cr.data(), N - kGemmNR);
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = kGemmNR; n < N; ++n)
            ASSERT_EQ(std::bit_cast<uint32_t>(cr[size_t(m * (N - kGemmNR) + n - kGemmNR)]),
                      std::bit_cast<uint32_t>(native[size_t(m * N + n)]));
      }
      // another thread
      std::vector<float> other;
      std::thread([&] { other = run_float(nat.bf16w.fn, M, K, N, af.data(), lda, pw); }).join();
      ASSERT_EQ(other, native) << what;
    }
}

// Both schedules of the bf16 driver on the tile instructions (gemm_bench's schedule rows): the same tile products in
// the same order, so the native row's bits, for fp32 and bf16 rows.
TEST(GemmAmx, Bf16SchedulesGiveTheNativeRowsBits) {
  SKIP_WITHOUT_AMX();
  const gemm::GemmKernels nat = gemm::select_gemm_kernels(Isa::amx, true, Numerics::native);
  Rng rng(2027);
  for (int64_t K : kBf16Ks)
    for (int64_t M : {int64_t(1), int64_t(17), int64_t(37), int64_t(64), int64_t(130)}) {
      const int64_t N = 70, lda = K + 1;
      const std::vector<bfloat16> b = random_bf16(rng, size_t(K * N));
      const PackedWeights pw = gemm::pack_weights_f(b.data(), DType::bf16, K, N, N, 1);
      const std::vector<bfloat16> a = random_bf16(rng, size_t((M - 1) * lda + K));
      const std::vector<float> af = widen(a);
      const std::vector<float> native = run_float(nat.bf16w.fn, M, K, N, af.data(), lda, pw);
      for (const gemm::amx::Bf16Schedule& s : gemm::amx::bf16_schedules()) {
        ASSERT_EQ(run_float(s.f32, M, K, N, af.data(), lda, pw), native) << s.f32_name << " K=" << K << " M=" << M;
        std::vector<float> c(size_t(M * N));
        s.bf16a(M, K, 0, N, a.data(), lda, pw.data(), c.data(), N);
        ASSERT_EQ(c, native) << s.bf16a_name << " K=" << K << " M=" << M;
      }
    }
}

TEST(GemmAmx, Bf16NativeFallsBackToPortableForRowsThatAreNotBf16) {
  SKIP_WITHOUT_AMX();
  const gemm::GemmKernels nat = gemm::select_gemm_kernels(Isa::amx, true, Numerics::native);
  const gemm::GemmKernels port = gemm::select_gemm_kernels(Isa::amx, true, Numerics::portable);
  Rng rng(5);
  const int64_t M = 20, K = 300, N = 40;
  const std::vector<bfloat16> b = random_bf16(rng, size_t(K * N));
  const PackedWeights pw = gemm::pack_weights_f(b.data(), DType::bf16, K, N, N, 1);
  std::vector<float> a(size_t(M * K));
  for (float& x : a) x = rng.normal();  // fp32 values, not bf16
  EXPECT_EQ(run_float(nat.bf16w.fn, M, K, N, a.data(), K, pw), run_float(port.bf16w.fn, M, K, N, a.data(), K, pw));
}

TEST(GemmAmx, SpecialValues) {
  SKIP_WITHOUT_AMX();
  const gemm::GemmKernels nat = gemm::select_gemm_kernels(Isa::amx, true, Numerics::native);
  const int64_t M = 3, K = 40, N = 33;
  std::vector<bfloat16> b(size_t(K * N), to_bf16(1.0f));
  const PackedWeights pw = gemm::pack_weights_f(b.data(), DType::bf16, K, N, N, 1);
  std::vector<float> a(size_t(M * K), 0.0f);
  a[0] = std::numeric_limits<float>::infinity();                    // row 0: +inf
  a[size_t(K)] = std::numeric_limits<float>::quiet_NaN();           // row 1: NaN
  a[size_t(2 * K)] = std::bit_cast<float>(0x00010000u);             // row 2: a subnormal, read as zero
  const std::vector<float> c = run_float(nat.bf16w.fn, M, K, N, a.data(), K, pw);
  for (int64_t n = 0; n < N; ++n) {
    EXPECT_EQ(c[size_t(n)], std::numeric_limits<float>::infinity());
    EXPECT_TRUE(std::isnan(c[size_t(N + n)]));
    EXPECT_EQ(c[size_t(2 * N + n)], 0.0f);
  }
}

}  // namespace
}  // namespace moefuse
