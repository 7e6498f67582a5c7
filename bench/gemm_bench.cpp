// GEMM kernel benchmarks: every variant the machine supports, every weight dtype (int4 group-wise too, 2048 x 2048), on the model shapes
// (K x N = 2048 x 2048, 1024 x 2048, 2048 x 4096; M = 1, 8, 64, 512), single-threaded (the layer runs one kernel call
// per task). Counters: GFLOP (2·M·N·K per call; int8 counts a multiply-add as 2 ops too) and GB (packed weights +
// A + C bytes per call) per second of CPU time and peak% (GFLOP/s as a share of the measured peak of the matching
// instruction: vfmadd231ps on zmm for every float variant (the machine's float peak; on AVX2-only machines ymm),
// vpdpbusd on zmm for every int8 variant; measured at start-up by the probes of base/machine_probe.h, which also run
// as benchmarks). A stream-read probe gives the memory bandwidth one core gets, the ceiling for decode.
//
// Weights are cold: each benchmark rotates over enough packed copies to exceed 96 MB (more than the L3), so decode
// reads its weights from memory, as a MoE layer with many experts does.
//
//   cmake --preset release -DMOEFUSE_BUILD_BENCH=ON && cmake --build build/release --target gemm_bench
//   ./build/release/bench/gemm_bench --benchmark_filter='bf16w/avx512/.*M:1$'
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "base/machine_probe.h"
#include "kernels/gemm/gemm.h"
#include "moefuse/cpu.h"
#include "moefuse/dtype.h"

