// MoeConfig to and from YAML (yaml-cpp): the reader, with errors that point at the line and column, and to_yaml.
// The rules live in config_validate.cpp, the enum names in config_enums.h, the presets in config_presets.cpp.
#include "moefuse/config.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cmath>
#include <map>
#include <set>
#include <sstream>
#include <system_error>

#include "base/check.h"
#include "io/config_enums.h"
#include "io/config_validate.h"
#include "io/files.h"
#include "moefuse/error.h"

namespace moefuse {
namespace {

using config_detail::enum_choices;
using config_detail::enum_name;
using config_detail::EnumNames;
using config_detail::validate_config;

std::string num(int64_t v) { return std::to_string(v); }

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

class Reader {
 public:
  explicit Reader(std::string_view source) : source_(source) {}

  MoeConfig read(std::string_view text) {
    check_characters(text);
    YAML::Node root;
    try {
      check_single_document(text);
      root = YAML::Load(std::string(text));  // the first (and only) document
    } catch (const YAML::Exception& e) {
      throw IoError(check::message(at(e.mark), "YAML", "valid YAML", "a syntax error: " + e.msg));
    }
    if (root.IsNull())
      throw ValueError(check::message(source_, "(top level)", "a mapping with the key model_config",
                                      "an empty document"));
    if (!root.IsMap())
      throw ValueError(check::message(at(root.Mark()), "(top level)", "a mapping with the key model_config",
                                      describe(root)));

    MoeConfig c;
    YAML::Node model;
    bool have_model = false;
    for_each_key(root, "", {"exe_mode", "numerics", "model_config"}, [&](const std::string& key,
                                                                        const YAML::Node& value) {
      if (key == "exe_mode") {
        c.exe_mode = read_exe_mode(value);
      } else if (key == "numerics") {
        c.numerics = read_numerics(value);
      } else {
        have_model = true;
        model = value;
      }
    });
    if (!have_model)
      throw ValueError(check::message(at(root.Mark()), "model_config", "a mapping (a required key)", "no value"));
    if (!model.IsMap())
      throw ValueError(check::message(at(model.Mark()), "model_config", "a mapping", describe(model)));
    model_mark_ = model.Mark();

    static const std::vector<std::string_view> keys = {"model_type",
                                                       "enable_superkernel",
                                                       "num_experts",
                                                       "num_experts_per_tok",
                                                       "moe_chunk_max_len",
                                                       "hidden_size",
                                                       "moe_intermediate_size",
                                                       "n_shared_experts",
                                                       "shared_expert_intermediate_size",
                                                       "scoring_func",
                                                       "norm_topk_prob",
                                                       "n_group",
                                                       "topk_group",
                                                       "routed_scaling_factor",
                                                       "dtype",
                                                       "quant_mode",
                                                       "quant_group_size",
                                                       "quant_symmetric",
                                                       "router_logits_dtype",
                                                       "fp8_activations"};
    for_each_key(model, "model_config.", keys, [&](const std::string& key, const YAML::Node& v) {
      const std::string path = "model_config." + key;
      if (key == "model_type") c.model_type = read_enum<ModelType>(v, path);
      else if (key == "enable_superkernel") c.enable_superkernel = read_bool(v, path);
      else if (key == "num_experts") c.num_experts = read_int(v, path);
      else if (key == "num_experts_per_tok") c.num_experts_per_tok = read_int(v, path);
      else if (key == "moe_chunk_max_len") c.moe_chunk_max_len = read_int(v, path);
      else if (key == "hidden_size") c.hidden_size = read_int(v, path);
      else if (key == "moe_intermediate_size") c.moe_intermediate_size = read_int(v, path);
      else if (key == "n_shared_experts") c.n_shared_experts = read_int(v, path);
      else if (key == "shared_expert_intermediate_size") c.shared_expert_intermediate_size = read_int(v, path);
      else if (key == "scoring_func") c.scoring_func = read_enum<ScoringFunc>(v, path);
      else if (key == "norm_topk_prob") c.norm_topk_prob = read_bool(v, path);
      else if (key == "n_group") c.n_group = read_int(v, path);
      else if (key == "topk_group") c.topk_group = read_int(v, path);
      else if (key == "routed_scaling_factor") c.routed_scaling_factor = read_float(v, path);
      else if (key == "dtype") c.dtype = read_enum<DType>(v, path);
      else if (key == "quant_mode") c.quant_mode = read_enum<QuantMode>(v, path);
      else if (key == "quant_group_size") c.quant_group_size = read_int(v, path);
      else if (key == "quant_symmetric") c.quant_symmetric = read_bool(v, path);
      else if (key == "router_logits_dtype") c.router_logits_dtype = read_enum<RouterLogitsDtype>(v, path);
      else if (key == "fp8_activations") c.fp8_activations = read_enum<Fp8Activations>(v, path);
    });

    const std::pair<std::string_view, std::string> required[] = {
        {"model_type", enum_choices<ModelType>()}, {"num_experts", "an integer"},
        {"num_experts_per_tok", "an integer"},     {"hidden_size", "an integer"},
        {"moe_intermediate_size", "an integer"},   {"scoring_func", enum_choices<ScoringFunc>()},
        {"norm_topk_prob", "true or false"}};
    for (const auto& [key, what] : required)
      if (!marks_.count("model_config." + std::string(key)))
        throw ValueError(check::message(at(model_mark_), "model_config." + std::string(key),
                                        what + " (a required key)", "no value"));

    // qwen2_moe configs may describe their shared expert by its width alone (docs/layer.md §3).
    if (c.model_type == ModelType::qwen2_moe && !marks_.count("model_config.n_shared_experts") &&
        c.shared_expert_intermediate_size > 0)
      c.n_shared_experts = 1;

    validate_config(c, [&](std::string_view key) {
      std::string path = config_detail::top_level_key(key) ? std::string(key) : "model_config." + std::string(key);
      auto it = marks_.find(path);
      return at(it != marks_.end() ? it->second : model_mark_);
    });
    return c;
  }

