// Rows kernel benchmarks, driven by the kernel registry (kernels/registry.h): every rows-family row this machine can
// run, on a row of the layer's widths (n = 1024, 2048, 7168), single-threaded, hot in L1/L2 (the layer calls these
// on rows it has just produced). Counter: elements per second of CPU time. A new row in the table is benchmarked by
// being there.
//
//   cmake --preset release -DMOEFUSE_BUILD_BENCH=ON && cmake --build build/release --target rows_bench
//   ./build/release/bench/rows_bench --benchmark_filter='combine_bf16'
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "base/elements.h"
#include "kernels/registry.h"

namespace {

using namespace moefuse;
using kernels::KernelInfo;
using kernels::Op;

void BM_row(benchmark::State& st, const KernelInfo* k, int64_t n) {
  const size_t len = static_cast<size_t>(n);
  std::vector<float> a(len), b(len), o(len), scale(len, 0.01f);
  for (size_t i = 0; i < len; ++i) a[i] = float(i % 97) * 0.125f - 6.0f, b[i] = float(i % 31) * 0.25f;
  std::vector<std::byte> typed(len * 4);
  store_row(a.data(), n, k->in == DType::i32 || k->in == DType::i8 ? DType::f32 : k->in, typed.data());
  std::vector<int32_t> ia(len, 1234), ib(len, -777);
  std::vector<int8_t> q(len);
  for (auto _ : st) {
    switch (k->op) {
      case Op::swiglu: std::get<rows::SwigluFn>(k->fn)(n, a.data(), b.data(), o.data()); break;
      case Op::dequant_swiglu:
        std::get<rows::DequantSwigluFn>(k->fn)(n, ia.data(), ib.data(), scale.data(), scale.data(), 0.5f, nullptr,
                                               o.data());
        break;
      case Op::quantize:
        benchmark::DoNotOptimize(std::get<rows::QuantizeFn>(k->fn)(n, typed.data(), nullptr, o.data(), q.data()));
        break;
      case Op::combine: std::get<rows::CombineFn>(k->fn)(n, typed.data(), 0.3f, true, o.data()); break;
      case Op::dequant: std::get<rows::DequantFn>(k->fn)(n, ia.data(), scale.data(), 0.5f, o.data()); break;
      case Op::scale_round: std::get<rows::ScaleRoundFn>(k->fn)(n, typed.data(), 0.7f, o.data()); break;
      default: break;
    }
    benchmark::ClobberMemory();
  }
  st.counters["elements"] = benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
  st.SetLabel(k->name);
}

void register_all() {
  for (const KernelInfo& k : kernels::registry()) {
    if (std::string(k.family) != "rows" || !kernels::runs_here(k)) continue;
    for (int64_t n : {1024, 2048, 7168})
      benchmark::RegisterBenchmark((std::string(k.name) + "/n:" + std::to_string(n)).c_str(), BM_row, &k, n);
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
