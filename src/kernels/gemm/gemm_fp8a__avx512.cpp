// Dynamic FP8 activations x FP8 weights on AVX-512 (fp8_act.h: the definition, and why fp64 sums are exact).
// Per 32-column panel and 128-row block: each weight row of 32 codes is widened exactly to fp64 through fp16 (an
// e4m3 code's bits, shifted into fp16's fields, are a half-precision value 2^-8 times the e4m3 one, subnormals
// included: vcvtph2ps converts them exactly), the activation codes through a 256-entry fp64 table, and the block's
// dot products are fp64 FMAs, exact; then 2^8 (exact), the one rounding to fp32, and the scale steps in the
// definition's order. Up to 4 rows the weights are widened in registers per row; more rows widen the block once
// into a 32 KiB buffer that every tile of 4 rows reads.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cassert>

#include "kernels/gemm/fp8_act.h"
#include "kernels/gemm/fp8_layout.h"

// GCC 12 reads the upper halves the casts and plain conversions leave undefined as uninitialised; the maskz forms
// that silence it cost an instruction each in the inner loop.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace moefuse::gemm::detail {
namespace {

// 32 e4m3 codes -> 4 x 8 fp64 values, each 2^-8 times the code's value (NaN codes NaN).
inline void widen_row(const uint8_t* q, __m512d w[4]) {
  const __m512i c16 = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q)));
  __m512i h = _mm512_and_si512(_mm512_srai_epi16(_mm512_slli_epi16(c16, 8), 1), _mm512_set1_epi16(int16_t(0xbf80)));
  const __mmask32 nan = _mm512_cmpeq_epi16_mask(_mm512_and_si512(c16, _mm512_set1_epi16(0x7f)), _mm512_set1_epi16(0x7f));
  h = _mm512_mask_mov_epi16(h, nan, _mm512_set1_epi16(0x7e00));
  const __m512 lo = _mm512_maskz_cvtph_ps(0xffff, _mm512_castsi512_si256(h));
  const __m512 hi = _mm512_maskz_cvtph_ps(0xffff, _mm512_maskz_extracti64x4_epi64(0xff, h, 1));
  w[0] = _mm512_maskz_cvtps_pd(0xff, _mm512_castps512_ps256(lo));
  w[1] = _mm512_maskz_cvtps_pd(0xff, _mm512_maskz_extractf32x8_ps(0xff, lo, 1));
  w[2] = _mm512_maskz_cvtps_pd(0xff, _mm512_castps512_ps256(hi));
  w[3] = _mm512_maskz_cvtps_pd(0xff, _mm512_maskz_extractf32x8_ps(0xff, hi, 1));
}

// The block's exact sums d for MR rows (a: row i's codes of this block at a + i * lda), 4 x 8 lanes per row; the
// weights from codes q (kBuffered false) or from the widened buffer wb.
template <int MR, bool kBuffered>
inline void block_sums(int64_t rows, const uint8_t* a, int64_t lda, const uint8_t* q, const double* wb,
                       const double* tab, __m512d d[MR][4]) {
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < 4; ++v) d[i][v] = _mm512_setzero_pd();
  for (int64_t r = 0; r < rows; ++r) {
    __m512d w[4];
    if constexpr (kBuffered) {
      for (int v = 0; v < 4; ++v) w[v] = _mm512_load_pd(wb + r * kGemmNR + 8 * v);
    } else {
      widen_row(q + r * kGemmNR, w);
    }
    for (int i = 0; i < MR; ++i) {
      const __m512d x = _mm512_set1_pd(tab[a[i * lda + r]]);
      for (int v = 0; v < 4; ++v) d[i][v] = _mm512_fmadd_pd(x, w[v], d[i][v]);
    }
  }
}

// acc = acc + ((float(d) * s_a) * s_w) for MR rows of C (columns masked to the panel's width); acc = +0 at g = 0.
template <int MR>
inline void accumulate(__m512d d[MR][4], const float* sa, int64_t ldsa, const float* sw, bool first, float* c,
                       int64_t ldc, __mmask16 m0, __mmask16 m1) {
  const __m512d two8 = _mm512_set1_pd(256.0);
  const __m512 sw0 = _mm512_loadu_ps(sw), sw1 = _mm512_loadu_ps(sw + 16);
  for (int i = 0; i < MR; ++i) {
    alignas(64) float dv[kGemmNR];  // float(d), through memory: GCC 12 warns on the 256 -> 512 inserts
    for (int v = 0; v < 4; ++v) _mm256_store_ps(dv + 8 * v, _mm512_maskz_cvtpd_ps(0xff, _mm512_mul_pd(d[i][v], two8)));
    const __m512 df[2] = {_mm512_load_ps(dv), _mm512_load_ps(dv + 16)};
    const __m512 s = _mm512_set1_ps(sa[i * ldsa]);
    const __m512 t0 = _mm512_mul_ps(_mm512_mul_ps(df[0], s), sw0);
    const __m512 t1 = _mm512_mul_ps(_mm512_mul_ps(df[1], s), sw1);
    float* row = c + i * ldc;
    const __m512 a0 = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m0, row);
    const __m512 a1 = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m1, row + 16);
    _mm512_mask_storeu_ps(row, m0, _mm512_add_ps(a0, t0));
    _mm512_mask_storeu_ps(row + 16, m1, _mm512_add_ps(a1, t1));
  }
}

