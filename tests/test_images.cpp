// Image data (include/cuae/images.hpp): PNG and JPEG decoding to HWC floats, resizing and
// cropping, channel conversion, corrupt files, image folders, CIFAR-10 binaries and ImageStream.
//
// Every image is written here with libpng / libjpeg directly (any colour type, bit depth, palette,
// interlacing), so expected pixels are known byte for byte. Stream images carry their index in
// their pixel values, so where each image ends up in the batches can be read back.
#include <gtest/gtest.h>
#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cuae/images.hpp"
#include "tests/file_helpers.hpp"

namespace fs = std::filesystem;
using cuae::BadImagePolicy;
using cuae::Dataset;
using cuae::Error;
using cuae::ImageSpec;
using cuae::ImageStream;
using cuae::ImageStreamOptions;

namespace {

using cuae::test::Bytes;
using cuae::test::expect_error;
using cuae::test::TempDir;
using U8 = std::vector<std::uint8_t>;

// ---- writing test images ------------------------------------------------------------------

struct PngLayout {
  int width = 0, height = 0;
  int color_type = PNG_COLOR_TYPE_RGB;
  int bit_depth = 8;
  bool interlace = false;
  std::vector<png_color> palette;
  std::vector<png_byte> trans;  // tRNS alpha per palette entry
};

// Rows must already be packed for the bit depth (big-endian 16-bit samples, MSB-first sub-byte
// pixels). Only plain C data lives across setjmp here.
bool png_write_rows(std::FILE* f, const PngLayout* L, png_bytepp rows) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  if (!png) return false;
  png_infop info = png_create_info_struct(png);
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  png_init_io(png, f);
  png_set_IHDR(png, info, static_cast<png_uint_32>(L->width), static_cast<png_uint_32>(L->height), L->bit_depth,
               L->color_type, L->interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (!L->palette.empty())
    png_set_PLTE(png, info, L->palette.data(), static_cast<int>(L->palette.size()));
  if (!L->trans.empty())
    png_set_tRNS(png, info, L->trans.data(), static_cast<int>(L->trans.size()), nullptr);
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}

void write_png_packed(const std::string& path, const PngLayout& L, const U8& packed) {
  const std::size_t stride = packed.size() / static_cast<std::size_t>(L.height);
  std::vector<png_bytep> rows(static_cast<std::size_t>(L.height));
  U8 copy = packed;
  for (int y = 0; y < L.height; ++y) rows[static_cast<std::size_t>(y)] = copy.data() + stride * y;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  const bool ok = png_write_rows(f, &L, rows.data());
  std::fclose(f);
  ASSERT_TRUE(ok) << "libpng could not write " << path;
}

// 8-bit interleaved pixels with 1..4 channels.
void write_png8(const std::string& path, int w, int h, int channels, const U8& px) {
  PngLayout L;
  L.width = w;
  L.height = h;
  static const int kTypes[] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                               PNG_COLOR_TYPE_RGB_ALPHA};
  L.color_type = kTypes[channels];
  write_png_packed(path, L, px);
}

void write_jpeg(const std::string& path, int w, int h, int comps, const U8& px, int quality = 95,
                J_COLOR_SPACE space = JCS_UNKNOWN) {
  jpeg_compress_struct c;
  jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  std::FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  jpeg_stdio_dest(&c, f);
  c.image_width = static_cast<JDIMENSION>(w);
  c.image_height = static_cast<JDIMENSION>(h);
  c.input_components = comps;
  c.in_color_space = space != JCS_UNKNOWN ? space : comps == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, quality, TRUE);
  // No chroma subsampling, so colour is as accurate as luma.
  for (int i = 0; i < c.num_components; ++i) c.comp_info[i].h_samp_factor = c.comp_info[i].v_samp_factor = 1;
  jpeg_start_compress(&c, TRUE);
  U8 copy = px;
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = copy.data() + static_cast<std::size_t>(c.next_scanline) * w * comps;
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  std::fclose(f);
}

U8 random_bytes(std::size_t n, std::uint32_t seed) {
  std::mt19937 gen(seed);
  U8 b(n);
  for (auto& v : b) v = static_cast<std::uint8_t>(gen() >> 24);
  return b;
}

// A smooth picture (low-frequency waves), which JPEG keeps well.
U8 smooth_rgb(int w, int h) {
  U8 px(static_cast<std::size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) {
        const double v = 128 + 90 * std::sin(2 * M_PI * (x / double(w) * (c + 1) * 0.7 + 0.3 * c)) *
                                   std::cos(2 * M_PI * y / double(h) * (0.5 + 0.3 * c));
        px[(static_cast<std::size_t>(y) * w + x) * 3 + c] = static_cast<std::uint8_t>(std::lround(v));
      }
  return px;
}

float u8f(int v) { return static_cast<float>(v) / 255.0f; }

void expect_exact(const std::vector<float>& got, const U8& bytes, const std::string& what) {
  ASSERT_EQ(got.size(), bytes.size()) << what;
  std::size_t bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i)
    if (got[i] != u8f(bytes[i]) && bad++ < 5) ADD_FAILURE() << what << ": element " << i << " is " << got[i] << ", expected " << int(bytes[i]) << "/255";
  EXPECT_EQ(bad, 0u) << what;
}

ImageSpec spec_of(int channels, int height, int width, ImageSpec::Fit fit = ImageSpec::Fit::Crop) {
  ImageSpec s;
  s.channels = channels;
  s.height = height;
  s.width = width;
  s.fit = fit;
  return s;
}

double luma(const std::uint8_t* p) { return (0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]) / 255.0; }

// A PNG file's bytes with a chunk built by hand (length, type, data, CRC).
void put_chunk(Bytes& b, const char* type, const Bytes& data) {
  const auto len = static_cast<std::uint32_t>(data.size());
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<unsigned char>(len >> s));
  Bytes body(type, type + 4);
  body.insert(body.end(), data.begin(), data.end());
  b.insert(b.end(), body.begin(), body.end());
  const auto crc = static_cast<std::uint32_t>(crc32(0, body.data(), static_cast<uInt>(body.size())));
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<unsigned char>(crc >> s));
}

}  // namespace

// ---- PNG decoding at the native size ------------------------------------------------------

TEST(DecodePng, RgbAtNativeSizeIsExactHwc) {
  TempDir dir;
  const int w = 13, h = 7;
  const U8 px = random_bytes(static_cast<std::size_t>(w) * h * 3, 1);
  write_png8(dir.file("a.png"), w, h, 3, px);
  // Crop and Resize both copy when nothing is to be scaled.
  expect_exact(cuae::decode_image(dir.file("a.png"), spec_of(3, h, w)), px, "crop");
  expect_exact(cuae::decode_image(dir.file("a.png"), spec_of(3, h, w, ImageSpec::Fit::Resize)), px, "resize");
}

