// cuae compress / decompress: the test images as quantised codes in a .cuaez file, and back;
// with --rate-distortion, the rate–distortion table beside PCA (the same quantiser) and JPEG.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "host/cli/common.hpp"

namespace fs = std::filesystem;

namespace cuae::cli {

namespace {

struct CompressOptions {
  std::string checkpoint, device = "auto", out;
  int bits = 6;
  bool zlib = true, rate_distortion = false;
};

struct DecompressOptions {
  std::string checkpoint, device = "auto", in, out, png;
};

// One point of a rate–distortion curve on a set of images.
struct Point {
  std::string method, setting;
  std::size_t bytes = 0;
  double bpp = 0.0, psnr = 0.0, ssim = 0.0;
  Tensor decoded;
};

Point measure(const std::string& method, const std::string& setting, std::size_t bytes, const Tensor& decoded,
              const Dataset& test) {
  Point p{method, setting, bytes, 0.0, 0.0, 0.0, decoded};
  p.bpp = 8.0 * static_cast<double>(bytes) / (static_cast<double>(test.size()) * test.rows * test.cols);
  p.psnr = mean_of(psnr(test.images, decoded));
  p.ssim = mean_of(ssim(test.images, decoded, test.rows, test.cols, test.channels));
  return p;
}

Tensor clamped(Tensor t) {
  for (std::int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = std::clamp(t.f32()[i], 0.0f, 1.0f);
  return t;
}

// Codes of `test` quantised with ranges from `train_codes`, as a file's bytes; decoded by `decode`.
template <class Decode>
Point code_point(const std::string& method, const Tensor& train_codes, const Tensor& test_codes, int bits, bool zlib,
                 std::uint64_t model, const Dataset& test, Decode&& decode, CompressedCodes* kept = nullptr) {
  CompressedCodes c;
  c.model = model;
  c.quantizer = fit_quantizer(train_codes, bits);
  c.symbols = quantize(c.quantizer, test_codes);
  c.images = test.size();
  c.height = test.rows;
  c.width = test.cols;
  c.channels = test.channels;
  c.zlib = zlib;
  const std::size_t bytes = encode_compressed(c).size();
  Point p = measure(method, std::to_string(bits) + " bits", bytes, clamped(decode(dequantize(c.quantizer, c.symbols))), test);
  if (kept) *kept = std::move(c);
  return p;
}

ImageSpec spec_of(const Dataset& test, int height, int width) {
  ImageSpec spec;
  spec.channels = test.channels;
  spec.height = height;
  spec.width = width;
  spec.fit = ImageSpec::Fit::Resize;
  return spec;
}

// Each image its own JFIF file: what storing images one by one costs, headers and all.
Point jpeg_point(int quality, const Dataset& test) {
  const std::int64_t d = test.features();
  Tensor decoded({test.size(), d});
  std::size_t bytes = 0;
  for (std::int64_t i = 0; i < test.size(); ++i) {
    const std::vector<std::uint8_t> file = encode_jpeg(test.images.f32() + i * d, test.rows, test.cols, test.channels, quality);
    bytes += file.size();
    const std::vector<float> px = decode_image_bytes(file, "JPEG of test image " + std::to_string(i), spec_of(test, test.rows, test.cols));
    std::copy(px.begin(), px.end(), decoded.f32() + i * d);
  }
  return measure("JPEG, per image", "quality " + std::to_string(quality), bytes, decoded, test);
}

// All images in one JPEG mosaic, each on a tile rounded up to whole 16×16 blocks (padded by
// repeating its edge pixels, cheap to code), so the headers are paid once: JPEG at its best rate.
Point jpeg_mosaic_point(int quality, const Dataset& test) {
  const int th = (test.rows + 15) / 16 * 16, tw = (test.cols + 15) / 16 * 16, c = test.channels;
  const auto per_row = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(test.size()))));
  const auto grid_rows = static_cast<int>((test.size() + per_row - 1) / per_row);
  const int H = grid_rows * th, W = per_row * tw;
  const std::int64_t d = test.features();
  std::vector<float> mosaic(static_cast<std::size_t>(H) * W * c, 0.0f);
  const auto at = [&](std::int64_t i, int y, int x, int ch) {
    return static_cast<std::size_t>(((static_cast<std::int64_t>(i / per_row) * th + y) * W + (i % per_row) * tw + x) * c + ch);
  };
  for (std::int64_t i = 0; i < test.size(); ++i)
    for (int y = 0; y < th; ++y)
      for (int x = 0; x < tw; ++x)
        for (int ch = 0; ch < c; ++ch)
          mosaic[at(i, y, x, ch)] =
              test.images.f32()[i * d + (std::min(y, test.rows - 1) * test.cols + std::min(x, test.cols - 1)) * c + ch];
  const std::vector<std::uint8_t> file = encode_jpeg(mosaic.data(), H, W, c, quality);
  const std::vector<float> px = decode_image_bytes(file, "JPEG mosaic", spec_of(test, H, W));
  Tensor decoded({test.size(), d});
  for (std::int64_t i = 0; i < test.size(); ++i)
    for (int y = 0; y < test.rows; ++y)
      for (int x = 0; x < test.cols; ++x)
        for (int ch = 0; ch < c; ++ch) decoded.f32()[i * d + (y * test.cols + x) * c + ch] = px[at(i, y, x, ch)];
  return measure("JPEG, one mosaic", "quality " + std::to_string(quality), file.size(), decoded, test);
}

