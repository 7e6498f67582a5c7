// Packing of GEMM weights into the panel layouts of gemm.h. Runs once, at weight load; the only place of the family
// that allocates or throws.
#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "base/check.h"
#include "base/integers.h"
#include "kernels/gemm/gemm.h"

namespace moefuse::gemm {
namespace {

constexpr size_t kAlign = 64;
constexpr size_t kHugePage = size_t(2) << 20;

void check_extents(const char* op, int64_t K, int64_t N) {
  if (K < 0) check::fail_value(op, "K", "K >= 0", std::to_string(K));
  if (N < 0) check::fail_value(op, "N", "N >= 0", std::to_string(N));
}

// Copies element bit patterns (T is a same-sized unsigned integer) into the float panel layout.
template <class T>
void pack_float_panels(const T* src, int64_t K, int64_t N, int64_t stride_k, int64_t stride_n, int64_t panels, T* dst) {
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t n_begin = p * kGemmNR;
    const int64_t width = std::min<int64_t>(kGemmNR, N - n_begin);
    T* panel = dst + p * K * kGemmNR;
    for (int64_t k = 0; k < K; ++k) {
      const T* row = src + k * stride_k + n_begin * stride_n;
      T* out = panel + k * kGemmNR;
      for (int64_t j = 0; j < width; ++j) out[j] = row[j * stride_n];
      for (int64_t j = width; j < kGemmNR; ++j) out[j] = T(0);
    }
  }
}

template <class T>
void unpack_float_panels(const T* src, int64_t K, int64_t N, int64_t panels, T* dst, int64_t stride_k,
                         int64_t stride_n) {
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t n_begin = p * kGemmNR;
    const int64_t width = std::min<int64_t>(kGemmNR, N - n_begin);
    for (int64_t k = 0; k < K; ++k) {
      const T* in = src + (p * K + k) * kGemmNR;
      T* row = dst + k * stride_k + n_begin * stride_n;
      for (int64_t j = 0; j < width; ++j) row[j * stride_n] = in[j];
    }
  }
}

}  // namespace

void PackedWeights::Free::operator()(std::byte* p) const { std::free(p); }

PackedWeights PackedWeights::allocate(DType dtype, int64_t K, int64_t N, int64_t k_padded, bool with_col_sums,
                                      size_t panel_bytes) {
  PackedWeights w;
  w.dtype_ = dtype;
  w.k_ = K;
  w.n_ = N;
  w.panels_ = (N + kGemmNR - 1) / kGemmNR;
  w.k_padded_ = k_padded;
  // A multiple of 64 (32 * 2 at least; int4 blocks are 768, 1280 or 2304 bytes).
  w.panel_bytes_ = panel_bytes ? panel_bytes : size_t(k_padded) * size_t(kGemmNR) * dtype_size(dtype);
  const size_t data_bytes = w.data_bytes();
  const size_t sums_bytes = with_col_sums ? size_t(w.panels_) * size_t(kGemmNR) * sizeof(int32_t) : 0;
  const size_t total = size_t(round_up(int64_t(data_bytes + sums_bytes), int64_t(kAlign)));
  if (total == 0) return w;
  void* mem = nullptr;
  if (total >= kHugePage) {
    // Large weights start on a 2 MB boundary and ask for transparent huge pages: a kernel streams them once per
    // call, and with 4 KB pages the TLB misses (costly under virtualisation) cut decode bandwidth by a third or more
    // (measured: bf16 2048 x 2048, M = 1, cold weights, 16 -> 26 GFLOP/s). Only the alignment is padded, in
    // virtual address space; the size is not rounded up.
    if (posix_memalign(&mem, kHugePage, total) != 0) mem = nullptr;
#ifdef MADV_HUGEPAGE
    if (mem) madvise(mem, total / kHugePage * kHugePage, MADV_HUGEPAGE);  // advice only: failure changes nothing
#endif
  } else {
    mem = std::aligned_alloc(kAlign, total);
  }
  if (!mem) throw ResourceError("pack_weights: cannot allocate " + std::to_string(total) + " bytes");
  w.storage_.reset(static_cast<std::byte*>(mem));
  if (with_col_sums) w.col_sums_ = reinterpret_cast<int32_t*>(w.storage_.get() + data_bytes);
  return w;
}

