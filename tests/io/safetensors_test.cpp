// safetensors: round trips for every dtype, views over the mapping, the writer's layout, one hand-made corrupt
// file per validation rule (each message checked), sharded checkpoints and their index.
// Over 500 lines: one hand-made file per validation rule, kept together so that the rules read as one list.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "io/io_test_util.h"
#include "moefuse/error.h"
#include "moefuse/io.h"
#include "util/compare.h"
#include "util/errors.h"
#include "util/random.h"

namespace moefuse {
namespace {

using namespace testing;  // the test utilities: Rng, TempDirectory, read_bytes, write_bytes, as_bytes

// A safetensors image: 8-byte little-endian length, the header as given (no padding), the data.
std::string image(const std::string& header, const std::string& data = {}) {
  std::string s(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) s[size_t(i)] = char((n >> (8 * i)) & 0xff);
  return s + header + data;
}

// Opens an in-memory image named "t.safetensors".
SafetensorsFile open_image(const std::string& bytes) {
  return SafetensorsFile::from_bytes(as_bytes(bytes), "t.safetensors");
}

// One tensor of every readable dtype, with values that exercise the bits (negative, extremes, NaN payload).
NamedTensors every_dtype(Rng& rng) {
  NamedTensors v;
  v.emplace_back("f32", rng.normal_tensor(DType::f32, {3, 5}));
  v.back().second.set_item({0, 0}, -0.0);
  v.emplace_back("f16", rng.normal_tensor(DType::f16, {7}));
  v.emplace_back("bf16", rng.normal_tensor(DType::bf16, {2, 3, 4}));
  v.emplace_back("i8", rng.int_tensor(DType::i8, {9}, -128, 127));
  v.emplace_back("u8", rng.int_tensor(DType::u8, {4, 1}, 0, 255));
  v.emplace_back("i32", rng.int_tensor(DType::i32, {5}, INT32_MIN, INT32_MAX));
  v.emplace_back("i64", rng.int_tensor(DType::i64, {2, 2}, INT64_MIN, INT64_MAX));
  v.emplace_back("bool", rng.int_tensor(DType::boolean, {6}, 0, 1));
  return v;
}

// ---- round trips -------------------------------------------------------------------------------------------------

TEST(Safetensors, RoundTripEveryDtype) {
  TempDirectory dir;
  Rng rng(11);
  NamedTensors tensors = every_dtype(rng);
  std::string path = dir.file("all.safetensors");
  write_safetensors(path, tensors, {{"format", "pt"}, {"note", "ünïcödé"}});
  SafetensorsFile f(path);
  EXPECT_EQ(f.path(), path);
  EXPECT_EQ(f.names(), (std::vector<std::string>{"bf16", "bool", "f16", "f32", "i32", "i64", "i8", "u8"}));
  EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"note", "ünïcödé"}}));
  const std::pair<const char*, const char*> names[] = {{"f32", "F32"}, {"f16", "F16"},  {"bf16", "BF16"},
                                                       {"i8", "I8"},   {"u8", "U8"},    {"i32", "I32"},
                                                       {"i64", "I64"}, {"bool", "BOOL"}};
  for (const auto& [name, st] : names) {
    SCOPED_TRACE(name);
    EXPECT_TRUE(f.has(name));
    EXPECT_EQ(f.entry(name).dtype, st);
  }
  for (const auto& [name, t] : tensors) {
    SCOPED_TRACE(name);
    Tensor r = f.get(name);
    EXPECT_TENSOR_EQ(t, r);
    EXPECT_TRUE(r.is_readonly());
    EXPECT_TRUE(r.is_contiguous());
    EXPECT_EQ(std::string(safetensors_dtype_name(t.dtype())), f.entry(name).dtype);
  }
  EXPECT_FALSE(f.has("F32"));
}

TEST(Safetensors, StridedEmptyAndScalarTensors) {
  TempDirectory dir;
  Rng rng(12);
  Tensor base = rng.normal_tensor(DType::f32, {4, 6});
  NamedTensors tensors = {{"transposed", base.transpose(0, 1)},
                          {"narrowed", base.narrow(1, 2, 3)},
                          {"empty", Tensor::zeros(DType::bf16, {0, 5})},
                          {"scalar", Tensor::full(DType::i64, {}, -7)}};
  std::string path = dir.file("s.safetensors");
  write_safetensors(path, tensors);
  SafetensorsFile f(path);
  EXPECT_TRUE(f.metadata().empty());
  EXPECT_TENSOR_EQ(base.transpose(0, 1).contiguous(), f.get("transposed"));
  EXPECT_TENSOR_EQ(base.narrow(1, 2, 3).contiguous(), f.get("narrowed"));
  Tensor e = f.get("empty");
  EXPECT_EQ(e.shape(), (Shape{0, 5}));
  EXPECT_EQ(e.dtype(), DType::bf16);
  Tensor s = f.get("scalar");
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.item({}), -7.0);
  // The header says what was written.
  EXPECT_EQ(f.entry("empty").shape, (std::vector<int64_t>{0, 5}));
  EXPECT_EQ(f.entry("empty").begin, f.entry("empty").end);
  EXPECT_TRUE(f.entry("scalar").shape.empty());
}

