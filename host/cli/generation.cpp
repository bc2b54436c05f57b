// cuae sample, cuae interpolate and cuae scatter: pictures of what a model's code space holds.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <numeric>
#include <string>

#include "host/cli/common.hpp"

namespace fs = std::filesystem;

namespace cuae::cli {

namespace {

struct ModelOptions {
  std::string checkpoint, device = "auto", out;
};

void add_model_options(CLI::App* cmd, ModelOptions& o, const char* out_help) {
  cmd->add_option("--checkpoint", o.checkpoint, "the checkpoint (.safetensors)")->required()->check(CLI::ExistingFile);
  add_device_option(cmd, o.device);
  cmd->add_option("--out", o.out, out_help);
}

// The output path: --out, or NAME beside the checkpoint.
std::string out_path(const ModelOptions& o, const char* name) {
  return o.out.empty() ? (fs::path(o.checkpoint).parent_path() / name).string() : o.out;
}

double mean(const std::vector<double>& v) {
  return v.empty() ? 0.0 : std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

void sample(const ModelOptions& o, std::int64_t n, std::uint64_t seed) {
  Autoencoder ae = Autoencoder::load(o.checkpoint, resolve_device(o.device));
  const Data data = load_data(ae.config());
  const Tensor s = ae.sample(n, seed);
  const std::string out = out_path(o, "samples.png");
  write_images(out, s, data.test, static_cast<int>(std::min<std::int64_t>(8, n)));
  // How varied the samples are, and how far from the training images: the mean over pixels of the
  // variance across samples, and each sample's mean squared distance per pixel to its nearest
  // training image (beside the same for as many test images, which the model never saw).
  std::printf("wrote %s: %lld samples; pixel variance across samples %.5f", out.c_str(), static_cast<long long>(n),
              pixel_variance(s));
  if (data.train.size() > 0) {
    const Dataset shown = subset(data.test, 0, std::min<std::int64_t>(n, data.test.size()));
    std::printf("; nearest training image, mean squared distance per pixel: samples %.5f, test images %.5f",
                mean(nearest_distances(s, data.train.images)), mean(nearest_distances(shown.images, data.train.images)));
  }
  std::printf("\n");
}

void interpolate(const ModelOptions& o, std::int64_t from, std::int64_t to, std::int64_t steps) {
  Autoencoder ae = Autoencoder::load(o.checkpoint, resolve_device(o.device));
  const Data data = load_data(ae.config(), false);
  const Dataset& test = data.test;
  if (from >= test.size() || to >= test.size())
    throw Error("cuae interpolate: --from/--to must be test image indices below " + std::to_string(test.size()));
  const std::int64_t d = test.features();
  Tensor pair({2, d});
  std::copy(test.images.f32() + from * d, test.images.f32() + (from + 1) * d, pair.f32());
  std::copy(test.images.f32() + to * d, test.images.f32() + (to + 1) * d, pair.f32() + d);
  const Tensor c = ae.encode(pair);
  const std::int64_t k = c.dim(1);
  Tensor line({steps, k});
  for (std::int64_t s = 0; s < steps; ++s) {
    const float t = static_cast<float>(s) / static_cast<float>(steps - 1);
    for (std::int64_t j = 0; j < k; ++j) line.f32()[s * k + j] = (1.0f - t) * c.f32()[j] + t * c.f32()[k + j];
  }
  const Tensor imgs = ae.decode(line);
  // The strip: the first test image, the decoded line, the last test image.
  Tensor strip({steps + 2, d});
  std::copy(pair.f32(), pair.f32() + d, strip.f32());
  std::copy(imgs.f32(), imgs.f32() + steps * d, strip.f32() + d);
  std::copy(pair.f32() + d, pair.f32() + 2 * d, strip.f32() + (steps + 1) * d);
  const std::string out = out_path(o, "interpolation.png");
  write_image_grid(out, strip, 1, static_cast<int>(steps + 2), test.rows, test.cols, test.channels);
  std::printf("wrote %s: test image %lld, %lld decoded codes on the line to test image %lld, test image %lld\n", out.c_str(),
              static_cast<long long>(from), static_cast<long long>(steps), static_cast<long long>(to), static_cast<long long>(to));
}

void scatter(const ModelOptions& o) {
  Autoencoder ae = Autoencoder::load(o.checkpoint, resolve_device(o.device));
  if (ae.config().model.layers.back() != 2)
    throw Error("cuae scatter: the code has " + std::to_string(ae.config().model.layers.back()) +
                " dimensions; a scatter plot needs 2");
  const Data data = load_data(ae.config(), false);
  const ScatterImage img = render_scatter(ae.encode(data.test.images), data.test.labels);
  const std::string out = out_path(o, "latent.png");
  write_png(out, img.rgb, img.size, img.size, 3);
  std::printf("wrote %s: %lld test codes, x in [%.3f, %.3f], y in [%.3f, %.3f], %s\n", out.c_str(),
              static_cast<long long>(data.test.size()), img.lo[0], img.hi[0], img.lo[1], img.hi[1],
              data.test.has_labels() ? "coloured by label" : "unlabelled");
}

}  // namespace

void add_generation_commands(CLI::App& app) {
  auto so = std::make_shared<ModelOptions>();
  auto n = std::make_shared<std::int64_t>(64);
  auto seed = std::make_shared<std::uint64_t>(1);
  CLI::App* s = app.add_subcommand("sample", "decode a VAE's samples into a PNG grid");
  s->footer(
      "z ~ N(0, I) decoded; reports the pixel variance across the samples and their mean squared distance per pixel to "
      "the nearest training image, beside the same for test images (samples much closer than test images are copies).");
  add_model_options(s, *so, "the PNG to write (default: samples.png beside the checkpoint)");
  s->add_option("--n", *n, "how many samples")->check(CLI::Range(std::int64_t{1}, std::int64_t{4096}));
  s->add_option("--seed", *seed, "the sampling seed");
  s->callback([so, n, seed] { sample(*so, *n, *seed); });

  auto io = std::make_shared<ModelOptions>();
  auto from = std::make_shared<std::int64_t>(0), to = std::make_shared<std::int64_t>(1);
  auto steps = std::make_shared<std::int64_t>(10);
  CLI::App* i = app.add_subcommand("interpolate", "decode the line between two test images' codes into a PNG strip");
  add_model_options(i, *io, "the PNG to write (default: interpolation.png beside the checkpoint)");
  i->add_option("--from", *from, "the first test image's index")->check(CLI::NonNegativeNumber);
  i->add_option("--to", *to, "the last test image's index")->check(CLI::NonNegativeNumber);
  i->add_option("--steps", *steps, "decoded codes on the line")->check(CLI::Range(std::int64_t{2}, std::int64_t{64}));
  i->callback([io, from, to, steps] { interpolate(*io, *from, *to, *steps); });

  auto co = std::make_shared<ModelOptions>();
  CLI::App* c = app.add_subcommand("scatter", "plot a 2-D code space: the test images' codes, coloured by label");
  add_model_options(c, *co, "the PNG to write (default: latent.png beside the checkpoint)");
  c->callback([co] { scatter(*co); });
}

}  // namespace cuae::cli
