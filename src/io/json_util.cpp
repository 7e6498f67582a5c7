#include "io/json_util.h"

#include <set>
#include <vector>

#include "base/check.h"
#include "io/files.h"
#include "moefuse/error.h"

namespace moefuse::io_detail {

using nlohmann::json;

nlohmann::json parse_json_strict(std::string_view text, std::string_view source, std::string_view what,
                                 int max_depth) {
  std::vector<std::set<std::string>> keys;  // keys seen in each open object
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) -> bool {
    if (depth > max_depth)
      throw IoError(check::message(source, what, "JSON nested at most " + std::to_string(max_depth) + " levels deep",
                                   "deeper nesting"));
    switch (event) {
      case json::parse_event_t::object_start: keys.emplace_back(); break;
      case json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case json::parse_event_t::key:
        if (!keys.empty() && parsed.is_string() && !keys.back().insert(parsed.get<std::string>()).second)
          throw IoError(check::message(source, what, "each key of a JSON object once",
                                       "the key " + quote_for_message(parsed.get<std::string>()) + " twice"));
        break;
      default: break;
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const json::exception& e) {
    // "[json.exception.parse_error.101] parse error at line 1, column 3: ..." -> drop the bracketed id.
    std::string msg = e.what();
    if (auto p = msg.find("] "); p != std::string::npos && msg[0] == '[') msg.erase(0, p + 2);
    throw IoError(check::message(source, what, "valid JSON", "invalid JSON (" + escape_for_message(msg, 300) + ")"));
  }
}

std::string describe_json(const json& j) {
  switch (j.type()) {
    case json::value_t::string: return "the string " + quote_for_message(j.get_ref<const std::string&>());
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float: return "the number " + j.dump();
    case json::value_t::boolean: return j.get<bool>() ? "true" : "false";
    case json::value_t::null: return "null";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    default: return "a " + std::string(j.type_name());
  }
}

}  // namespace moefuse::io_detail