PackedWeights pack_weights_f(const void* src, DType dtype, int64_t K, int64_t N, int64_t stride_k, int64_t stride_n) {
  static constexpr const char* op = "pack_weights_f";
  if (!dtype_is_float(dtype))
    check::fail_type(op, "dtype", check::dtype_list({DType::f32, DType::bf16, DType::f16}), dtype_name(dtype));
  check_extents(op, K, N);
  PackedWeights w = PackedWeights::allocate(dtype, K, N, K, false);
  if (w.data_bytes() == 0) return w;
  void* dst = const_cast<void*>(w.data());
  if (dtype == DType::f32)
    pack_float_panels(static_cast<const uint32_t*>(src), K, N, stride_k, stride_n, w.panels(),
                      static_cast<uint32_t*>(dst));
  else
    pack_float_panels(static_cast<const uint16_t*>(src), K, N, stride_k, stride_n, w.panels(),
                      static_cast<uint16_t*>(dst));
  return w;
}

PackedWeights pack_weights_s8(const int8_t* src, int64_t K, int64_t N, int64_t stride_k, int64_t stride_n) {
  static constexpr const char* op = "pack_weights_s8";
  check_extents(op, K, N);
  if (K >= 65536) check::fail_value(op, "K", "K < 65536 (int32 accumulation stays exact)", std::to_string(K));
  const int64_t Kp = (K + 3) / 4 * 4;
  PackedWeights w = PackedWeights::allocate(DType::i8, K, N, Kp, true);
  if (w.panels() == 0) return w;
  int8_t* dst = static_cast<int8_t*>(const_cast<void*>(w.data()));
  std::memset(dst, 0, w.data_bytes());
  int32_t* sums = const_cast<int32_t*>(w.col_sums());
  for (int64_t p = 0; p < w.panels(); ++p) {
    const int64_t n_begin = p * kGemmNR;
    const int64_t width = std::min<int64_t>(kGemmNR, N - n_begin);
    int8_t* panel = dst + p * Kp * kGemmNR;
    for (int64_t j = 0; j < kGemmNR; ++j) sums[n_begin + j] = 0;
    for (int64_t k = 0; k < K; ++k) {
      const int8_t* row = src + k * stride_k + n_begin * stride_n;
      int8_t* out = panel + (k / 4) * (kGemmNR * 4) + k % 4;
      for (int64_t j = 0; j < width; ++j) {
        const int8_t v = row[j * stride_n];
        out[j * 4] = v;
        sums[n_begin + j] += v;
      }
    }
  }
  return w;
}

void unpack_weights(const PackedWeights& w, void* dst, int64_t stride_k, int64_t stride_n) {
  const int64_t K = w.k(), N = w.n();
  if (K == 0 || N == 0) return;
  if (w.dtype() == DType::i8) {
    const auto* src = static_cast<const int8_t*>(w.data());
    auto* out = static_cast<int8_t*>(dst);
    const int64_t Kp = w.k_padded();
    for (int64_t k = 0; k < K; ++k)
      for (int64_t n = 0; n < N; ++n)
        out[k * stride_k + n * stride_n] = src[(n / kGemmNR) * Kp * kGemmNR + (k / 4) * (kGemmNR * 4) + (n % kGemmNR) * 4 + k % 4];
  } else if (w.dtype() == DType::f32) {
    unpack_float_panels(static_cast<const uint32_t*>(w.data()), K, N, w.panels(), static_cast<uint32_t*>(dst),
                        stride_k, stride_n);
  } else {
    unpack_float_panels(static_cast<const uint16_t*>(w.data()), K, N, w.panels(), static_cast<uint16_t*>(dst),
                        stride_k, stride_n);
  }
}

}  // namespace moefuse::gemm
