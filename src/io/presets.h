// The presets embedded at build time: cmake/EmbedPresets.cmake turns configs/*.yaml into a generated .cpp that
// defines this table (sorted by name, the file name without ".yaml"; data = the file's exact bytes).
#pragma once

#include <cstddef>

namespace moefuse::io_detail {

struct EmbeddedFile {
  const char* name;
  const unsigned char* data;
  size_t size;
};

extern const EmbeddedFile kEmbeddedPresets[];
extern const size_t kEmbeddedPresetCount;

}  // namespace moefuse::io_detail