void compress(const CompressOptions& o) {
  Autoencoder ae = Autoencoder::load(o.checkpoint, resolve_device(o.device));
  const Config& cfg = ae.config();
  if (cfg.data.stream) throw Error("cuae compress: the training images were streamed; the code ranges are fitted on them in memory");
  const Data data = load_data(cfg);
  const Dataset& test = data.test;
  const Tensor train = data.train.images.rows(0, training_split(cfg.train, data.train.size()).train);
  const std::uint64_t model = parameter_fingerprint(ae.parameters());
  const auto decode = [&](const Tensor& z) { return ae.decode(z); };
  const Tensor train_codes = ae.encode(train), test_codes = ae.encode(test.images);
  const std::string out = o.out.empty() ? (fs::path(o.checkpoint).parent_path() / "test.cuaez").string() : o.out;
  CompressedCodes file;
  const Point ours = code_point("autoencoder", train_codes, test_codes, o.bits, o.zlib, model, test, decode, &file);
  const std::size_t written = write_compressed(out, file);
  const Point unquantised = measure("autoencoder", "float codes", 0, clamped(ae.reconstruct(test.images)), test);
  std::printf("cuae compress: %s; %s (%lld images) as %lld-value codes, %d bits per value%s\n", o.checkpoint.c_str(),
              test.name.c_str(), static_cast<long long>(test.size()), static_cast<long long>(test_codes.dim(1)), o.bits,
              o.zlib ? ", deflated" : "");
  std::printf("  wrote %s: %zu bytes, %.4f bits per pixel (%.1f bytes per image, header included)\n", out.c_str(), written,
              ours.bpp, static_cast<double>(written) / static_cast<double>(test.size()));
  std::printf("  decompressed: PSNR %.2f dB, SSIM %.4f (unquantised codes: PSNR %.2f dB, SSIM %.4f)\n", ours.psnr, ours.ssim,
              unquantised.psnr, unquantised.ssim);
  if (!o.rate_distortion) return;

  const int k = static_cast<int>(test_codes.dim(1));
  std::vector<Point> points;
  for (const int b : {2, 3, 4, 5, 6, 8}) points.push_back(code_point("autoencoder", train_codes, test_codes, b, o.zlib, model, test, decode));
  if (k < test.features()) {
    const Pca p = fit_pca(train, k);
    const Tensor ptrain = pca_encode(p, train), ptest = pca_encode(p, test.images);
    for (const int b : {2, 3, 4, 5, 6, 8})
      points.push_back(code_point("PCA-" + std::to_string(k), ptrain, ptest, b, o.zlib, 0, test,
                                  [&](const Tensor& z) { return pca_decode(p, z); }));
  }
  for (const int q : {1, 5, 10, 20, 30, 50, 75}) points.push_back(jpeg_mosaic_point(q, test));
  for (const int q : {5, 50, 90}) points.push_back(jpeg_point(q, test));
  const fs::path dir = fs::path(out).parent_path().empty() ? fs::path(".") : fs::path(out).parent_path();
  std::ofstream csv(dir / "rate_distortion.csv");
  csv << "method,setting,bytes,bits_per_pixel,psnr_db,ssim\n";
  std::printf("  %-18s %-12s %12s %10s %8s\n", "method", "setting", "bits/pixel", "PSNR (dB)", "SSIM");
  std::vector<Series> curves;
  for (const Point& p : points) {
    std::printf("  %-18s %-12s %12.4f %10.2f %8.4f\n", p.method.c_str(), p.setting.c_str(), p.bpp, p.psnr, p.ssim);
    csv << '"' << p.method << "\",\"" << p.setting << "\"," << p.bytes << ',' << p.bpp << ',' << p.psnr << ',' << p.ssim << '\n';
    if (curves.empty() || curves.back().name != p.method) curves.push_back({p.method, {}, {}});
    curves.back().x.push_back(p.bpp);
    curves.back().y.push_back(p.psnr);
  }
  if (!csv) throw Error("cuae compress: cannot write " + (dir / "rate_distortion.csv").string());
  write_line_plot((dir / "rate_distortion.png").string(), "Rate–distortion on " + test.name, "bits per pixel",
                  "PSNR (dB)", curves);
  // At the rate of the file written: the PCA and JPEG points nearest in bits per pixel.
  const auto nearest = [&](const std::string& prefix) -> const Point* {
    const Point* best = nullptr;
    for (const Point& p : points)
      if (p.method.rfind(prefix, 0) == 0 && (!best || std::abs(p.bpp - ours.bpp) < std::abs(best->bpp - ours.bpp))) best = &p;
    return best;
  };
  const std::vector<std::int64_t> idx = spread_indices(test, 20);
  std::vector<std::pair<std::string, Tensor>> rows = {{"original", gather_rows(test.images, idx)},
                                                      {"AE " + std::to_string(ours.bpp).substr(0, 4) + " bpp", gather_rows(ours.decoded, idx)}};
  for (const auto& [prefix, label] : {std::pair{"PCA", "PCA"}, std::pair{"JPEG, one", "JPEG"}})
    if (const Point* p = nearest(prefix))
      rows.push_back({std::string(label) + " " + std::to_string(p->bpp).substr(0, 4) + " bpp", gather_rows(p->decoded, idx)});
  write_row_blocks((dir / "compression.png").string(), "Compressed test images at about " + std::to_string(ours.bpp).substr(0, 4) + " bits per pixel",
                   test, rows, 10);
  std::printf("wrote %s: rate_distortion.csv, rate_distortion.png, compression.png\n", dir.string().c_str());
}

