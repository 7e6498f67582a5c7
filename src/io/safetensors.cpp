// safetensors: reader (mmap + strict header validation), writer (atomic), sharded writer, Checkpoint.
// Over 500 lines: the reader's validation rules and the writers share the format's private helpers (dtype table,
// header encoding); each rule is a few lines next to the others.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <numeric>
#include <set>

#include "base/check.h"
#include "io/files.h"
#include "io/json_util.h"
#include "io/safetensors_stream.h"
#include "moefuse/error.h"
#include "moefuse/io.h"

namespace moefuse {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kMaxHeaderBytes = 100000000;  // as huggingface/safetensors (HeaderTooLarge)

struct DtypeInfo {
  std::string_view name;
  uint64_t bits;
  bool supported;  // readable into a moefuse Tensor
  DType dtype;
};

// Every dtype of the safetensors format (safetensors/src/tensor.rs) with its size in bits.
constexpr DtypeInfo kDtypes[] = {
    {"BOOL", 8, true, DType::boolean}, {"U8", 8, true, DType::u8},        {"I8", 8, true, DType::i8},
    {"F8_E5M2", 8, false, DType::u8},  {"F8_E4M3", 8, false, DType::u8},  {"F8_E8M0", 8, false, DType::u8},
    {"I16", 16, false, DType::u8},     {"U16", 16, false, DType::u8},     {"F16", 16, true, DType::f16},
    {"BF16", 16, true, DType::bf16},   {"I32", 32, true, DType::i32},     {"U32", 32, false, DType::u8},
    {"F32", 32, true, DType::f32},     {"F64", 64, false, DType::u8},     {"I64", 64, true, DType::i64},
    {"U64", 64, false, DType::u8},     {"C64", 64, false, DType::u8},     {"F4", 4, false, DType::u8},
    {"F6_E2M3", 6, false, DType::u8},  {"F6_E3M2", 6, false, DType::u8},
};

const DtypeInfo* find_dtype(std::string_view name) {
  for (const auto& d : kDtypes)
    if (d.name == name) return &d;
  return nullptr;
}

std::string u64(uint64_t v) { return std::to_string(v); }

// "tensor \"name\"" or "tensor \"name\" <key>"
std::string tensor_arg(std::string_view name, std::string_view key = {}) {
  std::string s = "tensor " + io_detail::quote_for_message(name, 200);
  if (!key.empty()) s.append(" ").append(key);
  return s;
}

[[noreturn]] void fail(std::string_view file, std::string_view arg, std::string_view expected, std::string_view got) {
  throw IoError(check::message(file, arg, expected, got));
}

}  // namespace

struct SafetensorsFile::Impl {
  std::string path;
  std::shared_ptr<const void> owner;  // keeps `base` valid: the mapping, or the in-memory copy
  std::shared_ptr<const io_detail::MappedFile> file;  // the mapping (null for from_bytes), for reads by pread
  const std::byte* data = nullptr;    // start of the data section
  uint64_t data_file_offset = 0;      // where the data section starts in the file
  uint64_t data_size = 0;
  std::map<std::string, SafetensorsEntry, std::less<>> entries;
  std::map<std::string, std::string> metadata;

  void parse(const std::byte* bytes, uint64_t size);
  const SafetensorsEntry& find(std::string_view name) const;
  // The dtype of a tensor that get() and read() can return (IoError naming the tensor otherwise).
  const DtypeInfo& readable(std::string_view name, const SafetensorsEntry& e) const;
  // Bytes [offset, offset + n) of the tensor's data, copied by pread (never through the mapping).
  void copy(std::string_view name, const SafetensorsEntry& e, uint64_t offset, void* dst, size_t n) const;
};

