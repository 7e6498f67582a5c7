#include "base/check.h"

#include <sstream>

namespace moefuse::check {

std::string message(std::string_view op, std::string_view arg, std::string_view expected, std::string_view given) {
  std::string m;
  m.reserve(op.size() + arg.size() + expected.size() + given.size() + 24);
  m.append(op).append(": ").append(arg).append(": expected ").append(expected).append(", got ").append(given);
  return m;
}

void fail_value(std::string_view op, std::string_view arg, std::string_view expected, std::string_view given) {
  throw ValueError(message(op, arg, expected, given));
}

void fail_type(std::string_view op, std::string_view arg, std::string_view expected, std::string_view given) {
  throw TypeError(message(op, arg, expected, given));
}

std::string number(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

std::string dtype_list(std::initializer_list<DType> allowed) {
  std::string s;
  size_t i = 0, n = allowed.size();
  for (DType d : allowed) {
    if (i) s += (i + 1 == n) ? " or " : ", ";
    s += dtype_name(d);
    ++i;
  }
  return s;
}

void defined(std::string_view op, std::string_view arg, const Tensor& t) {
  if (!t.defined()) fail_value(op, arg, "a tensor", "none");
}

void rank(std::string_view op, std::string_view arg, const Tensor& t, int r) {
  defined(op, arg, t);
  if (t.dim() != r) fail_value(op, arg, "a " + std::to_string(r) + "-D tensor", t.describe());
}

void dtype_in(std::string_view op, std::string_view arg, const Tensor& t, std::initializer_list<DType> allowed) {
  defined(op, arg, t);
  for (DType d : allowed)
    if (t.dtype() == d) return;
  fail_type(op, arg, "dtype " + dtype_list(allowed), std::string(dtype_name(t.dtype())));
}

void shape_is(std::string_view op, std::string_view arg, const Tensor& t, const Shape& shape) {
  defined(op, arg, t);
  if (!(t.shape() == shape)) fail_value(op, arg, "shape " + shape.str(), "shape " + t.shape().str());
}

void output(std::string_view op, std::string_view arg, const Tensor& t, DType dtype, const Shape& shape) {
  defined(op, arg, t);
  if (t.dtype() != dtype)
    fail_type(op, arg, "an output of dtype " + std::string(dtype_name(dtype)), std::string(dtype_name(t.dtype())));
  shape_is(op, arg, t, shape);
  if (t.is_readonly()) fail_value(op, arg, "a writable output buffer", "a read-only view");
  if (!t.is_contiguous()) fail_value(op, arg, "a contiguous output buffer", "strides " + t.strides().str());
}

void in_range(std::string_view op, std::string_view arg, int64_t v, int64_t lo, int64_t hi, std::string_view what) {
  if (v < lo || v > hi) fail_value(op, arg, what, std::to_string(v));
}

}  // namespace moefuse::check