TEST(Safetensors, NoTensorsAtAll) {
  TempDirectory dir;
  std::string path = dir.file("none.safetensors");
  write_safetensors(path, {});
  SafetensorsFile f(path);
  EXPECT_TRUE(f.names().empty());
  EXPECT_EQ(read_bytes(path).size(), 16u);  // length + "{}" padded to 8
}

TEST(Safetensors, WriterLayoutAlignsEveryTensor) {
  TempDirectory dir;
  Rng rng(13);
  // Sizes 1, 8, 2, 4 bytes in caller order: the writer lays them out by element size, largest first.
  NamedTensors tensors = {{"a_u8", rng.int_tensor(DType::u8, {3}, 0, 255)},
                          {"b_i64", rng.int_tensor(DType::i64, {3}, -5, 5)},
                          {"c_f16", rng.normal_tensor(DType::f16, {3})},
                          {"d_f32", rng.normal_tensor(DType::f32, {3})},
                          {"e_i32", rng.int_tensor(DType::i32, {1}, -5, 5)}};
  std::string path = dir.file("layout.safetensors");
  write_safetensors(path, tensors);
  std::string raw = read_bytes(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | uint8_t(raw[size_t(i)]);
  EXPECT_EQ((8 + n) % 8, 0u) << "header padded to a multiple of 8";
  EXPECT_EQ(raw[8], '{');
  SafetensorsFile f(path);
  EXPECT_EQ(f.entry("b_i64").begin, 0u);
  EXPECT_EQ(f.entry("d_f32").begin, 24u);
  EXPECT_EQ(f.entry("e_i32").begin, 36u);  // same size as f32: caller order kept
  EXPECT_EQ(f.entry("c_f16").begin, 40u);
  EXPECT_EQ(f.entry("a_u8").begin, 46u);
  EXPECT_EQ(raw.size(), 8 + n + 49);
  for (const auto& [name, t] : tensors) {
    Tensor r = f.get(name);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(r.data()) % r.element_size(), 0u) << name;
    EXPECT_TENSOR_EQ(t, r);
  }
}

TEST(Safetensors, ViewsPointIntoTheMappingAndKeepItAlive) {
  TempDirectory dir;
  Rng rng(14);
  Tensor t = rng.normal_tensor(DType::f32, {64, 33});
  std::string path = dir.file("v.safetensors");
  write_safetensors(path, {{"w", t}});
  Tensor view, view2;
  {
    SafetensorsFile f(path);
    view = f.get("w");
    view2 = f.get("w");
    EXPECT_EQ(view.data(), view2.data()) << "a view, not a copy";
    EXPECT_TRUE(view.owns_storage());
  }
  // The file object is gone and the file itself deleted: the mapping lives on through the views.
  std::filesystem::remove(path);
  EXPECT_TENSOR_EQ(t, view);
  Tensor narrowed = view.narrow(0, 10, 5);
  view = Tensor();
  EXPECT_TENSOR_EQ(t.narrow(0, 10, 5), narrowed);
  EXPECT_THROWS_MSG(view2.set_item({0, 0}, 1.0), ValueError, "read-only");
}

TEST(Safetensors, FromBytesEqualsTheFile) {
  TempDirectory dir;
  Rng rng(15);
  NamedTensors tensors = every_dtype(rng);
  std::string path = dir.file("b.safetensors");
  write_safetensors(path, tensors, {{"k", "v"}});
  std::string raw = read_bytes(path);
  SafetensorsFile f = SafetensorsFile::from_bytes(as_bytes(raw), "memory");
  raw.assign(raw.size(), '\0');  // the object holds its own copy
  EXPECT_EQ(f.path(), "memory");
  EXPECT_EQ(f.metadata().at("k"), "v");
  for (const auto& [name, t] : tensors) EXPECT_TENSOR_EQ(t, f.get(name));
}

TEST(Safetensors, MisalignedDataIsCopiedAligned) {
  // U8 [1] at offset 0, then F32 [2] at offset 1: the F32 data is misaligned in memory.
  std::string header =
      R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"F32","shape":[2],"data_offsets":[1,9]}})";
  header.append((8 - (8 + header.size()) % 8) % 8, ' ');
  float vals[2] = {1.5f, -2.25f};
  std::string data(1, '\x07');
  data.append(reinterpret_cast<const char*>(vals), 8);
  SafetensorsFile f = open_image(image(header, data));
  Tensor b = f.get("b");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % 4, 0u);
  EXPECT_TRUE(b.is_readonly());
  EXPECT_EQ(b.item({0}), 1.5);
  EXPECT_EQ(b.item({1}), -2.25);
  EXPECT_EQ(f.get("a").item({0}), 7.0);
}

