// moefuse/ops.h — the MoE operator family of torch_npu, on the CPU.
//
// Each operator maps 1:1 to a torch_npu function (named in its header) with the same arguments and defaults, and
// comes in two forms:
//   * `op(inputs..., options)` allocates and returns its outputs;
//   * `op_out(inputs..., options, outputs...)` writes into caller-provided buffers (contiguous, of the exact dtype and
//     shape documented), so that the layer can run without allocating.
// Optional tensor arguments are undefined Tensors (`Tensor{}`) when not given. Every invalid input throws a
// moefuse::Error (error.h) naming the operator, the argument, what was expected and what was given — before any
// output is written. Semantics: docs/operators.md.
#pragma once

#include "moefuse/ops/finalize_routing.h"
#include "moefuse/ops/gating.h"
#include "moefuse/ops/grouped_matmul.h"
#include "moefuse/ops/init_routing.h"
#include "moefuse/ops/swiglu.h"
