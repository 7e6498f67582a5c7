// Why an operator's fast path does not take a call: each returns nullptr when the fast path runs it, else the
// reason in words (the operator then runs the scalar reference, which gives the same bits). The arguments are the
// operator's, already checked.
#pragma once

#include "moefuse/tensor.h"

namespace moefuse {

/// swiglu's fast path takes a 2-D x split along its last dim, that dim contiguous. `dim` is non-negative.
const char* swiglu_fast_path_declines(const Tensor& x, int dim);

/// finalize_routing's fast path takes rows, skip1, skip2 and bias whose last dim (H) is contiguous (or of extent 1).
const char* finalize_routing_fast_path_declines(const Tensor& rows, const Tensor& skip1, const Tensor& skip2,
                                                const Tensor& bias);

}  // namespace moefuse
