// layer_scaling: how the layer's decode scales with threads, against the read bandwidth of the same threads measured
// in the same minute (this is what a VM whose bandwidth drifts between minutes needs: `moefuse bench` probes once
// before and once after all its rows). Not a test and not part of `moefuse bench`: a tool for the scheduling work.
//
// One layer per (path, thread count), built from the same seed. Each round, for each thread count n: the read probe
// on n threads (zmm loads, 4 streams per thread, unpinned: as the layer's threads run; best of 3 passes over
// 256 MiB), then --forwards forwards of each path on fresh random tokens (so the active experts change from one
// forward to the next, as in decode), alternating the paths forward by forward. It prints per round and thread
// count the probe, each path's median and minimum ms, its weight bytes / median as GB/s and that as a share of the
// probe; then the CPUs the process used during the variant's forwards (their CPU time summed over the round / their
// wall time summed: below the thread count when other processes took a core, as builds beside this one do; the
// pool's threads spin rather than sleep within a forward) and the involuntary context switches per forward. Summed,
// not per forward: the kernel brings another running thread's CPU time up to date only at its scheduler tick (4 ms
// at HZ = 250) or when it stops, so one forward of a millisecond mostly sees the calling thread's time alone (the
// median of per-forward ratios, printed before, read 1.00 for two busy threads).
//
//   layer_scaling [--preset olmoe-1b-7b] [--quant none|w8a8|w4a16|w4a8|fp8] [--tokens 1] [--threads 1,2]
//                 [--rounds 3] [--forwards 40] [--paths chain,superkernel] [--seed 0] [--probe-detail 0|1]
//                 [--numerics native,portable] [--group-size 128]
// --quant w8a8,w4a8 builds each path once per weight format and alternates them forward by forward (the path column
// then reads path/format): two formats' time in the same seconds, e.g. W4A8 against W8A8 prefill. --group-size sets
// quant_group_size for the int4 formats.
// --spin 0,200 alternates the pool's spin before sleeping (microseconds; -1: the default) forward by forward.
// --prefetch 'bf16=0,int8=0;bf16=4K@4,int8=8K@4' alternates software prefetch settings (MOEFUSE_PREFETCH's syntax, each
// over the settings in effect; ';' between them) forward by forward: a paired comparison within the same seconds.
// Every forward has its own tokens (variants too), so no variant reads experts another one has just left in L3.
// --numerics native,portable builds each path in each tier and alternates them forward by forward (the path column
// then reads path/tier): e.g. AMX-BF16 (native, with MOEFUSE_AMX_BF16=on) against the FMA kernels in the same seconds.
// --wake 1 only measures the pool's wake-up latency (2 threads) with and without the spin, and exits.
// --probe-detail 1 first prints every read configuration `moefuse bench` probes (streams, placements) per thread count.
// --stages 1 prints under each row the medians of the layer's stage timers (LayerTimings, microseconds) and of the
// time outside them (the wall time of forward_out less their sum): where a forward spends what is not the weights.
// --topk 8,4,2,1 builds each path once per num_experts_per_tok and alternates them forward by forward: the time
// against the weight bytes, whose intercept is the forward's fixed cost (the path column then reads path/kK).
// --prewake 0,1 alternates, forward by forward, the pool without and with ThreadPool::prewake (crossed with --spin; the
// spin column then ends in w where it is on).
// --gap-us 1000 busies the calling thread that long before each forward (as a model's attention would between its
// MoE layers; untimed): past the pool's spin its workers sleep, and each forward pays for waking them.
// --hot 1 runs every forward of a variant on the same tokens (the same experts, so the weights they read are those
// the previous forward of that variant left in the caches when they fit): with a small --topk, the cost of a
// forward whose weights are hot.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <sys/resource.h>

#include <atomic>
#include <thread>

#include "base/default_pool.h"
#include "base/machine_probe.h"
#include "moefuse/config.h"
#include "moefuse/cpu.h"
#include "moefuse/layer.h"
#include "moefuse/machine.h"
#include "moefuse/numerics.h"

using namespace moefuse;

namespace {

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> v;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, ',');)
    if (!part.empty()) v.push_back(part);
  return v;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0 : n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double sum(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0); }

