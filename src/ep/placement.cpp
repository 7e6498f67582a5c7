// ExpertPlacement (moefuse/ep.h): which ranks hold each routed expert — contiguous blocks, or a JSON map.
#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "moefuse/ep.h"
#include "moefuse/error.h"

namespace moefuse {

ExpertPlacement ExpertPlacement::contiguous(int64_t experts, int ranks) {
  if (experts < 1 || ranks < 1)
    throw ValueError("ExpertPlacement::contiguous: expected experts >= 1 and ranks >= 1, got experts " +
                     std::to_string(experts) + ", ranks " + std::to_string(ranks));
  ExpertPlacement p;
  p.ranks.resize(size_t(experts));
  for (int64_t e = 0; e < experts; ++e) p.ranks[size_t(e)] = {int(e * ranks / experts)};
  return p;
}

void ExpertPlacement::validate(int64_t experts, int nranks, const std::string& where) const {
  if (int64_t(ranks.size()) != experts)
    throw ValueError(where + ": expected a list of ranks for each of the " + std::to_string(experts) +
                     " experts, got " + std::to_string(ranks.size()) + " lists");
  for (size_t e = 0; e < ranks.size(); ++e) {
    const std::vector<int>& rs = ranks[e];
    const std::string at = where + ": ranks[" + std::to_string(e) + "]";
    if (rs.empty()) throw ValueError(at + ": expected at least one rank holding the expert, got none");
    for (size_t i = 0; i < rs.size(); ++i) {
      if (rs[i] < 0 || rs[i] >= nranks)
        throw ValueError(at + ": expected ranks in 0.." + std::to_string(nranks - 1) + ", got " +
                         std::to_string(rs[i]));
      if (std::count(rs.begin(), rs.end(), rs[i]) > 1)
        throw ValueError(at + ": expected distinct ranks, got rank " + std::to_string(rs[i]) + " twice");
    }
  }
}

std::vector<int64_t> ExpertPlacement::experts_of(int rank) const {
  std::vector<int64_t> out;
  for (size_t e = 0; e < ranks.size(); ++e)
    if (std::find(ranks[e].begin(), ranks[e].end(), rank) != ranks[e].end()) out.push_back(int64_t(e));
  return out;
}

ExpertPlacement ExpertPlacement::from_file(const std::string& path, int64_t experts, int nranks) {
  std::ifstream in(path);
  if (!in) throw IoError(path + ": expected a readable placement file, got none (cannot open it)");
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    throw ValueError(path + ": expected JSON {\"experts\": [[ranks], ...]}, got a parse error: " + e.what());
  }
  if (!j.is_object() || !j.contains("experts") || !j["experts"].is_array() || j.size() != 1)
    throw ValueError(path + ": expected a JSON object with one key, \"experts\": a list of rank lists, got " +
                     j.dump().substr(0, 80));
  ExpertPlacement p;
  const nlohmann::json& list = j["experts"];
  for (size_t e = 0; e < list.size(); ++e) {
    const nlohmann::json& rs = list[e];
    if (!rs.is_array())
      throw ValueError(path + ": experts[" + std::to_string(e) + "]: expected a list of ranks, got " + rs.dump());
    std::vector<int> ranks;
    for (const nlohmann::json& r : rs) {
      if (!r.is_number_integer())
        throw ValueError(path + ": experts[" + std::to_string(e) + "]: expected integer ranks, got " + r.dump());
      const int64_t v = r.get<int64_t>();
      if (v < 0 || v >= nranks)
        throw ValueError(path + ": experts[" + std::to_string(e) + "]: expected ranks in 0.." +
                         std::to_string(nranks - 1) + ", got " + std::to_string(v));
      ranks.push_back(int(v));
    }
    p.ranks.push_back(std::move(ranks));
  }
  p.validate(experts, nranks, path);
  return p;
}

}  // namespace moefuse
