// What every fuzzer shares: the input written to a file (the readers take paths), and the rule
// that a reader may refuse input only with cuae::Error — any other exception escaping, a crash, a
// sanitizer report, a hang or an allocation past libFuzzer's limit is a finding.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace cuae::fuzz {

// The input as a file with the given extension (one per process, rewritten for every input).
inline std::string as_file(const std::uint8_t* data, std::size_t size, const char* ext) {
  static const std::string path = "/tmp/cuae-fuzz-" + std::to_string(::getpid()) + ext;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) __builtin_trap();
  if (size && std::fwrite(data, 1, size, f) != size) __builtin_trap();
  std::fclose(f);
  return path;
}

}  // namespace cuae::fuzz
