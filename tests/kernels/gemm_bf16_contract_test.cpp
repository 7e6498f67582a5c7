// The edges of the bf16 contract (src/kernels/gemm/gemm.h, "bf16 weights"; src/base/bf16_dot.h) on every bf16 and FP8
// GEMM row of the registry this machine runs (the scalar rows included), bitwise against the contract's chain
// written in the tests (testing::bf16_chain): odd K (the zero pair), K around the FP8 kernels' 128-row blocks,
// subnormal weights and activations (read as zero), products that underflow and sums in x86's flush window (flushed
// to a zero of their sign), -0 accumulations, infinities and NaN; and that the FP8 kernels form their weights in the
// default FPU mode although their FMAs run with DAZ/FTZ. Each sweep first checks that its data tells the contract
// from its near misses (k ascending, the even k of a pair first, no DAZ/FTZ, no zero pair), so a kernel that took
// one of them would fail it.
#include <gtest/gtest.h>
#include <xmmintrin.h>

#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "base/bf16_dot.h"
#include "kernels/gemm/fp8_layout.h"
#include "kernels/gemm/gemm.h"
#include "kernels/registry.h"
#include "moefuse/dtype.h"
#include "util/fp8_checkpoint.h"
#include "util/gemm_sweep.h"
#include "util/random.h"

namespace moefuse {
namespace {

using testing::Rng;

struct Row {
  gemm::GemmFloatFn fn;
  std::string name;
};

// Every registry row of `op` (gemm_float: of bf16 weights) that runs here.
std::vector<Row> rows_of(kernels::Op op) {
  std::vector<Row> out;
  for (const kernels::KernelInfo& k : kernels::registry())
    if (k.op == op && (op != kernels::Op::gemm_float || k.in == DType::bf16) && kernels::runs_here_portable(k))
      out.push_back({std::get<gemm::GemmFloatFn>(k.fn), k.name});
  EXPECT_GE(out.size(), 1u);
  return out;
}

bool same_bits(float x, float y) {
  return std::bit_cast<uint32_t>(x) == std::bit_cast<uint32_t>(y) || (std::isnan(x) && std::isnan(y));
}

std::string describe(float x) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%g (0x%08x)", double(x), std::bit_cast<uint32_t>(x));
  return buf;
}

// C of `row` over columns [0, N) into ldc = N + 1 (the pad column must stay untouched); empty string when every
// element has want's bits (NaN: any NaN) and the caller's MXCSR is back as it was, else what differs first.
std::string check_row(const Row& row, int64_t M, int64_t K, int64_t N, const std::vector<float>& a, int64_t lda,
                      const void* b, const std::vector<float>& want) {
  const int64_t ldc = N + 1;
  std::vector<float> c(size_t(M * ldc), -7.0f);
  const unsigned csr = _mm_getcsr();
  row.fn(M, K, 0, N, a.data(), lda, b, c.data(), ldc);
  if (_mm_getcsr() != csr) return row.name + ": MXCSR not restored";
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      const float got = c[size_t(m * ldc + n)], w = want[size_t(m * N + n)];
      if (!same_bits(got, w))
        return row.name + " M=" + std::to_string(M) + " K=" + std::to_string(K) + " N=" + std::to_string(N) +
               " at [" + std::to_string(m) + ", " + std::to_string(n) + "]: want " + describe(w) + ", got " +
               describe(got);
    }
    if (c[size_t(m * ldc + N)] != -7.0f) return row.name + ": wrote past N";
  }
  return "";
}

// check_row for every row in `rows`: the first difference, or an empty string.
std::string check_rows(const std::vector<Row>& rows, int64_t M, int64_t K, int64_t N, const std::vector<float>& a,
                       int64_t lda, const void* b, const std::vector<float>& want) {
  for (const Row& r : rows)
    if (std::string err = check_row(r, M, K, N, a, lda, b, want); !err.empty()) return err;
  return "";
}

// The near misses of the contract a kernel could take instead; each sweep's data must tell every one of them from
// the contract somewhere.
enum class Miss { ascending, even_first, no_daz_ftz, no_zero_pair };

