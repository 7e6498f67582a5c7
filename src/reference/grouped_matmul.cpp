#include "reference/grouped_matmul.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "base/bf16_dot.h"
#include "base/elements.h"
#include "base/groups.h"
#include "base/scratch.h"
#include "moefuse/cpu.h"

namespace moefuse::reference {
namespace {

// Strided source of a 1-D run of elements: base pointer (in elements of `dtype`), element stride.
struct Run {
  const void* base;
  DType dtype;
  int64_t offset;  // in elements from base
  int64_t stride;  // in elements
};

template <class T>
float widen(T v) {
  if constexpr (std::is_same_v<T, float>) return v;
  else if constexpr (std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>) return to_f32(v);
  else return float(v);
}

// dst[i] = float(src[i]) for i < n, exact (the dtype switch is outside the loop).
template <class T>
void widen_run_as(const Run& s, int64_t n, float* dst) {
  const T* p = static_cast<const T*>(s.base) + s.offset;
  for (int64_t i = 0; i < n; ++i) dst[i] = widen(p[i * s.stride]);
}

void widen_run(const Run& s, int64_t n, float* dst) {
  switch (s.dtype) {
    case DType::f32: widen_run_as<float>(s, n, dst); return;
    case DType::bf16: widen_run_as<bfloat16>(s, n, dst); return;
    case DType::f16: widen_run_as<float16>(s, n, dst); return;
    case DType::i8: widen_run_as<int8_t>(s, n, dst); return;
    case DType::i32: widen_run_as<int32_t>(s, n, dst); return;
    default:
      for (int64_t i = 0; i < n; ++i) dst[i] = load_element_f32(s.base, s.dtype, s.offset + i * s.stride);
      return;
  }
}

// The bf16 contract's reading of an input (base/bf16_dot.h's denormal_as_zero): a value below FLT_MIN in magnitude
// becomes a zero of its sign (zeros stay, NaN compares false and stays), written with a compare so that it vectorises.
inline float daz(float v) { return std::fabs(v) < FLT_MIN ? std::copysign(0.0f, v) : v; }

// widen_run read through daz(), for the bf16 contract's inputs.
template <class T>
void widen_daz_run_as(const Run& s, int64_t n, float* dst) {
  const T* p = static_cast<const T*>(s.base) + s.offset;
  for (int64_t i = 0; i < n; ++i) dst[i] = daz(widen(p[i * s.stride]));
}

void widen_daz_run(const Run& s, int64_t n, float* dst) {
  switch (s.dtype) {
    case DType::f32: widen_daz_run_as<float>(s, n, dst); return;
    case DType::bf16: widen_daz_run_as<bfloat16>(s, n, dst); return;
    case DType::f16: widen_daz_run_as<float16>(s, n, dst); return;
    default:
      widen_run(s, n, dst);
      for (int64_t i = 0; i < n; ++i) dst[i] = daz(dst[i]);
      return;
  }
}

// dst[i] = int32(src[i]) for an i8 or i32 run.
void int_run(const Run& s, int64_t n, int32_t* dst) {
  if (s.dtype == DType::i8) {
    const int8_t* p = static_cast<const int8_t*>(s.base) + s.offset;
    for (int64_t i = 0; i < n; ++i) dst[i] = p[i * s.stride];
  } else {
    const int32_t* p = static_cast<const int32_t*>(s.base) + s.offset;
    for (int64_t i = 0; i < n; ++i) dst[i] = p[i * s.stride];
  }
}

// The two inner loops, over one output row: acc[n] = fma(xv, w[n], acc[n]) and isum[n] += xv * w[n]. They are
// built twice, for baseline x86-64 and for CPUs with FMA/AVX2, and fma_row / mac_row pick one once, at first use,
// from cpu_features(). std::fma is exactly rounded either way and the integer sum is exact, so both give the same
// bits; the FMA build only avoids the C library's slow software fmaf and vectorises. Not GCC's target_clones: its
// ifunc resolver runs while the dynamic loader relocates the binary, before a sanitizer's runtime is set up, and
// crashes every ThreadSanitizer-instrumented program before main.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MOEFUSE_REF_TARGET(isa) __attribute__((target(isa)))
#define MOEFUSE_REF_HAS_TARGETS 1
#else
#define MOEFUSE_REF_TARGET(isa)
#define MOEFUSE_REF_HAS_TARGETS 0
#endif

void fma_row_baseline(float xv, const float* w, float* acc, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] = std::fma(xv, w[i], acc[i]);
}
MOEFUSE_REF_TARGET("fma") void fma_row_fma(float xv, const float* w, float* acc, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] = std::fma(xv, w[i], acc[i]);
}
void mac_row_baseline(int32_t xv, const int32_t* w, int32_t* isum, int64_t n) {
  for (int64_t i = 0; i < n; ++i) isum[i] += xv * w[i];
}
MOEFUSE_REF_TARGET("avx2") void mac_row_avx2(int32_t xv, const int32_t* w, int32_t* isum, int64_t n) {
  for (int64_t i = 0; i < n; ++i) isum[i] += xv * w[i];
}

