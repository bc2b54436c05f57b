// safetensors reader: load_safetensors.
#include "cuae/safetensors.hpp"
#include "fuzz_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = cuae::fuzz::as_file(data, size, ".safetensors");
  try {
    (void)cuae::load_safetensors(path);
  } catch (const cuae::Error&) {
  }
  return 0;
}
