// cuae train and cuae pretrain: the commands that produce models.
#include <algorithm>
#include <array>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <sstream>
#include <toml++/toml.h>

#include "host/cli/common.hpp"

namespace fs = std::filesystem;

namespace cuae::cli {

namespace {

// What train and pretrain take from the command line over the config.
struct RunOptions {
  std::string config, device, out, lr, batch_size, seed;
  int epochs = 0;
  std::int64_t max_train = 0;
  std::vector<std::string> sets;
  bool force = false;
};

void add_run_options(CLI::App* cmd, RunOptions& o, const char* epochs_help, bool config_required) {
  CLI::Option* config = cmd->add_option("--config", o.config, "the TOML config file")->check(CLI::ExistingFile);
  if (config_required) config->required();
  add_device_option(cmd, o.device);
  cmd->add_option("--epochs", o.epochs, epochs_help)->check(CLI::Range(1, 1000000));
  cmd->add_option("--max-train", o.max_train, "train on the first N training images only")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 40));
  cmd->add_option("--out", o.out, "the output folder (default: the config's [output] dir)");
  cmd->add_option("--lr", o.lr, "the learning rate (sets [optimizer] lr)");
  cmd->add_option("--batch-size", o.batch_size, "examples per step (sets [train] batch_size)");
  cmd->add_option("--seed", o.seed, "initialisation, data order and noise (sets [train] seed)");
  cmd->add_option("--set", o.sets, "any config key: TABLE.KEY=VALUE (repeatable), e.g. --set noise.level=0.5")
      ->type_name("TABLE.KEY=VALUE");
  cmd->add_flag("--force", o.force, "write into an output folder that holds another run's files");
}

// A string as a TOML value (quoted and escaped), for an override of a string key.
std::string toml_string(const std::string& s) {
  std::ostringstream os;
  os << toml::value<std::string>(s);
  return os.str();
}

// The config with the command line's overrides applied, each as a TABLE.KEY=VALUE override the
// parser checks like a value in the file: the shorthands first, then --set in the order given
// (--epochs sets [pretrain] epochs when pretraining, else [train] epochs).
Config run_config(CLI::App* cmd, const RunOptions& o, bool pretraining) {
  std::vector<std::string> sets;
  if (cmd->count("--device")) sets.push_back("train.device=" + toml_string(o.device));
  if (cmd->count("--epochs")) sets.push_back(std::string(pretraining ? "pretrain" : "train") + ".epochs=" + std::to_string(o.epochs));
  if (cmd->count("--max-train")) sets.push_back("train.max_train=" + std::to_string(o.max_train));
  if (cmd->count("--out")) sets.push_back("output.dir=" + toml_string(o.out));
  if (cmd->count("--lr")) sets.push_back("optimizer.lr=" + o.lr);
  if (cmd->count("--batch-size")) sets.push_back("train.batch_size=" + o.batch_size);
  if (cmd->count("--seed")) sets.push_back("train.seed=" + o.seed);
  sets.insert(sets.end(), o.sets.begin(), o.sets.end());
  return load_config(o.config, sets);
}

// True when a metrics.csv holds more than its header: a run got as far as an epoch.
bool has_metrics_rows(const fs::path& csv) {
  std::ifstream in(csv);
  std::string line;
  int lines = 0;
  while (lines < 2 && std::getline(in, line)) ++lines;
  return lines > 1;
}

// Makes the output folder. One that already holds a run's results is refused unless --force: a new
// run must not overwrite another's checkpoint or truncate its metrics (a metrics.csv with only its
// header, from a run that failed before its first epoch, is no result). Temporary files left by a
// killed run's atomic writes (NAME.tmp.PID) are removed.
void prepare_output_dir(const std::string& dir, const std::vector<std::string>& outputs, bool force) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(dir + ": cannot create the output folder: " + ec.message());
  std::string found;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.find(".tmp.") != std::string::npos) {
      fs::remove(entry.path(), ec);
      continue;
    }
    for (const auto& o : outputs)
      if (name == o && (name != "metrics.csv" || has_metrics_rows(entry.path()))) found += (found.empty() ? "" : ", ") + name;
  }
  if (!found.empty() && !force)
    throw Error(dir + " holds another run's files (" + found +
                "): choose another output folder (--out), or pass --force to overwrite them");
}

