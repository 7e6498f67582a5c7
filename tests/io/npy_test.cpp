// .npy: round trips for every dtype, numpy's exact header layout, hand-made headers of every version and
// spelling, Fortran order, and one corrupt file per rule (each message checked).
#include <gtest/gtest.h>

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

using testing::as_bytes;
using testing::read_bytes;
using testing::Rng;
using testing::TempDirectory;
using testing::write_bytes;

// A .npy image of the given version with `dict` as its header (taken as is: no padding, no newline) and `data`.
std::string npy(const std::string& dict, const std::string& data = {}, int major = 1, int minor = 0) {
  std::string s = "\x93NUMPY";
  s += char(major);
  s += char(minor);
  uint64_t n = dict.size();
  int len_bytes = major == 1 ? 2 : 4;
  for (int i = 0; i < len_bytes; ++i) s += char((n >> (8 * i)) & 0xff);
  return s + dict + data;
}

template <class T>
std::string raw(std::initializer_list<T> v) {
  return std::string(reinterpret_cast<const char*>(v.begin()), v.size() * sizeof(T));
}

Tensor parse(const std::string& bytes) { return parse_npy(as_bytes(bytes), "a.npy"); }

// ---- round trips -------------------------------------------------------------------------------------------------

TEST(Npy, RoundTripEveryDtypeAndRank) {
  TempDirectory dir;
  Rng rng(31);
  std::vector<Tensor> tensors = {
      rng.normal_tensor(DType::f32, {3, 4}),
      rng.normal_tensor(DType::f16, {5}),
      rng.int_tensor(DType::i8, {2, 3, 2}, -128, 127),
      rng.int_tensor(DType::i32, {7, 1}, INT32_MIN, INT32_MAX),
      rng.int_tensor(DType::i64, {2, 2}, INT64_MIN, INT64_MAX),
      rng.int_tensor(DType::u8, {9}, 0, 255),
      rng.int_tensor(DType::boolean, {4, 2}, 0, 1),
      Tensor::full(DType::f32, {}, 3.5),                        // rank 0
      Tensor::zeros(DType::i32, {0, 3}),                        // empty
      rng.normal_tensor(DType::f32, {1, 2, 1, 2, 1, 2, 1, 2}),  // rank 8
  };
  for (size_t i = 0; i < tensors.size(); ++i) {
    SCOPED_TRACE(tensors[i].describe());
    std::string path = dir.file(std::to_string(i));
    write_npy(path, tensors[i]);
    Tensor r = read_npy(path);
    EXPECT_TENSOR_EQ(tensors[i], r);
    EXPECT_TRUE(r.owns_storage());
    EXPECT_FALSE(r.is_readonly());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(r.data()) % 64, 0u);
  }
}

TEST(Npy, StridedInputIsWrittenRowMajor) {
  TempDirectory dir;
  Rng rng(32);
  Tensor base = rng.normal_tensor(DType::f16, {4, 6});
  Tensor t = base.transpose(0, 1).narrow(0, 1, 3);
  std::string path = dir.file("s.npy");
  write_npy(path, t);
  EXPECT_TENSOR_EQ(t.contiguous(), read_npy(path));
}

