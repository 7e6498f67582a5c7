#include "layer/gptq.h"

#include <vector>

#include "base/elements.h"
#include "layer/finite.h"
#include "moefuse/error.h"

namespace moefuse::layer {
namespace {

std::string str(int64_t v) { return std::to_string(v); }

std::string dims(const char* a, int64_t va, const char* b, int64_t vb) {
  return std::string("[") + a + ", " + b + "] = [" + str(va) + ", " + str(vb) + "]";
}

// The checkpoint's tensor `name`, checked to be 2-D [rows, cols] of one of `dtypes`.
Tensor read_2d(const Checkpoint& ck, const std::string& name, int64_t rows, int64_t cols, const std::string& shape_words,
               std::initializer_list<DType> dtypes, const std::string& hint = "") {
  Tensor t = ck.read(name);
  bool ok_dtype = false;
  for (DType d : dtypes) ok_dtype = ok_dtype || t.dtype() == d;
  if (!ok_dtype) {
    std::string want;
    for (DType d : dtypes) want += (want.empty() ? "" : " or ") + std::string(dtype_name(d));
    throw TypeError(ck.file_of(name) + ": " + name + ": expected dtype " + want + ", got " +
                    std::string(dtype_name(t.dtype())));
  }
  if (t.dim() != 2 || t.size(0) != rows || t.size(1) != cols)
    throw ValueError(ck.file_of(name) + ": " + name + ": expected shape " + shape_words + hint + ", got " +
                     t.shape().str());
  return t.contiguous();
}

}  // namespace

GptqFormat read_gptq_format(const Checkpoint& ck, int64_t G) {
  const GptqSettings s = read_gptq_settings(ck);
  GptqFormat f;
  f.source = s.source;
  if (s.source.empty()) return f;
  auto fail = [&](const char* key, const std::string& want, const std::string& got) {
    throw ValueError(s.source + ": " + key + ": expected " + want + ", got " + got);
  };
  if (s.quant_method != "gptq" && s.quant_method != "awq")
    fail("quant_method", "\"gptq\" or \"awq\" (the int4 formats moefuse reads)", "\"" + s.quant_method + "\"");
  if (s.bits != 4) fail("bits", "4 (w4a16, w4a8)", str(s.bits));
  if (s.group_size != 0 && s.group_size != G)
    fail("group_size", str(G) + " (the config's quant_group_size)", str(s.group_size));
  if (s.quant_method == "awq") {
    if (!s.zero_point) fail("zero_point", "true (AWQ weights with zero points; AWQ without them is not read)", "false");
    if (!is_awq_gemm_version(s.version))
      fail("version", "\"gemm\" (AutoAWQ's GEMM packing; gemv, marlin and other packings are not read)",
           "\"" + s.version + "\"");
    f.awq = true;
    return f;
  }
  // desc_act true or false: each projection's g_idx says its input order (gptq_input_order).
  if (s.checkpoint_format != "gptq" && s.checkpoint_format != "gptq_v2")
    fail("checkpoint_format", "\"gptq\" or \"gptq_v2\"", "\"" + s.checkpoint_format + "\"");
  f.zeros_v2 = s.checkpoint_format == "gptq_v2";
  return f;
}

bool has_gptq_projection(const Checkpoint& ck, const std::string& base) { return ck.has(base + "qweight"); }

std::vector<int32_t> gptq_input_order(const Checkpoint& ck, const std::string& base, int64_t G, int64_t in,
                                      const char* in_name) {
  const std::string name = base + "g_idx";
  if (!ck.has(name)) return {};
  const Tensor gi = ck.read(name);
  const std::string where = ck.file_of(name) + ": " + name + ": ";
  if (gi.dim() != 1 || gi.size(0) != in || gi.dtype() != DType::i32)
    throw ValueError(where + "expected an i32 tensor of shape [" + in_name + "] = [" + str(in) + "], got " +
                     gi.describe());
  const Tensor t = gi.contiguous();
  const int32_t* g = t.data_as<const int32_t>();
  const int64_t groups = in / G;
  bool trivial = true;
  std::vector<int64_t> count(size_t(groups), 0);
  for (int64_t i = 0; i < in; ++i) {
    if (g[i] < 0 || g[i] >= groups)
      throw ValueError(where + "expected groups 0.." + str(groups - 1) + " (" + in_name + " / " + str(G) +
                       " groups), got g_idx[" + str(i) + "] = " + str(g[i]));
    ++count[size_t(g[i])];
    trivial = trivial && g[i] == i / G;
  }
  for (int64_t k = 0; k < groups; ++k)
    if (count[size_t(k)] != G)
      throw ValueError(where + "expected " + str(G) + " input channels in each group (group size " + str(G) +
                       "), got " + str(count[size_t(k)]) + " in group " + str(k));
  if (trivial) return {};
  // A counting sort by group: stable, so each group's channels stay ascending.
  std::vector<int64_t> next(static_cast<size_t>(groups));
  for (int64_t k = 0; k < groups; ++k) next[size_t(k)] = k * G;
  std::vector<int32_t> order(static_cast<size_t>(in));
  for (int64_t i = 0; i < in; ++i) order[size_t(next[size_t(g[i])]++)] = int32_t(i);
  return order;
}

void read_gptq_projection(const Checkpoint& ck, const std::string& base, const GptqFormat& format, int64_t G,
                          int64_t out, int64_t in, const char* out_name, const char* in_name, uint8_t* q, float* scale,
                          uint8_t* zero, bool check_finite, const int32_t* in_order, const int32_t* out_order) {
  const std::string in_g = std::string(in_name) + "/" + str(G), in_8 = std::string(in_name) + "/8",
                    out_8 = std::string(out_name) + "/8";
  // qweight: GPTQ [in / 8, out] i32 (another row count is another bit width: GPTQ packs 32 / bits values per word),
  // AWQ [in, out / 8].
  const std::string qname = base + "qweight";
  const Tensor qw = format.awq ? read_2d(ck, qname, in, out / 8, dims(in_name, in, out_8.c_str(), out / 8),
                                         {DType::i32}, " (AWQ's 4-bit weights: eight outputs per int32)")
                               : read_2d(ck, qname, in / 8, out, dims(in_8.c_str(), in / 8, out_name, out),
                                         {DType::i32}, " (4-bit weights: eight per int32)");
  const Tensor qz = read_2d(ck, base + "qzeros", in / G, out / 8, dims(in_g.c_str(), in / G, out_8.c_str(), out / 8),
                            {DType::i32}, " (group size " + str(G) + ")");
  const Tensor sc = read_2d(ck, base + "scales", in / G, out, dims(in_g.c_str(), in / G, out_name, out),
                            {DType::f16, DType::bf16, DType::f32}, " (group size " + str(G) + ")");
  // Row r of q holds checkpoint row o = out_order[r]; column j input channel i = in_order[j].
  const auto* words = qw.data_as<const int32_t>();
  // Output o's nibble within a word packed along the output dim: o % 8 (GPTQ's qzeros) or AWQ's order.
  const auto out_shift = [&](int64_t o) { return 4 * (format.awq ? kAwqNibble[o % 8] : int(o % 8)); };
  for (int64_t j = 0; j < in; ++j) {
    const int64_t i = in_order ? in_order[j] : j;
    for (int64_t r = 0; r < out; ++r) {
      const int64_t o = out_order ? out_order[r] : r;
      const uint32_t word = format.awq ? uint32_t(words[i * (out / 8) + o / 8]) : uint32_t(words[(i / 8) * out + o]);
      q[r * in + j] = uint8_t((word >> (format.awq ? out_shift(o) : 4 * int(i % 8))) & 0xF);
    }
  }
  const auto* zw = qz.data_as<const int32_t>();
  const int64_t groups = in / G;
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t r = 0; r < out; ++r) {
      const int64_t o = out_order ? out_order[r] : r;
      const uint32_t stored = (uint32_t(zw[g * (out / 8) + o / 8]) >> out_shift(o)) & 0xF;
      const uint32_t z = format.zeros_v2 || format.awq ? stored : stored + 1;
      if (z > 15)
        throw ValueError(ck.file_of(base + "qzeros") + ": " + base + "qzeros: expected zero points 0..15, got 16 at [" +
                         str(g) + ", " +
                         str(o) + "] (stored 15: GPTQ's v1 format adds 1)");
      zero[r * groups + g] = uint8_t(z);
      scale[r * groups + g] = load_element_f32(sc.data(), sc.dtype(), g * out + o);
    }
  if (check_finite)
    check_finite_values(
        ck.file_of(base + "scales") + ": " + base + "scales", groups * out,
        [&](int64_t i) { return load_element_f32(sc.data(), sc.dtype(), i); }, [&](int64_t i) { return unravel(sc, i); });
}

