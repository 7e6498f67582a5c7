// moefuse/io.h — tensor files: safetensors (read through a memory map, written atomically), Hugging Face
// checkpoints (one file or shards with model.safetensors.index.json), and NumPy .npy.
//
// Every reader validates the whole file structure before handing out data and never reads out of bounds: a file
// that is truncated, whose header lies about sizes or offsets, or that is not the format at all raises IoError
// naming the file, the tensor or key, what was expected and what was found. Readers open regular files only: a FIFO,
// socket or device (a checkpoint's shard included) is IoError "<reader>: <path>: expected a regular file, got a
// FIFO", found without blocking on it. Writers raise ValueError / TypeError for
// bad arguments and IoError when the file system fails; they write to a temporary file in the target's directory and
// rename it, so a failed write leaves no partial file behind (and leaves an existing target untouched); they replace
// only regular files (IoError "<writer>: <path>: expected a regular file or a new file name, got a FIFO").
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "moefuse/tensor.h"

namespace moefuse {

/// (name, tensor) pairs, in the order they are to be written.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// ---- safetensors -------------------------------------------------------------------------------------------------

/// One entry of a safetensors header, as stored.
struct SafetensorsEntry {
  std::string dtype;           // the safetensors dtype string: "F32", "BF16", "I8", "F64", "F8_E4M3", ...
  std::vector<int64_t> shape;  // extents (any rank; get() needs rank <= kMaxDims)
  uint64_t begin = 0;          // data_offsets, relative to the start of the data section
  uint64_t end = 0;
};

/// A .safetensors file: 8-byte little-endian header length N, N bytes of JSON header, then the data section.
///
/// Opening validates the header completely (the rules of the reference implementation, huggingface/safetensors):
/// the file holds at least 8 bytes; 2 <= N <= 100,000,000 and 8 + N <= file size; the header is one JSON object
/// (UTF-8, no duplicate keys) whose optional "__metadata__" entry maps strings to strings and whose every other
/// entry is {"dtype": string, "shape": [ints >= 0], "data_offsets": [begin, end]} with no other keys; the dtype is
/// a safetensors dtype (BOOL, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64,
/// C64, F4, F6_E2M3, F6_E3M2); begin <= end; end - begin = numel * element size (computed without overflow); and
/// the tensors' byte ranges, sorted, tile the data section exactly: no overlap, no gap, no trailing bytes
/// (zero-size tensors may sit anywhere). Errors: IoError "<file>: <tensor or key>: expected ..., got ...".
/// Validation takes time linear in the header's size (about 7 s of CPU and 1.4 GB for a 100 MB header of 1.2
/// million entries on one core of an AMD EPYC, Zen family 23).
///
/// The object is a cheap handle (copies share the mapping) and is safe to use from several threads at once.
class SafetensorsFile {
 public:
  /// Maps `path` read-only and validates it. Only a regular file is opened (a FIFO, socket or device is IoError
  /// "SafetensorsFile: <path>: expected a regular file, got a FIFO", checked without blocking).
  explicit SafetensorsFile(const std::string& path);
  /// Parses a safetensors image held in memory (copied into an owned buffer); `source_name` stands for the file
  /// name in error messages. The in-memory entry point of the fuzz target.
  static SafetensorsFile from_bytes(std::span<const std::byte> bytes, std::string source_name);

  /// The path (or source name) given at opening.
  const std::string& path() const;
  /// Tensor names, sorted (byte order).
  std::vector<std::string> names() const;
  bool has(std::string_view name) const;
  /// The header entry of a tensor. IoError "<file>: <name>: expected a tensor in this file, got none" if absent.
  const SafetensorsEntry& entry(std::string_view name) const;
  /// The "__metadata__" map (empty when absent).
  const std::map<std::string, std::string>& metadata() const;

  /// A read-only view of a tensor, contiguous, sharing ownership of the mapping: the file stays mapped while the
  /// view (or any view made from it) lives, even after every SafetensorsFile handle is gone. When the data is not
  /// aligned to its element size in memory (the format does not require it) the result is instead a read-only
  /// owning copy, so that typed access is always aligned. Supported dtypes: F32, F16, BF16, I8, U8, I32, I64, BOOL.
  /// Errors: IoError naming the file and the tensor for an absent tensor, another dtype, or a rank above kMaxDims.
  /// The view reads the mapping: if the file is truncated while the view is used, the process gets SIGBUS (as with
  /// any memory map); read() and read_bytes() cannot fault that way.
  Tensor get(std::string_view name) const;

  /// The tensor as a new read-only owning copy, read from the file with pread (never through the mapping), so a
  /// file that shrank since it was opened is IoError "<file>: tensor \"<name>\": expected <n> bytes at file offset
  /// <o>, got a file of <s> bytes (it shrank after it was opened)". Other errors as get().
  Tensor read(std::string_view name) const;

