// Where the probes' threads run: the CPUs this process may use (its affinity mask), with the physical core and the
// last-level-cache domain of each (sysfs), and the pinned placements of n threads worth measuring on them.
#pragma once

#include <string>
#include <vector>

#include "moefuse/machine.h"

namespace moefuse::probe {

/// n CPUs filling one LLC domain before the next (domains in order of their first CPU), one CPU per core before
/// any SMT sibling; fewer when there are fewer CPUs.
std::vector<int> compact_cpus(const std::vector<CpuSlot>& cpus, int n);

/// n CPUs taken round-robin over the LLC domains, one CPU per core before any SMT sibling.
std::vector<int> spread_cpus(const std::vector<CpuSlot>& cpus, int n);

struct Placement {
  std::string name;  // "compact" or "spread"
  std::vector<int> cpus;
};

/// The pinned placements of n threads worth measuring: compact, then spread when it picks another set of CPUs;
/// none when n exceeds the CPUs (threads would share CPUs: pinning would only measure that).
std::vector<Placement> placements(const std::vector<CpuSlot>& cpus, int n);

/// Pins the calling thread to `cpu`; false when the OS refuses.
bool pin_current_thread(int cpu);

}  // namespace moefuse::probe
