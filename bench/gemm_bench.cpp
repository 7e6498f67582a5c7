// GEMM kernel benchmarks, driven by the kernel registry (kernels/registry.h): every GEMM row this machine can run (the int4
// group-wise rows at 2048 x 2048), on the model shapes (K x N = 2048 x 2048, 1024 x 2048, 2048 x 4096; M = 1, 8, 64,
// 512; the FP8 and bf16 rows also M = 2, 4, 7 at K = 2048 and 1024, N = 2048: decode's small tiles),
// single-threaded (the layer runs one kernel call per task). Counters: GFLOP (2·M·N·K per call; int8 counts a multiply-add as 2 ops too) and GB
// (packed weights + A + C bytes per call) per second of CPU time and peak% (GFLOP/s as a share of the measured peak
// of the instruction family the row computes with: probe::family_of_kernel, e.g. vfmadd231ps ymm for the AVX2 float
// rows, vpmaddwd ymm for the AVX2 int8 row, vpdpbusd zmm for the VNNI row; measured at start-up by the probes of
// base/machine_probe.h, which also run as benchmarks). A stream-read probe gives the memory bandwidth one core gets,
// the ceiling for decode.
//
// Weights are cold: each benchmark rotates over enough packed copies to exceed 96 MB (more than the L3), so decode
// reads its weights from memory, as a MoE layer with many experts does.
//
//   cmake --preset release -DMOEFUSE_BUILD_BENCH=ON && cmake --build build/release --target gemm_bench
//   ./build/release/bench/gemm_bench --benchmark_filter='gemm_bf16w_f32_6x16__avx2/.*M:1$'
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include "base/machine_probe.h"
#include "kernels/gemm/amx_gemm.h"
#include "kernels/gemm/amx_gemm_u4s8.h"
#include "kernels/gemm/gemm.h"
#include "kernels/registry.h"
#include "moefuse/cpu.h"
#include "moefuse/dtype.h"

