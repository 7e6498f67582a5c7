// The bf16-A entries (gemm.h, "bf16 rows of A": gemm_bf16w_bf16a_f32_6x64__avx512bf16 and
// gemm_fp8w_bf16a_f32_4x64__avx512bf16) against the scalar float kernel of the same weights given the rows widened
// exactly, bitwise (a NaN matches any NaN: the contract leaves the payload open): M, N and K at the tiles' edges (1,
// tile - 1, tile, tile + 1, primes; the FP8 kernel's direct tiles below 8 rows and its 128-row blocks), column ranges
// starting mid-matrix, denormals, tiny products, infinities and NaN, rows further apart than K (whose padding, read,
// would show). Every such row this machine runs; skipped, with the reason, where the CPU lacks AVX512-BF16.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>

#include "kernels/gemm/gemm.h"
#include "kernels/registry.h"
#include "moefuse/cpu.h"
#include "util/random.h"

namespace moefuse {
namespace {

using kernels::KernelInfo;
using kernels::Op;
using testing::Rng;

struct Pair {
  gemm::GemmBf16AFn bf16a;
  gemm::GemmFloatFn scalar;  // the scalar float row of the same weights
  std::string name;
};

// The bf16-A rows of `op` this machine runs, each with the scalar row of `float_op`.
std::vector<Pair> rows_of(Op op, Op float_op, DType in) {
  std::vector<Pair> out;
  const KernelInfo* s = kernels::find(float_op, in, {Isa::scalar, false});
  EXPECT_NE(s, nullptr);
  for (const KernelInfo& k : kernels::registry())
    if (k.op == op && kernels::runs_here_portable(k))
      out.push_back({std::get<gemm::GemmBf16AFn>(k.fn), std::get<gemm::GemmFloatFn>(s->fn), k.name});
  return out;
}

#define REQUIRE_ROWS(rows)                                                                        \
  if ((rows).empty())                                                                             \
  GTEST_SKIP() << "no bf16-A row runs on this machine: " << bf16_dot_unusable_reason(detected_isa())

// A bf16 value, with `special` in 1000 drawn from denormals, values whose products are tiny (about 2^-140) or near
// FLT_MIN, zeros of both signs, and (non_finite) infinities and NaN.
uint16_t random_bf16(Rng& rng, int special, bool non_finite) {
  if (rng.integer(0, 999) < special) {
    const uint16_t sign = rng.coin() ? 0x8000 : 0;
    switch (rng.integer(0, non_finite ? 5 : 3)) {
      case 0: return uint16_t(rng.integer(1, 0x7f) | sign);                        // denormal
      case 1: return uint16_t(((127 - 70) << 7) | rng.integer(0, 0x7f) | sign);    // ~2^-70
      case 2: return uint16_t((1 << 7) | rng.integer(0, 0x7f) | sign);             // FLT_MIN-sized
      case 3: return sign;                                                          // +-0
      case 4: return uint16_t(0x7f80 | sign);                                       // +-inf
      default: return 0x7fc0;                                                       // NaN
    }
  }
  return to_bf16(rng.normal()).bits;
}

// Rows of A, lda = K + 3, the padding a NaN (read past K, it would make NaN).
struct Rows {
  int64_t lda = 0;
  std::vector<bfloat16> a16;
  std::vector<float> a32;  // the same values widened
};

Rows make_rows(Rng& rng, int64_t M, int64_t K, int special, bool non_finite) {
  Rows r;
  r.lda = K + 3;
  r.a16.assign(size_t(M * r.lda), bfloat16{0x7fc1});
  r.a32.assign(r.a16.size(), to_f32(bfloat16{0x7fc1}));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) {
      const bfloat16 v{random_bf16(rng, special, non_finite)};
      r.a16[size_t(m * r.lda + k)] = v;
      r.a32[size_t(m * r.lda + k)] = to_f32(v);
    }
  return r;
}

gemm::PackedWeights bf16_weights(Rng& rng, int64_t K, int64_t N, int special, bool non_finite) {
  std::vector<bfloat16> b(size_t(K * N));
  for (bfloat16& v : b) v.bits = random_bf16(rng, special, non_finite);
  return gemm::pack_weights_f(b.data(), DType::bf16, K, N, N, 1);
}

// e4m3 codes (NaN codes among them with non_finite) and one scale per 128 x 128 block, some of them tiny.
gemm::PackedWeights fp8_weights(Rng& rng, int64_t K, int64_t N, int special, bool non_finite) {
  std::vector<uint8_t> q(size_t(K * N));
  for (uint8_t& v : q) {
    v = uint8_t(rng.integer(0, 255));
    if (!non_finite && (v & 0x7f) == 0x7f) v = 0x3f;
  }
  const int64_t kb = (K + 127) / 128, nb = (N + 127) / 128;
  std::vector<float> s(size_t(std::max<int64_t>(kb * nb, 1)));
  for (float& v : s) v = rng.integer(0, 999) < special ? 0x1p-130f : std::ldexp(1.0f + float(rng.integer(0, 99)) / 100, int(rng.integer(-6, 6)));
  const gemm::Fp8Source src{q.data(), N, 1, s.data(), nb, 1, 128, 128};
  return gemm::pack_weights_fp8(src, K, N);
}

::testing::AssertionResult same(const std::vector<float>& want, const std::vector<float>& got) {
  for (size_t i = 0; i < want.size(); ++i) {
    uint32_t w, g;
    std::memcpy(&w, &want[i], 4);
    std::memcpy(&g, &got[i], 4);
    if (!(std::isnan(want[i]) && std::isnan(got[i])) && w != g)
      return ::testing::AssertionFailure() << "element " << i << ": want 0x" << std::hex << w << ", got 0x" << g;
  }
  return ::testing::AssertionSuccess();
}

// C[0..M) x [n0, n1) by the row and by its scalar float row into ldc = n1 - n0 + 2 columns of a sentinel (which
// must stay); the two must agree.
void check(const Pair& p, const gemm::PackedWeights& w, const Rows& r, int64_t M, int64_t n0, int64_t n1) {
  const int64_t ldc = n1 - n0 + 2, K = w.k();
  std::vector<float> want(size_t(M * ldc), -7.0f), got(want);
  p.scalar(M, K, n0, n1, r.a32.data(), r.lda, w.data(), want.data(), ldc);
  p.bf16a(M, K, n0, n1, r.a16.data(), r.lda, w.data(), got.data(), ldc);
  EXPECT_TRUE(same(want, got)) << p.name << " M=" << M << " K=" << K << " n0=" << n0 << " n1=" << n1;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = n1 - n0; n < ldc; ++n) ASSERT_EQ(got[size_t(m * ldc + n)], -7.0f) << p.name << " pad written";
}

