// The MPI side of the expert-parallel tests: rank and size of MPI_COMM_WORLD, and a temporary folder every rank
// shares (made by rank 0, its name broadcast).
#pragma once

#include <mpi.h>

#include <string>

namespace moefuse::testing {

int mpi_rank();
int mpi_size();
/// A new folder under the system's temporary folder, the same path on every rank (collective).
std::string shared_temp_dir(const std::string& stem);

}  // namespace moefuse::testing