// The CPU and the OS support AVX (and so the VEX-encoded FMA and AVX2 forms): the condition GCC's resolver checked.
bool cpu_has(bool feature) { return MOEFUSE_REF_HAS_TARGETS && feature && cpu_features().os_avx; }

void fma_row(float xv, const float* w, float* acc, int64_t n) {
  static const auto fn = cpu_has(cpu_features().fma) ? fma_row_fma : fma_row_baseline;
  fn(xv, w, acc, n);
}

// One pair of the bf16 contract over one output row: acc[n] = fma_daz_ftz(x0, w0[n], fma_daz_ftz(x1, w1[n],
// acc[n])) (base/bf16_dot.h), for inputs that DAZ leaves alone — x0, x1, w0[n], w1[n] already read through daz()
// (the caller does it when it widens them), acc[n] never subnormal (it starts at +0 and every step leaves a zero or a
// normal value). For those, fma_daz_ftz(a, b, c) is r = fma(a, b, c) with |r| < FLT_MIN flushed to a zero of r's
// sign, except where |r| == FLT_MIN (it then looks at the exact sum). So, 64 lanes at a time: both steps that way
// into q; then the flushed q, or, if any step of any lane met |r| == FLT_MIN (rare), the chunk from its accumulators
// with fma_daz_ftz itself. The loops vectorise (but the rare one). Built twice, as fma_row.
#if defined(__GNUC__) || defined(__clang__)
#define MOEFUSE_REF_INLINE __attribute__((always_inline)) inline  // into each build, to be compiled for its ISA
#define MOEFUSE_REF_RESTRICT __restrict
#else
#define MOEFUSE_REF_INLINE inline
#define MOEFUSE_REF_RESTRICT
#endif
MOEFUSE_REF_INLINE void fma_daz_ftz_pair_body(float x1, const float* MOEFUSE_REF_RESTRICT w1, float x0,
                                              const float* MOEFUSE_REF_RESTRICT w0, float* MOEFUSE_REF_RESTRICT acc,
                                              int64_t n) {
  constexpr int64_t kLanes = 64;
  auto flush = [](float r) { return std::fabs(r) < FLT_MIN ? std::copysign(0.0f, r) : r; };
  float q[kLanes];
  for (int64_t i0 = 0; i0 < n; i0 += kLanes) {
    const int64_t nb = std::min(kLanes, n - i0);
    float* MOEFUSE_REF_RESTRICT out = acc + i0;
    const float* MOEFUSE_REF_RESTRICT v1 = w1 + i0;
    const float* MOEFUSE_REF_RESTRICT v0 = w0 + i0;
    int edge = 0;
    for (int64_t i = 0; i < nb; ++i) {
      const float r = std::fma(x1, v1[i], out[i]);
      q[i] = std::fma(x0, v0[i], flush(r));
      edge |= (std::fabs(r) == FLT_MIN) | (std::fabs(q[i]) == FLT_MIN);
    }
    if (!edge) {
      for (int64_t i = 0; i < nb; ++i) out[i] = flush(q[i]);
    } else {
      for (int64_t i = 0; i < nb; ++i) out[i] = fma_daz_ftz(x0, v0[i], fma_daz_ftz(x1, v1[i], out[i]));
    }
  }
}
void fma_daz_ftz_pair_baseline(float x1, const float* w1, float x0, const float* w0, float* acc, int64_t n) {
  fma_daz_ftz_pair_body(x1, w1, x0, w0, acc, n);
}
MOEFUSE_REF_TARGET("fma") void fma_daz_ftz_pair_fma(float x1, const float* w1, float x0, const float* w0, float* acc,
                                                    int64_t n) {
  fma_daz_ftz_pair_body(x1, w1, x0, w0, acc, n);
}