const int64_t kMs[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 17, 25, 64};
const int64_t kNs[] = {1, 31, 32, 33, 63, 64, 65, 97, 130};

// Every row pair on every K of `Ks` and M of kMs (N cycling through kNs; every third shape with 100 special values
// and non-finite ones, as make_rows and the weight makers take them), weights from make_weights(rng, K, N, special,
// non_finite).
template <class MakeWeights>
void sweep_shapes(const std::vector<Pair>& rows, Rng& rng, std::initializer_list<int64_t> Ks,
                  MakeWeights make_weights) {
  int i = 0;
  for (const Pair& p : rows)
    for (int64_t K : Ks)
      for (int64_t M : kMs) {
        const int64_t N = kNs[size_t(i++) % std::size(kNs)];
        const bool odd = i % 3 == 0;
        const gemm::PackedWeights w = make_weights(rng, K, N, odd ? 100 : 0, odd);
        const Rows r = make_rows(rng, M, K, odd ? 100 : 0, odd);
        check(p, w, r, M, 0, N);
      }
}

TEST(GemmBf16A, BfloatWeightsEqualTheScalarKernelOnWidenedRows) {
  const std::vector<Pair> rows = rows_of(Op::gemm_float_bf16a, Op::gemm_float, DType::bf16);
  REQUIRE_ROWS(rows);
  Rng rng(41);
  sweep_shapes(rows, rng, {0, 1, 2, 31, 32, 33, 37, 63, 64, 65, 257}, bf16_weights);
}

TEST(GemmBf16A, FP8WeightsEqualTheScalarKernelOnWidenedRows) {
  const std::vector<Pair> rows = rows_of(Op::gemm_fp8_bf16a, Op::gemm_fp8, DType::u8);
  REQUIRE_ROWS(rows);
  Rng rng(43);
  // 513, 1031: the block path's runs of 4 formed blocks (512 rows of K) and the chains carried between them.
  sweep_shapes(rows, rng, {0, 1, 2, 33, 127, 128, 129, 257, 300, 513, 1031}, fp8_weights);
}

TEST(GemmBf16A, ColumnRangesStartingMidMatrix) {
  Rng rng(47);
  for (const bool fp8 : {false, true}) {
    const std::vector<Pair> rows = fp8 ? rows_of(Op::gemm_fp8_bf16a, Op::gemm_fp8, DType::u8)
                                       : rows_of(Op::gemm_float_bf16a, Op::gemm_float, DType::bf16);
    REQUIRE_ROWS(rows);
    const int64_t K = 131, N = 161;
    const gemm::PackedWeights w = fp8 ? fp8_weights(rng, K, N, 50, true) : bf16_weights(rng, K, N, 50, true);
    for (const Pair& p : rows)
      for (int64_t M : {1, 7, 9, 13})
        for (int64_t n0 : {0, 32, 64, 128})
          for (int64_t n1 : {n0 + 1, n0 + 32, n0 + 33, n0 + 64, N}) {
            if (n1 > N || n1 <= n0) continue;
            check(p, w, make_rows(rng, M, K, 50, true), M, n0, n1);
          }
  }
}

// The dispatch: bf16 weights have a bf16-A entry from avx512 on (the FMA kernel's, then vdpbf16ps's where its
// self-test passed), FP8 weights only where vdpbf16ps runs; below, an empty entry (callers widen).
TEST(GemmBf16A, DispatchHoldsTheRowsWhereTheyRun) {
  for (const kernels::Dispatch& d : kernels::available_dispatches()) {
    const gemm::GemmKernels k = gemm::select_gemm_kernels(d.isa, d.vnni);
    const bool dot = *bf16_dot_unused_reason(d.isa) == '\0';  // usable, and preferred here (prefer_bf16_dot)
    EXPECT_EQ(k.bf16w_bf16a.fn != nullptr, d.isa >= Isa::avx512) << isa_name(d.isa);
    EXPECT_EQ(k.fp8w_bf16a.fn != nullptr, dot) << isa_name(d.isa);
    if (dot) {
      EXPECT_STREQ(k.bf16w_bf16a.name, "gemm_bf16w_bf16a_f32_6x64__avx512bf16");
      EXPECT_STREQ(k.fp8w_bf16a.name, "gemm_fp8w_bf16a_f32_4x64__avx512bf16");
    } else if (d.isa >= Isa::avx512) {
      EXPECT_STREQ(k.bf16w_bf16a.name, "gemm_bf16w_bf16a_f32_6x64__avx512");
    }
  }
}

}  // namespace
}  // namespace moefuse
