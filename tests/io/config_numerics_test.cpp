// The config's `numerics` key (docs/layer.md §3): read at the top level beside exe_mode, plain or quoted; absent in
// every preset (the layer then runs the process default); refused with the file, line, column and key for anything
// but native or portable; written back by to_yaml only when set; carried by with_execution_options.
#include <gtest/gtest.h>

#include <string>

#include "moefuse/config.h"
#include "moefuse/error.h"
#include "moefuse/model.h"
#include "util/configs.h"
#include "util/errors.h"

namespace moefuse {
namespace {

// The small test model's model_config block (to_yaml's text, without its exe_mode line).
std::string model_yaml() {
  const std::string y = to_yaml(testing::tiny_config());
  return y.substr(y.find("model_config:"));
}
const std::string kModel = model_yaml();

MoeConfig with_key(const std::string& line) { return parse_config_yaml(line + "\n" + kModel, "n.yaml"); }

TEST(ConfigNumerics, ReadPlainOrQuoted) {
  EXPECT_EQ(with_key("numerics: native").numerics, Numerics::native);
  EXPECT_EQ(with_key("numerics: portable").numerics, Numerics::portable);
  EXPECT_EQ(with_key("numerics: \"portable\"").numerics, Numerics::portable);
  EXPECT_EQ(with_key("exe_mode: eager\nnumerics: native").numerics, Numerics::native);
}

TEST(ConfigNumerics, AbsentIsUnsetAndEveryPresetLeavesItUnset) {
  EXPECT_FALSE(parse_config_yaml(kModel, "n.yaml").numerics.has_value());
  EXPECT_FALSE(MoeConfig{}.numerics.has_value());
  for (const std::string& name : preset_names()) EXPECT_FALSE(load_preset(name).numerics.has_value()) << name;
}

TEST(ConfigNumerics, AnythingElseIsAnErrorNamingTheKey) {
  EXPECT_THROWS_MSG(with_key("numerics: fast"), ValueError, "n.yaml:1:11: numerics: expected native or portable",
                    "fast");
  EXPECT_THROWS_MSG(with_key("numerics: Native"), ValueError, "numerics: expected native or portable", "Native");
  EXPECT_THROWS_MSG(with_key("numerics: [native]"), ValueError, "numerics: expected native or portable");
  EXPECT_THROWS_MSG(with_key("numerics:"), ValueError, "numerics: expected native or portable");
  EXPECT_THROWS_MSG(with_key("numerics: native\nnumerics: portable"), ValueError, "numerics");  // duplicated
  // Under model_config it is an unknown key: the tier is an execution option of the whole config.
  EXPECT_THROWS_MSG(parse_config_yaml(kModel + "  numerics: native\n", "n.yaml"), ValueError,
                    "model_config.numerics");
}

TEST(ConfigNumerics, ValidateRefusesAValueOutsideTheEnum) {
  MoeConfig c;
  c.numerics = Numerics(7);
  EXPECT_THROWS_MSG(validate(c, "mine"), ValueError, "mine", "numerics: expected native or portable", "7");
}

TEST(ConfigNumerics, WrittenBackOnlyWhenSet) {
  MoeConfig c;
  EXPECT_EQ(to_yaml(c).find("numerics"), std::string::npos);
  EXPECT_EQ(parse_config_yaml(to_yaml(c), "y"), c);
  for (Numerics n : {Numerics::native, Numerics::portable}) {
    c.numerics = n;
    const std::string y = to_yaml(c);
    EXPECT_EQ(y.rfind("exe_mode: ge_graph\nnumerics: " + std::string(numerics_name(n)) + "\nmodel_config:\n", 0), 0u)
        << y;
    EXPECT_EQ(parse_config_yaml(y, "y"), c);
  }
}

TEST(ConfigNumerics, AnExecutionKeyOverAModelFolder) {
  const MoeConfig model = parse_config_yaml(kModel, "config.json");
  MoeConfig options = model;
  options.numerics = Numerics::portable;
  EXPECT_EQ(with_execution_options(model, "config.json", options, "o.yaml").numerics, Numerics::portable);
  options.numerics.reset();
  MoeConfig model_with = model;
  model_with.numerics = Numerics::native;  // the options' value wins, unset included
  EXPECT_FALSE(with_execution_options(model_with, "config.json", options, "o.yaml").numerics.has_value());
}

}  // namespace
}  // namespace moefuse
