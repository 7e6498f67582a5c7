#include "base/machine_probe.h"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <new>
#include <thread>
#include <vector>

#include "base/cpu_placement.h"
#include "base/machine_probe_stream.h"
#include "moefuse/cpu.h"

namespace moefuse::probe {
namespace {

// Runs fn(i) on `threads` new threads (i = 0..threads-1), thread i pinned to cpus[i] when `cpus` is given, all
// released together once every one has started. The caller only waits (its own placement is left alone).
template <class Fn>
void run_together(int threads, const std::vector<int>& cpus, Fn&& fn) {
  std::atomic<int> ready{0};
  auto body = [&](int i) {
    if (size_t(i) < cpus.size()) pin_current_thread(cpus[size_t(i)]);
    ready.fetch_add(1);
    while (ready.load() < threads) std::this_thread::yield();
    fn(i);
  };
  std::vector<std::thread> pool;
  pool.reserve(size_t(threads));
  for (int i = 0; i < threads; ++i) pool.emplace_back(body, i);
  for (std::thread& t : pool) t.join();
}

// The slice [begin, end) of `bytes` (a multiple of 128) that thread i of n reads, in whole 128-byte blocks.
std::pair<size_t, size_t> slice(size_t bytes, int i, int n) {
  const size_t blocks = bytes / 128;
  return {blocks * size_t(i) / size_t(n) * 128, blocks * size_t(i + 1) / size_t(n) * 128};
}

// A size in a sysfs cache "size" file: "32768K", "1M", "512" (bytes); 0 when unreadable.
int64_t parse_cache_size(const std::string& text) {
  size_t used = 0;
  int64_t v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (...) {
    return 0;
  }
  const char unit = used < text.size() ? text[used] : ' ';
  if (unit == 'K') return v << 10;
  if (unit == 'M') return v << 20;
  if (unit == 'G') return v << 30;
  return v;
}

struct Scalar {
  using type = uint64_t;
  static constexpr int kBytes = 8;
  static type zero() { return 0; }
  static type load(const uint8_t* p) {
    uint64_t v;
    __builtin_memcpy(&v, p, 8);
    return v;
  }
  static type add(type a, type b) { return a + b; }
  static uint64_t reduce(type v) { return v; }
};

uint64_t stream_sum_scalar(const uint8_t* p, size_t bytes, int streams) {
  return detail::stream_sum_streams<Scalar>(p, bytes, streams);
}
}  // namespace

const ReadLoop kReadScalar{"scalar", 8, stream_sum_scalar};

const ReadLoop& widest_read_loop() {
  const Isa isa = active_isa();
  if (isa >= Isa::avx512) return kReadZmm;
  if (isa == Isa::avx2) return kReadYmm;
  return kReadScalar;
}

uint64_t stream_sum(const uint8_t* p, size_t bytes) { return widest_read_loop().sum(p, bytes, 4); }

double thread_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

double measure_peak(const PeakLoop& loop, int threads, int64_t iters, int reps) {
  std::vector<double> best(size_t(threads), 0.0);
  run_together(threads, {}, [&](int i) {
    for (int rep = 0; rep < reps; ++rep) {
      const double t0 = thread_seconds();
      loop.run(iters);
      const double s = thread_seconds() - t0;
      if (s > 0) best[size_t(i)] = std::max(best[size_t(i)], double(iters) * loop.ops_per_iter / s);
    }
  });
  double sum = 0;
  for (double b : best) sum += b;
  return sum;
}

void ReadBuffer::Free::operator()(uint8_t* p) const { std::free(p); }

ReadBuffer::ReadBuffer(size_t bytes, int threads) : size_((bytes + 127) / 128 * 128) {
  constexpr size_t kHugePage = size_t(2) << 20;
  void* mem = nullptr;
  if (posix_memalign(&mem, kHugePage, std::max<size_t>(size_, 128)) != 0) throw std::bad_alloc();
  data_.reset(static_cast<uint8_t*>(mem));
  madvise(mem, size_, MADV_HUGEPAGE);  // a request: without transparent huge pages it is ignored
  uint8_t* p = data_.get();
  run_together(threads, {}, [&](int i) {
    const auto [begin, end] = slice(size_, i, threads);
    std::fill(p + begin, p + end, uint8_t(1));
  });
}

double measure_read_bandwidth(const ReadBuffer& buf, int threads, int passes, const ReadLoop& loop, int streams,
                              const std::vector<int>& cpus) {
  using Clock = std::chrono::steady_clock;
  double best = 0;
  const size_t n = size_t(threads);
  std::vector<Clock::time_point> start(n), end(n);
  std::vector<uint64_t> sums(n);
  for (int pass = 0; pass < passes; ++pass) {
    run_together(threads, cpus, [&](int i) {
      const auto [begin, stop] = slice(buf.size(), i, threads);
      start[size_t(i)] = Clock::now();
      sums[size_t(i)] = loop.sum(buf.data() + begin, stop - begin, streams);
      end[size_t(i)] = Clock::now();
    });
    const double s =
        std::chrono::duration<double>(*std::max_element(end.begin(), end.end()) -
                                      *std::min_element(start.begin(), start.end()))
            .count();
    // Every byte is 1: a wrong sum would mean a pass that did not read everything.
    uint64_t total = 0;
    for (uint64_t v : sums) total += v;
    if (s > 0 && total == buf.size() / 8 * 0x0101010101010101ull) best = std::max(best, double(buf.size()) / s);
  }
  return best;
}

double measure_read_bandwidth(const ReadBuffer& buf, int threads, int passes) {
  return measure_read_bandwidth(buf, threads, passes, widest_read_loop(), 4);
}

ReadBandwidth measure_read(const ReadBuffer& buf, int threads, int passes) {
  ReadBandwidth r;
  const ReadLoop& loop = widest_read_loop();
  std::vector<Placement> where{{"os", {}}};
  for (const Placement& p : placements(allowed_cpus(), threads)) where.push_back(p);
  for (const Placement& p : where)
    for (int streams : {1, 2, 4, 8}) {
      ReadProbe probe{p.name, p.cpus, loop.name, streams,
                      measure_read_bandwidth(buf, threads, passes, loop, streams, p.cpus)};
      r.best = std::max(r.best, probe.bytes_per_s);
      r.probes.push_back(probe);
    }
  r.plain = measure_read_bandwidth(buf, threads, passes, kReadScalar, 1);
  return r;
}

int64_t llc_bytes() {
  namespace fs = std::filesystem;
  int best_level = 0;
  int64_t best = 0;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator("/sys/devices/system/cpu/cpu0/cache", ec)) {
    if (e.path().filename().string().rfind("index", 0) != 0) continue;
    std::ifstream level_file(e.path() / "level"), size_file(e.path() / "size");
    int level = 0;
    std::string size;
    if (!(level_file >> level) || !(size_file >> size)) continue;
    const int64_t bytes = parse_cache_size(size);
    if (bytes > 0 && (level > best_level || (level == best_level && bytes > best))) {
      best_level = level;
      best = bytes;
    }
  }
  return best > 0 ? best : int64_t(32) << 20;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(colon + 1);
    name.erase(0, name.find_first_not_of(" \t"));
    if (!name.empty()) return name;
  }
  return cpu_features().brand.empty() ? "unknown" : cpu_features().brand;
}