void decompress(const DecompressOptions& o) {
  Autoencoder ae = Autoencoder::load(o.checkpoint, resolve_device(o.device));
  const CompressedCodes c = read_compressed(o.in);
  if (c.model != parameter_fingerprint(ae.parameters()))
    throw Error(o.in + ": its codes were made by another model than " + o.checkpoint + " (the parameters' fingerprints differ)");
  const Tensor images = clamped(ae.decode(dequantize(c.quantizer, c.symbols)));
  const std::int64_t d = static_cast<std::int64_t>(c.height) * c.width * c.channels;
  if (images.dim(1) != d)
    throw Error(o.in + ": images of " + std::to_string(c.height) + "×" + std::to_string(c.width) + "×" + std::to_string(c.channels) +
                " do not match the model's " + std::to_string(images.dim(1)) + " values");
  save_npy(o.out, images);
  std::printf("cuae decompress: %s: %lld images of %d×%d×%d into %s\n", o.in.c_str(), static_cast<long long>(c.images), c.height,
              c.width, c.channels, o.out.c_str());
  if (!o.png.empty()) {
    Dataset like;
    like.rows = c.height;
    like.cols = c.width;
    like.channels = c.channels;
    write_row_blocks(o.png, "Decompressed from " + fs::path(o.in).filename().string(), like,
                     {{"decompressed", images.rows(0, std::min<std::int64_t>(40, images.dim(0)))}}, 10);
    std::printf("wrote %s\n", o.png.c_str());
  }
}

}  // namespace

void add_compress_commands(CLI::App& app) {
  auto co = std::make_shared<CompressOptions>();
  CLI::App* c = app.add_subcommand("compress", "store the test images as quantised codes (.cuaez), beside PCA and JPEG");
  c->footer(
      "Quantises each code dimension to --bits bits over its range on the training images, packs and deflates the "
      "symbols into a .cuaez file, and reports bits per pixel (header included) and the decompressed images' PSNR and "
      "SSIM. --rate-distortion adds the table over several bit depths beside PCA with the same quantiser and JPEG "
      "(all images in one mosaic file, and each image its own file), rate_distortion.csv/.png and compression.png at "
      "the file's rate.");
  c->add_option("--checkpoint", co->checkpoint, "the checkpoint (.safetensors)")->required()->check(CLI::ExistingFile);
  add_device_option(c, co->device);
  c->add_option("--bits", co->bits, "bits per code value")->check(CLI::Range(1, 16));
  c->add_flag("!--no-zlib", co->zlib, "store the packed symbols without deflating them");
  c->add_flag("--rate-distortion", co->rate_distortion, "also measure several rates beside PCA and JPEG");
  c->add_option("--out", co->out, "the .cuaez file (default: test.cuaez beside the checkpoint)");
  c->callback([co] { compress(*co); });

  auto de = std::make_shared<DecompressOptions>();
  CLI::App* d = app.add_subcommand("decompress", "decode a .cuaez file with the model that wrote it into a .npy");
  d->add_option("--checkpoint", de->checkpoint, "the checkpoint that compressed the file")->required()->check(CLI::ExistingFile);
  d->add_option("--in", de->in, "the .cuaez file")->required()->check(CLI::ExistingFile);
  d->add_option("--out", de->out, "the float32 .npy [N, H·W·C] to write")->required();
  d->add_option("--png", de->png, "also draw the first 40 images into this PNG");
  add_device_option(d, de->device);
  d->callback([de] { decompress(*de); });
}

}  // namespace cuae::cli
