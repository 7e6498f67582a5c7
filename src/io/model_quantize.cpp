// quantize_model (moefuse/model.h): a whole model folder's MoE layers quantised to int8 or to GPTQ's int4, every
// other tensor copied,
// written shard by shard with one layer in memory, into a staging directory renamed into place at the end.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "base/check.h"
#include "io/files.h"
#include "io/model_keys.h"
#include "io/safetensors_stream.h"
#include "moefuse/error.h"
#include "moefuse/model.h"

namespace moefuse {
namespace {

namespace fs = std::filesystem;
using io_detail::ByteSink;
using io_detail::StreamedTensor;
using model_detail::join_layers;

constexpr const char* kWho = "quantize_model";
constexpr size_t kCopyChunk = size_t(8) << 20;  // bytes per read when a tensor is copied through

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view x) {
  return s.size() >= x.size() && s.substr(s.size() - x.size()) == x;
}

// The one quantised layer held at a time: its int8 weights (LayerWeights) and their checkpoint names.
struct QuantisedLayer {
  int64_t layer = -1;
  LayerWeights weights;
  std::map<std::string, Tensor, std::less<>> tensors;
};

class Writer {
 public:
  Writer(const Checkpoint& ck, const QuantizeModelOptions& o) : ck_(ck), o_(o) {}

  // The MoE layer whose quantised projection `name` is, or -1 when the tensor is copied.
  int64_t quantised_layer_of(const std::string& name) const {
    for (const auto& [l, c] : configs_) {
      const std::string p = layer_checkpoint_prefix(c, l) + ".";
      if (!starts_with(name, p) || !ends_with(name, ".weight")) continue;
      const std::string_view rest = std::string_view(name).substr(p.size());
      if (starts_with(rest, "experts.") || starts_with(rest, "shared_expert.") || starts_with(rest, "shared_experts."))
        return l;
    }
    return -1;
  }

  void add_layer(int64_t l, const MoeConfig& c) { configs_[l] = c; }

  // The entries of one output shard: copied tensors (largest elements first, so they stay aligned), then per
  // quantised layer its f32 scales and clip factors, then its int8 weights.
  std::vector<StreamedTensor> shard_entries(const std::vector<std::string>& names) {
    std::vector<StreamedTensor> copied, quantised;
    std::map<int64_t, std::pair<std::vector<StreamedTensor>, std::vector<StreamedTensor>>> by_layer;
    for (const std::string& name : names) {
      const int64_t l = quantised_layer_of(name);
      const SafetensorsEntry& e = ck_.entry(name);
      if (l < 0) {
        copied.push_back(copy_entry(name, e));
        continue;
      }
      auto& [f32, i8] = by_layer[l];
      const std::string base = name.substr(0, name.size() - std::string("weight").size());
      const int64_t out = e.shape.size() == 2 ? e.shape[0] : 0;
      const MoeConfig& c = configs_.at(l);
      if (int4_weights(c.quant_mode)) {  // GPTQ's tensors (layer/gptq.h): i32 first, then the f16 scales
        const int64_t in = e.shape.size() == 2 ? e.shape[1] : 0, G = c.quant_group_size;
        f32.push_back(quantised_entry(l, base + "qweight", "I32", {in / 8, out}, uint64_t(in / 8 * out) * 4));
        f32.push_back(quantised_entry(l, base + "qzeros", "I32", {in / G, out / 8}, uint64_t(in / G * (out / 8)) * 4));
        f32.push_back(quantised_entry(l, base + "g_idx", "I32", {in}, uint64_t(in) * 4));
        i8.push_back(quantised_entry(l, base + "scales", "F16", {in / G, out}, uint64_t(in / G * out) * 2));
        continue;
      }
      i8.push_back(quantised_entry(l, name, "I8", e.shape, uint64_t(e.shape.size() == 2 ? out * e.shape[1] : 0)));
      f32.push_back(quantised_entry(l, base + "weight_scale", "F32", {out}, uint64_t(out) * 4));
      // w8a8c8: each routed expert's down projection (mixtral: w2; docs/layer.md §5) gets its clip factor.
      const bool down = ends_with(name, c.model_type == ModelType::mixtral ? ".w2.weight" : ".down_proj.weight");
      if (c.quant_mode == QuantMode::w8a8c8 && down && starts_with(name, layer_checkpoint_prefix(c, l) + ".experts."))
        f32.push_back(quantised_entry(l, base + "clip_alpha", "F32", {1}, 4));
    }
    std::stable_sort(copied.begin(), copied.end(), [&](const StreamedTensor& a, const StreamedTensor& b) {
      return element_bytes(a) > element_bytes(b);
    });
    for (auto& [l, parts] : by_layer) {
      for (auto& t : parts.first) quantised.push_back(std::move(t));
      for (auto& t : parts.second) quantised.push_back(std::move(t));
    }
    for (auto& t : quantised) copied.push_back(std::move(t));
    return copied;
  }

  int64_t done = 0, total = 0;