template <class Weight>
float missed_chain(Miss miss, const float* a, int64_t K, Weight weight) {
  const auto f = [&](float x, float y, float acc) { return miss == Miss::no_daz_ftz ? std::fma(x, y, acc) : fma_daz_ftz(x, y, acc); };
  float acc = 0.0f;
  if (miss == Miss::ascending) {
    for (int64_t k = 0; k < K; ++k) acc = f(a[k], weight(k), acc);
    return acc;
  }
  for (int64_t k = 0; k < K; k += 2) {
    const bool odd = k + 1 < K;
    if (miss == Miss::even_first) {
      acc = f(a[k], weight(k), acc);
      if (odd) acc = f(a[k + 1], weight(k + 1), acc);
      continue;
    }
    if (odd) acc = f(a[k + 1], weight(k + 1), acc);
    else if (miss != Miss::no_zero_pair) acc = f(0.0f, 0.0f, acc);
    acc = f(a[k], weight(k), acc);
  }
  return acc;
}

// Counts, per near miss, the outputs where the sweep's data gives other bits than the contract (want).
struct MissCounts {
  int64_t n[4] = {};
  template <class Weight>
  void add(const std::vector<float>& a, int64_t lda, int64_t M, int64_t K, int64_t N, const std::vector<float>& want,
           Weight weight) {
    for (int miss = 0; miss < 4; ++miss)
      for (int64_t m = 0; m < M; ++m)
        for (int64_t col = 0; col < N; ++col) {
          const float x = missed_chain(Miss(miss), a.data() + m * lda, K, [&](int64_t k) { return weight(k, col); });
          n[miss] += !same_bits(x, want[size_t(m * N + col)]);
        }
  }
  void expect_all_seen() const {
    const char* names[] = {"k ascending", "even k first", "no DAZ/FTZ", "no zero pair"};
    for (int miss = 0; miss < 4; ++miss) EXPECT_GT(n[miss], 0) << "the data never tells the contract from: " << names[miss];
  }
};

// Values whose products and sums reach the contract's edges. For A (fp32): subnormals (an fp32 one and a
// bf16-valued one), FLT_MIN and 1 - 2^-24 (times the weight FLT_MIN exactly FLT_MIN - 2^-150: in x86's flush window,
// where a plain fma rounds up to FLT_MIN), small powers of two whose products underflow, signed zeros, infinities,
// NaN. For B (bf16): FLT_MIN, bf16 subnormals, 2^-66 and 2^-60 (2^-60 x 2^-66 = FLT_MIN; 2^-60 x 2^-70 underflows).
float special_a(Rng& rng) {
  const float inf = std::numeric_limits<float>::infinity();
  const float pool[] = {FLT_MIN,
                        -FLT_MIN,
                        std::numeric_limits<float>::denorm_min() * 7.0f,
                        -std::numeric_limits<float>::denorm_min() * 7.0f,
                        f32_from_bits(0x00010000u),  // a bf16-valued subnormal
                        f32_from_bits(0x807f0000u),
                        1.0f - 0x1p-24f,
                        -(1.0f - 0x1p-24f),
                        0x1p-60f,
                        -0x1p-60f,
                        0x1p-70f,
                        -0x1p-70f,
                        0x1p60f,
                        1.0f,
                        -1.0f,
                        2.0f,
                        0.0f,
                        -0.0f,
                        inf,
                        -inf,
                        std::numeric_limits<float>::quiet_NaN()};
  return pool[rng.integer(0, int64_t(std::size(pool)) - 1)];
}

float special_b(Rng& rng) {
  const uint16_t pool[] = {0x0080, 0x8080, 0x0100, 0x0001, 0x007f, 0x8001, 0x807f, 0x1e80 /* 2^-66 */,
                           0x2180 /* 2^-60 */, 0xa180, 0x1c80 /* 2^-70 */, 0x3f80, 0xbf80, 0x0000, 0x8000,
                           0x7f80, 0xff80, 0x7fc0, 0x5d80 /* 2^60 */};
  return to_f32(bfloat16{pool[rng.integer(0, int64_t(std::size(pool)) - 1)]});
}

