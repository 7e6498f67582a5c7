// Expert projections of FP8 block-scaled checkpoints (DeepSeek-V3/R1, the Qwen3 FP8 releases): F8_E4M3 weights and
// their "_scale_inv" block scales, checked and read as fp32 rows (docs/layer.md §7, "FP8 block-scaled checkpoints").
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "moefuse/io.h"

namespace moefuse::layer {

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

/// The rows of FP8 projection `name` ([out, in] F8_E4M3) as fp32: row r, element i is
/// f32_from_e4m3(q[r, i]) * scale_inv[r / bn, i / bk], one fp32 rounding (the value a user gets by dequantising in
/// fp32). Checks first, each a ValueError / TypeError naming the checkpoint and the tensor (or config.json's key):
/// the checkpoint declares FP8 (Fp8Settings::source not empty); the weight is F8_E4M3 (F8_E5M2 or F8_E8M0 where e4m3
/// is declared is refused); its shape is [out, in] (out_name / in_name say which); "<name>_scale_inv" exists, is
/// F32, BF16 or F16 of shape [ceil(out / bn), ceil(in / bk)]; with `check_finite`, every scale is finite.
/// The returned function may be called from several threads at once.
std::function<void(int64_t r, float* row)> fp8_rows(const Checkpoint& ck, const std::string& name, int64_t out,
                                                    int64_t in, const char* out_name, const char* in_name,
                                                    const Fp8Settings& settings, bool check_finite);

}  // namespace moefuse::layer
