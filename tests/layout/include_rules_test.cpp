// The folders' include rules (docs/architecture.md): what each part of the source tree may include, checked over
// every file. Kernels know no operators or layers, operators know nothing of files, public headers include nothing
// from src/.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

struct Rule {
  const char* folder;                 // relative to the source tree
  std::set<std::string> may_include;  // first path component of "..." includes; "" = a file of the same folder
};

// The folders of every quoted include of `path` that `allowed` does not hold, as "file:line: include".
std::vector<std::string> violations(const fs::path& root, const Rule& rule) {
  std::vector<std::string> out;
  const std::regex include(R"re(^\s*#\s*include\s*"([^"]+)")re");
  for (const auto& entry : fs::recursive_directory_iterator(root / rule.folder)) {
    const std::string ext = entry.path().extension().string();
    if (!entry.is_regular_file() || (ext != ".h" && ext != ".cpp")) continue;
    std::ifstream in(entry.path());
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
      std::smatch m;
      if (!std::regex_search(line, m, include)) continue;
      const std::string target = m[1];
      const size_t slash = target.find('/');
      const std::string folder = slash == std::string::npos ? "" : target.substr(0, slash);
      if (!rule.may_include.count(folder))
        out.push_back(fs::relative(entry.path(), root).string() + ":" + std::to_string(n) + ": " + target);
    }
  }
  return out;
}

TEST(IncludeRules, EveryFolderIncludesOnlyWhatItMay) {
  const fs::path root = MOEFUSE_SOURCE_DIR;
  const Rule rules[] = {
      {"include/moefuse", {"moefuse"}},
      {"src/base", {"base", "moefuse"}},
      {"src/kernels", {"base", "kernels", "moefuse"}},
      {"src/reference", {"base", "reference", "moefuse"}},
      {"src/ops", {"base", "kernels", "reference", "ops", "moefuse"}},
      {"src/io", {"base", "io", "moefuse"}},
      {"src/layer", {"base", "kernels", "reference", "ops", "layer", "moefuse"}},
      {"python/src", {"", "moefuse"}},
      {"tools/moefuse", {"", "moefuse"}},
  };
  for (const Rule& rule : rules) {
    const std::vector<std::string> bad = violations(root, rule);
    EXPECT_TRUE(bad.empty()) << rule.folder << " includes what it may not:\n  " << [&] {
      std::string s;
      for (const std::string& b : bad) s += b + "\n  ";
      return s;
    }();
  }
}

}  // namespace
