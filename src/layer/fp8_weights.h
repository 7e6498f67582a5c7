// Expert projections of FP8 block-scaled checkpoints (DeepSeek-V3/R1, the Qwen3 FP8 releases): F8_E4M3 weights and
// their "_scale_inv" block scales, checked, then either kept one byte per weight with one scale per output channel
// and 128 input channels (what gemm::pack_weights_fp8 reads) or read as fp32 rows (docs/layer.md §7, "FP8
// block-scaled checkpoints").
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "moefuse/config.h"
#include "moefuse/io.h"

namespace moefuse::layer {

/// Scales per output channel of an FP8 projection kept one byte with `in` input channels: ceil(in / 128).
inline int64_t fp8_blocks(int64_t in) { return (in + 127) / 128; }

/// True when checkpoint tensor `name` is stored in an 8-bit float dtype (F8_E4M3, F8_E5M2, F8_E8M0).
bool is_fp8_tensor(const Checkpoint& ck, const std::string& name);

/// The checkpoint's FP8 settings, read from its config.json the first time they are needed (once per load).
class Fp8Reader {
 public:
  explicit Fp8Reader(const Checkpoint& ck) : ck_(ck) {}
  const Fp8Settings& settings();

 private:
  const Checkpoint& ck_;
  std::optional<Fp8Settings> settings_;
};

/// Whether a layer of `config` keeps the FP8 expert projections of a checkpoint with `settings` one byte per weight
/// (the FP8 GEMM kernels) rather than dequantising them at load: the kernels' weight is bf16(e4m3 * scale), so the
/// model dtype must be bf16 (quant_mode none); and they hold one scale per 128 rows of K, so every 128-row block
/// of each projection's input channels (H, I and the shared width) must lie inside one of the checkpoint's blocks
/// (block_k a multiple of 128, or at least as wide as the inputs).
bool fp8_held_one_byte(const MoeConfig& config, const Fp8Settings& settings);

/// FP8 projection `name` ([out, in] F8_E4M3), checked, with its block scales read (widened to fp32). Checks, each
/// a ValueError / TypeError naming the checkpoint and the tensor (or config.json's key): the checkpoint declares FP8
/// (Fp8Settings::source not empty); the weight is F8_E4M3 (F8_E5M2 or F8_E8M0 where e4m3 is declared is refused);
/// its shape is [out, in] (out_name / in_name say which); "<name>_scale_inv" exists, is F32, BF16 or F16 of shape
/// [ceil(out / bn), ceil(in / bk)]; with `check_finite`, every scale is finite.
struct Fp8Projection {
  const Checkpoint* ck = nullptr;
  std::string name;
  int64_t out = 0, in = 0, bn = 0, bk = 0;
  std::shared_ptr<const std::vector<float>> scales;  // [ceil(out / bn), ceil(in / bk)]
  float scale(int64_t r, int64_t i) const { return (*scales)[size_t((r / bn) * ((in + bk - 1) / bk) + i / bk)]; }
};
Fp8Projection fp8_projection(const Checkpoint& ck, const std::string& name, int64_t out, int64_t in,
                             const char* out_name, const char* in_name, const Fp8Settings& settings,
                             bool check_finite);

/// Row r of the projection as fp32: element i is f32_from_e4m3(q[r, i]) * scale(r, i), one fp32 rounding (the value
/// a user gets by dequantising in fp32). The returned function may be called from several threads at once.
std::function<void(int64_t r, float* row)> fp8_rows(const Fp8Projection& p);

/// Copies the projection's e4m3 bytes as they are into q ([out, in], row r at q + r * in) and its scales into
/// scales ([out, ceil(in / 128)]: row r, block b = the scale of element (r, 128 b); fp8_held_one_byte must hold).
/// With `check_finite`, stops at the first row holding a weight whose value bf16(e4m3 * scale) is not finite and
/// returns its flat index r * in + i; otherwise (or when every value is finite) returns -1.
int64_t read_fp8_one_byte(const Fp8Projection& p, uint8_t* q, float* scales, bool check_finite);

}  // namespace moefuse::layer

namespace moefuse::layer {

/// f32 -> e4m3 ("e4m3fn"), round to nearest even, saturating: magnitudes above 448 (the largest finite) give 448;
/// NaN gives NaN (S.1111.111) of its sign.
uint8_t e4m3_from_f32(float x);

/// Quantises rows [row0, row0 + rows) of `src` ([out, in] float, row r at src + r * in, any float dtype) the way the
/// FP8 releases are made: per block of 128 x 128 (counted from row0 and column 0), s = max|w| / 448 (1 for an
/// all-zero block) and q = e4m3(w / s); the e4m3 bytes go to q_out (row r at q_out + r * in) and each row's block
/// scales to scales ([rows, fp8_blocks(in)], the layout read_fp8_one_byte writes).
void quantise_fp8_blocks(const void* src, DType dtype, int64_t rows, int64_t in, uint8_t* q_out, float* scales);

}  // namespace moefuse::layer
