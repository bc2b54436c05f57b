// .npy reader: load_npy.
#include "cuae/npy.hpp"
#include "fuzz_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = cuae::fuzz::as_file(data, size, ".npy");
  try {
    (void)cuae::load_npy(path);
  } catch (const cuae::Error&) {
  }
  return 0;
}
