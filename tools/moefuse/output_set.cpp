#include "output_set.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <cstdio>
#include <filesystem>

#include "moefuse/error.h"
#include "moefuse/files.h"
#include "moefuse/io.h"

namespace moefuse::cli {

namespace fs = std::filesystem;

OutputSet::~OutputSet() {
  if (committed_) return;
  for (const std::string& s : staged_)
    if (!s.empty()) ::unlink(s.c_str());
}

OutputSet::File OutputSet::identify(const std::string& option, const std::string& path) {
  File f;
  f.option = option;
  f.path = path;
  std::error_code ec;
  const fs::path canonical = fs::weakly_canonical(fs::absolute(fs::path(path), ec), ec);
  f.canonical = ec ? fs::absolute(fs::path(path)).lexically_normal().string() : canonical.string();
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    f.exists = true;
    f.dev = st.st_dev;
    f.ino = st.st_ino;
  }
  return f;
}

bool OutputSet::same(const File& a, const File& b) {
  if (a.exists && b.exists) return a.dev == b.dev && a.ino == b.ino;
  return a.canonical == b.canonical;
}

void OutputSet::add_input(const std::string& option, const std::string& path) {
  if (!path.empty()) inputs_.push_back(identify(option, path));
}

void OutputSet::add_checkpoint(const std::string& option, const std::string& path) {
  if (path.empty()) return;
  add_input(option, path);
  const Checkpoint ck(path);
  for (const std::string& f : ck.files()) add_input(option, f);
  if (fs::is_directory(path)) add_input(option, (fs::path(path) / "model.safetensors.index.json").string());
}

void OutputSet::add_output(const std::string& option, const std::string& path) {
  if (path.empty()) return;
  auto fail = [&](const std::string& expected, const std::string& got) {
    throw IoError(option + ": " + path + ": expected " + expected + ", got " + got);
  };
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) fail("a file name", "a directory");
    if (!S_ISREG(st.st_mode))
      fail("a regular file or a new file name (an output never replaces a device, FIFO or socket)",
           file_kind(st.st_mode));
  }
  fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail("an existing directory " + dir.string() + " to write into", "none");
  File out = identify(option, path);
  for (const File& in : inputs_)
    if (same(out, in))
      fail("a file that is not an input of the command (outputs never replace inputs)",
           "the same file as " + in.option + " " + in.path);
  for (const File& other : outputs_)
    if (same(out, other))
      fail("a file of its own (each output a different file)", "the same file as " + other.option + " " + other.path);
  // The staging file is created now: an output that cannot be written is refused before any work.
  static std::atomic<unsigned> counter{0};
  const std::string staging = (dir / (".moefuse-" + std::to_string(::getpid()) + "-" +
                                      std::to_string(counter.fetch_add(1)) + "-" + fs::path(path).filename().string()))
                                  .string();
  int fd = -1;
  do fd = ::open(staging.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) fail("a writable location (a new file in " + dir.string() + ")", std::strerror(errno));
  ::close(fd);
  outputs_.push_back(out);
  staged_.push_back(staging);
}

std::string OutputSet::staging(const std::string& option) const {
  for (size_t i = 0; i < outputs_.size(); ++i)
    if (outputs_[i].option == option) return staged_[i];
  throw std::logic_error("OutputSet::staging: option: expected an output added before, got " + option);
}

void OutputSet::commit() {
  for (size_t i = 0; i < outputs_.size(); ++i) {
    struct stat st {};
    if (::stat(staged_[i].c_str(), &st) != 0)
      throw IoError(outputs_[i].option + ": " + outputs_[i].path + ": expected its staged file " + staged_[i] +
                    ", got none (removed while the command ran)");
    check_replaceable(outputs_[i].path, outputs_[i].option);
  }
  for (size_t i = 0; i < outputs_.size(); ++i) {
    if (::rename(staged_[i].c_str(), outputs_[i].path.c_str()) != 0)
      throw IoError(outputs_[i].option + ": " + outputs_[i].path + ": expected a file that can be replaced, got " +
                    std::strerror(errno));
    staged_[i].clear();
  }
  committed_ = true;
}

}  // namespace moefuse::cli
