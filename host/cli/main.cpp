// The `cuae` program: one command per family file (training.cpp, inspection.cpp, generation.cpp,
// use.cpp) on CLI11. It speaks only the public API (include/cuae). Every command has --help;
// an unknown option, a missing one or a malformed value stops it before any work with one line
// naming the option (exit 2); a failure while it works prints one line (exit 1).
#include <cstdio>
#include <exception>
#include <new>

#include "host/cli/common.hpp"

int main(int argc, char** argv) {
  CLI::App app("cuae: trains autoencoders on NVIDIA GPUs (or the CPU) and uses them", "cuae");
  app.require_subcommand(1, 1);
  app.footer("Run cuae COMMAND --help for a command's options.");
  cuae::cli::add_training_commands(app);
  cuae::cli::add_inspection_commands(app);
  cuae::cli::add_generation_commands(app);
  cuae::cli::add_use_commands(app);
  cuae::cli::add_anomaly_command(app);
  cuae::cli::add_probe_command(app);
  cuae::cli::add_inpaint_command(app);
  cuae::cli::add_compress_commands(app);
  if (argc < 2) {
    std::fputs(app.help().c_str(), stderr);
    return 2;
  }
  bool known = argv[1][0] == '-';
  for (const CLI::App* c : app.get_subcommands({})) known = known || c->get_name() == argv[1];
  if (!known) {
    std::fprintf(stderr, "cuae: error: unknown command \"%s\" (see cuae --help)\n", argv[1]);
    return 2;
  }
  try {
    app.parse(argc, argv);  // runs the chosen command
  } catch (const CLI::Success& e) {
    return app.exit(e);  // --help
  } catch (const CLI::ParseError& e) {
    const auto* cmd = app.get_subcommands().empty() ? nullptr : app.get_subcommands().front();
    const std::string name = cmd ? "cuae " + cmd->get_name() : std::string("cuae");
    std::fprintf(stderr, "%s: error: %s (see %s --help)\n", name.c_str(), e.what(), name.c_str());
    return 2;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "cuae: error: out of host memory (a smaller [train] batch_size, model or dataset needs less)\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cuae: error: %s\n", e.what());
    return 1;
  }
  return cuae::cli::exit_code();
}