namespace {

using namespace moefuse;
using kernels::KernelInfo;
using gemm::PackedWeights;

// ─── Peak probes (base/machine_probe.h) ──────────────────────────────────────────────────────────────────────────

using probe::PeakLoop;
using probe::thread_seconds;

// Best of a few timed runs on this thread, in ops per second of its CPU time.
double measure_peak(const PeakLoop& p) { return probe::measure_peak(p, 1, 20'000'000, 5); }

// The measured single-thread peak of the family each row computes with (0: no compute bound for it here).
std::map<const probe::PeakFamily*, double> g_peaks;
double peak_of(const KernelInfo& k) {
  const probe::PeakFamily* f = probe::family_of_kernel(k.name);
  if (!f || !f->loop || !f->present()) return 0;
  auto it = g_peaks.find(f);
  if (it == g_peaks.end()) it = g_peaks.emplace(f, measure_peak(*f->loop)).first;
  return it->second;
}

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

// The AVX512-BF16 row (gemm_bf16w_f32_6x64__avx512bf16) and the AVX-512 FMA row for bf16 weights are both walked,
// so one run compares them (M = 1, 8, 64, 512); the first's peak% is against the vdpbf16ps peak (dpbf16_zmm):
//   ./build/release/bench/gemm_bench --benchmark_filter='peak/|gemm_bf16w_f32_6x64__avx512(bf16)?/K:2048/N:2048/M:[0-9]+$'

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

// bf16 copies of fp32 rows (the bf16-A rows' A: the same values when the fp32 rows hold bf16 values).
std::vector<bfloat16> bf16_rows(const std::vector<float>& a) {
  std::vector<bfloat16> out(a.size());
  for (size_t i = 0; i < a.size(); ++i) out[i] = to_bf16(a[i]);
  return out;
}

// One call of registry row `k` over the columns [n0, n1) of `pw`: float A and C for the float rows, bf16 A (a16) and
// float C for the bf16-A rows, int8 A and int32 C for the int8 rows.
void call_row(const KernelInfo& k, int64_t M, int64_t n0, int64_t n1, const float* a, const bfloat16* a16,
              const int8_t* a8, const PackedWeights& pw, float* c, int32_t* c8, int64_t ldc) {
  const int64_t K = pw.k();
  if (k.op == kernels::Op::gemm_s8)
    std::get<gemm::GemmS8Fn>(k.fn)(M, K, n0, n1, a8, K, static_cast<const int8_t*>(pw.data()), pw.col_sums(),
                                   c8 + n0, ldc);
  else if (std::holds_alternative<gemm::GemmBf16AFn>(k.fn))
    std::get<gemm::GemmBf16AFn>(k.fn)(M, K, n0, n1, a16, K, pw.data(), c + n0, ldc);
  else
    std::get<gemm::GemmFloatFn>(k.fn)(M, K, n0, n1, a, K, pw.data(), c + n0, ldc);
}

// Bytes per A element a row reads: int8 1, bf16 rows 2, fp32 4.
size_t a_element_bytes(const KernelInfo& k) {
  return k.in == DType::i8 ? 1 : std::holds_alternative<gemm::GemmBf16AFn>(k.fn) ? 2 : 4;
}

// Row `k` on cold weights of the model shape K x N, M rows, in column blocks of `block` (N: one call per matrix; 32
// or 64: one call per block, as a layer's expert x column-block tasks make them).
void BM_row(benchmark::State& st, const KernelInfo* k, int64_t M, int64_t K, int64_t N, int64_t block) {
  const WeightSet& w = weights(k->in, K, N);
  std::mt19937 gen(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::uniform_int_distribution<int> q(-127, 127);
  std::vector<float> a(size_t(M * K)), c(size_t(M * N));
  std::vector<int8_t> a8(size_t(M * K));
  std::vector<int32_t> c8(size_t(M * N));
  // bf16 weights come with bf16 activations (a bf16 model's rows are bf16 values): the AVX512-BF16 kernel needs
  // them, and would time its fallback on the AVX-512 FMA kernel otherwise.
  for (float& v : a) v = k->in == DType::bf16 ? to_f32(to_bf16(u(gen))) : u(gen);
  for (int8_t& v : a8) v = int8_t(q(gen));
  const std::vector<bfloat16> a16 = bf16_rows(a);
  size_t i = 0;
  const double t0 = thread_seconds();
  for (auto _ : st) {
    const PackedWeights& pw = w.copies[i++ % w.copies.size()];
    for (int64_t n0 = 0; n0 < N; n0 += block)
      call_row(*k, M, n0, std::min(N, n0 + block), a.data(), a16.data(), a8.data(), pw, c.data(), c8.data(), N);
    benchmark::DoNotOptimize(c.data());
    benchmark::DoNotOptimize(c8.data());
    benchmark::ClobberMemory();
  }
  set_counters(st, w.copies[0], M, a_element_bytes(*k), peak_of(*k), thread_seconds() - t0);
  st.SetLabel(k->name);
}

// The micro-tile's ceiling: two full row blocks (M = 2 tile_m) against one panel with K = 256, everything in L1,
// called repeatedly. The gap between this and the model shapes is what the memory hierarchy costs.
void BM_hot_tile(benchmark::State& st, const KernelInfo* k) {
  const int64_t K = 256, N = 32, M = 2 * k->tile_m;
  std::vector<uint8_t> src(size_t(K * N) * dtype_size(k->in), 0x11);  // small positive values in every dtype
  PackedWeights pw = k->in == DType::i8
                         ? gemm::pack_weights_s8(reinterpret_cast<const int8_t*>(src.data()), K, N, N, 1)
                         : gemm::pack_weights_f(src.data(), k->in, K, N, N, 1);
  std::vector<float> a(size_t(M * K), 0.5f), c(size_t(M * N));
  std::vector<int8_t> a8(size_t(M * K), 3);
  std::vector<int32_t> c8(size_t(M * N));
  const std::vector<bfloat16> a16 = bf16_rows(a);
  const double t0 = thread_seconds();
  for (auto _ : st) {
    call_row(*k, M, 0, N, a.data(), a16.data(), a8.data(), pw, c.data(), c8.data(), N);
    benchmark::ClobberMemory();
  }
  set_counters(st, pw, M, a_element_bytes(*k), peak_of(*k), thread_seconds() - t0);
  st.SetLabel(k->name);
}

// The rows to time: every GEMM row this machine runs, in table order.
std::vector<const KernelInfo*> gemm_rows() {
  std::vector<const KernelInfo*> out;
  for (const KernelInfo& k : kernels::registry())
    if (k.family == std::string("gemm") && kernels::runs_here(k)) out.push_back(&k);
  return out;
}

// Times row `k` (an int4 or FP8 row, whose weights come from their own pack function) over packed copies of one
// [K, N] matrix made by `pack`, enough to exceed 96 MB so that every call reads cold weights. GB counts the packed
// bytes (values, scales and, for int4, zero biases).
template <class Pack>
void time_packed_copies(benchmark::State& st, const KernelInfo* k, int64_t M, int64_t K, int64_t N, Pack pack) {
  std::vector<PackedWeights> copies;
  copies.push_back(pack());
  while (copies.size() * copies[0].data_bytes() < (size_t(96) << 20)) copies.push_back(pack());
  std::vector<float> a(size_t(M * K), 0.5f), c(size_t(M * N)), row_scale(size_t(M), 0.01f);
  std::vector<int8_t> a8(size_t(M * K), 3);
  const bool w4a8 = std::holds_alternative<gemm::GemmU4S8Fn>(k->fn);  // int8 rows with their scales
  const std::vector<bfloat16> a16 = bf16_rows(a);
  size_t i = 0;
  const double t0 = thread_seconds();
  for (auto _ : st) {
    const PackedWeights& pw = copies[i++ % copies.size()];
    if (w4a8) std::get<gemm::GemmU4S8Fn>(k->fn)(M, K, 0, N, a8.data(), K, row_scale.data(), pw.data(), c.data(), N);
    else if (std::holds_alternative<gemm::GemmBf16AFn>(k->fn))
      std::get<gemm::GemmBf16AFn>(k->fn)(M, K, 0, N, a16.data(), K, pw.data(), c.data(), N);
    else std::get<gemm::GemmFloatFn>(k->fn)(M, K, 0, N, a.data(), K, pw.data(), c.data(), N);
    benchmark::ClobberMemory();
  }
  set_counters(st, copies[0], M, w4a8 ? 1 : a_element_bytes(*k), peak_of(*k), thread_seconds() - t0);
  st.SetLabel(k->name);
}

// int4 group-wise weights (W4A16 with fp32 rows, W4A8 with int8 rows): one random int4 matrix with fp16 scales; the
// kernel of group size G.
void BM_u4(benchmark::State& st, const KernelInfo* k, int64_t G, int64_t M, int64_t K, int64_t N) {
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
  time_packed_copies(st, k, M, K, N, [&] { return gemm::pack_weights_u4(src, K, N, G); });
}

// FP8 block-scaled weights as a release makes them: Gaussian weights, one scale per 128 x 128 block (its largest
// magnitude / 448, e4m3's largest value), each weight rounded to the nearest e4m3 (positive codes 0..126 are in
// increasing order). Most 8-column blocks then hold only normal codes and take the kernels' table path; the few with
// a subnormal or zero code take table_sub (src/kernels/gemm/fp8_layout.h).
void BM_fp8(benchmark::State& st, const KernelInfo* k, int64_t M, int64_t K, int64_t N) {
  std::mt19937 gen(6);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> w(size_t(K * N));
  for (float& v : w) v = normal(gen);
  const int64_t kb = (K + 127) / 128, nb = (N + 127) / 128;
  std::vector<float> scale(size_t(kb * nb), 0.0f);
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < N; ++j) {
      float& s = scale[size_t(i / 128 * nb + j / 128)];
      s = std::max(s, std::fabs(w[size_t(i * N + j)]) / 448.0f);
    }
  std::array<float, 127> values{};
  for (int c = 0; c < 127; ++c) values[size_t(c)] = f32_from_e4m3(uint8_t(c));
  std::vector<uint8_t> q(w.size());
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < N; ++j) {
      const float x = w[size_t(i * N + j)] / scale[size_t(i / 128 * nb + j / 128)];
      const float mag = std::min(std::fabs(x), 448.0f);
      auto hi = std::lower_bound(values.begin(), values.end(), mag);
      if (hi == values.end()) --hi;
      const auto lo = hi == values.begin() ? hi : hi - 1;
      const auto code = uint8_t((mag - *lo <= *hi - mag ? lo : hi) - values.begin());
      q[size_t(i * N + j)] = uint8_t(code | (x < 0 ? 0x80 : 0));
    }
  const gemm::Fp8Source src{q.data(), N, 1, scale.data(), nb, 1, 128, 128};
  time_packed_copies(st, k, M, K, N, [&] { return gemm::pack_weights_fp8(src, K, N); });
}

