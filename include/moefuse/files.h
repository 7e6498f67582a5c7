// moefuse/files.h — how moefuse writes files, for programs that write beside it (the `moefuse` command's outputs):
// atomically (a temporary file next to the target, flushed, then renamed over it), and only over regular files.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace moefuse {

/// The kind of a file for messages, from a stat mode: "a regular file", "a directory", "a FIFO", "a socket",
/// "a character device", "a block device", "a symbolic link" or "a special file".
std::string file_kind(unsigned mode);

/// Throws IoError "<who>: <path>: expected a regular file or a new file name, got <kind>" when `path` exists (a
/// symbolic link is followed) and is a device, FIFO or socket: what every writer checks before it replaces `path`
/// (a directory is left to the rename, which fails: "expected a file that can be replaced, got Is a directory").
void check_replaceable(const std::string& path, std::string_view who);

/// Receives the bytes of a file being written, in order.
using ByteSink = std::function<void(const void* data, size_t size)>;

/// Writes `path` atomically: `fill` streams the contents into a temporary file next to `path`, which is flushed to
/// disk and renamed over `path`. If anything fails (an exception from `fill` included), the temporary file is
/// removed and the error propagates; `path` is then untouched. I/O failures throw IoError
/// "<who>: <path>: expected <what>, got <reason>"; an existing `path` that is not a regular file is refused
/// (check_replaceable), before anything is written and again before the rename.
void write_file_atomic(const std::string& path, std::string_view who, const std::function<void(const ByteSink&)>& fill);

}  // namespace moefuse