void SafetensorsFile::Impl::parse(const std::byte* bytes, uint64_t size) {
  const std::string& f = path;
  if (size < 8) fail(f, "header length", "a file of at least 8 bytes", u64(size) + " bytes");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | uint64_t(std::to_integer<uint8_t>(bytes[i]));
  if (n > kMaxHeaderBytes) fail(f, "header length", "at most " + u64(kMaxHeaderBytes) + " bytes", u64(n));
  if (n > size - 8)
    fail(f, "header length", "at most " + u64(size - 8) + " (the bytes after the length field)", u64(n));
  std::string_view text(reinterpret_cast<const char*>(bytes + 8), size_t(n));
  // Depth 3 is all a valid header needs: root object > tensor entry > shape / data_offsets array.
  json header = io_detail::parse_json_strict(text, f, "header", 3);
  if (!header.is_object()) fail(f, "header", "a JSON object", io_detail::describe_json(header));
  data = bytes + 8 + n;
  data_file_offset = 8 + n;
  data_size = size - 8 - n;

  for (auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) fail(f, "__metadata__", "an object of strings", io_detail::describe_json(value));
      for (auto& [k, v] : value.items()) {
        if (!v.is_string())
          fail(f, "__metadata__ " + io_detail::quote_for_message(k), "a string", io_detail::describe_json(v));
        metadata.emplace(k, v.get<std::string>());
      }
      continue;
    }
    if (!value.is_object())
      fail(f, tensor_arg(name), "an object {dtype, shape, data_offsets}", io_detail::describe_json(value));
    for (auto& [k, v] : value.items()) {
      (void)v;
      if (k != "dtype" && k != "shape" && k != "data_offsets")
        fail(f, tensor_arg(name, io_detail::escape_for_message(k)), "only the keys dtype, shape and data_offsets",
             "an unknown key");
    }
    for (const char* k : {"dtype", "shape", "data_offsets"})
      if (!value.contains(k)) fail(f, tensor_arg(name, k), "a value (a required key)", "none");

    SafetensorsEntry e;
    const json& jd = value["dtype"];
    if (!jd.is_string()) fail(f, tensor_arg(name, "dtype"), "a string", io_detail::describe_json(jd));
    e.dtype = jd.get<std::string>();
    const DtypeInfo* info = find_dtype(e.dtype);
    if (!info) {
      std::string all;
      for (const auto& d : kDtypes) all += (all.empty() ? "" : ", ") + std::string(d.name);
      fail(f, tensor_arg(name, "dtype"), "a safetensors dtype (" + all + ")", io_detail::quote_for_message(e.dtype));
    }

    const json& js = value["shape"];
    if (!js.is_array()) fail(f, tensor_arg(name, "shape"), "an array of integers >= 0", io_detail::describe_json(js));
    // Size in bits, from the product of the non-zero extents (so that a shape with a zero extent still has a
    // numel that Shape can compute without overflow).
    uint64_t nonzero = 1;
    bool overflow = false, empty = false;
    for (const json& d : js) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
        fail(f, tensor_arg(name, "shape"), "an array of integers >= 0", io_detail::describe_json(d) + " in it");
      uint64_t v = d.get<uint64_t>();
      e.shape.push_back(int64_t(v));
      if (v == 0) empty = true;
      else overflow |= __builtin_mul_overflow(nonzero, v, &nonzero);
    }
    uint64_t bits = 0;
    if (overflow || __builtin_mul_overflow(nonzero, info->bits, &bits) ||
        bits > uint64_t(std::numeric_limits<int64_t>::max()))
      fail(f, tensor_arg(name, "shape"), "a shape whose size in bits fits in 63 bits", js.dump());
    if (empty) bits = 0;
    if (bits % 8 != 0)
      fail(f, tensor_arg(name, "shape"), "a whole number of bytes (" + u64(info->bits) + "-bit " + e.dtype + ")",
           js.dump() + " (" + u64(bits) + " bits)");

    const json& jo = value["data_offsets"];
    if (!jo.is_array() || jo.size() != 2 || !jo[0].is_number_unsigned() || !jo[1].is_number_unsigned())
      fail(f, tensor_arg(name, "data_offsets"), "[begin, end], two integers >= 0",
           jo.is_array() ? jo.dump() : io_detail::describe_json(jo));
    e.begin = jo[0].get<uint64_t>();
    e.end = jo[1].get<uint64_t>();
    if (e.begin > e.end) fail(f, tensor_arg(name, "data_offsets"), "begin <= end", jo.dump());
    if (e.end > data_size)
      fail(f, tensor_arg(name, "data_offsets"),
           "end <= " + u64(data_size) + " (the size of the data section)", jo.dump());
    if (e.end - e.begin != bits / 8)
      fail(f, tensor_arg(name, "data_offsets"),
           "end - begin = " + u64(bits / 8) + " bytes (shape " + js.dump() + " of " + e.dtype + ")",
           jo.dump() + " (" + u64(e.end - e.begin) + " bytes)");
    entries.emplace(name, std::move(e));
  }

  // The non-empty tensors must tile the data section exactly.
  std::vector<const std::pair<const std::string, SafetensorsEntry>*> order;
  for (const auto& kv : entries)
    if (kv.second.end > kv.second.begin) order.push_back(&kv);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->second.begin < b->second.begin; });
  uint64_t cursor = 0;
  const std::string* prev = nullptr;
  for (const auto* kv : order) {
    const SafetensorsEntry& e = kv->second;
    if (e.begin < cursor)
      fail(f, tensor_arg(kv->first, "data_offsets"),
           "a byte range not overlapping tensor " + io_detail::quote_for_message(*prev, 200) + " (which ends at " +
               u64(cursor) + ")",
           "[" + u64(e.begin) + ", " + u64(e.end) + "]");
    if (e.begin > cursor)
      fail(f, tensor_arg(kv->first, "data_offsets"),
           "begin = " + u64(cursor) + " (tensor data contiguous from the start of the data section)",
           "[" + u64(e.begin) + ", " + u64(e.end) + "], leaving bytes " + u64(cursor) + ".." + u64(e.begin) +
               " unused");
    cursor = e.end;
    prev = &kv->first;
  }
  if (cursor != data_size)
    fail(f, "data section", u64(cursor) + " bytes (the end of the last tensor)",
         u64(data_size) + " bytes (trailing data)");
}

