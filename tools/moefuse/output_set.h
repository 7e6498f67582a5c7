// The files a command writes, checked before any work and committed together at the end.
//
// Each output is checked when it is added: a file name (not a directory) in an existing directory, not a device,
// FIFO or socket, and not the same file as an input or as another output (compared by resolved path and, for files
// that exist, by device and inode, so links and "./x" are caught). The command writes each output to a staging file
// next to it (staging()); commit() then renames them all onto their paths. An error before commit() — in the work,
// or writing any output — leaves none of them: the staging files are removed when the set is destroyed.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace moefuse::cli {

class OutputSet {
 public:
  OutputSet() = default;
  ~OutputSet();
  OutputSet(const OutputSet&) = delete;
  OutputSet& operator=(const OutputSet&) = delete;

  /// Records a file the command reads (an empty path: none), which no output may be.
  void add_input(const std::string& option, const std::string& path);
  /// Records every file of a checkpoint (the path, and for a directory or an index its index and shards; opening
  /// the checkpoint validates it: IoError as Checkpoint).
  void add_checkpoint(const std::string& option, const std::string& path);
  /// Checks an output (an empty path: none) and adds it, creating its (empty) staging file, so that an output
  /// that cannot be written is refused now. IoError "<option>: <path>: expected ..., got ...".
  void add_output(const std::string& option, const std::string& path);

  /// The staging file to write the output of `option` into: in the output's directory, its name ending in the
  /// output's name (so its extension is kept).
  std::string staging(const std::string& option) const;
  /// Renames every staged output onto its path; each target is checked again first (still a regular file or
  /// absent). IoError when a staging file is missing or a rename fails.
  void commit();

 private:
  struct File {
    std::string option, path, canonical;
    bool exists = false;
    dev_t dev = 0;
    ino_t ino = 0;
  };
  static File identify(const std::string& option, const std::string& path);
  static bool same(const File& a, const File& b);

  std::vector<File> inputs_, outputs_;
  std::vector<std::string> staged_;  // staging file per output, "" once committed
  bool committed_ = false;
};

}  // namespace moefuse::cli