 private:
  static double element_bytes(const StreamedTensor& t) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    return n > 0 ? double(t.bytes) / double(n) : 0.0;
  }

  StreamedTensor copy_entry(const std::string& name, const SafetensorsEntry& e) {
    const uint64_t bytes = e.end - e.begin;
    total += int64_t(bytes);
    return StreamedTensor{name, e.dtype, e.shape, bytes, [this, name, bytes](const ByteSink& sink) {
                            std::vector<std::byte> buf(size_t(std::min<uint64_t>(bytes, kCopyChunk)));
                            for (uint64_t at = 0; at < bytes; at += buf.size()) {
                              const size_t n = size_t(std::min<uint64_t>(buf.size(), bytes - at));
                              ck_.read_bytes(name, at, buf.data(), n);
                              sink(buf.data(), n);
                            }
                            advance(bytes);
                          }};
  }

  StreamedTensor quantised_entry(int64_t l, const std::string& name, const char* dtype, std::vector<int64_t> shape,
                                 uint64_t bytes) {
    total += int64_t(bytes);
    return StreamedTensor{name, dtype, shape, bytes, [this, l, name, bytes](const ByteSink& sink) {
                            const Tensor& t = quantised(l, name);
                            const Tensor c = t.contiguous();
                            if (uint64_t(c.numel()) * c.element_size() != bytes)
                              throw ValueError(check::message(
                                  kWho, name, std::to_string(bytes) + " bytes",
                                  c.describe() + (c.dtype() == DType::f32 && ends_with(name, ".scales")
                                                      ? " (a group's scale is outside fp16's range, which GPTQ's "
                                                        "f16 scales cannot hold)"
                                                      : "")));
                            sink(c.data(), bytes);
                            advance(bytes);
                          }};
  }

  // Tensor `name` of quantised layer l, quantising the layer when it is not the one held.
  const Tensor& quantised(int64_t l, const std::string& name) {
    if (held_.layer != l) {
      held_ = QuantisedLayer{};  // frees the previous layer first
      const MoeConfig& c = configs_.at(l);
      LayerWeights w;
      {
        const MoeLayer layer = MoeLayer::from_checkpoint(c, ck_, l, {.threads = o_.threads});
        w = layer.weights();
      }  // the packed layer is gone before its tensors are written
      held_.layer = l;
      held_.weights = std::move(w);
      for (auto& [n, t] : layer_checkpoint_tensors(c, held_.weights, l)) held_.tensors.emplace(n, t);
    }
    const auto it = held_.tensors.find(name);
    if (it == held_.tensors.end())
      throw IoError(check::message(kWho, name, "a tensor of the quantised layer " + std::to_string(l), "none"));
    return it->second;
  }

  void advance(uint64_t bytes) {
    done += int64_t(bytes);
    if (o_.progress) o_.progress(done, total);
  }

  const Checkpoint& ck_;
  const QuantizeModelOptions& o_;
  std::map<int64_t, MoeConfig> configs_;
  QuantisedLayer held_;
};


fs::path normalised(const std::string& p) {
  fs::path r = fs::weakly_canonical(fs::absolute(p));
  if (r.filename().empty()) r = r.parent_path();
  return r;
}

// out_dir: neither the input nor inside it; absent or an empty directory.
void check_out_dir(const std::string& dir, const std::string& out_dir) {
  const fs::path in = normalised(dir), out = normalised(out_dir);
  const auto [a, b] = std::mismatch(in.begin(), in.end(), out.begin(), out.end());
  if (a == in.end())
    throw ValueError(check::message(kWho, "out_dir", "a directory outside the input folder " + in.string(),
                                    out.string() + (b == out.end() ? " (the input itself)" : " (inside it)")));
  std::error_code ec;
  const fs::file_status st = fs::status(out, ec);
  if (!fs::exists(st)) return;
  if (!fs::is_directory(st) || !fs::is_empty(out, ec))
    throw IoError(check::message(kWho, "out_dir: " + out_dir, "a new directory name or an empty directory",
                                 fs::is_directory(st) ? "a directory that is not empty" : io_detail::file_kind(
                                                                                              unsigned(st.type()))));
}

// The input's config.json with the quantization_config of the output: moefuse's for int8; for int4 GPTQ's keys as
// GPTQ writes them, plus the two it has no word for (the activation mode and the layers quantised).
std::string quantised_config_json(const std::string& config_path, const QuantizeModelOptions& o,
                                  const std::vector<int64_t>& layers) {
  nlohmann::ordered_json j =
      nlohmann::ordered_json::parse(io_detail::read_whole_file(config_path, kWho, kMaxModelConfigBytes));
  if (int4_weights(o.mode))
    j["quantization_config"] = {{"quant_method", "gptq"},
                                {"bits", 4},
                                {"group_size", o.group_size},
                                {"sym", o.symmetric},
                                {"desc_act", false},
                                {"checkpoint_format", "gptq"},
                                {"moefuse_quant_mode", std::string(quant_mode_name(o.mode))},
                                {"quantized_layers", layers}};
  else
    j["quantization_config"] = {{"quant_method", "moefuse"},
                                {"quant_mode", std::string(quant_mode_name(o.mode))},
                                {"quantized_layers", layers}};
  return j.dump(2) + "\n";
}