const SafetensorsEntry& SafetensorsFile::Impl::find(std::string_view name) const {
  auto it = entries.find(name);
  if (it == entries.end()) fail(path, tensor_arg(name), "a tensor in this file", "none");
  return it->second;
}

SafetensorsFile::SafetensorsFile(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

SafetensorsFile::SafetensorsFile(const std::string& path) {
  auto map = std::make_shared<io_detail::MappedFile>(path, "SafetensorsFile");
  auto impl = std::make_shared<Impl>();
  impl->path = path;
  impl->owner = map;
  impl->file = map;
  impl->parse(map->data(), map->size());
  impl_ = std::move(impl);
}

SafetensorsFile SafetensorsFile::from_bytes(std::span<const std::byte> bytes, std::string source_name) {
  // Exactly sized copy: an out-of-bounds read would land in an allocator redzone under AddressSanitizer.
  std::shared_ptr<std::byte[]> copy(new std::byte[bytes.size()]);
  if (!bytes.empty()) std::memcpy(copy.get(), bytes.data(), bytes.size());
  auto impl = std::make_shared<Impl>();
  impl->path = std::move(source_name);
  impl->owner = copy;
  impl->parse(copy.get(), bytes.size());
  return SafetensorsFile(std::move(impl));
}

const std::string& SafetensorsFile::path() const { return impl_->path; }

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(impl_->entries.size());
  for (const auto& kv : impl_->entries) out.push_back(kv.first);
  return out;
}

bool SafetensorsFile::has(std::string_view name) const { return impl_->entries.find(name) != impl_->entries.end(); }

const SafetensorsEntry& SafetensorsFile::entry(std::string_view name) const { return impl_->find(name); }

