// The `cuae` program. It speaks only the public API (include/cuae); errors print one line and
// exit non-zero.
#include <cuae/cuae.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

const char* kUsage = R"(usage: cuae <command> [options]

commands:
  train    --config FILE [--device auto|cpu|cuda] [--epochs N] [--max-train N] [--out DIR] [--init FILE]
           train an autoencoder; writes DIR/checkpoint.safetensors, DIR/reconstructions.png,
           DIR/metrics.csv and reports test reconstruction error beside the PCA baseline
           with [train] validation and patience: early stopping, DIR/best.safetensors;
           --init starts from the parameters of a checkpoint or a pretrained stack
  eval     --checkpoint FILE [--device D] [--pca] [--jacobian LAYER] [--samples K]
           test-set reconstruction error of a checkpoint (and the PCA baseline with --pca), the
           mean squared Frobenius norm of an encoder layer's Jacobian (the contractive layer, or
           encoder.0), the sparse layer's mean activation, and a VAE's test ELBO and
           importance-weighted bound on log p(x) with K samples (default [vae] samples)
  denoise  --checkpoint FILE [--noise mask|gaussian|salt_pepper] [--level L] [--seed S]
           [--out PNG] [--device D]
           corrupts the test images (by default as in training), reconstructs them, reports the
           error against the clean images and writes a PNG grid: noisy, reconstructed, clean
  encode   --checkpoint FILE --out CODES.npy [--split test|train] [--labels LABELS.npy] [--device D]
           latent codes of a dataset as a float32 .npy [N, code]
  pretrain --config FILE [--device D] [--epochs N] [--max-train N] [--out DIR]
           greedy layer-wise pretraining of a deep model ([pretrain]: RBMs by contrastive
           divergence or denoising autoencoders), one layer after another; writes
           DIR/pretrained.safetensors, the unrolled autoencoder's parameters, for train --init
  summary  --config FILE [--graph]
           layers, shapes, parameter counts and the planned memory of a training step (peak
           arena, parameters, optimizer state); --graph also lists every graph node
  sample   --checkpoint FILE [--n N] [--seed S] [--out PNG] [--device D]
           a VAE's samples: z ~ N(0, I) decoded into a PNG grid; reports the pixel variance across
           the samples and their distance to the nearest training image
  interpolate --checkpoint FILE [--from I] [--to J] [--steps N] [--out PNG] [--device D]
           decodes the line between the codes of test images I and J into a PNG strip
  scatter  --checkpoint FILE [--out PNG] [--device D]
           a 2-dimensional latent space: the test images' codes as a PNG scatter coloured by label
  version  print the version and the devices found
)";

struct Args {
  std::string command;
  std::map<std::string, std::string> opts;
  bool has(const std::string& k) const { return opts.count(k) > 0; }
  std::string get(const std::string& k, const std::string& def = "") const {
    auto it = opts.find(k);
    return it == opts.end() ? def : it->second;
  }
  std::string need(const std::string& k) const {
    if (!has(k)) throw cuae::Error("cuae " + command + ": missing --" + k);
    return get(k);
  }
  long long integer(const std::string& k) const {
    const std::string v = get(k);
    char* end = nullptr;
    const long long x = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end || x < 0) throw cuae::Error("cuae " + command + ": --" + k + " expects a non-negative integer, got \"" + v + "\"");
    return x;
  }
};

Args parse_args(int argc, char** argv, const std::vector<std::string>& flags) {
  Args a;
  if (argc < 2) return a;
  a.command = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string s = argv[i];
    if (s.rfind("--", 0) != 0) throw cuae::Error("cuae " + a.command + ": unexpected argument \"" + s + "\"");
    s = s.substr(2);
    if (std::find(flags.begin(), flags.end(), s) != flags.end()) {
      a.opts[s] = "1";
      continue;
    }
    if (i + 1 >= argc) throw cuae::Error("cuae " + a.command + ": --" + s + " needs a value");
    a.opts[s] = argv[++i];
  }
  return a;
}

std::string fmt_time(double sec) {
  char buf[32];
  const int s = static_cast<int>(sec + 0.5);
  std::snprintf(buf, sizeof buf, "%d:%02d", s / 60, s % 60);
  return buf;
}

cuae::ImageSpec image_spec(const cuae::Config& c) {
  cuae::ImageSpec s;
  s.channels = static_cast<int>(c.data.image_size.at(0));
  s.height = static_cast<int>(c.data.image_size.at(1));
  s.width = static_cast<int>(c.data.image_size.at(2));
  s.fit = c.data.fit == "resize" ? cuae::ImageSpec::Fit::Resize : cuae::ImageSpec::Fit::Crop;
  return s;
}

cuae::BadImagePolicy bad_image_policy(const cuae::Config& c) {
  return c.data.on_error == "skip" ? cuae::BadImagePolicy::Skip : cuae::BadImagePolicy::Stop;
}

