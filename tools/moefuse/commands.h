// The moefuse command's subcommands. Each registers its options on the CLI11 app and returns the callback's exit
// status through `status` (0 ok, 1 a check failed, 2 bad input).
#pragma once

#include <CLI/CLI.hpp>

namespace moefuse::cli {

void add_info_command(CLI::App& app, int& status);

}  // namespace moefuse::cli
