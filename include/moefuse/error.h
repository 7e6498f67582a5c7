// moefuse/error.h — the one error family of moefuse.
//
// Every invalid input is reported by throwing one of these at the API boundary, before any output is written.
// Messages have the form
//     <operator or file>: <argument or key>: expected <what was expected>, got <what was given>
// e.g. "gating_top_k: k: expected 1 <= k <= 64 (E), got 65". Python bindings map the classes to the exception types
// named beside them.
#pragma once

#include <stdexcept>
#include <string>

namespace moefuse {

/// Base of every moefuse error.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A bad value, shape, rank or combination of arguments (Python: ValueError).
class ValueError : public Error {
 public:
  using Error::Error;
};

/// A tensor of the wrong element type (Python: TypeError).
class TypeError : public Error {
 public:
  using Error::Error;
};

/// A file that cannot be opened, read, or parsed (Python: OSError).
class IoError : public Error {
 public:
  using Error::Error;
};

/// A request that needs more memory than the machine has (Python: MemoryError).
class ResourceError : public Error {
 public:
  using Error::Error;
};

}  // namespace moefuse
