// Compression: the quantiser's error bound, the .cuaez file's exact round trip (packed and
// deflated, odd sizes), every kind of damaged file refused by name, JPEG encoding, and on
// Fashion-MNIST a trained model's file decoded to the PSNR measured before writing it, 0.3 dB
// above PCA's with the same quantiser and code width.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <unistd.h>

#include "common.hpp"
#include "cuae/analysis.hpp"
#include "cuae/autoencoder.hpp"
#include "cuae/compress.hpp"
#include "cuae/image.hpp"
#include "cuae/images.hpp"

namespace fs = std::filesystem;

namespace cuae {
namespace {

using test::expect_error_contains;

Tensor random_codes(std::int64_t n, std::int64_t k, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> g(0.0f, 3.0f);
  Tensor t({n, k});
  for (std::int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = g(gen);
  return t;
}

TEST(Compress, QuantiserErrorIsAtMostHalfAStep) {
  const Tensor train = random_codes(301, 7, 1), test = random_codes(53, 7, 2);
  for (const int bits : {1, 3, 8, 16}) {
    const Quantizer q = fit_quantizer(train, bits);
    const std::vector<std::uint16_t> s = quantize(q, train);
    const Tensor back = dequantize(q, s);
    ASSERT_EQ(back.shape(), train.shape());
    for (std::int64_t i = 0; i < train.numel(); ++i) {
      const auto j = static_cast<std::size_t>(i % 7);
      const double step = (q.hi[j] - q.lo[j]) / (std::ldexp(1.0, bits) - 1.0);
      ASSERT_LE(std::abs(back.f32()[i] - train.f32()[i]), 0.5 * step * (1 + 1e-5) + 1e-6) << bits;
      ASSERT_LT(s[static_cast<std::size_t>(i)], 1u << bits);
    }
    // Test codes beyond the training range are clamped to its ends.
    for (const std::uint16_t v : quantize(q, test)) ASSERT_LT(v, 1u << bits);
  }
  expect_error_contains([&] { fit_quantizer(train, 17); }, "bits must be 1..16");
}

CompressedCodes sample_file(bool zlib) {
  CompressedCodes c;
  c.model = 0xfeedbeefcafe1234ull;
  c.quantizer = fit_quantizer(random_codes(40, 7, 3), 5);
  c.symbols = quantize(c.quantizer, random_codes(13, 7, 4));
  c.images = 13;
  c.height = 5;
  c.width = 3;
  c.channels = 3;
  c.zlib = zlib;
  return c;
}

TEST(Compress, FileRoundTripsExactly) {
  for (const bool zlib : {false, true}) {
    const CompressedCodes c = sample_file(zlib);
    const std::vector<std::uint8_t> bytes = encode_compressed(c);
    if (!zlib) EXPECT_EQ(bytes.size(), 52u + 8 * 7 + 8 + (13 * 7 * 5 + 7) / 8 + 4);
    const CompressedCodes back = decode_compressed(bytes, "mem");
    EXPECT_EQ(back.model, c.model);
    EXPECT_EQ(back.symbols, c.symbols);
    EXPECT_EQ(back.quantizer.lo, c.quantizer.lo);
    EXPECT_EQ(back.quantizer.hi, c.quantizer.hi);
    EXPECT_EQ(back.quantizer.bits, 5);
    EXPECT_EQ(back.images, 13);
    EXPECT_EQ(back.height * 100 + back.width * 10 + back.channels, 533);
    EXPECT_EQ(back.zlib, zlib);
    EXPECT_EQ(encode_compressed(back), bytes);
  }
  const fs::path p = fs::temp_directory_path() / ("cuae_codes_" + std::to_string(::getpid()) + ".cuaez");
  const std::size_t written = write_compressed(p.string(), sample_file(true));
  EXPECT_EQ(fs::file_size(p), written);
  EXPECT_EQ(read_compressed(p.string()).symbols, sample_file(true).symbols);
  fs::remove(p);
}

TEST(Compress, DamagedFilesAreRefusedByName) {
  const std::vector<std::uint8_t> good = encode_compressed(sample_file(false));
  auto with = [&](auto&& change) {
    std::vector<std::uint8_t> b = good;
    change(b);
    return b;
  };
  expect_error_contains([&] { decode_compressed(with([](auto& b) { b[0] = 'X'; }), "f.cuaez"); },
                        "f.cuaez: not a cuae compressed file");
  expect_error_contains([&] { decode_compressed(with([](auto& b) { b[8] = 2; }), "f.cuaez"); }, "format version 2");
  expect_error_contains([&] { decode_compressed(with([](auto& b) { b.resize(30); }), "f.cuaez"); }, "truncated");
  expect_error_contains([&] { decode_compressed(with([](auto& b) { b.pop_back(); }), "f.cuaez"); }, "do not fill");
  expect_error_contains([&] { decode_compressed(with([](auto& b) { b.push_back(0); }), "f.cuaez"); }, "trailing");
  expect_error_contains([&] { decode_compressed(with([](auto& b) { b[b.size() - 10] ^= 0x10; }), "f.cuaez"); },
                        "checksum mismatch");
  expect_error_contains([&] { decode_compressed(with([](auto& b) { b[24] = 17; }), "f.cuaez"); }, "17 bits");
  expect_error_contains([&] { decode_compressed(with([](auto& b) { b[48] = 9; }), "f.cuaez"); }, "unknown codec 9");
  expect_error_contains([&] { read_compressed("/nonexistent/x.cuaez"); }, "/nonexistent/x.cuaez: cannot open");
}

TEST(Compress, FingerprintFollowsTheParameters) {
  Tensor w({2, 3});
  for (int i = 0; i < 6; ++i) w.f32()[i] = static_cast<float>(i);
  const std::uint64_t a = parameter_fingerprint({{"w", w}});
  EXPECT_EQ(parameter_fingerprint({{"w", w}}), a);
  EXPECT_NE(parameter_fingerprint({{"v", w}}), a);
  w.f32()[5] = 5.5f;
  EXPECT_NE(parameter_fingerprint({{"w", w}}), a);
}

TEST(Compress, JpegEncodesWhatDecodesBack) {
  std::vector<float> px(20 * 13 * 3);
  for (std::size_t i = 0; i < px.size(); ++i) px[i] = static_cast<float>(0.5 + 0.4 * std::sin(0.05 * static_cast<double>(i)));
  ImageSpec spec;
  spec.channels = 3;
  spec.height = 20;
  spec.width = 13;
  spec.fit = ImageSpec::Fit::Resize;
  const std::vector<std::uint8_t> hi = encode_jpeg(px.data(), 20, 13, 3, 95), lo = encode_jpeg(px.data(), 20, 13, 3, 10);
  EXPECT_LT(lo.size(), hi.size());
  Tensor ref({1, 780}), dec({1, 780});
  std::copy(px.begin(), px.end(), ref.f32());
  const std::vector<float> back = decode_image_bytes(hi, "jpeg", spec);
  std::copy(back.begin(), back.end(), dec.f32());
  EXPECT_GT(psnr(ref, dec)[0], 30.0);
  expect_error_contains([&] { encode_jpeg(px.data(), 20, 13, 2, 50); }, "1 or 3 channels");
}

TEST(Compress, TrainedModelFileDecodesToTheReportedQualityAbovePca) {
  if (!test::have_fashion_mnist()) GTEST_SKIP() << "Fashion-MNIST not installed (Debian package dataset-fashion-mnist)";
  const Config cfg = test::small_dense_config({784, 256, 16}, 10);
  const Dataset train = subset(load_fashion_mnist(cfg.data.dir, true), 0, 10000);
  const Dataset test = subset(load_fashion_mnist(cfg.data.dir, false), 0, 500);
  Autoencoder ae(cfg, Device::CPU);
  ae.train(train);
  CompressedCodes c;
  c.model = parameter_fingerprint(ae.parameters());
  c.quantizer = fit_quantizer(ae.encode(train.images), 6);
  c.symbols = quantize(c.quantizer, ae.encode(test.images));
  c.images = test.size();
  c.height = c.width = 28;
  const double before = mean_of(psnr(test.images, ae.decode(dequantize(c.quantizer, c.symbols))));
  const fs::path p = fs::temp_directory_path() / ("cuae_fm_" + std::to_string(::getpid()) + ".cuaez");
  write_compressed(p.string(), c);
  const CompressedCodes back = read_compressed(p.string());
  fs::remove(p);
  EXPECT_EQ(back.model, parameter_fingerprint(ae.parameters()));
  EXPECT_NE(back.model, parameter_fingerprint(Autoencoder(ae.config(), Device::CPU).parameters()));  // untrained: another model
  const double after = mean_of(psnr(test.images, ae.decode(dequantize(back.quantizer, back.symbols))));
  EXPECT_EQ(after, before);  // the same symbols and ranges: the same images, bit for bit
  const Pca pca = fit_pca(train.images, 16);
  const Quantizer pq = fit_quantizer(pca_encode(pca, train.images), 6);
  Tensor pca_images = pca_decode(pca, dequantize(pq, quantize(pq, pca_encode(pca, test.images))));
  for (std::int64_t i = 0; i < pca_images.numel(); ++i) pca_images.f32()[i] = std::clamp(pca_images.f32()[i], 0.0f, 1.0f);
  const double pca_psnr = mean_of(psnr(test.images, pca_images));
  std::printf("6-bit codes: autoencoder PSNR %.2f dB, PCA-16 %.2f dB\n", after, pca_psnr);
  EXPECT_GT(after, pca_psnr + 0.3);
}

}  // namespace
}  // namespace cuae
