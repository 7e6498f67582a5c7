// Act order's gather (LayerWeights::w13_perm, docs/layer.md §5 "act order"): an expert's rows of x put in its input
// order before its first projection. An exact copy, done the same way by every path (chain, fused decode, shared
// expert, expert parallel), so that each path's projection reads the same values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "moefuse/tensor.h"

namespace moefuse::layer {

/// dst[j] = src[order[j] * src_stride] for j < H: elements of `es` bytes (1, 2 or 4); src_stride in elements.
void gather_row(const std::byte* src, int64_t src_stride, std::byte* dst, int64_t H, size_t es, const int32_t* order);

/// Each of rows [0, n) of `rows` (row r at rows + r * row_bytes, H contiguous elements of `es` bytes) put in
/// `order` [H] in place (through a scratch row: no allocation once warm).
void gather_rows_in_place(std::byte* rows, int64_t n, int64_t row_bytes, int64_t H, size_t es, const int32_t* order);

/// Rows [R, H] (contiguous, grouped by expert: group g's group_rows[g] rows follow group g - 1's), each put in its
/// group's order, row g of `perm` ([G, H] i32, contiguous).
void gather_expert_rows(const Tensor& perm, std::span<const int64_t> group_rows, const Tensor& rows);

/// The same for init_routing_v2's expert-sorted rows over every expert of `perm` ([E, H] i32, contiguous), with its
/// counts: [E] per expert (count type 1) or [E, 2] (expert, count) pairs of the active experts (count type 2).
void gather_routed_rows(const Tensor& perm, const Tensor& counts, const Tensor& rows);

/// x [T, H] (any strides) gathered into dst [T, H] (contiguous, x's dtype) in `order` [H].
void gather_tokens(const Tensor& x, const int32_t* order, const Tensor& dst);

}  // namespace moefuse::layer
