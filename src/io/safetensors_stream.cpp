#include "io/safetensors_stream.h"

#include <nlohmann/json.hpp>

#include <set>

#include "base/check.h"
#include "moefuse/error.h"

namespace moefuse::io_detail {

using nlohmann::json;

void write_safetensors_stream(std::string_view who, const std::string& path, const std::vector<StreamedTensor>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string_view> seen;
  uint64_t offset = 0;
  for (const StreamedTensor& t : tensors) {
    if (t.name.empty()) check::fail_value(who, "tensors", "non-empty tensor names", "an empty name");
    if (t.name == "__metadata__")
      check::fail_value(who, "tensors", "tensor names other than __metadata__ (reserved)", "__metadata__");
    if (!seen.insert(t.name).second)
      check::fail_value(who, "tensors", "each tensor name once", "the name " + quote_for_message(t.name) + " twice");
    json shape = json::array();
    for (int64_t d : t.shape) shape.push_back(d);
    header[t.name] = {{"dtype", t.dtype}, {"shape", shape}, {"data_offsets", {offset, offset + t.bytes}}};
    offset += t.bytes;
  }
  std::string text;
  try {
    text = header.dump(-1, ' ', false, json::error_handler_t::strict);
  } catch (const json::exception&) {
    check::fail_value(who, "tensors", "names and metadata in valid UTF-8", "invalid UTF-8");
  }
  text.append((8 - (8 + text.size()) % 8) % 8, ' ');
  write_file_atomic(path, who, [&](const ByteSink& sink) {
    unsigned char len[8];
    const uint64_t n = text.size();
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
    sink(len, 8);
    sink(text.data(), text.size());
    for (const StreamedTensor& t : tensors) {
      uint64_t written = 0;
      t.write([&](const void* data, size_t size) {
        written += size;
        if (written <= t.bytes) sink(data, size);
      });
      if (written != t.bytes)
        throw IoError(check::message(who, path + ": " + t.name, std::to_string(t.bytes) + " bytes of data",
                                     std::to_string(written) + " bytes"));
    }
  });
}

}  // namespace moefuse::io_detail
