#include "bench_plan.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "moefuse/layer.h"

namespace moefuse::cli {

int64_t copy_bytes(const MoeConfig& c, int64_t max_tokens, int threads) {
  const int64_t m = std::min(max_tokens, c.moe_chunk_max_len);
  const int64_t t = std::max(1, threads);
  return layer_weight_bytes(c) + layer_workspace_bytes(c, m) + (t - 1) * layer_workspace_bytes(c, (m + t - 1) / t);
}

int64_t build_bytes(const MoeConfig& c) {
  const bool quant = c.quant_mode != QuantMode::none;
  const int64_t n = (2 * c.moe_intermediate_size + 31) / 32 * 32, k = quant ? (c.hidden_size + 3) / 4 * 4 : c.hidden_size;
  return c.num_experts * (n * k * (quant ? 1 : int64_t(dtype_size(c.dtype))) + (quant ? n * 4 : 0));
}

std::vector<CopyGroup> group_paths(const std::vector<std::string>& paths, const std::vector<int64_t>& costs,
                                   const std::vector<int64_t>& builds, int64_t budget,
                                   std::vector<std::string>& skipped) {
  std::vector<CopyGroup> groups;
  int64_t used = 0;
  for (size_t i = 0; i < paths.size(); ++i) {
    if (costs[i] + builds[i] > budget) {
      skipped.push_back(paths[i]);
      continue;
    }
    if (groups.empty() || used + costs[i] + std::max(groups.back().build_bytes, builds[i]) > budget) {
      groups.emplace_back();
      used = 0;
    }
    CopyGroup& g = groups.back();
    g.paths.push_back(paths[i]);
    g.copy_bytes.push_back(costs[i]);
    g.build_bytes = std::max(g.build_bytes, builds[i]);
    used += costs[i];
  }
  return groups;
}

void plan_copies(CopyGroup& g, int64_t llc_bytes, int64_t budget) {
  int64_t step = 0, cost = 0;
  for (int64_t s : g.step_bytes) step += s;
  for (int64_t c : g.copy_bytes) cost += c;
  const int64_t cold = 4 * llc_bytes;
  g.wanted = step > 0 && step < cold ? (cold + step - 1) / step : 1;
  const int64_t fit = cost > 0 ? std::max<int64_t>(1, (budget - g.build_bytes) / cost) : kMaxCopies;
  g.copies = std::min({g.wanted, kMaxCopies, fit});
  settle_copies(g, g.copies, fit < std::min(g.wanted, kMaxCopies) ? "memory" : "max_copies", llc_bytes);
}

void settle_copies(CopyGroup& g, int64_t copies, const std::string& limit, int64_t llc_bytes) {
  int64_t step = 0;
  for (int64_t s : g.step_bytes) step += s;
  g.copies = copies;
  g.limit = g.copies >= g.wanted ? "" : limit;
  // Between two forwards on one copy, every copy of every path of the group is read once: with an LRU-like cache,
  // about LLC / (those bytes) of the copy's weights can still be there.
  const double between = double(g.copies) * double(step);
  g.warm = g.copies >= g.wanted || between <= 0 ? 0.0 : std::min(1.0, double(llc_bytes) / between);
}

std::string bytes_text(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[64];
  if (u == 0) std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(bytes));
  else std::snprintf(buf, sizeof buf, "%.2f %s", v, units[u]);
  return buf;
}

std::string copies_note(const std::string& what, const CopyGroup& g, int64_t llc_bytes) {
  if (g.copies >= g.wanted) return "";
  std::string paths;
  for (const std::string& p : g.paths) paths += (paths.empty() ? "" : " + ") + p;
  int64_t step = 0;
  for (int64_t s : g.step_bytes) step += s;
  const int64_t between = g.copies * step;
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "%s, %s: %lld of %lld layer copies each (%s): a copy is read again after %s (%.2f x the "
                "LLC of %s), so up to %.0f%% of a step's weights may come from the cache (warm), not memory",
                what.c_str(), paths.c_str(), static_cast<long long>(g.copies), static_cast<long long>(g.wanted),
                g.limit == "memory" ? "limited by memory" : "at most 32", bytes_text(between).c_str(), double(between) / double(llc_bytes),
                bytes_text(llc_bytes).c_str(), 100.0 * g.warm);
  return buf;
}

}  // namespace moefuse::cli