TEST(Safetensors, HeaderWhitespaceAndKeyOrderAreFree) {
  std::string header =
      " \n{ \"__metadata__\" : {\"a\": \"b\"},\n \"x\": {\"data_offsets\": [0, 4], \"shape\": [], "
      "\"dtype\": \"I32\"} }   ";
  int32_t v = -42;
  SafetensorsFile f = open_image(image(header, std::string(reinterpret_cast<const char*>(&v), 4)));
  EXPECT_EQ(f.get("x").item({}), -42.0);
  EXPECT_EQ(f.metadata().at("a"), "b");
}

TEST(Safetensors, OtherDtypesAreListedButNotReadable) {
  // F64, sub-byte F4 and F8 are valid safetensors: the file opens, entry() describes them, get() refuses.
  std::string header = R"({"d":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},)"
                       R"("q":{"dtype":"F4","shape":[4],"data_offsets":[8,10]},)"
                       R"("e":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[10,12]}})";
  SafetensorsFile f = open_image(image(header, std::string(12, '\0')));
  EXPECT_EQ(f.names(), (std::vector<std::string>{"d", "e", "q"}));
  EXPECT_EQ(f.entry("q").dtype, "F4");
  EXPECT_THROWS_MSG(f.get("d"), IoError,
                    "t.safetensors: tensor \"d\" dtype: expected F32, F16, BF16, I8, U8, I32, I64 or BOOL (the dtypes "
                    "moefuse reads), got F64");
  EXPECT_THROWS_MSG(f.get("q"), IoError, "tensor \"q\" dtype", "got F4");
  EXPECT_THROWS_MSG(f.get("e"), IoError, "tensor \"e\" dtype", "got F8_E4M3");
}

TEST(Safetensors, RankAboveEightIsRefusedAtGet) {
  std::string header = R"({"r":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}})";
  SafetensorsFile f = open_image(image(header, "x"));
  EXPECT_EQ(f.entry("r").shape.size(), 9u);
  EXPECT_THROWS_MSG(f.get("r"), IoError,
                    "t.safetensors: tensor \"r\" shape: expected at most 8 dimensions, got 9 dimensions");
}

// ---- corrupt files: one per rule ---------------------------------------------------------------------------------

#define EXPECT_CORRUPT(bytes, ...) EXPECT_THROWS_MSG(open_image(bytes), IoError, "t.safetensors: ", __VA_ARGS__)

const std::string kOk = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";

TEST(SafetensorsCorrupt, FileAndHeaderLength) {
  EXPECT_CORRUPT(std::string(), "header length: expected a file of at least 8 bytes, got 0 bytes");
  EXPECT_CORRUPT(std::string("\x02\0\0\0\0", 5), "header length: expected a file of at least 8 bytes, got 5 bytes");
  std::string huge(8, '\0');
  huge[3] = 0x10;  // 0x10000000 = 268435456
  EXPECT_CORRUPT(huge + "{}", "header length: expected at most 100000000 bytes, got 268435456");
  std::string all_ff(8, '\xff');
  EXPECT_CORRUPT(all_ff, "header length: expected at most 100000000 bytes, got 18446744073709551615");
  std::string beyond = image(kOk, std::string(8, '\0'));
  beyond[0] = char(kOk.size() + 9);
  EXPECT_CORRUPT(beyond, "header length: expected at most " + std::to_string(kOk.size() + 8) +
                             " (the bytes after the length field), got " + std::to_string(kOk.size() + 9));
  EXPECT_CORRUPT(image(""), "header: expected valid JSON, got invalid JSON (parse error at line 1, column 1");
}

TEST(SafetensorsCorrupt, HeaderJson) {
  EXPECT_CORRUPT(image("{\"a\":"), "header: expected valid JSON, got invalid JSON (", "unexpected end of input");
  EXPECT_CORRUPT(image("{'a': 1}"), "header: expected valid JSON, got invalid JSON (parse error at line 1, column 2");
  EXPECT_CORRUPT(image("{\"\xff\": 1}"), "header: expected valid JSON", "invalid");  // not UTF-8
  EXPECT_CORRUPT(image("{} {}"), "header: expected valid JSON");                     // one value only
  EXPECT_CORRUPT(image("[1, 2]"), "header: expected a JSON object, got an array");
  EXPECT_CORRUPT(image("\"x\""), "header: expected a JSON object, got the string \"x\"");
  EXPECT_CORRUPT(image(R"({"a":{"dtype":"U8","shape":[[[1]]],"data_offsets":[0,1]}})", "x"),
                 "header: expected JSON nested at most 3 levels deep, got deeper nesting");
  EXPECT_CORRUPT(image(std::string(100000, '[') + std::string(100000, ']')), "header: expected JSON nested at most 3");
  EXPECT_CORRUPT(
      image(
          R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})",
          "x"),
      "header: expected each key of a JSON object once, got the key \"a\" twice");
  EXPECT_CORRUPT(image(R"({"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "x"),
                 "got the key \"dtype\" twice");
}

