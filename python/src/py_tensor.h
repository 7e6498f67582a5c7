// python/src/py_tensor.h — the bridge between Python arrays and moefuse::Tensor, shared by the binding files.
//
// moefuse._core.Tensor (PyTensor) holds a moefuse::Tensor: either a read-only view over an imported array (a numpy
// array, a torch tensor or any DLPack producer; never a copy), whose producer it keeps alive, or an operator's
// result, which it owns and exports to numpy / torch without a copy. The Python package (moefuse/_tensors.py) does
// the framework-specific work (dtype names, bf16/bool reinterpretation, detach, device checks); this file does the
// import, the export and nothing else. It also holds nogil(), the GIL release the binding files share.
#pragma once

#include <atomic>

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include "moefuse/tensor.h"

namespace moefuse::python {

namespace nb = nanobind;

struct PyTensor {
  Tensor tensor;
  nb::ndarray<nb::ro> source;  // the imported producer (views only); invalid for results
};

/// The tensor, or an undefined Tensor ("not given") for Python's None.
inline Tensor opt(const PyTensor* p) { return p ? p->tensor : Tensor{}; }

/// Whether the last call run through nogil() really ran without the GIL (read and reset by the test hook
/// _core._last_call_released_gil(), defined in ops.cpp), so that tests check the release deterministically.
extern std::atomic<bool> g_last_call_released_gil;

/// Runs `f` without the GIL: the operators and the layer touch no Python object, and their inputs are kept alive
/// by the caller's references for the duration of the call.
template <class F>
auto nogil(F&& f) {
  nb::gil_scoped_release release;
  g_last_call_released_gil.store(PyGILState_Check() == 0);
  return f();
}

void bind_tensor(nb::module_& m);
void bind_ops(nb::module_& m);
void bind_layer(nb::module_& m);
void bind_ep_layer(nb::module_& m);  // HAVE_MPI, and EpLayer when built with MPI

}  // namespace moefuse::python
