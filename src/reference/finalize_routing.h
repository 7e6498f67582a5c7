// Scalar reference of npu_moe_finalize_routing: the oracle for optimized kernels and the fallback. Arguments are
// validated by the op (src/ops/finalize_routing.cpp) before this is called.
#pragma once

#include <cstdint>

#include "moefuse/tensor.h"

namespace moefuse::reference {

/// out[n, :] = (skip1 + skip2)[n, :] + sum over k = 0..K-1 in order of scales[n, k] * (row(d) + bias[e]), with
/// d = expanded_src_to_dst_row[k*N + n] (drop_pad_mode 0/1) or [n*K + k] (2/3), row(-1) = 0,
/// e = expert_for_source_row[n, k]; fp32 math (no fma), one RNE rounding (include/moefuse/ops/finalize_routing.h).
/// N = out.size(0), H = out.size(1). skip1, skip2, bias and scales may be undefined (not given); without skip1 the
/// sum starts from the first term; expert_for_source_row is only read when bias is given.
void finalize_routing(const Tensor& expanded_permuted_rows, const Tensor& skip1, const Tensor& skip2,
                      const Tensor& bias, const Tensor& scales, const Tensor& expanded_src_to_dst_row,
                      const Tensor& expert_for_source_row, int64_t drop_pad_mode, int64_t K, const Tensor& out);

}  // namespace moefuse::reference