 private:
  // Records where each document starts; ignores everything else.
  struct DocumentStarts : YAML::EventHandler {
    std::vector<YAML::Mark> starts;
    void OnDocumentStart(const YAML::Mark& mark) override { starts.push_back(mark); }
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
    void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
    void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
    void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                         YAML::EmitterStyle::value) override {}
    void OnSequenceEnd() override {}
    void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
    void OnMapEnd() override {}
  };

  // YAML allows no C0 control characters other than TAB, LF and CR, and no DEL (YAML 1.2 §5.1, c-printable).
  void check_characters(std::string_view text) const {
    int line = 1, column = 1;
    for (char ch : text) {
      auto u = static_cast<unsigned char>(ch);
      if ((u < 0x20 && u != '\t' && u != '\n' && u != '\r') || u == 0x7f) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\x%02x", u);
        throw IoError(check::message(std::string(source_) + ":" + std::to_string(line) + ":" + std::to_string(column),
                                     "YAML", "valid YAML (printable characters)",
                                     std::string("the control character ") + buf));
      }
      if (u == '\n') ++line, column = 1;
      else ++column;
    }
  }

  // Walks the stream's documents without building them: a second document is an error. yaml-cpp 0.7 can also
  // report a "document" without consuming any input (a stray ',' or ']' at the top level): loading every document
  // would then loop forever (jbeder/yaml-cpp#1040, fixed upstream by #1319), so at most three are walked and a
  // document starting where the previous one started is reported as the syntax error it is.
  void check_single_document(std::string_view text) const {
    std::istringstream in{std::string(text)};
    YAML::Parser parser(in);
    DocumentStarts docs;
    for (int i = 0; i < 3 && parser.HandleNextDocument(docs); ++i) {
      size_t n = docs.starts.size();
      if (n >= 2 && docs.starts[n - 1].pos == docs.starts[n - 2].pos)
        throw IoError(check::message(at(docs.starts[n - 1]), "YAML", "valid YAML",
                                     "a syntax error: a token that cannot start a node"));
    }
    if (docs.starts.size() > 1)
      throw IoError(check::message(at(docs.starts[1]), "YAML", "one YAML document", "a second document"));
  }

  std::string at(const YAML::Mark& m) const {
    if (m.is_null()) return std::string(source_);
    return std::string(source_) + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
  }

  static bool is_plain(const YAML::Node& n) { return n.Tag() == "?"; }

