// libFuzzer target: .npy images (parse_npy). Only moefuse::Error may escape; an accepted array is read completely
// and must hold exactly the bytes its header declares.
#include <cstddef>
#include <cstdint>
#include <span>

#include "moefuse/error.h"
#include "moefuse/io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace moefuse;
  try {
    Tensor t = parse_npy(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size), "fuzz.npy");
    size_t n = size_t(t.numel()) * t.element_size();
    if (n > size || !t.is_contiguous()) __builtin_trap();
    volatile unsigned sink = 0;
    const auto* p = static_cast<const unsigned char*>(t.data());
    for (size_t i = 0; i < n; ++i) sink = sink + p[i];
  } catch (const Error&) {
  }
  return 0;
}
