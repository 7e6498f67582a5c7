#include "util/gptq_folder.h"

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "moefuse/dtype.h"
#include "moefuse/model.h"
#include "util/model_families.h"

namespace moefuse::testing {
namespace fs = std::filesystem;

Tensor GptqProjection::qweight() const {
  Tensor t = Tensor::zeros(DType::i32, {in / 8, out});
  for (int64_t i = 0; i < in; ++i)
    for (int64_t o = 0; o < out; ++o)
      t.data_as<int32_t>()[(i / 8) * out + o] |= int32_t(uint32_t(q[size_t(o * in + i)]) << (4 * (i % 8)));
  return t;
}

Tensor GptqProjection::qzeros(bool v2) const {
  Tensor t = Tensor::zeros(DType::i32, {in / G, out / 8});
  for (int64_t g = 0; g < in / G; ++g)
    for (int64_t o = 0; o < out; ++o) {
      const uint32_t stored = uint32_t(z[size_t(g * out + o)] - (v2 ? 0 : 1)) & 0xF;
      t.data_as<int32_t>()[g * (out / 8) + o / 8] |= int32_t(stored << (4 * (o % 8)));
    }
  return t;
}

// AutoAWQ's pack order: nibble n of a word holds output 8c + kAwqOrder[n].
constexpr int kAwqOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};

Tensor GptqProjection::awq_qweight() const {
  Tensor t = Tensor::zeros(DType::i32, {in, out / 8});
  for (int64_t i = 0; i < in; ++i)
    for (int64_t c = 0; c < out / 8; ++c)
      for (int n = 0; n < 8; ++n)
        t.data_as<int32_t>()[i * (out / 8) + c] |=
            int32_t(uint32_t(q[size_t((8 * c + kAwqOrder[n]) * in + i)]) << (4 * n));
  return t;
}

Tensor GptqProjection::awq_qzeros() const {
  Tensor t = Tensor::zeros(DType::i32, {in / G, out / 8});
  for (int64_t g = 0; g < in / G; ++g)
    for (int64_t c = 0; c < out / 8; ++c)
      for (int n = 0; n < 8; ++n)
        t.data_as<int32_t>()[g * (out / 8) + c] |=
            int32_t(uint32_t(z[size_t(g * out + 8 * c + kAwqOrder[n])]) << (4 * n));
  return t;
}

Tensor GptqProjection::scales() const {
  Tensor t = Tensor::empty(DType::f16, {in / G, out});
  for (size_t k = 0; k < scale.size(); ++k) t.data_as<float16>()[k] = to_f16(scale[k]);
  return t;
}

Tensor GptqProjection::g_idx() const {
  Tensor t = Tensor::empty(DType::i32, {in});
  for (int64_t i = 0; i < in; ++i) t.data_as<int32_t>()[i] = int32_t(i / G);
  return t;
}

GptqProjection random_projection(Rng& rng, int64_t out, int64_t in, int64_t G, bool symmetric) {
  GptqProjection p{out, in, G, {}, {}, {}};
  for (int64_t k = 0; k < out * in; ++k) p.q.push_back(int(rng.integer(0, 15)));
  for (int64_t k = 0; k < in / G * out; ++k) {
    p.z.push_back(symmetric ? 8 : int(rng.integer(1, 15)));
    p.scale.push_back(to_f32(to_f16(rng.uniform(0.001f, 0.05f))));
  }
  return p;
}

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

std::string read_text(const fs::path& p) {
  std::ifstream f(p);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

}  // namespace

void write_derived_folder(const DerivedFolder& d, const std::string& out_dir) {
  const fs::path src = model_dir(d.family);
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(read_text(src / "config.json"));
  j[j.contains("moe_intermediate_size") && j["model_type"] != "olmoe" && j["model_type"] != "mixtral"
        ? "moe_intermediate_size"
        : "intermediate_size"] = d.expert_width;
  const ModelConfig m = parse_model_config_json(j.dump(), "derived config.json");  // the shapes, float
  if (!d.quantization_json.empty()) j["quantization_config"] = nlohmann::ordered_json::parse(d.quantization_json);
  fs::create_directories(out_dir);
  std::ofstream(fs::path(out_dir) / "config.json") << j.dump(2) << "\n";

  Rng rng(d.seed);
  const Checkpoint ck(src.string());
  NamedTensors out;
  const MoeConfig& c = m.layer;
  const int64_t H = c.hidden_size, I = c.moe_intermediate_size, Is = c.shared_expert_width();
  for (const std::string& name : ck.names()) {
    std::string moe_prefix;
    for (int64_t l : m.moe_layers)
      if (starts_with(name, layer_checkpoint_prefix(c, l) + ".")) moe_prefix = layer_checkpoint_prefix(c, l) + ".";
    const std::string rest = name.substr(moe_prefix.size());
    const bool expert = starts_with(rest, "experts."), shared = starts_with(rest, "shared_expert.") ||
                                                                 starts_with(rest, "shared_experts.");
    if (moe_prefix.empty() || (!expert && !shared) || !name.ends_with(".weight")) {
      out.emplace_back(name, ck.read(name));
      continue;
    }
    const int64_t width = expert ? I : Is;
    const bool down = name.ends_with(".down_proj.weight") || name.ends_with(".w2.weight");
    const int64_t rows = down ? H : width, cols = down ? width : H;
    const std::string base = name.substr(0, name.size() - std::string("weight").size());
    if (!d.gptq) {
      out.emplace_back(name, rng.normal_tensor(c.dtype, {rows, cols}, 0.05f));
      continue;
    }
    const GptqProjection p = random_projection(rng, rows, cols, d.G, d.symmetric);
    out.emplace_back(base + "qweight", d.awq ? p.awq_qweight() : p.qweight());
    out.emplace_back(base + "qzeros", d.awq ? p.awq_qzeros() : p.qzeros(d.v2));
    out.emplace_back(base + "scales", p.scales());
    if (!d.awq) out.emplace_back(base + "g_idx", p.g_idx());
  }
  write_safetensors((fs::path(out_dir) / "model.safetensors").string(), out);
}

void replace_tensor(const std::string& dir, const std::string& name, const Tensor& t) {
  const std::string file = (fs::path(dir) / "model.safetensors").string();
  NamedTensors all;
  {
    const Checkpoint ck(file);
    for (const std::string& n : ck.names()) all.emplace_back(n, n == name ? t : ck.read(n).contiguous());
  }
  write_safetensors(file, all);
}

}  // namespace moefuse::testing
