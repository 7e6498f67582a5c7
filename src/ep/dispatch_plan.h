// Who sends which rows where (no MPI here: plain bookkeeping, tested on its own).
//
// A home rank's expanded rows (init_routing_v2's output: sorted by expert, token order within an expert) are sent
// to the ranks holding their experts: records grouped by destination rank, within a rank by expert ascending,
// within an expert in row order. A replicated expert's rows are cut into contiguous parts, one per replica
// (ExpertPlacement documents the rule). The receiving rank lays the records it got out by (its expert, source rank)
// — every expert's rows contiguous, the order its grouped matmuls read — and sends each output back in the order
// the record came, so the home rank puts it back at the row it sent.
#pragma once

#include <cstdint>
#include <vector>

#include "moefuse/ep.h"

namespace moefuse::ep {

struct SendPlan {
  std::vector<int64_t> count;   // [P * E]: rows of expert e for rank d at d * E + e
  std::vector<int> rows;        // [P]: records for each rank
  std::vector<int> displ;       // [P]: first record of each rank
  std::vector<int32_t> row_of;  // [R]: the expanded row of each record, in send order
};

/// The plan of home rank `home` (of `ranks`) for its expanded rows, `counts[e]` rows of expert e (E = counts.size()).
SendPlan plan_send(const ExpertPlacement& placement, int home, int ranks, const std::vector<int64_t>& counts);

struct ReceivePlan {
  std::vector<int> rows;            // [P]: records from each rank
  std::vector<int> displ;           // [P]: first record of each rank
  std::vector<int64_t> group_rows;  // [El]: rows of each local expert (its group in the grouped matmuls)
  std::vector<int32_t> record_of;   // [Rl]: the received record of each local row, rows by (local expert, source)
};

/// The plan of a rank holding `local` experts (ascending), given `count` [P * E]: rows of expert e from rank s at
/// s * E + e (each source's SendPlan::count for this rank).
ReceivePlan plan_receive(const std::vector<int64_t>& count, const std::vector<int64_t>& local, int ranks,
                         int64_t experts);

}  // namespace moefuse::ep
