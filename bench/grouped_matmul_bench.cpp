// grouped_matmul benchmarks on the seed model's expert GEMMs: H = 2048, I = 1024, E = 64 experts, top-8 routing.
// One layer's two grouped matmuls — gate_up: x [8T, 2048] x w13 [64, 2048, 2048] (N = 2I), and down: a [8T, 1024] x
// w2 [64, 1024, 2048] — at T = 1, 8, 128 and 2048 tokens, each token routed to 8 distinct experts drawn uniformly
// (rows sorted by expert, as init_routing leaves them; group_list of counts). Successive iterations cycle through 8
// such routings (fixed seeds), so that decode reads different experts each call, as consecutive tokens do, instead
// of finding the last call's experts in the L3 cache. Two precisions:
//   bf16: bf16 x and weights, bf16 output;
//   w8a8: int8 x and weights, per-channel f32 scale and per-token scale, bf16 output.
// Variants:
//   reference        reference::grouped_matmul (scalar, one thread): the oracle the others must match bitwise;
//   packed/threads:N grouped_matmul_out with weights packed once (pack_grouped_weights), N operator threads;
//   tensor/threads:N grouped_matmul_out with the weight tensor: packs the experts of >= 48-row groups per call,
//                    runs smaller groups on the reference.
// And the cost of packing (pack_grouped_weights, 8 experts of each GEMM, N threads) from the [E, K, N] layout and
// from the Hugging Face [E, N, K] storage: what the Tensor form pays per call for each expert it packs.
// Counters (per second of wall time, since the packed variants run on several threads): GFLOP (2·M·N·K per call
// over the routed rows; int8 counts a multiply-add as 2 ops too) and GB (the active experts' weights + x + y bytes
// per call). The weights (768 MB in bf16 for both GEMMs, plus their packed copies) are far larger than any cache, so
// decode reads its experts from memory, as a real layer does.
//
//   cmake --preset release -DMOEFUSE_BUILD_BENCH=ON && cmake --build build/release --target grouped_matmul_bench
//   ./build/release/bench/grouped_matmul_bench --benchmark_filter='bf16/gate_up/T:1/'
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "moefuse/cpu.h"
#include "moefuse/ops.h"
#include "moefuse/threads.h"
#include "reference/grouped_matmul.h"

