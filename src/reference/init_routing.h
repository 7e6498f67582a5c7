// Scalar reference of npu_moe_init_routing (v1) and npu_moe_init_routing_v2: the oracle for optimized kernels and
// the fallback. Arguments are validated by the ops (src/ops/init_routing.cpp, src/ops/init_routing_v2.cpp) before
// these are called; outputs are contiguous and of the documented dtypes and shapes.
#pragma once

#include <cstdint>

#include "moefuse/tensor.h"

namespace moefuse::reference {

/// v1 (ops.md §3.1). `active_rows` = min(active_num, N) * K, the rows of expanded_x.
void init_routing(const Tensor& x, const Tensor& row_idx, const Tensor& expert_idx, int64_t active_rows,
                  const Tensor& expanded_x, const Tensor& expanded_row_idx, const Tensor& expanded_expert_idx);

/// The resolved arguments of init_routing_v2 (defaults applied, modes decided by the op), in the reference's own
/// form: the operator plans with its own struct (src/ops/init_routing_v2.cpp) and fills this one to fall back here.
struct InitRoutingV2Plan {
  int64_t rows = 0;          // dropless: R, the rows of expanded_x
  int64_t expert_start = 0;  // active range [expert_start, expert_end); expert_end may be INT64_MAX (unbounded)
  int64_t expert_end = 0;
  bool drop_pad = false;
  int64_t capacity = 0;     // drop/pad: C
  int64_t expert_num = -1;  // E, or -1 when not given
  int count_type = -1;      // 0 cumsum, 1 count, 2 key-value; -1 = the count output is empty (not computed)
  int quant_mode = -1;      // -1, 0 or 1
  int row_idx_type = 0;     // 0 gather, 1 scatter
};

/// v2 (ops.md §3.4 with decisions.md). `scale` / `offset` are undefined when not given; for quant_mode 1 a scale with
/// one row is broadcast to every expert, otherwise row (expert - expert_start) is used.
void init_routing_v2(const Tensor& x, const Tensor& expert_idx, const Tensor& scale, const Tensor& offset,
                     const InitRoutingV2Plan& plan, const Tensor& expanded_x, const Tensor& expanded_row_idx,
                     const Tensor& expert_token_cumsum_or_count, const Tensor& expanded_scale);

}  // namespace moefuse::reference
