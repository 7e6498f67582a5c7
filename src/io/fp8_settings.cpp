// read_fp8_settings (moefuse/io.h) and the FP8 keys of quantization_config.
#include "io/fp8_settings.h"

#include <filesystem>

#include "io/files.h"
#include "io/json_util.h"
#include "moefuse/error.h"

namespace moefuse {
namespace io_detail {

Fp8Settings parse_fp8_quantization(const model_detail::Keys& qc, std::string source) {
  Fp8Settings s;
  s.source = std::move(source);
  // transformers' FineGrainedFP8Config writes no fmt and means e4m3; DeepSeek's releases write "e4m3".
  const std::string fmt = qc.string_or("fmt", "e4m3");
  if (fmt != "e4m3")
    qc.fail("fmt", "\"e4m3\" (the FP8 format moefuse reads)", quote_for_message(fmt));
  const std::string act = qc.string_or("activation_scheme", "dynamic");
  if (act != "dynamic")
    qc.fail("activation_scheme", "\"dynamic\" (activations are not quantised: static activation scales are not read)",
            quote_for_message(act));
  if (qc.has("weight_block_size")) {
    const std::vector<int64_t> b = qc.int_list_or("weight_block_size");
    if (b.size() != 2 || b[0] < 1 || b[1] < 1) {
      std::string got = "[";
      for (size_t i = 0; i < b.size(); ++i) got += (i ? ", " : "") + std::to_string(b[i]);
      qc.fail("weight_block_size", "two integers >= 1 ([rows, columns] per scale, e.g. [128, 128])", got + "]");
    }
    s.block_n = b[0];
    s.block_k = b[1];
  }
  return s;
}

}  // namespace io_detail

Fp8Settings read_fp8_settings(const Checkpoint& ck) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path p(ck.path());
  fs::path dir = fs::is_directory(p, ec) ? p : p.parent_path();
  if (dir.empty()) dir = ".";
  const std::string path = (dir / "config.json").string();
  if (!fs::exists(path, ec)) return Fp8Settings{""};
  const nlohmann::json cfg = io_detail::parse_json_strict(
      io_detail::read_whole_file(path, "read_fp8_settings", uint64_t(16) << 20), path, "config.json", 64);
  const model_detail::Keys root(cfg, path, "");
  if (!cfg.is_object() || root.find("quantization_config") == nullptr) return Fp8Settings{""};
  const model_detail::Keys qc = root.object("quantization_config");
  if (qc.string_or("quant_method", "") != "fp8") return Fp8Settings{""};
  return io_detail::parse_fp8_quantization(qc, path + ": quantization_config");
}

}  // namespace moefuse
