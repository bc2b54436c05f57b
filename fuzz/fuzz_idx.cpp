// IDX reader: read_idx and load_idx_dataset (an image file, its labels from the same bytes).
#include "cuae/data.hpp"
#include "fuzz_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = cuae::fuzz::as_file(data, size, ".idx");
  try {
    (void)cuae::read_idx(path);
  } catch (const cuae::Error&) {
  }
  try {
    (void)cuae::load_idx_dataset(path, "");
  } catch (const cuae::Error&) {
  }
  return 0;
}
