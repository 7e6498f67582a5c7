// The AMX-INT8 W4A8 kernel (src/kernels/gemm/amx_gemm_u4s8.h, gemm_amx__amx.cpp).
//
// On every machine: the driver runs on a scalar model of the tiles that honours their configuration
// (tests/util/amx_tile_model.h; the G = 32 step configures half-width A and half-height B tiles), bit for bit against
// the W4A8 contract's definition (per group the exact Σ (q - z) a, acc = fma(float(isum), s, acc) in group order,
// times the row scale), over the edges of the 32 x 32 block and its 16-row tiles, of the 512-k unpacked blocks, of the
// panels and the column range; and the vector unpacking (AVX-512, no tile instruction) against the scalar one.
// Both schedules of A (in place, dense). On a machine with the amx level: the real kernels over the same sweep, M
// crossing kAmxInt8MinRows (below it the VNNI kernel runs: the same bits by contract), the dispatch picking them,
// and both schedules' rows for gemm_bench.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "kernels/gemm/amx_gemm_u4s8.h"
#include "kernels/gemm/gemm.h"
#include "kernels/gemm/int4_layout.h"
#include "kernels/gemm/variants.h"
#include "moefuse/cpu.h"
#include "util/amx_tile_model.h"
#include "util/random.h"
#include "util/int4_matrix.h"

namespace moefuse {
namespace {

using gemm::kGemmNR;
using testing::ConfiguredTiles;
using testing::Rng;

struct W4 : testing::Int4Matrix {
  gemm::PackedWeights packed;
};

enum class Zeros { symmetric, asymmetric };
enum class Values { random, extreme };

// Symmetric: z = 8 everywhere (GPTQ's sym); asymmetric: any 0..15. Extreme: q and z at 0 and 15 (|q - z| = 15 both
// ways), scales with full mantissas, huge, subnormal, signed zeros.
W4 make_w4(Rng& rng, int64_t K, int64_t N, int64_t G, Zeros zeros, Values values) {
  W4 w;
  w.K = K, w.N = N, w.G = G;
  w.q.resize(size_t(K * N));
  for (auto& v : w.q)
    v = values == Values::extreme ? (rng.coin() ? uint8_t(15) : uint8_t(0)) : uint8_t(rng.integer(0, 15));
  w.zero.resize(size_t(K / G * N));
  w.scale.resize(w.zero.size());
  const float odd[] = {1e30f, -3e29f, 1.1754942e-38f, 1e-40f, -0.0f, 0.0f, 0.7071068f, -1.3333334f};
  for (size_t i = 0; i < w.zero.size(); ++i) {
    if (zeros == Zeros::symmetric) w.zero[i] = 8;
    else if (values == Values::extreme) w.zero[i] = i % 2 ? 15 : 0;
    else w.zero[i] = uint8_t(rng.integer(0, 15));
    w.scale[i] = values == Values::extreme && rng.coin(0.5) ? odd[rng.integer(0, 7)] : rng.uniform(-0.05f, 0.1f);
  }
  w.packed = gemm::pack_weights_u4(w.source(), K, N, G);
  return w;
}

using Kernel = void (*)(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a, int64_t lda,
                        const float* a_scale, const void* b, float* c, int64_t ldc);

// Runs `kernel` on M rows of random (or extreme: -128 / 127) activations over [0, N) and [32, N - 1) and compares
// bitwise with the oracle; -7 sentinels past n1 and in a row past M catch stray writes. A holds no byte past its
// last row (the sanitizer build sees an over-read).
void check(Rng& rng, const W4& w, int64_t M, Values values, Kernel kernel, const std::string& name) {
  const int64_t K = w.K, N = w.N, lda = K + M % 3;
  std::vector<int8_t> a(size_t(std::max<int64_t>((M - 1) * lda + K, 1)));
  for (auto& v : a) v = int8_t(values == Values::extreme ? (rng.coin() ? -128 : 127) : rng.integer(-128, 127));
  std::vector<float> a_scale(static_cast<size_t>(M));
  for (size_t m = 0; m < a_scale.size(); ++m) a_scale[m] = m % 7 == 3 ? -0.25f : rng.uniform(1e-4f, 0.05f);
  const std::vector<float> want = testing::w4a8_oracle(a, lda, a_scale, w, M);
  for (auto [n0, n1] : {std::pair<int64_t, int64_t>{0, N}, {kGemmNR, N - 1}}) {
    if (n0 >= n1) continue;
    const int64_t ldc = n1 - n0 + 2;
    std::vector<float> c(size_t((M + 1) * ldc), -7.0f);
    kernel(M, K, n0, n1, a.data(), lda, a_scale.data(), w.packed.data(), c.data(), ldc);
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t n = n0; n < n1; ++n)
        ASSERT_EQ(std::bit_cast<uint32_t>(c[size_t(m * ldc + n - n0)]), std::bit_cast<uint32_t>(want[size_t(m * N + n)]))
            << name << " G=" << w.G << " K=" << K << " N=" << N << " M=" << M << " m=" << m << " n=" << n
            << " n0=" << n0 << ": " << c[size_t(m * ldc + n - n0)] << " want " << want[size_t(m * N + n)];
      for (int64_t n = n1 - n0; n < ldc; ++n) ASSERT_EQ(c[size_t(m * ldc + n)], -7.0f) << name << ": wrote past n1";
    }
    for (int64_t n = 0; n < ldc; ++n) ASSERT_EQ(c[size_t(M * ldc + n)], -7.0f) << name << ": wrote past M";
  }
}