TEST(DecodePng, GreyNativeAndReplicatedToRgb) {
  TempDir dir;
  const int w = 5, h = 9;
  const U8 px = random_bytes(static_cast<std::size_t>(w) * h, 2);
  write_png8(dir.file("g.png"), w, h, 1, px);
  expect_exact(cuae::decode_image(dir.file("g.png"), spec_of(1, h, w)), px, "grey");
  U8 rgb;
  for (auto v : px) rgb.insert(rgb.end(), {v, v, v});
  expect_exact(cuae::decode_image(dir.file("g.png"), spec_of(3, h, w)), rgb, "grey to rgb");
}

TEST(DecodePng, RgbToGreyIsItu601Luma) {
  TempDir dir;
  const int w = 6, h = 4;
  const U8 px = random_bytes(static_cast<std::size_t>(w) * h * 3, 3);
  write_png8(dir.file("c.png"), w, h, 3, px);
  const auto got = cuae::decode_image(dir.file("c.png"), spec_of(1, h, w));
  ASSERT_EQ(got.size(), static_cast<std::size_t>(w * h));
  for (int i = 0; i < w * h; ++i) EXPECT_NEAR(got[i], luma(&px[static_cast<std::size_t>(i) * 3]), 1e-6) << i;
}

TEST(DecodePng, AlphaIsDropped) {
  TempDir dir;
  const int w = 7, h = 3;
  const U8 rgba = random_bytes(static_cast<std::size_t>(w) * h * 4, 4);
  write_png8(dir.file("rgba.png"), w, h, 4, rgba);
  U8 rgb;
  for (int i = 0; i < w * h; ++i) rgb.insert(rgb.end(), rgba.begin() + i * 4, rgba.begin() + i * 4 + 3);
  expect_exact(cuae::decode_image(dir.file("rgba.png"), spec_of(3, h, w)), rgb, "rgba");

  const U8 ga = random_bytes(static_cast<std::size_t>(w) * h * 2, 5);
  write_png8(dir.file("ga.png"), w, h, 2, ga);
  U8 g, g3;
  for (int i = 0; i < w * h; ++i) {
    g.push_back(ga[static_cast<std::size_t>(i) * 2]);
    g3.insert(g3.end(), 3, ga[static_cast<std::size_t>(i) * 2]);
  }
  expect_exact(cuae::decode_image(dir.file("ga.png"), spec_of(1, h, w)), g, "grey+alpha");
  expect_exact(cuae::decode_image(dir.file("ga.png"), spec_of(3, h, w)), g3, "grey+alpha to rgb");
}

TEST(DecodePng, SixteenBitRoundsToEightBits) {
  TempDir dir;
  const int w = 5, h = 3;
  std::mt19937 gen(6);
  std::vector<std::uint16_t> v(static_cast<std::size_t>(w) * h * 3);
  for (auto& x : v) x = static_cast<std::uint16_t>(gen() >> 16);
  v[0] = 0;
  v[1] = 65535;
  v[2] = 128;  // rounds down to 0 (128/257 < 0.5)
  v[3] = 129;  // rounds up to 1
  U8 packed, expect;
  for (auto x : v) {
    packed.push_back(static_cast<std::uint8_t>(x >> 8));
    packed.push_back(static_cast<std::uint8_t>(x & 0xFF));
    expect.push_back(static_cast<std::uint8_t>(std::lround(x / 257.0)));  // x * 255 / 65535
  }
  PngLayout L;
  L.width = w;
  L.height = h;
  L.bit_depth = 16;
  write_png_packed(dir.file("d16.png"), L, packed);
  expect_exact(cuae::decode_image(dir.file("d16.png"), spec_of(3, h, w)), expect, "16-bit rgb");
}

TEST(DecodePng, PaletteAndLowBitGreyAreExpanded) {
  TempDir dir;
  // 4-bit palette, odd width (pixels packed two per byte, the last byte half used), with tRNS.
  const int w = 7, h = 5;
  PngLayout L;
  L.width = w;
  L.height = h;
  L.color_type = PNG_COLOR_TYPE_PALETTE;
  L.bit_depth = 4;
  const U8 colours = random_bytes(16 * 3, 7);
  for (int i = 0; i < 16; ++i) L.palette.push_back({colours[i * 3], colours[i * 3 + 1], colours[i * 3 + 2]});
  L.trans = {0, 128, 255};
  const U8 index = random_bytes(static_cast<std::size_t>(w) * h, 8);
  const std::size_t stride = (w + 1) / 2;
  U8 packed(stride * h, 0), rgb;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const int k = index[static_cast<std::size_t>(y) * w + x] % 16;
      packed[y * stride + x / 2] |= static_cast<std::uint8_t>(x % 2 == 0 ? k << 4 : k);
      rgb.insert(rgb.end(), {colours[k * 3], colours[k * 3 + 1], colours[k * 3 + 2]});
    }
  write_png_packed(dir.file("pal.png"), L, packed);
  expect_exact(cuae::decode_image(dir.file("pal.png"), spec_of(3, h, w)), rgb, "palette");
  const auto grey = cuae::decode_image(dir.file("pal.png"), spec_of(1, h, w));
  for (int i = 0; i < w * h; ++i) EXPECT_NEAR(grey[i], luma(&rgb[static_cast<std::size_t>(i) * 3]), 1e-6) << i;

  // 2-bit grey: levels 0..3 become 0, 85, 170, 255.
  PngLayout G;
  G.width = 9;
  G.height = 2;
  G.color_type = PNG_COLOR_TYPE_GRAY;
  G.bit_depth = 2;
  const std::size_t gstride = 3;  // ceil(9 * 2 / 8)
  U8 gpacked(gstride * 2, 0), gexpect;
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 9; ++x) {
      const int level = (x + y * 2) % 4;
      gpacked[y * gstride + x / 4] |= static_cast<std::uint8_t>(level << (6 - 2 * (x % 4)));
      gexpect.push_back(static_cast<std::uint8_t>(level * 85));
    }
  write_png_packed(dir.file("g2.png"), G, gpacked);
  expect_exact(cuae::decode_image(dir.file("g2.png"), spec_of(1, 2, 9)), gexpect, "2-bit grey");
}

TEST(DecodePng, InterlacedIsExact) {
  TempDir dir;
  const int w = 11, h = 9;
  const U8 px = random_bytes(static_cast<std::size_t>(w) * h * 3, 9);
  PngLayout L;
  L.width = w;
  L.height = h;
  L.interlace = true;
  write_png_packed(dir.file("adam7.png"), L, px);
  expect_exact(cuae::decode_image(dir.file("adam7.png"), spec_of(3, h, w)), px, "interlaced");
}