// CPU seconds of the whole process (every thread) and involuntary context switches so far.
void process_usage(double& cpu_s, long& preempted) {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  cpu_s = double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
  preempted = u.ru_nivcsw;
}

// The pool's wake-up latency: loops of 2000 tasks of about 1 us, `gap_us` of work on the calling thread between
// them (a decode step's serial parts); per loop, how long after the caller's first task the first worker's first
// task started (median over the loops both ran; `alone` counts the others), with the pool's spin set to `spin_us`.
double wake_latency_us(int threads, int spin_us, int gap_us, int loops, int& alone) {
  alone = 0;
  PoolLease lease(threads);
  ThreadPool* pool = lease.pool();
  if (!pool) return 0;
  pool->set_spin_micros(spin_us);
  using Clock = std::chrono::steady_clock;
  auto busy = [](double us) {
    const auto end = Clock::now() + std::chrono::nanoseconds(int64_t(us * 1e3));
    while (Clock::now() < end) {
    }
  };
  std::vector<double> v;
  for (int l = 0; l < loops; ++l) {
    busy(gap_us);
    const std::thread::id caller = std::this_thread::get_id();
    std::atomic<int64_t> caller_first{0}, worker_first{0};
    pool->parallel_for(2000, [&](int64_t) {
      const int64_t now = Clock::now().time_since_epoch().count();
      int64_t zero = 0;
      (std::this_thread::get_id() == caller ? caller_first : worker_first).compare_exchange_strong(zero, now);
      busy(1);
    });
    // Loops that one thread ran alone (the other held off its core throughout) say nothing of the wake-up.
    if (worker_first.load() > 0 && caller_first.load() > 0)
      v.push_back(double(worker_first.load() - caller_first.load()) / 1e3);
    else
      ++alone;
  }
  pool->set_spin_micros(ThreadPool::kDefaultSpinMicros);
  return median(v);
}

struct Layer {
  std::string path;
  int threads;
  MoeLayer layer;
};

}  // namespace