TEST(Npy, WriterProducesNumpysExactLayout) {
  // np.save("x.npy", np.arange(6, dtype="<f4").reshape(2, 3)) writes exactly these bytes.
  TempDirectory dir;
  std::string path = dir.file("x.npy");
  write_npy(path, Tensor::from_values<float>({2, 3}, {0, 1, 2, 3, 4, 5}));
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  std::string header = dict + std::string(118 - dict.size() - 1, ' ') + "\n";
  EXPECT_EQ(read_bytes(path), npy(header, raw<float>({0, 1, 2, 3, 4, 5})));
  // Every header is padded to a multiple of 64 and ends in '\n'; 1-D shapes have a trailing comma, 0-D are "()".
  for (const auto& [t, shape] : std::vector<std::pair<Tensor, std::string>>{
           {Tensor::zeros(DType::u8, {7}), "(7,)"},
           {Tensor::zeros(DType::boolean, {}), "()"},
           {Tensor::zeros(DType::i64, {1, 2, 3, 4, 5, 6, 7, 8}), "(1, 2, 3, 4, 5, 6, 7, 8)"}}) {
    write_npy(path, t);
    std::string b = read_bytes(path);
    size_t hlen = uint8_t(b[8]) | size_t(uint8_t(b[9])) << 8;
    EXPECT_EQ((10 + hlen) % 64, 0u);
    EXPECT_EQ(b[10 + hlen - 1], '\n');
    EXPECT_NE(b.find("'shape': " + shape + ", }"), std::string::npos) << b;
  }
  write_npy(path, Tensor::zeros(DType::boolean, {1}));
  EXPECT_NE(read_bytes(path).find("'descr': '|b1'"), std::string::npos);
  write_npy(path, Tensor::zeros(DType::i8, {1}));
  EXPECT_NE(read_bytes(path).find("'descr': '|i1'"), std::string::npos);
  write_npy(path, Tensor::zeros(DType::f16, {1}));
  EXPECT_NE(read_bytes(path).find("'descr': '<f2'"), std::string::npos);
}

TEST(Npy, HeaderSpellings) {
  std::string d = raw<int32_t>({1, -2, 3});
  // Versions 2.0 and 3.0 (4-byte header length), double quotes, spaces, newlines, key order, no trailing comma.
  for (const auto& [dict, major] : std::vector<std::pair<std::string, int>>{
           {"{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", 1},
           {"{'descr':'<i4','fortran_order':False,'shape':(3,)}", 1},
           {"  {\"shape\" : ( 3 , ) ,\n \"descr\" : \"<i4\" , \"fortran_order\" : False }  \n", 1},
           {"{'descr': '<i4', 'fortran_order': False, 'shape': (3L,), }", 1},  // Python 2 long
           {"{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", 2},
           {"{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", 3}}) {
    SCOPED_TRACE(dict);
    Tensor t = parse(npy(dict, d, major));
    EXPECT_EQ(t.dtype(), DType::i32);
    EXPECT_EQ(t.shape(), (Shape{3}));
    EXPECT_EQ(t.item({1}), -2.0);
  }
  EXPECT_EQ(parse(npy("{'descr': '<i1', 'fortran_order': False, 'shape': (2,)}", "\x01\xff")).item({1}), -1.0);
  EXPECT_EQ(parse(npy("{'descr': '<u1', 'fortran_order': False, 'shape': (1,)}", "\xff")).item({0}), 255.0);
  EXPECT_EQ(parse(npy("{'descr': '<b1', 'fortran_order': False, 'shape': ()}", "\x01")).item({}), 1.0);
  EXPECT_EQ(parse(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 0, 3)}")).shape(), (Shape{2, 0, 3}));
}

TEST(Npy, FortranOrderIsTransposedToRowMajor) {
  // np.asfortranarray(np.arange(6).reshape(2, 3)) stores column by column: 0 3 1 4 2 5.
  Tensor t = parse(npy("{'descr': '<i8', 'fortran_order': True, 'shape': (2, 3), }", raw<int64_t>({0, 3, 1, 4, 2, 5})));
  EXPECT_TENSOR_EQ(Tensor::from_values<int64_t>({2, 3}, {0, 1, 2, 3, 4, 5}), t);
  EXPECT_TRUE(t.is_contiguous());
  // 3-D: element (i, j, k) of shape (2, 3, 4) sits at i + 2 * (j + 3 * k) in Fortran order.
  std::vector<float> fdata(24), cdata(24);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) {
        float v = float(100 * i + 10 * j + k);
        fdata[size_t(i + 2 * (j + 3 * k))] = v;
        cdata[size_t((i * 3 + j) * 4 + k)] = v;
      }
  Tensor t3 = parse(npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3, 4), }",
                        std::string(reinterpret_cast<const char*>(fdata.data()), 96)));
  EXPECT_TENSOR_EQ(Tensor::from_values<float>({2, 3, 4}, std::span<const float>(cdata)), t3);
  // 1-D and empty arrays are the same in both orders.
  EXPECT_EQ(parse(npy("{'descr': '|u1', 'fortran_order': True, 'shape': (2,), }", "\x05\x06")).item({1}), 6.0);
  EXPECT_EQ(parse(npy("{'descr': '|u1', 'fortran_order': True, 'shape': (0, 2), }")).numel(), 0);
}