TEST(DecodeImage, FormatComesFromTheBytesNotTheName) {
  TempDir dir;
  const U8 px = random_bytes(4 * 3 * 3, 10);
  write_png8(dir.file("really_png.jpg"), 4, 3, 3, px);
  expect_exact(cuae::decode_image(dir.file("really_png.jpg"), spec_of(3, 3, 4)), px, "png named .jpg");
  const U8 grey(16 * 8, 77);
  write_jpeg(dir.file("really_jpeg.png"), 16, 8, 1, grey);
  const auto got = cuae::decode_image(dir.file("really_jpeg.png"), spec_of(1, 8, 16));
  for (float v : got) EXPECT_NEAR(v, u8f(77), 1.5 / 255);
}

// ---- resizing and cropping ----------------------------------------------------------------

TEST(Resample, UniformImageStaysUniformAtEverySizeAndFit) {
  TempDir dir;
  const int w = 37, h = 23;
  U8 px;
  for (int i = 0; i < w * h; ++i) px.insert(px.end(), {10, 200, 77});
  write_png8(dir.file("u.png"), w, h, 3, px);
  for (auto fit : {ImageSpec::Fit::Resize, ImageSpec::Fit::Crop})
    for (auto [oh, ow] : {std::pair{8, 16}, {16, 8}, {5, 5}, {50, 60}, {23, 40}}) {
      const auto got = cuae::decode_image(dir.file("u.png"), spec_of(3, oh, ow, fit));
      ASSERT_EQ(got.size(), static_cast<std::size_t>(oh) * ow * 3);
      for (std::size_t i = 0; i < got.size(); ++i)
        ASSERT_NEAR(got[i], u8f(px[i % 3]), 1e-5) << oh << "x" << ow << " element " << i;
    }
}

TEST(Resample, GradientStaysMonotonic) {
  TempDir dir;
  // Downscaling: 0..255 across 97 columns, to 31 columns (and fewer rows).
  const int w = 97, h = 10;
  U8 px;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) px.push_back(static_cast<std::uint8_t>(std::lround(x * 255.0 / (w - 1))));
  write_png8(dir.file("ramp.png"), w, h, 1, px);
  // Upscaling: an exactly linear ramp 0, 5, 10, ... across 52 columns, to 131.
  U8 up;
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 52; ++x) up.push_back(static_cast<std::uint8_t>(5 * x));
  write_png8(dir.file("up.png"), 52, 3, 1, up);
  for (auto [file, oh, ow] : {std::tuple{"ramp.png", 5, 31}, {"up.png", 7, 131}}) {
    const auto got = cuae::decode_image(dir.file(file), spec_of(1, oh, ow, ImageSpec::Fit::Resize));
    for (int y = 0; y < oh; ++y) {
      const float* row = &got[static_cast<std::size_t>(y) * ow];
      for (int x = 1; x < ow; ++x) ASSERT_GE(row[x], row[x - 1] - 1e-6f) << file << " row " << y << " x " << x;
      EXPECT_LT(row[0], 0.05f) << file;
      EXPECT_GT(row[ow - 1], 0.95f) << file;
      EXPECT_GT(row[ow - 1] - row[0], 0.9f) << file;
    }
  }
}

TEST(Resample, CropAtScaleOneCutsTheCentreExactly) {
  TempDir dir;
  const U8 wide = random_bytes(40 * 30 * 3, 11);  // 40 wide, 30 high: columns 5..34 survive
  write_png8(dir.file("wide.png"), 40, 30, 3, wide);
  U8 expect;
  for (int y = 0; y < 30; ++y)
    expect.insert(expect.end(), wide.begin() + (y * 40 + 5) * 3, wide.begin() + (y * 40 + 35) * 3);
  expect_exact(cuae::decode_image(dir.file("wide.png"), spec_of(3, 30, 30)), expect, "wide crop");

  const U8 odd = random_bytes(41 * 30 * 3, 16);  // 41 wide: columns floor(5.5) = 5..34
  write_png8(dir.file("odd.png"), 41, 30, 3, odd);
  U8 odd_expect;
  for (int y = 0; y < 30; ++y)
    odd_expect.insert(odd_expect.end(), odd.begin() + (y * 41 + 5) * 3, odd.begin() + (y * 41 + 35) * 3);
  expect_exact(cuae::decode_image(dir.file("odd.png"), spec_of(3, 30, 30)), odd_expect, "odd-width crop");

  const U8 tall = random_bytes(30 * 41, 12);  // 30 wide, 41 high: rows floor(5.5) = 5..34
  write_png8(dir.file("tall.png"), 30, 41, 1, tall);
  const U8 rows(tall.begin() + 5 * 30, tall.begin() + 35 * 30);
  expect_exact(cuae::decode_image(dir.file("tall.png"), spec_of(1, 30, 30)), rows, "tall crop");
}

TEST(Resample, CropKeepsTheCentreResizeKeepsEverything) {
  TempDir dir;
  // 80x40: black side bands (x < 20, x >= 60) around a white 40x40 centre.
  const int w = 80, h = 40;
  U8 px;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) px.push_back(x >= 20 && x < 60 ? 255 : 0);
  write_png8(dir.file("bands.png"), w, h, 1, px);
  // Crop to 20x20: scale 0.5, the centre 40x40 only. Away from the crop's left and right edges
  // (the filter reaches 4 source pixels, 2 output pixels, into the bands) every pixel is white.
  const auto crop = cuae::decode_image(dir.file("bands.png"), spec_of(1, 20, 20));
  for (int y = 0; y < 20; ++y)
    for (int x = 2; x < 18; ++x) EXPECT_NEAR(crop[static_cast<std::size_t>(y) * 20 + x], 1.0f, 1e-6) << y << "," << x;
  // Resize to 20x20: the bands are in the picture, a quarter of the width on each side.
  const auto all = cuae::decode_image(dir.file("bands.png"), spec_of(1, 20, 20, ImageSpec::Fit::Resize));
  for (int y = 0; y < 20; ++y) {
    for (int x : {0, 1, 2, 17, 18, 19}) EXPECT_NEAR(all[static_cast<std::size_t>(y) * 20 + x], 0.0f, 1e-6) << y << "," << x;
    for (int x : {7, 10, 12}) EXPECT_NEAR(all[static_cast<std::size_t>(y) * 20 + x], 1.0f, 1e-6) << y << "," << x;
  }
}

// ---- JPEG ---------------------------------------------------------------------------------

