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

std::string read_whole_file(const std::string& path, std::string_view who) {
  Fd f;
  do f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  while (f.fd < 0 && errno == EINTR);
  if (f.fd < 0) fail_io(who, path, "a readable file", errno);
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) fail_io(who, path, "a readable file", errno);
  if (S_ISDIR(st.st_mode)) fail_io(who, path, "a readable file", "a directory");
  std::string out;
  if (S_ISREG(st.st_mode) && st.st_size > 0) out.reserve(size_t(st.st_size));
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(f.fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail_io(who, path, "a readable file", errno);
    if (n == 0) break;
    out.append(buf, size_t(n));
  }
  return out;
}

MappedFile::MappedFile(const std::string& path, std::string_view who) {
  Fd f;
  do f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  while (f.fd < 0 && errno == EINTR);
  if (f.fd < 0) fail_io(who, path, "a readable file", errno);
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) fail_io(who, path, "a readable file", errno);
  if (!S_ISREG(st.st_mode))
    fail_io(who, path, "a regular file", S_ISDIR(st.st_mode) ? "a directory" : "a special file");
  size_ = size_t(st.st_size);
  if (size_ == 0) return;  // mmap of length 0 is an error; an empty file simply has no bytes
  void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, f.fd, 0);
  if (p == MAP_FAILED) fail_io(who, path, "a file that can be memory-mapped", errno);
  data_ = static_cast<const std::byte*>(p);
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
}

void write_file_atomic(const std::string& path, std::string_view who,
                       const std::function<void(const ByteSink&)>& fill) {
  static std::atomic<unsigned> counter{0};
  std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter.fetch_add(1));
  Fd f;
  do f.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  while (f.fd < 0 && errno == EINTR);
  if (f.fd < 0) fail_io(who, path, "a writable location", errno);
  try {
    ByteSink sink = [&](const void* data, size_t size) {
      const char* p = static_cast<const char*>(data);
      while (size > 0) {
        ssize_t n = ::write(f.fd, p, size);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail_io(who, path, "a successful write", errno);
        p += n;
        size -= size_t(n);
      }
    };
    fill(sink);
    if (::fsync(f.fd) != 0) fail_io(who, path, "a successful write", errno);
    int fd = f.fd;
    f.fd = -1;
    if (::close(fd) != 0) fail_io(who, path, "a successful write", errno);
    if (::rename(tmp.c_str(), path.c_str()) != 0) fail_io(who, path, "a file that can be replaced", errno);
  } catch (...) {
    if (f.fd >= 0) {
      ::close(f.fd);
      f.fd = -1;
    }
    ::unlink(tmp.c_str());
    throw;
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
