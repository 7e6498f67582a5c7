// python/src/module.cpp — the extension module moefuse._core: error translation and the bound pieces.
#include <exception>
#include <string>
#include <string_view>

#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>

#include "moefuse/cpu.h"
#include "moefuse/error.h"
#include "moefuse/threads.h"
#include "py_tensor.h"

namespace nb = nanobind;

NB_MODULE(_core, m) {
  m.doc() = "moefuse's C++ core. Use the functions of the moefuse package, not these.";

  // moefuse's error family -> Python's built-in exceptions, message unchanged (error.h names the mapping).
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const moefuse::ValueError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const moefuse::TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    } catch (const moefuse::IoError& e) {
      PyErr_SetString(PyExc_OSError, e.what());
    } catch (const moefuse::ResourceError& e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    } catch (const moefuse::Error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });

  // Test hook: throws the named moefuse error, so that the translation of every class is tested directly (the
  // layer raises IoError for files; ResourceError is hard to provoke on purpose).
  m.def(
      "_throw",
      [](std::string_view kind, const std::string& message) {
        if (kind == "ValueError") throw moefuse::ValueError(message);
        if (kind == "TypeError") throw moefuse::TypeError(message);
        if (kind == "IoError") throw moefuse::IoError(message);
        if (kind == "ResourceError") throw moefuse::ResourceError(message);
        throw moefuse::Error(message);
      },
      nb::arg("kind"), nb::arg("message"));

  // Test hook: whether the amx level is in use, the only one where the native numerics tier has kernels of its own
  // (moefuse/numerics.h), so that a test of "native is portable" knows when to skip.
  m.def("_amx_in_use", [] { return moefuse::active_isa() >= moefuse::Isa::amx; });

  m.attr("MAX_THREADS") = moefuse::kMaxThreads;

  moefuse::python::bind_tensor(m);
  moefuse::python::bind_ops(m);
  moefuse::python::bind_layer(m);
  moefuse::python::bind_ep_layer(m);
}
