// Argument checks shared by every operator. Each throws a moefuse error whose message names the operator, the
// argument, what was expected and what was given (error.h). Ops run all checks before writing any output.
//
// A check that passes builds no string and allocates nothing: the layer calls the ops' `_out` forms in a loop that
// must not allocate. Messages with computed parts are therefore built on the failure path only (inside the `if`
// that detects the failure, or in a callable such as in_range's `what`).
#pragma once

#include <concepts>
#include <initializer_list>
#include <string>
#include <string_view>

#include "moefuse/error.h"
#include "moefuse/tensor.h"

namespace moefuse::check {

/// "<op>: <arg>: expected <expected>, got <given>"
std::string message(std::string_view op, std::string_view arg, std::string_view expected, std::string_view given);

[[noreturn]] void fail_value(std::string_view op, std::string_view arg, std::string_view expected,
                             std::string_view given);
[[noreturn]] void fail_type(std::string_view op, std::string_view arg, std::string_view expected,
                            std::string_view given);

/// A scalar argument's value as messages print it (ostream's default form: "0.5", "1e+30", "inf", "nan").
std::string number(double v);

/// "f32, bf16 or f16"
std::string dtype_list(std::initializer_list<DType> allowed);

/// The tensor is given (defined).
void defined(std::string_view op, std::string_view arg, const Tensor& t);
/// The tensor has exactly `rank` dimensions.
void rank(std::string_view op, std::string_view arg, const Tensor& t, int rank);
/// The tensor's dtype is one of `allowed` (TypeError otherwise).
void dtype_in(std::string_view op, std::string_view arg, const Tensor& t, std::initializer_list<DType> allowed);
/// The tensor has exactly this shape.
void shape_is(std::string_view op, std::string_view arg, const Tensor& t, const Shape& shape);
/// An output buffer: defined, writable, contiguous, with this dtype and shape.
void output(std::string_view op, std::string_view arg, const Tensor& t, DType dtype, const Shape& shape);
/// lo <= v <= hi, with `what` describing the bound in words (e.g. "1 <= k <= E (64)").
void in_range(std::string_view op, std::string_view arg, int64_t v, int64_t lo, int64_t hi, std::string_view what);
/// As above, with the bound described by what() (returning a std::string), called only when the check fails.
template <class What>
  requires std::invocable<What>
void in_range(std::string_view op, std::string_view arg, int64_t v, int64_t lo, int64_t hi, What&& what) {
  if (v < lo || v > hi) fail_value(op, arg, std::string(what()), std::to_string(v));
}

}  // namespace moefuse::check