TEST(DecodeJpeg, RgbAndGreyWithinJpegTolerance) {
  TempDir dir;
  const int w = 64, h = 48;
  const U8 px = smooth_rgb(w, h);
  write_jpeg(dir.file("c.jpg"), w, h, 3, px, 95);
  const auto got = cuae::decode_image(dir.file("c.jpg"), spec_of(3, h, w));
  ASSERT_EQ(got.size(), px.size());
  double worst = 0, sum = 0;
  for (std::size_t i = 0; i < px.size(); ++i) {
    const double d = std::abs(got[i] - u8f(px[i]));
    worst = std::max(worst, d);
    sum += d;
  }
  EXPECT_LT(worst, 8.0 / 255) << "quality 95";
  EXPECT_LT(sum / px.size(), 1.5 / 255);
  // A grey target from a colour JPEG is the luma of the picture.
  const auto grey = cuae::decode_image(dir.file("c.jpg"), spec_of(1, h, w));
  for (int i = 0; i < w * h; ++i) EXPECT_NEAR(grey[i], luma(&px[static_cast<std::size_t>(i) * 3]), 8.0 / 255) << i;

  U8 g(static_cast<std::size_t>(w) * h);
  for (int i = 0; i < w * h; ++i) g[i] = px[static_cast<std::size_t>(i) * 3 + 1];
  write_jpeg(dir.file("g.jpeg"), w, h, 1, g, 95);
  const auto got_g = cuae::decode_image(dir.file("g.jpeg"), spec_of(1, h, w));
  const auto got_g3 = cuae::decode_image(dir.file("g.jpeg"), spec_of(3, h, w));
  for (int i = 0; i < w * h; ++i) {
    EXPECT_NEAR(got_g[i], u8f(g[i]), 8.0 / 255) << i;
    for (int c = 0; c < 3; ++c) EXPECT_EQ(got_g3[static_cast<std::size_t>(i) * 3 + c], got_g[i]) << i;
  }
}

TEST(DecodeJpeg, CmykWithAdobeMarkerIsInverted) {
  TempDir dir;
  const int w = 16, h = 16;
  // Stored samples S (the Adobe convention stores 255 - ink): R = S_c * S_k / 255.
  U8 px;
  const std::uint8_t s[4] = {200, 120, 40, 230};
  for (int i = 0; i < w * h; ++i) px.insert(px.end(), s, s + 4);
  write_jpeg(dir.file("cmyk.jpg"), w, h, 4, px, 98, JCS_CMYK);
  const auto got = cuae::decode_image(dir.file("cmyk.jpg"), spec_of(3, h, w));
  for (int i = 0; i < w * h; ++i)
    for (int c = 0; c < 3; ++c) EXPECT_NEAR(got[static_cast<std::size_t>(i) * 3 + c], s[c] * s[3] / 255.0 / 255.0, 3.0 / 255);
}

TEST(DecodeJpeg, LargeJpegScaledDownMatchesTheSamePictureAsPng) {
  // 400x320 to 40x50 and 50x40 takes libjpeg's 1/8 and 1/4 DCT scaling; the picture and its crop
  // geometry must match decoding a lossless copy at full size.
  TempDir dir;
  const int w = 400, h = 320;
  const U8 px = smooth_rgb(w, h);
  write_jpeg(dir.file("big.jpg"), w, h, 3, px, 95);
  write_png8(dir.file("big.png"), w, h, 3, px);
  for (auto fit : {ImageSpec::Fit::Crop, ImageSpec::Fit::Resize})
    for (auto [oh, ow] : {std::pair{40, 50}, {50, 40}, {33, 17}}) {
      const auto spec = spec_of(3, oh, ow, fit);
      const auto j = cuae::decode_image(dir.file("big.jpg"), spec);
      const auto p = cuae::decode_image(dir.file("big.png"), spec);
      ASSERT_EQ(j.size(), p.size());
      double worst = 0;
      for (std::size_t i = 0; i < j.size(); ++i) worst = std::max(worst, double(std::abs(j[i] - p[i])));
      EXPECT_LT(worst, 0.04) << oh << "x" << ow << (fit == ImageSpec::Fit::Crop ? " crop" : " resize");
    }
}

// ---- bad files ----------------------------------------------------------------------------

TEST(DecodeImage, BadFilesThrowNamingTheFile) {
  TempDir dir;
  const auto spec = spec_of(3, 8, 8);
  write_png8(dir.file("good.png"), 20, 20, 3, random_bytes(20 * 20 * 3, 13));
  write_jpeg(dir.file("good.jpg"), 40, 40, 3, random_bytes(40 * 40 * 3, 14), 90);
  const Bytes png = cuae::test::read_bytes(dir.file("good.png"));
  const Bytes jpg = cuae::test::read_bytes(dir.file("good.jpg"));

  cuae::test::write_bytes(dir.file("half.png"), Bytes(png.begin(), png.begin() + png.size() / 2));
  expect_error([&] { cuae::decode_image(dir.file("half.png"), spec); }, {dir.file("half.png"), "PNG", "truncated"});
  // Cut just before IEND: every pixel is there, the end is not.
  cuae::test::write_bytes(dir.file("noend.png"), Bytes(png.begin(), png.end() - 12));
  expect_error([&] { cuae::decode_image(dir.file("noend.png"), spec); }, {dir.file("noend.png"), "truncated"});
  Bytes flipped = png;
  flipped[png.size() / 2] ^= 0x55;  // inside IDAT: a CRC error or corrupt deflate data
  cuae::test::write_bytes(dir.file("flipped.png"), flipped);
  expect_error([&] { cuae::decode_image(dir.file("flipped.png"), spec); }, {dir.file("flipped.png"), "corrupt PNG"});

  cuae::test::write_text(dir.file("garbage.png"), "GIF89a this is not a picture at all");
  expect_error([&] { cuae::decode_image(dir.file("garbage.png"), spec); },
               {dir.file("garbage.png"), "not a PNG or JPEG", "47 49 46 38"});
  cuae::test::write_bytes(dir.file("half.jpg"), Bytes(jpg.begin(), jpg.begin() + jpg.size() / 2));
  expect_error([&] { cuae::decode_image(dir.file("half.jpg"), spec); }, {dir.file("half.jpg"), "JPEG"});
  cuae::test::write_bytes(dir.file("head.jpg"), Bytes(jpg.begin(), jpg.begin() + 40));
  expect_error([&] { cuae::decode_image(dir.file("head.jpg"), spec); }, {dir.file("head.jpg"), "JPEG"});
  cuae::test::write_bytes(dir.file("empty.png"), {});
  expect_error([&] { cuae::decode_image(dir.file("empty.png"), spec); }, {dir.file("empty.png"), "empty"});
  expect_error([&] { cuae::decode_image(dir.file("missing.png"), spec); }, {dir.file("missing.png"), "cannot open"});
  fs::create_directory(dir.file("adir.png"));
  expect_error([&] { cuae::decode_image(dir.file("adir.png"), spec); }, {dir.file("adir.png"), "directory"});

  // A PNG whose header says width 0.
  Bytes zero = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  put_chunk(zero, "IHDR", {0, 0, 0, 0, 0, 0, 0, 5, 8, 0, 0, 0, 0});
  put_chunk(zero, "IEND", {});
  cuae::test::write_bytes(dir.file("zero.png"), zero);
  expect_error([&] { cuae::decode_image(dir.file("zero.png"), spec); }, {dir.file("zero.png"), "zero"});

  expect_error([&] { cuae::decode_image(dir.file("good.png"), spec_of(2, 8, 8)); }, {dir.file("good.png"), "channels 2"});
  expect_error([&] { cuae::decode_image(dir.file("good.png"), spec_of(3, 0, 8)); }, {dir.file("good.png"), "ImageSpec", "0x8"});
  // The good files still decode after all that (no state left behind).
  EXPECT_EQ(cuae::decode_image(dir.file("good.png"), spec).size(), 8u * 8 * 3);
  EXPECT_EQ(cuae::decode_image(dir.file("good.jpg"), spec).size(), 8u * 8 * 3);
}