// The test set, and the training set unless it is streamed (train.size() == 0 then).
std::pair<cuae::Dataset, cuae::Dataset> load_data(const cuae::Config& c, bool with_train = true) {
  std::pair<cuae::Dataset, cuae::Dataset> d;
  const bool train = with_train && !c.data.stream;
  if (c.data.dataset == "idx") {
    if (train) d.first = cuae::load_idx_dataset(c.data.train_images, c.data.train_labels);
    d.second = cuae::load_idx_dataset(c.data.test_images, c.data.test_labels);
  } else if (c.data.dataset == "cifar10") {
    if (train) d.first = cuae::load_cifar10_dir(c.data.dir, true);
    d.second = cuae::load_cifar10_dir(c.data.dir, false);
  } else if (c.data.dataset == "images") {
    const cuae::ImageSpec spec = image_spec(c);
    if (train) d.first = cuae::load_image_folder(c.data.train_dir, spec, bad_image_policy(c), c.data.threads);
    d.second = cuae::load_image_folder(c.data.test_dir, spec, bad_image_policy(c), c.data.threads);
  } else {
    if (train) d.first = cuae::load_fashion_mnist(c.data.dir, true);
    d.second = cuae::load_fashion_mnist(c.data.dir, false);
  }
  if (c.data.max_test > 0 && d.second.size() > c.data.max_test) d.second = cuae::subset(d.second, 0, c.data.max_test);
  return d;
}

void print_metrics(const char* who, const cuae::ReconMetrics& m) {
  std::printf("  %-26s MSE/pixel %.5f   squared error/image %8.3f   BCE/image %8.3f\n", who, m.mse_per_pixel,
              m.se_per_image, m.bce_per_image);
}

cuae::ReconMetrics pca_baseline(const cuae::Dataset& train, const cuae::Dataset& test, int k, cuae::Pca* out = nullptr) {
  cuae::Pca p = cuae::fit_pca(train.images, k);
  cuae::Tensor r = cuae::pca_reconstruct(p, test.images);
  if (out) *out = p;
  return cuae::reconstruction_metrics(test.images, r);
}

// Test images (top row of each pair) above their reconstructions.
void write_grid(const std::string& path, const cuae::Dataset& test, const cuae::Tensor& recon) {
  // Up to 4 pairs of rows of 16 (fewer for a small test set; large images get 8 per row).
  const std::int64_t d = test.features();
  const int per_row = static_cast<int>(std::min<std::int64_t>(d > 64 * 64 * 3 ? 8 : 16, test.size()));
  const int pairs = static_cast<int>(std::min<std::int64_t>(4, test.size() / std::max(per_row, 1)));
  if (per_row == 0 || pairs == 0) return;
  cuae::Tensor grid({per_row * pairs * 2, d});
  for (int p = 0; p < pairs; ++p)
    for (int j = 0; j < per_row; ++j) {
      const std::int64_t img = p * per_row + j;
      std::copy(test.images.f32() + img * d, test.images.f32() + (img + 1) * d, grid.f32() + ((2 * p) * per_row + j) * d);
      std::copy(recon.f32() + img * d, recon.f32() + (img + 1) * d, grid.f32() + ((2 * p + 1) * per_row + j) * d);
    }
  cuae::write_image_grid(path, grid, pairs * 2, per_row, test.rows, test.cols, test.channels);
}

