// main() of the expert-parallel tests: MPI around GoogleTest. Every rank runs every test in the same order (the
// tests are collective); the exit status is nonzero when a test failed on any rank. Only rank 0 prints GoogleTest's
// progress unless MOEFUSE_EP_TEST_VERBOSE is set; failures print on the rank where they happen.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "ep/mpi_test_env.h"

namespace moefuse::testing {

int mpi_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

int mpi_size() {
  int s = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

std::string shared_temp_dir(const std::string& stem) {
  std::vector<char> name(4096, '\0');
  if (mpi_rank() == 0) {
    std::string t = (std::filesystem::temp_directory_path() / ("moefuse_" + stem + "_XXXXXX")).string();
    if (!mkdtemp(t.data())) t.clear();
    std::copy(t.begin(), t.end(), name.begin());
  }
  MPI_Bcast(name.data(), int(name.size()), MPI_CHAR, 0, MPI_COMM_WORLD);
  return std::string(name.data());
}

// On ranks other than 0: only failures, tagged with the rank.
class FailurePrinter : public ::testing::EmptyTestEventListener {
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (r.failed())
      std::fprintf(stderr, "[rank %d] %s:%d: failure\n%s\n", mpi_rank(), r.file_name() ? r.file_name() : "?",
                   r.line_number(), r.summary());
  }
};

}  // namespace moefuse::testing

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  ::testing::InitGoogleTest(&argc, argv);
  if (moefuse::testing::mpi_rank() != 0 && !std::getenv("MOEFUSE_EP_TEST_VERBOSE")) {
    ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new moefuse::testing::FailurePrinter);
  }
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0, any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return any;
}