const std::map<std::string, std::string>& SafetensorsFile::metadata() const { return impl_->metadata; }

const DtypeInfo& SafetensorsFile::Impl::readable(std::string_view name, const SafetensorsEntry& e) const {
  const DtypeInfo* info = find_dtype(e.dtype);
  if (!info->supported)
    fail(path, tensor_arg(name, "dtype"), "F32, F16, BF16, I8, U8, I32, I64 or BOOL (the dtypes moefuse reads)",
         e.dtype);
  if (e.shape.size() > size_t(kMaxDims))
    fail(path, tensor_arg(name, "shape"), "at most " + std::to_string(kMaxDims) + " dimensions",
         std::to_string(e.shape.size()) + " dimensions");
  return *info;
}

void SafetensorsFile::Impl::copy(std::string_view name, const SafetensorsEntry& e, uint64_t offset, void* dst,
                                 size_t n) const {
  const uint64_t size = e.end - e.begin;
  if (offset > size || n > size - offset)
    check::fail_value("SafetensorsFile::read_bytes", "offset, n",
                      "a byte range inside tensor " + io_detail::quote_for_message(name, 200) + " (" + u64(size) +
                          " bytes)",
                      "[" + u64(offset) + ", " + u64(offset) + " + " + u64(n) + ")");
  if (n == 0) return;
  if (file) file->read_at(data_file_offset + e.begin + offset, dst, n, tensor_arg(name));
  else std::memcpy(dst, data + e.begin + offset, n);
}

Tensor SafetensorsFile::get(std::string_view name) const {
  const SafetensorsEntry& e = impl_->find(name);
  const DtypeInfo& info = impl_->readable(name, e);
  Shape shape{std::span<const int64_t>(e.shape)};
  const std::byte* p = impl_->data + e.begin;
  if (reinterpret_cast<uintptr_t>(p) % dtype_size(info.dtype) != 0) return read(name);
  return Tensor::view_with_owner(std::const_pointer_cast<void>(impl_->owner), p, info.dtype, shape);
}

Tensor SafetensorsFile::read(std::string_view name) const {
  const SafetensorsEntry& e = impl_->find(name);
  const DtypeInfo& info = impl_->readable(name, e);
  Tensor t = Tensor::empty(info.dtype, Shape{std::span<const int64_t>(e.shape)});
  impl_->copy(name, e, 0, t.data(), size_t(e.end - e.begin));
  return t.as_readonly();
}

void SafetensorsFile::read_bytes(std::string_view name, uint64_t offset, void* dst, size_t n) const {
  impl_->copy(name, impl_->find(name), offset, dst, n);
}

std::string_view safetensors_dtype_name(DType dtype) {
  for (const auto& d : kDtypes)
    if (d.supported && d.dtype == dtype) return d.name;
  return "?";
}

// ---- writing -----------------------------------------------------------------------------------------------------

namespace {

void check_named_tensors(std::string_view who, const NamedTensors& tensors) {
  std::set<std::string_view> seen;
  for (const auto& [name, t] : tensors) {
    if (name.empty()) check::fail_value(who, "tensors", "non-empty tensor names", "an empty name");
    if (name == "__metadata__")
      check::fail_value(who, "tensors", "tensor names other than __metadata__ (reserved)", "__metadata__");
    if (!seen.insert(name).second)
      check::fail_value(who, "tensors", "each tensor name once", "the name " + io_detail::quote_for_message(name) +
                                                                     " twice");
    if (!t.defined()) check::fail_value(who, tensor_arg(name), "a defined tensor", "an undefined one");
  }
}

uint64_t tensor_bytes(const Tensor& t) { return uint64_t(t.numel()) * t.element_size(); }

// Lays out (largest elements first, so every tensor is aligned to its element size) and streams the file.
// `tensors` already checked.
void write_safetensors_checked(std::string_view who, const std::string& path, const NamedTensors& tensors,
                               const std::map<std::string, std::string>& metadata) {
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return tensors[a].second.element_size() > tensors[b].second.element_size();
  });
  std::vector<io_detail::StreamedTensor> entries;
  for (size_t i : order) {
    const std::string& name = tensors[i].first;
    const Tensor& t = tensors[i].second;  // not a structured binding: clang 14 cannot capture one
    entries.push_back(io_detail::StreamedTensor{
        name, std::string(safetensors_dtype_name(t.dtype())), std::vector<int64_t>(t.shape().begin(), t.shape().end()),
        tensor_bytes(t),
        [&t](const io_detail::ByteSink& sink) {
          if (t.numel() == 0) return;
          const Tensor c = t.contiguous();
          sink(c.data(), tensor_bytes(c));
        }});
  }
  io_detail::write_safetensors_stream(who, path, entries, metadata);
}

