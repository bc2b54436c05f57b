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
  write_row_blocks(out, count(n, "sample", "samples") + " of the VAE: z ~ N(0, I), seed " + std::to_string(seed), data.test,
                   {{"samples", s}}, static_cast<int>(std::min<std::int64_t>(10, n)));
  // How varied the samples are, and how far from the training images: the mean over pixels of the
  // variance across samples, and each sample's mean squared distance per pixel to its nearest
  // training image (beside the same for as many test images, which the model never saw).
  std::printf("wrote %s: %lld samples; pixel variance across samples %.5f", out.c_str(), static_cast<long long>(n),
              pixel_variance(s));
  if (data.train.size() > 0) {
    const Dataset shown = subset(data.test, 0, std::min<std::int64_t>(n, data.test.size()));
    std::printf("; nearest training image, mean squared distance per pixel: samples %.5f, test images %.5f\n",
                mean(nearest_distances(s, data.train.images)), mean(nearest_distances(shown.images, data.train.images)));
    std::printf("  (reading: test images are new images of the data's kind; samples at about their distance are as\n"
                "  novel, samples much closer are copies of training images, much farther ones are blurred or off the\n"
                "  data's kind; a variance near 0 means the samples all look alike)");
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
  write_labelled_grid(out,
                      "From test image " + std::to_string(from) + " to test image " + std::to_string(to) +
                          ": the decoded codes on the line between theirs",
                      {{"image, codes, image", strip}}, test.rows, test.cols, test.channels, 56);
  std::printf("wrote %s: test image %lld, %lld decoded codes on the line to test image %lld, test image %lld\n", out.c_str(),
              static_cast<long long>(from), static_cast<long long>(steps), static_cast<long long>(to), static_cast<long long>(to));
}

void scatter(const ModelOptions& o) {
  Autoencoder ae = Autoencoder::load(o.checkpoint, resolve_device(o.device));
  const Config& cfg = ae.config();
  const Data data = load_data(cfg, false);
  const Tensor codes = ae.encode(data.test.images);
  const std::int64_t k = codes.dim(1), n = codes.dim(0);
  // A 2-D code is plotted as it is; a wider one through its first two principal components.
  Tensor points = codes;
  std::string x_label = "z1", y_label = "z2", what = "the 2-D codes";
  if (k > 2) {
    const Pca p = fit_pca(codes, 2);
    points = Tensor({n, 2});
    for (std::int64_t i = 0; i < n; ++i)
      for (int c = 0; c < 2; ++c) {
        double v = 0.0;
        for (std::int64_t j = 0; j < k; ++j)
          v += (codes.f32()[i * k + j] - p.mean.f32()[j]) * static_cast<double>(p.components.f32()[c * k + j]);
        points.f32()[i * 2 + c] = static_cast<float>(v);
      }
    double total = 0.0;  // the codes' total variance, for the share the two components hold
    for (std::int64_t j = 0; j < k; ++j) {
      double m = 0.0, m2 = 0.0;
      for (std::int64_t i = 0; i < n; ++i) m += codes.f32()[i * k + j], m2 += codes.f32()[i * k + j] * static_cast<double>(codes.f32()[i * k + j]);
      total += m2 / static_cast<double>(n) - (m / static_cast<double>(n)) * (m / static_cast<double>(n));
    }
    const double share = total > 0 ? 100.0 * (p.variances.f32()[0] + p.variances.f32()[1]) / total : 0.0;
    char buf[160];
    std::snprintf(buf, sizeof buf, "the %lld-D codes' first two principal components (%.0f%% of their variance)",
                  static_cast<long long>(k), share);
    what = buf;
    x_label = "principal component 1", y_label = "principal component 2";
  }
  const std::string out = out_path(o, "latent.png");
  write_scatter_plot(out, "Test images in code space: " + what, x_label, y_label, points, data.test.labels, class_names(cfg));
  std::printf("wrote %s: %lld test images, %s, %s\n", out.c_str(), static_cast<long long>(n), what.c_str(),
              data.test.has_labels() ? "coloured by class" : "unlabelled");
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
