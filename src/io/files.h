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

namespace moefuse::io_detail {

/// The whole file, of at most `max_bytes` bytes (checked from its size before reading, and again while reading).
/// Throws IoError "<who>: <path>: expected a readable file, got <reason>" (a directory included), "... expected a
/// regular file, got a FIFO" (socket, character device, block device), or "... expected a file of at most
/// <max_bytes> bytes, got <size> bytes".
std::string read_whole_file(const std::string& path, std::string_view who, uint64_t max_bytes = UINT64_MAX);

/// The kind of a file for messages: "a regular file", "a directory", "a FIFO", "a socket", "a character device",
/// "a block device", "a symbolic link" or "a special file".
std::string file_kind(unsigned mode);

/// Throws IoError "<who>: <path>: expected a regular file or a new file name, got <kind>" when `path` exists (a
/// symbolic link is followed) and is a device, FIFO or socket: what every writer checks before it replaces `path`
/// (a directory is left to the rename, which fails: "expected a file that can be replaced, got Is a directory").
void check_replaceable(const std::string& path, std::string_view who);

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

/// Receives the bytes of a file being written, in order.
using ByteSink = std::function<void(const void* data, size_t size)>;

/// Writes `path` atomically: `fill` streams the contents into a temporary file next to `path`, which is flushed to
/// disk and renamed over `path`. If anything fails (an exception from `fill` included), the temporary file is
/// removed and the error propagates; `path` is then untouched. I/O failures throw IoError
/// "<who>: <path>: expected <what>, got <reason>"; an existing `path` that is not a regular file is refused
/// (check_replaceable), before anything is written and again before the rename.
void write_file_atomic(const std::string& path, std::string_view who, const std::function<void(const ByteSink&)>& fill);

/// Text from a file made safe for an error message: printable ASCII kept, '"' and '\\' escaped, other bytes as
/// \xNN, cut after `max` characters with "...".
std::string escape_for_message(std::string_view s, size_t max = 64);
/// escape_for_message in double quotes.
std::string quote_for_message(std::string_view s, size_t max = 64);

}  // namespace moefuse::io_detail