namespace {

using namespace moefuse;

constexpr int64_t kHidden = 2048, kInter = 1024, kExperts = 64, kTopK = 8;

enum class Prec { bf16, w8a8 };
enum class Gemm { gate_up, down };

const char* prec_name(Prec p) { return p == Prec::bf16 ? "bf16" : "w8a8"; }
const char* gemm_name(Gemm g) { return g == Gemm::gate_up ? "gate_up" : "down"; }
int64_t k_of(Gemm g) { return g == Gemm::gate_up ? kHidden : kInter; }
int64_t n_of(Gemm g) { return g == Gemm::gate_up ? 2 * kInter : kHidden; }

// Fast deterministic filler (the weights are hundreds of MB).
struct SplitMix {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  float uniform(float scale) { return (float(next() >> 40) / float(1 << 24) * 2.0f - 1.0f) * scale; }
};

Tensor random_tensor(DType dt, const Shape& shape, float scale, uint64_t seed) {
  Tensor t = Tensor::empty(dt, shape);
  SplitMix r{seed};
  const int64_t n = t.numel();
  switch (dt) {
    case DType::bf16: {
      auto* p = static_cast<bfloat16*>(t.data());
      for (int64_t i = 0; i < n; ++i) p[i] = to_bf16(r.uniform(scale));
      break;
    }
    case DType::f32: {
      auto* p = static_cast<float*>(t.data());
      for (int64_t i = 0; i < n; ++i) p[i] = r.uniform(scale);
      break;
    }
    case DType::i8: {
      auto* p = static_cast<int8_t*>(t.data());
      for (int64_t i = 0; i < n; ++i) p[i] = int8_t(int(r.next() % 255) - 127);
      break;
    }
    default: break;
  }
  return t;
}

constexpr int kRoutings = 8;  // routings cycled through by successive iterations

// Rows per expert when T tokens each pick kTopK distinct experts uniformly (routing number `variant`).
std::vector<int64_t> route(int64_t T, int variant) {
  std::mt19937_64 gen(uint64_t(T) * 7919 + uint64_t(variant) * 104729 + 1);
  std::vector<int64_t> counts(kExperts, 0), ids(kExperts);
  for (int64_t t = 0; t < T; ++t) {
    std::iota(ids.begin(), ids.end(), 0);
    for (int64_t j = 0; j < kTopK; ++j) {
      std::uniform_int_distribution<int64_t> pick(j, kExperts - 1);
      std::swap(ids[size_t(j)], ids[size_t(pick(gen))]);
      counts[size_t(ids[size_t(j)])]++;
    }
  }
  return counts;
}

// The weights of one (precision, GEMM), kept while consecutive benchmarks use them.
struct Weights {
  Prec prec;
  Gemm gemm;
  Tensor w, scale;
  PackedGroupedWeights packed;
};
std::unique_ptr<Weights> g_weights;

const Weights& weights(Prec prec, Gemm gemm) {
  if (g_weights && g_weights->prec == prec && g_weights->gemm == gemm) return *g_weights;
  g_weights.reset();
  auto w = std::make_unique<Weights>();
  w->prec = prec;
  w->gemm = gemm;
  const int64_t K = k_of(gemm), N = n_of(gemm);
  const uint64_t seed = 100 + 10 * uint64_t(prec) + uint64_t(gemm);
  w->w = random_tensor(prec == Prec::bf16 ? DType::bf16 : DType::i8, {kExperts, K, N}, 0.05f, seed);
  if (prec == Prec::w8a8) w->scale = random_tensor(DType::f32, {kExperts, N}, 1e-4f, seed + 1);
  w->packed = pack_grouped_weights(w->w);
  g_weights = std::move(w);
  return *g_weights;
}

struct Inputs {
  Tensor x, y;
  GroupedMatmulOptions o[kRoutings];  // the same but for group_list
  double active = 0;                  // experts with rows, mean over the routings
};

Inputs inputs(const Weights& w, int64_t T) {
  Inputs in;
  const int64_t M = T * kTopK, K = k_of(w.gemm), N = n_of(w.gemm);
  const bool int8 = w.prec == Prec::w8a8;
  in.x = random_tensor(int8 ? DType::i8 : DType::bf16, {M, K}, 1.0f, 7 + uint64_t(T));
  in.y = Tensor::empty(DType::bf16, {M, N});
  const Tensor pts = int8 ? random_tensor(DType::f32, {M}, 1.0f, 9 + uint64_t(T)) : Tensor{};
  for (int v = 0; v < kRoutings; ++v) {
    const std::vector<int64_t> counts = route(T, v);
    in.active += double(std::count_if(counts.begin(), counts.end(), [](int64_t c) { return c > 0; })) / kRoutings;
    GroupedMatmulOptions& o = in.o[v];
    o.group_type = 0;
    o.group_list_type = 1;
    o.group_list = Tensor::from_values<int64_t>({kExperts}, std::span<const int64_t>(counts));
    if (int8) {
      o.output_dtype = DType::bf16;
      o.scale = w.scale;
      o.per_token_scale = pts;
    }
  }
  return in;
}

void set_counters(benchmark::State& st, const Weights& w, const Inputs& in) {
  const double M = double(in.x.size(0)), K = double(k_of(w.gemm)), N = double(n_of(w.gemm));
  const double welem = w.prec == Prec::bf16 ? 2 : 1;
  const double bytes = in.active * K * N * welem + M * K * welem + M * N * 2;
  using C = benchmark::Counter;
  st.counters["GFLOP"] = C(2 * M * N * K / 1e9, C::kIsIterationInvariantRate);
  st.counters["GB"] = C(bytes / 1e9, C::kIsIterationInvariantRate);
  st.counters["experts"] = in.active;
}

void BM_reference(benchmark::State& st, Prec prec, Gemm gemm, int64_t T) {
  const Weights& w = weights(prec, gemm);
  Inputs in = inputs(w, T);
  reference::GroupedMatmulArgs a[kRoutings];
  for (int v = 0; v < kRoutings; ++v) {
    a[v].x = in.x;
    a[v].weight = w.w;
    a[v].scale = in.o[v].scale;
    a[v].per_token_scale = in.o[v].per_token_scale;
    a[v].group_list = in.o[v].group_list;
    a[v].group_list_type = in.o[v].group_list_type;
  }
  int v = 0;
  for (auto _ : st) {
    reference::grouped_matmul(a[v], in.y);
    v = (v + 1) % kRoutings;
    benchmark::ClobberMemory();
  }
  set_counters(st, w, in);
}

void BM_op(benchmark::State& st, Prec prec, Gemm gemm, int64_t T, bool packed, int threads) {
  const Weights& w = weights(prec, gemm);
  Inputs in = inputs(w, T);
  set_num_threads(threads);
  int v = 0;
  for (auto _ : st) {
    if (packed) grouped_matmul_out(in.x, w.packed, in.o[v], in.y);
    else grouped_matmul_out(in.x, w.w, in.o[v], in.y);
    v = (v + 1) % kRoutings;
    benchmark::ClobberMemory();
  }
  set_num_threads(0);
  set_counters(st, w, in);
}

// pack_grouped_weights of 8 experts of a GEMM's weight, stored [E, K, N] or (hf) [E, N, K] viewed as [E, K, N].
void BM_pack(benchmark::State& st, Prec prec, Gemm gemm, bool hf, int threads) {
  const int64_t E = 8, K = k_of(gemm), N = n_of(gemm);
  const DType dt = prec == Prec::bf16 ? DType::bf16 : DType::i8;
  const Tensor w = hf ? random_tensor(dt, {E, N, K}, 0.05f, 5).transpose(1, 2) : random_tensor(dt, {E, K, N}, 0.05f, 5);
  set_num_threads(threads);
  for (auto _ : st) {
    PackedGroupedWeights p = pack_grouped_weights(w);
    benchmark::DoNotOptimize(p);
  }
  set_num_threads(0);
  const double elems = double(E * K * N);
  using C = benchmark::Counter;
  st.counters["GB"] = C(elems * double(dtype_size(dt)) / 1e9, C::kIsIterationInvariantRate);
  st.counters["ns/elem"] = C(elems, C::kIsIterationInvariantRate | C::kInvert);
}

void register_all() {
  for (Prec prec : {Prec::bf16, Prec::w8a8})
    for (Gemm gemm : {Gemm::gate_up, Gemm::down})
      for (bool hf : {false, true})
        for (int threads : {1, 2})
          benchmark::RegisterBenchmark((std::string("pack/") + prec_name(prec) + "/" + gemm_name(gemm) +
                                        (hf ? "/ENK" : "/EKN") + "/threads:" + std::to_string(threads))
                                           .c_str(),
                                       BM_pack, prec, gemm, hf, threads)
              ->UseRealTime()
              ->Unit(benchmark::kMillisecond);
  for (Prec prec : {Prec::bf16, Prec::w8a8})
    for (Gemm gemm : {Gemm::gate_up, Gemm::down})
      for (int64_t T : {1, 8, 128, 2048}) {
        const std::string base =
            std::string(prec_name(prec)) + "/" + gemm_name(gemm) + "/T:" + std::to_string(T) + "/";
        auto* ref = benchmark::RegisterBenchmark((base + "reference").c_str(), BM_reference, prec, gemm, T);
        ref->UseRealTime()->Unit(benchmark::kMillisecond);
        if (T >= 2048) ref->Iterations(1);  // ~10 s a call
        for (bool packed : {true, false})
          for (int threads : {1, 2})
            benchmark::RegisterBenchmark(
                (base + (packed ? "packed" : "tensor") + "/threads:" + std::to_string(threads)).c_str(), BM_op, prec,
                gemm, T, packed, threads)
                ->UseRealTime()
                ->Unit(benchmark::kMillisecond);
      }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  std::printf("kernels: %s%s; operator threads by default: %d\n", std::string(isa_name(active_isa())).c_str(),
              use_avx512_vnni() ? " + VNNI" : "", num_threads());
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
