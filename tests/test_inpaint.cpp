// Inpainting: masks of each kind mark what they promise, the fill keeps every known pixel and
// changes only missing ones, and on Fashion-MNIST a trained model fills a missing rectangle better
// than the mean training image does.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <unistd.h>

#include "common.hpp"
#include "cuae/autoencoder.hpp"
#include "cuae/image.hpp"
#include "cuae/inpaint.hpp"

namespace fs = std::filesystem;

namespace cuae {
namespace {

using test::expect_error_contains;

double missing_share(const Tensor& m) {
  double missing = 0;
  for (std::int64_t i = 0; i < m.numel(); ++i) missing += m.f32()[i] == 0.0f;
  return missing / static_cast<double>(m.numel());
}

TEST(Inpaint, MasksMarkWhatTheyPromise) {
  MaskOptions rect;
  rect.rect = {2, 3, 4, 5};
  const Tensor r = make_masks(3, 9, 11, 2, rect);
  for (int y = 0; y < 9; ++y)
    for (int x = 0; x < 11; ++x)
      for (int c = 0; c < 2; ++c)
        EXPECT_EQ(r.f32()[2 * (9 * 11 * 2) + (y * 11 + x) * 2 + c], (y >= 2 && y < 6 && x >= 3 && x < 8) ? 0.0f : 1.0f);
  MaskOptions random_rect;  // about a quarter of the area, somewhere different per image
  const Tensor rr = make_masks(50, 28, 28, 1, random_rect);
  EXPECT_NEAR(missing_share(rr), 0.25, 0.01);
  EXPECT_NE(rr.rows(0, 1).values(), rr.rows(1, 2).values());
  MaskOptions pixels;
  pixels.kind = MaskKind::Pixels;
  pixels.fraction = 0.4f;
  EXPECT_NEAR(missing_share(make_masks(200, 28, 28, 1, pixels)), 0.4, 0.01);
  // A mask image: its left half dark.
  const fs::path png = fs::temp_directory_path() / ("cuae_mask_" + std::to_string(::getpid()) + ".png");
  std::vector<std::uint8_t> px(8 * 6, 255);
  for (int y = 0; y < 6; ++y)
    for (int x = 0; x < 4; ++x) px[static_cast<std::size_t>(y * 8 + x)] = 0;
  write_png(png.string(), px, 8, 6, 1);
  MaskOptions file;
  file.kind = MaskKind::File;
  file.file = png.string();
  const Tensor f = make_masks(2, 6, 8, 1, file);
  EXPECT_EQ(f.f32()[3], 0.0f);
  EXPECT_EQ(f.f32()[4], 1.0f);
  EXPECT_DOUBLE_EQ(missing_share(f), 0.5);
  std::fill(px.begin(), px.end(), 255);
  write_png(png.string(), px, 8, 6, 1);
  expect_error_contains([&] { make_masks(2, 6, 8, 1, file); }, "no pixel is missing");
  fs::remove(png);
  rect.rect = {6, 0, 4, 2};
  expect_error_contains([&] { make_masks(1, 9, 11, 1, rect); }, "inside the 9×11 image");
}

TEST(Inpaint, KeepsKnownPixelsAndFillsTheRest) {
  Tensor images({5, 12});
  const std::vector<float> v = test::uniform(60, 3, 0.0f, 1.0f);
  std::copy(v.begin(), v.end(), images.f32());
  MaskOptions o;
  o.kind = MaskKind::Pixels;
  o.fraction = 0.5f;
  const Tensor masks = make_masks(5, 3, 4, 1, o);
  Tensor fill({12});
  std::fill(fill.f32(), fill.f32() + 12, 0.5f);
  int calls = 0;
  // A "model" that returns 2 (clamped to 1) everywhere: missing pixels become 1 after one pass.
  const Tensor out = inpaint(
      [&](const Tensor& x) {
        ++calls;
        Tensor r(x.shape());
        std::fill(r.f32(), r.f32() + r.numel(), 2.0f);
        return r;
      },
      images, masks, fill, 3);
  EXPECT_EQ(calls, 3);
  for (std::int64_t i = 0; i < images.numel(); ++i)
    EXPECT_EQ(out.f32()[i], masks.f32()[i] != 0.0f ? images.f32()[i] : 1.0f);
  const InpaintError e = missing_pixel_error(images, out, masks);
  EXPECT_GT(e.missing, 0);
  EXPECT_NEAR(e.psnr, 10.0 * std::log10(1.0 / e.mse), 1e-9);
}

TEST(Inpaint, TrainedModelBeatsTheMeanImageOnARectangle) {
  if (!test::have_fashion_mnist()) GTEST_SKIP() << "Fashion-MNIST not installed (Debian package dataset-fashion-mnist)";
  const Config cfg = test::small_dense_config({784, 256, 32}, 3);
  const Dataset train = subset(load_fashion_mnist(cfg.data.dir, true), 0, 6000);
  const Dataset test = subset(load_fashion_mnist(cfg.data.dir, false), 0, 500);
  Autoencoder ae(cfg, Device::CPU);
  ae.train(train);
  Tensor mean({784});
  for (std::int64_t j = 0; j < 784; ++j) {
    double s = 0;
    for (std::int64_t i = 0; i < train.size(); ++i) s += train.images.f32()[i * 784 + j];
    mean.f32()[j] = static_cast<float>(s / static_cast<double>(train.size()));
  }
  const Tensor masks = make_masks(test.size(), 28, 28, 1, {});
  const auto model = [&](const Tensor& x) { return ae.reconstruct(x); };
  const double base = missing_pixel_error(test.images, inpaint([](const Tensor& x) { return x; }, test.images, masks, mean, 1), masks).mse;
  const double once = missing_pixel_error(test.images, inpaint(model, test.images, masks, mean, 1), masks).mse;
  const double iterated = missing_pixel_error(test.images, inpaint(model, test.images, masks, mean, 10), masks).mse;
  std::printf("missing-pixel MSE: mean image %.5f, one pass %.5f, 10 iterations %.5f\n", base, once, iterated);
  EXPECT_LT(once, 0.9 * base);
  EXPECT_LT(iterated, 0.9 * base);
}

}  // namespace
}  // namespace cuae
