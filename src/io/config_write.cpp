// write_config_file (include/moefuse/config.h): a config's YAML text, written atomically.
#include <string>

#include "io/files.h"
#include "moefuse/config.h"

namespace moefuse {

void write_config_file(const std::string& path, const MoeConfig& config) {
  const std::string yaml = to_yaml(config);
  io_detail::write_file_atomic(path, "write_config_file",
                               [&](const io_detail::ByteSink& sink) { sink(yaml.data(), yaml.size()); });
}

}  // namespace moefuse
