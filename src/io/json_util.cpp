#include "io/json_util.h"

#include <utility>
#include <vector>

#include "base/check.h"
#include "io/files.h"
#include "moefuse/error.h"

namespace moefuse::io_detail {

using nlohmann::json;

namespace {

// Builds the document from nlohmann's SAX events, rejecting duplicate keys and deep nesting as they arrive. Not
// json::parse with a callback: its DOM builder scans the parent object for discarded values after every nested
// object ends, which makes a header of n tensor entries cost O(n^2).
class StrictBuilder {
 public:
  StrictBuilder(json& root, std::string_view source, std::string_view what, int max_depth)
      : root_(root), source_(source), what_(what), max_depth_(max_depth) {}

  bool null() { return value(nullptr); }
  bool boolean(bool v) { return value(v); }
  bool number_integer(json::number_integer_t v) { return value(v); }
  bool number_unsigned(json::number_unsigned_t v) { return value(v); }
  bool number_float(json::number_float_t v, const json::string_t&) { return value(v); }
  bool string(json::string_t& v) { return value(std::move(v)); }
  bool binary(json::binary_t& v) { return value(json::binary(std::move(v))); }
  bool start_object(std::size_t) {
    check_depth();
    open_.push_back(place(json::object()));
    return true;
  }
  bool key(json::string_t& k) {
    check_depth();
    auto [it, inserted] = open_.back()->get_ref<json::object_t&>().emplace(std::move(k), nullptr);
    if (!inserted)
      throw IoError(check::message(source_, what_, "each key of a JSON object once",
                                   "the key " + quote_for_message(it->first) + " twice"));
    slot_ = &it->second;
    return true;
  }
  bool end_object() {
    open_.pop_back();
    return true;
  }
  bool start_array(std::size_t) {
    check_depth();
    open_.push_back(place(json::array()));
    return true;
  }
  bool end_array() {
    open_.pop_back();
    return true;
  }
  template <class Exception>
  bool parse_error(std::size_t, const std::string&, const Exception& e) {
    throw e;
  }

 private:
  // Depth as json::parse's callback counts it: the number of containers open around the value or key.
  void check_depth() const {
    if (int(open_.size()) > max_depth_)
      throw IoError(check::message(source_, what_, "JSON nested at most " + std::to_string(max_depth_) + " levels deep",
                                   "deeper nesting"));
  }
  template <class T>
  bool value(T&& v) {
    check_depth();
    place(json(std::forward<T>(v)));
    return true;
  }
  // Puts `v` where the next value goes (the root, the end of the open array, or the slot of the last key) and
  // returns it. Pointers to open containers stay valid: nothing is added to a container while a child is open.
  json* place(json&& v) {
    if (open_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    json& top = *open_.back();
    if (top.is_array()) {
      auto& a = top.get_ref<json::array_t&>();
      a.push_back(std::move(v));
      return &a.back();
    }
    *slot_ = std::move(v);
    return slot_;
  }

  json& root_;
  std::string_view source_, what_;
  int max_depth_;
  std::vector<json*> open_;
  json* slot_ = nullptr;
};

}  // namespace

nlohmann::json parse_json_strict(std::string_view text, std::string_view source, std::string_view what,
                                 int max_depth) {
  json root;
  StrictBuilder builder(root, source, what, max_depth);
  try {
    json::sax_parse(text.begin(), text.end(), &builder, json::input_format_t::json, /*strict=*/true,
                    /*ignore_comments=*/false);
    return root;
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