int cmd_train(const Args& a) {
  cuae::Config cfg = cuae::load_config(a.need("config"));
  if (a.has("device")) cfg.train.device = a.get("device");
  if (a.has("epochs")) cfg.train.epochs = static_cast<int>(a.integer("epochs"));
  if (a.has("max-train")) cfg.train.max_train = a.integer("max-train");
  if (a.has("out")) cfg.output.dir = a.get("out");
  const cuae::Device dev = cuae::resolve_device(cfg.train.device);
  auto [train, test] = load_data(cfg);
  // Streamed training data: decoded on background threads into pinned batch buffers while the
  // device trains; the validation split (the last files) is decoded into memory once.
  std::unique_ptr<cuae::ImageStream> stream;
  cuae::Tensor stream_val;
  if (cfg.data.stream) {
    std::vector<std::string> files = cuae::list_images(cfg.data.train_dir);
    if (cfg.train.max_train > 0 && static_cast<std::int64_t>(files.size()) > cfg.train.max_train)
      files.resize(static_cast<std::size_t>(cfg.train.max_train));
    const cuae::ImageSpec spec = image_spec(cfg);
    const auto n_val = cfg.train.validation > 0.0
                           ? std::max<std::size_t>(1, static_cast<std::size_t>(static_cast<double>(files.size()) * cfg.train.validation))
                           : 0;
    if (n_val) {
      std::vector<std::string> val(files.end() - static_cast<std::ptrdiff_t>(n_val), files.end());
      files.resize(files.size() - n_val);
      stream_val = cuae::Tensor({static_cast<std::int64_t>(val.size()), spec.features()});
      for (std::size_t i = 0; i < val.size(); ++i) {
        const std::vector<float> px = cuae::decode_image(val[i], spec);
        std::copy(px.begin(), px.end(), stream_val.f32() + static_cast<std::int64_t>(i) * spec.features());
      }
    }
    cuae::ImageStreamOptions so;
    so.threads = cfg.data.threads;
    so.prefetch = cfg.data.prefetch;
    so.seed = cfg.train.seed;
    so.drop_last = true;
    cuae::BatchAllocator alloc{[dev](std::size_t b) { return cuae::alloc_host_buffer(b, dev); },
                               [dev](void* p) { cuae::free_host_buffer(p, dev); }};
    stream = std::make_unique<cuae::ImageStream>(std::move(files), spec, cfg.train.batch_size, bad_image_policy(cfg), so, alloc);
    train.name = cfg.data.train_dir + " (streamed)";
  }
  cuae::Autoencoder ae(cfg, dev);
  if (a.has("init")) {
    const std::string init = a.get("init");
    cuae::SafetensorsFile f = cuae::load_safetensors(init);
    std::map<std::string, cuae::Tensor> params;
    for (auto& [k, v] : f.tensors)
      if (k.rfind("opt.", 0) != 0) params[k] = v;
    try {
      ae.load_parameters(params);
    } catch (const cuae::Error& e) {
      throw cuae::Error(init + ": " + e.what());
    }
    std::printf("cuae: starting from the parameters in %s\n", init.c_str());
  }
  std::string layers;
  for (auto l : cfg.model.layers) layers += (layers.empty() ? "" : "-") + std::to_string(l);
  std::printf("cuae: training %s autoencoder %s (%lld parameters) on %s (%lld images) on %s, %d epochs, batch %d, %s lr %g\n",
              cfg.model.type.c_str(), layers.c_str(), static_cast<long long>(ae.parameter_count()), train.name.c_str(),
              static_cast<long long>(stream ? stream->size()
                                     : cfg.train.max_train > 0 ? std::min<std::int64_t>(cfg.train.max_train, train.size())
                                                               : train.size()),
              dev == cuae::Device::CPU ? ("cpu (" + cuae::cpu_backend_description() + ")").c_str() : cuae::device_name(dev),
              cfg.train.epochs, cfg.train.batch_size, cuae::optimizer_name(cfg.optimizer.type),
              static_cast<double>(cfg.optimizer.lr));
  fs::create_directories(cfg.output.dir);
  const std::string csv_path = (fs::path(cfg.output.dir) / "metrics.csv").string();
  std::ofstream csv(csv_path);
  if (!csv) throw cuae::Error(csv_path + ": cannot write");
  csv << "epoch,train_loss,val_loss,test_loss,images_per_sec,elapsed_sec\n";
  const std::string best_path = (fs::path(cfg.output.dir) / "best.safetensors").string();
  bool first = true;
  const auto on_progress = [&](const cuae::TrainProgress& p) {
    if (first) {
      const auto m = ae.memory();
      std::printf("  memory: arena %.1f MiB (one buffer per value: %.1f MiB), parameters %.1f MiB, optimizer state %.1f MiB\n",
                  m.arena_bytes / 1048576.0, m.naive_bytes / 1048576.0, m.param_bytes / 1048576.0, m.state_bytes / 1048576.0);
      first = false;
    }
    std::printf("  epoch %d/%d  step %5lld/%lld  loss %10.4f  %9.0f img/s  elapsed %s  left %s\n", p.epoch, p.epochs,
                static_cast<long long>(p.step), static_cast<long long>(p.steps_per_epoch), p.loss, p.images_per_sec,
                fmt_time(p.elapsed_sec).c_str(), fmt_time(p.eta_sec).c_str());
    if (p.epoch_end) {
      const double test_loss = ae.loss(test.images);
      if (p.val_loss >= 0.0) {
        std::printf("  epoch %d done: train loss %.4f, validation loss %.4f%s, test loss %.4f\n", p.epoch, p.epoch_loss,
                    p.val_loss, p.improved ? " (best)" : "", test_loss);
        // The best model so far, written atomically: a run stopped at any point keeps it.
        if (p.improved) ae.save(best_path);
        if (p.stopping)
          std::printf("  early stopping: no better validation loss for %d epochs; keeping epoch %d\n", cfg.train.patience,
                      p.best_epoch);
      } else {
        std::printf("  epoch %d done: train loss %.4f, test loss %.4f\n", p.epoch, p.epoch_loss, test_loss);
      }
      csv << p.epoch << "," << p.epoch_loss << ",";
      if (p.val_loss >= 0.0) csv << p.val_loss;
      csv << "," << test_loss << "," << p.images_per_sec << "," << p.elapsed_sec << "\n";
      csv.flush();
    }
    std::fflush(stdout);
  };
  if (stream) {
    ae.train(*stream, stream_val, on_progress);
    if (stream->skipped())
      std::printf("  skipped %lld unreadable images in the last epoch\n", static_cast<long long>(stream->skipped()));
  } else {
    ae.train(train, on_progress);
  }
  const std::string ckpt = (fs::path(cfg.output.dir) / "checkpoint.safetensors").string();
  ae.save(ckpt);
  const cuae::Tensor recon = ae.reconstruct(test.images);
  const cuae::ReconMetrics m = cuae::reconstruction_metrics(test.images, recon);
  const int k = static_cast<int>(cfg.model.layers.back());
  const std::string png = (fs::path(cfg.output.dir) / "reconstructions.png").string();
  write_grid(png, test, recon);
  std::printf("test reconstruction error (%lld images):\n", static_cast<long long>(m.images));
  print_metrics("autoencoder", m);
  // PCA with as many components as the code is the linear baseline of an undercomplete code; an
  // overcomplete code (sparse and denoising models) has none.
  if (k < test.features() && train.size() > 0 && test.features() <= 4096) {
    const cuae::ReconMetrics pca = pca_baseline(train, test, k);
    print_metrics(("PCA, " + std::to_string(k) + " components").c_str(), pca);
    std::printf("autoencoder MSE is %.1f%% %s PCA's\n", 100.0 * std::abs(1.0 - m.mse_per_pixel / pca.mse_per_pixel),
                m.mse_per_pixel < pca.mse_per_pixel ? "below" : "above");
  }
  std::printf("wrote %s, %s, %s\n", ckpt.c_str(), png.c_str(), csv_path.c_str());
  return 0;
}