// ---- errors ------------------------------------------------------------------------------------------------------

#define EXPECT_NPY_ERROR(bytes, ...) EXPECT_THROWS_MSG(parse(bytes), IoError, "a.npy: ", __VA_ARGS__)

const std::string kDict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";

TEST(NpyErrors, MagicVersionAndLength) {
  EXPECT_NPY_ERROR(std::string(), "magic: expected a .npy file starting with \\x93NUMPY, got a file of 0 bytes");
  EXPECT_NPY_ERROR(std::string("\x93NUM"), "got a file of 4 bytes");
  EXPECT_NPY_ERROR(std::string("PK\x03\x04zipfile"),
                   "magic: expected a .npy file starting with \\x93NUMPY, got \"PK\\x03\\x04zi\"");
  EXPECT_NPY_ERROR(std::string("\x93NUMPY"),
                   "version: expected 2 version bytes after the magic, got the end of the file");
  EXPECT_NPY_ERROR(npy(kDict, "", 4, 0), "version: expected 1.0, 2.0 or 3.0, got 4.0");
  EXPECT_NPY_ERROR(npy(kDict, "", 1, 1), "version: expected 1.0, 2.0 or 3.0, got 1.1");
  EXPECT_NPY_ERROR(std::string("\x93NUMPY\x01\x00\x05", 9),
                   "header length: expected a file of at least 10 bytes, got 9 bytes");
  EXPECT_NPY_ERROR(std::string("\x93NUMPY\x02\x00\x05\x00\x00", 11),
                   "header length: expected a file of at least 12 bytes");
  std::string lie = npy(kDict, raw<float>({1, 2}));
  lie[8] = char(kDict.size() + 9);  // claims more header than the file holds
  EXPECT_NPY_ERROR(lie, "header length: expected at most " + std::to_string(kDict.size() + 8) +
                            " (the bytes after the length field), got " + std::to_string(kDict.size() + 9));
  std::string huge = npy("{}", "", 2);
  huge[10] = 0x20;  // 2 MiB
  EXPECT_NPY_ERROR(huge, "header length: expected at most 1048576 bytes, got 2097154");
}