// ---- folders ------------------------------------------------------------------------------

TEST(ImageFolder, ListsImagesRecursivelySorted) {
  TempDir dir;
  for (const char* d : {"b", "a", "b/c", ".git"}) fs::create_directories(dir.path() / d);
  const U8 px = random_bytes(4 * 4 * 3, 15);
  for (const char* f : {"a/x.PNG", "b/z.JPEG", "b/c/w.png", "b/.hidden.png", ".git/q.png", "top.Jpg"})
    write_png8(dir.file(f), 4, 4, 3, px);
  cuae::test::write_text(dir.file("b/notes.txt"), "not an image");
  cuae::test::write_text(dir.file("a/y.gif"), "not listed");
  const std::vector<std::string> expect = {dir.file("a/x.PNG"), dir.file("b/c/w.png"), dir.file("b/z.JPEG"),
                                           dir.file("top.Jpg")};
  EXPECT_EQ(cuae::list_images(dir.str()), expect);
  EXPECT_TRUE(cuae::image_folder_classes(dir.str()).empty()) << "top.Jpg lies directly in the folder";
  fs::remove(dir.file("top.Jpg"));
  EXPECT_EQ(cuae::image_folder_classes(dir.str()), (std::vector<std::string>{"a", "b"}));

  expect_error([&] { cuae::list_images(dir.file("nope")); }, {dir.file("nope"), "does not exist"});
  expect_error([&] { cuae::list_images(dir.file("b/notes.txt")); }, {dir.file("b/notes.txt"), "not a directory"});
  fs::create_directory(dir.file("empty"));
  cuae::test::write_text(dir.file("empty/readme.txt"), "x");
  expect_error([&] { cuae::list_images(dir.file("empty")); }, {dir.file("empty"), "no images"});
}

TEST(ImageFolder, LoadsWithLabelsFromSubfolders) {
  TempDir dir;
  fs::create_directories(dir.path() / "cat");
  fs::create_directories(dir.path() / "dog");
  const auto spec = spec_of(3, 6, 5, ImageSpec::Fit::Resize);
  std::vector<std::string> files;
  int k = 0;
  for (const char* f : {"cat/1.png", "cat/2.jpg", "cat/3.png", "dog/a.png", "dog/b.png"}) {
    const int w = 7 + k, h = 9 - k;  // sizes differ; all come out 6x5
    if (std::string(f).ends_with(".jpg"))
      write_jpeg(dir.file(f), w, h, 3, random_bytes(static_cast<std::size_t>(w) * h * 3, 20 + k), 90);
    else
      write_png8(dir.file(f), w, h, 3, random_bytes(static_cast<std::size_t>(w) * h * 3, 20 + k));
    files.push_back(dir.file(f));
    ++k;
  }
  for (int threads : {1, 3}) {
    const Dataset d = cuae::load_image_folder(dir.str(), spec, BadImagePolicy::Stop, threads);
    ASSERT_EQ(d.size(), 5);
    ASSERT_EQ(d.images.dim(1), 6 * 5 * 3);
    EXPECT_EQ(d.rows, 6);
    EXPECT_EQ(d.cols, 5);
    EXPECT_EQ(d.channels, 3);
    EXPECT_EQ(d.features(), 6 * 5 * 3);
    ASSERT_TRUE(d.has_labels());
    EXPECT_EQ(d.labels.values(), (std::vector<float>{0, 0, 0, 1, 1}));
    const auto v = d.images.values();
    for (std::size_t i = 0; i < files.size(); ++i) {
      const auto one = cuae::decode_image(files[i], spec);
      EXPECT_TRUE(std::equal(one.begin(), one.end(), v.begin() + static_cast<std::ptrdiff_t>(i * one.size())))
          << files[i] << " threads " << threads;
    }
  }
  // An image directly in the folder: no labels.
  write_png8(dir.file("stray.png"), 3, 3, 1, U8(9, 50));
  const Dataset u = cuae::load_image_folder(dir.str(), spec, BadImagePolicy::Stop, 2);
  EXPECT_EQ(u.size(), 6);
  EXPECT_FALSE(u.has_labels());
}

TEST(ImageFolder, BadFilesSkippedOrStopping) {
  TempDir dir;
  fs::create_directories(dir.path() / "a");
  fs::create_directories(dir.path() / "b");
  const auto spec = spec_of(1, 4, 4);
  for (int i = 0; i < 12; ++i)
    write_png8(dir.file((i < 6 ? "a/" : "b/") + std::to_string(10 + i) + ".png"), 4, 4, 1,
               U8(16, static_cast<std::uint8_t>(i * 10)));
  cuae::test::write_text(dir.file("a/13x.png"), "garbage");  // sorts after a/13.png
  cuae::test::write_bytes(dir.file("b/17x.jpg"), {0xFF, 0xD8, 0xFF, 0xE0});

  std::vector<std::pair<std::string, std::string>> seen;
  const std::thread::id caller = std::this_thread::get_id();
  const Dataset d = cuae::load_image_folder(dir.str(), spec, BadImagePolicy::Skip, 3,
                                            [&](const std::string& f, const std::string& why) {
                                              EXPECT_EQ(std::this_thread::get_id(), caller);
                                              seen.emplace_back(f, why);
                                            });
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].first, dir.file("a/13x.png"));
  EXPECT_NE(seen[0].second.find("not a PNG or JPEG"), std::string::npos) << seen[0].second;
  EXPECT_EQ(seen[0].second.find(dir.file("a/13x.png")), std::string::npos) << "the reason repeats the file name";
  EXPECT_EQ(seen[1].first, dir.file("b/17x.jpg"));
  ASSERT_EQ(d.size(), 12);
  const auto v = d.images.values();
  const auto labels = d.labels.values();
  for (int i = 0; i < 12; ++i) {
    EXPECT_EQ(v[static_cast<std::size_t>(i) * 16 + 5], u8f(i * 10)) << "image " << i << " in its place";
    EXPECT_EQ(labels[static_cast<std::size_t>(i)], i < 6 ? 0.0f : 1.0f);
  }
  for (int threads : {1, 4})
    expect_error([&] { cuae::load_image_folder(dir.str(), spec, BadImagePolicy::Stop, threads); },
                 {dir.file("a/13x.png"), "not a PNG or JPEG"});
}

// ---- CIFAR-10 -----------------------------------------------------------------------------