std::string shard_name(size_t i, size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, n);
  return buf;
}

}  // namespace

void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata) {
  check_named_tensors("write_safetensors", tensors);
  write_safetensors_checked("write_safetensors", path, tensors, metadata);
}

std::vector<std::string> write_sharded_checkpoint(const std::string& dir, const NamedTensors& tensors,
                                                  int64_t max_shard_bytes,
                                                  const std::map<std::string, std::string>& metadata) {
  const char* who = "write_sharded_checkpoint";
  check_named_tensors(who, tensors);
  if (max_shard_bytes < 1) check::fail_value(who, "max_shard_bytes", "at least 1", std::to_string(max_shard_bytes));

  std::vector<NamedTensors> shards;
  uint64_t current = 0, total = 0;
  for (const auto& nt : tensors) {
    uint64_t b = tensor_bytes(nt.second);
    if (shards.empty() || (!shards.back().empty() && current + b > uint64_t(max_shard_bytes))) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(nt);
    current += b;
    total += b;
  }
  if (shards.empty()) shards.emplace_back();  // no tensors: one empty shard, so the checkpoint is well-formed

  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw IoError(check::message(who, dir, "a directory that can be created", ec.message()));

  std::vector<std::string> names, written;
  json weight_map = json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    names.push_back(shard_name(i, shards.size()));
    for (const auto& nt : shards[i]) weight_map[nt.first] = names.back();
  }
  try {
    for (size_t i = 0; i < shards.size(); ++i) {
      std::string p = (fs::path(dir) / names[i]).string();
      write_safetensors_checked(who, p, shards[i], metadata);
      written.push_back(p);
    }
    json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    std::string text;
    try {
      text = index.dump(2, ' ', false, json::error_handler_t::strict) + "\n";
    } catch (const json::exception&) {
      check::fail_value(who, "tensors", "names in valid UTF-8", "invalid UTF-8");
    }
    io_detail::write_file_atomic((fs::path(dir) / "model.safetensors.index.json").string(), who,
                                 [&](const io_detail::ByteSink& sink) { sink(text.data(), text.size()); });
  } catch (...) {
    for (const auto& p : written) fs::remove(p, ec);
    throw;
  }
  return names;
}

// ---- Checkpoint --------------------------------------------------------------------------------------------------

namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