TEST(NpyErrors, HeaderDict) {
  EXPECT_NPY_ERROR(npy("descr: <f4"),
                   "header: expected a dict literal starting with '{', got \"descr: <f4\" at header offset 0");
  EXPECT_NPY_ERROR(npy("{'descr': '<f4', 'fortran_order': False}"),
                   "header: expected the key 'shape', got a dict without it");
  EXPECT_NPY_ERROR(npy("{'fortran_order': False, 'shape': ()}"), "header: expected the key 'descr'");
  EXPECT_NPY_ERROR(npy("{'descr': '<f4', 'shape': ()}"), "header: expected the key 'fortran_order'");
  EXPECT_NPY_ERROR(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (), 'extra': 1}"),
                   "header: expected only the keys 'descr', 'fortran_order' and 'shape', got the key \"extra\"");
  EXPECT_NPY_ERROR(npy("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': ()}"),
                   "header: expected each key once, got the key \"descr\" twice");
  EXPECT_NPY_ERROR(npy("{descr: '<f4'}"), "header: expected a quoted key ('descr', 'fortran_order' or 'shape'), got");
  EXPECT_NPY_ERROR(npy("{'descr' '<f4'}"), "header: expected ':' after the key");
  EXPECT_NPY_ERROR(npy("{'descr': '<f4' 'fortran_order': False}"), "header: expected ',' or '}' after a value");
  EXPECT_NPY_ERROR(npy("{'descr': '<f4"), "header: expected a closing quote, got the end of the header");
  EXPECT_NPY_ERROR(npy("{'descr': '<\\f4'}"), "header: expected a plain quoted string (no escapes)");
  EXPECT_NPY_ERROR(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), } x"),
                   "header: expected only spaces after the dict, got \"x\"");
  EXPECT_NPY_ERROR(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), "), "header: expected a quoted key");
  EXPECT_NPY_ERROR(npy("{'descr': '<f4', 'fortran_order': false, 'shape': ()}"),
                   "fortran_order: expected True or False, got \"false, 'shape': ()}\"");
  EXPECT_NPY_ERROR(npy("{'descr': '<f4', 'fortran_order': Truest, 'shape': ()}"),
                   "fortran_order: expected True or False");
  EXPECT_NPY_ERROR(npy("{'descr': '<f4', 'fortran_order': 1, 'shape': ()}"), "fortran_order: expected True or False");
  EXPECT_NPY_ERROR(
      npy(std::string("{'descr': '\xff\xfe', 'fortran_order': False, 'shape': ()}")),
      "descr: expected a little-endian '<f4', '<f2', '|i1', '<i4', '<i8', '|u1' or '|b1', got \"\\xff\\xfe\"");
}

TEST(NpyErrors, Descr) {
  auto with = [](const std::string& descr) {
    return npy("{'descr': " + descr + ", 'fortran_order': False, 'shape': (2,), }", std::string(8, '\0'));
  };
  const std::string expected =
      "descr: expected a little-endian '<f4', '<f2', '|i1', '<i4', '<i8', '|u1' or '|b1', got ";
  EXPECT_NPY_ERROR(with("'>f4'"), expected + "\">f4\" (big-endian)");
  EXPECT_NPY_ERROR(with("'=f4'"), expected + "\"=f4\" (native byte order: state '<' or '|')");
  EXPECT_NPY_ERROR(with("'<f8'"), expected + "\"<f8\"");
  EXPECT_NPY_ERROR(with("'|f4'"), expected + "\"|f4\"");
  EXPECT_NPY_ERROR(with("'<V2'"), expected + "\"<V2\" (raw 2-byte values, e.g. bfloat16, which NumPy lacks)");
  EXPECT_NPY_ERROR(with("'<U3'"), expected + "\"<U3\"");
  EXPECT_NPY_ERROR(with("'O'"), expected + "\"O\"");
  EXPECT_NPY_ERROR(with("[('a', '<f4')]"),
                   "descr: expected a type string such as '<f4', got a structured dtype (a list)");
  EXPECT_NPY_ERROR(with("4"), "header: expected a type string such as '<f4', got \"4, 'fortran_order'");
}