namespace {

int cifar_pixel(int record, int channel, int p) { return (record * 7 + channel * 50 + p * 13) % 256; }

Bytes cifar_bytes(int first, int count) {
  Bytes b;
  for (int r = first; r < first + count; ++r) {
    b.push_back(static_cast<unsigned char>((r * 3) % 10));
    for (int c = 0; c < 3; ++c)
      for (int p = 0; p < 1024; ++p) b.push_back(static_cast<unsigned char>(cifar_pixel(r, c, p)));
  }
  return b;
}

void check_cifar(const Dataset& d, int first, int count) {
  ASSERT_EQ(d.size(), count);
  ASSERT_EQ(d.images.dim(1), 3072);
  EXPECT_EQ(d.rows, 32);
  EXPECT_EQ(d.cols, 32);
  EXPECT_EQ(d.channels, 3);
  EXPECT_EQ(d.features(), 3072);
  const auto v = d.images.values();
  const auto l = d.labels.values();
  for (int i = 0; i < count; ++i) {
    const int r = first + i;
    EXPECT_EQ(l[static_cast<std::size_t>(i)], static_cast<float>((r * 3) % 10));
    for (int p = 0; p < 1024; ++p)
      for (int c = 0; c < 3; ++c)
        ASSERT_EQ(v[static_cast<std::size_t>(i) * 3072 + p * 3 + c], u8f(cifar_pixel(r, c, p)))
            << "record " << r << " pixel " << p << " channel " << c;
  }
}

}  // namespace

TEST(Cifar10, ReadsRecordsAsHwc) {
  TempDir dir;
  cuae::test::write_bytes(dir.file("one.bin"), cifar_bytes(0, 3));
  cuae::test::write_bytes(dir.file("two.bin"), cifar_bytes(3, 2));
  check_cifar(cuae::load_cifar10({dir.file("one.bin")}), 0, 3);
  check_cifar(cuae::load_cifar10({dir.file("one.bin"), dir.file("two.bin")}), 0, 5);
}

TEST(Cifar10, DirectoryLayout) {
  TempDir dir;
  for (int b = 1; b <= 5; ++b) cuae::test::write_bytes(dir.file("data_batch_" + std::to_string(b) + ".bin"), cifar_bytes((b - 1) * 2, 2));
  cuae::test::write_bytes(dir.file("test_batch.bin"), cifar_bytes(100, 3));
  const Dataset train = cuae::load_cifar10_dir(dir.str(), true);
  check_cifar(train, 0, 10);
  EXPECT_EQ(train.name, "cifar-10/train");
  check_cifar(cuae::load_cifar10_dir(dir.str(), false), 100, 3);
  fs::remove(dir.file("data_batch_3.bin"));
  expect_error([&] { cuae::load_cifar10_dir(dir.str(), true); }, {dir.str(), "data_batch_3.bin"});
}

TEST(Cifar10, MalformedFilesThrow) {
  TempDir dir;
  Bytes b = cifar_bytes(0, 2);
  b.resize(b.size() - 5);
  cuae::test::write_bytes(dir.file("short.bin"), b);
  expect_error([&] { cuae::load_cifar10({dir.file("short.bin")}); }, {dir.file("short.bin"), "6141", "3073"});
  Bytes bad = cifar_bytes(0, 3);
  bad[3073] = 10;  // record 1
  cuae::test::write_bytes(dir.file("label.bin"), bad);
  expect_error([&] { cuae::load_cifar10({dir.file("label.bin")}); }, {dir.file("label.bin"), "record 1", "label 10"});
  cuae::test::write_bytes(dir.file("empty.bin"), {});
  expect_error([&] { cuae::load_cifar10({dir.file("empty.bin")}); }, {dir.file("empty.bin"), "empty"});
  expect_error([&] { cuae::load_cifar10({dir.file("none.bin")}); }, {dir.file("none.bin"), "cannot open"});
  expect_error([&] { cuae::load_cifar10({}); }, {"no files"});
}

// ---- ImageStream --------------------------------------------------------------------------

namespace {

constexpr int kH = 2, kW = 3;

// n RGB images of 3x2 whose pixels encode their index: R = i % 256, G = i / 256, B = 7.
std::vector<std::string> index_images(const TempDir& dir, int n, const std::string& prefix = "img") {
  std::vector<std::string> files;
  for (int i = 0; i < n; ++i) {
    U8 px;
    for (int p = 0; p < kH * kW; ++p)
      px.insert(px.end(), {static_cast<std::uint8_t>(i % 256), static_cast<std::uint8_t>(i / 256), 7});
    char name[64];
    std::snprintf(name, sizeof name, "%s%04d.png", prefix.c_str(), i);
    write_png8(dir.file(name), kW, kH, 3, px);
    files.push_back(dir.file(name));
  }
  return files;
}

// Reads the index back from a row, checking every pixel agrees.
int row_index(const float* row) {
  const int i = static_cast<int>(std::lround(row[0] * 255)) + 256 * static_cast<int>(std::lround(row[1] * 255));
  for (int p = 0; p < kH * kW; ++p) {
    EXPECT_EQ(row[p * 3], row[0]);
    EXPECT_EQ(row[p * 3 + 1], row[1]);
    EXPECT_EQ(row[p * 3 + 2], u8f(7));
  }
  return i;
}

// One epoch as the list of batches, each the image indices of its rows.
std::vector<std::vector<int>> read_epoch(ImageStream& s, int epoch) {
  s.start_epoch(epoch);
  std::vector<std::vector<int>> batches;
  int n = -1;
  const std::size_t row = static_cast<std::size_t>(kH) * kW * 3;
  while (const float* b = s.next(&n)) {
    std::vector<int> ids;
    for (int r = 0; r < n; ++r) ids.push_back(row_index(b + r * row));
    batches.push_back(ids);
  }
  EXPECT_EQ(n, 0);
  return batches;
}

std::vector<int> flatten(const std::vector<std::vector<int>>& b) {
  std::vector<int> all;
  for (const auto& x : b) all.insert(all.end(), x.begin(), x.end());
  return all;
}

std::vector<int> sizes(const std::vector<std::vector<int>>& b) {
  std::vector<int> s;
  for (const auto& x : b) s.push_back(static_cast<int>(x.size()));
  return s;
}

ImageStreamOptions opts(int threads, int prefetch, bool shuffle, std::uint64_t seed, bool drop_last = false) {
  ImageStreamOptions o;
  o.threads = threads;
  o.prefetch = prefetch;
  o.shuffle = shuffle;
  o.seed = seed;
  o.drop_last = drop_last;
  o.on_skip = [](const std::string&, const std::string&) {};
  return o;
}

// Runs fn on another thread and fails (then ends the program, so a hang cannot stall the suite)
// if it does not finish in time.
void within_seconds(int seconds, const std::function<void()>& fn, const char* what) {
  std::promise<void> done;
  auto fut = done.get_future();
  std::thread t([&] {
    try {
      fn();
      done.set_value();
    } catch (...) {
      done.set_exception(std::current_exception());
    }
  });
  if (fut.wait_for(std::chrono::seconds(seconds)) != std::future_status::ready) {
    std::fprintf(stderr, "FATAL: %s did not finish within %d s (hang)\n", what, seconds);
    std::fflush(stderr);
    std::_Exit(1);
  }
  t.join();
  fut.get();
}

}  // namespace