// The activation of an encoder layer ("code" or "encoder.N").
cuae::Activation layer_activation(const cuae::ModelConfig& m, const std::string& layer) {
  const int i = cuae::encoder_layer_index(m, layer, "--jacobian");
  return i + 2 == static_cast<int>(m.layers.size()) ? m.code_activation : m.activation;
}

int cmd_eval(const Args& a) {
  const std::string path = a.need("checkpoint");
  const cuae::Device dev = cuae::resolve_device(a.get("device", "auto"));
  cuae::Autoencoder ae = cuae::Autoencoder::load(path, dev);
  const cuae::Config& cfg = ae.config();
  // The training set only for the PCA baseline.
  auto [train, test] = load_data(cfg, a.has("pca"));
  const cuae::ReconMetrics m = ae.evaluate(test.images);
  std::printf("%s: step %lld, epoch %d, test set %s (%lld images)\n", path.c_str(), static_cast<long long>(ae.step()),
              ae.epochs_done(), test.name.c_str(), static_cast<long long>(m.images));
  print_metrics("autoencoder", m);
  if (a.has("pca") && cfg.model.layers.back() < cfg.model.layers.front() && train.size() > 0) {
    const int k = static_cast<int>(cfg.model.layers.back());
    print_metrics(("PCA, " + std::to_string(k) + " components").c_str(), pca_baseline(train, test, k));
  }
  // The Jacobian norm of a dense layer: by default the contractive layer, else a dense model's
  // first layer (a conv model's only dense encoder layer is its code, named with --jacobian).
  const bool conv = cfg.model.type == "conv";
  const std::string jl = a.get("jacobian", cfg.contractive.weight > 0.0f ? cfg.contractive.layer : conv ? "" : "encoder.0");
  if (!jl.empty() && layer_activation(cfg.model, jl) != cuae::Activation::GELU)
    std::printf("  mean ||dh/dx||_F^2 of %s: %.4f\n", jl.c_str(), ae.jacobian_norm(test.images, jl));
  if (cfg.sparsity.type != cuae::SparsityConfig::Kind::None) {
    const cuae::Tensor h = ae.activations(test.images, cfg.sparsity.layer);
    double sum = 0.0;
    std::int64_t nonzero = 0;
    for (std::int64_t i = 0; i < h.numel(); ++i) {
      sum += h.f32()[i];
      nonzero += h.f32()[i] != 0.0f;
    }
    const double rows = static_cast<double>(std::max<std::int64_t>(h.dim(0), 1));
    std::printf("  %s sparsity on %s: mean activation %.4f", cuae::sparsity_name(cfg.sparsity.type), cfg.sparsity.layer.c_str(),
                sum / static_cast<double>(std::max<std::int64_t>(h.numel(), 1)));
    if (cfg.sparsity.type == cuae::SparsityConfig::Kind::KL) std::printf(" (target %.4f)", static_cast<double>(cfg.sparsity.target));
    std::printf(", nonzero units per image %.2f of %lld\n", static_cast<double>(nonzero) / rows, static_cast<long long>(h.dim(1)));
  }
  if (cfg.model.variational) {
    const int k = a.has("samples") ? static_cast<int>(a.integer("samples")) : cfg.vae.samples;
    const cuae::VaeBounds b = ae.vae_bounds(test.images, k);
    std::printf("  VAE, nats per image: ELBO %.3f (reconstruction %.3f, KL %.3f); importance-weighted bound on log p(x) "
                "with %d samples %.3f\n",
                b.elbo, -b.recon_nll, b.kl, k, b.iw_bound);
  }
  return 0;
}

