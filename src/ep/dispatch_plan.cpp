#include "ep/dispatch_plan.h"

namespace moefuse::ep {

SendPlan plan_send(const ExpertPlacement& placement, int home, int ranks, const std::vector<int64_t>& counts) {
  const int64_t E = int64_t(counts.size());
  SendPlan p;
  p.count.assign(size_t(ranks) * size_t(E), 0);
  p.rows.assign(size_t(ranks), 0);
  p.displ.assign(size_t(ranks), 0);
  // first[d * E + e]: the first expanded row of expert e's part for rank d.
  std::vector<int64_t> first(size_t(ranks) * size_t(E), 0);
  int64_t row = 0;
  for (int64_t e = 0; e < E; ++e) {
    const std::vector<int>& replicas = placement.ranks[size_t(e)];
    const int64_t n = counts[size_t(e)], m = int64_t(replicas.size());
    int64_t begin = row;
    for (int64_t j = 0; j < m; ++j) {  // part j: n / m rows, one more for the first n % m parts
      const int64_t len = n / m + (j < n % m ? 1 : 0);
      const int d = replicas[size_t((j + home) % m)];
      p.count[size_t(d) * size_t(E) + size_t(e)] = len;
      first[size_t(d) * size_t(E) + size_t(e)] = begin;
      begin += len;
    }
    row += n;
  }
  p.row_of.resize(size_t(row));
  int64_t k = 0;
  for (int d = 0; d < ranks; ++d) {
    p.displ[size_t(d)] = int(k);
    for (int64_t e = 0; e < E; ++e) {
      const size_t at = size_t(d) * size_t(E) + size_t(e);
      for (int64_t i = 0; i < p.count[at]; ++i) p.row_of[size_t(k++)] = int32_t(first[at] + i);
    }
    p.rows[size_t(d)] = int(k - p.displ[size_t(d)]);
  }
  return p;
}

ReceivePlan plan_receive(const std::vector<int64_t>& count, const std::vector<int64_t>& local, int ranks,
                         int64_t experts) {
  ReceivePlan p;
  p.rows.assign(size_t(ranks), 0);
  p.displ.assign(size_t(ranks), 0);
  p.group_rows.assign(local.size(), 0);
  // Records from source s come by expert ascending: the first record of (s, e) is displ[s] + the rows of s's
  // earlier experts.
  std::vector<int64_t> first(size_t(ranks) * size_t(experts), 0);
  int64_t total = 0;
  for (int s = 0; s < ranks; ++s) {
    p.displ[size_t(s)] = int(total);
    for (int64_t e = 0; e < experts; ++e) {
      first[size_t(s) * size_t(experts) + size_t(e)] = total;
      total += count[size_t(s) * size_t(experts) + size_t(e)];
    }
    p.rows[size_t(s)] = int(total - p.displ[size_t(s)]);
  }
  p.record_of.reserve(size_t(total));
  for (size_t li = 0; li < local.size(); ++li)
    for (int s = 0; s < ranks; ++s) {
      const size_t at = size_t(s) * size_t(experts) + size_t(local[li]);
      for (int64_t i = 0; i < count[at]; ++i) p.record_of.push_back(int32_t(first[at] + i));
      p.group_rows[li] += count[at];
    }
  return p;
}

}  // namespace moefuse::ep