void fma_daz_ftz_pair(float x1, const float* w1, float x0, const float* w0, float* acc, int64_t n) {
  static const auto fn = cpu_has(cpu_features().fma) ? fma_daz_ftz_pair_fma : fma_daz_ftz_pair_baseline;
  fn(x1, w1, x0, w0, acc, n);
}

void mac_row(int32_t xv, const int32_t* w, int32_t* isum, int64_t n) {
  static const auto fn = cpu_has(cpu_features().avx2) ? mac_row_avx2 : mac_row_baseline;
  fn(xv, w, isum, n);
}

// Work is done on tiles of kRowBlock rows x kColTile columns: one row of the expert's weight tile serves the whole
// row block while it is in cache, and the widened weight tile stays bounded (K x kColTile floats). Each output
// element still sees its contract's order of k (below), so tiling changes nothing in the arithmetic.
constexpr int64_t kRowBlock = 8;
constexpr int64_t kColTile = 256;

// Row `e` of a per-expert tensor ([E, N], or [N] for the single expert 0), from column n0.
Run expert_row(const Tensor& t, int64_t e, int64_t n0) {
  if (t.dim() == 1) return Run{t.data(), t.dtype(), n0 * t.stride(0), t.stride(0)};
  return Run{t.data(), t.dtype(), e * t.stride(0) + n0 * t.stride(1), t.stride(1)};
}


struct Dims {
  int64_t M, K, N;
  int64_t w_se, w_sk, w_sn;  // weight strides along E, K, N (w_se = 0 for a 2-D weight)
};

// Calls fn(expert, begin, end) for every non-empty group; returns the number of rows covered (groups are
// consecutive from row 0).
template <class Fn>
int64_t for_groups(const GroupedMatmulArgs& a, int64_t M, Fn&& fn) {
  if (!a.group_list.defined()) {
    if (M > 0) fn(int64_t(0), int64_t(0), M);
    return M;
  }
  int64_t covered = 0;
  for_each_group(a.group_list, GroupListType(a.group_list_type), [&](const GroupSpan& s) {
    fn(s.expert, s.begin, s.end);
    covered = s.end;
  });
  return covered;
}

// acc[i * nb + n] (rows i < rb, columns n < nb) from +0 over k, by the contract of the weight's dtype
// (src/kernels/gemm/gemm.h, "What the kernels compute"):
//   f32, f16 weights:  acc = fma(x[k], w[k], acc)            for k = 0, 1, ..., K-1;
//   bf16 weights:      acc = fma_daz_ftz(x[k+1], w[k+1], acc); acc = fma_daz_ftz(x[k], w[k], acc)
//                                                             for k = 0, 2, 4, ... (pairs, the odd k first; when K
//                                                             is odd the last pair's odd term is the zero pair).
// xrows [rb, K] and panel [K, nb] hold the widened values (for bf16 weights already read through daz()), zeros [nb]
// zeros (the odd term of the zero pair); the k loop is outside the row loop so that one weight row serves the whole
// block, and each output element still sees exactly the steps above, in that order.
void accumulate(bool bf16_contract, int64_t K, int64_t rb, int64_t nb, const float* xrows, const float* panel,
                const float* zeros, float* acc) {
  std::fill(acc, acc + rb * nb, 0.0f);
  if (!bf16_contract) {
    for (int64_t k = 0; k < K; ++k)
      for (int64_t i = 0; i < rb; ++i) fma_row(xrows[i * K + k], panel + k * nb, acc + i * nb, nb);
    return;
  }
  for (int64_t k = 0; k < K; k += 2)
    for (int64_t i = 0; i < rb; ++i) {
      const bool zero_pair = k + 1 == K;
      fma_daz_ftz_pair(zero_pair ? 0.0f : xrows[i * K + k + 1], zero_pair ? zeros : panel + (k + 1) * nb,
                       xrows[i * K + k], panel + k * nb, acc + i * nb, nb);
    }
}

