// The FP8 block-scaled GEMM kernels (src/kernels/gemm/gemm.h, "FP8 block-scaled"): packing, and every variant this
// machine runs against an oracle written here from the contract — w = bf16(e4m3 * s) (e4m3 decoded by the format's
// definition, tests/util/fp8_checkpoint.h), then the bf16 contract's chain (pairs of k, odd first, fma_daz_ftz:
// testing::bf16_chain) — bitwise, over M, N and K edges (K not a multiple of the 128-row block among them) and
// per-column block sizes.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "base/bf16_dot.h"
#include "kernels/gemm/fp8_layout.h"
#include "kernels/gemm/gemm.h"
#include "kernels/registry.h"
#include "moefuse/dtype.h"
#include "moefuse/error.h"
#include "util/errors.h"
#include "util/fp8_checkpoint.h"
#include "util/gemm_sweep.h"
#include "util/random.h"

namespace moefuse {
namespace {

using gemm::kGemmNR;
using testing::Rng;

struct Fp8Matrix {
  int64_t K = 0, N = 0, bn = 128;
  std::vector<uint8_t> q;      // [K, N]
  std::vector<float> scale;    // [ceil(K / 128), ceil(N / bn)]
  int64_t scale_cols() const { return (N + bn - 1) / bn; }
  gemm::Fp8Source source() const { return {q.data(), N, 1, scale.data(), scale_cols(), 1, 128, bn}; }
  float weight(int64_t k, int64_t n) const {
    const float s = scale[size_t((k / 128) * scale_cols() + n / bn)];
    return to_f32(to_bf16(testing::e4m3_by_definition(q[size_t(k * N + n)]) * s));
  }
};

// Every code but the two NaNs (subnormals and zeros of both signs included); scales of several magnitudes.
Fp8Matrix random_fp8(Rng& rng, int64_t K, int64_t N, int64_t bn) {
  Fp8Matrix m{K, N, bn, {}, {}};
  m.q.resize(size_t(K * N));
  for (auto& v : m.q) {
    v = uint8_t(rng.integer(0, 255));
    if ((v & 0x7f) == 0x7f) v = uint8_t(v - 1);
  }
  m.scale.resize(size_t((K + 127) / 128 * m.scale_cols()));
  for (auto& s : m.scale) s = rng.uniform(0.5f, 1.5f) * std::ldexp(1.0f, int(rng.integer(-12, 2)));
  return m;
}

using testing::gemm_variants;
using testing::selected_row;

TEST(GemmFp8, EveryVariantEqualsTheDequantiseToBf16ThenFloatOracleBitwise) {
  Rng rng(808);
  for (int64_t K : {1, 13, 127, 128, 129, 257})
    for (int64_t N : {1, 7, 9, 31, 32, 33, 97}) {  // the 8-column strips' and 32-column panels' edges
      const Fp8Matrix b = random_fp8(rng, K, N, N % 2 ? 128 : 16);  // bn 16: two scales per panel
      const gemm::PackedWeights packed = gemm::pack_weights_fp8(b.source(), K, N);
      ASSERT_TRUE(packed.fp8());
      for (int64_t M : {1, 2, 3, 8, 9, 17}) {  // 1 x 32 and 2 x 32 tiles, 8-row strips and their edges
        const int64_t lda = K + 3;
        std::vector<float> a(size_t(M * lda));
        for (auto& v : a) v = rng.uniform(-2.0f, 2.0f);
        const std::vector<float> want = testing::bf16_chain(a, lda, M, K, N, [&](int64_t k, int64_t n) { return b.weight(k, n); });
        for (const gemm::GemmKernels& k : gemm_variants()) {
          ASSERT_NE(k.kernel_for(packed).fn, nullptr);
          testing::expect_columns_match(k.kernel_for(packed), M, K, N, a, lda, packed.data(), want,
                                        "K=" + std::to_string(K) + " N=" + std::to_string(N));
        }
      }
    }
}

// How many 8-column vectors of the packed blocks took each form (fp8_layout.h): table, table_sub, scales.
std::array<int64_t, 3> count_forms(const gemm::PackedWeights& w) {
  std::array<int64_t, 3> n{};
  const auto* base = static_cast<const uint8_t*>(w.data());
  for (int64_t p = 0; p < w.panels(); ++p)
    for (int64_t g = 0; g < gemm::fp8_blocks(w.k()); ++g)
      for (int v = 0; v < 4; ++v) ++n[size_t(gemm::fp8_form(base[size_t(p) * w.panel_bytes() + size_t(g)], v))];
  return n;
}

// The packer's three forms, each on its own and side by side in one block (a 32-column tile then mixes them), give
// the oracle's bits: normal codes only (table), subnormal and zero codes among them (table_sub), and scales the
// tables cannot stand for (scales): columns of one vector with different scales, scales whose products leave the
// normal range.
TEST(GemmFp8, EveryFormOfThePackedBlocksEqualsTheOracleBitwise) {
  Rng rng(77);
  const int64_t K = 300, N = 70;  // 3 blocks (the last 44 rows), 3 panels (the last 6 columns)
  std::array<int64_t, 3> seen{};
  for (int variant = 0; variant < 4; ++variant) {
    Fp8Matrix b{K, N, 4, {}, {}};  // one scale per 4 columns: two per 8-column vector
    b.q.resize(size_t(K * N));
    for (int64_t k = 0; k < K; ++k)
      for (int64_t n = 0; n < N; ++n) {
        const bool low = variant >= 1 && (n / 8) % 2 == 1 && rng.integer(0, 9) == 0;  // subnormals and zeros
        const int e = low ? 0 : int(rng.integer(1, 15));
        const int m = e == 15 ? int(rng.integer(0, 6)) : int(rng.integer(0, 7));
        b.q[size_t(k * N + n)] = uint8_t((rng.integer(0, 1) << 7) | (e << 3) | m);
      }
    b.scale.resize(size_t((K + 127) / 128 * b.scale_cols()));
    for (int64_t g = 0; g < (K + 127) / 128; ++g)
      for (int64_t c = 0; c < b.scale_cols(); c += 2) {
        const float s = rng.uniform(0.5f, 1.5f) * std::ldexp(1.0f, int(rng.integer(-20, 4)));
        float& first = b.scale[size_t(g * b.scale_cols() + c)];
        first = variant == 3 && c % 4 == 0 ? std::ldexp(s, -100) : s;  // vectors 0 and 2 of each panel: tiny
        if (c + 1 < b.scale_cols())  // vector 3 of each panel: its two halves differ when variant >= 2
          b.scale[size_t(g * b.scale_cols() + c + 1)] = variant >= 2 && c % 8 == 6 ? s * 1.25f : first;
      }
    const gemm::PackedWeights packed = gemm::pack_weights_fp8(b.source(), K, N);
    const std::array<int64_t, 3> forms = count_forms(packed);
    for (size_t f = 0; f < 3; ++f) seen[f] += forms[f];
    if (variant == 0) {
      EXPECT_EQ(forms[2], 0) << "uniform, moderate scales need no scales form";
    }
    if (variant >= 2) {
      EXPECT_GT(forms[2], 0);
    }
    for (int64_t M : {1, 2, 3, 7, 13}) {
      std::vector<float> a(size_t(M * K));
      for (auto& v : a) v = rng.uniform(-2.0f, 2.0f);
      const std::vector<float> want = testing::bf16_chain(a, K, M, K, N, [&](int64_t k, int64_t n) { return b.weight(k, n); });
      for (const gemm::GemmKernels& k : gemm_variants())
        testing::expect_columns_match(k.kernel_for(packed), M, K, N, a, K, packed.data(), want,
                                      "variant " + std::to_string(variant));
    }
    std::vector<bfloat16> back(size_t(K * N));
    gemm::dequantise_weights_fp8(packed, back.data(), N, 1);
    for (int64_t k = 0; k < K; ++k)
      for (int64_t n = 0; n < N; ++n)
        ASSERT_EQ(std::bit_cast<uint32_t>(to_f32(back[size_t(k * N + n)])), std::bit_cast<uint32_t>(b.weight(k, n)))
            << "variant " << variant << " k=" << k << " n=" << n;
  }
  for (size_t f = 0; f < 3; ++f) EXPECT_GT(seen[f], 0) << "form " << f << " never packed";
}

TEST(GemmFp8, EqualsTheBf16KernelOnTheDequantisedWeights) {
  Rng rng(31);
  const int64_t K = 300, N = 70, M = 5;
  const Fp8Matrix b = random_fp8(rng, K, N, 128);
  const gemm::PackedWeights p8 = gemm::pack_weights_fp8(b.source(), K, N);
  std::vector<bfloat16> wb(size_t(K * N));
  gemm::dequantise_weights_fp8(p8, wb.data(), N, 1);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < N; ++n) ASSERT_EQ(to_f32(wb[size_t(k * N + n)]), b.weight(k, n)) << k << " " << n;
  const gemm::PackedWeights pb = gemm::pack_weights_f(wb.data(), DType::bf16, K, N, N, 1);
  std::vector<float> a(size_t(M * K));
  for (auto& v : a) v = rng.normal();
  for (const gemm::GemmKernels& k : gemm_variants()) {
    std::vector<float> c8(size_t(M * N)), cb(size_t(M * N));
    k.kernel_for(p8).fn(M, K, 0, N, a.data(), K, p8.data(), c8.data(), N);
    k.bf16w.fn(M, K, 0, N, a.data(), K, pb.data(), cb.data(), N);
    EXPECT_EQ(std::memcmp(c8.data(), cb.data(), c8.size() * sizeof(float)), 0) << k.kernel_for(p8).name;
  }
}

TEST(GemmFp8, ExtremeWeightsRoundAsBf16Does) {
  // Column n's weight is code n * 2 + 1 of e4m3 times a scale that overflows bf16 for the largest codes, or lands
  // in bf16's subnormals for the smallest; NaN codes give NaN. One row of A = 1: C is the weight itself (+0 for -0),
  // a subnormal weight read as zero (the bf16 contract's DAZ).
  const int64_t K = 1, N = 128;
  for (float s : {1.0f, 1e36f, 1e-38f, 3.0e-3f}) {
    Fp8Matrix b{K, N, 128, {}, {}};
    for (int64_t n = 0; n < N; ++n) b.q.push_back(uint8_t(2 * n + 1));
    b.scale = {s};
    const gemm::PackedWeights p = gemm::pack_weights_fp8(b.source(), K, N);
    const std::vector<float> a = {1.0f};
    for (const gemm::GemmKernels& k : gemm_variants()) {
      std::vector<float> c(N);
      k.fp8w.fn(1, K, 0, N, a.data(), K, p.data(), c.data(), N);
      for (int64_t n = 0; n < N; ++n) {
        const float want = denormal_as_zero(b.weight(0, n)) + 0.0f;
        if (std::isnan(want)) {
          EXPECT_TRUE(std::isnan(c[size_t(n)])) << k.fp8w.name << " n=" << n;
        } else {
          EXPECT_EQ(std::bit_cast<uint32_t>(c[size_t(n)]), std::bit_cast<uint32_t>(want)) << k.fp8w.name << " s=" << s << " n=" << n;
        }
      }
    }
  }
}

// Every FP8 row of the registry this machine runs (not only the one dispatch picks per level).
std::vector<const kernels::KernelInfo*> fp8_rows() {
  std::vector<const kernels::KernelInfo*> out;
  for (const kernels::KernelInfo& k : kernels::registry())
    if (k.op == kernels::Op::gemm_fp8 && kernels::runs_here_portable(k)) out.push_back(&k);
  return out;
}

// One scale per column (block_n = 1), chosen per 8-column vector and 128-row block so that the packer takes every
// form and the weights hit every edge of the arithmetic: a kind per (block, vector) of
//   0 normal codes, one moderate scale          (table)
//   1 subnormal and zero codes among them       (table_sub)
//   2 two scales in the vector                  (scales)
//   3 NaN codes among all codes                 (scales)
//   4 a scale so small or large that products leave bf16's normal range: bf16 subnormals, infinities (scales)
//   5 a scale of 0, +-inf or NaN                (scales; inf x 0 and NaN scales give NaN)
Fp8Matrix every_form_fp8(Rng& rng, int64_t K, int64_t N) {
  Fp8Matrix m{K, N, 1, {}, {}};
  const int64_t kb = (K + 127) / 128;
  m.q.resize(size_t(K * N));
  m.scale.resize(size_t(std::max<int64_t>(kb, 1) * N));
  for (int64_t g = 0; g < kb; ++g)
    for (int64_t v0 = 0; v0 < N; v0 += 8) {
      const int kind = int(rng.integer(0, 5));
      const float s = rng.uniform(0.5f, 1.5f) * std::ldexp(1.0f, int(rng.integer(-16, 8)));
      const float extreme[] = {1e-38f, 3e-36f, 1e30f, 7e36f};
      const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN};
      for (int64_t n = v0; n < std::min(N, v0 + 8); ++n) {
        float& sn = m.scale[size_t(g * N + n)];
        sn = kind == 2 && n % 2 ? s * 1.75f : kind == 4 ? extreme[(n + g) % 4] : kind == 5 ? special[(n + g) % 5] : s;
        for (int64_t k = g * 128; k < std::min(K, g * 128 + 128); ++k) {
          uint8_t c = uint8_t(rng.integer(0, 255));
          if (kind == 1 && rng.coin(0.3)) c &= 0x87;                      // exponent field 0: subnormal or zero
          else if (kind != 1 && kind != 3 && (c & 0x78) == 0) c |= 0x08;  // normal
          if (kind != 3 && (c & 0x7f) == 0x7f) c = uint8_t(c - 1);        // no NaN code
          if (kind == 3 && rng.coin(0.2)) c |= 0x7f;
          m.q[size_t(k * N + n)] = c;
        }
      }
    }
  return m;
}