// Up to 64 images in a grid of 8 per row.
void write_images(const std::string& path, const cuae::Tensor& imgs, const cuae::Dataset& like, int per_row) {
  const std::int64_t n = imgs.dim(0);
  const int rows = static_cast<int>((n + per_row - 1) / per_row);
  cuae::write_image_grid(path, imgs, rows, per_row, like.rows, like.cols, like.channels);
}

int cmd_sample(const Args& a) {
  const std::string path = a.need("checkpoint");
  cuae::Autoencoder ae = cuae::Autoencoder::load(path, cuae::resolve_device(a.get("device", "auto")));
  const cuae::Config& cfg = ae.config();
  const std::int64_t n = a.has("n") ? a.integer("n") : 64;
  if (n < 1 || n > 4096) throw cuae::Error("cuae sample: --n must be in [1, 4096]");
  const std::uint64_t seed = a.has("seed") ? static_cast<std::uint64_t>(a.integer("seed")) : 1u;
  auto [train, test] = load_data(cfg);
  const cuae::Tensor s = ae.sample(n, seed);
  const std::string out = a.get("out", (fs::path(path).parent_path() / "samples.png").string());
  write_images(out, s, test, static_cast<int>(std::min<std::int64_t>(8, n)));
  // How varied the samples are, and how far from the training images: the mean over pixels of the
  // variance across samples, and each sample's mean squared distance per pixel to its nearest
  // training image (beside the same for test images, which the model never saw).
  const std::int64_t d = s.dim(1);
  double var = 0.0;
  for (std::int64_t p = 0; p < d; ++p) {
    double m = 0.0, m2 = 0.0;
    for (std::int64_t i = 0; i < n; ++i) {
      const double v = s.f32()[i * d + p];
      m += v;
      m2 += v * v;
    }
    m /= static_cast<double>(n);
    var += m2 / static_cast<double>(n) - m * m;
  }
  var /= static_cast<double>(d);
  auto nearest = [&](const float* x) {
    double best = INFINITY;
    for (std::int64_t t = 0; t < train.size(); ++t) {
      const float* y = train.images.f32() + t * d;
      double e = 0.0;
      for (std::int64_t p = 0; p < d && e < best; ++p) e += (x[p] - y[p]) * static_cast<double>(x[p] - y[p]);
      best = std::min(best, e);
    }
    return best / static_cast<double>(d);
  };
  double nn_s = 0.0, nn_t = 0.0;
  const std::int64_t nt = std::min<std::int64_t>(n, test.size());
  for (std::int64_t i = 0; i < n; ++i) nn_s += nearest(s.f32() + i * d);
  for (std::int64_t i = 0; i < nt; ++i) nn_t += nearest(test.images.f32() + i * d);
  std::printf("wrote %s: %lld samples; pixel variance across samples %.5f; nearest training image, mean squared "
              "distance per pixel: samples %.5f, test images %.5f\n",
              out.c_str(), static_cast<long long>(n), var, nn_s / static_cast<double>(n), nn_t / static_cast<double>(std::max<std::int64_t>(nt, 1)));
  return 0;
}