  /// Copies bytes [offset, offset + n) of a tensor's data (row-major, as stored) into `dst`, with pread as read().
  /// Errors: IoError as read(); ValueError when the range is not inside the tensor's data.
  void read_bytes(std::string_view name, uint64_t offset, void* dst, size_t n) const;

 private:
  struct Impl;
  explicit SafetensorsFile(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
};

/// The safetensors dtype string of a DType ("F32", "F16", "BF16", "I8", "U8", "I32", "I64", "BOOL").
std::string_view safetensors_dtype_name(DType dtype);

/// Writes a safetensors file: the tensors (any dtype, any strides; written row-major) with a header whose
/// "__metadata__" is `metadata` (omitted when empty). Tensors are laid out by element size, largest first (the
/// caller's order kept within a size), and the header is padded with spaces to a multiple of 8 bytes, so every
/// tensor's data is aligned to its element size and SafetensorsFile::get() returns views without copying.
/// Errors: ValueError for an undefined tensor, an empty, duplicated or "__metadata__" name; IoError when the file
/// cannot be written (nothing is left behind).
void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata = {});

/// Writes a sharded checkpoint into directory `dir` (created if missing): shards
/// "model-00001-of-0000N.safetensors" (5 digits, N >= 1) filled in the caller's order, a new shard started when the
/// next tensor would push the current one's data past `max_shard_bytes` (a larger tensor gets a shard of its own),
/// each shard with `metadata` as its "__metadata__"; then "model.safetensors.index.json" =
/// {"metadata": {"total_size": <data bytes>}, "weight_map": {name: shard file}} (Hugging Face's format), written
/// last. Returns the shard file names. Errors: as write_safetensors; ValueError when max_shard_bytes < 1. When a
/// write fails, the shards already written by this call are removed.
std::vector<std::string> write_sharded_checkpoint(const std::string& dir, const NamedTensors& tensors,
                                                  int64_t max_shard_bytes,
                                                  const std::map<std::string, std::string>& metadata = {});

/// A Hugging Face checkpoint: the tensors of one safetensors file or of several shards.
///
/// `path` may be (1) a .safetensors file; (2) an index file (any name ending in ".json", normally
/// model.safetensors.index.json) {"weight_map": {tensor name: shard file name}, ...} whose shard names are
/// relative paths (no "..", not absolute) resolved against the index's directory; (3) a directory holding exactly
/// one of model.safetensors and model.safetensors.index.json (both: IoError, ambiguous). Every file is opened and
/// validated up front, and every tensor the index names must be present in its shard (tensors of a shard that the
/// index does not name are not part of the checkpoint, as in transformers). Thread-safe like SafetensorsFile.
/// A file stays mapped while the Checkpoint or any tensor view from it lives; dropping both releases the pages
/// (how the layer frees the checkpoint after packing its weights).
class Checkpoint {
 public:
  explicit Checkpoint(const std::string& path);

  /// The path given at opening.
  const std::string& path() const { return path_; }
  /// The safetensors files, in order (one for a single-file checkpoint; sorted shard names for an index).
  std::vector<std::string> files() const;
  /// All tensor names, sorted.
  std::vector<std::string> names() const;
  bool has(std::string_view name) const;
  /// The header entry of a tensor (IoError as get() when absent).
  const SafetensorsEntry& entry(std::string_view name) const;
  /// The file holding a tensor (IoError as get() when absent).
  const std::string& file_of(std::string_view name) const;
  /// The tensor, as SafetensorsFile::get(). An absent tensor is IoError
  /// "<checkpoint path>: <name>: expected a tensor of this checkpoint, got none".
  Tensor get(std::string_view name) const;
  /// SafetensorsFile::read() of the shard holding the tensor (an owning copy read with pread).
  Tensor read(std::string_view name) const;
  /// SafetensorsFile::read_bytes() of the shard holding the tensor.
  void read_bytes(std::string_view name, uint64_t offset, void* dst, size_t n) const;

 private:
  const std::pair<const std::string, size_t>& find(std::string_view name) const;

