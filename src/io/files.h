// File helpers shared by the readers and writers of src/io: whole-file reads, read-only memory maps, and atomic
// writes (temp file in the same directory, fsync, rename), so that a failed write never leaves a partial file.
//
// Every reader opens only regular files, and checks the type before it could block: a FIFO, socket or device given
// as a file is IoError "<who>: <path>: expected a regular file, got a FIFO" (never a hang in open() or read()).
// Every writer replaces only regular files: a device, FIFO or socket at the target is refused, never renamed over.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "moefuse/files.h"

namespace moefuse::io_detail {

// The writers' part is public (moefuse/files.h).
using moefuse::ByteSink;
using moefuse::check_replaceable;
using moefuse::file_kind;
using moefuse::write_file_atomic;

/// The whole file, of at most `max_bytes` bytes (checked from its size before reading, and again while reading).
/// Throws IoError "<who>: <path>: expected a readable file, got <reason>" (a directory included), "... expected a
/// regular file, got a FIFO" (socket, character device, block device), or "... expected a file of at most
/// <max_bytes> bytes, got <size> bytes".
std::string read_whole_file(const std::string& path, std::string_view who, uint64_t max_bytes = UINT64_MAX);

/// A read-only private mapping of a whole regular file (nullptr data for an empty file), and the open file for
/// reads that cannot fault. Unmapped and closed when destroyed.
class MappedFile {
 public:
  /// Throws IoError "<who>: <path>: expected a readable file, got <reason>" or "... expected a regular file, got
  /// <kind>".
  MappedFile(const std::string& path, std::string_view who);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }

  /// Copies bytes [offset, offset + n) of the file into `dst` with pread, not through the mapping: a file that
  /// shrank since it was mapped (where touching the mapping would kill the process with SIGBUS) is IoError
  /// "<path>: <what>: expected <n> bytes at file offset <offset>, got a file of <size> bytes (it shrank after it
  /// was opened)". Safe from several threads at once.
  void read_at(uint64_t offset, void* dst, size_t n, std::string_view what) const;

 private:
  std::string path_;
  int fd_ = -1;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

/// Text from a file made safe for an error message: printable ASCII kept, '"' and '\\' escaped, other bytes as
/// \xNN, cut after `max` characters with "...".
std::string escape_for_message(std::string_view s, size_t max = 64);
/// escape_for_message in double quotes.
std::string quote_for_message(std::string_view s, size_t max = 64);

}  // namespace moefuse::io_detail
