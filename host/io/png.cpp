// PNG through libpng's "simplified" png_image API. It reports errors through image.message
// instead of longjmp, so no setjmp frames sit between libpng and C++ exceptions, and it encodes to
// memory, which lets the bytes go through the same atomic-rename path as checkpoints.
#include <png.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>

#include "cuae/image.hpp"
#include "host/io/atomic_file.hpp"

namespace cuae {

namespace {

// PNG_FORMAT_GRAY is 0, so validity is reported separately from the format value.
bool format_for(int channels, png_uint_32* format) {
  switch (channels) {
    case 1: *format = PNG_FORMAT_GRAY; return true;
    case 2: *format = PNG_FORMAT_GA; return true;
    case 3: *format = PNG_FORMAT_RGB; return true;
    case 4: *format = PNG_FORMAT_RGBA; return true;
  }
  return false;
}

std::uint8_t to_byte(float v) {
  // !(v > 0) also catches NaN, which would otherwise turn into an arbitrary byte.
  if (!(v > 0.0f)) return 0;
  if (v >= 1.0f) return 255;
  return static_cast<std::uint8_t>(std::lround(v * 255.0f));
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

}  // namespace

void write_png(const std::string& path, const std::vector<std::uint8_t>& pixels, int width, int height,
               int channels) {
  if (width <= 0 || height <= 0 || width > (1 << 24) || height > (1 << 24))
    throw Error("cannot write " + path + ": invalid PNG size " + std::to_string(width) + "x" + std::to_string(height));
  png_uint_32 format = 0;
  if (!format_for(channels, &format))
    throw Error("cannot write " + path + ": PNG channels must be 1, 2, 3 or 4, got " + std::to_string(channels));
  const std::size_t need = static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * channels;
  if (pixels.size() != need)
    throw Error("cannot write " + path + ": " + std::to_string(pixels.size()) + " bytes of pixels for a " +
                std::to_string(width) + "x" + std::to_string(height) + "x" + std::to_string(channels) + " image (needs " +
                std::to_string(need) + ")");

  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(width);
  image.height = static_cast<png_uint_32>(height);
  image.format = format;
  // First call sizes the encoded stream, second call encodes into a buffer of that size.
  png_alloc_size_t size = 0;
  if (!png_image_write_to_memory(&image, nullptr, &size, 0, pixels.data(), 0, nullptr))
    throw Error("cannot write " + path + ": libpng: " + image.message);
  std::vector<unsigned char> encoded(size);
  if (!png_image_write_to_memory(&image, encoded.data(), &size, 0, pixels.data(), 0, nullptr))
    throw Error("cannot write " + path + ": libpng: " + image.message);
  io::write_file_atomic(path, encoded.data(), size);
}

void write_image_grid(const std::string& path, const Tensor& images, int grid_rows, int grid_cols, int h, int w,
                      int channels, int padding, float pad_value) {
  const auto where = [&] { return "cannot write image grid " + path + ": "; };
  if (grid_rows <= 0 || grid_cols <= 0 || h <= 0 || w <= 0 || padding < 0)
    throw Error(where() + "grid " + std::to_string(grid_rows) + "x" + std::to_string(grid_cols) + " of " +
                std::to_string(h) + "x" + std::to_string(w) + " images with padding " + std::to_string(padding) +
                " (all must be positive, padding >= 0)");
  if (channels != 1 && channels != 3)
    throw Error(where() + "channels must be 1 or 3, got " + std::to_string(channels));
  if (images.dtype() != DType::F32) throw Error(where() + "images must be F32, got " + dtype_name(images.dtype()));
  const std::int64_t per_image = static_cast<std::int64_t>(channels) * h * w;
  const Shape& s = images.shape();
  const bool flat = s.size() == 2 && s[1] == per_image;
  const bool planar = s.size() == 4 && s[1] == channels && s[2] == h && s[3] == w;
  if (!flat && !planar)
    throw Error(where() + "images of shape " + shape_str(s) + " are neither [N, " + std::to_string(per_image) + "] nor [N, " +
                std::to_string(channels) + ", " + std::to_string(h) + ", " + std::to_string(w) + "]");
  const std::int64_t n = s[0];
  if (n > static_cast<std::int64_t>(grid_rows) * grid_cols)
    throw Error(where() + std::to_string(n) + " images do not fit a " + std::to_string(grid_rows) + "x" +
                std::to_string(grid_cols) + " grid");

  const std::int64_t width = static_cast<std::int64_t>(grid_cols) * (w + padding) + padding;
  const std::int64_t height = static_cast<std::int64_t>(grid_rows) * (h + padding) + padding;
  if (width > (1 << 24) || height > (1 << 24))
    throw Error(where() + "grid image " + std::to_string(width) + "x" + std::to_string(height) + " is too large");
  std::vector<float> v = images.values();  // copies from the device if needed
  std::vector<std::uint8_t> pixels(static_cast<std::size_t>(width * height * channels), to_byte(pad_value));
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t y0 = padding + (i / grid_cols) * (h + padding);
    const std::int64_t x0 = padding + (i % grid_cols) * (w + padding);
    const float* img = v.data() + i * per_image;
    for (int c = 0; c < channels; ++c)
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
          pixels[static_cast<std::size_t>(((y0 + y) * width + x0 + x) * channels + c)] =
              to_byte(flat ? img[(static_cast<std::int64_t>(y) * w + x) * channels + c]
                           : img[(static_cast<std::int64_t>(c) * h + y) * w + x]);
  }
  write_png(path, pixels, static_cast<int>(width), static_cast<int>(height), channels);
}

PngImage read_png_pixels(const std::string& path) {
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  if (!f) {
    const int e = errno;
    throw Error(path + ": cannot open: " + std::strerror(e));
  }
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_stdio(&image, f.get()))
    throw Error(path + ": not a valid PNG: libpng: " + image.message);
  // Keep the file's colour and alpha; ask for 8-bit sRGB samples without a colour map.
  image.format &= PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_ALPHA;
  PngImage out;
  out.width = static_cast<int>(image.width);
  out.height = static_cast<int>(image.height);
  out.channels = static_cast<int>(PNG_IMAGE_SAMPLE_CHANNELS(image.format));
  const std::size_t bytes = PNG_IMAGE_SIZE(image);
  if (bytes > (std::size_t{1} << 32)) {
    png_image_free(&image);
    throw Error(path + ": PNG of " + std::to_string(out.width) + "x" + std::to_string(out.height) + " is too large");
  }
  out.pixels.resize(bytes);
  // finish_read frees libpng's state on success and on failure.
  if (!png_image_finish_read(&image, nullptr, out.pixels.data(), 0, nullptr))
    throw Error(path + ": corrupt PNG: libpng: " + image.message);
  return out;
}

Tensor read_png(const std::string& path) {
  const PngImage img = read_png_pixels(path);
  const std::int64_t hw = static_cast<std::int64_t>(img.width) * img.height;
  Tensor t({img.channels, img.height, img.width});
  float* dst = t.f32();
  for (std::int64_t p = 0; p < hw; ++p)
    for (int c = 0; c < img.channels; ++c)
      dst[c * hw + p] = img.pixels[static_cast<std::size_t>(p * img.channels + c)] / 255.0f;
  return t;
}

}  // namespace cuae