// Bit for bit, except that a NaN matches any NaN (gemm.h: which NaN comes out is not specified).
bool same_result(float x, float y) {
  return std::bit_cast<uint32_t>(x) == std::bit_cast<uint32_t>(y) || (std::isnan(x) && std::isnan(y));
}

// Runs every row but the scalar one on A [M, lda] over the whole width, [32, N - 1) and [64, N), and checks each
// against the scalar row's C (a NaN matches any NaN) and that nothing past the range is written.
void expect_rows_equal_scalar(const std::vector<const kernels::KernelInfo*>& rows, const kernels::KernelInfo* scalar,
                              int64_t M, int64_t K, int64_t N, const std::vector<float>& a, int64_t lda,
                              const gemm::PackedWeights& packed, const std::string& what) {
  std::vector<float> want(size_t(M * N));
  std::get<gemm::GemmFloatFn>(scalar->fn)(M, K, 0, N, a.data(), lda, packed.data(), want.data(), N);
  for (const kernels::KernelInfo* r : rows) {
    if (r == scalar) continue;
    for (auto [n0, n1] : {std::pair<int64_t, int64_t>{0, N}, {32, N - 1}, {64, N}}) {
      if (n0 > n1) continue;
      const int64_t ldc = n1 - n0 + 3;
      std::vector<float> c(size_t(M * ldc), -7.0f);
      std::get<gemm::GemmFloatFn>(r->fn)(M, K, n0, n1, a.data(), lda, packed.data(), c.data(), ldc);
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < ldc; ++n) {
          const float got = c[size_t(m * ldc + n)];
          const bool ok = n0 + n < n1 ? same_result(got, want[size_t(m * N + n0 + n)]) : got == -7.0f;
          ASSERT_TRUE(ok) << r->name << " " << what << " K=" << K << " N=" << N << " M=" << M << " [" << n0 << ", "
                          << n1 << ") m=" << m << " n=" << n0 + n << ": " << got;
        }
    }
  }
}

