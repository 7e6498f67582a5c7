// Seeded random inputs for tests. Every test names its seed, so a failure reproduces exactly.
#pragma once

#include <cstdint>
#include <random>

#include "moefuse/tensor.h"

namespace moefuse::testing {

class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}

  float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(gen_); }
  float normal(float mean = 0.0f, float stddev = 1.0f) { return std::normal_distribution<float>(mean, stddev)(gen_); }
  /// Uniform integer in [lo, hi] (both inclusive).
  int64_t integer(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(gen_); }
  bool coin(double p_true = 0.5) { return std::bernoulli_distribution(p_true)(gen_); }

  /// Float tensor with values uniform in [lo, hi), rounded to `dtype`.
  Tensor uniform_tensor(DType dtype, const Shape& shape, float lo = -1.0f, float hi = 1.0f);
  /// Float tensor with normal values, rounded to `dtype`.
  Tensor normal_tensor(DType dtype, const Shape& shape, float stddev = 1.0f);
  /// Integer tensor (i8, i32, i64, u8, bool) with values uniform in [lo, hi].
  Tensor int_tensor(DType dtype, const Shape& shape, int64_t lo, int64_t hi);

  std::mt19937_64& engine() { return gen_; }

 private:
  std::mt19937_64 gen_;
};

}  // namespace moefuse::testing