  std::string path_;
  std::vector<SafetensorsFile> shards_;
  std::map<std::string, size_t, std::less<>> where_;  // tensor name -> index into shards_
};

// ---- GPTQ settings -----------------------------------------------------------------------------------------------

/// The int4 quantisation settings a checkpoint declares, for its int4 (w4a16, w4a8) tensors: quantize_config.json in
/// the checkpoint's directory (the directory itself, or the one holding the file or index given), else config.json's
/// "quantization_config" there. Keys that are absent keep these defaults (GPTQ's own). quant_method "gptq" is GPTQ's
/// layout, "awq" AutoAWQ's GEMM layout (docs/layer.md §5, "AWQ checkpoints"); the reader checks which it can read.
struct GptqSettings {
  std::string source;                    // the file and object read; "" when the checkpoint declares none
  std::string quant_method = "gptq";
  int64_t bits = 4;
  int64_t group_size = 0;                // 0: not given
  bool desc_act = false;
  bool sym = true;
  std::string checkpoint_format = "gptq";  // "gptq": zero points stored as z - 1; "gptq_v2": as z
  bool zero_point = true;                // AWQ: asymmetric weights with zero points (the only AWQ form read)
  std::string version = "gemm";          // AWQ: the packing ("gemm" is read; "gemv", "marlin", ... are not)
};

/// Reads the settings (above). Errors: IoError for an unreadable or malformed JSON file (over 16 MiB included);
/// ValueError "<file>: <key>: expected <type>, got <value>" for a key of the wrong type.
GptqSettings read_gptq_settings(const Checkpoint& checkpoint);

/// Whether an AWQ `version` names AutoAWQ's GEMM packing, the one read ("gemm", any case).
bool is_awq_gemm_version(std::string_view version);

// ---- FP8 block-scaled checkpoints ------------------------------------------------------------------------------

/// What a checkpoint's config.json declares for FP8 block-scaled weights (DeepSeek-V3/R1, the Qwen3 FP8 releases):
/// "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [bn, bk],
/// "activation_scheme": "dynamic"}. A weight W [N, K] stored in F8_E4M3 comes with "<name>_scale_inv" (F32, BF16 or
/// F16) of shape [ceil(N / bn), ceil(K / bk)], and stands for W[n, k] = e4m3(n, k) * scale_inv[n / bn, k / bk]
/// (docs/layer.md §7, "FP8 block-scaled checkpoints", says how the layer computes with it).
struct Fp8Settings {
  /// The file and object read ("<dir>/config.json: quantization_config"); "" when the checkpoint declares no FP8
  /// weights (no config.json, no quantization_config, or another quant_method).
  std::string source;
  /// weight_block_size: rows (output channels) and columns (input channels) per scale. Absent: [128, 128], the
  /// transformers default.
  int64_t block_n = 128, block_k = 128;
};

/// Reads config.json's quantization_config in the checkpoint's directory (the directory itself, or the one holding
/// the file or index given). Errors: IoError for an unreadable or malformed config.json; ValueError
/// "<file>: quantization_config.<key>: expected ..., got ..." for fmt other than "e4m3" (e5m2 is not read),
/// activation_scheme other than "dynamic" (static activation scales are not read), a weight_block_size that is not
/// two integers >= 1.
Fp8Settings read_fp8_settings(const Checkpoint& checkpoint);

// ---- .npy --------------------------------------------------------------------------------------------------------

/// Reads a NumPy .npy file (format versions 1.0, 2.0 and 3.0) into a new owning, contiguous tensor.
///
/// Accepted descr: '<f4' (f32), '<f2' (f16), '|i1' (i8), '<i4' (i32), '<i8' (i64), '|u1' (u8), '|b1' (bool); for
/// the one-byte types '<' is accepted too. Big-endian ('>'), native ('=') and every other type (f8, bfloat16's
/// '<V2', structured types, objects) are rejected. fortran_order True is supported: the data is transposed into
/// row-major order, so the tensor has the shape the file declares. The header dict must hold exactly the keys
/// 'descr', 'fortran_order' and 'shape' (spaces and a trailing comma allowed anywhere Python allows them, shape
/// entries may carry Python 2's 'L'); at most kMaxDims dimensions; the data must be exactly numel * element size
/// bytes (a shorter file is truncated, a longer one has trailing data: both are errors). Header length at most 1 MiB.
/// Errors: IoError "<file>: <part>: expected ..., got ..." (part = magic, version, header, descr, shape, data, ...).
Tensor read_npy(const std::string& path);

/// read_npy() of an image held in memory; `source_name` stands for the file name in messages.
Tensor parse_npy(std::span<const std::byte> bytes, std::string_view source_name);

/// Writes `t` (any strides; written row-major) as a .npy file that numpy.load reads back with the same dtype,
/// shape and values: format 1.0 (2.0 if the header does not fit in 65535 bytes), fortran_order False, header padded
/// with spaces to a multiple of 64 bytes and ended by '\n', as numpy writes it. Errors: ValueError for an undefined
/// tensor; TypeError for bf16 (NumPy has no bfloat16: convert with t.to(DType::f32) first); IoError when the file
/// cannot be written (nothing is left behind).
void write_npy(const std::string& path, const Tensor& t);

}  // namespace moefuse
