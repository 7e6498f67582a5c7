// NumPy .npy reader (versions 1.0/2.0/3.0, strict header parsing) and writer (version 1.0, atomic).
#include <cctype>
#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <vector>

#include "base/check.h"
#include "io/files.h"
#include "moefuse/error.h"
#include "moefuse/io.h"

namespace moefuse {

namespace {

constexpr size_t kMaxNpyHeader = size_t(1) << 20;
constexpr char kMagic[] = "\x93NUMPY";

[[noreturn]] void fail(std::string_view file, std::string_view part, std::string_view expected, std::string_view got) {
  throw IoError(check::message(file, part, expected, got));
}

struct NpyType {
  std::string_view descr;  // as written
  DType dtype;
};

constexpr NpyType kNpyTypes[] = {
    {"<f4", DType::f32}, {"<f2", DType::f16}, {"|i1", DType::i8},  {"<i1", DType::i8},  {"<i4", DType::i32},
    {"<i8", DType::i64}, {"|u1", DType::u8},  {"<u1", DType::u8},  {"|b1", DType::boolean}, {"<b1", DType::boolean},
};

std::string_view npy_descr(DType t) {
  switch (t) {
    case DType::f32: return "<f4";
    case DType::f16: return "<f2";
    case DType::i8: return "|i1";
    case DType::u8: return "|u1";
    case DType::i32: return "<i4";
    case DType::i64: return "<i8";
    case DType::boolean: return "|b1";
    case DType::bf16: break;
  }
  return {};
}

// The header dict, a Python literal such as {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }.
struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  std::vector<int64_t> shape;
};

class HeaderParser {
 public:
  HeaderParser(std::string_view text, std::string_view file) : s_(text), file_(file) {}

  NpyHeader parse() {
    NpyHeader h;
    std::set<std::string> seen;
    skip_ws();
    expect('{', "a dict literal starting with '{'");
    for (;;) {
      skip_ws();
      if (peek() == '}') break;
      std::string key = parse_string("a quoted key ('descr', 'fortran_order' or 'shape')");
      if (key != "descr" && key != "fortran_order" && key != "shape")
        fail(file_, "header", "only the keys 'descr', 'fortran_order' and 'shape'",
             "the key " + io_detail::quote_for_message(key));
      if (!seen.insert(key).second)
        fail(file_, "header", "each key once", "the key " + io_detail::quote_for_message(key) + " twice");
      skip_ws();
      expect(':', "':' after the key");
      skip_ws();
      if (key == "descr") {
        if (peek() == '[') fail(file_, "descr", "a type string such as '<f4'", "a structured dtype (a list)");
        h.descr = parse_string("a type string such as '<f4'");
      } else if (key == "fortran_order") {
        if (take_word("True")) h.fortran_order = true;
        else if (take_word("False")) h.fortran_order = false;
        else fail(file_, "fortran_order", "True or False", rest());
      } else {
        h.shape = parse_shape();
      }
      skip_ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      skip_ws();
      if (peek() != '}') fail(file_, "header", "',' or '}' after a value", rest());
    }
    ++i_;  // '}'
    skip_ws();
    if (i_ != s_.size()) fail(file_, "header", "only spaces after the dict", rest());
    for (const char* k : {"descr", "fortran_order", "shape"})
      if (!seen.count(k)) fail(file_, "header", std::string("the key '") + k + "'", "a dict without it");
    return h;
  }