// Every FP8 row against the scalar row over M, N and K edges of every tile the variants use (AVX2: 2 x 32, 8-row
// strips, the block path from 12 rows in 6-row tiles; AVX-512 and AVX512-BF16: 4 x 64 pairs, 8 x 32 singles, the
// block path from 64 rows in 6 x 64 and 12 x 32 tiles carried through C from block to block), K around the
// 16-column A buffer and the 128-row blocks, N not a multiple of 32 or 64, calls over a middle range of panels, and
// every form side by side. A holds bf16 values for half of the (M, K) (M + K even), so that the AVX512-BF16 row runs
// its vdpbf16ps paths (direct tiles below 8 rows, the block path from 8; on other A it falls back to the AVX-512
// row's code).
TEST(GemmFp8, EveryRowEqualsTheScalarRowOnEveryTileEdgeAndForm) {
  Rng rng(4242);
  const std::vector<const kernels::KernelInfo*> rows = fp8_rows();
  const kernels::KernelInfo* scalar = kernels::find(kernels::Op::gemm_fp8, DType::u8, {Isa::scalar, false});
  const std::vector<Isa> isas = gemm::available_isas();  // the amx level has no FP8 row of its own
  ASSERT_GE(rows.size(), size_t(std::count_if(isas.begin(), isas.end(), [](Isa i) { return i < Isa::amx; })))
      << "one FP8 row per level";
  std::array<int64_t, 3> seen{};
  for (int64_t K : {0, 1, 15, 16, 17, 127, 128, 129, 256, 257, 300})
    for (int64_t N : {1, 31, 33, 64, 65, 97, 130}) {
      const Fp8Matrix b = every_form_fp8(rng, K, N);
      const gemm::PackedWeights packed = gemm::pack_weights_fp8(b.source(), K, N);
      const std::array<int64_t, 3> forms = count_forms(packed);
      for (size_t f = 0; f < 3; ++f) seen[f] += forms[f];
      for (int64_t M : {1, 2, 3, 4, 5, 7, 8, 9, 11, 12, 13, 17, 19, 25, 31, 63, 64, 65, 71, 127}) {
        const int64_t lda = K + 5;
        std::vector<float> a(size_t(M * lda));
        for (auto& v : a) v = rng.coin(0.05) ? 0.0f : rng.uniform(-2.0f, 2.0f);
        if (!a.empty()) a[0] = -0.0f;
        const bool bf16_a = (M + K) % 2 == 0;
        if (bf16_a)
          for (auto& v : a) v = to_f32(to_bf16(v));
        expect_rows_equal_scalar(rows, scalar, M, K, N, a, lda, packed, bf16_a ? "bf16-valued A" : "fp32 A");
      }
    }
  for (size_t f = 0; f < 3; ++f) EXPECT_GT(seen[f], 0) << "form " << f << " never packed";
}