// Streamed training data: decoded on background threads into pinned batch buffers while the
// device trains; the validation split (the last files) is decoded into memory once.
struct Stream {
  std::unique_ptr<ImageStream> stream;
  Tensor validation;
};

Stream open_stream(const Config& cfg, Device dev) {
  Stream s;
  std::vector<std::string> files = list_images(cfg.data.train_dir);
  if (cfg.train.max_train > 0 && static_cast<std::int64_t>(files.size()) > cfg.train.max_train)
    files.resize(static_cast<std::size_t>(cfg.train.max_train));
  const ImageSpec spec = image_spec(cfg);
  const auto n_val = cfg.train.validation > 0.0
                         ? std::max<std::size_t>(1, static_cast<std::size_t>(static_cast<double>(files.size()) * cfg.train.validation))
                         : 0;
  if (n_val) {
    std::vector<std::string> val(files.end() - static_cast<std::ptrdiff_t>(n_val), files.end());
    files.resize(files.size() - n_val);
    // The validation images follow [data] on_error as the training images do.
    std::vector<std::vector<float>> decoded;
    for (const auto& f : val) {
      try {
        decoded.push_back(decode_image(f, spec));
      } catch (const Error&) {
        if (cfg.data.on_error == BadImagePolicy::Stop) throw;
        std::fprintf(stderr, "cuae: skipping unreadable validation image %s\n", f.c_str());
      }
    }
    if (decoded.empty()) throw Error(cfg.data.train_dir + ": none of the " + std::to_string(val.size()) + " validation images could be read");
    s.validation = Tensor({static_cast<std::int64_t>(decoded.size()), spec.features()});
    for (std::size_t i = 0; i < decoded.size(); ++i)
      std::copy(decoded[i].begin(), decoded[i].end(), s.validation.f32() + static_cast<std::int64_t>(i) * spec.features());
  }
  if (static_cast<std::int64_t>(files.size()) < cfg.train.batch_size)
    throw Error(cfg.data.train_dir + ": " + std::to_string(files.size()) + " training images" +
                (n_val ? " after holding out " + std::to_string(n_val) + " for validation" : std::string()) +
                ", fewer than one batch of " + std::to_string(cfg.train.batch_size) + " ([train] batch_size)");
  ImageStreamOptions so;
  so.threads = cfg.data.threads;
  so.prefetch = cfg.data.prefetch;
  so.seed = cfg.train.seed;
  so.drop_last = true;
  BatchAllocator alloc{[dev](std::size_t b) { return alloc_host_buffer(b, dev); },
                       [dev](void* p) { free_host_buffer(p, dev); }};
  s.stream = std::make_unique<ImageStream>(std::move(files), spec, cfg.train.batch_size, cfg.data.on_error, so, alloc);
  return s;
}

void load_init(Autoencoder& ae, const std::string& init) {
  SafetensorsFile f = load_safetensors(init);
  std::map<std::string, Tensor> params;
  for (auto& [k, v] : f.tensors)
    if (k.rfind("opt.", 0) != 0) params[k] = v;
  try {
    ae.load_parameters(params);
  } catch (const Error& e) {
    throw Error(init + ": " + e.what());
  }
  std::printf("cuae: starting from the parameters in %s\n", init.c_str());
}

// PCA with as many components as the code: the linear baseline of an undercomplete code, fitted on
// the images the model trained on (the first max_train, without the validation split). Shown only
// where the comparison means something; otherwise the line says why not.
void report_pca_baseline(const Config& cfg, const Dataset& train, const Dataset& test, const ReconMetrics& model) {
  const std::int64_t k = cfg.model.layers.back(), d = test.features();
  const char* why_not = nullptr;
  if (train.size() == 0) why_not = "the training images were streamed, not held in memory";
  else if (k >= d) why_not = "the code is as wide as the image";
  else if (cfg.sparsity.type != SparsityConfig::Kind::None) why_not = "a sparse code's width is not its capacity";
  else if (d > 4096) why_not = "images above 4096 values make the covariance too large";
  if (why_not) {
    std::printf("  (no PCA baseline: %s)\n", why_not);
    return;
  }
  const std::int64_t n = training_split(cfg.train, train.size()).train;
  std::printf("  fitting the PCA baseline: %lld components on the %lld training images the model saw ...\n",
              static_cast<long long>(k), static_cast<long long>(n));
  std::fflush(stdout);
  const Pca p = fit_pca(subset(train, 0, n).images, static_cast<int>(k));
  const ReconMetrics pca = reconstruction_metrics(test.images, pca_reconstruct(p, test.images));
  print_metrics(("PCA, " + std::to_string(k) + " components").c_str(), pca);
  if (pca.mse_per_pixel > 0.0)
    std::printf("autoencoder MSE is %.1f%% %s PCA's\n", 100.0 * std::abs(1.0 - model.mse_per_pixel / pca.mse_per_pixel),
                model.mse_per_pixel < pca.mse_per_pixel ? "below" : "above");
}