TEST(ImageStream, EveryImageOncePerEpochInFullBatches) {
  TempDir dir;
  const int n = 103, b = 8;
  const auto files = index_images(dir, n);
  ImageStream s(files, spec_of(3, kH, kW), b, BadImagePolicy::Stop, opts(3, 2, true, 5));
  EXPECT_EQ(s.batches_per_epoch(), 13);
  EXPECT_EQ(s.threads(), 3);
  std::vector<int> expect_sizes(12, b);
  expect_sizes.push_back(n - 12 * b);
  std::vector<int> all(n);
  for (int i = 0; i < n; ++i) all[i] = i;
  const auto e0 = read_epoch(s, 0), e1 = read_epoch(s, 1);
  for (const auto* e : {&e0, &e1}) {
    EXPECT_EQ(sizes(*e), expect_sizes);
    auto f = flatten(*e);
    std::sort(f.begin(), f.end());
    EXPECT_EQ(f, all) << "every image exactly once";
  }
  EXPECT_NE(flatten(e0), flatten(e1)) << "a fresh shuffle per epoch";
  EXPECT_NE(flatten(e0), all) << "shuffled";
  EXPECT_EQ(read_epoch(s, 0), e0) << "epoch 0 again: the same order";
  EXPECT_EQ(s.skipped(), 0);

  ImageStream plain(files, spec_of(3, kH, kW), b, BadImagePolicy::Stop, opts(2, 4, false, 5));
  EXPECT_EQ(flatten(read_epoch(plain, 3)), all) << "no shuffle: file order";
}

TEST(ImageStream, OrderDependsOnSeedAndEpochOnlyNotThreads) {
  TempDir dir;
  const auto files = index_images(dir, 61);
  const auto spec = spec_of(3, kH, kW);
  ImageStream a(files, spec, 7, BadImagePolicy::Stop, opts(1, 1, true, 42));
  ImageStream b(files, spec, 7, BadImagePolicy::Stop, opts(4, 3, true, 42));
  ImageStream c(files, spec, 7, BadImagePolicy::Stop, opts(2, 0, true, 43));
  for (int e : {0, 1, 7}) {
    const auto ea = read_epoch(a, e);
    EXPECT_EQ(ea, read_epoch(b, e)) << "threads 1 and 4, epoch " << e;
    EXPECT_NE(flatten(ea), flatten(read_epoch(c, e))) << "another seed, epoch " << e;
  }
}

TEST(ImageStream, DropLast) {
  TempDir dir;
  const auto files = index_images(dir, 29);
  ImageStream s(files, spec_of(3, kH, kW), 8, BadImagePolicy::Stop, opts(2, 2, true, 1, true));
  EXPECT_EQ(s.batches_per_epoch(), 3);
  const auto e = read_epoch(s, 0);
  EXPECT_EQ(sizes(e), (std::vector<int>{8, 8, 8}));
  const auto all = flatten(e);
  const std::set<int> seen(all.begin(), all.end());
  EXPECT_EQ(seen.size(), 24u);
}

namespace {

// Good index images with bad files mixed in at fixed places of the file list.
struct Mixed {
  std::vector<std::string> files;
  std::set<std::string> bad;
  int good = 0;
};

Mixed mixed_files(const TempDir& dir, int good) {
  Mixed m;
  m.files = index_images(dir, good);
  m.good = good;
  const std::vector<std::pair<int, std::string>> bad = {{3, "garbage.png"}, {20, "empty.jpg"}, {21, "cut.png"},
                                                         {40, "cut.jpg"}, {good - 1, "zz_last.png"}};
  const Bytes png = cuae::test::read_bytes(m.files[0]);
  write_jpeg(dir.file("full.jpg"), 32, 32, 3, random_bytes(32 * 32 * 3, 30), 90);
  const Bytes jpg = cuae::test::read_bytes(dir.file("full.jpg"));
  for (const auto& [at, name] : bad) {
    const std::string f = dir.file(name);
    if (name == "garbage.png") cuae::test::write_text(f, "not an image");
    if (name == "empty.jpg") cuae::test::write_bytes(f, {});
    if (name == "cut.png" || name == "zz_last.png") cuae::test::write_bytes(f, Bytes(png.begin(), png.begin() + 40));
    if (name == "cut.jpg") cuae::test::write_bytes(f, Bytes(jpg.begin(), jpg.begin() + jpg.size() / 2));
    m.files.insert(m.files.begin() + at, f);
    m.bad.insert(f);
  }
  return m;
}

}  // namespace

TEST(ImageStream, SkipKeepsBatchesFullAndReportsFiles) {
  TempDir dir;
  const Mixed m = mixed_files(dir, 60);
  std::vector<std::string> reported;
  const std::thread::id caller = std::this_thread::get_id();
  auto o = opts(3, 2, true, 9);
  o.on_skip = [&](const std::string& f, const std::string& why) {
    EXPECT_EQ(std::this_thread::get_id(), caller);
    EXPECT_FALSE(why.empty());
    reported.push_back(f);
  };
  ImageStream s(m.files, spec_of(3, kH, kW), 8, BadImagePolicy::Skip, o);
  EXPECT_EQ(s.batches_per_epoch(), 9) << "65 files: an upper bound";
  for (int e = 0; e < 2; ++e) {
    reported.clear();
    const auto batches = read_epoch(s, e);
    EXPECT_EQ(sizes(batches), (std::vector<int>{8, 8, 8, 8, 8, 8, 8, 4})) << "60 good images in full batches";
    auto f = flatten(batches);
    std::sort(f.begin(), f.end());
    std::vector<int> all(60);
    for (int i = 0; i < 60; ++i) all[i] = i;
    EXPECT_EQ(f, all);
    EXPECT_EQ(s.skipped(), 5);
    const auto sk = s.skipped_files();
    EXPECT_EQ(std::set<std::string>(sk.begin(), sk.end()), m.bad);
    EXPECT_EQ(reported, sk) << "the sink saw the same files, in epoch order";
  }
}

TEST(ImageStream, SkipResultDoesNotDependOnThreads) {
  TempDir dir;
  const Mixed m = mixed_files(dir, 45);
  const auto spec = spec_of(3, kH, kW);
  ImageStream a(m.files, spec, 6, BadImagePolicy::Skip, opts(1, 1, true, 77));
  ImageStream b(m.files, spec, 6, BadImagePolicy::Skip, opts(4, 5, true, 77));
  for (int e : {0, 1}) {
    EXPECT_EQ(read_epoch(a, e), read_epoch(b, e)) << "epoch " << e;
    EXPECT_EQ(a.skipped_files(), b.skipped_files());
  }
}