template <int MR, bool kBuffered>
inline void tile(int64_t rows, const uint8_t* a, int64_t lda, const uint8_t* q, const double* wb, const double* tab,
                 const float* sa, int64_t ldsa, const float* sw, bool first, float* c, int64_t ldc, __mmask16 m0,
                 __mmask16 m1) {
  __m512d d[MR][4];
  block_sums<MR, kBuffered>(rows, a, lda, q, wb, tab, d);
  accumulate<MR>(d, sa, ldsa, sw, first, c, ldc, m0, m1);
}

template <bool kBuffered>
void rows_of(int64_t M, int64_t rows, const uint8_t* a, int64_t lda, const uint8_t* q, const double* wb,
             const double* tab, const float* sa, int64_t ldsa, const float* sw, bool first, float* c, int64_t ldc,
             __mmask16 m0, __mmask16 m1) {
  int64_t m = 0;
  for (; m + 4 <= M; m += 4)
    tile<4, kBuffered>(rows, a + m * lda, lda, q, wb, tab, sa + m * ldsa, ldsa, sw, first, c + m * ldc, ldc, m0, m1);
  switch (M - m) {
    case 3: tile<3, kBuffered>(rows, a + m * lda, lda, q, wb, tab, sa + m * ldsa, ldsa, sw, first, c + m * ldc, ldc, m0, m1); break;
    case 2: tile<2, kBuffered>(rows, a + m * lda, lda, q, wb, tab, sa + m * ldsa, ldsa, sw, first, c + m * ldc, ldc, m0, m1); break;
    case 1: tile<1, kBuffered>(rows, a + m * lda, lda, q, wb, tab, sa + m * ldsa, ldsa, sw, first, c + m * ldc, ldc, m0, m1); break;
    default: break;
  }
}

}  // namespace

void gemm_fp8a_fp8w_f32__avx512(int64_t M, int64_t K, int64_t n0, int64_t n1, const uint8_t* qa, int64_t lda,
                                const float* sa, int64_t ldsa, const void* b_data, float* c, int64_t ldc) {
  assert(M >= 0 && K >= 0 && n0 >= 0 && n0 <= n1 && n0 % kGemmNR == 0);
  if (M == 0 || n0 == n1) return;
  const double* tab = e4m3_f64_table().data();
  const auto* b = static_cast<const std::byte*>(b_data);
  const size_t panel_bytes = fp8_panel_bytes(K);
  alignas(64) double wb[kFp8BlockK * kGemmNR];  // the widened block, for more than 4 rows
  for (int64_t p0 = n0; p0 < n1; p0 += kGemmNR) {
    const std::byte* panel = b + size_t(p0 / kGemmNR) * panel_bytes;
    const int64_t width = std::min<int64_t>(kGemmNR, n1 - p0);
    const __mmask16 m0 = __mmask16(width >= 16 ? 0xffffu : (1u << width) - 1u);
    const __mmask16 m1 = __mmask16(width >= 32 ? 0xffffu : width <= 16 ? 0u : (1u << (width - 16)) - 1u);
    float* cp = c + (p0 - n0);
    if (K == 0) {  // no blocks: +0
      for (int64_t m = 0; m < M; ++m) {
        _mm512_mask_storeu_ps(cp + m * ldc, m0, _mm512_setzero_ps());
        _mm512_mask_storeu_ps(cp + m * ldc + 16, m1, _mm512_setzero_ps());
      }
      continue;
    }
    for (int64_t g = 0; g < fp8_blocks(K); ++g) {
      const std::byte* blk = panel + fp8_block_offset(K, g);
      const auto* sw = reinterpret_cast<const float*>(blk);
      const auto* q = reinterpret_cast<const uint8_t*>(blk + kFp8HeadBytes);
      const int64_t rows = fp8_block_rows(K, g);
      const uint8_t* a = qa + g * kFp8BlockK;
      if (M <= 4) {
        rows_of<false>(M, rows, a, lda, q, nullptr, tab, sa + g, ldsa, sw, g == 0, cp, ldc, m0, m1);
      } else {
        for (int64_t r = 0; r < rows; ++r) {
          __m512d w[4];
          widen_row(q + r * kGemmNR, w);
          for (int v = 0; v < 4; ++v) _mm512_store_pd(wb + r * kGemmNR + 8 * v, w[v]);
        }
        rows_of<true>(M, rows, a, lda, q, wb, tab, sa + g, ldsa, sw, g == 0, cp, ldc, m0, m1);
      }
    }
  }
}

}  // namespace moefuse::gemm::detail
