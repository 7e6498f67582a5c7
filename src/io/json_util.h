// JSON helpers for the safetensors reader/writer and checkpoint indexes (nlohmann::json, private to src/io).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace moefuse::io_detail {

/// Parses `text` as one JSON value, rejecting duplicate object keys and nesting deeper than `max_depth` (so that
/// hostile input cannot exhaust the stack or hide a second definition of a key). Errors: IoError
/// "<source>: <what>: expected <a JSON object ...>, got ..." — the parser's own message with its byte position
/// for syntax errors.
nlohmann::json parse_json_strict(std::string_view text, std::string_view source, std::string_view what,
                                 int max_depth);

/// How a JSON value is shown after "got": "the string \"x\"", "the number 2.5", "true", "null", "an array",
/// "an object".
std::string describe_json(const nlohmann::json& j);

}  // namespace moefuse::io_detail
