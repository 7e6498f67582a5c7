// Software prefetch (moefuse/cpu.h: prefetch_settings) changes no bits: every GEMM kernel this machine runs, for each
// weight stream (bf16, int8, FP8, int4 with float and with int8 rows), gives the same C with prefetch off and on at
// several distances and both hints, and with row thresholds its calls are below, at and above. The other kernel
// tests check the bits against the contract's oracles under the settings in effect; this one checks that no setting
// moves them, and that a call prefetches from its stream's row threshold on.
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "base/cpu_tuning.h"
#include "kernels/gemm/gemm.h"
#include "moefuse/cpu.h"
#include "moefuse/dtype.h"
#include "util/gemm_sweep.h"
#include "util/random.h"

namespace moefuse {
namespace {

using testing::Rng;

// Restores the settings in effect before the test (the family's, with MOEFUSE_PREFETCH over them).
struct SettingsGuard {
  ~SettingsGuard() { reset_prefetch_settings(); }
};

// Off, then distances around a line, a block and past a whole panel (a prefetch past the weights never faults), with
// each hint; then row thresholds (prefetch from R rows on) that kRows' calls are below, at and above.
std::vector<PrefetchSettings> sweep_settings() {
  std::vector<PrefetchSettings> out;
  for (int32_t d : {0, 64, 1024, 4096, 8192, 1 << 20})
    for (PrefetchHint h : {PrefetchHint::t0, PrefetchHint::nta}) out.push_back({d, d, d, d, h});
  for (int32_t r : {2, 5, 7}) out.push_back({4096, 8192, 4096, 4096, PrefetchHint::t0, r, r, r, r});
  return out;
}

// Rows: decode (1, 2), the tiles' edges (5, 7, 13); columns: a partial last panel and pairs of panels.
const int64_t kRows[] = {1, 2, 5, 7, 13};
constexpr int64_t kN = 200;

// run(M, c) fills c (M x kN) with one kernel's result; checks that every setting gives the bits of the first (off).
void expect_same_bits_for_every_setting(const std::string& what, const std::function<void(int64_t, float*)>& run) {
  SettingsGuard guard;
  for (int64_t M : kRows) {
    std::vector<float> want(size_t(M * kN)), got(want.size());
    set_prefetch_settings({});  // all off
    run(M, want.data());
    for (const PrefetchSettings& s : sweep_settings()) {
      set_prefetch_settings(s);
      std::fill(got.begin(), got.end(), -7.0f);
      run(M, got.data());
      if (std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) != 0) {
        ADD_FAILURE() << what << " M=" << M << " differs with prefetch " << prefetch_text(s);
        return;
      }
    }
  }
}

// A [M, K] of bf16 values (so the vdpbf16ps kernels take their own path), or with `odd` one value that is not (the
// fallback to the FMA kernel).
std::vector<float> activations(Rng& rng, int64_t M, int64_t K, bool odd) {
  std::vector<float> a(size_t(M * K));
  for (auto& v : a) v = to_f32(to_bf16(rng.uniform(-1.0f, 1.0f)));
  if (odd && !a.empty()) a[a.size() / 2] = 1.0f + 0x1p-20f;
  return a;
}

// The float-activation kernel of every level for `packed` (kernel_for), with A of bf16 values and with one that is not.
void expect_float_kernels_keep_their_bits(const gemm::PackedWeights& packed) {
  const int64_t K = packed.k();
  for (const gemm::GemmKernels& ks : testing::gemm_variants()) {
    const gemm::GemmFloatKernel& kern = ks.kernel_for(packed);
    for (bool odd : {false, true}) {
      const auto run = [&](int64_t M, float* c) {
        Rng ra{uint64_t(M)};
        const std::vector<float> a = activations(ra, M, K, odd);
        kern.fn(M, K, 0, kN, a.data(), K, packed.data(), c, kN);
      };
      expect_same_bits_for_every_setting(std::string(kern.name) + (odd ? " (A not bf16)" : ""), run);
    }
  }
}

// What each kernel call reads (prefetch_for, with the call's rows): off below its stream's row threshold, the
// stream's distance and the hint at and above it; thresholds 0 and 1 both from the first row. Each stream gets its
// own distance and threshold, so a call reading another stream's field fails.
TEST(GemmPrefetch, EachStreamPrefetchesFromItsRowThresholdOn) {
  using gemm::detail::prefetch_for, gemm::detail::PrefetchStream;
  SettingsGuard guard;
  set_prefetch_settings({1024, 2048, 3072, 4096, PrefetchHint::nta, /*bf16_rows=*/4, /*int8_rows=*/2,
                         /*fp8_rows=*/8, /*int4_rows=*/16});
  const struct {
    PrefetchStream stream;
    int64_t bytes, rows;
  } streams[] = {{PrefetchStream::bf16, 1024, 4},
                 {PrefetchStream::int8, 2048, 2},
                 {PrefetchStream::fp8, 3072, 8},
                 {PrefetchStream::int4, 4096, 16}};
  for (const auto& s : streams) {
    for (int64_t rows : {int64_t(1), s.rows - 1}) {
      EXPECT_EQ(prefetch_for(s.stream, rows).bytes, 0) << "stream " << int(s.stream) << ", " << rows << " rows";
      EXPECT_FALSE(prefetch_for(s.stream, rows).on());
    }
    for (int64_t rows : {s.rows, s.rows + 1, int64_t(4096)}) {
      const gemm::detail::Prefetch pf = prefetch_for(s.stream, rows);
      EXPECT_EQ(pf.bytes, s.bytes) << "stream " << int(s.stream) << ", " << rows << " rows";
      EXPECT_TRUE(pf.nta);
    }
  }
  for (int32_t r : {0, 1}) {
    set_prefetch_settings({1024, 2048, 3072, 4096, PrefetchHint::t0, r, r, r, r});
    for (const auto& s : streams) {
      EXPECT_EQ(prefetch_for(s.stream, 1).bytes, s.bytes) << "threshold " << r;
      EXPECT_FALSE(prefetch_for(s.stream, 1).nta);
    }
  }
}

TEST(GemmPrefetch, Bf16WeightsGiveTheSameBitsWithPrefetchOffAndOn) {
  Rng rng(4101);
  constexpr int64_t K = 515;  // odd: the zero pair; not a multiple of a tile's 16 or 32 k
  std::vector<uint16_t> w(size_t(K * kN));
  for (auto& v : w) v = std::bit_cast<uint16_t>(to_bf16(rng.normal(0.0f, 0.05f)));
  const gemm::PackedWeights packed = gemm::pack_weights_f(w.data(), DType::bf16, K, kN, kN, 1);
  expect_float_kernels_keep_their_bits(packed);
}

TEST(GemmPrefetch, Int8WeightsGiveTheSameBitsWithPrefetchOffAndOn) {
  Rng rng(4102);
  constexpr int64_t K = 301;  // not a multiple of 4 or 64
  std::vector<int8_t> w(size_t(K * kN));
  for (auto& v : w) v = int8_t(rng.integer(-128, 127));
  const gemm::PackedWeights packed = gemm::pack_weights_s8(w.data(), K, kN, kN, 1);
  const auto* b = static_cast<const int8_t*>(packed.data());
  for (const gemm::GemmKernels& ks : testing::gemm_variants())
    for (bool with_min : {false, true}) {  // -128 in A: AVX2's widening path instead of the sign path
      const auto run = [&](int64_t M, float* c) {
        Rng ra{uint64_t(M)};
        std::vector<int8_t> a(static_cast<size_t>(M * K));
        for (auto& v : a) v = int8_t(ra.integer(-127, 127));
        if (with_min) a[a.size() / 2] = -128;
        // int32 results in the float buffer: compared as bits
        ks.s8.fn(M, K, 0, kN, a.data(), K, b, packed.col_sums(), reinterpret_cast<int32_t*>(c), kN);
      };
      expect_same_bits_for_every_setting(std::string(ks.s8.name) + (with_min ? " (A holds -128)" : ""), run);
    }
}

TEST(GemmPrefetch, Fp8WeightsGiveTheSameBitsWithPrefetchOffAndOn) {
  Rng rng(4103);
  constexpr int64_t K = 300;  // three blocks, the last partial
  std::vector<uint8_t> q(size_t(K * kN));
  for (auto& v : q) {
    v = uint8_t(rng.integer(0, 255));
    if ((v & 0x7f) == 0x7f) v = uint8_t(v - 1);  // no NaN codes
  }
  constexpr int64_t bn = 16;  // two scales per panel: the mixed forms too
  const int64_t scale_cols = (kN + bn - 1) / bn;
  std::vector<float> scale(size_t((K + 127) / 128 * scale_cols));
  for (auto& s : scale) s = rng.uniform(0.5f, 1.5f) * 0x1p-6f;
  const gemm::Fp8Source src{q.data(), kN, 1, scale.data(), scale_cols, 1, 128, bn};
  const gemm::PackedWeights packed = gemm::pack_weights_fp8(src, K, kN);
  expect_float_kernels_keep_their_bits(packed);
}

TEST(GemmPrefetch, Int4WeightsGiveTheSameBitsWithPrefetchOffAndOn) {
  Rng rng(4104);
  constexpr int64_t K = 384;
  for (int64_t G : {int64_t(32), int64_t(128)}) {
    std::vector<uint8_t> q(size_t(K * kN)), zero(size_t(K / G * kN));
    std::vector<float> scale(zero.size());
    for (auto& v : q) v = uint8_t(rng.integer(0, 15));
    for (size_t i = 0; i < zero.size(); ++i) {
      zero[i] = uint8_t(rng.integer(0, 15));
      scale[i] = to_f32(to_f16(rng.uniform(-0.05f, 0.1f)));
    }
    const gemm::Int4Source src{q.data(), kN, 1, scale.data(), zero.data(), kN, 1};
    const gemm::PackedWeights packed = gemm::pack_weights_u4(src, K, kN, G);
    expect_float_kernels_keep_their_bits(packed);
    for (const gemm::GemmKernels& ks : testing::gemm_variants()) {
      const auto& k8 = ks.u4s8_kernel_for(packed);  // W4A8: the same weights, int8 rows
      expect_same_bits_for_every_setting(k8.name, [&](int64_t M, float* c) {
        Rng ra{uint64_t(M)};
        std::vector<int8_t> a(static_cast<size_t>(M * K));
        for (auto& v : a) v = int8_t(ra.integer(-127, 127));
        std::vector<float> a_scale(static_cast<size_t>(M));
        for (auto& v : a_scale) v = ra.uniform(1e-4f, 0.05f);
        k8.fn(M, K, 0, kN, a.data(), K, a_scale.data(), packed.data(), c, kN);
      });
    }
  }
}

// A tile's prefetch past the end of one of its panels moves to the same panel of the next tile (np - 1 panels
// further), not into the tile's own next panel; inside the panel, or with one panel per tile, it stays.
TEST(GemmPrefetch, PastAPanelsEndThePrefetchGoesToTheNextTilesPanel) {
  using gemm::detail::next_tile_skip, gemm::detail::Prefetch;
  const Prefetch pf{4096, false};
  const int64_t panel = 36864;
  EXPECT_EQ(next_tile_skip(0, panel, 2, size_t(panel), pf), 0u);
  EXPECT_EQ(next_tile_skip(panel - 4096 - 64, panel, 2, size_t(panel), pf), 0u);  // the last line inside
  EXPECT_EQ(next_tile_skip(panel - 4096, panel, 2, size_t(panel), pf), size_t(panel));  // the first line past
  EXPECT_EQ(next_tile_skip(panel - 64, panel, 2, size_t(panel), pf), size_t(panel));
  EXPECT_EQ(next_tile_skip(panel - 64, panel, 4, size_t(panel) + 128, pf), 3 * (size_t(panel) + 128));
  EXPECT_EQ(next_tile_skip(panel - 64, panel, 1, size_t(panel), pf), 0u);  // one panel: the next one is the next tile's
  EXPECT_EQ(next_tile_skip(panel - 64, panel, 2, size_t(panel), Prefetch{}), 0u);  // off: the line itself
}

}  // namespace
}  // namespace moefuse
