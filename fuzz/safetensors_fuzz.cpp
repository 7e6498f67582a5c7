// libFuzzer target: safetensors images (SafetensorsFile::from_bytes, then every entry and tensor). Only
// moefuse::Error may escape the parser; an accepted file's tensors are read completely, so that a header that lies
// about offsets would show up as an out-of-bounds read under AddressSanitizer.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "moefuse/error.h"
#include "moefuse/io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace moefuse;
  std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    SafetensorsFile file = SafetensorsFile::from_bytes(bytes, "fuzz.safetensors");
    volatile unsigned sink = 0;
    for (const std::string& name : file.names()) {
      const SafetensorsEntry& e = file.entry(name);
      if (e.begin > e.end) __builtin_trap();
      Tensor t;
      try {
        t = file.get(name);
      } catch (const IoError&) {
        continue;  // a dtype moefuse does not read, or a rank above kMaxDims
      }
      size_t n = size_t(t.numel()) * t.element_size();
      if (n != e.end - e.begin) __builtin_trap();
      const auto* p = static_cast<const unsigned char*>(t.data());
      for (size_t i = 0; i < n; ++i) sink = sink + p[i];
    }
    for (const auto& [k, v] : file.metadata()) sink = sink + unsigned(k.size() + v.size());
  } catch (const Error&) {
  }
  return 0;
}
