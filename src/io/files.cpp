#include "io/files.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "base/check.h"
#include "moefuse/error.h"

namespace moefuse::io_detail {

namespace {

std::string errno_text(int err) { return std::strerror(err); }

[[noreturn]] void fail_io(std::string_view who, const std::string& path, std::string_view expected,
                          std::string_view got) {
  throw IoError(check::message(who, path, expected, got));
}

[[noreturn]] void fail_io(std::string_view who, const std::string& path, std::string_view expected, int err) {
  fail_io(who, path, expected, errno_text(err));
}

// Closes a descriptor on scope exit.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

namespace {

// Opens `path` for reading without ever blocking: O_NONBLOCK makes open() of a FIFO return at once (a plain open
// waits for a writer), and the type is checked on the open descriptor before any read. Regular files only.
// Returns the descriptor (owned by `f`) and its size. A directory is "expected <for_directory>, got a directory".
uint64_t open_regular(Fd& f, const std::string& path, std::string_view who, std::string_view for_directory) {
  do f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  while (f.fd < 0 && errno == EINTR);
  if (f.fd < 0) {
    const int err = errno;
    struct stat st {};
    // open() of a socket fails with ENXIO: name the kind, not the errno text.
    if (err == ENXIO && ::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
      fail_io(who, path, "a regular file", file_kind(st.st_mode));
    fail_io(who, path, "a readable file", err);
  }
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) fail_io(who, path, "a readable file", errno);
  if (S_ISDIR(st.st_mode)) fail_io(who, path, for_directory, "a directory");
  if (!S_ISREG(st.st_mode)) fail_io(who, path, "a regular file", file_kind(st.st_mode));
  // Back to blocking reads (O_NONBLOCK has no effect on regular files, but say what is meant).
  const int flags = ::fcntl(f.fd, F_GETFL);
  if (flags >= 0) ::fcntl(f.fd, F_SETFL, flags & ~O_NONBLOCK);
  return uint64_t(st.st_size);
}

std::string size_text(uint64_t n) { return std::to_string(n) + " bytes"; }

}  // namespace

std::string read_whole_file(const std::string& path, std::string_view who, uint64_t max_bytes) {
  Fd f;
  const uint64_t size = open_regular(f, path, who, "a readable file");
  const std::string limit = "a file of at most " + size_text(max_bytes);
  if (size > max_bytes) fail_io(who, path, limit, size_text(size));
  std::string out;
  out.reserve(size_t(size));
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(f.fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail_io(who, path, "a readable file", errno);
    if (n == 0) break;
    if (uint64_t(n) > max_bytes - out.size())  // it grew while being read
      fail_io(who, path, limit, "more (the file grew while it was read)");
    out.append(buf, size_t(n));
  }
  return out;
}

MappedFile::MappedFile(const std::string& path, std::string_view who) : path_(path) {
  Fd f;
  size_ = size_t(open_regular(f, path, who, "a regular file"));
  if (size_ > 0) {  // mmap of length 0 is an error; an empty file simply has no bytes
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, f.fd, 0);
    if (p == MAP_FAILED) fail_io(who, path, "a file that can be memory-mapped", errno);
    data_ = static_cast<const std::byte*>(p);
  }
  fd_ = f.fd;
  f.fd = -1;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
  if (fd_ >= 0) ::close(fd_);
}

void MappedFile::read_at(uint64_t offset, void* dst, size_t n, std::string_view what) const {
  char* p = static_cast<char*>(dst);
  uint64_t at = offset;
  size_t left = n;
  while (left > 0) {
    ssize_t got = ::pread(fd_, p, left, off_t(at));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) fail_io(path_, std::string(what), "a readable file", errno);
    if (got == 0) {
      struct stat st {};
      const std::string now = ::fstat(fd_, &st) == 0 ? "a file of " + size_text(uint64_t(st.st_size)) : "fewer";
      fail_io(path_, std::string(what), size_text(n) + " at file offset " + std::to_string(offset),
              now + " (it shrank after it was opened)");
    }
    p += got;
    at += uint64_t(got);
    left -= size_t(got);
  }
}

std::string escape_for_message(std::string_view s, size_t max) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  size_t n = 0;
  for (char c : s) {
    if (n++ == max) {
      out += "...";
      break;
    }
    auto u = static_cast<unsigned char>(c);
    if (u == '"' || u == '\\') {
      out += '\\';
      out += c;
    } else if (u >= 0x20 && u < 0x7f) {
      out += c;
    } else {
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 15];
    }
  }
  return out;
}

std::string quote_for_message(std::string_view s, size_t max) {
  std::string out(1, '"');
  out += escape_for_message(s, max);
  out += '"';
  return out;
}

}  // namespace moefuse::io_detail

// The public part (moefuse/files.h).
namespace moefuse {

std::string file_kind(unsigned mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "a special file";
}

void check_replaceable(const std::string& path, std::string_view who) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return;  // nothing there (or unreachable: the write itself will say)
  // A directory cannot be renamed over (the rename itself fails and says so); anything else must be a regular file.
  if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
    io_detail::fail_io(who, path, "a regular file or a new file name", file_kind(st.st_mode));
}

void write_file_atomic(const std::string& path, std::string_view who,
                       const std::function<void(const ByteSink&)>& fill) {
  static std::atomic<unsigned> counter{0};
  check_replaceable(path, who);
  std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter.fetch_add(1));
  io_detail::Fd f;
  do f.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  while (f.fd < 0 && errno == EINTR);
  if (f.fd < 0) io_detail::fail_io(who, path, "a writable location", errno);
  try {
    ByteSink sink = [&](const void* data, size_t size) {
      const char* p = static_cast<const char*>(data);
      while (size > 0) {
        ssize_t n = ::write(f.fd, p, size);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) io_detail::fail_io(who, path, "a successful write", errno);
        p += n;
        size -= size_t(n);
      }
    };
    fill(sink);
    if (::fsync(f.fd) != 0) io_detail::fail_io(who, path, "a successful write", errno);
    int fd = f.fd;
    f.fd = -1;
    if (::close(fd) != 0) io_detail::fail_io(who, path, "a successful write", errno);
    check_replaceable(path, who);  // again: something may have appeared there while the file was written
    if (::rename(tmp.c_str(), path.c_str()) != 0) io_detail::fail_io(who, path, "a file that can be replaced", errno);
  } catch (...) {
    if (f.fd >= 0) {
      ::close(f.fd);
      f.fd = -1;
    }
    ::unlink(tmp.c_str());
    throw;
  }
}

}  // namespace moefuse