int cmd_interpolate(const Args& a) {
  const std::string path = a.need("checkpoint");
  cuae::Autoencoder ae = cuae::Autoencoder::load(path, cuae::resolve_device(a.get("device", "auto")));
  auto [train, test] = load_data(ae.config(), false);
  const std::int64_t from = a.has("from") ? a.integer("from") : 0, to = a.has("to") ? a.integer("to") : 1;
  const std::int64_t steps = a.has("steps") ? a.integer("steps") : 10;
  if (from >= test.size() || to >= test.size())
    throw cuae::Error("cuae interpolate: --from/--to must be test image indices below " + std::to_string(test.size()));
  if (steps < 2 || steps > 64) throw cuae::Error("cuae interpolate: --steps must be in [2, 64]");
  const std::int64_t d = test.features();
  cuae::Tensor pair({2, d});
  std::copy(test.images.f32() + from * d, test.images.f32() + (from + 1) * d, pair.f32());
  std::copy(test.images.f32() + to * d, test.images.f32() + (to + 1) * d, pair.f32() + d);
  const cuae::Tensor c = ae.encode(pair);
  const std::int64_t k = c.dim(1);
  cuae::Tensor line({steps, k});
  for (std::int64_t s = 0; s < steps; ++s) {
    const float t = static_cast<float>(s) / static_cast<float>(steps - 1);
    for (std::int64_t j = 0; j < k; ++j) line.f32()[s * k + j] = (1.0f - t) * c.f32()[j] + t * c.f32()[k + j];
  }
  const cuae::Tensor imgs = ae.decode(line);
  // The strip: the first test image, the decoded line, the last test image.
  cuae::Tensor strip({steps + 2, d});
  std::copy(pair.f32(), pair.f32() + d, strip.f32());
  std::copy(imgs.f32(), imgs.f32() + steps * d, strip.f32() + d);
  std::copy(pair.f32() + d, pair.f32() + 2 * d, strip.f32() + (steps + 1) * d);
  const std::string out = a.get("out", (fs::path(path).parent_path() / "interpolation.png").string());
  cuae::write_image_grid(out, strip, 1, static_cast<int>(steps + 2), test.rows, test.cols, test.channels);
  std::printf("wrote %s: test image %lld, %lld decoded codes on the line to test image %lld, test image %lld\n", out.c_str(),
              static_cast<long long>(from), static_cast<long long>(steps), static_cast<long long>(to), static_cast<long long>(to));
  return 0;
}

