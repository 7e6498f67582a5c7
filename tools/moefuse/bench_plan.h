// The memory plan of `moefuse bench`, made before anything large is allocated: what one layer copy of each path
// costs (weights and the workspaces its forwards will keep), which paths' copies are timed side by side, how many
// copies each gets so that a pass over them reads 4x the last-level cache, within the memory budget, and how warm
// the weights will be when memory (or the cap on copies) stops short of that.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "moefuse/config.h"

namespace moefuse::cli {

/// Layer copies rotated at most (a tiny model would otherwise want thousands to fill 4x the LLC).
inline constexpr int64_t kMaxCopies = 32;

/// Bytes one layer copy of `c` takes once its forwards ran every token count up to `max_tokens` on `threads`
/// threads: the weights (layer_weight_bytes) and the workspaces the layer keeps (the largest chunk's on the first
/// thread, a thread's share of it on every other thread).
int64_t copy_bytes(const MoeConfig& c, int64_t max_tokens, int threads);

/// Bytes a copy of `c` takes beyond copy_bytes while it is built: its largest projection (w13) held twice, plain and
/// packed, until the plain one is released.
int64_t build_bytes(const MoeConfig& c);

/// The paths of one (model, quant) that are timed together, and their copies.
struct CopyGroup {
  std::vector<std::string> paths;
  std::vector<int64_t> copy_bytes;  // per path
  int64_t build_bytes = 0;          // the largest build_bytes of the paths: room kept for building one more copy
  std::vector<int64_t> step_bytes;  // per path: weight bytes one forward at the smallest token count reads
  int64_t wanted = 1;               // copies per path for a pass over the group to read 4x the LLC
  int64_t copies = 1;               // copies per path planned
  std::string limit;                // why copies < wanted: "memory", "max_copies" (kMaxCopies); "" when none
  double warm = 0;                  // estimated share of a step's weights the LLC may still hold (0 when cold)
};

/// Splits `paths` (with their copy and build costs) into groups timed side by side: in order, each group as many
/// paths as fit in `budget` together (one copy each, plus the room to build the largest). A path that does not fit
/// alone is left out and returned in `skipped`.
std::vector<CopyGroup> group_paths(const std::vector<std::string>& paths, const std::vector<int64_t>& costs,
                                   const std::vector<int64_t>& builds, int64_t budget,
                                   std::vector<std::string>& skipped);

/// Fills g.wanted, g.copies, g.limit and g.warm from g.step_bytes (measured on the first copies), the LLC size and
/// the budget the group's copies may take (all of it, less g.build_bytes: groups are measured one after the other).
void plan_copies(CopyGroup& g, int64_t llc_bytes, int64_t budget);

/// Sets g.copies to `copies` (fewer than planned: the machine refused more), g.limit to `limit`, and g.warm again.
void settle_copies(CopyGroup& g, int64_t copies, const std::string& limit, int64_t llc_bytes);

/// The note a limited group gets: "olmoe none, chain + superkernel: 3 of 20 layer copies each (limited by memory):
/// a copy is read again after ... so up to N% of a step's weights may come from the cache" (how warm they will be). "" when g.copies >= g.wanted.
std::string copies_note(const std::string& what, const CopyGroup& g, int64_t llc_bytes);

/// Bytes with two decimals in the largest unit that keeps them >= 1: "512 B", "1.50 MiB", "21.30 GiB".
std::string bytes_text(int64_t bytes);

}  // namespace moefuse::cli
