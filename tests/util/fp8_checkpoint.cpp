#include "util/fp8_checkpoint.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>

#include "layer/fp8_weights.h"
#include "moefuse/dtype.h"

namespace moefuse::testing {

RawTensor raw_tensor(const std::string& name, const Tensor& t) {
  const Tensor c = t.contiguous();
  RawTensor r{name, std::string(safetensors_dtype_name(t.dtype())), {}, {}};
  for (int64_t d = 0; d < t.dim(); ++d) r.shape.push_back(t.size(d));
  r.bytes.resize(size_t(c.numel()) * dtype_size(c.dtype()));
  if (!r.bytes.empty()) std::memcpy(r.bytes.data(), c.data(), r.bytes.size());
  return r;
}

void write_raw_safetensors(const std::string& path, const std::vector<RawTensor>& tensors) {
  std::string header = "{";
  uint64_t at = 0;
  for (const RawTensor& t : tensors) {
    std::string shape;
    for (int64_t s : t.shape) shape += (shape.empty() ? "" : ",") + std::to_string(s);
    header += (header.size() > 1 ? "," : "") + std::string("\"") + t.name + "\":{\"dtype\":\"" + t.dtype +
              "\",\"shape\":[" + shape + "],\"data_offsets\":[" + std::to_string(at) + "," +
              std::to_string(at + t.bytes.size()) + "]}";
    at += t.bytes.size();
  }
  header += "}";
  while (header.size() % 8) header += ' ';
  std::ofstream f(path, std::ios::binary);
  const uint64_t n = header.size();
  f.write(reinterpret_cast<const char*>(&n), 8);
  f.write(header.data(), std::streamsize(n));
  for (const RawTensor& t : tensors) f.write(reinterpret_cast<const char*>(t.bytes.data()), std::streamsize(t.bytes.size()));
}

float e4m3_by_definition(uint8_t v) {
  const int sign = v >> 7, e = (v >> 3) & 15, m = v & 7;
  if (e == 15 && m == 7) return std::numeric_limits<float>::quiet_NaN();
  const double mag = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
  return float(sign ? -mag : mag);
}

namespace {

// Rows [row0, row0 + out) of expert `e` of `storage` ([E, rows, in], model dtype) from FP8 tensor `name`.
void dequantise_into(const Checkpoint& ck, const std::string& name, Tensor& storage, int64_t e, int64_t row0,
                     int64_t out, int64_t in, int64_t bn, int64_t bk) {
  std::vector<uint8_t> q(size_t(out * in));
  ck.read_bytes(name, 0, q.data(), q.size());
  const Tensor s = ck.read(name + "_scale_inv").to(DType::f32).contiguous();
  const int64_t sk = s.size(1);
  const int64_t rows = storage.size(1);
  for (int64_t r = 0; r < out; ++r)
    for (int64_t i = 0; i < in; ++i) {
      const float v = e4m3_by_definition(q[size_t(r * in + i)]) * s.data_as<float>()[(r / bn) * sk + i / bk];
      const int64_t at = (e * rows + row0 + r) * in + i;
      switch (storage.dtype()) {
        case DType::bf16: storage.data_as<bfloat16>()[at] = to_bf16(v); break;
        case DType::f16: storage.data_as<float16>()[at] = to_f16(v); break;
        default: storage.data_as<float>()[at] = v; break;
      }
    }
}

}  // namespace

LayerWeights fp8_oracle_weights(const MoeConfig& c, const Checkpoint& ck, int64_t layer, const LayerWeights& w,
                                int64_t bn, int64_t bk) {
  LayerWeights o = w;
  const std::string p = layer_checkpoint_prefix(c, layer);
  const int64_t H = c.hidden_size, I = c.moe_intermediate_size, Is = c.shared_expert_width();
  o.w13 = Tensor::empty(c.dtype, {c.num_experts, 2 * I, H});
  o.w2 = Tensor::empty(c.dtype, {c.num_experts, H, I});
  for (int64_t e = 0; e < c.num_experts; ++e) {
    const std::string ep = p + ".experts." + std::to_string(e) + ".";
    dequantise_into(ck, ep + "gate_proj.weight", o.w13, e, 0, I, H, bn, bk);
    dequantise_into(ck, ep + "up_proj.weight", o.w13, e, I, I, H, bn, bk);
    dequantise_into(ck, ep + "down_proj.weight", o.w2, e, 0, H, I, bn, bk);
  }
  if (Is > 0) {
    const std::string sp = p + (c.model_type == ModelType::qwen2_moe ? ".shared_expert." : ".shared_experts.");
    o.shared_w13 = Tensor::empty(c.dtype, {1, 2 * Is, H});
    o.shared_w2 = Tensor::empty(c.dtype, {1, H, Is});
    dequantise_into(ck, sp + "gate_proj.weight", o.shared_w13, 0, 0, Is, H, bn, bk);
    dequantise_into(ck, sp + "up_proj.weight", o.shared_w13, 0, Is, Is, H, bn, bk);
    dequantise_into(ck, sp + "down_proj.weight", o.shared_w2, 0, 0, H, Is, bn, bk);
  }
  return o;
}

void quantise_fp8_act_by_definition(const std::vector<float>& x, std::vector<uint8_t>& q, std::vector<float>& s) {
  const int64_t K = int64_t(x.size());
  q.assign(size_t(K), 0);
  s.assign(size_t((K + 127) / 128), 0.0f);
  for (int64_t g = 0; g * 128 < K; ++g) {
    const int64_t k0 = g * 128, k1 = std::min(K, k0 + 128);
    float amax = 0;
    bool finite = true;
    for (int64_t k = k0; k < k1; ++k) {
      if (!std::isfinite(x[size_t(k)])) finite = false;
      else amax = std::max(amax, std::fabs(x[size_t(k)]));
    }
    s[size_t(g)] = finite ? amax / 448.0f : std::numeric_limits<float>::quiet_NaN();
    if (!(s[size_t(g)] > 0)) continue;
    for (int64_t k = k0; k < k1; ++k) q[size_t(k)] = layer::e4m3_from_f32(x[size_t(k)] / s[size_t(g)]);
  }
}

}  // namespace moefuse::testing