// A [M, lda] with K values per row: `special` of them from special_a, the others normal with exponents from 2^-70 to
// 2^10 (so that sums also lose low bits and underflow); bf16_valued rounds every value to bf16.
std::vector<float> make_a(Rng& rng, int64_t M, int64_t K, int64_t lda, double special, bool bf16_valued) {
  std::vector<float> a(size_t(M * lda), std::numeric_limits<float>::quiet_NaN());  // padding: NaN, never read
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) {
      float v = rng.coin(special) ? special_a(rng) : rng.normal() * std::ldexp(1.0f, int(rng.integer(-70, 10)));
      if (bf16_valued) v = to_f32(to_bf16(v));
      a[size_t(m * lda + k)] = v;
    }
  return a;
}

// bf16 weights [K, N] (as fp32 values), `special` of them from special_b, the others normal times 2^-60 .. 2^4.
std::vector<float> make_b(Rng& rng, int64_t K, int64_t N, double special) {
  std::vector<float> b(size_t(K * N));
  for (float& v : b)
    v = rng.coin(special) ? special_b(rng) : to_f32(to_bf16(rng.normal() * std::ldexp(1.0f, int(rng.integer(-60, 4)))));
  return b;
}

gemm::PackedWeights pack_bf16(const std::vector<float>& b, int64_t K, int64_t N) {
  std::vector<bfloat16> h(b.size());
  for (size_t i = 0; i < b.size(); ++i) h[i] = to_bf16(b[i]);
  return gemm::pack_weights_f(h.data(), DType::bf16, K, N, N, 1);
}

// Odd, even and prime K (the zero pair; a pair across the A buffer's 16 columns), M and N around every bf16 tile
// (AVX2: 1 x 96, 2 x 32, 6 x 16; AVX-512: 6 x 64, 12 x 32), random values with a few specials (N = 95: many), A
// fp32 or bf16-valued.
TEST(GemmBf16Contract, OddEvenAndPrimeKOnEveryTile) {
  Rng rng(1601);
  const std::vector<Row> rows = rows_of(kernels::Op::gemm_float);
  MissCounts misses;
  for (int64_t K : {1, 2, 3, 5, 15, 16, 17, 31, 32, 33, 37, 61, 127, 129})
    for (int64_t N : {1, 33, 95, 160})
      for (int64_t M : {1, 2, 3, 6, 7, 12, 13, 25}) {
        const bool bf16_a = (K + M) % 2 == 0;
        const int64_t lda = K + 1;
        const double special = N == 95 ? 0.3 : 0.05;
        const std::vector<float> a = make_a(rng, M, K, lda, special, bf16_a);
        const std::vector<float> b = make_b(rng, K, N, special);
        const gemm::PackedWeights pw = pack_bf16(b, K, N);
        const auto weight = [&](int64_t k, int64_t n) { return b[size_t(k * N + n)]; };
        const std::vector<float> want = testing::bf16_chain(a, lda, M, K, N, weight);
        if (M <= 3) misses.add(a, lda, M, K, N, want, weight);
        ASSERT_EQ(check_rows(rows, M, K, N, a, lda, pw.data(), want), "");
      }
  misses.expect_all_seen();
}

