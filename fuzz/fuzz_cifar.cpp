// CIFAR-10 binary batches: load_cifar10.
#include "cuae/images.hpp"
#include "fuzz_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = cuae::fuzz::as_file(data, size, ".bin");
  try {
    (void)cuae::load_cifar10({path});
  } catch (const cuae::Error&) {
  }
  return 0;
}