using gemm::amx::U4S8A;

template <int G, U4S8A Source>
void model_kernel(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a, int64_t lda, const float* a_scale,
                  const void* b, float* c, int64_t ldc) {
  gemm::amx::gemm_u4s8<ConfiguredTiles, G, Source>(M, K, n0, n1, a, lda, a_scale, b, c, ldc);
}

template <U4S8A Source>
Kernel model_for(int64_t G) {
  return G == 32 ? model_kernel<32, Source> : G == 64 ? model_kernel<64, Source> : model_kernel<128, Source>;
}

// K at the group and 512-k block edges: one group, two, a block less a group, a block, a block and a group, and past
// two blocks (> 1024).
std::vector<int64_t> k_edges(int64_t G) { return {G, 2 * G, 512 - G, 512, 512 + G, 1024 + 3 * G}; }

// Rows: the 16-row tiles and 32-row blocks (and a staged last block of 1..31 rows), past two blocks.
const int64_t kMs[] = {1, 2, 15, 16, 17, 31, 32, 33, 47, 48, 50, 64, 65, 79};
const int64_t kNs[] = {1, 16, 17, 31, 32, 33, 63, 64, 70};

// Every shape of the sweep for `kernel` of group size G (and a fuller M range 1..50 on one shape).
void sweep(int64_t G, const std::vector<int64_t>& ms, Kernel kernel, const std::string& name, uint64_t seed) {
  Rng rng(seed);
  for (int64_t K : k_edges(G))
    for (int64_t N : kNs) {
      const Zeros zeros = N % 2 ? Zeros::asymmetric : Zeros::symmetric;
      const W4 w = make_w4(rng, K, N, G, zeros, Values::random);
      for (int64_t M : ms) {
        ASSERT_NO_FATAL_FAILURE(check(rng, w, M, Values::random, kernel, name));
        if (::testing::Test::HasFatalFailure()) return;
      }
    }
  for (Zeros zeros : {Zeros::symmetric, Zeros::asymmetric}) {  // the extremes, on both sides of a block edge
    const W4 w = make_w4(rng, 512 + G, 70, G, zeros, Values::extreme);
    for (int64_t M : ms) ASSERT_NO_FATAL_FAILURE(check(rng, w, M, Values::extreme, kernel, name + " extreme"));
  }
  const W4 w = make_w4(rng, 2 * G, 33, G, Zeros::asymmetric, Values::random);
  for (int64_t M = 1; M <= 50; ++M) ASSERT_NO_FATAL_FAILURE(check(rng, w, M, Values::random, kernel, name));
}

class GemmAmxU4S8ModelSweep : public ::testing::TestWithParam<int64_t> {};

TEST_P(GemmAmxU4S8ModelSweep, DriverEqualsTheContractBitwise) {
  const int64_t G = GetParam();
  ConfiguredTiles::faults = 0;
  sweep(G, std::vector<int64_t>(std::begin(kMs), std::end(kMs)), model_for<U4S8A::in_place>(G), "model",
        1200 + uint64_t(G));
  EXPECT_EQ(ConfiguredTiles::faults, 0) << "tile shapes the hardware refuses, or tiles used outside a configuration";
  EXPECT_EQ(ConfiguredTiles::configured, 0) << "every configure has its release";
}