TEST(NpyErrors, Shape) {
  auto with = [](const std::string& shape, const std::string& data = {}) {
    return npy("{'descr': '|u1', 'fortran_order': False, 'shape': " + shape + ", }", data);
  };
  EXPECT_NPY_ERROR(with("(3)", "abc"), "shape: expected a tuple such as (3,), got (3), an integer in parentheses");
  EXPECT_NPY_ERROR(with("[3]", "abc"), "shape: expected a tuple of integers such as (3, 4), got \"[3], }\"");
  EXPECT_NPY_ERROR(with("3", "abc"), "shape: expected a tuple of integers such as (3, 4)");
  EXPECT_NPY_ERROR(with("(-3,)"), "shape: expected integers >= 0, got \"-3,), }\"");
  EXPECT_NPY_ERROR(with("(3.0,)"), "shape: expected ',' or ')' in the tuple, got \".0,), }\"");
  EXPECT_NPY_ERROR(with("(,)"), "shape: expected a tuple of integers such as (3, 4), got \",), }\"");
  EXPECT_NPY_ERROR(with("(3,,)"), "shape: expected a tuple of integers such as (3, 4), got \",), }\"");
  EXPECT_NPY_ERROR(with("(3 4)"), "shape: expected ',' or ')' in the tuple");
  EXPECT_NPY_ERROR(with("(3,"), "shape: expected a tuple of integers such as (3, 4), got \", }\"");
  EXPECT_NPY_ERROR(with("(99999999999999999999,)"), "shape: expected extents that fit in int64");
  EXPECT_NPY_ERROR(with("(4294967296, 4294967296)"),
                   "shape: expected a shape whose size in bytes fits in 63 bits, got (4294967296, 4294967296)");
  EXPECT_NPY_ERROR(with("(0, 4294967296, 4294967296)"), "size in bytes fits in 63 bits");
  EXPECT_NPY_ERROR(with("(1, 1, 1, 1, 1, 1, 1, 1, 1)", "x"),
                   "shape: expected at most 8 dimensions, got (1, 1, 1, 1, 1, 1, 1, 1, 1)");
}

TEST(NpyErrors, Data) {
  EXPECT_NPY_ERROR(npy(kDict, raw<float>({1})),
                   "data: expected 8 bytes (shape (2,) of '<f4'), got 4 bytes (truncated)");
  EXPECT_NPY_ERROR(npy(kDict), "data: expected 8 bytes (shape (2,) of '<f4'), got 0 bytes (truncated)");
  EXPECT_NPY_ERROR(npy(kDict, raw<float>({1, 2, 3})),
                   "data: expected 8 bytes (shape (2,) of '<f4'), got 12 bytes (trailing data)");
  EXPECT_NPY_ERROR(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (0,), }", "x"),
                   "data: expected 0 bytes (shape (0,) of '<f4'), got 1 bytes (trailing data)");
}

TEST(NpyErrors, Files) {
  TempDirectory dir;
  std::string missing = dir.file("missing.npy");
  EXPECT_THROWS_MSG(read_npy(missing), IoError,
                    "read_npy: " + missing + ": expected a readable file, got No such file");
  EXPECT_THROWS_MSG(read_npy(dir.path().string()), IoError, "read_npy: ", "expected a regular file, got a directory");
  std::string truncated = dir.file("t.npy");
  write_bytes(truncated, npy(kDict, raw<float>({1})));
  EXPECT_THROWS_MSG(read_npy(truncated), IoError, truncated + ": data: expected 8 bytes", "(truncated)");
  std::string empty = dir.file("e.npy");
  write_bytes(empty, "");
  EXPECT_THROWS_MSG(read_npy(empty), IoError, empty + ": magic: expected a .npy file", "got a file of 0 bytes");
}

TEST(NpyErrors, Writer) {
  TempDirectory dir;
  std::string path = dir.file("w.npy");
  EXPECT_THROWS_MSG(
      write_npy(path, Tensor::zeros(DType::bf16, {2})), TypeError,
      "write_npy: t: expected dtype f32, f16, i8, u8, i32, i64 or bool (NumPy has no bfloat16), got bf16");
  EXPECT_THROWS_MSG(write_npy(path, Tensor()), ValueError, "write_npy: t: expected a tensor, got none");
  std::string nodir = dir.file("no/dir/w.npy");
  EXPECT_THROWS_MSG(write_npy(nodir, Tensor::zeros(DType::f32, {2})), IoError,
                    "write_npy: " + nodir + ": expected a writable location, got No such file or directory");
  std::filesystem::create_directory(dir.file("target.npy"));
  EXPECT_THROWS_MSG(write_npy(dir.file("target.npy"), Tensor::zeros(DType::f32, {2})), IoError,
                    "expected a file that can be replaced");
  EXPECT_EQ(dir.listing(), std::vector<std::string>{"target.npy"}) << "nothing partial left behind";
}

}  // namespace
}  // namespace moefuse