void append_gptq_tensors(const std::string& base, const Tensor& q, const Tensor& scale, const Tensor& zero,
                         NamedTensors& out, const int32_t* in_order) {
  const int64_t N = q.size(0), K = q.size(1), groups = scale.size(1), G = K / groups;
  const Tensor qc = q.contiguous(), sc = scale.contiguous(), zc = zero.contiguous();
  Tensor qweight = Tensor::zeros(DType::i32, {K / 8, N});
  auto* qw = qweight.data_as<int32_t>();
  // Column j of q is input channel i = in_order[j] (the checkpoint's order).
  for (int64_t j = 0; j < K; ++j) {
    const int64_t i = in_order ? in_order[j] : j;
    for (int64_t o = 0; o < N; ++o)
      qw[(i / 8) * N + o] = int32_t(uint32_t(qw[(i / 8) * N + o]) |
                                    (uint32_t(qc.data_as<const uint8_t>()[o * K + j]) << (4 * (i % 8))));
  }
  Tensor qzeros = Tensor::zeros(DType::i32, {groups, N / 8});
  bool f16_exact = true;
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t o = 0; o < N; ++o) {
      // v1: z - 1 in 4 bits (z >= 1 from round-to-nearest; a z of 0 from elsewhere wraps to 15, as GPTQ's own packer
      // would store it).
      const uint32_t stored = (uint32_t(zc.data_as<const uint8_t>()[o * groups + g]) - 1u) & 0xFu;
      int32_t& w = qzeros.data_as<int32_t>()[g * (N / 8) + o / 8];
      w = int32_t(uint32_t(w) | (stored << (4 * (o % 8))));
      const float s = sc.data_as<const float>()[o * groups + g];
      f16_exact = f16_exact && to_f32(to_f16(s)) == s;
    }
  Tensor scales = Tensor::empty(f16_exact ? DType::f16 : DType::f32, {groups, N});
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t o = 0; o < N; ++o)
      store_element_f32(scales.data(), scales.dtype(), g * N + o, sc.data_as<const float>()[o * groups + g]);
  Tensor g_idx = Tensor::empty(DType::i32, {K});
  for (int64_t j = 0; j < K; ++j) g_idx.data_as<int32_t>()[in_order ? in_order[j] : j] = int32_t(j / G);
  out.emplace_back(base + "qweight", qweight);
  out.emplace_back(base + "qzeros", qzeros);
  out.emplace_back(base + "scales", scales);
  out.emplace_back(base + "g_idx", g_idx);
}

}  // namespace moefuse::layer
