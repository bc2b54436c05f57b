// TOML configs: parse_config, and to_toml of what it accepts must parse back to the same text.
#include <string>

#include "cuae/config.hpp"
#include "fuzz_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  cuae::Config c;
  try {
    c = cuae::parse_config(text, "fuzz.toml");
  } catch (const cuae::Error&) {
    return 0;
  }
  const std::string written = cuae::to_toml(c);
  if (cuae::to_toml(cuae::parse_config(written, "written.toml")) != written) __builtin_trap();
  return 0;
}
