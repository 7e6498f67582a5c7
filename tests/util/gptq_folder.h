// GPTQ (and AWQ) int4 checkpoints for the tests, packed here from the formats' definitions (independently of
// src/layer/gptq.cpp):
// one projection's tensors, and a whole model folder derived from a committed test folder (tests/data/models) with
// its experts' width raised to a multiple of the smallest group size (the committed folders' 16 is narrower than
// any group), its experts (and shared experts) replaced by GPTQ tensors or by random float weights, every other
// tensor copied, and config.json given the quantization_config asked for.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "moefuse/io.h"
#include "util/random.h"

namespace moefuse::testing {

/// GPTQ's definition: q [out, in] and z [in / G, out] packed into qweight [in / 8, out] and qzeros [in / G, out / 8],
/// value j of a word at bits 4j; v1 ("gptq") stores z - 1, v2 stores z.
struct GptqProjection {
  int64_t out, in, G;
  std::vector<int> q, z;     // q[o * in + i], z[g * out + o]
  std::vector<float> scale;  // [g * out + o], fp16 values

  Tensor qweight() const;
  Tensor qzeros(bool v2) const;
  Tensor scales() const;
  Tensor g_idx() const;  // i / G
  /// AutoAWQ's GEMM packing of the same values: qweight [in, out / 8] and qzeros [in / G, out / 8] (z itself), the
  /// eight outputs 8c .. 8c + 7 of a word in AWQ's order: nibble n holds output 8c + (0, 2, 4, 6, 1, 3, 5, 7)[n].
  Tensor awq_qweight() const;
  Tensor awq_qzeros() const;
};

/// Random q 0..15, z 1..15 (8 when symmetric), fp16 scales in [0.001, 0.05).
GptqProjection random_projection(Rng& rng, int64_t out, int64_t in, int64_t G, bool symmetric = false);

struct DerivedFolder {
  std::string family;            // a folder of tests/data/models
  int64_t expert_width = 32;     // the experts' (moe_)intermediate_size in the derived folder
  bool gptq = true;              // GPTQ tensors (else random float weights in the model dtype, std 0.05)
  int64_t G = 32;                // GPTQ: the group size packed
  bool symmetric = false;
  bool v2 = false;               // checkpoint_format gptq_v2 (written into the quantization_config by the caller)
  bool awq = false;              // AWQ's tensors instead of GPTQ's (the same values; the caller writes the config)
  std::string quantization_json; // the quantization_config's JSON text ("": none)
  uint64_t seed = 7;
};

/// Writes the derived folder into `out_dir` (created): config.json and one model.safetensors.
void write_derived_folder(const DerivedFolder& d, const std::string& out_dir);

/// Replaces tensor `name` of the model.safetensors in `dir` by `t` (the rest kept).
void replace_tensor(const std::string& dir, const std::string& name, const Tensor& t);

}  // namespace moefuse::testing
