// cuae inpaint: masks the test images, fills the missing pixels by projection with the model, and
// reports the error on those pixels beside two baselines run the same way: the mean training image
// and PCA (as many components as the code, fitted on the images the model trained on).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "host/cli/common.hpp"

namespace fs = std::filesystem;

namespace cuae::cli {

namespace {

struct InpaintCliOptions {
  std::string checkpoint, device = "auto", mask = "rect", mask_file, out, fill = "mean";
  std::vector<int> rect;
  float fraction = 0.25f;
  int iterations = 10;
  std::uint64_t seed = 1;
};

void inpaint_command(CLI::App* cmd, const InpaintCliOptions& o) {
  Autoencoder ae = Autoencoder::load(o.checkpoint, resolve_device(o.device));
  const Config& cfg = ae.config();
  if (cfg.data.stream) throw Error("cuae inpaint: the training images were streamed; the baselines need them in memory");
  const Data data = load_data(cfg);
  const Dataset& test = data.test;
  MaskOptions mo;
  mo.kind = o.mask == "pixels" ? MaskKind::Pixels : !o.mask_file.empty() || o.mask == "file" ? MaskKind::File : MaskKind::Rectangle;
  if (mo.kind == MaskKind::File && o.mask_file.empty()) throw Error("cuae inpaint: --mask file needs --mask-file PNG");
  if (cmd->count("--rect") && mo.kind != MaskKind::Rectangle) throw Error("cuae inpaint: --rect is for --mask rect");
  mo.fraction = o.fraction;
  mo.rect = o.rect;
  mo.file = o.mask_file;
  mo.seed = o.seed;
  const Tensor masks = make_masks(test.size(), test.rows, test.cols, test.channels, mo);
  const Tensor train = data.train.images.rows(0, training_split(cfg.train, data.train.size()).train);
  const std::int64_t d = train.dim(1);
  Tensor mean({d});
  for (std::int64_t j = 0; j < d; ++j) {
    double s = 0.0;
    for (std::int64_t i = 0; i < train.dim(0); ++i) s += train.f32()[i * d + j];
    mean.f32()[j] = static_cast<float>(s / static_cast<double>(train.dim(0)));
  }
  // The model's starting fill: the mean image, or zeros (what a model trained with mask noise saw
  // in place of missing pixels). The mean-image baseline is the mean image either way.
  Tensor start = mean;
  if (o.fill == "zero") {
    start = Tensor({d});
    std::fill(start.f32(), start.f32() + d, 0.0f);
  }
  const auto model = [&](const Tensor& x) { return ae.reconstruct(x); };
  const std::string what = mo.kind == MaskKind::Pixels ? std::to_string(o.fraction).substr(0, 4) + " of the pixels dropped"
                           : mo.kind == MaskKind::File ? "the mask " + o.mask_file
                           : o.rect.empty()            ? "a random rectangle of about " + std::to_string(o.fraction).substr(0, 4) + " of the area"
                                                       : "the rectangle " + std::to_string(o.rect[0]) + "," + std::to_string(o.rect[1]) + " " +
                                                  std::to_string(o.rect[2]) + "×" + std::to_string(o.rect[3]);
  std::printf("cuae inpaint: %s on %s (%lld images), %s; error on the missing pixels:\n", o.checkpoint.c_str(),
              test.name.c_str(), static_cast<long long>(test.size()), what.c_str());
  std::printf("  %-38s %10s %9s\n", "", "MSE", "PSNR");
  const auto report = [&](const std::string& who, const Tensor& filled) {
    const InpaintError e = missing_pixel_error(test.images, filled, masks);
    std::printf("  %-38s %10.5f %7.2f dB\n", who.c_str(), e.mse, e.psnr);
    std::fflush(stdout);
  };
  report("mean training image", inpaint([](const Tensor& x) { return x; }, test.images, masks, mean, 1));
  const Tensor once = inpaint(model, test.images, masks, start, 1);
  report("autoencoder, one pass", once);
  const Tensor filled = o.iterations == 1 ? once : inpaint(model, test.images, masks, start, o.iterations);
  if (o.iterations > 1) report("autoencoder, " + count(o.iterations, "iteration", "iterations"), filled);
  const int k = static_cast<int>(cfg.model.layers.back());
  Tensor pca_filled;
  if (k < d) {
    const Pca p = fit_pca(train, k);
    pca_filled = inpaint([&](const Tensor& x) { return pca_reconstruct(p, x); }, test.images, masks, start, o.iterations);
    report("PCA-" + std::to_string(k) + ", " + count(o.iterations, "iteration", "iterations"), pca_filled);
  }
  const std::string out = o.out.empty() ? (fs::path(o.checkpoint).parent_path() / "inpainted.png").string() : o.out;
  const std::vector<std::int64_t> idx = spread_indices(test, 30);
  Tensor masked = gather_rows(test.images, idx), m = gather_rows(masks, idx);
  for (std::int64_t i = 0; i < masked.numel(); ++i)
    if (m.f32()[i] == 0.0f) masked.f32()[i] = (i / test.channels) % 2 ? 0.35f : 0.65f;  // a grey hatch where missing
  std::vector<std::pair<std::string, Tensor>> blocks = {{"masked", masked}, {"autoencoder", gather_rows(filled, idx)}};
  if (pca_filled.rank() == 2) blocks.push_back({"PCA", gather_rows(pca_filled, idx)});
  blocks.push_back({"original", gather_rows(test.images, idx)});
  write_row_blocks(out, "Inpainting: " + what, test, blocks, 10);
  std::printf("wrote %s (rows: masked, autoencoder%s, original)\n", out.c_str(), pca_filled.rank() == 2 ? ", PCA" : "");
}

}  // namespace

void add_inpaint_command(CLI::App& app) {
  auto o = std::make_shared<InpaintCliOptions>();
  CLI::App* c = app.add_subcommand("inpaint", "fill masked pixels of the test images, beside the mean image and PCA");
  c->footer(
      "Masks each test image, fills the missing pixels by projection (start from the mean training image or --fill zero, reconstruct, "
      "put the known pixels back, repeat) and reports MSE and PSNR on the missing pixels, beside the mean training "
      "image and PCA with as many components as the code, iterated alike. Writes a PNG grid.");
  c->add_option("--checkpoint", o->checkpoint, "the checkpoint (.safetensors)")->required()->check(CLI::ExistingFile);
  add_device_option(c, o->device);
  c->add_option("--mask", o->mask, "rect (a rectangle per image) | pixels (random dropout) | file (--mask-file)")
      ->check(CLI::IsMember({"rect", "pixels", "file"}));
  c->add_option("--fraction", o->fraction, "rect: the area of a random rectangle; pixels: the share dropped")
      ->check(finite_in(0.001, 0.999));
  c->add_option("--rect", o->rect, "rect: TOP,LEFT,HEIGHT,WIDTH of the same rectangle on every image")->delimiter(',')->expected(4);
  c->add_option("--mask-file", o->mask_file, "a PNG or JPEG the images' size: dark pixels are missing")->check(CLI::ExistingFile);
  c->add_option("--fill", o->fill, "the missing pixels' starting value for the model and PCA: the mean training image, or 0 "
                                   "(as mask noise in training)")
      ->check(CLI::IsMember({"mean", "zero"}));
  c->add_option("--iterations", o->iterations, "projection iterations (1: a single pass)")->check(CLI::Range(1, 1000));
  c->add_option("--seed", o->seed, "the masks' seed");
  c->add_option("--out", o->out, "the PNG to write (default: inpainted.png beside the checkpoint)");
  c->callback([c, o] { inpaint_command(c, *o); });
}

}  // namespace cuae::cli
