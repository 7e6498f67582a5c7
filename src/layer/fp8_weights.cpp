#include "layer/fp8_weights.h"

#include <vector>

#include "base/elements.h"
#include "layer/finite.h"
#include "moefuse/error.h"

namespace moefuse::layer {
namespace {

int64_t blocks(int64_t n, int64_t b) { return (n + b - 1) / b; }

}  // namespace

bool is_fp8_tensor(const Checkpoint& ck, const std::string& name) {
  return ck.has(name) && ck.entry(name).dtype.rfind("F8_", 0) == 0;
}

const Fp8Settings& Fp8Reader::settings() {
  if (!settings_) settings_ = read_fp8_settings(ck_);
  return *settings_;
}

std::function<void(int64_t, float*)> fp8_rows(const Checkpoint& ck, const std::string& name, int64_t out, int64_t in,
                                              const char* out_name, const char* in_name, const Fp8Settings& fp8,
                                              bool check_finite) {
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
  const int64_t bn = fp8.block_n, bk = fp8.block_k;
  return [&ck, name, in, bn, bk, sk, scales](int64_t r, float* row) {
    thread_local std::vector<uint8_t> buf;
    buf.resize(size_t(in));
    ck.read_bytes(name, uint64_t(r) * uint64_t(in), buf.data(), size_t(in));
    const float* srow = scales->data() + (r / bn) * sk;
    for (int64_t i = 0; i < in; ++i) row[i] = f32_from_e4m3(buf[size_t(i)]) * srow[i / bk];
  };
}

}  // namespace moefuse::layer