TEST(SafetensorsCorrupt, Entries) {
  EXPECT_CORRUPT(image(R"({"a": [1]})"), "tensor \"a\": expected an object {dtype, shape, data_offsets}, got an array");
  EXPECT_CORRUPT(image(R"({"a": 3})"), "tensor \"a\": expected an object", "got the number 3");
  EXPECT_CORRUPT(image(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0')),
                 "tensor \"a\" dtype: expected a value (a required key), got none");
  EXPECT_CORRUPT(image(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", std::string(8, '\0')),
                 "tensor \"a\" shape: expected a value (a required key), got none");
  EXPECT_CORRUPT(image(R"({"a":{"dtype":"F32","shape":[2]}})", std::string(8, '\0')),
                 "tensor \"a\" data_offsets: expected a value (a required key), got none");
  EXPECT_CORRUPT(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"stride":[1]}})", std::string(8, '\0')),
                 "tensor \"a\" stride: expected only the keys dtype, shape and data_offsets, got an unknown key");
  EXPECT_CORRUPT(image(R"({"a":{"dtype":32,"shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0')),
                 "tensor \"a\" dtype: expected a string, got the number 32");
  EXPECT_CORRUPT(image(R"({"a":{"dtype":"float32","shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0')),
                 "tensor \"a\" dtype: expected a safetensors dtype (BOOL, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, I16, U16, "
                 "F16, BF16, I32, U32, F32, F64, I64, U64, C64, F4, F6_E2M3, F6_E3M2), got \"float32\"");
  EXPECT_CORRUPT(image(R"({"\n\"":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "1234567"),
                 "tensor \"\\x0a\\\"\" data_offsets");  // names are escaped in messages
}

TEST(SafetensorsCorrupt, Shapes) {
  std::string d8(8, '\0');
  EXPECT_CORRUPT(image(R"({"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", d8),
                 "tensor \"a\" shape: expected an array of integers >= 0, got the number 2");
  EXPECT_CORRUPT(image(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", d8),
                 "tensor \"a\" shape: expected an array of integers >= 0, got the number -2 in it");
  EXPECT_CORRUPT(image(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", d8),
                 "shape: expected an array of integers >= 0, got the number 2.0 in it");
  EXPECT_CORRUPT(image(R"({"a":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}})", d8),
                 "got the string \"2\" in it");
  EXPECT_CORRUPT(image(R"({"a":{"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,8]}})", d8),
                 "got the number 9223372036854775808 in it");
  EXPECT_CORRUPT(
      image(R"({"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", d8),
      "tensor \"a\" shape: expected a shape whose size in bits fits in 63 bits, got [4294967296,4294967296]");
  EXPECT_CORRUPT(image(R"({"a":{"dtype":"F32","shape":[1152921504606846976],"data_offsets":[0,8]}})", d8),
                 "size in bits fits in 63 bits");
  // Even with a zero extent the other extents must multiply without overflow.
  EXPECT_CORRUPT(image(R"({"a":{"dtype":"U8","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}})"),
                 "size in bits fits in 63 bits");
  EXPECT_CORRUPT(image(R"({"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}})", "xx"),
                 "tensor \"a\" shape: expected a whole number of bytes (4-bit F4), got [3] (12 bits)");
}

TEST(SafetensorsCorrupt, DataOffsets) {
  std::string d8(8, '\0');
  EXPECT_CORRUPT(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":8}})", d8),
                 "tensor \"a\" data_offsets: expected [begin, end], two integers >= 0, got the number 8");
  EXPECT_CORRUPT(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", d8), "got [0]");
  EXPECT_CORRUPT(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,9]}})", d8),
                 "two integers >= 0, got [0,8,9]");
  EXPECT_CORRUPT(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8.0]}})", d8),
                 "two integers >= 0, got [0,8.0]");
  EXPECT_CORRUPT(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", d8),
                 "two integers >= 0, got [-8,0]");
  EXPECT_CORRUPT(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":["0","8"]}})", d8), "two integers >= 0");
  EXPECT_CORRUPT(image(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", d8),
                 "tensor \"a\" data_offsets: expected begin <= end, got [8,0]");
  EXPECT_CORRUPT(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "1234567"),
                 "tensor \"a\" data_offsets: expected end <= 7 (the size of the data section), got [0,8]");
  EXPECT_CORRUPT(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]}})", d8),
                 "expected end <= 8 (the size of the data section)");
  EXPECT_CORRUPT(image(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", d8),
                 "tensor \"a\" data_offsets: expected end - begin = 12 bytes (shape [3] of F32), got [0,8] (8 bytes)");
  EXPECT_CORRUPT(image(R"({"a":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,4]}})", "1234"),
                 "expected end - begin = 8 bytes (shape [2,2] of BF16), got [0,4] (4 bytes)");
}