void register_all() {
  for (const probe::PeakFamily& f : probe::peak_families())
    if (f.loop && f.present()) benchmark::RegisterBenchmark((std::string("peak/") + f.loop->name).c_str(), BM_probe, *f.loop);
  if (detected_isa() >= Isa::avx2) benchmark::RegisterBenchmark("memory/stream_read_256MB", BM_stream_read);

  const std::vector<const KernelInfo*> rows = gemm_rows();
  for (const KernelInfo* k : rows)
    if (k->isa != Isa::scalar && k->in != DType::u8)  // int4 and FP8 rows: BM_u4 and BM_fp8 below
      benchmark::RegisterBenchmark(("hot_tile/" + std::string(k->name) + "/M:" + std::to_string(2 * k->tile_m) +
                                    "/N:32/K:256").c_str(), BM_hot_tile, k);

  // int4 rows, W4A16 and W4A8 (G = 32 and 128: 64 lies between the two), and FP8 rows, each on its own weights.
  for (const KernelInfo* k : rows) {
    using kernels::Op;
    const bool fp8 = k->op == Op::gemm_fp8 || k->op == Op::gemm_fp8_bf16a;
    const int64_t G = k->op == Op::gemm_u4_g32 || k->op == Op::gemm_u4s8_g32     ? 32
                      : k->op == Op::gemm_u4_g128 || k->op == Op::gemm_u4s8_g128 ? 128
                                                                                  : 0;
    if (G == 0 && !fp8) continue;
    const bool w4a8 = k->op == Op::gemm_u4s8_g32 || k->op == Op::gemm_u4s8_g128;
    for (int64_t M : {1, 2, 3, 4, 7, 8, 16, 64, 512}) {
      if (k->isa == Isa::scalar && M > 8) continue;
      // W4A8 at the AMX kernels' first row count (kAmxInt8MinRows), beside the int8 rows' M = 16 (below)
      if (M == 16 && !(w4a8 && k->isa != Isa::scalar)) continue;
      if (M == 7 && !fp8) continue;  // FP8 decode's small tiles, beside the bf16 rows' (below)
      if (M == 3 && fp8) continue;
      // int4 decode: an expert's 1..4 rows at T = 1 and 8 (olmoe), on the vector kernels
      if (M >= 2 && M <= 4 && !fp8 && k->isa == Isa::scalar) continue;
      const std::string name = std::string(k->name) + "/K:2048/N:2048/M:" + std::to_string(M);
      if (fp8) benchmark::RegisterBenchmark(name.c_str(), BM_fp8, k, M, int64_t(2048), int64_t(2048));
      else benchmark::RegisterBenchmark(name.c_str(), BM_u4, k, G, M, int64_t(2048), int64_t(2048));
    }
    if (fp8 && k->isa != Isa::scalar)  // decode on the layer's down-projection shape (K = 1024)
      for (int64_t M : {1, 2, 4, 7})
        benchmark::RegisterBenchmark((std::string(k->name) + "/K:1024/N:2048/M:" + std::to_string(M)).c_str(), BM_fp8,
                                     k, M, int64_t(1024), int64_t(2048));
  }

  struct KN {
    int64_t K, N;
  };
  const KN shapes[] = {{2048, 2048}, {1024, 2048}, {2048, 4096}};
  const int64_t ms[] = {1, 2, 4, 7, 8, 16, 64, 512};
  // Grouped by (shape, weight dtype) so that one set of packed weights serves a run of benchmarks.
  for (const KN& s : shapes) {
    for (DType dt : {DType::f32, DType::bf16, DType::f16, DType::i8}) {
      for (const KernelInfo* k : rows) {
        if (k->in != dt) continue;
        for (int64_t M : ms) {
          if (k->isa == Isa::scalar && M > 8) continue;  // seconds per call: not worth the machine time
          // Beside FP8 decode, and for the bf16 and int8 prefetch's row thresholds (MOEFUSE_PREFETCH's @R).
          if ((M == 2 || M == 4 || M == 7 || M == 16) && ((dt != DType::bf16 && dt != DType::i8) || s.N != 2048))
            continue;
          const std::string name = std::string(k->name) + "/K:" + std::to_string(s.K) + "/N:" + std::to_string(s.N) +
                                   "/M:" + std::to_string(M);
          benchmark::RegisterBenchmark(name.c_str(), BM_row, k, M, s.K, s.N, s.N);
          // The rows dispatch picks on this machine once more, cut into the column blocks a layer's tasks use.
          const bool picked = kernels::find(k->op, dt, {detected_isa(), gemm::vnni_available()}) == k;
          if (picked && s.K == 2048 && s.N == 2048 && M <= 64)
            for (int64_t block : {32, 64})
              benchmark::RegisterBenchmark((name + "/blocks:" + std::to_string(block)).c_str(), BM_row, k, M, s.K,
                                           s.N, block);
        }
      }
    }
  }
}