// SIGINT and SIGTERM during training: the run stops after the step in flight, writes its
// checkpoint and says how to resume. A second signal ends the program at once.
Autoencoder* g_training = nullptr;
volatile std::sig_atomic_t g_signal = 0;

extern "C" void on_stop_signal(int sig) {
  g_signal = sig;
  std::signal(sig, SIG_DFL);
  if (g_training) g_training->request_stop();
}

struct StopSignals {
  explicit StopSignals(Autoencoder& ae) {
    g_training = &ae;
    std::signal(SIGINT, on_stop_signal);
    std::signal(SIGTERM, on_stop_signal);
  }
  ~StopSignals() {
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
    g_training = nullptr;
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
};

// metrics.csv of a resumed run: its rows up to the checkpoint's epoch are kept (a row written
// after the checkpoint belongs to an epoch that is trained again), and new rows are appended.
// The epoch, train, validation and test columns of a metrics.csv (NaN where empty).
std::vector<std::array<double, 4>> read_curve(const std::string& csv_path) {
  std::vector<std::array<double, 4>> rows;
  std::ifstream in(csv_path);
  std::string line;
  std::getline(in, line);  // the header
  while (std::getline(in, line)) {
    std::array<double, 4> r{NAN, NAN, NAN, NAN};
    std::stringstream ss(line);
    std::string cell;
    for (std::size_t k = 0; k < r.size() && std::getline(ss, cell, ','); ++k) r[k] = cell.empty() ? NAN : std::strtod(cell.c_str(), nullptr);
    rows.push_back(r);
  }
  return rows;
}

// Returns whether the file keeps its header (a run stopped before its first epoch has none yet).
bool keep_metrics_rows(const std::string& csv_path, int epochs_done) {
  std::ifstream in(csv_path);
  if (!in) throw Error(csv_path + ": cannot read the run's metrics to resume it");
  std::string line, kept;
  for (int i = 0; std::getline(in, line); ++i) {
    const bool header = i == 0;
    int epoch = 0;
    if (!header && std::sscanf(line.c_str(), "%d,", &epoch) != 1) throw Error(csv_path + ": line " + std::to_string(i + 1) + " is not a metrics row");
    if (header || epoch <= epochs_done) kept += line + "\n";
  }
  in.close();
  std::ofstream out(csv_path, std::ios::trunc);
  out << kept;
  if (!out) throw Error(csv_path + ": cannot write");
  return !kept.empty();
}

// " (loss 400.1 + kl 25.8)" for an objective of several terms, "" for one.
std::string terms_text(const Objective& o) {
  if (o.terms.size() < 2) return "";
  std::string t = " (";
  char buf[64];
  for (std::size_t i = 0; i < o.terms.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%s%s %.4g", i ? " + " : "", o.terms[i].first.c_str(), o.terms[i].second);
    t += buf;
  }
  return t + ")";
}

// [output] images_every: the first test images' reconstructions after epoch E, and for a VAE 64
// samples from one fixed seed (the same codes every epoch, so the pictures show the model change).
void write_reconstructions(Autoencoder& ae, const Dataset& test, const std::string& path, const std::string& when) {
  const Tensor shown = gather_rows(test.images, spread_indices(test, 40));
  write_row_blocks(path, "Test images and their reconstructions" + when, test,
                   {{"test images", shown}, {"reconstructions", ae.reconstruct(shown)}}, 10);
}

void write_epoch_images(Autoencoder& ae, const Config& cfg, const Dataset& test, int epoch) {
  const fs::path dir(cfg.output.dir);
  const std::string when = " after epoch " + std::to_string(epoch);
  write_reconstructions(ae, test, (dir / ("reconstructions_" + std::to_string(epoch) + ".png")).string(), when);
  if (cfg.model.variational)
    write_row_blocks((dir / ("samples_" + std::to_string(epoch) + ".png")).string(),
                     "Samples z ~ N(0, I), the same z every epoch," + when, test, {{"samples", ae.sample(40, 1)}}, 10);
}

// loss.png: the objective per epoch on the training steps, the validation split and the test set.
void write_loss_plot(const std::string& path, const std::vector<std::array<double, 4>>& rows, bool parts) {
  Series train{"training steps", {}, {}}, val{"validation", {}, {}}, test{"test", {}, {}};
  for (const auto& r : rows) {
    train.x.push_back(r[0]), train.y.push_back(r[1]);
    val.x.push_back(r[0]), val.y.push_back(r[2]);
    test.x.push_back(r[0]), test.y.push_back(r[3]);
  }
  std::vector<Series> series{train, test};
  if (std::any_of(val.y.begin(), val.y.end(), [](double v) { return std::isfinite(v); })) series.insert(series.begin() + 1, val);
  write_line_plot(path, parts ? "Training objective per epoch (reconstruction + regularizers)" : "Loss per epoch", "epoch",
                  parts ? "objective per image" : "loss", series);
}

void train(CLI::App* cmd, const RunOptions& o, const std::string& init, const std::string& resume_dir) {
  const bool resuming = !resume_dir.empty();
  std::unique_ptr<Autoencoder> resumed;
  Config cfg;
  if (resuming) {
    for (const char* opt : {"--max-train", "--out", "--force", "--init", "--lr", "--batch-size", "--seed", "--set"})
      if (cmd->count(opt))
        throw Error(std::string("--resume continues the run as it was configured; ") + opt + " cannot change it");
    const std::string ckpt = (fs::path(resume_dir) / "checkpoint.safetensors").string();
    if (!fs::exists(ckpt)) throw Error(resume_dir + ": no checkpoint.safetensors to resume from");
    cfg = Autoencoder::load(ckpt, Device::CPU).config();
    if (cmd->count("--device")) cfg.train.device = o.device;
    resumed = std::make_unique<Autoencoder>(Autoencoder::resume(ckpt, resolve_device(cfg.train.device), o.epochs));
    cfg = resumed->config();
    cfg.output.dir = resume_dir;
    if (cmd->count("--epochs")) cfg.train.epochs = o.epochs;
  } else {
    if (o.config.empty()) throw Error("cuae train needs --config FILE (or --resume DIR)");
    cfg = run_config(cmd, o, false);
  }
  const Device dev = resolve_device(cfg.train.device);
  Data data = load_data(cfg);
  Dataset& train = data.train;
  const Dataset& test = data.test;
  Stream stream;
  if (cfg.data.stream) {
    stream = open_stream(cfg, dev);
    train.name = cfg.data.train_dir + " (streamed)";
  }
  if (!resuming)
    prepare_output_dir(cfg.output.dir, {"checkpoint.safetensors", "best.safetensors", "metrics.csv"}, o.force);
  Autoencoder ae = resuming ? std::move(*resumed) : Autoencoder(cfg, dev);
  if (!init.empty()) load_init(ae, init);
  if (resuming)
    std::printf("cuae: resuming %s at epoch %d, step %lld\n", resume_dir.c_str(), ae.epochs_done() + 1,
                static_cast<long long>(ae.step()));
  const std::int64_t images = stream.stream ? stream.stream->size()
                              : cfg.train.max_train > 0 ? std::min<std::int64_t>(cfg.train.max_train, train.size())
                                                        : train.size();
  const std::string where = dev == Device::CPU ? "cpu (" + cpu_backend_description() + ")" : device_name(dev);
  std::printf("cuae: training %s, %lld parameters, on %s (%lld images) on %s, %s, batch %d, %s lr %g\n",
              model_description(cfg).c_str(), static_cast<long long>(ae.parameter_count()), train.name.c_str(),
              static_cast<long long>(images), where.c_str(), count(cfg.train.epochs, "epoch", "epochs").c_str(),
              cfg.train.batch_size, optimizer_name(cfg.optimizer.type), static_cast<double>(cfg.optimizer.lr));
  const std::string csv_path = (fs::path(cfg.output.dir) / "metrics.csv").string();
  const bool has_header = resuming && keep_metrics_rows(csv_path, ae.epochs_done());
  std::ofstream csv(csv_path, resuming ? std::ios::app : std::ios::trunc);
  if (!csv) throw Error(csv_path + ": cannot write");
  bool csv_header = !has_header;  // written with the first row
  const std::string loss_png = (fs::path(cfg.output.dir) / "loss.png").string();
  std::vector<std::array<double, 4>> curve = resuming ? read_curve(csv_path) : std::vector<std::array<double, 4>>{};
  const std::string best_path = (fs::path(cfg.output.dir) / "best.safetensors").string();
  const std::string ckpt = (fs::path(cfg.output.dir) / "checkpoint.safetensors").string();
  bool first = true;
  const auto on_progress = [&](const TrainProgress& p) {
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
      // The same objective on both sides: the training steps' and the test images' (terms named).
      const Objective test_obj = ae.objective(test.images);
      const bool parts = test_obj.terms.size() > 1;
      const char* what = parts ? "objective" : "loss";
      std::printf("  epoch %d done: train %s %.4f%s", p.epoch, what, p.epoch_loss, terms_text(p.epoch_objective).c_str());
      if (p.val_loss >= 0.0) std::printf(", validation %.4f%s", p.val_loss, p.improved ? " (best)" : "");
      std::printf(", test %.4f%s\n", test_obj.total, terms_text(test_obj).c_str());
      if (p.val_loss >= 0.0) {
        // The best model so far, written atomically: a run stopped at any point keeps it.
        if (p.improved) ae.save(best_path);
        if (p.stopping)
          std::printf("  early stopping: no better validation %s for %d epochs; keeping epoch %d\n", what,
                      cfg.train.patience, p.best_epoch);
      }
      if (csv_header) {  // the term columns are known once the model has trained
        csv << "epoch,train_loss,val_loss,test_loss,images_per_sec,elapsed_sec";
        if (parts)
          for (const char* side : {"train", "test"})
            for (const auto& [name, value] : test_obj.terms) csv << "," << side << "_" << name;
        csv << "\n";
        csv_header = false;
      }
      csv << p.epoch << "," << p.epoch_loss << ",";
      if (p.val_loss >= 0.0) csv << p.val_loss;
      csv << "," << test_obj.total << "," << p.epoch_images_per_sec << "," << p.elapsed_sec;
      if (parts) {
        for (const auto& [name, value] : p.epoch_objective.terms) csv << "," << value;
        for (const auto& [name, value] : test_obj.terms) csv << "," << value;
      }
      csv << "\n";
      csv.flush();
      curve.push_back({static_cast<double>(p.epoch), p.epoch_loss, p.val_loss >= 0.0 ? p.val_loss : NAN, test_obj.total});
      write_loss_plot(loss_png, curve, parts);
    }
    if (p.epoch_end && cfg.output.images_every > 0 && p.epoch % cfg.output.images_every == 0)
      write_epoch_images(ae, cfg, test, p.epoch);
    // The checkpoint after the metrics row: a run resumed from it never repeats a written row.
    if (p.checkpoint) ae.save(ckpt);
    std::fflush(stdout);
  };
  {
    const StopSignals signals(ae);
    if (stream.stream) {
      ae.train(*stream.stream, stream.validation, on_progress);
      if (stream.stream->skipped())
        std::printf("  skipped %lld unreadable images in the last epoch\n", static_cast<long long>(stream.stream->skipped()));
    } else {
      ae.train(train, on_progress);
    }
  }
  if (ae.interrupted()) {
    std::printf("cuae: interrupted (%s) at step %lld; wrote %s; continue with: cuae train --resume %s\n",
                g_signal == SIGTERM ? "SIGTERM" : "SIGINT", static_cast<long long>(ae.step()), ckpt.c_str(),
                cfg.output.dir.c_str());
    exit_code() = 128 + (g_signal ? static_cast<int>(g_signal) : SIGINT);
    return;
  }
  ae.save(ckpt);
  const Tensor recon = ae.reconstruct(test.images);
  const ReconMetrics m = reconstruction_metrics(test.images, recon);
  const std::string png = (fs::path(cfg.output.dir) / "reconstructions.png").string();
  write_reconstructions(ae, test, png, "");
  std::printf("test reconstruction error (%lld images):\n", static_cast<long long>(m.images));
  print_metrics("autoencoder", m);
  report_pca_baseline(cfg, train, test, m);
  std::string wrote = ckpt;
  if (fs::exists(best_path)) wrote += ", " + best_path;
  std::printf("wrote %s, %s, %s, %s\n", wrote.c_str(), png.c_str(), csv_path.c_str(), loss_png.c_str());
}