TEST(SafetensorsCorrupt, TilingOfTheDataSection) {
  std::string d12(12, '\0');
  EXPECT_CORRUPT(
      image(
          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
          d12),
      "tensor \"b\" data_offsets: expected a byte range not overlapping tensor \"a\" (which ends at 8), got [4, 12]");
  EXPECT_CORRUPT(
      image(
          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
          std::string(8, '\0')),
      "not overlapping tensor");
  EXPECT_CORRUPT(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", d12),
                 "tensor \"a\" data_offsets: expected begin = 0 (tensor data contiguous from the start of the data "
                 "section), got [4, 12], leaving bytes 0..4 unused");
  EXPECT_CORRUPT(
      image(
          R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
          d12),
      "tensor \"b\" data_offsets: expected begin = 4", "leaving bytes 4..8 unused");
  EXPECT_CORRUPT(image(kOk, std::string(9, '\0')),
                 "data section: expected 8 bytes (the end of the last tensor), got 9 bytes (trailing data)");
  EXPECT_CORRUPT(image("{}", "x"), "data section: expected 0 bytes (the end of the last tensor), got 1 bytes");
  // Zero-size tensors may sit anywhere inside the data section.
  EXPECT_NO_THROW(open_image(image(
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"z":{"dtype":"I64","shape":[0,3],"data_offsets":[3,3]}})",
      std::string(8, '\0'))));
}

TEST(SafetensorsCorrupt, Metadata) {
  EXPECT_CORRUPT(image(R"({"__metadata__":"pt"})"),
                 "__metadata__: expected an object of strings, got the string \"pt\"");
  EXPECT_CORRUPT(image(R"({"__metadata__":{"a":"b","n":1}})"),
                 "__metadata__ \"n\": expected a string, got the number 1");
  EXPECT_CORRUPT(image(R"({"__metadata__":{"a":null}})"), "__metadata__ \"a\": expected a string, got null");
  EXPECT_NO_THROW(open_image(image(R"({"__metadata__":{}})")));
}

TEST(SafetensorsCorrupt, MissingTensorAndUnreadableFiles) {
  SafetensorsFile f = open_image(image(kOk, std::string(8, '\0')));
  EXPECT_THROWS_MSG(f.get("b"), IoError, "t.safetensors: tensor \"b\": expected a tensor in this file, got none");
  EXPECT_THROWS_MSG(f.entry("b"), IoError, "tensor \"b\": expected a tensor in this file");
  TempDirectory dir;
  std::string missing = dir.file("missing.safetensors");
  EXPECT_THROWS_MSG(SafetensorsFile{missing}, IoError, "SafetensorsFile: " + missing + ": expected a readable file",
                    "No such file or directory");
  EXPECT_THROWS_MSG(SafetensorsFile{dir.path().string()}, IoError, "expected a regular file, got a directory");
  std::string empty = dir.file("empty.safetensors");
  write_bytes(empty, "");
  EXPECT_THROWS_MSG(SafetensorsFile{empty}, IoError,
                    empty + ": header length: expected a file of at least 8 bytes, got 0 bytes");
  std::string truncated = dir.file("trunc.safetensors");
  write_bytes(truncated, image(kOk, "1234"));
  EXPECT_THROWS_MSG(SafetensorsFile{truncated}, IoError, truncated + ": tensor \"a\" data_offsets: expected end <= 4");
}

// ---- writer errors -----------------------------------------------------------------------------------------------

TEST(SafetensorsWriter, ArgumentErrorsWriteNothing) {
  TempDirectory dir;
  std::string path = dir.file("w.safetensors");
  Tensor t = Tensor::zeros(DType::f32, {2});
  EXPECT_THROWS_MSG(write_safetensors(path, {{"a", t}, {"a", t}}), ValueError,
                    "write_safetensors: tensors: expected each tensor name once, got the name \"a\" twice");
  EXPECT_THROWS_MSG(write_safetensors(path, {{"", t}}), ValueError,
                    "write_safetensors: tensors: expected non-empty tensor names, got an empty name");
  EXPECT_THROWS_MSG(
      write_safetensors(path, {{"__metadata__", t}}), ValueError,
      "write_safetensors: tensors: expected tensor names other than __metadata__ (reserved), got __metadata__");
  EXPECT_THROWS_MSG(write_safetensors(path, {{"u", Tensor()}}), ValueError,
                    "write_safetensors: tensor \"u\": expected a defined tensor, got an undefined one");
  EXPECT_THROWS_MSG(write_safetensors(path, {{"bad\xff", t}}), ValueError,
                    "write_safetensors: tensors: expected names and metadata in valid UTF-8, got invalid UTF-8");
  EXPECT_THROWS_MSG(write_safetensors(path, {{"a", t}}, {{"k", "\xc3"}}), ValueError, "valid UTF-8");
  EXPECT_TRUE(dir.listing().empty());
}