TEST(ImageStream, StopRethrowsInNextAfterTheBatchesBeforeIt) {
  TempDir dir;
  const Mixed m = mixed_files(dir, 60);  // first bad file at position 3
  // No shuffle: batches of 2 cover positions 0-1, then the bad file at 3 ends the epoch.
  ImageStream s(m.files, spec_of(3, kH, kW), 2, BadImagePolicy::Stop, opts(4, 3, false, 0));
  for (int e = 0; e < 2; ++e) {
    s.start_epoch(e);
    int n = 0;
    const float* b = s.next(&n);
    ASSERT_NE(b, nullptr);
    ASSERT_EQ(n, 2);
    EXPECT_EQ(row_index(b), 0);
    EXPECT_EQ(row_index(b + kH * kW * 3), 1);
    for (int again = 0; again < 2; ++again)
      expect_error([&] { s.next(&n); }, {dir.file("garbage.png"), "not a PNG or JPEG"});
  }
  // Shuffled: whatever the order, the epoch ends in that error, never with nullptr.
  ImageStream t(m.files, spec_of(3, kH, kW), 8, BadImagePolicy::Stop, opts(3, 2, true, 4));
  t.start_epoch(0);
  int n = 0;
  std::set<int> seen;
  try {
    while (const float* b = t.next(&n))
      for (int r = 0; r < n; ++r) EXPECT_TRUE(seen.insert(row_index(b + r * kH * kW * 3)).second);
    ADD_FAILURE() << "the epoch ended without the error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_TRUE(std::any_of(m.bad.begin(), m.bad.end(), [&](const std::string& f) { return msg.find(f) != std::string::npos; }))
        << msg;
  }
}

TEST(ImageStream, DestructionMidEpochDoesNotHang) {
  TempDir dir;
  const auto files = index_images(dir, 150);
  within_seconds(60, [&] {
    {
      ImageStream never(files, spec_of(3, kH, kW), 4, BadImagePolicy::Stop, opts(4, 1, true, 0));
    }
    {
      ImageStream started(files, spec_of(3, kH, kW), 4, BadImagePolicy::Stop, opts(4, 1, true, 0));
      started.start_epoch(0);
    }
    for (int threads : {1, 4}) {
      ImageStream s(files, spec_of(3, kH, kW), 4, BadImagePolicy::Stop, opts(threads, 1, true, 0));
      s.start_epoch(0);
      int n = 0;
      ASSERT_NE(s.next(&n), nullptr);
      ASSERT_NE(s.next(&n), nullptr);
    }
    // And a restart mid-epoch leaves a correct full epoch.
    ImageStream s(files, spec_of(3, kH, kW), 16, BadImagePolicy::Stop, opts(4, 2, true, 3));
    s.start_epoch(0);
    int n = 0;
    for (int i = 0; i < 3; ++i) ASSERT_NE(s.next(&n), nullptr);
    auto f = flatten(read_epoch(s, 1));
    std::sort(f.begin(), f.end());
    ASSERT_EQ(f.size(), 150u);
    for (int i = 0; i < 150; ++i) EXPECT_EQ(f[static_cast<std::size_t>(i)], i);
  }, "ImageStream destruction");
}

TEST(ImageStream, BatchesLiveInTheCallersAllocator) {
  TempDir dir;
  const auto files = index_images(dir, 40);
  std::mutex mu;
  std::map<void*, std::size_t> live;
  int allocs = 0, frees = 0;
  cuae::BatchAllocator alloc{[&](std::size_t bytes) {
                               const std::lock_guard<std::mutex> l(mu);
                               void* p = std::malloc(bytes);
                               live[p] = bytes;
                               ++allocs;
                               return p;
                             },
                             [&](void* p) {
                               const std::lock_guard<std::mutex> l(mu);
                               EXPECT_EQ(live.erase(p), 1u);
                               ++frees;
                               std::free(p);
                             }};
  {
    ImageStream s(files, spec_of(3, kH, kW), 8, BadImagePolicy::Stop, opts(2, 3, true, 0), alloc);
    EXPECT_EQ(allocs, 4) << "prefetch + 1 buffers";
    s.start_epoch(0);
    int n = 0;
    while (const float* b = s.next(&n)) {
      const std::lock_guard<std::mutex> l(mu);
      EXPECT_TRUE(std::any_of(live.begin(), live.end(), [&](const auto& kv) {
        auto* base = static_cast<const char*>(kv.first);
        return reinterpret_cast<const char*>(b) == base && kv.second == 8 * kH * kW * 3 * sizeof(float);
      }));
    }
  }
  EXPECT_EQ(frees, allocs);
  EXPECT_TRUE(live.empty());
}

TEST(ImageStream, ResizedMixedFilesMatchDecodeImage) {
  TempDir dir;
  std::vector<std::string> files;
  for (int i = 0; i < 14; ++i) {
    const int w = 9 + i, h = 20 - i;
    const std::string f = dir.file("m" + std::to_string(i) + (i % 3 == 0 ? ".jpg" : ".png"));
    if (i % 3 == 0)
      write_jpeg(f, w, h, 3, random_bytes(static_cast<std::size_t>(w) * h * 3, 40 + i), 90);
    else
      write_png8(f, w, h, i % 2 ? 1 : 3, random_bytes(static_cast<std::size_t>(w) * h * (i % 2 ? 1 : 3), 40 + i));
    files.push_back(f);
  }
  const auto spec = spec_of(3, 7, 11, ImageSpec::Fit::Crop);
  ImageStream s(files, spec, 5, BadImagePolicy::Stop, opts(3, 1, false, 0));
  s.start_epoch(0);
  int n = 0, i = 0;
  while (const float* b = s.next(&n))
    for (int r = 0; r < n; ++r, ++i) {
      const auto want = cuae::decode_image(files[static_cast<std::size_t>(i)], spec);
      EXPECT_TRUE(std::equal(want.begin(), want.end(), b + r * spec.features())) << files[static_cast<std::size_t>(i)];
    }
  EXPECT_EQ(i, 14);
}

TEST(ImageStream, RejectsBadArguments) {
  TempDir dir;
  const auto files = index_images(dir, 3);
  const auto spec = spec_of(3, kH, kW);
  expect_error([&] { ImageStream s({}, spec, 4); }, {"no image files"});
  expect_error([&] { ImageStream s(files, spec, 0); }, {"batch_size", "0"});
  expect_error([&] { ImageStream s(files, spec_of(4, 2, 2), 4); }, {"channels 4"});
  expect_error([&] { ImageStream s(files, spec, 4, BadImagePolicy::Stop, opts(-1, 1, false, 0)); }, {"threads"});
  cuae::BatchAllocator half;
  half.alloc = [](std::size_t b) { return std::malloc(b); };
  expect_error([&] { ImageStream s(files, spec, 4, BadImagePolicy::Stop, {}, half); }, {"alloc and free"});
  ImageStream s(files, spec, 4);
  int n = 0;
  expect_error([&] { s.next(&n); }, {"start_epoch"});
}