// Float x: acc as accumulate() says; + bias; act; one rounding.
void float_path(const GroupedMatmulArgs& a, const Dims& d, const Tensor& y) {
  const int64_t K = d.K, N = d.N, es = int64_t(y.element_size());
  Scratch<float> panel(K * kColTile), xrows(kRowBlock * K), acc(kRowBlock * kColTile), bias(kColTile);
  Scratch<float> zeros(kColTile, 0.0f);
  const bool bf16_contract = a.weight.dtype() == DType::bf16;
  auto* out = static_cast<std::byte*>(y.data());
  const int64_t covered = for_groups(a, d.M, [&](int64_t e, int64_t begin, int64_t end) {
    for (int64_t n0 = 0; n0 < N; n0 += kColTile) {
      const int64_t nb = std::min(kColTile, N - n0);
      // The expert's [K, nb] weight tile, widened once, read in place through the weight's strides.
      // bf16 weights: x and w read through DAZ here, once, rather than at every step (the same reading of each).
      const auto widen_in = bf16_contract ? widen_daz_run : widen_run;
      for (int64_t k = 0; k < K; ++k)
        widen_in(Run{a.weight.data(), a.weight.dtype(), e * d.w_se + k * d.w_sk + n0 * d.w_sn, d.w_sn}, nb,
                 panel.data() + k * nb);
      if (a.bias.defined()) widen_run(expert_row(a.bias, e, n0), nb, bias.data());
      for (int64_t r0 = begin; r0 < end; r0 += kRowBlock) {
        const int64_t rb = std::min(kRowBlock, end - r0);
        for (int64_t i = 0; i < rb; ++i)
          widen_in(Run{a.x.data(), a.x.dtype(), (r0 + i) * a.x.stride(0), a.x.stride(1)}, K, xrows.data() + i * K);
        accumulate(bf16_contract, K, rb, nb, xrows.data(), panel.data(), zeros.data(), acc.data());
        for (int64_t i = 0; i < rb; ++i) {
          float* v = acc.data() + i * nb;
          if (a.bias.defined())
            for (int64_t n = 0; n < nb; ++n) v[n] = v[n] + bias[n];
          gmm_activate(a.act_type, v, nb);
          store_row(v, nb, y.dtype(), out + ((r0 + i) * N + n0) * es);
        }
      }
    }
  });
  if (covered < d.M) std::memset(out + covered * N * es, 0, size_t((d.M - covered) * N * es));
}