// One scale per 32 columns (a panel's four vectors then hold the same tables, as with a checkpoint's 128 x 128 blocks:
// fp8::one_table in src/kernels/gemm/fp8_form__avx512.h), codes of every sign and exponent, and in two of three
// (block, panel) subnormal and zero codes among them (form table_sub; form table in the others).
Fp8Matrix one_scale_per_panel_fp8(Rng& rng, int64_t K, int64_t N) {
  Fp8Matrix m = random_fp8(rng, K, N, 32);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < N; ++n)
      if ((k / 128 + n / 32) % 3 == 0 && (m.q[size_t(k * N + n)] & 0x78) == 0) m.q[size_t(k * N + n)] |= 0x08;
  return m;
}

// The AVX512-BF16 row's direct tiles (1..7 rows: 1..4 rows x 64 columns, then 5..7 x 32) against the scalar row on
// bf16-valued A, for every M below 8 with every K parity (odd K: the contract's zero pair after the last row), K
// around the 16-pair A chunks and the 128-row blocks, N not a multiple of 32 or 64 (a last single panel after the
// pairs), every form side by side (checked per K), and blocks with one table per panel (one_scale_per_panel_fp8).
// The block path forms 4 blocks (512 rows of K) at a time and carries its chains through C from one run of blocks to
// the next (fp8_form__avx512.h, kFormBlocks): K of one run less a row, exactly one run, one run and a row, and runs
// with a short last block; both kinds of A (the AVX512-BF16 row's vdpbf16ps tiles on bf16 values, its fallback on
// fp32 ones), pairs of panels and a last single one.
TEST(GemmFp8, TheBlockPathCarriesItsChainsAcrossRunsOfFormedBlocks) {
  Rng rng(4646);
  const std::vector<const kernels::KernelInfo*> rows = fp8_rows();
  const kernels::KernelInfo* scalar = kernels::find(kernels::Op::gemm_fp8, DType::u8, {Isa::scalar, false});
  for (int64_t K : {511, 512, 513, 640, 1031})
    for (int64_t N : {33, 97}) {
      const Fp8Matrix b = every_form_fp8(rng, K, N);
      const gemm::PackedWeights packed = gemm::pack_weights_fp8(b.source(), K, N);
      for (int64_t M : {8, 13, 64}) {
        const int64_t lda = K + 1;
        std::vector<float> a(size_t(M * lda));
        for (auto& v : a) v = rng.uniform(-2.0f, 2.0f);
        expect_rows_equal_scalar(rows, scalar, M, K, N, a, lda, packed, "fp32 A");
        for (auto& v : a) v = to_f32(to_bf16(v));
        expect_rows_equal_scalar(rows, scalar, M, K, N, a, lda, packed, "bf16-valued A");
      }
    }
}

