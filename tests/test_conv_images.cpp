// End to end on an image folder: a convolutional autoencoder for 3x128x128 images trains on PNG
// files the test writes (streamed by background threads, and decoded into memory), improves its
// reconstructions, survives a checkpoint round trip, and a folder with a corrupt image is skipped
// or stops the run as configured. CPU backend, so it runs everywhere.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "cuae/autoencoder.hpp"
#include "cuae/config.hpp"
#include "cuae/image.hpp"
#include "cuae/images.hpp"
#include "file_helpers.hpp"

namespace cuae {
namespace {

constexpr int kSize = 128;

// Smooth synthetic scenes: a coloured disc on a two-colour gradient, parameters varying per image,
// so there is structure to learn and no two images are alike.
void write_scene(const std::string& path, int i) {
  std::vector<std::uint8_t> px(static_cast<std::size_t>(kSize) * kSize * 3);
  const double cx = 30 + (i * 37) % 68, cy = 30 + (i * 53) % 68, rad = 14 + (i * 7) % 20;
  const double tint[3] = {0.2 + 0.6 * ((i * 3) % 5) / 4.0, 0.3 + 0.5 * ((i * 7) % 3) / 2.0, 0.8 - 0.6 * (i % 4) / 3.0};
  for (int y = 0; y < kSize; ++y)
    for (int x = 0; x < kSize; ++x) {
      const bool in = (x - cx) * (x - cx) + (y - cy) * (y - cy) < rad * rad;
      for (int c = 0; c < 3; ++c) {
        const double bg = 0.15 + 0.5 * (c == 0 ? x : y) / kSize;
        const double v = in ? tint[c] : bg;
        px[(static_cast<std::size_t>(y) * kSize + x) * 3 + c] = static_cast<std::uint8_t>(std::lround(255.0 * v));
      }
    }
  write_png(path, px, kSize, kSize, 3);
}

Config model_config() {
  Config c = parse_config(R"(
[model]
type = "conv"
input = [3, 128, 128]
code = 32
activation = "relu"
output_activation = "sigmoid"
[[model.encoder]]
channels = 8
kernel = 3
stride = 2
[[model.encoder]]
channels = 16
kernel = 3
stride = 2
pool = "max"
[[model.encoder]]
channels = 16
kernel = 3
stride = 2
[loss]
type = "mse"
reduction = "sum"
[optimizer]
type = "adam"
lr = 2e-3
[train]
batch_size = 4
epochs = 10
device = "cpu"
log_every = 1000
)",
                          "e2e.toml");
  return c;
}

TEST(ConvImages, TrainsOn128x128FolderStreamedAndInMemory) {
  test::TempDir dir;
  const auto train_dir = dir.path() / "train", test_dir = dir.path() / "test";
  std::filesystem::create_directories(train_dir);
  std::filesystem::create_directories(test_dir);
  for (int i = 0; i < 20; ++i) write_scene((train_dir / ("img" + std::to_string(i) + ".png")).string(), i);
  for (int i = 0; i < 4; ++i) write_scene((test_dir / ("t" + std::to_string(i) + ".png")).string(), 100 + i);

  const Config cfg = model_config();
  const ImageSpec spec{3, kSize, kSize, ImageSpec::Fit::Crop};
  const Dataset test = load_image_folder(test_dir.string(), spec);
  ASSERT_EQ(test.images.shape(), (Shape{4, kSize * kSize * 3}));

  // Streamed: decoded by two background threads into batch buffers while training.
  Autoencoder ae(cfg, Device::CPU);
  const double before = ae.evaluate(test.images).mse_per_pixel;
  ImageStreamOptions so;
  so.threads = 2;
  so.prefetch = 2;
  so.seed = 5;
  so.drop_last = true;
  ImageStream stream(list_images(train_dir.string()), spec, cfg.train.batch_size, BadImagePolicy::Stop, so);
  std::vector<double> epoch_loss;
  ae.train(stream, test.images, [&](const TrainProgress& p) {
    if (p.epoch_end) epoch_loss.push_back(p.epoch_loss);
  });
  ASSERT_EQ(epoch_loss.size(), 10u);
  EXPECT_LT(epoch_loss.back(), 0.75 * epoch_loss.front());
  const double after = ae.evaluate(test.images).mse_per_pixel;
  EXPECT_LT(after, 0.75 * before) << "test MSE " << before << " -> " << after;
  EXPECT_EQ(ae.encode(test.images).shape(), (Shape{4, 32}));

  // The checkpoint reproduces the model exactly.
  const std::string ckpt = dir.file("conv.safetensors");
  ae.save(ckpt);
  Autoencoder back = Autoencoder::load(ckpt, Device::CPU);
  EXPECT_EQ(back.config().model.layers, cfg.model.layers);
  const auto r1 = ae.reconstruct(test.images).values(), r2 = back.reconstruct(test.images).values();
  ASSERT_EQ(r1.size(), r2.size());
  for (std::size_t i = 0; i < r1.size(); ++i) ASSERT_EQ(r1[i], r2[i]) << i;
  // A PNG grid of RGB rows (channels last).
  write_image_grid(dir.file("recon.png"), back.reconstruct(test.images), 1, 4, kSize, kSize, 3);
  EXPECT_TRUE(std::filesystem::exists(dir.file("recon.png")));

  // The same model trained from the images decoded into memory learns too.
  const Dataset train = load_image_folder(train_dir.string(), spec, BadImagePolicy::Stop, 2);
  EXPECT_EQ(train.size(), 20);
  Autoencoder mem(cfg, Device::CPU);
  mem.train(train);
  EXPECT_LT(mem.evaluate(test.images).mse_per_pixel, 0.75 * before);
}

TEST(ConvImages, CorruptImageIsSkippedOrStopsTheRun) {
  test::TempDir dir;
  for (int i = 0; i < 9; ++i) write_scene(dir.file("img" + std::to_string(i) + ".png"), i);
  {
    std::ofstream bad(dir.file("img4_broken.png"), std::ios::binary);
    bad << "\x89PNG\r\n\x1a\n truncated";
  }
  Config cfg = model_config();
  cfg.train.epochs = 1;
  const ImageSpec spec{3, kSize, kSize, ImageSpec::Fit::Crop};
  ImageStreamOptions so;
  so.threads = 2;
  so.drop_last = true;
  std::vector<std::string> skipped;
  so.on_skip = [&](const std::string& file, const std::string&) { skipped.push_back(file); };
  {
    Autoencoder ae(cfg, Device::CPU);
    ImageStream stream(list_images(dir.str()), spec, cfg.train.batch_size, BadImagePolicy::Skip, so);
    ae.train(stream, Tensor());
    EXPECT_EQ(stream.skipped(), 1);
    ASSERT_EQ(skipped.size(), 1u);
    EXPECT_NE(skipped[0].find("img4_broken.png"), std::string::npos);
    EXPECT_EQ(ae.step(), 2);  // 9 good images: two full batches of 4
  }
  {
    Autoencoder ae(cfg, Device::CPU);
    ImageStream stream(list_images(dir.str()), spec, cfg.train.batch_size, BadImagePolicy::Stop, so);
    test::expect_error([&] { ae.train(stream, Tensor()); }, {"img4_broken.png"});
  }
}

}  // namespace
}  // namespace cuae