// Int8 x: exact int32 sums; then either the int32 output or the dequantising epilogue.
void int8_path(const GroupedMatmulArgs& a, const Dims& d, const Tensor& y) {
  const int64_t K = d.K, N = d.N, es = int64_t(y.element_size());
  const bool int_out = y.dtype() == DType::i32;
  const bool int_bias = a.bias.defined() && a.bias.dtype() == DType::i32;
  const bool float_bias = a.bias.defined() && !int_bias;
  Scratch<int32_t> panel(K * kColTile), xrows(kRowBlock * K), isum(kRowBlock * kColTile), ibias(kColTile);
  Scratch<float> v(kColTile), scale(kColTile), fbias(kColTile);
  auto* out = static_cast<std::byte*>(y.data());
  const int64_t covered = for_groups(a, d.M, [&](int64_t e, int64_t begin, int64_t end) {
    for (int64_t n0 = 0; n0 < N; n0 += kColTile) {
      const int64_t nb = std::min(kColTile, N - n0);
      for (int64_t k = 0; k < K; ++k)
        int_run(Run{a.weight.data(), DType::i8, e * d.w_se + k * d.w_sk + n0 * d.w_sn, d.w_sn}, nb,
                panel.data() + k * nb);
      if (int_bias) int_run(expert_row(a.bias, e, n0), nb, ibias.data());
      if (float_bias) widen_run(expert_row(a.bias, e, n0), nb, fbias.data());
      if (a.scale.defined()) widen_run(expert_row(a.scale, e, n0), nb, scale.data());
      for (int64_t r0 = begin; r0 < end; r0 += kRowBlock) {
        const int64_t rb = std::min(kRowBlock, end - r0);
        for (int64_t i = 0; i < rb; ++i)
          int_run(Run{a.x.data(), DType::i8, (r0 + i) * a.x.stride(0), a.x.stride(1)}, K, xrows.data() + i * K);
        std::fill(isum.begin(), isum.end(), 0);
        // |x * w| <= 2^14 and K < 2^16, so every partial sum fits in int32 exactly.
        for (int64_t k = 0; k < K; ++k)
          for (int64_t i = 0; i < rb; ++i)
            mac_row(xrows[i * K + k], panel.data() + k * nb, isum.data() + i * nb, nb);
        for (int64_t i = 0; i < rb; ++i) {
          const int64_t r = r0 + i;
          int32_t* s = isum.data() + i * nb;
          std::byte* dst = out + (r * N + n0) * es;
          if (int_bias)  // int32 add, wrapping modulo 2^32 (computed in uint32 to stay defined)
            for (int64_t n = 0; n < nb; ++n) s[n] = int32_t(uint32_t(s[n]) + uint32_t(ibias[n]));
          if (int_out) {
            std::memcpy(dst, s, size_t(nb) * sizeof(int32_t));
            continue;
          }
          for (int64_t n = 0; n < nb; ++n) v[n] = float(s[n]) * scale[n];
          if (a.per_token_scale.defined()) {
            const float pts = static_cast<const float*>(a.per_token_scale.data())[r * a.per_token_scale.stride(0)];
            for (int64_t n = 0; n < nb; ++n) v[n] = v[n] * pts;
          }
          if (float_bias)
            for (int64_t n = 0; n < nb; ++n) v[n] = v[n] + fbias[n];
          gmm_activate(a.act_type, v.data(), nb);
          store_row(v.data(), nb, y.dtype(), dst);
        }
      }
    }
  });
  if (covered < d.M) std::memset(out + covered * N * es, 0, size_t((d.M - covered) * N * es));
}

}  // namespace

void gmm_activate(int64_t act_type, float* v, int64_t n) {
  switch (act_type) {
    case 1: for (int64_t i = 0; i < n; ++i) v[i] = gmm_relu(v[i]); return;
    case 2: for (int64_t i = 0; i < n; ++i) v[i] = gmm_gelu_tanh(v[i]); return;
    case 4: for (int64_t i = 0; i < n; ++i) v[i] = gmm_fast_gelu(v[i]); return;
    case 5: for (int64_t i = 0; i < n; ++i) v[i] = gmm_silu(v[i]); return;
    default: return;
  }
}

void grouped_matmul(const GroupedMatmulArgs& a, const Tensor& y) {
  const bool w3 = a.weight.dim() == 3;
  Dims d{a.x.size(0), a.x.size(1), a.weight.size(-1), w3 ? a.weight.stride(0) : 0, a.weight.stride(-2),
         a.weight.stride(-1)};
  if (a.x.dtype() == DType::i8) int8_path(a, d, y);
  else float_path(a, d, y);
}

}  // namespace moefuse::reference