TEST(SafetensorsWriter, FileSystemErrorsLeaveNothingBehind) {
  TempDirectory dir;
  Tensor t = Tensor::zeros(DType::f32, {2});
  std::string nodir = dir.file("no/such/dir/w.safetensors");
  EXPECT_THROWS_MSG(write_safetensors(nodir, {{"a", t}}), IoError,
                    "write_safetensors: " + nodir + ": expected a writable location, got No such file or directory");
  // The target is a directory: the temporary file is written, the rename fails, the temporary is removed.
  std::filesystem::create_directory(dir.file("target"));
  EXPECT_THROWS_MSG(write_safetensors(dir.file("target"), {{"a", t}}), IoError,
                    "write_safetensors: " + dir.file("target") + ": expected a file that can be replaced, got");
  EXPECT_EQ(dir.listing(), std::vector<std::string>{"target"});
}

TEST(SafetensorsWriter, ReplacesAnExistingFileAtomically) {
  TempDirectory dir;
  std::string path = dir.file("w.safetensors");
  write_safetensors(path, {{"old", Tensor::full(DType::i32, {1}, 1)}});
  SafetensorsFile before(path);
  Tensor old = before.get("old");
  write_safetensors(path, {{"new", Tensor::full(DType::i32, {1}, 2)}});
  SafetensorsFile after(path);
  EXPECT_EQ(after.names(), std::vector<std::string>{"new"});
  EXPECT_EQ(old.item({0}), 1.0) << "the old mapping is unaffected by the rename";
  EXPECT_EQ(dir.listing(), std::vector<std::string>{"w.safetensors"});
}

// ---- sharded checkpoints -----------------------------------------------------------------------------------------

TEST(Checkpoint, ShardedRoundTripWithIndex) {
  TempDirectory dir;
  Rng rng(21);
  NamedTensors tensors = {
      {"model.layers.0.mlp.gate.weight", rng.normal_tensor(DType::bf16, {8, 16})},             // 256 B
      {"model.layers.0.mlp.experts.0.up_proj.weight", rng.normal_tensor(DType::f32, {8, 8})},  // 256
      {"model.layers.0.mlp.experts.1.up_proj.weight", rng.normal_tensor(DType::f32, {8, 8})},  // 256
      {"big", rng.int_tensor(DType::i8, {1000}, -127, 127)},                                   // 1000
      {"small", rng.int_tensor(DType::i64, {3}, -9, 9)}};                                      // 24
  std::string ckdir = dir.file("ckpt");
  std::vector<std::string> shards = write_sharded_checkpoint(ckdir, tensors, 600, {{"format", "pt"}});
  // 256 + 256 = 512 <= 600; +256 > 600 -> new shard; big alone (larger than the limit); small joins a new shard.
  EXPECT_EQ(shards, (std::vector<std::string>{"model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
                                              "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors"}));
  std::string index = read_bytes(ckdir + "/model.safetensors.index.json");
  EXPECT_NE(index.find("\"total_size\": 1792"), std::string::npos) << index;
  EXPECT_NE(index.find("\"big\": \"model-00003-of-00004.safetensors\""), std::string::npos) << index;

  for (const std::string& open_path : {ckdir, ckdir + "/model.safetensors.index.json"}) {
    SCOPED_TRACE(open_path);
    Checkpoint ck(open_path);
    EXPECT_EQ(ck.path(), open_path);
    EXPECT_EQ(ck.files().size(), 4u);
    std::vector<std::string> names = ck.names();
    EXPECT_EQ(names.size(), tensors.size());
    EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
    for (const auto& [name, t] : tensors) {
      EXPECT_TRUE(ck.has(name));
      EXPECT_TENSOR_EQ(t, ck.get(name));
      EXPECT_EQ(ck.entry(name).dtype, std::string(safetensors_dtype_name(t.dtype())));
    }
    EXPECT_EQ(ck.file_of("big"), (std::filesystem::path(ckdir) / "model-00003-of-00004.safetensors").string());
    EXPECT_FALSE(ck.has("missing"));
    EXPECT_THROWS_MSG(ck.get("model.layers.0.mlp.experts.2.up_proj.weight"), IoError,
                      open_path +
                          ": tensor \"model.layers.0.mlp.experts.2.up_proj.weight\": expected a tensor of this "
                          "checkpoint, got none");
    EXPECT_THROWS_MSG(ck.file_of("x"), IoError, "tensor \"x\": expected a tensor of this checkpoint");
  }
  EXPECT_EQ(SafetensorsFile(ckdir + "/" + shards[0]).metadata().at("format"), "pt");
}