void write_text(const fs::path& p, const std::string& text) {
  io_detail::write_file_atomic(p.string(), kWho, [&](const ByteSink& sink) { sink(text.data(), text.size()); });
}

}  // namespace

QuantizeModelResult quantize_model(const std::string& dir, const std::string& out_dir,
                                   const QuantizeModelOptions& o) {
  if (o.mode == QuantMode::none)
    throw ValueError(check::message(kWho, "mode", "w8a8, w8a8c8, w4a16 or w4a8", "none"));
  const ModelConfig m = load_model_config(dir);
  if (m.quant_mode != QuantMode::none)
    throw ValueError(check::message(m.source, "quantization_config", "a float model",
                                    "one already quantised (" + std::string(quant_mode_name(m.quant_mode)) + ")"));
  // An FP8 release's other layers and scales would be copied under a quantization_config that no longer says fp8.
  if (!m.fp8.source.empty())
    throw ValueError(check::message(m.source, "quantization_config", "a float model",
                                    "an FP8 block-scaled one (quant_method \"fp8\"; quantising it is not supported)"));
  std::vector<int64_t> layers = o.layers.empty() ? m.moe_layers : o.layers;
  std::sort(layers.begin(), layers.end());
  for (size_t i = 0; i < layers.size(); ++i)
    if (!m.is_moe_layer(layers[i]) || (i > 0 && layers[i] == layers[i - 1]))
      throw ValueError(check::message(kWho, "layers",
                                      "distinct MoE layers of " + m.source + " (" + join_layers(m.moe_layers) + ")",
                                      std::to_string(layers[i]) + (m.is_moe_layer(layers[i]) ? " twice" : "")));
  check_out_dir(dir, out_dir);
  const Checkpoint ck(dir);
  Writer writer(ck, o);
  for (int64_t l : layers) {
    MoeConfig c = m.layer_config(l);
    c.quant_mode = o.mode;
    c.quant_group_size = o.group_size;
    c.quant_symmetric = o.symmetric;
    validate(c, m.source + " with quant_mode " + std::string(quant_mode_name(o.mode)));
    check_model_tensors(c, m.source, ck, l);
    writer.add_layer(l, c);
  }

  // The input's shards, each with its tensors (those of the checkpoint) and its metadata.
  std::map<std::string, std::vector<std::string>> shard_names;
  for (const std::string& n : ck.names()) shard_names[ck.file_of(n)].push_back(n);
  std::vector<std::pair<std::string, std::vector<StreamedTensor>>> shards;
  for (const std::string& f : ck.files()) shards.emplace_back(f, writer.shard_entries(shard_names[f]));

  const fs::path out = normalised(out_dir);
  std::string staging_name = ".";  // built by appending: GCC 12 warns (-Wrestrict) wrongly on "." + string
  staging_name += out.filename().string();
  staging_name += ".staging-" + std::to_string(getpid());
  const fs::path staging = out.parent_path() / staging_name;
  std::error_code ec;
  fs::remove_all(staging, ec);
  fs::create_directories(staging, ec);
  if (ec) throw IoError(check::message(kWho, "out_dir: " + staging.string(), "a directory that can be created",
                                       ec.message()));
  QuantizeModelResult r;
  r.layers = layers;
  try {
    nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
    for (const auto& [file, entries] : shards) {
      const std::string name = fs::path(file).filename().string();
      io_detail::write_safetensors_stream(kWho, (staging / name).string(), entries, SafetensorsFile(file).metadata());
      for (const StreamedTensor& t : entries) weight_map[t.name] = name;
      r.tensors += int64_t(entries.size());
    }
    r.data_bytes = writer.total;
    const fs::path index = fs::path(dir) / "model.safetensors.index.json";
    if (fs::exists(index)) {
      nlohmann::ordered_json j = {{"metadata", {{"total_size", writer.total}}}, {"weight_map", weight_map}};
      write_text(staging / "model.safetensors.index.json", j.dump(2) + "\n");
    }
    write_text(staging / "config.json", quantised_config_json(m.source, o, layers));
    for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
      const std::string n = e.path().filename().string();
      if (!e.is_regular_file() || ends_with(n, ".safetensors") || n == "model.safetensors.index.json" ||
          n == "config.json")
        continue;
      fs::copy_file(e.path(), staging / n);
    }
    for (const fs::directory_entry& e : fs::directory_iterator(staging))
      r.files.push_back(e.path().filename().string());
    std::sort(r.files.begin(), r.files.end());
    fs::rename(staging, out);  // replaces an empty out_dir
  } catch (const fs::filesystem_error& e) {
    fs::remove_all(staging, ec);
    throw IoError(check::message(kWho, "out_dir: " + out_dir, "a folder that can be written", e.what()));
  } catch (...) {
    fs::remove_all(staging, ec);
    throw;
  }
  return r;
}

}  // namespace moefuse
