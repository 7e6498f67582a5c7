// File helpers shared by the readers and writers of src/io: whole-file reads, read-only memory maps, and atomic
// writes (temp file in the same directory, fsync, rename), so that a failed write never leaves a partial file.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace moefuse::io_detail {

/// The whole file. Throws IoError "<who>: <path>: expected a readable file, got <reason>".
std::string read_whole_file(const std::string& path, std::string_view who);

/// A read-only private mapping of a whole file (nullptr data for an empty file). Unmapped when destroyed.
class MappedFile {
 public:
  /// Throws IoError "<who>: <path>: expected a readable file, got <reason>".
  MappedFile(const std::string& path, std::string_view who);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

/// Receives the bytes of a file being written, in order.
using ByteSink = std::function<void(const void* data, size_t size)>;

/// Writes `path` atomically: `fill` streams the contents into a temporary file next to `path`, which is flushed to
/// disk and renamed over `path`. If anything fails (an exception from `fill` included), the temporary file is
/// removed and the error propagates; `path` is then untouched. I/O failures throw IoError
/// "<who>: <path>: expected <what>, got <reason>".
void write_file_atomic(const std::string& path, std::string_view who, const std::function<void(const ByteSink&)>& fill);

/// Text from a file made safe for an error message: printable ASCII kept, '"' and '\\' escaped, other bytes as
/// \xNN, cut after `max` characters with "...".
std::string escape_for_message(std::string_view s, size_t max = 64);
/// escape_for_message in double quotes.
std::string quote_for_message(std::string_view s, size_t max = 64);

}  // namespace moefuse::io_detail
