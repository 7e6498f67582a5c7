#include "layer/fp8_weights.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "base/elements.h"
#include "kernels/gemm/gemm.h"
#include "layer/finite.h"
#include "moefuse/error.h"

namespace moefuse::layer {
namespace {

int64_t blocks(int64_t n, int64_t b) { return (n + b - 1) / b; }

// Whether every block of 128 input channels of [0, in) lies inside one block of bk.
bool kernel_blocks_fit(int64_t in, int64_t bk) {
  for (int64_t k0 = 0; k0 < in; k0 += gemm::kFp8BlockK)
    if (k0 / bk != (std::min(k0 + gemm::kFp8BlockK, in) - 1) / bk) return false;
  return true;
}

}  // namespace

bool is_fp8_tensor(const Checkpoint& ck, const std::string& name) {
  return ck.has(name) && ck.entry(name).dtype.rfind("F8_", 0) == 0;
}

const Fp8Settings& Fp8Reader::settings() {
  if (!settings_) settings_ = read_fp8_settings(ck_);
  return *settings_;
}

bool fp8_held_one_byte(const MoeConfig& c, const Fp8Settings& s) {
  if (s.source.empty() || c.dtype != DType::bf16 || c.quant_mode != QuantMode::none) return false;
  return kernel_blocks_fit(c.hidden_size, s.block_k) && kernel_blocks_fit(c.moe_intermediate_size, s.block_k) &&
         kernel_blocks_fit(c.shared_expert_width(), s.block_k);
}

Fp8Projection fp8_projection(const Checkpoint& ck, const std::string& name, int64_t out, int64_t in,
                             const char* out_name, const char* in_name, const Fp8Settings& fp8, bool check_finite) {
  const std::string where = ck.path() + ": " + name;
  const SafetensorsEntry& e = ck.entry(name);
  if (fp8.source.empty())
    throw ValueError(where + ": expected a config.json beside the checkpoint whose quantization_config has "
                     "quant_method \"fp8\" (it gives the block size of the scales), for a weight of dtype " +
                     e.dtype + ", got none");
  if (e.dtype != "F8_E4M3")
    throw TypeError(where + ": expected dtype F8_E4M3 (" + fp8.source + " declares fmt \"e4m3\"), got " + e.dtype);
  if (e.shape != std::vector<int64_t>{out, in})
    throw ValueError(where + ": expected shape [" + out_name + ", " + in_name + "] = [" + std::to_string(out) + ", " +
                     std::to_string(in) + "], got " + Shape(std::span<const int64_t>(e.shape)).str());
  const std::string scale_name = name + "_scale_inv";
  if (!ck.has(scale_name))
    throw ValueError(ck.path() + ": " + scale_name + ": expected a tensor of this checkpoint (the block scales of " +
                     "the F8_E4M3 weight " + name + "), got none");
  const Tensor s = ck.read(scale_name);  // small: ceil(out / bn) x ceil(in / bk)
  const int64_t sn = blocks(out, fp8.block_n), sk = blocks(in, fp8.block_k);
  if (!dtype_is_float(s.dtype()))
    throw TypeError(ck.path() + ": " + scale_name + ": expected dtype f32, bf16 or f16, got " +
                    std::string(dtype_name(s.dtype())));
  if (s.dim() != 2 || s.size(0) != sn || s.size(1) != sk)
    throw ValueError(ck.path() + ": " + scale_name + ": expected shape [" + std::to_string(sn) + ", " +
                     std::to_string(sk) + "] (weight [" + std::to_string(out) + ", " + std::to_string(in) +
                     "] in blocks of [" + std::to_string(fp8.block_n) + ", " + std::to_string(fp8.block_k) + "], " +
                     fp8.source + ".weight_block_size), got " + s.shape().str());
  auto scales = std::make_shared<std::vector<float>>(size_t(sn * sk));
  for (int64_t i = 0; i < sn * sk; ++i) (*scales)[size_t(i)] = load_element_f32(s.data(), s.dtype(), i);
  if (check_finite)
    check_finite_values(
        ck.path() + ": " + scale_name, sn * sk, [&](int64_t i) { return (*scales)[size_t(i)]; },
        [&](int64_t i) { return std::vector<int64_t>{i / sk, i % sk}; });
  return Fp8Projection{&ck, name, out, in, fp8.block_n, fp8.block_k, std::move(scales)};
}

std::function<void(int64_t, float*)> fp8_rows(const Fp8Projection& p) {
  return [p](int64_t r, float* row) {
    thread_local std::vector<uint8_t> buf;
    buf.resize(size_t(p.in));
    p.ck->read_bytes(p.name, uint64_t(r) * uint64_t(p.in), buf.data(), size_t(p.in));
    for (int64_t i = 0; i < p.in; ++i) row[i] = f32_from_e4m3(buf[size_t(i)]) * p.scale(r, i);
  };
}

int64_t read_fp8_one_byte(const Fp8Projection& p, uint8_t* q, float* scales, bool check_finite) {
  const int64_t kb = blocks(p.in, gemm::kFp8BlockK);
  p.ck->read_bytes(p.name, 0, q, size_t(p.out * p.in));
  for (int64_t r = 0; r < p.out; ++r) {
    for (int64_t b = 0; b < kb; ++b) scales[r * kb + b] = p.scale(r, b * gemm::kFp8BlockK);
    if (!check_finite) continue;
    const uint8_t* row = q + r * p.in;
    for (int64_t i = 0; i < p.in; ++i)  // the kernels' value (gemm.h): bf16 of the fp32 product
      if (!std::isfinite(to_f32(to_bf16(f32_from_e4m3(row[i]) * scales[r * kb + i / gemm::kFp8BlockK]))))
        return r * p.in + i;
  }
  return -1;
}

}  // namespace moefuse::layer

namespace moefuse::layer {

uint8_t e4m3_from_f32(float x) {
  const uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
  if (std::isnan(x)) return uint8_t(sign | 0x7f);
  const float a = std::min(std::fabs(x), 448.0f);
  if (a < 0x1p-6f) return uint8_t(sign | uint8_t(std::nearbyint(a * 0x1p9f)));  // subnormal (8 -> 2^-6: code 0x08)
  int e2 = 0;
  std::frexp(a, &e2);  // a = f * 2^e2, f in [0.5, 1)
  int u = e2 - 1;      // a = 2^u * (1 + m / 8)
  int m = int(std::nearbyint((std::ldexp(a, -u) - 1.0f) * 8.0f));  // exact operands; round to nearest even
  if (m == 8) {
    m = 0;
    ++u;
  }
  return uint8_t(sign | ((u + 7) << 3) | m);
}

void quantise_fp8_blocks(const void* src, DType dtype, int64_t rows, int64_t in, uint8_t* q_out, float* scales) {
  const int64_t kb = fp8_blocks(in), B = gemm::kFp8BlockK;
  for (int64_t r0 = 0; r0 < rows; r0 += B)
    for (int64_t b = 0; b < kb; ++b) {
      const int64_t r1 = std::min(r0 + B, rows), k0 = b * B, k1 = std::min(k0 + B, in);
      float amax = 0;
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t k = k0; k < k1; ++k) amax = std::max(amax, std::fabs(load_element_f32(src, dtype, r * in + k)));
      const float s = amax > 0 ? amax / 448.0f : 1.0f;
      for (int64_t r = r0; r < r1; ++r) {
        scales[r * kb + b] = s;
        for (int64_t k = k0; k < k1; ++k) q_out[r * in + k] = e4m3_from_f32(load_element_f32(src, dtype, r * in + k) / s);
      }
    }
}

}  // namespace moefuse::layer