// ─── The AMX-INT8 driver's schedules (amx_gemm.h, "int8 schedules"), side by side ─────────────────────────────────
// Where the CPU has the amx level: every schedule of amx::visit_s8_schedules as its own row
// (gemm_s8_s32_32x32_<schedule>__amx: "base" the old schedule, "packed_k2048_pf1" the registry row's, both without
// the VNNI fallback for few rows: M = 4 and 8 are for kAmxInt8MinRows), on cold weights, whole-matrix calls, M = 4,
// 8, 16, 64, 128, 512, 2048 at K x N = 2048 x 2048 and 1024 x 2048 (the down projection), and M = 512 in the
// layer's column blocks of 128. peak% is against the AMX-INT8 peak (peak/tdpbssd). One run on an AMX machine
// (about 4 minutes), with the registry row:
//   ./build/release/bench/gemm_bench --benchmark_filter='peak/tdpbssd|gemm_s8_s32_32x32_[a-z0-9_]+__amx/|gemm_s8_s32_32x32__amx/K:(2048|1024)/N:2048/M:[0-9]+$'
std::vector<KernelInfo> g_amx_s8_schedules;  // registry-like rows for BM_row, one per schedule

void register_amx_s8_schedules() {
  if (detected_isa() < Isa::amx) return;
  for (const gemm::amx::S8Schedule& s : gemm::amx::s8_schedules())
    g_amx_s8_schedules.push_back(
        KernelInfo{"gemm", kernels::Op::gemm_s8, s.name, Isa::amx, DType::i8, DType::i32, 32, 32, s.fn, nullptr});
  struct KN {
    int64_t K, N;
  };
  for (const KN& s : {KN{2048, 2048}, KN{1024, 2048}})
    for (int64_t M : {4, 8, 16, 64, 128, 512, 2048})
      for (const KernelInfo& k : g_amx_s8_schedules) {
        const std::string name = std::string(k.name) + "/K:" + std::to_string(s.K) + "/N:" + std::to_string(s.N) +
                                 "/M:" + std::to_string(M);
        benchmark::RegisterBenchmark(name.c_str(), BM_row, &k, M, s.K, s.N, s.N);
        if (M == 512 && s.K == 2048)
          benchmark::RegisterBenchmark((name + "/blocks:128").c_str(), BM_row, &k, M, s.K, s.N, int64_t(128));
      }
}

