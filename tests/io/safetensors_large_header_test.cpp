// A safetensors header of 200,000 entries (13 MB) is parsed in time linear in its size (it once took O(n^2): 40k
// entries 17 s, 200k about 7 minutes), and a duplicate key at the very end of a long header is still found. No
// timing is asserted: at quadratic cost this test would run for many minutes instead of a second or two.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "io/io_test_util.h"
#include "moefuse/error.h"
#include "moefuse/io.h"

namespace moefuse {
namespace {

constexpr int kEntries = 200000;

// A header of `n` one-byte U8 tensors t000000.. tiling n bytes of data, plus `extra` entries text, and the file.
std::string image(int n, const std::string& extra = {}) {
  std::string h = "{";
  h.reserve(size_t(n) * 64);
  char buf[96];
  for (int i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof buf, "%s\"t%06d\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[%d,%d]}",
                  i ? "," : "", i, i, i + 1);
    h += buf;
  }
  h += extra + "}";
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i) file[size_t(i)] = char((uint64_t(h.size()) >> (8 * i)) & 0xff);
  file += h;
  for (int i = 0; i < n; ++i) file += char(i & 0x7f);
  return file;
}

TEST(SafetensorsLargeHeader, SeveralHundredThousandEntriesParse) {
  const std::string bytes = image(kEntries);
  ASSERT_GT(bytes.size(), size_t(12) << 20);
  const SafetensorsFile f = SafetensorsFile::from_bytes(testing::as_bytes(bytes), "big.safetensors");
  EXPECT_EQ(f.names().size(), size_t(kEntries));
  EXPECT_EQ(f.entry("t123456").begin, 123456u);
  EXPECT_EQ(f.read("t123456").data_as<uint8_t>()[0], 123456 & 0x7f);
}

TEST(SafetensorsLargeHeader, ADuplicateAtTheEndIsFound) {
  const std::string bytes = image(20000, R"(,"t000001":{"dtype":"U8","shape":[0],"data_offsets":[0,0]})");
  try {
    SafetensorsFile::from_bytes(testing::as_bytes(bytes), "dup.safetensors");
    ADD_FAILURE() << "a duplicate key was accepted";
  } catch (const IoError& e) {
    EXPECT_STREQ(e.what(), "dup.safetensors: header: expected each key of a JSON object once, got the key \"t000001\" "
                           "twice");
  }
}

}  // namespace
}  // namespace moefuse