// Mostly special values (subnormal weights and activations, underflowing products, the flush window, signed zeros,
// infinities, NaN), odd and even K, on every bf16 row.
TEST(GemmBf16Contract, SubnormalsUnderflowSignedZerosInfNaN) {
  Rng rng(1602);
  const std::vector<Row> rows = rows_of(kernels::Op::gemm_float);
  MissCounts misses;
  int64_t negative_zeros = 0, flushed = 0;
  for (int64_t K : {1, 2, 3, 4, 7, 16, 17, 33})
    for (int64_t M : {1, 2, 6, 7, 13})
      for (bool bf16_a : {false, true}) {
        const int64_t N = 95, lda = K;
        const std::vector<float> a = make_a(rng, M, K, lda, 0.6, bf16_a);
        const std::vector<float> b = make_b(rng, K, N, 0.6);
        const gemm::PackedWeights pw = pack_bf16(b, K, N);
        const auto weight = [&](int64_t k, int64_t n) { return b[size_t(k * N + n)]; };
        const std::vector<float> want = testing::bf16_chain(a, lda, M, K, N, weight);
        misses.add(a, lda, M, K, N, want, weight);
        for (int64_t i = 0; i < M * N; ++i) {
          negative_zeros += std::bit_cast<uint32_t>(want[size_t(i)]) == 0x80000000u;
          // the same chain without DAZ/FTZ ends on a non-zero where the contract gives a zero
          const int64_t m = i / N, n = i % N;
          flushed += want[size_t(i)] == 0.0f &&
                     missed_chain(Miss::no_daz_ftz, a.data() + m * lda, K, [&](int64_t k) { return weight(k, n); }) != 0.0f;
        }
        ASSERT_EQ(check_rows(rows, M, K, N, a, lda, pw.data(), want), "");
      }
  misses.expect_all_seen();
  EXPECT_GT(negative_zeros, 0);
  EXPECT_GT(flushed, 0);
}

// Hand-made rows: the flush window (A = 1 - 2^-24, B = FLT_MIN: exactly FLT_MIN - 2^-150, +-0 under the contract,
// FLT_MIN for a plain fma), products of -tiny and tiny (-0), and the zero pair turning -0 into +0 before a last
// product of -0 (K = 3: -0 without it). Columns are the 32 lanes of a panel and more, rows each tile's.
TEST(GemmBf16Contract, FlushWindowAndTheZeroPair) {
  const float w_min = FLT_MIN, tiny = 0x1p-70f;
  struct Case {
    std::vector<float> a, b;  // one row of A and one column of B, K = size
    uint32_t want;
  };
  const Case cases[] = {
      {{1.0f - 0x1p-24f}, {w_min}, 0x00000000u},       // K = 1: zero pair, then the window: +0
      {{-(1.0f - 0x1p-24f)}, {w_min}, 0x80000000u},    // -0
      {{1.0f - 0x1p-24f, 0.0f}, {w_min, 1.0f}, 0x00000000u},
      {{-tiny, -tiny, -0.0f}, {tiny, tiny, 1.0f}, 0x00000000u},  // -0, -0, zero pair +0, then -0 x 1 + +0 = +0
      {{-tiny, -tiny}, {tiny, tiny}, 0x80000000u},                // -tiny x tiny flushes to -0, twice
      {{0x1p-60f, 1.0f}, {0x1p-66f, -0.0f}, 0x00800000u},         // k = 1 first (+0), then FLT_MIN exactly
      {{0x1p-60f, 0x1p-60f}, {-0x1p-70f, -0x1p-70f}, 0x80000000u},  // -2^-130 twice: -0 (plain fmas: -2^-129)
  };
  const std::vector<Row> rows = rows_of(kernels::Op::gemm_float);
  for (const Case& cs : cases) {
    const int64_t K = int64_t(cs.a.size()), N = 70;
    for (int64_t M : {1, 2, 6, 12, 13}) {
      std::vector<float> a(size_t(M * K)), b(size_t(K * N));
      for (int64_t m = 0; m < M; ++m)
        for (int64_t k = 0; k < K; ++k) a[size_t(m * K + k)] = cs.a[size_t(k)];
      for (int64_t k = 0; k < K; ++k)
        for (int64_t n = 0; n < N; ++n) b[size_t(k * N + n)] = cs.b[size_t(k)];
      const auto weight = [&](int64_t k, int64_t n) { return b[size_t(k * N + n)]; };
      const std::vector<float> want = testing::bf16_chain(a, K, M, K, N, weight);
      ASSERT_EQ(std::bit_cast<uint32_t>(want[0]), cs.want) << "case " << (&cs - cases);
      const gemm::PackedWeights pw = pack_bf16(b, K, N);
      ASSERT_EQ(check_rows(rows, M, K, N, a, K, pw.data(), want), "") << "case " << (&cs - cases);
    }
  }
}

