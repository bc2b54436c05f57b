// .cuaez reader: decode_compressed on the bytes as they are.
#include <cstdint>
#include <vector>

#include "cuae/compress.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    (void)cuae::decode_compressed(std::vector<std::uint8_t>(data, data + size), "fuzz.cuaez");
  } catch (const cuae::Error&) {
  }
  return 0;
}
