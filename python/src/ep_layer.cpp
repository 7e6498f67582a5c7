// python/src/ep_layer.cpp — the expert-parallel layer (include/moefuse/ep.h) over an mpi4py communicator.
//
// Raw entry points, as layer.cpp: moefuse/layer.py turns `comm=` into the communicator's Fortran handle
// (comm.py2f(), which every mpi4py version has) and this file turns it back with MPI_Comm_f2c, so that the build
// needs no mpi4py headers, only the MPI moefuse_ep links. In a build without MPI the module says so
// (HAVE_MPI = False) and layer.py refuses comm= with a clear error. Making a layer and its forward passes are
// collective over the communicator and run without the GIL (the other ranks are other processes).
#include "numerics_arg.h"
#include "py_tensor.h"

#ifdef MOEFUSE_HAVE_MPI

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include "moefuse/ep.h"
#include "moefuse/io.h"
#include "moefuse/model.h"

namespace moefuse::python {

namespace {

struct PyEpLayer {
  explicit PyEpLayer(ExpertParallelLayer l) : layer(std::move(l)) {}
  ExpertParallelLayer layer;
  std::mutex forward_mutex;  // forward() mutates the layer's buffers, timings and counts
};

// The communicator of an mpi4py object's Fortran handle. Before MPI_Init there is no handle to convert: then
// MPI_COMM_WORLD, which the layer refuses with its "expected MPI to be initialised" error.
MPI_Comm comm_of(int64_t fortran_handle) {
  int initialised = 0;
  MPI_Initialized(&initialised);
  return initialised ? MPI_Comm_f2c(MPI_Fint(fortran_handle)) : MPI_COMM_WORLD;
}

// The options: placement as given (rank lists per expert; empty = contiguous) or read from a JSON file.
EpOptions ep_options(const MoeConfig& config, int threads, bool allow_non_finite,
                     const std::optional<std::string>& numerics, MPI_Comm comm,
                     const std::vector<std::vector<int>>& placement, const std::string& placement_file,
                     double timeout_seconds) {
  EpOptions o;
  o.layer.threads = threads;
  o.layer.allow_non_finite_weights = allow_non_finite;
  o.layer.numerics = numerics_argument(numerics);
  o.timeout_seconds = timeout_seconds;
  if (!placement_file.empty()) {
    int initialised = 0, size = 1;
    MPI_Initialized(&initialised);
    if (initialised && comm != MPI_COMM_NULL) MPI_Comm_size(comm, &size);
    o.placement = ExpertPlacement::from_file(placement_file, config.num_experts, size);
  } else {
    o.placement.ranks = placement;  // validated by the layer against E and the communicator's size
  }
  return o;
}

nb::dict ep_timings_dict(const EpTimings& t) {
  nb::dict d;
  d["routing"] = t.routing;
  d["dispatch"] = t.dispatch;
  d["shared"] = t.shared;
  d["experts"] = t.experts;
  d["combine"] = t.combine;
  d["total"] = t.total;
  d["tokens"] = t.tokens;
  d["rounds"] = t.rounds;
  d["rows_sent"] = t.rows_sent;
  d["rows_received"] = t.rows_received;
  d["dispatch_bytes_out"] = t.dispatch_bytes_out;
  d["dispatch_bytes_in"] = t.dispatch_bytes_in;
  d["combine_bytes_out"] = t.combine_bytes_out;
  d["combine_bytes_in"] = t.combine_bytes_in;
  return d;
}

// A getter that waits for a forward running in another thread (which holds the lock) without the GIL.
template <class F>
auto locked(PyEpLayer& self, F&& f) {
  nb::gil_scoped_release release;
  std::lock_guard<std::mutex> lock(self.forward_mutex);
  return f(self.layer);
}

}  // namespace

void bind_ep_layer(nb::module_& m) {
  using nb::arg;
  m.attr("HAVE_MPI") = true;
  {
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(version, &len);
    m.attr("MPI_LIBRARY_VERSION") = std::string(version, size_t(len));
  }

  nb::class_<PyEpLayer>(m, "EpLayer", "A moefuse::ExpertParallelLayer.")
      .def_static(
          "with_random_weights",
          [](const MoeConfig& config, uint64_t seed, int threads, const std::optional<std::string>& numerics,
             int64_t comm_handle, const std::vector<std::vector<int>>& placement, const std::string& placement_file,
             double timeout) {
            return nogil([&] {
              const MPI_Comm comm = comm_of(comm_handle);
              const EpOptions o =
                  ep_options(config, threads, false, numerics, comm, placement, placement_file, timeout);
              return std::make_unique<PyEpLayer>(ExpertParallelLayer::with_random_weights(config, seed, comm, o));
            });
          },
          arg("config"), arg("seed"), arg("threads"), arg("numerics").none(), arg("comm"), arg("placement"),
          arg("placement_file"), arg("timeout"))
      .def_static(
          "from_checkpoint",
          [](const MoeConfig& config, const std::string& path, int64_t layer_index, int threads, bool allow_non_finite,
             const std::optional<std::string>& numerics, int64_t comm_handle,
             const std::vector<std::vector<int>>& placement, const std::string& placement_file, double timeout) {
            return nogil([&] {
              const MPI_Comm comm = comm_of(comm_handle);
              const EpOptions o =
                  ep_options(config, threads, allow_non_finite, numerics, comm, placement, placement_file, timeout);
              return std::make_unique<PyEpLayer>(
                  ExpertParallelLayer::from_checkpoint(config, Checkpoint(path), layer_index, comm, o));
            });
          },
          arg("config"), arg("path"), arg("layer_index"), arg("threads"), arg("allow_non_finite"),
          arg("numerics").none(), arg("comm"), arg("placement"), arg("placement_file"), arg("timeout"))
      .def_static(
          "from_model_folder",
          [](const std::string& dir, int64_t layer_index, const MoeConfig* options, const std::string& options_source,
             int threads, bool allow_non_finite, const std::optional<std::string>& numerics, int64_t comm_handle,
             const std::vector<std::vector<int>>& placement, const std::string& placement_file, double timeout) {
            return nogil([&] {
              // load_model_layer's steps, with the expert-parallel layer at the end.
              const ModelConfig mc = load_model_config(dir);
              MoeConfig c = mc.layer_config(layer_index);
              if (options != nullptr) c = with_execution_options(c, mc.source, *options, options_source);
              const Checkpoint ck(dir);
              check_model_tensors(c, mc.source, ck, layer_index);
              const MPI_Comm comm = comm_of(comm_handle);
              const EpOptions o =
                  ep_options(c, threads, allow_non_finite, numerics, comm, placement, placement_file, timeout);
              return std::make_unique<PyEpLayer>(ExpertParallelLayer::from_checkpoint(c, ck, layer_index, comm, o));
            });
          },
          arg("dir"), arg("layer_index"), arg("options").none(), arg("options_source"), arg("threads"),
          arg("allow_non_finite"), arg("numerics").none(), arg("comm"), arg("placement"), arg("placement_file"),
          arg("timeout"))
      .def(
          "forward",
          [](PyEpLayer& self, const PyTensor& x, bool is_prefill) {
            return PyTensor{nogil([&] {
                              std::lock_guard<std::mutex> lock(self.forward_mutex);
                              return self.layer.forward(x.tensor, is_prefill);
                            }),
                            {}};
          },
          arg("x"), arg("is_prefill"))
      .def_prop_ro("config", [](const PyEpLayer& self) { return self.layer.config(); })
      .def_prop_ro("threads", [](const PyEpLayer& self) { return self.layer.threads(); })
      .def_prop_ro("rank", [](const PyEpLayer& self) { return self.layer.rank(); })
      .def_prop_ro("size", [](const PyEpLayer& self) { return self.layer.size(); })
      .def_prop_ro("placement", [](const PyEpLayer& self) { return self.layer.placement().ranks; })
      .def_prop_ro("local_experts", [](const PyEpLayer& self) { return self.layer.local_experts(); })
      .def_prop_ro("last_timings",
                   [](PyEpLayer& self) {
                     return ep_timings_dict(locked(self, [](ExpertParallelLayer& l) { return l.last_timings(); }));
                   })
      .def_prop_ro("path",
                   [](PyEpLayer& self) { return locked(self, [](ExpertParallelLayer& l) { return l.path(); }); })
      .def_prop_ro("expert_tokens",
                   [](PyEpLayer& self) { return locked(self, [](ExpertParallelLayer& l) { return l.expert_tokens(); }); })
      .def_prop_ro("cumulative_expert_tokens", [](PyEpLayer& self) {
        return locked(self, [](ExpertParallelLayer& l) { return l.cumulative_expert_tokens(); });
      });
}

}  // namespace moefuse::python

#else  // a build without MPI

namespace moefuse::python {
void bind_ep_layer(nb::module_& m) { m.attr("HAVE_MPI") = false; }
}  // namespace moefuse::python

#endif