// ─── FP8 ───────────────────────────────────────────────────────────────────────────────────────────────────────

// FP8 weights, one scale per column (block_n = 1) and 128-row block.
struct Fp8 {
  int64_t K, N;
  std::vector<uint8_t> q;    // [K, N]
  std::vector<float> scale;  // [ceil(K / 128), N]
  gemm::Fp8Source source() const { return {q.data(), N, 1, scale.data(), N, 1, 128, 1}; }
  // The contract's weight, formed here in the default FPU mode.
  float weight(int64_t k, int64_t n) const {
    return to_f32(to_bf16(testing::e4m3_by_definition(q[size_t(k * N + n)]) * scale[size_t((k / 128) * N + n)]));
  }
};

// Random codes (subnormal ones among them, no NaN code) with scales per 8-column vector and block: one scale (the
// table forms) or two (the scales form), some tiny enough that weights are bf16 subnormals.
Fp8 random_fp8(Rng& rng, int64_t K, int64_t N) {
  Fp8 f{K, N, std::vector<uint8_t>(size_t(K * N)), std::vector<float>(size_t((K + 127) / 128 * N))};
  for (auto& v : f.q) {
    v = uint8_t(rng.integer(0, 255));
    if ((v & 0x7f) == 0x7f) v = uint8_t(v - 1);
  }
  for (int64_t g = 0; g < (K + 127) / 128; ++g)
    for (int64_t v0 = 0; v0 < N; v0 += 8) {
      const int kind = int(rng.integer(0, 2));
      const float s = rng.uniform(0.5f, 1.5f) * std::ldexp(1.0f, kind == 2 ? int(rng.integer(-135, -118)) : int(rng.integer(-12, 4)));
      for (int64_t n = v0; n < std::min(N, v0 + 8); ++n) f.scale[size_t(g * N + n)] = kind == 1 && n % 2 ? s * 1.75f : s;
    }
  return f;
}

// K around the 128-row blocks (a pair of k never straddles two blocks: every block but the last is even), odd and
// even last blocks, M over every FP8 path (AVX2: 1 x 32 and 2 x 32 tiles, 8-row strips, the block path from 12 rows;
// AVX-512: 4 x 64 pairs, 8 x 32 singles, the block path from 64 rows; AVX512-BF16: that block path on vdpbf16ps
// tiles from 8 rows, which A of bf16 values reaches), A with specials, fp32 or bf16-valued.
TEST(GemmBf16Contract, Fp8AroundTheBlocksOnEveryPath) {
  Rng rng(1603);
  const std::vector<Row> rows = rows_of(kernels::Op::gemm_fp8);
  MissCounts misses;
  for (int64_t K : {1, 3, 127, 128, 129, 255, 256, 257})
    for (int64_t N : {33, 70}) {
      const Fp8 f = random_fp8(rng, K, N);
      const gemm::PackedWeights pw = gemm::pack_weights_fp8(f.source(), K, N);
      std::vector<float> w(size_t(K * N));
      for (int64_t k = 0; k < K; ++k)
        for (int64_t n = 0; n < N; ++n) w[size_t(k * N + n)] = f.weight(k, n);
      const auto weight = [&](int64_t k, int64_t n) { return w[size_t(k * N + n)]; };
      for (int64_t M : {1, 2, 3, 4, 5, 8, 9, 12, 13, 64, 65, 127, 128}) {
        const int64_t lda = K + 3;
        const std::vector<float> a = make_a(rng, M, K, lda, 0.05, M % 2 == 1 || M == 64);
        const std::vector<float> want = testing::bf16_chain(a, lda, M, K, N, weight);
        if (M <= 2) misses.add(a, lda, M, K, N, want, weight);
        ASSERT_EQ(check_rows(rows, M, K, N, a, lda, pw.data(), want), "");
      }
    }
  misses.expect_all_seen();
}

