#include "layer/act_order.h"

#include <cstring>

#include "base/scratch.h"

namespace moefuse::layer {
namespace {

template <class T>
void gather_as(const std::byte* src, int64_t src_stride, std::byte* dst, int64_t H, const int32_t* order) {
  const auto* s = reinterpret_cast<const T*>(src);
  auto* d = reinterpret_cast<T*>(dst);
  for (int64_t j = 0; j < H; ++j) d[j] = s[int64_t(order[j]) * src_stride];
}

}  // namespace

void gather_row(const std::byte* src, int64_t src_stride, std::byte* dst, int64_t H, size_t es, const int32_t* order) {
  if (es == 1)
    gather_as<uint8_t>(src, src_stride, dst, H, order);
  else if (es == 2)
    gather_as<uint16_t>(src, src_stride, dst, H, order);
  else
    gather_as<uint32_t>(src, src_stride, dst, H, order);
}

void gather_rows_in_place(std::byte* rows, int64_t n, int64_t row_bytes, int64_t H, size_t es, const int32_t* order) {
  Scratch<std::byte> row(H * int64_t(es));
  for (int64_t r = 0; r < n; ++r) {
    std::byte* p = rows + r * row_bytes;
    std::memcpy(row.data(), p, size_t(H) * es);
    gather_row(row.data(), 1, p, H, es, order);
  }
}

void gather_expert_rows(const Tensor& perm, std::span<const int64_t> group_rows, const Tensor& rows) {
  const int64_t H = rows.size(1), row_bytes = H * int64_t(rows.element_size());
  auto* p = static_cast<std::byte*>(rows.data());
  for (size_t g = 0; g < group_rows.size(); ++g) {
    gather_rows_in_place(p, group_rows[g], row_bytes, H, rows.element_size(),
                         perm.data_as<const int32_t>() + int64_t(g) * H);
    p += group_rows[g] * row_bytes;
  }
}

void gather_routed_rows(const Tensor& perm, const Tensor& counts, const Tensor& rows) {
  const int64_t H = rows.size(1), row_bytes = H * int64_t(rows.element_size()), E = perm.size(0);
  const int64_t* c = counts.data_as<const int64_t>();
  const bool pairs = counts.dim() == 2;
  auto* p = static_cast<std::byte*>(rows.data());
  for (int64_t i = 0; i < E; ++i) {
    const int64_t e = pairs ? c[2 * i] : i, n = pairs ? c[2 * i + 1] : c[i];
    if (pairs && n == 0) break;  // the (0, 0) terminator after the active experts
    gather_rows_in_place(p, n, row_bytes, H, rows.element_size(), perm.data_as<const int32_t>() + e * H);
    p += n * row_bytes;
  }
}

void gather_tokens(const Tensor& x, const int32_t* order, const Tensor& dst) {
  const int64_t T = x.size(0), H = x.size(1);
  const size_t es = x.element_size();
  const auto* src = static_cast<const std::byte*>(x.data());
  auto* d = static_cast<std::byte*>(dst.data());
  for (int64_t t = 0; t < T; ++t)
    gather_row(src + t * x.stride(0) * int64_t(es), x.stride(1), d + t * H * int64_t(es), H, es, order);
}

}  // namespace moefuse::layer
