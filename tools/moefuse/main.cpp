// moefuse — run, check and measure Mixture-of-Experts layers on this CPU.
#include <cstdio>
#include <exception>
#include <new>
#include <string>

#include <CLI/CLI.hpp>

#include "commands.h"
#include "common.h"
#include "moefuse/error.h"

namespace {

// Every error is one line: "moefuse: error: <message>" (line breaks in a message are folded into spaces).
int fail(const std::string& message) {
  std::string line = message;
  for (char& c : line)
    if (c == '\n' || c == '\r') c = ' ';
  while (!line.empty() && line.back() == ' ') line.pop_back();
  std::fprintf(stderr, "moefuse: error: %s\n", line.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"moefuse " MOEFUSE_VERSION ": Mixture-of-Experts operators and layers for CPUs"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "moefuse " MOEFUSE_VERSION);
  int status = 0;
  moefuse::cli::add_info_command(app, status);
  moefuse::cli::add_run_command(app, status);
  moefuse::cli::add_verify_command(app, status);
  moefuse::cli::add_quantize_command(app, status);
  moefuse::cli::add_bench_command(app, status);
  moefuse::cli::refuse_empty_values(app);
  // CLI11 says "A subcommand is required" both for none and for a misspelt one: name what was given instead.
  if (argc < 2 || argv[1][0] != '-') {
    std::string given = argc < 2 ? "none" : "\"" + std::string(argv[1]) + "\"";
    bool known = false;
    for (const CLI::App* sub : app.get_subcommands({}))
      known = known || (argc >= 2 && sub->get_name() == argv[1]);
    if (!known) return fail("subcommand: expected one of info, run, verify, quantize or bench, got " + given);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version print and exit 0 (CLI11's own handling); a bad flag is one error line and status 2.
    if (e.get_exit_code() == 0) return app.exit(e);
    return fail(e.what());
  } catch (const moefuse::Error& e) {
    return fail(e.what());
  } catch (const std::bad_alloc&) {
    return fail("memory: expected enough free memory for this run, got an allocation failure");
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  std::fflush(stdout);
  if (std::ferror(stdout)) return fail("stdout: expected to write the report, got a write error");
  return status;
}