int main(int argc, char** argv) {
  std::string preset = "olmoe-1b-7b", quant_arg = "none", threads_arg = "1,2", paths_arg = "chain,superkernel";
  int64_t T = 1;
  int rounds = 3, forwards = 40;
  uint64_t seed = 0;
  bool probe_detail = false, wake = false, stages = false, hot = false;
  int gap_us = 0;
  int64_t group_size = 0;  // 0: the preset's
  std::string topk_arg;  // "": the preset's
  std::string spins_arg = "-1", prewake_arg = "1";
  std::string prefetch_arg;  // "": the settings in effect
  std::string numerics_arg;  // "": the default tier
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--preset") preset = v;
    else if (k == "--quant") quant_arg = v;
    else if (k == "--group-size") group_size = std::atoll(v.c_str());
    else if (k == "--tokens") T = std::atoll(v.c_str());
    else if (k == "--threads") threads_arg = v;
    else if (k == "--rounds") rounds = std::atoi(v.c_str());
    else if (k == "--forwards") forwards = std::atoi(v.c_str());
    else if (k == "--paths") paths_arg = v;
    else if (k == "--spin") spins_arg = v;
    else if (k == "--prewake") prewake_arg = v;
    else if (k == "--prefetch") prefetch_arg = v;
    else if (k == "--numerics") numerics_arg = v;
    else if (k == "--wake") wake = v == "1";
    else if (k == "--probe-detail") probe_detail = v == "1";
    else if (k == "--stages") stages = v == "1";
    else if (k == "--hot") hot = v == "1";
    else if (k == "--gap-us") gap_us = std::atoi(v.c_str());
    else if (k == "--topk") topk_arg = v;
    else if (k == "--seed") seed = std::strtoull(v.c_str(), nullptr, 10);
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (wake) {
    for (int gap : {20, 200, 2000})
      for (int spin : {0, 200}) {
        int alone = 0;
        const double us = wake_latency_us(2, spin, gap, 200, alone);
        std::printf("wake: gap %4d us, spin %3d us: the worker starts %.1f us after the caller (median of the loops "
                    "both ran; %d of 200 ran on one thread alone)\n", gap, spin, us, alone);
      }
    return 0;
  }
  MoeConfig base = load_preset(preset);
  if (group_size > 0) base.quant_group_size = group_size;
  const std::vector<std::string> quants = split(quant_arg);
  auto quant_mode = [](const std::string& q) {
    return q == "none" || q == "fp8" ? QuantMode::none  // fp8: with_random_fp8_weights, on bf16 activations
           : q == "w8a8"             ? QuantMode::w8a8
           : q == "w8a8c8"           ? QuantMode::w8a8c8
           : q == "w4a16"            ? QuantMode::w4a16
           : q == "w4a8"             ? QuantMode::w4a8
                                     : throw std::runtime_error("unknown --quant " + q);
  };
  std::vector<int> thread_counts;
  for (const std::string& s : split(threads_arg)) thread_counts.push_back(std::atoi(s.c_str()));
  const std::vector<std::string> paths = split(paths_arg);

  std::vector<std::optional<Numerics>> tiers;
  if (numerics_arg.empty()) tiers.push_back(std::nullopt);
  for (const std::string& t : split(numerics_arg)) tiers.push_back(parse_numerics(t, "--numerics"));

  std::vector<int64_t> topks;
  for (const std::string& s : split(topk_arg)) topks.push_back(std::atoll(s.c_str()));
  if (topks.empty()) topks.push_back(base.num_experts_per_tok);

  std::vector<Layer> layers;
  for (int n : thread_counts)
    for (const std::string& p : paths)
      for (int64_t topk : topks)
        for (const std::optional<Numerics>& tier : tiers)
          for (const std::string& q : quants) {
            MoeConfig c = base;
            c.quant_mode = quant_mode(q);
            c.enable_superkernel = p == "superkernel";
            c.num_experts_per_tok = topk;
            LayerOptions o;
            o.threads = n;
            o.numerics = tier;
            std::string label = tiers.size() > 1 ? p + "/" + std::string(numerics_name(*tier)) : p;
            if (topks.size() > 1) label += "/k" + std::to_string(topk);
            if (quants.size() > 1) label += "/" + q;
            layers.push_back(Layer{label, n, q == "fp8" ? MoeLayer::with_random_fp8_weights(c, seed, o)
                                                        : MoeLayer::with_random_weights(c, seed, o)});
          }

  const probe::ReadBuffer buf(size_t(256) << 20, *std::max_element(thread_counts.begin(), thread_counts.end()));
  if (probe_detail)
    for (int n : thread_counts)
      for (const probe::ReadProbe& rp : probe::measure_read(buf, n, 3).probes)
        std::printf("probe: %d threads, %-8s %s x%d: %.1f GB/s\n", n, rp.placement.c_str(), rp.loop, rp.streams,
                    rp.bytes_per_s / 1e9);
  std::printf("%s quant %s (group size %lld), T %lld, %d forwards per path per round (median)\n", preset.c_str(),
              quant_arg.c_str(), static_cast<long long>(base.quant_group_size), static_cast<long long>(T), forwards);
  struct Spin {
    int micros;
    bool prewake;
  };
  std::vector<Spin> spins;
  for (const std::string& w : split(prewake_arg))
    for (const std::string& v : split(spins_arg)) spins.push_back(Spin{std::atoi(v.c_str()), w == "1"});
  std::vector<PrefetchSettings> prefetches;  // ';'-separated: each setting holds commas
  for (std::string rest = prefetch_arg;;) {
    const size_t semi = rest.find(';');
    prefetches.push_back(parse_prefetch(rest.substr(0, semi), prefetch_settings(), "--prefetch"));
    if (semi == std::string::npos) break;
    rest = rest.substr(semi + 1);
  }
  // Every forward of a round its own tokens, variants included: two prefetch or spin variants of one path run the
  // same layer, and on the same tokens the second would find the experts the first just read still in L3.
  const size_t max_variants =
      paths.size() * topks.size() * tiers.size() * quants.size() * spins.size() * prefetches.size();
  std::vector<Tensor> x;
  for (size_t i = 0; i < size_t(forwards) * max_variants + 1; ++i)
    x.push_back(random_tokens(T, base.hidden_size, seed * 7919 + uint64_t(i), base.dtype));
  const Tensor y = Tensor::empty(base.dtype, {T, base.hidden_size});
  for (Layer& l : layers) l.layer.forward_out(x.back(), false, y);  // warm-up: plans the workspaces

  // The pool's spin before sleeping (-1: leave the default).
  auto set_spin = [](Spin spin) {
    PoolLease lease(2);
    if (!lease.pool()) return;
    lease.pool()->set_prewake(spin.prewake);
    if (spin.micros >= 0) lease.pool()->set_spin_micros(spin.micros);
  };
  std::printf("round threads probe_GB/s  path         spin     ms  min_ms     GB/s of_probe  cpus preempt  path_seen  "
              "prefetch\n");
  for (int r = 0; r < rounds; ++r)
    for (int n : thread_counts) {
      const double probe = probe::measure_read_bandwidth(buf, n, 3, probe::widest_read_loop(), 4) / 1e9;
      std::vector<Layer*> at;
      for (Layer& l : layers)
        if (l.threads == n) at.push_back(&l);
      const size_t S = at.size() * spins.size();
      const size_t V = S * prefetches.size();  // variants: (prefetch, spin, path), forward by forward
      std::vector<std::vector<double>> ms(V), bytes(V), cpus(V);
      // Stage medians (us): router, gating, routing, experts, shared, combine, outside them.
      std::vector<std::vector<std::vector<double>>> stage(V, std::vector<std::vector<double>>(7));
      std::vector<long> preempted(V, 0);
      for (int i = 0; i < forwards; ++i)
        for (size_t v = 0; v < V; ++v) {
          Layer& l = *at[v % at.size()];
          set_spin(spins[v % S / at.size()]);
          set_prefetch_settings(prefetches[v / S]);
          if (gap_us > 0) {
            const auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(gap_us);
            while (std::chrono::steady_clock::now() < end) {
            }
          }
          double c0, c1;
          long p0, p1;
          process_usage(c0, p0);
          const auto t0 = std::chrono::steady_clock::now();
          l.layer.forward_out(x[hot ? v : size_t(i) * V + v], false, y);
          const auto t1 = std::chrono::steady_clock::now();
          process_usage(c1, p1);
          ms[v].push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
          cpus[v].push_back((c1 - c0) * 1e3);  // ms of CPU time
          preempted[v] += p1 - p0;
          const LayerTimings& lt = l.layer.last_timings();
          bytes[v].push_back(double(lt.weight_bytes));
          const double parts[6] = {lt.router, lt.gating, lt.routing, lt.experts, lt.shared, lt.combine};
          double sum = 0;
          for (int s = 0; s < 6; ++s) {
            stage[v][size_t(s)].push_back(parts[s] * 1e3);
            sum += parts[s];
          }
          stage[v][6].push_back((ms[v].back() - sum) * 1e3);
        }
      for (size_t v = 0; v < V; ++v) {
        const Layer& l = *at[v % at.size()];
        const double m = median(ms[v]), gbps = median(bytes[v]) / (m * 1e6);
        const Spin spin = spins[v % S / at.size()];
        const std::string spin_text = std::to_string(spin.micros) + (spin.prewake ? "w" : "");
        std::printf("%5d %7d %10.1f  %-11s %5s %6.3f %7.3f %8.1f %8.2f %5.2f %6.1f  %s  %s\n", r, n, probe,
                    l.path.c_str(), spin_text.c_str(), m, *std::min_element(ms[v].begin(), ms[v].end()), gbps,
                    gbps / probe, sum(cpus[v]) / sum(ms[v]), double(preempted[v]) / forwards, l.layer.path().c_str(),
                    prefetch_text(prefetches[v / S]).c_str());
        if (stages)
          std::printf("      stages us: router %.1f gating %.1f routing %.1f experts %.1f shared %.1f combine %.1f "
                      "outside %.1f\n", median(stage[v][0]), median(stage[v][1]), median(stage[v][2]),
                      median(stage[v][3]), median(stage[v][4]), median(stage[v][5]), median(stage[v][6]));
      }
    }
  return 0;
}