  // How a value is shown after "got".
  static std::string describe(const YAML::Node& n) {
    switch (n.Type()) {
      case YAML::NodeType::Null: return "null";
      case YAML::NodeType::Sequence: return "a sequence";
      case YAML::NodeType::Map: return "a mapping";
      case YAML::NodeType::Scalar:
        if (is_plain(n)) return io_detail::escape_for_message(n.Scalar());
        return "the string " + io_detail::quote_for_message(n.Scalar());
      default: return "nothing";
    }
  }

  [[noreturn]] void fail(const YAML::Node& n, std::string_view path, std::string_view expected) const {
    throw ValueError(check::message(at(n.Mark()), path, expected, describe(n)));
  }

  template <class F>
  void for_each_key(const YAML::Node& map, std::string_view prefix, const std::vector<std::string_view>& known,
                    F&& handle) {
    std::set<std::string> seen;
    for (const auto& kv : map) {
      const YAML::Node k = kv.first;
      const YAML::Node v = kv.second;
      if (!k.IsScalar())
        throw ValueError(check::message(at(k.Mark()), std::string(prefix) + "(key)", "a string key", describe(k)));
      const std::string key = k.Scalar();
      const std::string path = std::string(prefix) + key;
      if (std::find(known.begin(), known.end(), key) == known.end()) {
        std::string expected = "a known key (";
        for (size_t i = 0; i < known.size(); ++i) expected += (i ? ", " : "") + std::string(known[i]);
        expected += ")";
        std::string got = "an unknown key";
        std::string_view best;
        size_t best_d = 3;
        for (std::string_view cand : known) {
          size_t d = edit_distance(key, cand);
          if (d < best_d) best_d = d, best = cand;
        }
        if (!best.empty()) got += " (did you mean " + std::string(best) + "?)";
        throw ValueError(check::message(at(k.Mark()), io_detail::escape_for_message(path), expected, got));
      }
      if (!seen.insert(key).second)
        throw ValueError(check::message(at(k.Mark()), path, "each key once", "a duplicate key"));
      marks_[path] = v.Mark().is_null() ? k.Mark() : v.Mark();
      handle(key, v);
    }
  }

  int64_t read_int(const YAML::Node& n, const std::string& path) const {
    const char* what = "an integer";
    if (!n.IsScalar() || !is_plain(n)) fail(n, path, what);
    std::string_view s = n.Scalar();
    std::string_view digits = s;
    if (!digits.empty() && (digits[0] == '+' || digits[0] == '-')) digits.remove_prefix(1);
    bool all_digits = !digits.empty() && std::all_of(digits.begin(), digits.end(), [](char ch) {
      return ch >= '0' && ch <= '9';
    });
    if (!all_digits) fail(n, path, what);
    int64_t v = 0;
    std::string_view body = s[0] == '+' ? s.substr(1) : s;
    auto r = std::from_chars(body.data(), body.data() + body.size(), v);
    if (r.ec != std::errc() || r.ptr != body.data() + body.size())
      throw ValueError(check::message(at(n.Mark()), path, "an integer in the int64 range", describe(n)));
    return v;
  }

  bool read_bool(const YAML::Node& n, const std::string& path) const {
    if (n.IsScalar() && is_plain(n)) {
      const std::string& s = n.Scalar();
      if (s == "true" || s == "True" || s == "TRUE") return true;
      if (s == "false" || s == "False" || s == "FALSE") return false;
    }
    fail(n, path, "true or false");
  }

  double read_float(const YAML::Node& n, const std::string& path) const {
    const char* what = "a number";
    if (!n.IsScalar() || !is_plain(n)) fail(n, path, what);
    std::string_view s = n.Scalar();
    // YAML 1.2 core-schema decimal: [-+]? ( . digits | digits [. digits?] ) ( [eE] [-+]? digits )?
    size_t i = 0;
    bool neg = false;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    size_t start = i, int_digits = 0, frac_digits = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i, ++int_digits;
    if (i < s.size() && s[i] == '.') {
      ++i;
      while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i, ++frac_digits;
    }
    bool ok = int_digits + frac_digits > 0;
    if (ok && i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
      ++i;
      if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
      size_t exp_digits = 0;
      while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i, ++exp_digits;
      ok = exp_digits > 0;
    }
    if (!ok || i != s.size()) fail(n, path, what);
    double v = 0;
    auto r = std::from_chars(s.data() + start, s.data() + s.size(), v);
    if (r.ec != std::errc() || r.ptr != s.data() + s.size())
      throw ValueError(check::message(at(n.Mark()), path, "a finite number", describe(n)));
    return neg ? -v : v;
  }