 private:
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  std::string rest() const {
    if (i_ >= s_.size()) return "the end of the header";
    return io_detail::quote_for_message(s_.substr(i_), 40) + " at header offset " + std::to_string(i_);
  }
  void expect(char c, std::string_view what) {
    if (peek() != c) fail(file_, "header", what, rest());
    ++i_;
  }
  bool take_word(std::string_view w) {
    if (s_.substr(i_, w.size()) != w) return false;
    size_t j = i_ + w.size();
    if (j < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[j])) || s_[j] == '_')) return false;
    i_ = j;
    return true;
  }
  std::string parse_string(std::string_view what) {
    char q = peek();
    if (q != '\'' && q != '"') fail(file_, "header", what, rest());
    size_t start = ++i_;
    while (i_ < s_.size() && s_[i_] != q) {
      if (s_[i_] == '\\' || s_[i_] == '\n') fail(file_, "header", "a plain quoted string (no escapes)", rest());
      ++i_;
    }
    if (i_ >= s_.size()) fail(file_, "header", "a closing quote", "the end of the header");
    std::string out(s_.substr(start, i_ - start));
    ++i_;
    return out;
  }
  std::vector<int64_t> parse_shape() {
    std::vector<int64_t> dims;
    if (peek() != '(') fail(file_, "shape", "a tuple of integers such as (3, 4)", rest());
    ++i_;
    bool trailing_comma = false;
    for (;;) {
      skip_ws();
      if (peek() == ')') break;
      char c = peek();
      if (c == '-') fail(file_, "shape", "integers >= 0", rest());
      if (c < '0' || c > '9') fail(file_, "shape", "a tuple of integers such as (3, 4)", rest());
      uint64_t v = 0;
      while (peek() >= '0' && peek() <= '9') {
        if (v > (uint64_t(std::numeric_limits<int64_t>::max()) - uint64_t(peek() - '0')) / 10)
          fail(file_, "shape", "extents that fit in int64", rest());
        v = v * 10 + uint64_t(peek() - '0');
        ++i_;
      }
      if (peek() == 'L' || peek() == 'l') ++i_;  // Python 2 long
      dims.push_back(int64_t(v));
      skip_ws();
      trailing_comma = false;
      if (peek() == ',') {
        ++i_;
        trailing_comma = true;
        continue;
      }
      skip_ws();
      if (peek() != ')') fail(file_, "shape", "',' or ')' in the tuple", rest());
    }
    ++i_;
    // Python: "(3)" is the integer 3, not a tuple; numpy rejects it.
    if (dims.size() == 1 && !trailing_comma)
      fail(file_, "shape", "a tuple such as (3,)", "(" + std::to_string(dims[0]) + "), an integer in parentheses");
    return dims;
  }

  std::string_view s_;
  std::string_view file_;
  size_t i_ = 0;
};

std::string shape_repr(std::span<const int64_t> shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

}  // namespace

Tensor parse_npy(std::span<const std::byte> bytes, std::string_view file) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t size = bytes.size();
  if (size < 6 || std::memcmp(p, kMagic, 6) != 0)
    fail(file, "magic", "a .npy file starting with \\x93NUMPY",
         size < 6 ? "a file of " + std::to_string(size) + " bytes"
                  : io_detail::quote_for_message(std::string_view(reinterpret_cast<const char*>(p), 6)));
  if (size < 8) fail(file, "version", "2 version bytes after the magic", "the end of the file");
  const unsigned major = p[6], minor = p[7];
  if ((major != 1 && major != 2 && major != 3) || minor != 0)
    fail(file, "version", "1.0, 2.0 or 3.0", std::to_string(major) + "." + std::to_string(minor));
  size_t prefix = major == 1 ? 10 : 12;
  if (size < prefix) fail(file, "header length", "a file of at least " + std::to_string(prefix) + " bytes",
                          std::to_string(size) + " bytes");
  size_t hlen = major == 1 ? size_t(p[8]) | size_t(p[9]) << 8
                           : size_t(p[8]) | size_t(p[9]) << 8 | size_t(p[10]) << 16 | size_t(p[11]) << 24;
  if (hlen > kMaxNpyHeader) fail(file, "header length", "at most " + std::to_string(kMaxNpyHeader) + " bytes",
                                 std::to_string(hlen));
  if (hlen > size - prefix)
    fail(file, "header length", "at most " + std::to_string(size - prefix) + " (the bytes after the length field)",
         std::to_string(hlen));
  std::string_view text(reinterpret_cast<const char*>(p + prefix), hlen);
  NpyHeader h = HeaderParser(text, file).parse();

  const NpyType* type = nullptr;
  for (const auto& t : kNpyTypes)
    if (t.descr == h.descr) type = &t;
  if (!type) {
    std::string got = io_detail::quote_for_message(h.descr);
    if (!h.descr.empty() && h.descr[0] == '>') got += " (big-endian)";
    else if (!h.descr.empty() && h.descr[0] == '=') got += " (native byte order: state '<' or '|')";
    else if (h.descr == "<V2" || h.descr == "|V2") got += " (raw 2-byte values, e.g. bfloat16, which NumPy lacks)";
    fail(file, "descr", "a little-endian '<f4', '<f2', '|i1', '<i4', '<i8', '|u1' or '|b1'", got);
  }
  if (h.shape.size() > size_t(kMaxDims))
    fail(file, "shape", "at most " + std::to_string(kMaxDims) + " dimensions", shape_repr(h.shape));

  const size_t es = dtype_size(type->dtype);
  uint64_t nonzero = 1, nbytes = 0;
  bool overflow = false, empty = false;
  for (int64_t d : h.shape) {
    if (d == 0) empty = true;
    else overflow |= __builtin_mul_overflow(nonzero, uint64_t(d), &nonzero);
  }
  if (overflow || __builtin_mul_overflow(nonzero, uint64_t(es), &nbytes) ||
      nbytes > uint64_t(std::numeric_limits<int64_t>::max()))
    fail(file, "shape", "a shape whose size in bytes fits in 63 bits", shape_repr(h.shape));
  if (empty) nbytes = 0;
  const size_t data_off = prefix + hlen;
  const uint64_t have = size - data_off;
  if (have != nbytes)
    fail(file, "data",
         std::to_string(nbytes) + " bytes (shape " + shape_repr(h.shape) + " of '" + h.descr + "')",
         std::to_string(have) + (have < nbytes ? " bytes (truncated)" : " bytes (trailing data)"));

  Shape shape{std::span<const int64_t>(h.shape)};
  Tensor t = Tensor::empty(type->dtype, shape);
  if (nbytes == 0) return t;
  if (!h.fortran_order || h.shape.size() < 2) {
    std::memcpy(t.data(), p + data_off, nbytes);
    return t;
  }
  // Column-major data: read it through Fortran strides and copy into row-major order.
  Tensor raw = Tensor::empty(type->dtype, Shape{int64_t(nbytes / es)});
  std::memcpy(raw.data(), p + data_off, nbytes);
  Shape strides;
  int64_t s = 1;
  for (int64_t d : h.shape) {
    strides.push_back(s);
    s *= d;
  }
  return Tensor::view(static_cast<const void*>(raw.data()), type->dtype, shape, strides).clone();
}