// The dense copy of A: the same sweep (its zero rows past M, its steps of 32 bytes at G = 32), and rows past the
// scratch buffer's first sizes (a second, larger call reuses a grown slot).
TEST_P(GemmAmxU4S8ModelSweep, DenseScheduleEqualsTheContractBitwise) {
  const int64_t G = GetParam();
  ConfiguredTiles::faults = 0;
  std::vector<int64_t> ms(std::begin(kMs), std::end(kMs));
  ms.push_back(130);
  sweep(G, ms, model_for<U4S8A::dense>(G), "model dense", 1300 + uint64_t(G));
  EXPECT_EQ(ConfiguredTiles::faults, 0) << "tile shapes the hardware refuses, or tiles used outside a configuration";
  EXPECT_EQ(ConfiguredTiles::configured, 0) << "every configure has its release";
}

INSTANTIATE_TEST_SUITE_P(G, GemmAmxU4S8ModelSweep, ::testing::Values(32, 64, 128));

TEST(GemmAmxU4S8Model, EmptyKGivesZeroTimesTheRowScale) {
  const W4 w = [] {
    Rng rng(1);
    return make_w4(rng, 0, 40, 64, Zeros::asymmetric, Values::random);
  }();
  std::vector<float> c(3 * 40, -7.0f);
  const int8_t a = 0;
  const float a_scale[] = {0.5f, -2.0f, 1.0f};
  for (Kernel kernel : {model_for<U4S8A::in_place>(64), model_for<U4S8A::dense>(64)}) {
    std::fill(c.begin(), c.end(), -7.0f);
    kernel(3, 0, 0, 40, &a, 0, a_scale, w.packed.data(), c.data(), 40);
    for (int m = 0; m < 3; ++m)
      for (int n = 0; n < 40; ++n)
        ASSERT_EQ(std::bit_cast<uint32_t>(c[size_t(m * 40 + n)]), std::bit_cast<uint32_t>(0.0f * a_scale[m]));
  }
}

TEST(GemmAmxU4S8Model, TheHalfStepConfigurationIsTheOnlyDifference) {
  const gemm::amx::TileConfig full = gemm::amx::u4s8_tile_config(128), half = gemm::amx::u4s8_tile_config(32);
  const gemm::amx::TileConfig g64 = gemm::amx::u4s8_tile_config(64);
  EXPECT_EQ(std::memcmp(&full, &g64, sizeof full), 0);
  const gemm::amx::TileConfig plain{};
  EXPECT_EQ(std::memcmp(&full, &plain, sizeof full), 0);
  for (int t = 0; t < 8; ++t) {
    EXPECT_EQ(half.rows[t], t >= 6 ? 8 : 16) << t;
    EXPECT_EQ(half.colsb[t], t == 4 || t == 5 ? 32 : 64) << t;
  }
}

// The tile model with the hardware policy's vector parts (its unpacking and fold: AVX-512, no tile instruction).
struct ModelWithVectorParts : ConfiguredTiles {
  static void unpack_quads(const uint8_t* rows, const int8_t* z, int quads, int8_t* out) {
    gemm::detail::unpack_u4_quads__amx(rows, z, quads, out);
  }
  static void fold(const int32_t (*tiles)[256], int halves, const float* s, float (*acc)[32]) {
    gemm::detail::fold_u4s8_tiles__amx(tiles, halves, s, acc);
  }
};

template <int G, U4S8A Source = U4S8A::in_place>
void vector_parts_kernel(int64_t M, int64_t K, int64_t n0, int64_t n1, const int8_t* a, int64_t lda,
                         const float* a_scale, const void* b, float* c, int64_t ldc) {
  gemm::amx::gemm_u4s8<ModelWithVectorParts, G, Source>(M, K, n0, n1, a, lda, a_scale, b, c, ldc);
}