// The FP8 kernels run their FMAs with DAZ/FTZ, but the contract's weight bf16(e4m3 * s) is formed in the default
// mode. Weights of the scales form (two scales per vector) whose fp32 product is a subnormal that rounds up to the
// bf16 FLT_MIN (0.5 x 2^-125 (1 - 2^-10)), whose scale is itself subnormal (448 x 2^-130, a normal weight), and
// whose weight is a bf16 subnormal (2^-9 x 2^-120: the dot product then reads it as zero). A kernel that formed the
// first two under FTZ/DAZ would get zeros; A = 2^100 makes the difference visible in C.
TEST(GemmBf16Contract, Fp8WeightsAreFormedInTheDefaultMode) {
  const float s_round_up = 0x1p-125f * (1.0f - 0x1p-10f), s_subnormal = 0x1p-130f, s_sub_weight = 0x1p-120f;
  ASSERT_EQ(std::fpclassify(s_subnormal), FP_SUBNORMAL);
  const std::vector<Row> rows = rows_of(kernels::Op::gemm_fp8);
  Rng rng(1604);
  for (int64_t K : {1, 2, 129, 257}) {
    const int64_t N = 40;  // a full panel and a partial one
    Fp8 f{K, N, std::vector<uint8_t>(size_t(K * N)), std::vector<float>(size_t((K + 127) / 128 * N))};
    for (int64_t g = 0; g < (K + 127) / 128; ++g)
      for (int64_t n = 0; n < N; ++n) {
        const int kind = int(n % 4);
        f.scale[size_t(g * N + n)] = kind == 0 ? s_round_up : kind == 1 ? s_subnormal : kind == 2 ? s_sub_weight : 1.0f;
        for (int64_t k = g * 128; k < std::min(K, g * 128 + 128); ++k) {
          const uint8_t sign = rng.coin() ? 0x80 : 0x00;
          const uint8_t code = kind == 0 ? 0x30 : kind == 1 ? 0x7e : kind == 2 ? 0x01 : uint8_t(rng.integer(0x08, 0x7e));
          f.q[size_t(k * N + n)] = uint8_t(sign | code);
        }
      }
    ASSERT_EQ(std::abs(f.weight(0, 0)), FLT_MIN);
    ASSERT_EQ(std::abs(f.weight(0, 1)), 448.0f * s_subnormal);
    ASSERT_EQ(std::fpclassify(f.weight(0, 2)), FP_SUBNORMAL);
    const gemm::PackedWeights pw = gemm::pack_weights_fp8(f.source(), K, N);
    for (int64_t p = 0; p < pw.panels(); ++p)  // every vector of columns 0..2 has form scales (two scales in it)
      for (int64_t g = 0; g < gemm::fp8_blocks(K); ++g)
        ASSERT_EQ(gemm::fp8_form(static_cast<const uint8_t*>(pw.data())[size_t(p) * pw.panel_bytes() + size_t(g)], 0),
                  gemm::Fp8Form::scales);
    const auto weight = [&](int64_t k, int64_t n) { return f.weight(k, n); };
    for (int64_t M : {1, 3, 5, 8, 12, 64, 65}) {
      std::vector<float> a(size_t(M * K));
      for (float& v : a) v = rng.uniform(1.0f, 2.0f) * 0x1p100f * (rng.coin() ? 1.0f : -1.0f);
      if (M == 12 || M == 65)  // bf16 values: the AVX512-BF16 row's vdpbf16ps block path
        for (float& v : a) v = to_f32(to_bf16(v));
      const std::vector<float> want = testing::bf16_chain(a, K, M, K, N, weight);
      for (int64_t m = 0; m < M; ++m) {  // the first two kinds give non-zero C; the third gives +-0 (its w is zero)
        ASSERT_NE(want[size_t(m * N + 0)], 0.0f);
        ASSERT_NE(want[size_t(m * N + 1)], 0.0f);
        ASSERT_EQ(want[size_t(m * N + 2)], 0.0f);
      }
      ASSERT_EQ(check_rows(rows, M, K, N, a, K, pw.data(), want), "");
    }
  }
}

}  // namespace
}  // namespace moefuse