TEST(GemmFp8, DirectTilesOnBf16AEqualTheScalarRowForEveryMBelow8) {
  Rng rng(4545);
  const std::vector<const kernels::KernelInfo*> rows = fp8_rows();
  const kernels::KernelInfo* scalar = kernels::find(kernels::Op::gemm_fp8, DType::u8, {Isa::scalar, false});
  for (int64_t K : {1, 2, 3, 31, 33, 127, 128, 129, 255, 257, 301}) {
    std::array<int64_t, 3> seen{};
    for (auto [N, one_scale] : {std::pair<int64_t, bool>{31, false}, {33, false}, {65, false}, {97, false},
                                {130, false}, {65, true}, {130, true}}) {
      const Fp8Matrix b = one_scale ? one_scale_per_panel_fp8(rng, K, N) : every_form_fp8(rng, K, N);
      const gemm::PackedWeights packed = gemm::pack_weights_fp8(b.source(), K, N);
      const std::array<int64_t, 3> forms = count_forms(packed);
      for (size_t f = 0; f < 3; ++f) seen[f] += forms[f];
      for (int64_t M = 1; M < 8; ++M) {
        const int64_t lda = K + 3;
        std::vector<float> a(size_t(M * lda));
        for (auto& v : a) v = rng.coin(0.05) ? 0.0f : to_f32(to_bf16(rng.uniform(-2.0f, 2.0f)));
        expect_rows_equal_scalar(rows, scalar, M, K, N, a, lda, packed, "bf16-valued A");
      }
    }
    for (size_t f = 0; f < 3; ++f) EXPECT_GT(seen[f], 0) << "K=" << K << ": form " << f << " never packed";
  }
}