namespace {

using namespace moefuse;
using gemm::GemmKernels;
using gemm::PackedWeights;

// ─── Peak probes (base/machine_probe.h) ──────────────────────────────────────────────────────────────────────────

using probe::PeakLoop;
using probe::thread_seconds;

// Best of a few timed runs on this thread, in ops per second of its CPU time.
double measure_peak(const PeakLoop& p) { return probe::measure_peak(p, 1, 20'000'000, 5); }

double g_peak_float = 0, g_peak_int8 = 0;  // ops per second

void BM_probe(benchmark::State& st, PeakLoop p) {
  const int64_t iters = 1'000'000;
  for (auto _ : st) p.run(iters);
  st.counters["GFLOP"] =
      benchmark::Counter(double(iters) * p.ops_per_iter / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

// One core's read bandwidth: sums 256 MB (probe::stream_sum: the widest loads the ISA in use has, 4 streams), from
// memory laid out as packed weights are (2 MB aligned, transparent huge pages requested).
void BM_stream_read(benchmark::State& st) {
  const probe::ReadBuffer buf(size_t(256) << 20, 1);
  for (auto _ : st) benchmark::DoNotOptimize(probe::stream_sum(buf.data(), buf.size()));
  st.counters["GB"] = benchmark::Counter(double(buf.size()) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

// ─── Kernels ────────────────────────────────────────────────────────────────────────────────────────────────────

// Packed copies of one random [K, N] matrix, enough to exceed 96 MB. Only the set for the current (dtype, K, N) is
// kept: benchmarks are registered grouped by it.
struct WeightSet {
  DType dtype;
  int64_t K, N;
  std::vector<PackedWeights> copies;
};
std::unique_ptr<WeightSet> g_weights;

const WeightSet& weights(DType dt, int64_t K, int64_t N) {
  if (g_weights && g_weights->dtype == dt && g_weights->K == K && g_weights->N == N) return *g_weights;
  g_weights.reset();
  auto w = std::make_unique<WeightSet>(WeightSet{dt, K, N, {}});
  std::mt19937 gen(42);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  std::uniform_int_distribution<int> q(-127, 127);
  const size_t bytes = size_t(K * N) * dtype_size(dt);
  const size_t count = std::max<size_t>(1, (size_t(96) << 20) / bytes + 1);
  std::vector<uint8_t> src(bytes);
  for (int64_t i = 0; i < K * N; ++i) {
    const float v = normal(gen);
    switch (dt) {
      case DType::f32: std::memcpy(src.data() + 4 * i, &v, 4); break;
      case DType::bf16: {
        const uint16_t b = to_bf16(v).bits;
        std::memcpy(src.data() + 2 * i, &b, 2);
        break;
      }
      case DType::f16: {
        const uint16_t h = to_f16(v).bits;
        std::memcpy(src.data() + 2 * i, &h, 2);
        break;
      }
      default: src[size_t(i)] = uint8_t(int8_t(q(gen))); break;
    }
  }
  for (size_t c = 0; c < count; ++c)
    w->copies.push_back(dt == DType::i8 ? gemm::pack_weights_s8(reinterpret_cast<const int8_t*>(src.data()), K, N, N, 1)
                                        : gemm::pack_weights_f(src.data(), dt, K, N, N, 1));
  g_weights = std::move(w);
  return *g_weights;
}

// Rates per second of CPU time ("GFLOP=12.3/s"), and peak% = the GFLOP rate as a share of the measured peak,
// timed here with the same clock over the same loop.
void set_counters(benchmark::State& st, const PackedWeights& pw, int64_t M, size_t a_elem, double peak,
                  double seconds) {
  const int64_t K = pw.k(), N = pw.n();
  const double ops = 2.0 * double(M) * double(N) * double(K);
  const double bytes = double(pw.data_bytes()) + double(M * K) * double(a_elem) + double(M * N) * 4.0;
  using C = benchmark::Counter;
  st.counters["GFLOP"] = C(ops / 1e9, C::kIsIterationInvariantRate);
  st.counters["GB"] = C(bytes / 1e9, C::kIsIterationInvariantRate);
  if (peak > 0 && seconds > 0) st.counters["peak%"] = 100.0 * ops * double(st.iterations()) / seconds / peak;
}

void BM_float(benchmark::State& st, gemm::GemmFloatKernel kern, DType dt, int64_t M, int64_t K, int64_t N) {
  const WeightSet& w = weights(dt, K, N);
  std::mt19937 gen(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> a(size_t(M * K)), c(size_t(M * N));
  for (float& v : a) v = u(gen);
  size_t i = 0;
  const double t0 = thread_seconds();
  for (auto _ : st) {
    const PackedWeights& pw = w.copies[i++ % w.copies.size()];
    kern.fn(M, K, 0, N, a.data(), K, pw.data(), c.data(), N);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  set_counters(st, w.copies[0], M, sizeof(float), g_peak_float, thread_seconds() - t0);
  st.SetLabel(kern.name);
}

// As BM_float / BM_s8, but one kernel call per block of `block` columns, as a layer's (expert x column block) tasks
// make them.
void BM_blocks(benchmark::State& st, GemmKernels k, DType dt, int64_t M, int64_t K, int64_t N, int64_t block) {
  const WeightSet& w = weights(dt, K, N);
  std::vector<float> a(size_t(M * K), 0.5f), c(size_t(M * N));
  std::vector<int8_t> a8(size_t(M * K), 3);
  std::vector<int32_t> c8(size_t(M * N));
  const gemm::GemmFloatFn ffn = dt == DType::i8 ? nullptr : k.float_kernel(dt).fn;
  size_t i = 0;
  const double t0 = thread_seconds();
  for (auto _ : st) {
    const PackedWeights& pw = w.copies[i++ % w.copies.size()];
    for (int64_t n0 = 0; n0 < N; n0 += block) {
      const int64_t n1 = std::min(N, n0 + block);
      if (ffn)
        ffn(M, K, n0, n1, a.data(), K, pw.data(), c.data() + n0, N);
      else
        k.s8.fn(M, K, n0, n1, a8.data(), K, static_cast<const int8_t*>(pw.data()), pw.col_sums(), c8.data() + n0, N);
    }
    benchmark::ClobberMemory();
  }
  set_counters(st, w.copies[0], M, dt == DType::i8 ? 1 : 4, dt == DType::i8 ? g_peak_int8 : g_peak_float,
               thread_seconds() - t0);
  st.SetLabel(dt == DType::i8 ? k.s8.name : k.float_kernel(dt).name);
}

void BM_s8(benchmark::State& st, gemm::GemmS8Kernel kern, int64_t M, int64_t K, int64_t N) {
  const WeightSet& w = weights(DType::i8, K, N);
  std::mt19937 gen(1);
  std::uniform_int_distribution<int> q(-127, 127);
  std::vector<int8_t> a(size_t(M * K));
  std::vector<int32_t> c(size_t(M * N));
  for (int8_t& v : a) v = int8_t(q(gen));
  size_t i = 0;
  const double t0 = thread_seconds();
  for (auto _ : st) {
    const PackedWeights& pw = w.copies[i++ % w.copies.size()];
    kern.fn(M, K, 0, N, a.data(), K, static_cast<const int8_t*>(pw.data()), pw.col_sums(), c.data(), N);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  set_counters(st, w.copies[0], M, 1, g_peak_int8, thread_seconds() - t0);
  st.SetLabel(kern.name);
}

// The micro-tile's ceiling: one full row block (M = 12 rows; 6 for the vpmaddwd int8 tile, 2 or 6 for AVX2) against
// one panel with K = 256, everything in L1, called repeatedly. The gap between this and the model shapes is what the
// memory hierarchy costs.
void BM_hot_tile(benchmark::State& st, GemmKernels k, DType dt, int64_t M) {
  const int64_t K = 256, N = 32;
  std::mt19937 gen(3);
  std::vector<uint8_t> src(size_t(K * N) * dtype_size(dt), 0x11);  // small positive values in every dtype
  PackedWeights pw = dt == DType::i8 ? gemm::pack_weights_s8(reinterpret_cast<const int8_t*>(src.data()), K, N, N, 1)
                                     : gemm::pack_weights_f(src.data(), dt, K, N, N, 1);
  std::vector<float> a(size_t(M * K), 0.5f), c(size_t(M * N));
  std::vector<int8_t> a8(size_t(M * K), 3);
  std::vector<int32_t> c8(size_t(M * N));
  const double t0 = thread_seconds();
  for (auto _ : st) {
    if (dt == DType::i8)
      k.s8.fn(M, K, 0, N, a8.data(), K, static_cast<const int8_t*>(pw.data()), pw.col_sums(), c8.data(), N);
    else
      k.float_kernel(dt).fn(M, K, 0, N, a.data(), K, pw.data(), c.data(), N);
    benchmark::ClobberMemory();
  }
  set_counters(st, pw, M, dt == DType::i8 ? 1 : 4, dt == DType::i8 ? g_peak_int8 : g_peak_float, thread_seconds() - t0);
  st.SetLabel(dt == DType::i8 ? k.s8.name : k.float_kernel(dt).name);
}

// int4 group-wise weights (W4A16): packed copies of one random int4 [K, N] matrix with fp16 scales, enough to exceed
// 96 MB; the kernel of group size G. GB counts the packed bytes (nibbles, scales and zero biases).
void BM_u4(benchmark::State& st, GemmKernels k, int64_t G, int64_t M, int64_t K, int64_t N) {
  std::mt19937 gen(5);
  std::uniform_int_distribution<int> nib(0, 15);
  std::vector<uint8_t> q(size_t(K * N)), zero(size_t(K / G * N));
  std::vector<float> scale(zero.size());
  for (uint8_t& v : q) v = uint8_t(nib(gen));
  for (size_t i = 0; i < zero.size(); ++i) {
    zero[i] = uint8_t(nib(gen));
    scale[i] = to_f32(to_f16(0.01f + 0.001f * float(i % 7)));
  }
  const gemm::Int4Source src{q.data(), N, 1, scale.data(), zero.data(), N, 1};
  std::vector<PackedWeights> copies;
  copies.push_back(gemm::pack_weights_u4(src, K, N, G));
  while (copies.size() * copies[0].data_bytes() < (size_t(96) << 20)) copies.push_back(gemm::pack_weights_u4(src, K, N, G));
  std::vector<float> a(size_t(M * K), 0.5f), c(size_t(M * N));
  const gemm::GemmFloatKernel& kern = k.kernel_for(copies[0]);
  size_t i = 0;
  const double t0 = thread_seconds();
  for (auto _ : st) {
    const PackedWeights& pw = copies[i++ % copies.size()];
    kern.fn(M, K, 0, N, a.data(), K, pw.data(), c.data(), N);
    benchmark::ClobberMemory();
  }
  set_counters(st, copies[0], M, 4, g_peak_float, thread_seconds() - t0);
  st.SetLabel(kern.name);
}

std::string variant_name(const GemmKernels& k) { return k.vnni ? "avx512vnni" : std::string(isa_name(k.isa)); }

void register_all() {
  const Isa top = detected_isa();
  for (const PeakLoop* p : {top >= Isa::avx2 ? &probe::kFmaYmm : nullptr, top >= Isa::avx512 ? &probe::kFmaZmm : nullptr,
                            gemm::vnni_available() ? &probe::kDpbusdZmm : nullptr})
    if (p) benchmark::RegisterBenchmark((std::string("peak/") + p->name).c_str(), BM_probe, *p);
  if (top >= Isa::avx2) benchmark::RegisterBenchmark("memory/stream_read_256MB", BM_stream_read);

  std::vector<GemmKernels> variants;
  for (Isa isa : gemm::available_isas()) variants.push_back(gemm::select_gemm_kernels(isa, false));
  const bool vnni = gemm::vnni_available();
  if (vnni) variants.push_back(gemm::select_gemm_kernels(Isa::avx512, true));

  for (const GemmKernels& k : variants) {
    if (k.isa == Isa::scalar) continue;
    for (DType dt : {DType::f32, DType::bf16, DType::i8}) {
      if (dt != DType::i8 && k.vnni) continue;
      int64_t M = k.isa == Isa::avx512 ? 12 : 6;  // float tiles
      if (dt == DType::i8) M = k.vnni ? 12 : k.isa == Isa::avx512 ? 6 : 2;
      const std::string name = "hot_tile/" + std::string(dt == DType::i8 ? "s8" : std::string(dtype_name(dt)) + "w") +
                               "/" + variant_name(k) + "/M:" + std::to_string(M) + "/N:32/K:256";
      benchmark::RegisterBenchmark(name.c_str(), BM_hot_tile, k, dt, M);
    }
  }

  for (const GemmKernels& k : variants) {
    if (k.vnni) continue;
    for (int64_t G : {32, 128})
      for (int64_t M : {1, 8, 64}) {
        if (k.isa == Isa::scalar && M > 8) continue;
        const std::string name = "u4g" + std::to_string(G) + "w/" + variant_name(k) + "/K:2048/N:2048/M:" +
                                 std::to_string(M);
        benchmark::RegisterBenchmark(name.c_str(), BM_u4, k, G, M, int64_t(2048), int64_t(2048));
      }
  }

  struct KN {
    int64_t K, N;
  };
  const KN shapes[] = {{2048, 2048}, {1024, 2048}, {2048, 4096}};
  const int64_t ms[] = {1, 8, 64, 512};
  // Grouped by (shape, dtype) so that one set of packed weights serves a run of benchmarks.
  for (const KN& s : shapes) {
    for (DType dt : {DType::f32, DType::bf16, DType::f16, DType::i8}) {
      for (const GemmKernels& k : variants) {
        if (dt != DType::i8 && k.vnni) continue;  // same float kernels as plain avx512
        for (int64_t M : ms) {
          if (k.isa == Isa::scalar && M > 8) continue;  // seconds per call: not worth the machine time
          const std::string name = std::string(dt == DType::i8 ? "s8" : std::string(dtype_name(dt)) + "w") + "/" +
                                   variant_name(k) + "/K:" + std::to_string(s.K) + "/N:" + std::to_string(s.N) +
                                   "/M:" + std::to_string(M);
          if (dt == DType::i8)
            benchmark::RegisterBenchmark(name.c_str(), BM_s8, k.s8, M, s.K, s.N);
          else
            benchmark::RegisterBenchmark(name.c_str(), BM_float, k.float_kernel(dt), dt, M, s.K, s.N);
          // The best variant once more, cut into the column blocks a layer's tasks would use.
          const bool best = k.isa == top && (dt == DType::i8 ? k.vnni == vnni : !k.vnni);
          if (best && s.K == 2048 && s.N == 2048 && M <= 64)
            for (int64_t block : {32, 64})
              benchmark::RegisterBenchmark((name + "/blocks:" + std::to_string(block)).c_str(), BM_blocks, k, dt, M,
                                           s.K, s.N, block);
        }
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  const Isa top = detected_isa();
  if (top >= Isa::avx512)
    g_peak_float = measure_peak(probe::kFmaZmm);
  else if (top >= Isa::avx2)
    g_peak_float = measure_peak(probe::kFmaYmm);
  if (gemm::vnni_available()) g_peak_int8 = measure_peak(probe::kDpbusdZmm);
  std::printf("measured peaks (1 thread): float %.1f GFLOP/s, int8 %.1f GOP/s (0 = instruction not available)\n",
              g_peak_float / 1e9, g_peak_int8 / 1e9);
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
