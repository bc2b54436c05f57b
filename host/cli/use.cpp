// cuae denoise and cuae encode: a trained model applied to a dataset.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <tuple>

#include "host/cli/common.hpp"

namespace fs = std::filesystem;

namespace cuae::cli {

namespace {

struct DenoiseOptions {
  std::string checkpoint, device = "auto", noise, out;
  float level = 0.0f;
  std::uint64_t seed = 12345;
};

void denoise(CLI::App* cmd, const DenoiseOptions& o) {
  Autoencoder ae = Autoencoder::load(o.checkpoint, resolve_device(o.device));
  const Config& cfg = ae.config();
  NoiseType type = cfg.noise.enabled ? cfg.noise.type : NoiseType::Mask;
  float level = cfg.noise.enabled ? cfg.noise.level : 0.3f;
  if (cmd->count("--noise")) type = parse_noise_type(o.noise);
  if (cmd->count("--level")) {
    level = o.level;
    if (type != NoiseType::Gaussian && level > 1.0f)
      throw Error("cuae denoise: --level " + std::to_string(level) + " is not a fraction in [0, 1] (only gaussian noise takes a σ above 1)");
  }
  const std::string out = o.out.empty() ? (fs::path(o.checkpoint).parent_path() / "denoised.png").string() : o.out;
  const Data data = load_data(cfg, false);
  const Dataset& test = data.test;
  const Tensor noisy = corrupt_images(test.images, type, level, o.seed);
  const Tensor recon = ae.reconstruct(noisy);
  const ReconMetrics mn = reconstruction_metrics(test.images, noisy);
  const ReconMetrics mr = reconstruction_metrics(test.images, recon);
  std::printf("%s: %s noise, level %g, on %s (%lld images); error against the clean images:\n", o.checkpoint.c_str(),
              noise_type_name(type), static_cast<double>(level), test.name.c_str(), static_cast<long long>(mr.images));
  for (const auto& [who, images, m] : {std::tuple{"noisy input", &noisy, &mn}, std::tuple{"reconstruction", &recon, &mr}})
    std::printf("  %-16s MSE/pixel %.5f   squared error/image %8.3f   PSNR %6.2f dB   SSIM %.4f\n", who, m->mse_per_pixel,
                m->se_per_image, mean_of(psnr(test.images, *images)),
                mean_of(ssim(test.images, *images, test.rows, test.cols, test.channels)));
  // Groups of three labelled rows: noisy inputs, their reconstructions, the clean originals.
  const std::vector<std::int64_t> idx = spread_indices(test, 40);
  write_row_blocks(out,
                   std::string("Denoising: ") + noise_type_name(type) + " noise at level " + std::to_string(level).substr(0, 5),
                   test, {{"noisy", gather_rows(noisy, idx)}, {"reconstructed", gather_rows(recon, idx)}, {"clean", gather_rows(test.images, idx)}},
                   10);
  std::printf("wrote %s (rows: noisy, reconstructed, clean)\n", out.c_str());
}

struct EncodeOptions {
  std::string checkpoint, device = "auto", out, split = "test", labels;
};

void encode(const EncodeOptions& o) {
  Autoencoder ae = Autoencoder::load(o.checkpoint, resolve_device(o.device));
  const Data data = load_data(ae.config(), o.split == "train");
  const Dataset& d = o.split == "train" ? data.train : data.test;
  if (d.size() == 0) throw Error("cuae encode: the " + o.split + " split is streamed from " + ae.config().data.train_dir + " and cannot be encoded whole");
  const Tensor codes = ae.encode(d.images);
  if (!o.labels.empty() && !d.has_labels()) throw Error("cuae encode: " + d.name + " has no labels to write (--labels)");
  save_npy(o.out, codes);
  std::string also;
  if (!o.labels.empty()) {
    // Class indices as int32, and for an image folder the class names (line k: class k).
    Tensor labels({d.size()}, DType::I32);
    auto* l = static_cast<std::int32_t*>(labels.data());
    for (std::int64_t i = 0; i < d.size(); ++i) l[i] = static_cast<std::int32_t>(d.labels.f32()[i]);
    save_npy(o.labels, labels);
    also = ", labels " + o.labels;
    const Config& cfg = ae.config();
    if (cfg.data.dataset == DatasetKind::Images) {
      const std::string names = (fs::path(o.labels).replace_extension(".classes.txt")).string();
      std::ofstream out(names);
      for (const auto& c : image_folder_classes(o.split == "train" ? cfg.data.train_dir : cfg.data.test_dir)) out << c << "\n";
      if (!out) throw Error(names + ": cannot write");
      also += " and class names " + names;
    }
  }
  std::printf("wrote %s: %s codes of %s%s\n", o.out.c_str(), shape_str(codes.shape()).c_str(), d.name.c_str(), also.c_str());
}

}  // namespace

void add_use_commands(CLI::App& app) {
  auto dn = std::make_shared<DenoiseOptions>();
  CLI::App* d = app.add_subcommand("denoise", "corrupt the test images and reconstruct them");
  d->footer(
      "Corrupts the test images (by default as in training), reconstructs them, reports the error against the clean "
      "images (MSE, PSNR and SSIM, each the mean over images) and writes a PNG grid: noisy, reconstructed, clean.");
  d->add_option("--checkpoint", dn->checkpoint, "the checkpoint (.safetensors)")->required()->check(CLI::ExistingFile);
  add_device_option(d, dn->device);
  d->add_option("--noise", dn->noise, "the corruption (default: the model's [noise], else mask)")
      ->check(CLI::IsMember({"mask", "gaussian", "salt_pepper"}));
  d->add_option("--level", dn->level, "the fraction of pixels corrupted, or gaussian noise's σ")
      ->check(finite_in(0.0, 1.0e6));
  d->add_option("--seed", dn->seed, "the corruption's seed");
  d->add_option("--out", dn->out, "the PNG to write (default: denoised.png beside the checkpoint)");
  d->callback([d, dn] { denoise(d, *dn); });

  auto en = std::make_shared<EncodeOptions>();
  CLI::App* e = app.add_subcommand("encode", "write a dataset's codes as a float32 .npy [N, code]");
  e->add_option("--checkpoint", en->checkpoint, "the checkpoint (.safetensors)")->required()->check(CLI::ExistingFile);
  e->add_option("--out", en->out, "the .npy file to write")->required();
  e->add_option("--split", en->split, "which split to encode")->check(CLI::IsMember({"test", "train"}));
  e->add_option("--labels", en->labels, "also write the split's labels to this .npy file");
  add_device_option(e, en->device);
  e->callback([en] { encode(*en); });
}

}  // namespace cuae::cli
