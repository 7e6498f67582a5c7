// moefuse/ops/finalize_routing.h — combining the experts' outputs back into token order: npu_moe_finalize_routing.
#pragma once

#include <cstdint>

#include "moefuse/tensor.h"

namespace moefuse {

/// torch_npu.npu_moe_finalize_routing(expanded_permuted_rows, skip1, skip2, bias, scales, expanded_src_to_dst_row,
///                                    export_for_source_row, drop_pad_mode=0, k=1)
/// (aclnnMoeFinalizeRoutingV2 / V4). All nine arguments are positional, as in torch_npu; an optional tensor that is
/// not given is an undefined Tensor (`Tensor{}`).
///
/// For every token n and hidden column h, with N tokens and K slots per token:
///
///     acc = skip1[n,h] + skip2[n,h]      (or skip1[n,h] alone; with no skip, acc starts from the first term)
///     for k = 0 .. K-1, in this order:
///         j   = k*N + n                  (drop_pad_mode 0 and 1: "k-major", the layout of init_routing v1)
///             = n*K + k                  (drop_pad_mode 2 and 3: "token-major", init_routing_v2 row_idx_type 0)
///         d   = expanded_src_to_dst_row[j]
///         row = d == -1 ? 0 : expanded_permuted_rows.row(d)[h]       (-1 = dropped, in every mode)
///         v   = bias given ? row + bias[expert_for_source_row[n,k], h] : row
///         acc = acc + (scales given ? scales[n,k] * v : v)
///     out[n,h] = acc
///
/// Every value is widened exactly to fp32 and every operation above is one fp32 operation (no fused multiply-add),
/// for every dtype; the result is rounded once, round-to-nearest-even, to the rows' dtype. For f32 and bf16 this is
/// the precision of the Ascend kernel (fp32 compute, one RINT cast), in the order of the torch_npu semantics; for f16
/// the hardware computes natively in fp16 (rounding after every operation) and moefuse's fp32 accumulation is more
/// accurate — an intended, documented difference. The per-expert bias is
/// added to dropped (-1) entries too (scale * (0 + bias)), as the torch_npu golden and the kernel do. The result
/// of one token depends only on that token's inputs (no cross-token reduction).
///
/// Shapes. H = expanded_permuted_rows.size(-1).
///   K = scales.size(1) when scales is given, else k.
///   N = scales.size(0) when scales is given, else expanded_src_to_dst_row.size(0) / k.
///
/// expanded_permuted_rows: f32, bf16 or f16, any strides. drop_pad_mode 0/2 (dropless): [N*K, H]; drop_pad_mode 1/3
///                         (drop/pad): [E, C, H], read as E*C rows (row d = [d / C, d % C, :]).
/// skip1:                  optional; [N, H], the rows' dtype, any strides (the shared expert / residual).
/// skip2:                  optional; [N, H], the rows' dtype, any strides; only together with skip1 (as torch_npu).
/// bias:                   optional; [E_b, H] for any E_b, the rows' dtype, any strides; a per-expert bias indexed by
///                         expert_for_source_row. Requires expert_for_source_row.
/// scales:                 optional; [N, K] with K >= 1, the rows' dtype or f32 (f32 is accepted for every rows
///                         dtype, an extension: torch_npu accepts it for bf16 rows), any strides. Not given: every
///                         scale is 1 (the multiplication is skipped, which is the same).
/// expanded_src_to_dst_row: [N*K], i32 (torch_npu) or i64 (extension), any stride. Values: drop_pad_mode 0/2 in
///                         [-1, N*K) (-1 is an extension: a zero row, as the golden treats it; the hardware leaves a
///                         stale row there); drop_pad_mode 1/3 in [-1, E*C).
/// expert_for_source_row:  optional ("export_for_source_row" in the torch_npu yaml); [N, K], i32 or i64, any
///                         strides. Values in [0, E_b) when bias is given; without bias its shape and dtype are
///                         checked but its values are not read.
/// drop_pad_mode:          0, 1, 2 or 3 (default 0), as above.
/// k:                      >= 1 (default 1). Without scales it is K. With scales, K comes from scales and k must be
///                         K or 1 (1 being torch_npu's default, which older CANN versions always pass).
/// Returns out: [N, H], the rows' dtype, contiguous; every element written. N = 0 gives an empty [0, H] tensor.
///
/// Errors (all raised before anything is written):
///   TypeError  — rows not f32/bf16/f16; skip1, skip2 or bias of another dtype than the rows; scales neither the
///                rows' dtype nor f32; an index tensor neither i32 nor i64.
///   ValueError — a required tensor not given; drop_pad_mode outside [0, 3]; k < 1; k neither 1 nor K with scales;
///                wrong rank or shape of any tensor (including rows.size(0) != N*K in dropless modes and
///                expanded_src_to_dst_row.size(0) not divisible by k without scales); skip2 without skip1; bias
///                without expert_for_source_row; an index of expanded_src_to_dst_row out of range; an expert id
///                outside [0, bias.size(0)).
///
/// Execution (speed only: every path gives the same bits): when expanded_permuted_rows, skip1, skip2 and bias are
/// contiguous along H (any other strides; scales and the index tensors any strides and dtypes), in every
/// drop_pad_mode, each output row is computed in an fp32 row with the operations above in their order, reading
/// typed pointers, and the rows are spread over the operators' thread pool (threads.h) from 64K elements (N*K*H) on.
/// Otherwise the scalar reference runs.
Tensor finalize_routing(const Tensor& expanded_permuted_rows, const Tensor& skip1, const Tensor& skip2,
                        const Tensor& bias, const Tensor& scales, const Tensor& expanded_src_to_dst_row,
                        const Tensor& expert_for_source_row, int64_t drop_pad_mode = 0, int64_t k = 1);

/// As finalize_routing(), writing into `out` ([N, H], the rows' dtype, contiguous, writable). `out` must not overlap
/// any input (not checked). On any error `out` is left untouched.
void finalize_routing_out(const Tensor& expanded_permuted_rows, const Tensor& skip1, const Tensor& skip2,
                          const Tensor& bias, const Tensor& scales, const Tensor& expanded_src_to_dst_row,
                          const Tensor& expert_for_source_row, int64_t drop_pad_mode, int64_t k, const Tensor& out);

}  // namespace moefuse