TEST(Checkpoint, OneShardAndEmptyCheckpoints) {
  TempDirectory dir;
  std::vector<std::string> one =
      write_sharded_checkpoint(dir.file("one"), {{"x", Tensor::zeros(DType::f32, {4})}}, 1 << 20);
  EXPECT_EQ(one, std::vector<std::string>{"model-00001-of-00001.safetensors"});
  EXPECT_EQ(Checkpoint(dir.file("one")).names(), std::vector<std::string>{"x"});
  std::vector<std::string> none = write_sharded_checkpoint(dir.file("none"), {}, 1);
  EXPECT_EQ(none, std::vector<std::string>{"model-00001-of-00001.safetensors"});
  EXPECT_TRUE(Checkpoint(dir.file("none")).names().empty());
}

TEST(Checkpoint, SingleFileAndDirectoryWithModelSafetensors) {
  TempDirectory dir;
  Tensor t = Tensor::full(DType::f16, {2, 2}, 0.5);
  write_safetensors(dir.file("model.safetensors"), {{"w", t}});
  for (const std::string& p : {dir.file("model.safetensors"), dir.path().string()}) {
    Checkpoint ck(p);
    EXPECT_EQ(ck.files(), std::vector<std::string>{dir.file("model.safetensors")});
    EXPECT_EQ(ck.names(), std::vector<std::string>{"w"});
    EXPECT_TENSOR_EQ(t, ck.get("w"));
  }
}

TEST(Checkpoint, ShardedWriterErrors) {
  TempDirectory dir;
  Tensor t = Tensor::zeros(DType::f32, {2});
  EXPECT_THROWS_MSG(write_sharded_checkpoint(dir.file("c"), {{"a", t}}, 0), ValueError,
                    "write_sharded_checkpoint: max_shard_bytes: expected at least 1, got 0");
  EXPECT_THROWS_MSG(write_sharded_checkpoint(dir.file("c"), {{"a", t}, {"b", t}, {"a", t}}, 1), ValueError,
                    "write_sharded_checkpoint: tensors: expected each tensor name once, got the name \"a\" twice");
  EXPECT_TRUE(dir.listing().empty()) << "argument errors are found before anything is written";
  write_bytes(dir.file("file"), "x");
  EXPECT_THROWS_MSG(write_sharded_checkpoint(dir.file("file") + "/sub", {{"a", t}}, 1), IoError,
                    "write_sharded_checkpoint: " + dir.file("file") + "/sub: expected a directory that can be created");
  // A failing write removes the shards this call wrote: here the index path is a directory.
  std::filesystem::create_directories(dir.file("d/model.safetensors.index.json"));
  EXPECT_THROWS_MSG(write_sharded_checkpoint(dir.file("d"), {{"a", t}, {"b", t}}, 8), IoError,
                    "model.safetensors.index.json: expected a file that can be replaced");
  std::vector<std::string> left;
  for (const auto& e : std::filesystem::directory_iterator(dir.file("d"))) left.push_back(e.path().filename().string());
  EXPECT_EQ(left, std::vector<std::string>{"model.safetensors.index.json"});
}

TEST(CheckpointErrors, Paths) {
  TempDirectory dir;
  std::string missing = dir.file("nothing");
  EXPECT_THROWS_MSG(Checkpoint{missing}, IoError,
                    "Checkpoint: " + missing +
                        ": expected a .safetensors file, an index .json or a directory, got No "
                        "such file or directory");
  std::filesystem::create_directory(dir.file("emptydir"));
  EXPECT_THROWS_MSG(
      Checkpoint{dir.file("emptydir")}, IoError,
      "Checkpoint: " + dir.file("emptydir") +
          ": expected a directory holding model.safetensors or model.safetensors.index.json, got neither");
  std::string both = dir.file("both");
  write_sharded_checkpoint(both, {{"a", Tensor::zeros(DType::f32, {1})}}, 100);
  write_safetensors(both + "/model.safetensors", {{"a", Tensor::zeros(DType::f32, {1})}});
  EXPECT_THROWS_MSG(Checkpoint{both}, IoError,
                    "Checkpoint: " + both +
                        ": expected one of model.safetensors and model.safetensors.index.json, "
                        "got both (ambiguous: open the file you mean)");
  EXPECT_NO_THROW(Checkpoint{both + "/model.safetensors"});
}