TEST(GemmAmxU4S8, DriverWithTheVectorPartsOnTheModelEqualsTheContractBitwise) {
  if (detected_isa() < Isa::avx512) GTEST_SKIP() << "no AVX-512";
  ConfiguredTiles::faults = 0;
  const std::vector<int64_t> ms = {1, 15, 16, 17, 33, 50, 64};
  sweep(32, ms, vector_parts_kernel<32>, "model + vector parts", 3232);
  sweep(64, ms, vector_parts_kernel<64>, "model + vector parts", 3264);
  sweep(128, ms, vector_parts_kernel<128>, "model + vector parts", 3328);
  sweep(32, ms, vector_parts_kernel<32, U4S8A::dense>, "model + vector parts, dense", 3432);
  sweep(128, ms, vector_parts_kernel<128, U4S8A::dense>, "model + vector parts, dense", 3528);
  EXPECT_EQ(ConfiguredTiles::faults, 0);
}

// The vector unpacking of the hardware policy (AVX-512 F/BW only), against the scalar one, on every byte and zero.
TEST(GemmAmxU4S8, VectorUnpackingEqualsTheScalarOne) {
  if (detected_isa() < Isa::avx512) GTEST_SKIP() << "no AVX-512";
  Rng rng(31);
  for (int round = 0; round < 64; ++round) {
    const int quads = 1 + round % 32;
    std::vector<uint8_t> rows(size_t(quads) * 4 * gemm::kInt4RowBytes);
    for (size_t i = 0; i < rows.size(); ++i) rows[i] = round == 0 ? uint8_t(i) : uint8_t(rng.integer(0, 255));
    int8_t z[kGemmNR];
    for (int j = 0; j < kGemmNR; ++j) z[j] = int8_t(round == 1 ? (j % 2 ? 15 : 0) : rng.integer(0, 15));
    std::vector<int8_t> want(size_t(quads) * gemm::amx::kQuadBytes, 99), got(want.size() + 64, 99);
    gemm::amx::detail::unpack_quads(rows.data(), z, quads, want.data());
    gemm::detail::unpack_u4_quads__amx(rows.data(), z, quads, got.data());
    for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << "quads=" << quads << " byte " << i;
    for (size_t i = want.size(); i < got.size(); ++i) ASSERT_EQ(got[i], 99) << "wrote past the quad rows";
  }
}

// ─── On AMX hardware ────────────────────────────────────────────────────────────────────────────────────────────

#define SKIP_WITHOUT_AMX() \
  if (detected_isa() < Isa::amx) GTEST_SKIP() << "no amx level: " << amx_unused_reason()

TEST(GemmAmxU4S8, TheAmxLevelSelectsTheAmxKernelsInEveryTier) {
  SKIP_WITHOUT_AMX();
  for (Numerics tier : {Numerics::portable, Numerics::native}) {
    const gemm::GemmKernels k = gemm::select_gemm_kernels(Isa::amx, true, tier);
    EXPECT_STREQ(k.u4s8_g32.name, "gemm_u4g32w_s8_f32_32x32__amx");
    EXPECT_STREQ(k.u4s8_g64.name, "gemm_u4g64w_s8_f32_32x32__amx");
    EXPECT_STREQ(k.u4s8_g128.name, "gemm_u4g128w_s8_f32_32x32__amx");
  }
}

TEST(GemmAmxU4S8, KernelsEqualTheContractBitwise) {
  SKIP_WITHOUT_AMX();
  const gemm::GemmKernels k = gemm::select_gemm_kernels(Isa::amx, true, Numerics::portable);
  // M crossing kAmxInt8MinRows: below it the VNNI kernel runs.
  const std::vector<int64_t> ms = {1, 8, 15, 16, 17, 31, 32, 33, 50, 64, 65, 79};
  for (const gemm::GemmU4S8Kernel* kern : {&k.u4s8_g32, &k.u4s8_g64, &k.u4s8_g128}) {
    const int64_t G = kern == &k.u4s8_g32 ? 32 : kern == &k.u4s8_g64 ? 64 : 128;
    sweep(G, ms, kern->fn, kern->name, 2200 + uint64_t(G));
    if (::testing::Test::HasFatalFailure()) return;
  }
}

// Both schedules of the driver on the tile instructions (gemm_bench's schedule rows), without the VNNI fallback.
TEST(GemmAmxU4S8, SchedulesEqualTheContractBitwise) {
  SKIP_WITHOUT_AMX();
  const std::vector<int64_t> ms = {1, 8, 16, 17, 33, 64, 65, 130};
  for (const gemm::amx::U4S8Schedule& s : gemm::amx::u4s8_schedules()) {
    sweep(s.G, ms, s.fn, s.name, 2300 + uint64_t(s.G));
    if (::testing::Test::HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace moefuse