// A that holds bf16 values but one (1 + 2^-10 times a bf16 value: its low half is not zero), at the first, a middle
// and the last element, in the rows of the direct tiles and of the block path (the AVX512-BF16 row's vdpbf16ps
// tiles would take the value's high half, a different product): every row still gives the scalar row's bits.
TEST(GemmFp8, ANonBf16ValueGivesTheScalarBits) {
  Rng rng(4343);
  const std::vector<const kernels::KernelInfo*> rows = fp8_rows();
  const kernels::KernelInfo* scalar = kernels::find(kernels::Op::gemm_fp8, DType::u8, {Isa::scalar, false});
  for (int64_t K : {129, 300})
    for (int64_t M : {1, 2, 4, 5, 7, 8, 9, 64, 65, 127}) {
      const int64_t N = 97, lda = K + 1;
      const Fp8Matrix b = random_fp8(rng, K, N, 128);
      const gemm::PackedWeights packed = gemm::pack_weights_fp8(b.source(), K, N);
      for (int64_t at : {int64_t(0), (M / 2) * lda + K / 2, (M - 1) * lda + K - 1}) {
        std::vector<float> a(size_t(M * lda));
        for (auto& v : a) v = to_f32(to_bf16(rng.uniform(-2.0f, 2.0f)));
        a[size_t(at)] = to_f32(to_bf16(rng.uniform(0.5f, 2.0f))) * (1.0f + 0x1p-10f);
        ASSERT_NE(std::bit_cast<uint32_t>(a[size_t(at)]) & 0xffffu, 0u);
        expect_rows_equal_scalar(rows, scalar, M, K, N, a, lda, packed, "non-bf16 A at " + std::to_string(at));
      }
    }
}

TEST(GemmFp8, BadArgumentsAreClearErrors) {
  Rng rng(2);
  Fp8Matrix b = random_fp8(rng, 64, 8, 128);
  gemm::Fp8Source src = b.source();
  src.block_k = 64;
  EXPECT_THROWS_MSG(gemm::pack_weights_fp8(src, 64, 8), ValueError, "pack_weights_fp8", "block_k",
                    "expected 128 (the block the FP8 kernels are built for)", "got 64");
  src = b.source();
  src.block_n = 0;
  EXPECT_THROWS_MSG(gemm::pack_weights_fp8(src, 64, 8), ValueError, "block_n", "got 0");
  EXPECT_THROWS_MSG(gemm::pack_weights_fp8(b.source(), -1, 8), ValueError, "K", "got -1");
}

TEST(GemmFp8, DispatchPicksTheTableRows) {
  for (const gemm::GemmKernels& k : gemm_variants())
    EXPECT_STREQ(k.fp8w.name, selected_row(kernels::Op::gemm_fp8, DType::u8, {k.isa, false})->name);
  EXPECT_STREQ(gemm::select_gemm_kernels(Isa::scalar, false).fp8w.name, "gemm_fp8w_f32_1x32__scalar");
}

}  // namespace
}  // namespace moefuse