int cmd_scatter(const Args& a) {
  const std::string path = a.need("checkpoint");
  cuae::Autoencoder ae = cuae::Autoencoder::load(path, cuae::resolve_device(a.get("device", "auto")));
  auto [train, test] = load_data(ae.config(), false);
  if (ae.config().model.layers.back() != 2)
    throw cuae::Error("cuae scatter: the code has " + std::to_string(ae.config().model.layers.back()) +
                      " dimensions; a scatter plot needs 2");
  const cuae::Tensor c = ae.encode(test.images);
  const std::int64_t n = c.dim(0);
  // The plotted range: the 0.5th to 99.5th percentile of each axis, so a few outliers do not
  // squeeze the rest into a corner.
  float lo[2], hi[2];
  for (int ax = 0; ax < 2; ++ax) {
    std::vector<float> v(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = c.f32()[i * 2 + ax];
    std::sort(v.begin(), v.end());
    lo[ax] = v[static_cast<std::size_t>(static_cast<double>(n - 1) * 0.005)];
    hi[ax] = v[static_cast<std::size_t>(static_cast<double>(n - 1) * 0.995)];
    if (!(hi[ax] > lo[ax])) hi[ax] = lo[ax] + 1.0f;
  }
  const int size = 600, margin = 10;
  std::vector<std::uint8_t> px(static_cast<std::size_t>(size) * size * 3, 255);
  static const std::uint8_t palette[10][3] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},  {148, 103, 189},
                                              {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
  for (std::int64_t i = 0; i < n; ++i) {
    const int label = test.has_labels() ? static_cast<int>(test.labels.f32()[i]) % 10 : 0;
    const float fx = (c.f32()[i * 2] - lo[0]) / (hi[0] - lo[0]), fy = (c.f32()[i * 2 + 1] - lo[1]) / (hi[1] - lo[1]);
    const int x = margin + static_cast<int>(std::clamp(fx, 0.0f, 1.0f) * (size - 2 * margin - 1));
    const int y = size - 1 - margin - static_cast<int>(std::clamp(fy, 0.0f, 1.0f) * (size - 2 * margin - 1));
    for (int dy = -1; dy <= 1; ++dy)
      for (int dx = -1; dx <= 1; ++dx)
        for (int ch = 0; ch < 3; ++ch)
          px[(static_cast<std::size_t>(y + dy) * size + static_cast<std::size_t>(x + dx)) * 3 + ch] = palette[label][ch];
  }
  const std::string out = a.get("out", (fs::path(path).parent_path() / "latent.png").string());
  cuae::write_png(out, px, size, size, 3);
  std::printf("wrote %s: %lld test codes, x in [%.3f, %.3f], y in [%.3f, %.3f], coloured by label\n", out.c_str(),
              static_cast<long long>(n), lo[0], hi[0], lo[1], hi[1]);
  return 0;
}

int cmd_denoise(const Args& a) {
  const std::string path = a.need("checkpoint");
  cuae::Autoencoder ae = cuae::Autoencoder::load(path, cuae::resolve_device(a.get("device", "auto")));
  const cuae::Config& cfg = ae.config();
  cuae::NoiseType type = cfg.noise.enabled ? cfg.noise.type : cuae::NoiseType::Mask;
  float level = cfg.noise.enabled ? cfg.noise.level : 0.3f;
  if (a.has("noise")) type = cuae::parse_noise_type(a.get("noise"));
  if (a.has("level")) {
    const std::string v = a.get("level");
    char* end = nullptr;
    level = std::strtof(v.c_str(), &end);
    if (v.empty() || *end || !std::isfinite(level) || level < 0.0f || (type != cuae::NoiseType::Gaussian && level > 1.0f))
      throw cuae::Error("cuae denoise: --level expects a fraction in [0, 1] (or a σ >= 0 for gaussian), got \"" + v + "\"");
  }
  const std::uint64_t seed = a.has("seed") ? static_cast<std::uint64_t>(a.integer("seed")) : 12345u;
  const std::string out = a.get("out", (fs::path(path).parent_path() / "denoised.png").string());
  auto [train, test] = load_data(cfg);
  const cuae::Tensor noisy = cuae::corrupt_images(test.images, type, level, seed);
  const cuae::Tensor recon = ae.reconstruct(noisy);
  const cuae::ReconMetrics mn = cuae::reconstruction_metrics(test.images, noisy);
  const cuae::ReconMetrics mr = cuae::reconstruction_metrics(test.images, recon);
  std::printf("%s: %s noise, level %g, on %s (%lld images); error against the clean images:\n", path.c_str(),
              cuae::noise_type_name(type), static_cast<double>(level), test.name.c_str(), static_cast<long long>(mr.images));
  std::printf("  %-26s MSE/pixel %.5f   squared error/image %8.3f\n", "noisy input", mn.mse_per_pixel, mn.se_per_image);
  std::printf("  %-26s MSE/pixel %.5f   squared error/image %8.3f\n", "reconstruction", mr.mse_per_pixel, mr.se_per_image);
  // Groups of three rows: noisy inputs, their reconstructions, the clean originals.
  const int per_row = 16, groups = 4;
  const std::int64_t d = test.features();
  const std::int64_t shown = std::min<std::int64_t>(per_row * groups, test.size());
  cuae::Tensor grid({per_row * groups * 3, d});
  std::fill(grid.f32(), grid.f32() + grid.numel(), 0.0f);
  for (std::int64_t img = 0; img < shown; ++img) {
    const std::int64_t g = img / per_row, j = img % per_row;
    const cuae::Tensor* src[3] = {&noisy, &recon, &test.images};
    for (int r = 0; r < 3; ++r) {
      const float* p = src[r]->f32() + img * d;
      float* q = grid.f32() + ((3 * g + r) * per_row + j) * d;
      for (std::int64_t i = 0; i < d; ++i) q[i] = std::clamp(p[i], 0.0f, 1.0f);
    }
  }
  cuae::write_image_grid(out, grid, groups * 3, per_row, test.rows, test.cols, 1);
  std::printf("wrote %s (rows: noisy, reconstructed, clean)\n", out.c_str());
  return 0;
}

int cmd_encode(const Args& a) {
  const std::string path = a.need("checkpoint");
  const std::string out = a.need("out");
  const std::string split = a.get("split", "test");
  if (split != "test" && split != "train") throw cuae::Error("cuae encode: --split must be test or train, got \"" + split + "\"");
  cuae::Autoencoder ae = cuae::Autoencoder::load(path, cuae::resolve_device(a.get("device", "auto")));
  auto [train, test] = load_data(ae.config());
  const cuae::Dataset& d = split == "train" ? train : test;
  const cuae::Tensor codes = ae.encode(d.images);
  cuae::save_npy(out, codes);
  if (a.has("labels")) {
    if (!d.has_labels()) throw cuae::Error("cuae encode: " + d.name + " has no labels to write");
    cuae::save_npy(a.get("labels"), d.labels);
  }
  std::printf("wrote %s: %s codes of %s\n", out.c_str(), cuae::shape_str(codes.shape()).c_str(), d.name.c_str());
  return 0;
}

int cmd_pretrain(const Args& a) {
  cuae::Config cfg = cuae::load_config(a.need("config"));
  if (a.has("device")) cfg.train.device = a.get("device");
  if (a.has("epochs")) cfg.pretrain.epochs = static_cast<int>(a.integer("epochs"));
  if (a.has("max-train")) cfg.train.max_train = a.integer("max-train");
  if (a.has("out")) cfg.output.dir = a.get("out");
  const cuae::Device dev = cuae::resolve_device(cfg.train.device);
  auto [train, test] = load_data(cfg);
  std::string layers;
  for (auto l : cfg.model.layers) layers += (layers.empty() ? "" : "-") + std::to_string(l);
  std::printf("cuae: pretraining %s layer by layer (%s, %d epochs per layer, batch %d) on %s on %s\n", layers.c_str(),
              cfg.pretrain.method == "rbm" ? "RBMs, contrastive divergence" : "denoising autoencoders", cfg.pretrain.epochs,
              cfg.pretrain.batch_size, train.name.c_str(), cuae::device_name(dev));
  const auto stack = cuae::pretrain_stack(cfg, train, dev, [&](const cuae::PretrainProgress& p) {
    if (cfg.pretrain.method == "rbm")
      std::printf("  layer %d/%d (%lld -> %lld)  epoch %2d/%d  reconstruction error %9.4f  free energy train %10.3f  "
                  "held-out %10.3f  elapsed %s\n",
                  p.layer + 1, p.layers, static_cast<long long>(cfg.model.layers[p.layer]),
                  static_cast<long long>(cfg.model.layers[p.layer + 1]), p.epoch, p.epochs, p.recon_error,
                  p.free_energy_train, p.free_energy_heldout, fmt_time(p.elapsed_sec).c_str());
    else
      std::printf("  layer %d/%d (%lld -> %lld)  epoch %2d/%d  denoising loss %9.4f  elapsed %s\n", p.layer + 1, p.layers,
                  static_cast<long long>(cfg.model.layers[p.layer]), static_cast<long long>(cfg.model.layers[p.layer + 1]),
                  p.epoch, p.epochs, p.recon_error, fmt_time(p.elapsed_sec).c_str());
    std::fflush(stdout);
  });
  fs::create_directories(cfg.output.dir);
  const std::string path = (fs::path(cfg.output.dir) / "pretrained.safetensors").string();
  std::vector<std::pair<std::string, cuae::Tensor>> tensors(stack.begin(), stack.end());
  cuae::save_safetensors(path, tensors, {{"format", "cuae-pretrained-1"}, {"config", cuae::to_toml(cfg)}});
  // What the unrolled, not yet fine-tuned network reconstructs.
  cuae::Autoencoder ae(cfg, dev);
  ae.load_parameters(stack);
  std::printf("unrolled, before fine-tuning, test reconstruction error:\n");
  print_metrics("pretrained stack", ae.evaluate(test.images));
  std::printf("wrote %s (fine-tune with: cuae train --config %s --init %s)\n", path.c_str(), a.get("config").c_str(),
              path.c_str());
  return 0;
}

int cmd_summary(const Args& a) {
  const cuae::Config cfg = cuae::load_config(a.need("config"));
  const auto m = cuae::build_autoencoder(cfg, cfg.train.batch_size, cuae::GraphMode::Train);
  if (cfg.model.type == "conv") {
    std::printf("%-24s %-40s %-14s %10s\n", "  layer", "op", "shape (HxWxC)", "parameters");
    std::printf("%s", cuae::format_layer_shapes(cuae::conv_layer_shapes(cfg.model, cfg.loss.type == cuae::LossType::BCEWithLogits)).c_str());
    if (a.has("graph")) std::printf("\n%s", m.graph.describe().c_str());
  } else {
    std::printf("%s", m.graph.describe().c_str());
  }
  std::int64_t params = 0;
  for (const auto& v : m.graph.values())
    if (v.kind == cuae::Graph::ValueKind::Param) params += cuae::shape_numel(v.shape);
  cuae::ExecutorOptions o;
  o.device = cuae::Device::CPU;
  o.training = true;
  o.optimizer = cfg.optimizer;
  cuae::Executor ex(m.graph, o);
  const auto& r = ex.memory();
  std::printf("parameters: %lld\ntraining step at batch %d: arena %.2f MiB for %d values (%.2f MiB without reuse), "
              "parameters %.2f MiB, gradients + optimizer state %.2f MiB\n",
              static_cast<long long>(params), cfg.train.batch_size, r.arena_bytes / 1048576.0, r.values_planned,
              r.naive_bytes / 1048576.0, r.param_bytes / 1048576.0, r.state_bytes / 1048576.0);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse_args(argc, argv, {"pca", "graph"});
    if (a.command == "train") return cmd_train(a);
    if (a.command == "eval") return cmd_eval(a);
    if (a.command == "encode") return cmd_encode(a);
    if (a.command == "sample") return cmd_sample(a);
    if (a.command == "interpolate") return cmd_interpolate(a);
    if (a.command == "scatter") return cmd_scatter(a);
    if (a.command == "denoise") return cmd_denoise(a);
    if (a.command == "summary") return cmd_summary(a);
    if (a.command == "pretrain") return cmd_pretrain(a);
    if (a.command == "version") {
      std::printf("cuae %s, CUDA device %s\n", cuae::version(), cuae::cuda_available() ? "available" : "not available");
      return 0;
    }
    if (a.command == "help" || a.command == "--help" || a.command.empty()) {
      std::fputs(kUsage, a.command.empty() ? stderr : stdout);
      return a.command.empty() ? 2 : 0;
    }
    throw cuae::Error("unknown command \"" + a.command + "\" (try cuae help)");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cuae: error: %s\n", e.what());
    return 1;
  }
}
