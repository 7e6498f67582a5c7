// moefuse — run, check and measure Mixture-of-Experts layers on this CPU.
#include <cstdio>

#include <CLI/CLI.hpp>

#include "commands.h"
#include "moefuse/error.h"

int main(int argc, char** argv) {
  CLI::App app{"moefuse " MOEFUSE_VERSION ": Mixture-of-Experts operators and layers for CPUs"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "moefuse " MOEFUSE_VERSION);
  int status = 0;
  moefuse::cli::add_info_command(app, status);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 prints help/version with exit code 0 and usage errors with its own code; bad flags exit 2 for us.
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  } catch (const moefuse::Error& e) {
    std::fprintf(stderr, "moefuse: error: %s\n", e.what());
    return 2;
  }
  return status;
}