CpuSignature cpu_signature() {
  const CpuFeatures& f = cpu_features();
  return {f.family, f.model, f.stepping};
}

std::vector<std::string> isa_set() {
  const CpuFeatures& f = cpu_features();
  const bool avx = f.os_avx, z = f.os_avx512, amx = f.os_amx;
  const std::pair<const char*, bool> all[] = {
      {"avx2", avx && f.avx2},          {"fma", avx && f.fma},
      {"f16c", avx && f.f16c},          {"avx512f", z && f.avx512f},
      {"avx512bw", z && f.avx512bw},    {"avx512vl", z && f.avx512vl},
      {"avx512dq", z && f.avx512dq},    {"avx512_vnni", z && f.avx512_vnni},
      {"avx512_bf16", z && f.avx512_bf16}, {"avx_vnni", avx && f.avx_vnni},
      {"amx_tile", amx && f.amx_tile},  {"amx_int8", amx && f.amx_int8},
      {"amx_bf16", amx && f.amx_bf16}};
  std::vector<std::string> out;
  for (const auto& [name, on] : all)
    if (on) out.push_back(name);
  return out;
}

int64_t total_memory_bytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key, unit;
  int64_t kib = 0;
  while (meminfo >> key >> kib >> unit)
    if (key == "MemTotal:") return kib * 1024;
  return 0;
}

double ProbeRound::peak(const PeakFamily* family) const {
  for (const FamilyPeak& p : peaks)
    if (family && p.family == family) return p.ops_per_s;
  return 0;
}

ProbeRound probe_round(const ReadBuffer& buf, int threads) {
  ProbeRound r;
  r.read = measure_read(buf, threads, 4);
  for (const PeakFamily& f : peak_families()) {
    FamilyPeak p{&f, 0};
    if (f.loop && f.present()) p.ops_per_s = measure_peak(*f.loop, threads, f.loop->probe_iters, 3);
    r.peaks.push_back(p);
  }
  return r;
}

}  // namespace moefuse::probe