void pretrain(CLI::App* cmd, const RunOptions& o) {
  const Config cfg = run_config(cmd, o, true);
  const Device dev = resolve_device(cfg.train.device);
  const Data data = load_data(cfg);
  if (cfg.data.stream) throw Error(o.config + ": [data] stream: pretraining reads its data into memory; set stream = false");
  prepare_output_dir(cfg.output.dir, {"pretrained.safetensors"}, o.force);
  const bool rbm = cfg.pretrain.method == PretrainMethod::RBM;
  std::printf("cuae: pretraining %s layer by layer (%s, %d epochs per layer, batch %d) on %s on %s\n",
              layer_string(cfg.model).c_str(), rbm ? "RBMs, contrastive divergence" : "denoising autoencoders",
              cfg.pretrain.epochs, cfg.pretrain.batch_size, data.train.name.c_str(), device_name(dev));
  const auto stack = pretrain_stack(cfg, data.train, dev, [&](const PretrainProgress& p) {
    const auto in = static_cast<long long>(cfg.model.layers[p.layer]), out = static_cast<long long>(cfg.model.layers[p.layer + 1]);
    if (rbm)
      std::printf("  layer %d/%d (%lld -> %lld)  epoch %2d/%d  reconstruction error %9.4f  free energy train %10.3f  "
                  "held-out %10.3f  elapsed %s\n",
                  p.layer + 1, p.layers, in, out, p.epoch, p.epochs, p.recon_error, p.free_energy_train,
                  p.free_energy_heldout, fmt_time(p.elapsed_sec).c_str());
    else
      std::printf("  layer %d/%d (%lld -> %lld)  epoch %2d/%d  denoising loss %9.4f  elapsed %s\n", p.layer + 1, p.layers, in,
                  out, p.epoch, p.epochs, p.recon_error, fmt_time(p.elapsed_sec).c_str());
    std::fflush(stdout);
  });
  const std::string path = (fs::path(cfg.output.dir) / "pretrained.safetensors").string();
  std::vector<std::pair<std::string, Tensor>> tensors(stack.begin(), stack.end());
  save_safetensors(path, tensors, {{"format", "cuae-pretrained-1"}, {"config", to_toml(cfg)}});
  // What the unrolled, not yet fine-tuned network reconstructs.
  Autoencoder ae(cfg, dev);
  ae.load_parameters(stack);
  std::printf("unrolled, before fine-tuning, test reconstruction error:\n");
  print_metrics("pretrained stack", ae.evaluate(data.test.images));
  std::printf("wrote %s (fine-tune with: cuae train --config %s --init %s)\n", path.c_str(), o.config.c_str(), path.c_str());
}

}  // namespace