  template <class E>
  E read_enum(const YAML::Node& n, const std::string& path) const {
    if (n.IsScalar())
      for (const auto& [e, name] : EnumNames<E>::v)
        if (n.Scalar() == name) return e;
    fail(n, path, enum_choices<E>());
  }

  ExeMode read_exe_mode(const YAML::Node& n) const {
    if (n.IsScalar() && n.Scalar() == "graph") return ExeMode::ge_graph;
    if (n.IsScalar())
      for (const auto& [e, name] : EnumNames<ExeMode>::v)
        if (n.Scalar() == name) return e;
    fail(n, "exe_mode", enum_choices<ExeMode>("graph"));
  }

  Numerics read_numerics(const YAML::Node& n) const {
    if (n.IsScalar() && (n.Scalar() == "native" || n.Scalar() == "portable"))
      return parse_numerics(n.Scalar(), "numerics");
    fail(n, "numerics", "native or portable");
  }

  std::string_view source_;
  std::map<std::string, YAML::Mark> marks_;
  YAML::Mark model_mark_ = YAML::Mark::null_mark();
};

}  // namespace

MoeConfig parse_config_yaml(std::string_view text, std::string_view source_name) {
  return Reader(source_name).read(text);
}

MoeConfig load_config_file(const std::string& path) {
  std::string text = io_detail::read_whole_file(path, "load_config_file", kMaxConfigFileBytes);
  return parse_config_yaml(text, path);
}

std::string to_yaml(const MoeConfig& c) {
  auto b = [](bool v) { return v ? "true" : "false"; };
  char buf[64];
  std::string scale;
  if (std::isnan(c.routed_scaling_factor)) {
    scale = ".nan";
  } else if (std::isinf(c.routed_scaling_factor)) {
    scale = c.routed_scaling_factor > 0 ? ".inf" : "-.inf";
  } else {
    auto r = std::to_chars(buf, buf + sizeof buf, c.routed_scaling_factor);
    scale.assign(buf, r.ptr);
    if (scale.find_first_of(".e") == std::string::npos) scale += ".0";
  }
  std::string s;
  s += "exe_mode: " + std::string(enum_name(c.exe_mode)) + "\n";
  if (c.numerics) s += "numerics: " + std::string(numerics_name(*c.numerics)) + "\n";
  s += "model_config:\n";
  s += "  model_type: " + std::string(enum_name(c.model_type)) + "\n";
  s += "  enable_superkernel: " + std::string(b(c.enable_superkernel)) + "\n";
  s += "  num_experts: " + num(c.num_experts) + "\n";
  s += "  num_experts_per_tok: " + num(c.num_experts_per_tok) + "\n";
  s += "  moe_chunk_max_len: " + num(c.moe_chunk_max_len) + "\n";
  s += "  hidden_size: " + num(c.hidden_size) + "\n";
  s += "  moe_intermediate_size: " + num(c.moe_intermediate_size) + "\n";
  s += "  n_shared_experts: " + num(c.n_shared_experts) + "\n";
  s += "  shared_expert_intermediate_size: " + num(c.shared_expert_intermediate_size) + "\n";
  s += "  scoring_func: " + std::string(enum_name(c.scoring_func)) + "\n";
  s += "  norm_topk_prob: " + std::string(b(c.norm_topk_prob)) + "\n";
  s += "  n_group: " + num(c.n_group) + "\n";
  s += "  topk_group: " + num(c.topk_group) + "\n";
  s += "  routed_scaling_factor: " + scale + "\n";
  s += "  dtype: " + std::string(dtype_name(c.dtype)) + "\n";
  s += "  quant_mode: " + std::string(enum_name(c.quant_mode)) + "\n";
  if (int4_weights(c.quant_mode) || c.quant_group_size != 128 || !c.quant_symmetric) {
    s += "  quant_group_size: " + num(c.quant_group_size) + "\n";
    s += "  quant_symmetric: " + std::string(b(c.quant_symmetric)) + "\n";
  }
  s += "  router_logits_dtype: " + std::string(enum_name(c.router_logits_dtype)) + "\n";
  if (c.fp8_activations != Fp8Activations::none)
    s += "  fp8_activations: " + std::string(enum_name(c.fp8_activations)) + "\n";
  return s;
}

}  // namespace moefuse