Checkpoint::Checkpoint(const std::string& path) : path_(path) {
  const char* who = "Checkpoint";
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st))
    throw IoError(check::message(who, path, "a .safetensors file, an index .json or a directory",
                                 ec ? ec.message() : "No such file or directory"));
  fs::path index_path;
  if (fs::is_directory(st)) {
    fs::path single = fs::path(path) / "model.safetensors";
    fs::path index = fs::path(path) / "model.safetensors.index.json";
    bool has_single = fs::exists(single, ec), has_index = fs::exists(index, ec);
    if (has_single && has_index)
      throw IoError(check::message(who, path, "one of model.safetensors and model.safetensors.index.json",
                                   "both (ambiguous: open the file you mean)"));
    if (!has_single && !has_index)
      throw IoError(check::message(who, path, "a directory holding model.safetensors or model.safetensors.index.json",
                                   "neither"));
    if (has_single) {
      shards_.emplace_back(single.string());
    } else {
      index_path = index;
    }
  } else if (ends_with(path, ".json")) {
    index_path = path;
  } else {
    shards_.emplace_back(path);
  }

  if (index_path.empty()) {
    for (const std::string& n : shards_[0].names()) where_.emplace(n, 0);
    return;
  }

  const std::string ip = index_path.string();
  std::string text = io_detail::read_whole_file(ip, who);
  json index = io_detail::parse_json_strict(text, ip, "index", 64);
  if (!index.is_object()) fail(ip, "index", "a JSON object with a weight_map", io_detail::describe_json(index));
  if (!index.contains("weight_map")) fail(ip, "weight_map", "an object (a required key)", "none");
  const json& wm = index["weight_map"];
  if (!wm.is_object()) fail(ip, "weight_map", "an object of tensor name -> shard file", io_detail::describe_json(wm));
  if (index.contains("metadata") && !index["metadata"].is_object())
    fail(ip, "metadata", "an object", io_detail::describe_json(index["metadata"]));

  std::map<std::string, std::vector<std::string>> by_shard;
  for (auto& [name, file] : wm.items()) {
    std::string arg = "weight_map " + io_detail::quote_for_message(name, 200);
    if (!file.is_string()) fail(ip, arg, "a shard file name", io_detail::describe_json(file));
    const std::string& s = file.get_ref<const std::string&>();
    fs::path rel(s);
    bool bad = s.empty() || rel.is_absolute() || std::memchr(s.data(), '\0', s.size()) != nullptr;
    for (const auto& part : rel)
      if (part == "..") bad = true;
    if (bad)
      fail(ip, arg, "a relative shard path inside the checkpoint directory (no \"..\")",
           io_detail::quote_for_message(s, 200));
    by_shard[s].push_back(name);
  }
  fs::path base = index_path.parent_path();
  for (const auto& [file, tensor_names] : by_shard) {
    const std::string shard_path = (base / file).string();
    if (!fs::exists(shard_path, ec))
      fail(ip, "weight_map shard " + io_detail::quote_for_message(file, 200), "an existing file " + shard_path,
           ec ? ec.message() : "No such file or directory");
    shards_.emplace_back(shard_path);
    const SafetensorsFile& shard = shards_.back();
    for (const std::string& n : tensor_names) {
      if (!shard.has(n))
        fail(ip, "weight_map " + io_detail::quote_for_message(n, 200),
             "a tensor present in its shard " + io_detail::quote_for_message(file, 200), "a shard without it");
      where_.emplace(n, shards_.size() - 1);
    }
  }
}

std::vector<std::string> Checkpoint::files() const {
  std::vector<std::string> out;
  for (const auto& s : shards_) out.push_back(s.path());
  return out;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(where_.size());
  for (const auto& kv : where_) out.push_back(kv.first);
  return out;
}

bool Checkpoint::has(std::string_view name) const { return where_.find(name) != where_.end(); }

const std::pair<const std::string, size_t>& Checkpoint::find(std::string_view name) const {
  auto it = where_.find(name);
  if (it == where_.end()) fail(path_, tensor_arg(name), "a tensor of this checkpoint", "none");
  return *it;
}

const SafetensorsEntry& Checkpoint::entry(std::string_view name) const {
  return shards_[find(name).second].entry(name);
}

const std::string& Checkpoint::file_of(std::string_view name) const { return shards_[find(name).second].path(); }

Tensor Checkpoint::get(std::string_view name) const { return shards_[find(name).second].get(name); }

Tensor Checkpoint::read(std::string_view name) const { return shards_[find(name).second].read(name); }

void Checkpoint::read_bytes(std::string_view name, uint64_t offset, void* dst, size_t n) const {
  shards_[find(name).second].read_bytes(name, offset, dst, n);
}

}  // namespace moefuse
