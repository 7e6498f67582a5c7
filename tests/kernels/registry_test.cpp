// Driven by the kernel registry (kernels/registry.h): every row this CPU can run is checked, bitwise, against the
// scalar row of the same operation and dtype over lengths that cross its tile edges (0 .. 3 tiles + 1, and a long
// one), on values that include signed zeros, subnormals, infinities and large magnitudes. A new row is tested by
// being in the table.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "base/elements.h"
#include "kernels/registry.h"
#include "util/gemm_sweep.h"
#include "util/random.h"

namespace moefuse {
namespace {

using kernels::KernelInfo;
using kernels::Op;

const KernelInfo& scalar_row(const KernelInfo& k) {
  const KernelInfo* s = kernels::find(k.op, k.in, kernels::Dispatch{Isa::scalar, false});
  EXPECT_NE(s, nullptr) << k.name;
  return *s;
}

// n fp32 values: normal draws with the awkward values sprinkled in.
std::vector<float> values(int64_t n, uint64_t seed, float scale = 4.0f) {
  testing::Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  const float special[] = {0.0f, -0.0f, 1e-40f, -1e-42f, 88.0f, -90.0f, 3e38f, -std::numeric_limits<float>::infinity()};
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = float(rng.normal()) * scale;
  for (int64_t i = 0; i < n; i += 7) v[size_t(i)] = special[(i / 7) % 8];
  return v;
}

// The values stored in dtype `dt` (bytes), as a kernel taking that dtype reads them.
std::vector<std::byte> stored(const std::vector<float>& v, DType dt) {
  std::vector<std::byte> out(v.size() * dtype_size(dt) + 1);
  store_row(v.data(), int64_t(v.size()), dt, out.data());
  return out;
}

template <class T>
void expect_same_bits(const std::vector<T>& a, const std::vector<T>& b, const KernelInfo& k, int64_t n) {
  ASSERT_EQ(a.size(), b.size());
  // memcmp must not see the null data() of an empty vector (n = 0).
  EXPECT_TRUE(a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0) << k.name << " n = " << n;
}

// Runs kernel `k` and its scalar row on the same inputs of length n; their outputs must agree bit for bit.
void check_against_scalar(const KernelInfo& k, int64_t n) {
  const KernelInfo& s = scalar_row(k);
  const std::vector<float> a = values(n, 11 + uint64_t(n)), b = values(n, 29 + uint64_t(n));
  switch (k.op) {
    case Op::swiglu: {
      std::vector<float> o1(static_cast<size_t>(n)), o2(static_cast<size_t>(n));
      std::get<rows::SwigluFn>(k.fn)(n, a.data(), b.data(), o1.data());
      std::get<rows::SwigluFn>(s.fn)(n, a.data(), b.data(), o2.data());
      return expect_same_bits(o1, o2, k, n);
    }
    case Op::dequant_swiglu: {
      std::vector<int32_t> g(static_cast<size_t>(n)), u(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) g[size_t(i)] = int32_t(a[size_t(i)] * 1000.0f), u[size_t(i)] = int32_t(b[size_t(i)] * 1000.0f);
      const std::vector<float> gs = values(n, 3, 0.01f), us = values(n, 5, 0.01f), sm = values(n, 7, 1.0f);
      for (const float* smooth : {static_cast<const float*>(nullptr), sm.data()}) {
        std::vector<float> o1(static_cast<size_t>(n)), o2(static_cast<size_t>(n));
        std::get<rows::DequantSwigluFn>(k.fn)(n, g.data(), u.data(), gs.data(), us.data(), 0.25f, smooth, o1.data());
        std::get<rows::DequantSwigluFn>(s.fn)(n, g.data(), u.data(), gs.data(), us.data(), 0.25f, smooth, o2.data());
        expect_same_bits(o1, o2, k, n);
      }
      return;
    }
    case Op::quantize: {
      const std::vector<std::byte> x = stored(values(n, 13 + uint64_t(n), 8.0f), k.in);  // finite rows quantise
      const std::vector<float> sm = values(n, 17, 1.0f);
      for (const float* smooth : {static_cast<const float*>(nullptr), sm.data()}) {
        std::vector<float> t1(static_cast<size_t>(n)), t2(static_cast<size_t>(n));
        std::vector<int8_t> q1(static_cast<size_t>(n)), q2(static_cast<size_t>(n));
        const float s1 = std::get<rows::QuantizeFn>(k.fn)(n, x.data(), smooth, t1.data(), q1.data());
        const float s2 = std::get<rows::QuantizeFn>(s.fn)(n, x.data(), smooth, t2.data(), q2.data());
        EXPECT_EQ(std::bit_cast<uint32_t>(s1), std::bit_cast<uint32_t>(s2)) << k.name << " n = " << n;
        expect_same_bits(q1, q2, k, n);
      }
      return;
    }
    case Op::combine: {
      const std::vector<std::byte> row = stored(b, k.in);
      for (bool accumulate : {false, true}) {
        std::vector<float> acc1 = a, acc2 = a;
        std::get<rows::CombineFn>(k.fn)(n, row.data(), 0.375f, accumulate, acc1.data());
        std::get<rows::CombineFn>(s.fn)(n, row.data(), 0.375f, accumulate, acc2.data());
        expect_same_bits(acc1, acc2, k, n);
      }
      return;
    }
    case Op::dequant: {
      std::vector<int32_t> acc(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) acc[size_t(i)] = int32_t(a[size_t(i)] * 1e5f);
      std::vector<float> o1(static_cast<size_t>(n)), o2(static_cast<size_t>(n));
      std::get<rows::DequantFn>(k.fn)(n, acc.data(), b.data(), 0.5f, o1.data());
      std::get<rows::DequantFn>(s.fn)(n, acc.data(), b.data(), 0.5f, o2.data());
      return expect_same_bits(o1, o2, k, n);
    }
    case Op::scale_round: {
      const std::vector<std::byte> x = stored(a, k.in);
      std::vector<float> o1(static_cast<size_t>(n)), o2(static_cast<size_t>(n));
      std::get<rows::ScaleRoundFn>(k.fn)(n, x.data(), 0.7f, o1.data());
      std::get<rows::ScaleRoundFn>(s.fn)(n, x.data(), 0.7f, o2.data());
      return expect_same_bits(o1, o2, k, n);
    }
    case Op::gemm_float:
    case Op::gemm_float_bf16a:  // tests/kernels/gemm_bf16a_test.cpp the bf16-A rows
    case Op::gemm_fp8_bf16a:
    case Op::gemm_u4_g32:
    case Op::gemm_u4_g64:
    case Op::gemm_u4_g128:
    case Op::gemm_u4s8_g32:
    case Op::gemm_u4s8_g64:
    case Op::gemm_u4s8_g128:  // tests/kernels/gemm_u4_test.cpp sweeps the int4 variants
    case Op::gemm_fp8:        // tests/kernels/gemm_fp8_test.cpp the FP8 ones
    case Op::gemm_s8: return;  // tests/kernels/gemm_test.cpp sweeps every GEMM variant's M, N and K edges
  }
}

TEST(KernelRegistry, EveryRowRunnableHereMatchesItsScalarRowAcrossTileEdges) {
  int checked = 0;
  for (const KernelInfo& k : kernels::registry()) {
    if (k.family != std::string("rows") || !kernels::runs_here(k)) continue;
    SCOPED_TRACE(k.name);
    const int64_t tile = k.tile_n;
    for (int64_t n = 0; n <= 3 * tile + 1; ++n) check_against_scalar(k, n);
    check_against_scalar(k, 1000 + tile - 1);
    ++checked;
  }
  EXPECT_GE(checked, 14);  // at least the scalar rows
}

TEST(KernelRegistry, RowsAreWellFormedAndDispatchPicksTheBestApplyingRow) {
  for (const KernelInfo& k : kernels::registry()) {
    const std::string name = k.name, isa = "__" + std::string(isa_name(k.isa));
    EXPECT_NE(name.find(isa), std::string::npos) << name << " should end in its ISA";
    EXPECT_TRUE(k.applies != nullptr) << name;
    EXPECT_GE(k.tile_m, 1) << name;
    EXPECT_GE(k.tile_n, 1) << name;
  }
  for (const kernels::Dispatch& d : kernels::available_dispatches()) {
    const rows::RowsKernels r = rows::select_rows_kernels(d.isa);
    EXPECT_EQ(r.combine[1], std::get<rows::CombineFn>(kernels::find(Op::combine, DType::bf16, d)->fn));
    const KernelInfo* q = kernels::find(Op::quantize, DType::f32, d);
    EXPECT_LE(int(q->isa), int(d.isa)) << q->name;
    const gemm::GemmKernels g = gemm::select_gemm_kernels(d.isa, d.vnni, d.numerics);
    EXPECT_EQ(std::string(g.bf16w.name), testing::selected_row(Op::gemm_float, DType::bf16, d)->name);
  }
  // On this project's AVX2 machines the avx2 rows serve an avx2 dispatch.
  if (int(detected_isa()) >= int(Isa::avx2)) {
    EXPECT_EQ(std::string(kernels::find(Op::combine, DType::f32, {Isa::avx2, false})->name), "combine_f32_f32__avx2");
  }
}

}  // namespace
}  // namespace moefuse
