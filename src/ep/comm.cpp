#include "ep/comm.h"

#include <chrono>
#include <thread>

#include "moefuse/error.h"

namespace moefuse::ep {
namespace {

std::string mpi_error(int rc) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(rc);
  return std::string(text, size_t(len));
}

// Polls `requests` until all complete or `timeout` seconds pass; returns false on timeout, MPI's code on failure.
int poll(std::vector<MPI_Request>& requests, double timeout, bool& timed_out) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
  timed_out = false;
  for (int spins = 0;; ++spins) {
    int done = 0;
    const int rc = MPI_Testall(int(requests.size()), requests.data(), &done, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS || done) return rc;
    if (std::chrono::steady_clock::now() > deadline) {
      timed_out = true;
      return MPI_SUCCESS;
    }
    // Spin briefly (an exchange on one machine completes in microseconds), then give the core away.
    if (spins > 1000) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

}  // namespace

Comm::Comm(MPI_Comm comm, double timeout_seconds) : timeout_(timeout_seconds) {
  if (!(timeout_seconds > 0))
    throw ValueError("ExpertParallelLayer: timeout_seconds: expected > 0, got " + std::to_string(timeout_seconds));
  int initialised = 0, finalised = 0;
  MPI_Initialized(&initialised);
  MPI_Finalized(&finalised);
  if (!initialised || finalised)
    throw ValueError("ExpertParallelLayer: comm: expected MPI to be initialised (MPI_Init_thread) and not finalised, "
                     "got " + std::string(finalised ? "finalised" : "not initialised"));
  if (comm == MPI_COMM_NULL) throw ValueError("ExpertParallelLayer: comm: expected a communicator, got MPI_COMM_NULL");
  MPI_Request request;
  check(MPI_Comm_idup(comm, &comm_, &request), "duplicating the communicator");
  std::vector<MPI_Request> requests{request};
  try {
    wait(requests, "duplicating the communicator");
  } catch (...) {
    comm_ = MPI_COMM_NULL;  // never completed: nothing to free
    throw;
  }
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
}

Comm::~Comm() {
  int finalised = 0;
  MPI_Finalized(&finalised);
  if (comm_ != MPI_COMM_NULL && !finalised) MPI_Comm_free(&comm_);
}

Comm::Comm(Comm&& o) noexcept : comm_(o.comm_), rank_(o.rank_), size_(o.size_), timeout_(o.timeout_) {
  o.comm_ = MPI_COMM_NULL;
}

void Comm::check(int rc, const char* what) const {
  if (rc != MPI_SUCCESS)
    throw IoError("ExpertParallelLayer: " + std::string(what) + ": expected the exchange to succeed on rank " +
                  std::to_string(rank_) + ", got " + mpi_error(rc));
}

void Comm::wait(std::vector<MPI_Request>& requests, const char* what) const {
  bool timed_out = false;
  const int rc = poll(requests, timeout_, timed_out);
  check(rc, what);
  if (timed_out)
    throw IoError("ExpertParallelLayer: " + std::string(what) + ": expected every one of the " +
                  std::to_string(size_) + " ranks to take part within " + std::to_string(timeout_) +
                  " s, got no answer on rank " + std::to_string(rank_) +
                  " (a rank exited, failed or stopped; the layer cannot be used any more)");
}

std::vector<uint64_t> Comm::allgather(const std::vector<uint64_t>& mine, const char* what) const {
  std::vector<uint64_t> all(mine.size() * size_t(size_));
  MPI_Request request;
  check(MPI_Iallgather(mine.data(), int(mine.size()), MPI_UINT64_T, all.data(), int(mine.size()), MPI_UINT64_T,
                       comm_, &request),
        what);
  std::vector<MPI_Request> requests{request};
  wait(requests, what);
  return all;
}

int64_t Comm::allreduce_max(int64_t v, const char* what) const {
  int64_t out = 0;
  MPI_Request request;
  check(MPI_Iallreduce(&v, &out, 1, MPI_INT64_T, MPI_MAX, comm_, &request), what);
  std::vector<MPI_Request> requests{request};
  wait(requests, what);
  return out;
}

}  // namespace moefuse::ep
