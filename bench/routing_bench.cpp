// init_routing_v2 and finalize_routing at the seed model's shapes: H = 2048, E = 64 experts, top-8 routing (each
// token to 8 distinct experts drawn uniformly), bf16 activations, T = 1, 8 and 2048 tokens. The calls the MoE layer
// makes (src/layer/chain.cpp):
//   init/quant:-1  init_routing_v2, dropless, expert_num 64, count output, row_idx_type 0: bf16 rows copied;
//   init/quant:1   the same with dynamic int8 quantisation and a per-expert smooth scale [64, 2048] f32;
//   finalize       finalize_routing(rows [8T, 2048] bf16, skip1 [T, 2048], scales [T, 8] f32, drop_pad_mode 2).
// Variants (the second argument):
//   threads:0   the scalar reference (src/reference), one thread: the oracle the op must match bitwise;
//   threads:N   the op (its fast path), N >= 1 operator threads.
//
//   cmake --preset release -DMOEFUSE_BUILD_BENCH=ON && cmake --build build/release --target routing_bench
//   ./build/release/bench/routing_bench --benchmark_filter='T:2048'
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "moefuse/ops.h"
#include "moefuse/threads.h"
#include "reference/finalize_routing.h"
#include "reference/init_routing.h"

namespace {

using namespace moefuse;

constexpr int64_t kHidden = 2048, kExperts = 64, kTopK = 8;

Tensor random_tensor(DType dt, const Shape& shape, float lo, float hi, uint64_t seed) {
  Tensor t = Tensor::empty(dt, shape);
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (dt == DType::bf16) t.data_as<bfloat16>()[i] = to_bf16(u(gen));
    else t.data_as<float>()[i] = u(gen);
  }
  return t;
}

// [T, 8] i32: each token's 8 distinct experts, uniformly drawn.
Tensor routing(int64_t t, uint64_t seed) {
  Tensor idx = Tensor::empty(DType::i32, {t, kTopK});
  std::mt19937_64 gen(seed);
  std::vector<int32_t> experts(kExperts);
  for (int64_t n = 0; n < t; ++n) {
    std::iota(experts.begin(), experts.end(), 0);
    std::shuffle(experts.begin(), experts.end(), gen);
    for (int64_t k = 0; k < kTopK; ++k) idx.data_as<int32_t>()[n * kTopK + k] = experts[size_t(k)];
  }
  return idx;
}

// Threads for the op variants (0 = the reference).
void set_threads(benchmark::State& state) { set_num_threads(int(state.range(1)) > 0 ? int(state.range(1)) : 1); }

void init_routing(benchmark::State& state, int quant) {
  const int64_t t = state.range(0);
  set_threads(state);
  const Tensor x = random_tensor(DType::bf16, {t, kHidden}, -2.0f, 2.0f, 1);
  const Tensor idx = routing(t, 2);
  InitRoutingV2Options o;
  o.expert_num = kExperts;
  o.expert_tokens_num_type = 1;
  o.expert_tokens_num_flag = true;
  o.quant_mode = quant;
  if (quant == 1) o.scale = random_tensor(DType::f32, {kExperts, kHidden}, 0.5f, 2.0f, 3);
  InitRoutingV2Result out;
  out.expanded_x = Tensor::empty(quant == 1 ? DType::i8 : DType::bf16, {t * kTopK, kHidden});
  out.expanded_row_idx = Tensor::empty(DType::i32, {t * kTopK});
  out.expert_token_cumsum_or_count = Tensor::empty(DType::i64, {kExperts});
  out.expanded_scale = Tensor::empty(DType::f32, {t * kTopK});
  reference::InitRoutingV2Plan plan;
  plan.rows = t * kTopK;
  plan.expert_end = kExperts;
  plan.expert_num = kExperts;
  plan.count_type = 1;
  plan.quant_mode = quant;
  for (auto _ : state) {
    if (state.range(1) == 0)
      reference::init_routing_v2(x, idx, o.scale, o.offset, plan, out.expanded_x, out.expanded_row_idx,
                                 out.expert_token_cumsum_or_count, out.expanded_scale);
    else
      init_routing_v2_out(x, idx, o, out);
    benchmark::DoNotOptimize(out.expanded_x.data());
  }
  set_num_threads(0);
}

void finalize(benchmark::State& state) {
  const int64_t t = state.range(0);
  set_threads(state);
  const Tensor rows = random_tensor(DType::bf16, {t * kTopK, kHidden}, -2.0f, 2.0f, 4);
  const Tensor skip1 = random_tensor(DType::bf16, {t, kHidden}, -2.0f, 2.0f, 5);
  const Tensor scales = random_tensor(DType::f32, {t, kTopK}, 0.0f, 0.25f, 6);
  Tensor src = Tensor::empty(DType::i32, {t * kTopK});
  std::vector<int32_t> perm(size_t(t * kTopK));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937_64(7));
  std::copy(perm.begin(), perm.end(), src.data_as<int32_t>());
  Tensor out = Tensor::empty(DType::bf16, {t, kHidden});
  for (auto _ : state) {
    if (state.range(1) == 0)
      reference::finalize_routing(rows, skip1, Tensor{}, Tensor{}, scales, src, Tensor{}, 2, kTopK, out);
    else
      finalize_routing_out(rows, skip1, Tensor{}, Tensor{}, scales, src, Tensor{}, 2, 1, out);
    benchmark::DoNotOptimize(out.data());
  }
  set_num_threads(0);
}

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"T", "threads"})->Unit(benchmark::kMillisecond)->UseRealTime();
  for (int64_t t : {1, 8, 2048})
    for (int64_t threads : {0, 1, 2}) b->Args({t, threads});
}

BENCHMARK_CAPTURE(init_routing, quant:-1, -1)->Apply(shapes);
BENCHMARK_CAPTURE(init_routing, quant:1, 1)->Apply(shapes);
BENCHMARK(finalize)->Apply(shapes);

}  // namespace

BENCHMARK_MAIN();