// ─── The AMX-INT8 W4A8 driver's two schedules (amx_gemm_u4s8.h, "A"), side by side ──────────────────────────────────
// Where the CPU has the amx level: A read in place (what the registry row runs) and A copied densely per 512-k block,
// each as its own row (gemm_u4g<G>w_s8_f32_32x32_<in_place|dense>__amx, no VNNI fallback), G = 32 and 128, on cold
// weights, M = 16, 64, 512 and 2048 at K x N = 2048 x 2048 and M = 512 at 1024 x 2048 (the down projection). One run
// on an AMX machine, with the registry rows:
//   ./build/release/bench/gemm_bench --benchmark_filter='peak/tdpbssd|gemm_u4g(32|128)w_s8_f32_32x32_?[a-z_]*__amx/K:[0-9]+/N:2048/M:(16|64|512|2048)$'
std::vector<KernelInfo> g_amx_u4s8_schedules;  // registry-like rows for BM_u4, one per schedule and G

void register_amx_u4s8_schedules() {
  if (detected_isa() < Isa::amx) return;
  using kernels::Op;
  for (const gemm::amx::U4S8Schedule& s : gemm::amx::u4s8_schedules())
    if (s.G != 64)
      g_amx_u4s8_schedules.push_back(KernelInfo{"gemm", s.G == 32 ? Op::gemm_u4s8_g32 : Op::gemm_u4s8_g128, s.name,
                                                Isa::amx, DType::u8, DType::f32, 32, 32, s.fn, nullptr});
  for (const KernelInfo& k : g_amx_u4s8_schedules) {
    const int64_t G = k.op == kernels::Op::gemm_u4s8_g32 ? 32 : 128;
    for (int64_t M : {16, 64, 512, 2048})
      benchmark::RegisterBenchmark((std::string(k.name) + "/K:2048/N:2048/M:" + std::to_string(M)).c_str(), BM_u4, &k,
                                   G, M, int64_t(2048), int64_t(2048));
    benchmark::RegisterBenchmark((std::string(k.name) + "/K:1024/N:2048/M:512").c_str(), BM_u4, &k, G, int64_t(512),
                                 int64_t(1024), int64_t(2048));
  }
}

