#include "base/cpu_placement.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <string>

namespace moefuse::probe {
namespace {

int read_int(const std::string& path, int fallback) {
  std::ifstream in(path);
  int v = 0;
  return in >> v ? v : fallback;
}

// The first CPU of a sysfs CPU list ("0-3,8-11" -> 0); `fallback` when unreadable.
int first_cpu_of_list(const std::string& path, int fallback) {
  std::ifstream in(path);
  std::string list;
  if (!(in >> list)) return fallback;
  try {
    return std::stoi(list);
  } catch (...) {
    return fallback;
  }
}

// Per LLC domain (in order of its first CPU), its CPUs: one per core first (cores in CPU order), then the cores'
// second SMT threads, and so on.
std::vector<std::vector<int>> domains(const std::vector<CpuSlot>& cpus) {
  std::vector<int> order;  // domain ids by first appearance
  std::map<int, std::vector<CpuSlot>> by_domain;
  for (const CpuSlot& s : cpus) {
    if (!by_domain.count(s.llc)) order.push_back(s.llc);
    by_domain[s.llc].push_back(s);
  }
  std::vector<std::vector<int>> out;
  for (int d : order) {
    std::vector<int> list;
    std::map<int, int> seen;  // core -> CPUs of it placed so far
    std::vector<std::pair<int, int>> ranked;  // (rank within its core, CPU)
    for (const CpuSlot& s : by_domain[d]) ranked.push_back({seen[s.core]++, s.cpu});
    std::stable_sort(ranked.begin(), ranked.end(), [](auto a, auto b) { return a.first < b.first; });
    for (auto [rank, cpu] : ranked) list.push_back(cpu);
    out.push_back(list);
  }
  return out;
}

}  // namespace

std::vector<CpuSlot> allowed_cpus() {
  std::vector<CpuSlot> out;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return out;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &set)) continue;
    const std::string dir = "/sys/devices/system/cpu/cpu" + std::to_string(cpu);
    const int package = read_int(dir + "/topology/physical_package_id", 0);
    const int core_id = read_int(dir + "/topology/core_id", -1);
    CpuSlot s;
    s.cpu = cpu;
    s.core = core_id < 0 ? -1 - cpu : package * 65536 + core_id;
    s.llc = 0;
    for (int index = 0; index < 8; ++index) {
      const std::string cache = dir + "/cache/index" + std::to_string(index);
      if (read_int(cache + "/level", 0) == 3) s.llc = first_cpu_of_list(cache + "/shared_cpu_list", 0);
    }
    out.push_back(s);
  }
  return out;
}

std::vector<int> compact_cpus(const std::vector<CpuSlot>& cpus, int n) {
  std::vector<int> out;
  for (const std::vector<int>& d : domains(cpus))
    for (int cpu : d)
      if (int(out.size()) < n) out.push_back(cpu);
  return out;
}

std::vector<int> spread_cpus(const std::vector<CpuSlot>& cpus, int n) {
  const std::vector<std::vector<int>> ds = domains(cpus);
  std::vector<int> out;
  for (size_t i = 0; int(out.size()) < n; ++i) {
    bool any = false;
    for (const std::vector<int>& d : ds)
      if (i < d.size() && int(out.size()) < n) {
        out.push_back(d[i]);
        any = true;
      }
    if (!any) break;
  }
  return out;
}

std::vector<Placement> placements(const std::vector<CpuSlot>& cpus, int n) {
  if (n < 1 || n > int(cpus.size())) return {};
  std::vector<Placement> out{{"compact", compact_cpus(cpus, n)}};
  Placement spread{"spread", spread_cpus(cpus, n)};
  if (std::set<int>(spread.cpus.begin(), spread.cpus.end()) !=
      std::set<int>(out[0].cpus.begin(), out[0].cpus.end()))
    out.push_back(spread);
  return out;
}

bool pin_current_thread(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}

}  // namespace moefuse::probe