TEST(CheckpointErrors, Index) {
  TempDirectory dir;
  write_safetensors(dir.file("s1.safetensors"), {{"a", Tensor::zeros(DType::f32, {1})}});
  std::string idx = dir.file("model.safetensors.index.json");
  auto expect_index_error = [&](const std::string& text, std::initializer_list<std::string_view> fragments) {
    write_bytes(idx, text);
    EXPECT_TRUE(testing::throws_with<IoError>([&] { Checkpoint ck(dir.path().string()); }, fragments)) << text;
  };
  expect_index_error("{", {idx + ": index: expected valid JSON, got invalid JSON ("});
  expect_index_error("[]", {idx + ": index: expected a JSON object with a weight_map, got an array"});
  expect_index_error("{\"metadata\": {}}", {idx + ": weight_map: expected an object (a required key), got none"});
  expect_index_error("{\"weight_map\": [\"a\"]}",
                     {idx + ": weight_map: expected an object of tensor name -> shard file, got an array"});
  expect_index_error("{\"weight_map\": {\"a\": \"s1.safetensors\"}, \"metadata\": 3}",
                     {idx + ": metadata: expected an object, got the number 3"});
  expect_index_error("{\"weight_map\": {\"a\": 1}}",
                     {idx + ": weight_map \"a\": expected a shard file name, got the number 1"});
  expect_index_error(
      "{\"weight_map\": {\"a\": \"../s1.safetensors\"}}",
      {idx + ": weight_map \"a\": expected a relative shard path inside the checkpoint directory (no \"..\"), "
             "got \"../s1.safetensors\""});
  expect_index_error("{\"weight_map\": {\"a\": \"/etc/passwd\"}}",
                     {"weight_map \"a\": expected a relative shard path", "\"/etc/passwd\""});
  expect_index_error("{\"weight_map\": {\"a\": \"\"}}",
                     {"weight_map \"a\": expected a relative shard path", "got \"\""});
  expect_index_error("{\"weight_map\": {\"a\": \"s1.safetensors\", \"a\": \"s1.safetensors\"}}",
                     {"index: expected each key of a JSON object once, got the key \"a\" twice"});
  expect_index_error("{\"weight_map\": {\"a\": \"s2.safetensors\"}}",
                     {idx + ": weight_map shard \"s2.safetensors\": expected an existing file " +
                      dir.file("s2.safetensors") + ", got No such file or directory"});
  expect_index_error(
      "{\"weight_map\": {\"a\": \"s1.safetensors\", \"b\": \"s1.safetensors\"}}",
      {idx + ": weight_map \"b\": expected a tensor present in its shard \"s1.safetensors\", got a shard "
             "without it"});
  write_bytes(dir.file("bad.safetensors"), image(kOk, "123"));
  expect_index_error("{\"weight_map\": {\"a\": \"bad.safetensors\"}}",
                     {dir.file("bad.safetensors") + ": tensor \"a\" data_offsets: expected end <= 3"});
  // Valid: extra top-level keys are ignored, shards may sit in subdirectories.
  std::filesystem::create_directory(dir.file("sub"));
  write_safetensors(dir.file("sub/s3.safetensors"),
                    {{"c", Tensor::full(DType::u8, {2}, 9)}, {"unlisted", Tensor::zeros(DType::u8, {1})}});
  write_bytes(idx, "{\"weight_map\": {\"a\": \"s1.safetensors\", \"c\": \"sub/s3.safetensors\"}, \"other\": [1]}");
  Checkpoint ck(idx);
  EXPECT_EQ(ck.names(), (std::vector<std::string>{"a", "c"})) << "tensors the index does not name are not part of it";
  EXPECT_EQ(ck.get("c").item({1}), 9.0);
}

// ---- Tensor::view_with_owner (tensor.h addition used by the reader) ----------------------------------------------

TEST(TensorViewWithOwner, KeepsTheOwnerAliveAndIsReadOnly) {
  bool freed = false;
  auto* buf = new float[4]{1, 2, 3, 4};
  std::shared_ptr<void> owner(buf, [&freed](void* p) {
    delete[] static_cast<float*>(p);
    freed = true;
  });
  Tensor t = Tensor::view_with_owner(owner, buf + 1, DType::f32, {3});
  owner.reset();
  EXPECT_FALSE(freed);
  EXPECT_TRUE(t.is_readonly());
  EXPECT_TRUE(t.owns_storage());
  EXPECT_EQ(t.item({0}), 2.0);
  Tensor n = t.narrow(0, 1, 2);
  t = Tensor();
  EXPECT_FALSE(freed);
  EXPECT_EQ(n.item({1}), 4.0);
  n = Tensor();
  EXPECT_TRUE(freed);
}

TEST(TensorViewWithOwner, Errors) {
  float x = 0;
  EXPECT_THROWS_MSG(Tensor::view_with_owner(nullptr, &x, DType::f32, {1}), ValueError,
                    "Tensor::view_with_owner: owner: expected a non-null owner, got null");
  auto owner = std::make_shared<int>(0);
  EXPECT_THROWS_MSG(Tensor::view_with_owner(owner, &x, DType::f32, {-1}), ValueError, "expected extents >= 0");
  Tensor s = Tensor::view_with_owner(owner, &x, DType::f32, {2, 2}, {0, 0});
  EXPECT_EQ(s.strides(), (Shape{0, 0}));
}

}  // namespace
}  // namespace moefuse
