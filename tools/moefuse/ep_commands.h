// Expert parallelism in the command: `moefuse run --ep` and `moefuse bench --ep`, run under mpirun (docs/cli.md).
// In a build without MPI both are an error that says so.
#pragma once

#include <string>
#include <vector>

#include "common.h"

namespace moefuse::cli {

/// `moefuse run --ep [--placement FILE]`: the layer split across the ranks of MPI_COMM_WORLD; the tokens of the
/// single-process run (--tokens / --input) cut into one contiguous share per rank, so the checksum is the single-
/// process run's. Rank 0 prints.
int run_ep(const LayerArgs& a, const std::string& placement);

/// `moefuse bench --ep`: per token count (per rank), the median time of each EP stage and the bytes each rank
/// moved per forward, every rank's row printed by rank 0; `json` (a path, or empty) gets them as JSON.
struct EpBenchArgs {
  ConfigArgs config;
  std::vector<int64_t> tokens;
  int threads = 0;
  int iters = 5;
  int warmup = 1;
  uint64_t seed = 0;
  std::string placement, json;
  std::string numerics;  // --numerics ("" = the config's key, else the default)
};
int bench_ep(const EpBenchArgs& a);

}  // namespace moefuse::cli