void add_training_commands(CLI::App& app) {
  auto train_opts = std::make_shared<RunOptions>();
  auto init = std::make_shared<std::string>();
  auto resume = std::make_shared<std::string>();
  CLI::App* t = app.add_subcommand("train", "train an autoencoder from a config");
  t->footer(
      "Writes DIR/checkpoint.safetensors, DIR/reconstructions.png and DIR/metrics.csv, and reports the test "
      "reconstruction error beside the PCA baseline. With [train] validation and patience: early stopping and "
      "DIR/best.safetensors.");
  add_run_options(t, *train_opts, "epochs to train (overrides [train] epochs; with --resume, the run's new total)", false);
  t->add_option("--init", *init, "start from the parameters of a checkpoint or a pretrained stack")->check(CLI::ExistingFile);
  t->add_option("--resume", *resume, "continue the interrupted run in this output folder, exactly where it stood")
      ->check(CLI::ExistingDirectory)
      ->excludes(t->get_option("--config"));
  t->callback([t, train_opts, init, resume] { train(t, *train_opts, *init, *resume); });

  auto pre_opts = std::make_shared<RunOptions>();
  CLI::App* p = app.add_subcommand("pretrain", "greedy layer-wise pretraining of a deep model");
  p->footer(
      "[pretrain]: RBMs by contrastive divergence or denoising autoencoders, one layer after another. Writes "
      "DIR/pretrained.safetensors, the unrolled autoencoder's parameters, for train --init.");
  add_run_options(p, *pre_opts, "epochs per layer (overrides [pretrain] epochs)", true);
  p->callback([p, pre_opts] { pretrain(p, *pre_opts); });
}

}  // namespace cuae::cli