Tensor read_npy(const std::string& path) {
  // Read with pread, not through the mapping: the tensor is a copy anyway, and a file that shrinks while it is read
  // is then an IoError rather than a SIGBUS.
  const io_detail::MappedFile file(path, "read_npy");
  std::vector<std::byte> bytes(file.size());
  file.read_at(0, bytes.data(), bytes.size(), "data");
  return parse_npy(std::span<const std::byte>(bytes.data(), bytes.size()), path);
}

void write_npy(const std::string& path, const Tensor& t) {
  check::defined("write_npy", "t", t);
  std::string_view descr = npy_descr(t.dtype());
  if (descr.empty())
    check::fail_type("write_npy", "t", "dtype f32, f16, i8, u8, i32, i64 or bool (NumPy has no bfloat16)",
                     std::string(dtype_name(t.dtype())));
  std::vector<int64_t> dims(t.shape().begin(), t.shape().end());
  std::string dict = "{'descr': '" + std::string(descr) + "', 'fortran_order': False, 'shape': " + shape_repr(dims) +
                     ", }";
  // Pad with spaces so that magic + version + length + dict + '\n' is a multiple of 64 bytes (numpy's alignment).
  size_t prefix = 10;
  auto padding = [&] { return (64 - (prefix + dict.size() + 1) % 64) % 64; };
  if (dict.size() + padding() + 1 > 65535) prefix = 12;  // version 2.0: 4-byte header length
  dict.append(padding(), ' ');
  dict += '\n';
  size_t hlen = dict.size();
  unsigned char head[12];
  std::memcpy(head, kMagic, 6);
  head[6] = prefix == 10 ? 1 : 2;
  head[7] = 0;
  for (size_t i = 0; i < prefix - 8; ++i) head[8 + i] = static_cast<unsigned char>(hlen >> (8 * i));
  Tensor c = t.contiguous();
  io_detail::write_file_atomic(path, "write_npy", [&](const io_detail::ByteSink& sink) {
    sink(head, prefix);
    sink(dict.data(), dict.size());
    if (c.numel() > 0) sink(c.data(), size_t(c.numel()) * c.element_size());
  });
}

}  // namespace moefuse
