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

#include "moefuse/cpu.h"

namespace moefuse::probe {
namespace {

// Runs fn(i) on `threads` threads (i = 0..threads-1), all released together once every one has started.
template <class Fn>
void run_together(int threads, Fn&& fn) {
  std::atomic<int> ready{0};
  auto body = [&](int i) {
    ready.fetch_add(1);
    while (ready.load() < threads) std::this_thread::yield();
    fn(i);
  };
  std::vector<std::thread> pool;
  pool.reserve(size_t(threads - 1));
  for (int i = 1; i < threads; ++i) pool.emplace_back(body, i);
  body(0);
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

}  // namespace

const PeakLoop* fp32_peak_loop() {
  const Isa isa = active_isa();
  if (isa == Isa::avx512) return &kFmaZmm;
  if (isa == Isa::avx2) return &kFmaYmm;
  return nullptr;
}

const PeakLoop* int8_peak_loop() { return use_avx512_vnni() ? &kDpbusdZmm : nullptr; }

double thread_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

double measure_peak(const PeakLoop& loop, int threads, int64_t iters, int reps) {
  std::vector<double> best(size_t(threads), 0.0);
  run_together(threads, [&](int i) {
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
  run_together(threads, [&](int i) {
    const auto [begin, end] = slice(size_, i, threads);
    std::fill(p + begin, p + end, uint8_t(1));
  });
}

uint64_t stream_sum(const uint8_t* p, size_t bytes) {
  if (active_isa() >= Isa::avx2) return detail::stream_sum_avx2(p, bytes);
  uint64_t s[4] = {0, 0, 0, 0};
  for (size_t i = 0; i < bytes; i += 32)
    for (size_t j = 0; j < 4; ++j) {
      uint64_t v;
      __builtin_memcpy(&v, p + i + 8 * j, 8);
      s[j] += v;
    }
  return s[0] + s[1] + s[2] + s[3];
}

double measure_read_bandwidth(const ReadBuffer& buf, int threads, int passes) {
  using Clock = std::chrono::steady_clock;
  double best = 0;
  const size_t n = size_t(threads);
  std::vector<Clock::time_point> start(n), end(n);
  std::vector<uint64_t> sums(n);
  for (int pass = 0; pass < passes; ++pass) {
    run_together(threads, [&](int i) {
      const auto [begin, stop] = slice(buf.size(), i, threads);
      start[size_t(i)] = Clock::now();
      sums[size_t(i)] = stream_sum(buf.data() + begin, stop - begin);
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

MachineLimits measure_machine(int threads, size_t read_buffer_bytes) {
  MachineLimits m;
  m.threads = std::max(1, threads);
  m.llc_bytes = llc_bytes();
  m.cpu = cpu_model();
  {
    const ReadBuffer buf(read_buffer_bytes, m.threads);
    m.read_buffer_bytes = int64_t(buf.size());
    m.read_bytes_per_s = measure_read_bandwidth(buf, m.threads, 4);
  }
  // About 50 ms of instructions per repetition at a few GHz.
  if (const PeakLoop* f = fp32_peak_loop()) {
    m.fp32_loop = f->name;
    m.fp32_flops = measure_peak(*f, m.threads, 8'000'000, 3);
  }
  if (const PeakLoop* q = int8_peak_loop()) {
    m.int8_loop = q->name;
    m.int8_ops = measure_peak(*q, m.threads, 8'000'000, 3);
  }
  return m;
}

}  // namespace moefuse::probe
