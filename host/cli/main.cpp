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
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

const char* kUsage = R"(usage: cuae <command> [options]

commands:
  train    --config FILE [--device auto|cpu|cuda] [--epochs N] [--max-train N] [--out DIR]
           train an autoencoder; writes DIR/checkpoint.safetensors, DIR/reconstructions.png,
           DIR/metrics.csv and reports test reconstruction error beside the PCA baseline
  eval     --checkpoint FILE [--device D] [--pca]
           test-set reconstruction error of a checkpoint (and the PCA baseline with --pca)
  encode   --checkpoint FILE --out CODES.npy [--split test|train] [--labels LABELS.npy] [--device D]
           latent codes of a dataset as a float32 .npy [N, code]
  summary  --config FILE
           layers, shapes, parameter count and planned memory
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

std::pair<cuae::Dataset, cuae::Dataset> load_data(const cuae::Config& c) {
  if (c.data.dataset == "idx")
    return {cuae::load_idx_dataset(c.data.train_images, c.data.train_labels),
            cuae::load_idx_dataset(c.data.test_images, c.data.test_labels)};
  return {cuae::load_fashion_mnist(c.data.dir, true), cuae::load_fashion_mnist(c.data.dir, false)};
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
  const int per_row = 16, pairs = 4;
  const std::int64_t d = test.features();
  cuae::Tensor grid({per_row * pairs * 2, d});
  for (int p = 0; p < pairs; ++p)
    for (int j = 0; j < per_row; ++j) {
      const std::int64_t img = p * per_row + j;
      std::copy(test.images.f32() + img * d, test.images.f32() + (img + 1) * d, grid.f32() + ((2 * p) * per_row + j) * d);
      std::copy(recon.f32() + img * d, recon.f32() + (img + 1) * d, grid.f32() + ((2 * p + 1) * per_row + j) * d);
    }
  cuae::write_image_grid(path, grid, pairs * 2, per_row, test.rows, test.cols, 1);
}

int cmd_train(const Args& a) {
  cuae::Config cfg = cuae::load_config(a.need("config"));
  if (a.has("device")) cfg.train.device = a.get("device");
  if (a.has("epochs")) cfg.train.epochs = static_cast<int>(a.integer("epochs"));
  if (a.has("max-train")) cfg.train.max_train = a.integer("max-train");
  if (a.has("out")) cfg.output.dir = a.get("out");
  const cuae::Device dev = cuae::resolve_device(cfg.train.device);
  auto [train, test] = load_data(cfg);
  cuae::Autoencoder ae(cfg, dev);
  std::string layers;
  for (auto l : cfg.model.layers) layers += (layers.empty() ? "" : "-") + std::to_string(l);
  std::printf("cuae: training %s autoencoder %s (%lld parameters) on %s (%lld images) on %s, %d epochs, batch %d, %s lr %g\n",
              cfg.model.type.c_str(), layers.c_str(), static_cast<long long>(ae.parameter_count()), train.name.c_str(),
              static_cast<long long>(cfg.train.max_train > 0 ? std::min<std::int64_t>(cfg.train.max_train, train.size()) : train.size()),
              cuae::device_name(dev), cfg.train.epochs, cfg.train.batch_size, cuae::optimizer_name(cfg.optimizer.type),
              static_cast<double>(cfg.optimizer.lr));
  fs::create_directories(cfg.output.dir);
  const std::string csv_path = (fs::path(cfg.output.dir) / "metrics.csv").string();
  std::ofstream csv(csv_path);
  if (!csv) throw cuae::Error(csv_path + ": cannot write");
  csv << "epoch,train_loss,test_loss,images_per_sec,elapsed_sec\n";
  bool first = true;
  ae.train(train, [&](const cuae::TrainProgress& p) {
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
      std::printf("  epoch %d done: train loss %.4f, test loss %.4f\n", p.epoch, p.epoch_loss, test_loss);
      csv << p.epoch << "," << p.epoch_loss << "," << test_loss << "," << p.images_per_sec << "," << p.elapsed_sec << "\n";
      csv.flush();
    }
    std::fflush(stdout);
  });
  const std::string ckpt = (fs::path(cfg.output.dir) / "checkpoint.safetensors").string();
  ae.save(ckpt);
  const cuae::Tensor recon = ae.reconstruct(test.images);
  const cuae::ReconMetrics m = cuae::reconstruction_metrics(test.images, recon);
  const int k = static_cast<int>(cfg.model.layers.back());
  const cuae::ReconMetrics pca = pca_baseline(train, test, k);
  const std::string png = (fs::path(cfg.output.dir) / "reconstructions.png").string();
  write_grid(png, test, recon);
  std::printf("test reconstruction error (%lld images):\n", static_cast<long long>(m.images));
  print_metrics("autoencoder", m);
  print_metrics(("PCA, " + std::to_string(k) + " components").c_str(), pca);
  std::printf("autoencoder MSE is %.1f%% %s PCA's\n", 100.0 * std::abs(1.0 - m.mse_per_pixel / pca.mse_per_pixel),
              m.mse_per_pixel < pca.mse_per_pixel ? "below" : "above");
  std::printf("wrote %s, %s, %s\n", ckpt.c_str(), png.c_str(), csv_path.c_str());
  return 0;
}

int cmd_eval(const Args& a) {
  const std::string path = a.need("checkpoint");
  const cuae::Device dev = cuae::resolve_device(a.get("device", "auto"));
  cuae::Autoencoder ae = cuae::Autoencoder::load(path, dev);
  auto [train, test] = load_data(ae.config());
  const cuae::ReconMetrics m = ae.evaluate(test.images);
  std::printf("%s: step %lld, epoch %d, test set %s (%lld images)\n", path.c_str(), static_cast<long long>(ae.step()),
              ae.epochs_done(), test.name.c_str(), static_cast<long long>(m.images));
  print_metrics("autoencoder", m);
  if (a.has("pca")) {
    const int k = static_cast<int>(ae.config().model.layers.back());
    print_metrics(("PCA, " + std::to_string(k) + " components").c_str(), pca_baseline(train, test, k));
  }
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

int cmd_summary(const Args& a) {
  const cuae::Config cfg = cuae::load_config(a.need("config"));
  const auto m = cuae::build_deep_autoencoder(cfg.model, cfg.loss, cfg.train.batch_size, false);
  std::printf("%s", m.graph.describe().c_str());
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
    const Args a = parse_args(argc, argv, {"pca"});
    if (a.command == "train") return cmd_train(a);
    if (a.command == "eval") return cmd_eval(a);
    if (a.command == "encode") return cmd_encode(a);
    if (a.command == "summary") return cmd_summary(a);
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
