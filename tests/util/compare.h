// Tensor comparisons with failure messages that say where and by how much.
#pragma once

#include <gtest/gtest.h>

#include <initializer_list>

#include "moefuse/tensor.h"

namespace moefuse::testing {

/// Same dtype, same shape, and every element identical: bitwise for floats (so NaN payloads and -0.0 count),
/// exact for integers. The message lists the first mismatches with their multi-index.
::testing::AssertionResult tensors_equal(const Tensor& expected, const Tensor& actual);

/// Same shape; |a - e| <= atol + rtol * |e| element-wise (values widened to double; NaN only matches NaN,
/// inf only the same inf). The message gives the worst element and the max abs/rel errors.
::testing::AssertionResult tensors_close(const Tensor& expected, const Tensor& actual, double atol, double rtol);

/// True when every element of every defined tensor of `ts` equals `value`: what the output-error tests check to see
/// that a call which threw wrote nothing into the buffers it was given.
inline bool all_hold(std::initializer_list<const Tensor*> ts, double value) {
  for (const Tensor* t : ts)
    if (t->defined())
      for (int64_t i = 0; i < t->numel(); ++i)
        if (t->item_flat(i) != value) return false;
  return true;
}

/// "[i, j, k]" for a flat row-major index of `shape`.
std::string index_str(const Shape& shape, int64_t flat);

}  // namespace moefuse::testing

#define EXPECT_TENSOR_EQ(expected, actual) EXPECT_TRUE(::moefuse::testing::tensors_equal((expected), (actual)))
#define ASSERT_TENSOR_EQ(expected, actual) ASSERT_TRUE(::moefuse::testing::tensors_equal((expected), (actual)))
#define EXPECT_TENSOR_NEAR(expected, actual, atol, rtol) \
  EXPECT_TRUE(::moefuse::testing::tensors_close((expected), (actual), (atol), (rtol)))

namespace moefuse::testing {
/// Element at `element_offset` elements from t.data() (strides already applied by the caller), as double.
double element_at(const Tensor& t, int64_t element_offset);
}  // namespace moefuse::testing

namespace moefuse {
/// Readable DType names in gtest output.
inline void PrintTo(DType t, std::ostream* os) { *os << dtype_name(t); }
}  // namespace moefuse