// ─── The AMX-BF16 driver's two schedules of A (amx_gemm.h, BF16A), side by side ────────────────────────────────────
// Where the CPU has the amx level: A in place (the registry rows') and A copied densely per 512-k block, fp32 rows
// and bf16 rows (gemm_bf16w_[bf16a_]f32_32x32_<in_place|dense>__amx), on cold weights, M = 1, 8, 64, 512 and 2048 at
// K x N = 2048 x 2048, and M = 512 in the layer's column blocks of 128. One run on an AMX machine:
//   ./build/release/bench/gemm_bench --benchmark_filter='peak/tdpbf16ps|gemm_bf16w_(bf16a_)?f32_32x32_(in_place|dense)__amx/'
std::vector<KernelInfo> g_amx_bf16_schedules;  // registry-like rows for BM_row, two per schedule

void register_amx_bf16_schedules() {
  if (detected_isa() < Isa::amx) return;
  using kernels::Op;
  for (const gemm::amx::Bf16Schedule& s : gemm::amx::bf16_schedules()) {
    g_amx_bf16_schedules.push_back(
        KernelInfo{"gemm", Op::gemm_float, s.f32_name, Isa::amx, DType::bf16, DType::f32, 32, 32, s.f32, nullptr});
    g_amx_bf16_schedules.push_back(KernelInfo{"gemm", Op::gemm_float_bf16a, s.bf16a_name, Isa::amx, DType::bf16,
                                              DType::f32, 32, 32, s.bf16a, nullptr});
  }
  for (const KernelInfo& k : g_amx_bf16_schedules)
    for (int64_t M : {1, 8, 64, 512, 2048}) {
      const std::string name = std::string(k.name) + "/K:2048/N:2048/M:" + std::to_string(M);
      benchmark::RegisterBenchmark(name.c_str(), BM_row, &k, M, int64_t(2048), int64_t(2048), int64_t(2048));
      if (M == 512)
        benchmark::RegisterBenchmark((name + "/blocks:128").c_str(), BM_row, &k, M, int64_t(2048), int64_t(2048),
                                     int64_t(128));
    }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // The kernels' software prefetch (MOEFUSE_PREFETCH over the CPU family's entry): in the context of every report.
  benchmark::AddCustomContext("cpu_family", std::string(cpu_family_name(cpu_family())));
  benchmark::AddCustomContext("prefetch", prefetch_text(prefetch_settings()));
  for (const KernelInfo* k : gemm_rows())
    if (const probe::PeakFamily* f = probe::family_of_kernel(k->name); f && !g_peaks.count(f) && peak_of(*k) > 0)
      std::printf("measured peak (1 thread) of %s (%s): %.1f %s\n", f->id, f->instruction, g_peaks[f] / 1e9, f->unit);
  register_all();
  register_amx_s8_schedules();
  register_amx_u4s8_schedules();
  register_amx_bf16_schedules();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
