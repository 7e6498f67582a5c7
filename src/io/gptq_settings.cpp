// read_gptq_settings (moefuse/io.h): the GPTQ settings a checkpoint's directory declares.
#include <cctype>
#include <filesystem>

#include "io/files.h"
#include "io/json_util.h"
#include "moefuse/error.h"
#include "moefuse/io.h"

namespace moefuse {
namespace fs = std::filesystem;
namespace {

constexpr uint64_t kMaxSettingsBytes = uint64_t(16) << 20;

nlohmann::json read_json(const std::string& path, std::string_view what) {
  return io_detail::parse_json_strict(io_detail::read_whole_file(path, "read_gptq_settings", kMaxSettingsBytes), path,
                                      what, 64);
}

}  // namespace

GptqSettings read_gptq_settings(const Checkpoint& ck) {
  GptqSettings s;
  std::error_code ec;
  const fs::path p(ck.path());
  fs::path dir = fs::is_directory(p, ec) ? p : p.parent_path();
  if (dir.empty()) dir = ".";
  nlohmann::json j;
  if (fs::exists(dir / "quantize_config.json", ec)) {
    s.source = (dir / "quantize_config.json").string();
    j = read_json(s.source, "quantize_config.json");
  } else if (fs::exists(dir / "config.json", ec)) {
    const std::string path = (dir / "config.json").string();
    const nlohmann::json cfg = read_json(path, "config.json");
    if (!cfg.is_object() || !cfg.contains("quantization_config")) return s;
    s.source = path + ": quantization_config";
    j = cfg["quantization_config"];
  } else {
    return s;
  }
  auto fail = [&](const std::string& key, const char* want, const nlohmann::json& got) {
    throw ValueError(s.source + ": " + key + ": expected " + want + ", got " + io_detail::describe_json(got));
  };
  if (!j.is_object()) fail("quantization settings", "a JSON object", j);
  auto text = [&](const char* key, std::string& out) {
    if (!j.contains(key)) return;
    if (!j[key].is_string()) fail(key, "a string", j[key]);
    out = j[key].get<std::string>();
  };
  auto integer = [&](const char* key, int64_t& out) {
    if (!j.contains(key)) return;
    if (!j[key].is_number_integer()) fail(key, "an integer", j[key]);
    out = j[key].get<int64_t>();
  };
  auto boolean = [&](const char* key, bool& out) {
    if (!j.contains(key)) return;
    if (!j[key].is_boolean()) fail(key, "true or false", j[key]);
    out = j[key].get<bool>();
  };
  text("quant_method", s.quant_method);
  integer("bits", s.bits);
  integer("group_size", s.group_size);
  boolean("desc_act", s.desc_act);
  boolean("sym", s.sym);
  text("checkpoint_format", s.checkpoint_format);
  boolean("zero_point", s.zero_point);
  text("version", s.version);
  return s;
}

bool is_awq_gemm_version(std::string_view version) {
  if (version.size() != 4) return false;
  for (size_t i = 0; i < 4; ++i)
    if (std::tolower(static_cast<unsigned char>(version[i])) != "gemm"[i]) return false;
  return true;
}

}  // namespace moefuse
