// PNG and JPEG decoding (decode_image: decode, then crop or resize to the spec). The first byte
// picks the spec's channels and fit; the file's own bytes follow.
#include "cuae/images.hpp"
#include "fuzz_file.hpp"

#ifndef CUAE_FUZZ_EXT
#error "CUAE_FUZZ_EXT (\".png\" or \".jpg\") must be defined"
#endif

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  cuae::ImageSpec spec;
  spec.channels = (data[0] & 1) ? 3 : 1;
  spec.height = 16;
  spec.width = 12;
  spec.fit = (data[0] & 2) ? cuae::ImageSpec::Fit::Resize : cuae::ImageSpec::Fit::Crop;
  const std::string path = cuae::fuzz::as_file(data + 1, size - 1, CUAE_FUZZ_EXT);
  try {
    (void)cuae::decode_image(path, spec);
  } catch (const cuae::Error&) {
  }
  return 0;
}
