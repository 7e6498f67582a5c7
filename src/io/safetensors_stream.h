// A safetensors writer that streams each tensor's bytes from a callback, in the caller's order, so that a file of
// any size is written holding one tensor (or less) in memory: what `moefuse quantize` of a whole model writes its
// shards with. write_safetensors (io.h) lays its in-memory tensors out and writes through it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "io/files.h"

namespace moefuse::io_detail {

/// One tensor of the file: its header entry and a callback that streams exactly `bytes` bytes of data (row-major)
/// into the sink, called once, in the order of the entries.
struct StreamedTensor {
  std::string name;
  std::string dtype;  // a safetensors dtype string ("BF16", "I8", "F8_E4M3", ...)
  std::vector<int64_t> shape;
  uint64_t bytes = 0;
  std::function<void(const ByteSink&)> write;
};

/// Writes `path` atomically (write_file_atomic): the header (entries in the given order, data offsets contiguous,
/// "__metadata__" = metadata when not empty, padded with spaces to a multiple of 8 bytes), then each entry's data.
/// `who` starts error messages. Errors: ValueError for an empty, duplicated or "__metadata__" name, or names that
/// are not UTF-8; IoError when the file cannot be written or a callback streams a different number of bytes than its
/// entry declares (nothing is left behind).
void write_safetensors_stream(std::string_view who, const std::string& path, const std::vector<StreamedTensor>& tensors,
                              const std::map<std::string, std::string>& metadata);

}  // namespace moefuse::io_detail
