// The moefuse command's subcommands, one file each (docs/cli.md). Each registers its options on the CLI11 app and
// returns its exit status through `status`: 0 ok, 1 a check failed (verify), 2 bad input. Errors are thrown as
// moefuse::Error (or CLI::ParseError for bad flags) and reported by main() as one line on stderr, with status 2.
#pragma once

#include <CLI/CLI.hpp>

namespace moefuse::cli {

void add_info_command(CLI::App& app, int& status);
void add_run_command(CLI::App& app, int& status);
void add_verify_command(CLI::App& app, int& status);
void add_quantize_command(CLI::App& app, int& status);
void add_bench_command(CLI::App& app, int& status);

}  // namespace moefuse::cli
