// PNG output (image grids of inputs, reconstructions and samples) and PNG input (for tests and for
// image-folder datasets), on libpng.
//
// Pixel buffers are 8-bit, interleaved (row-major, channels last: RGBRGB...). Tensors of images
// are float, values in [0, 1]: either rows [N, H·W·C] in the engine's layout (channels last, as
// datasets and models hold them) or channel-planar [N, C, H, W].
// Every function throws cuae::Error naming the file on failure.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cuae/error.hpp"
#include "cuae/tensor.hpp"

namespace cuae {

// Writes an 8-bit PNG. pixels.size() must be width*height*channels; channels is 1 (grey), 2 (grey +
// alpha), 3 (RGB) or 4 (RGBA). Atomic: written to "<path>.tmp.<pid>" and renamed over `path`, so a
// failure (e.g. a missing directory) throws and leaves any existing file untouched.
CUAE_API void write_png(const std::string& path, const std::vector<std::uint8_t>& pixels, int width, int height,
                        int channels);

// A baseline JPEG (libjpeg, 4:2:0 chroma for colour) of one image of h×w×channels floats in [0, 1]
// (channels 1 or 3, channels last) at `quality` 1..100: the whole JFIF file's bytes, headers
// included.
CUAE_API std::vector<std::uint8_t> encode_jpeg(const float* pixels, int height, int width, int channels, int quality);

// Tiles images into one PNG: grid_rows x grid_cols cells filled in row-major order, each image
// h x w with `channels` (1 or 3), `padding` pixels of pad_value between cells and around the
// border. `images` is [N, H*W*C] rows, channels last (e.g. [N, 784]), or planar [N, C, H, W], float32, on the CPU or CUDA
// (copied to the host); values are clamped to [0, 1] (NaN draws as 0) and rounded to 0..255.
// N may be smaller than the grid (empty cells show pad_value) but not larger.
// Example, test images above their reconstructions: stack [x[0:8]; x_hat[0:8]] as [16, 784] and
// call write_image_grid(path, stacked, 2, 8, 28, 28, 1).
CUAE_API void write_image_grid(const std::string& path, const Tensor& images, int grid_rows, int grid_cols, int h,
                               int w, int channels, int padding = 2, float pad_value = 0.5f);

// A decoded PNG: 8-bit interleaved pixels, as many channels as the file has (1 grey, 2 grey+alpha,
// 3 RGB, 4 RGBA; palette images come back as RGB or RGBA, 16-bit images reduced to 8 bits).
struct CUAE_API PngImage {
  std::vector<std::uint8_t> pixels;
  int width = 0;
  int height = 0;
  int channels = 0;
};

// Reads a PNG file's pixels. Throws cuae::Error naming the file if it is missing or not a valid PNG.
CUAE_API PngImage read_png_pixels(const std::string& path);

// Reads a PNG into a float32 CPU tensor [C, H, W] with values pixel / 255.
CUAE_API Tensor read_png(const std::string& path);

}  // namespace cuae
