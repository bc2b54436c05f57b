// cuae eval, cuae summary and cuae version: commands that look at a model or a config.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>

#include "host/cli/common.hpp"

namespace cuae::cli {

namespace {

struct EvalOptions {
  std::string checkpoint, device = "auto", jacobian;
  bool pca = false;
  int samples = 0;
};

// The activation of an encoder layer ("code" or "encoder.N").
Activation layer_activation(const ModelConfig& m, const std::string& layer) {
  const int i = encoder_layer_index(m, layer, "--jacobian");
  return i + 2 == static_cast<int>(m.layers.size()) ? m.code_activation : m.activation;
}

void print_sparsity(Autoencoder& ae, const Config& cfg, const Tensor& images) {
  const Tensor h = ae.activations(images, cfg.sparsity.layer);
  double sum = 0.0;
  std::int64_t nonzero = 0;
  for (std::int64_t i = 0; i < h.numel(); ++i) {
    sum += h.f32()[i];
    nonzero += h.f32()[i] != 0.0f;
  }
  const double rows = static_cast<double>(std::max<std::int64_t>(h.dim(0), 1));
  std::printf("  %s sparsity on %s: mean activation %.4f", sparsity_name(cfg.sparsity.type), cfg.sparsity.layer.c_str(),
              sum / static_cast<double>(std::max<std::int64_t>(h.numel(), 1)));
  if (cfg.sparsity.type == SparsityConfig::Kind::KL) std::printf(" (target %.4f)", static_cast<double>(cfg.sparsity.target));
  std::printf(", nonzero units per image %.2f of %lld\n", static_cast<double>(nonzero) / rows, static_cast<long long>(h.dim(1)));
}

void eval(CLI::App* cmd, const EvalOptions& o) {
  Autoencoder ae = Autoencoder::load(o.checkpoint, resolve_device(o.device));
  const Config& cfg = ae.config();
  // The training set only for the PCA baseline.
  const Data data = load_data(cfg, o.pca);
  const ReconMetrics m = ae.evaluate(data.test.images);
  std::printf("%s: step %lld, epoch %d, test set %s (%lld images)\n", o.checkpoint.c_str(), static_cast<long long>(ae.step()),
              ae.epochs_done(), data.test.name.c_str(), static_cast<long long>(m.images));
  print_metrics("autoencoder", m);
  if (o.pca && cfg.model.layers.back() < cfg.model.layers.front() && data.train.size() > 0) {
    const int k = static_cast<int>(cfg.model.layers.back());
    const Pca p = fit_pca(data.train.images, k);
    print_metrics(("PCA, " + std::to_string(k) + " components").c_str(),
                  reconstruction_metrics(data.test.images, pca_reconstruct(p, data.test.images)));
  }
  // The Jacobian norm of a dense layer: by default the contractive layer, else a dense model's
  // first layer (a conv model's only dense encoder layer is its code, named with --jacobian).
  const bool conv = cfg.model.type == ModelType::Conv;
  const std::string jl = cmd->count("--jacobian") ? o.jacobian
                         : cfg.contractive.weight > 0.0f ? cfg.contractive.layer
                         : conv                          ? ""
                                                         : "encoder.0";
  if (!jl.empty() && contractive_supports(layer_activation(cfg.model, jl)))
    std::printf("  mean ||dh/dx||_F^2 of %s: %.4f\n", jl.c_str(), ae.jacobian_norm(data.test.images, jl));
  if (cfg.sparsity.type != SparsityConfig::Kind::None) print_sparsity(ae, cfg, data.test.images);
  if (cfg.model.variational) {
    const int k = cmd->count("--samples") ? o.samples : cfg.vae.samples;
    std::printf("  estimating the VAE's bounds with %s per image on %lld test images ...\n",
                count(k, "importance sample", "importance samples").c_str(), static_cast<long long>(data.test.size()));
    std::fflush(stdout);
    const VaeBounds b = ae.vae_bounds(data.test.images, k);
    std::printf("  VAE, nats per image: ELBO %.3f (reconstruction %.3f, KL %.3f); importance-weighted bound on log p(x) "
                "with %d samples %.3f\n",
                b.elbo, -b.recon_nll, b.kl, k, b.iw_bound);
  }
}

// The layers of a dense model as the conv summary lists them: name, op, width, parameters.
std::vector<LayerShape> dense_layer_shapes(const Config& cfg) {
  const auto& w = cfg.model.layers;
  const std::size_t depth = w.size() - 1;
  const bool logits = cfg.loss.type == LossType::BCEWithLogits;
  std::vector<LayerShape> out{{"input", "", {w[0]}, 0}};
  for (std::size_t i = 0; i < depth; ++i) {
    const bool code = i + 1 == depth;
    const bool head = code && cfg.model.variational;  // a VAE's code layer: the Gaussian head (mu | log sigma^2)
    const std::int64_t width = head ? 2 * w[i + 1] : w[i + 1];
    out.push_back({"encoder." + std::to_string(i),
                   std::string("dense, ") + (head ? "Gaussian head (mu | log sigma^2)"
                                                  : activation_name(code ? cfg.model.code_activation : cfg.model.activation)),
                   {width}, w[i] * width + width});
  }
  for (std::size_t j = 0; j < depth; ++j) {
    const std::size_t from = depth - j, to = from - 1;
    const bool last = to == 0;
    const bool tied = cfg.model.tied_weights && !cfg.model.variational;
    std::string act = activation_name(last ? cfg.model.output_activation : cfg.model.activation);
    if (last && logits) act = "logits (BCE on logits; output = sigmoid)";
    out.push_back({"decoder." + std::to_string(j), std::string(tied ? "dense (tied), " : "dense, ") + act, {w[to]},
                   (tied ? 0 : w[from] * w[to]) + w[to]});
  }
  return out;
}

void summary(const std::string& config, bool graph) {
  const Config cfg = load_config(config);
  const auto m = build_autoencoder(cfg, cfg.train.batch_size, GraphMode::Train);
  const bool conv = cfg.model.type == ModelType::Conv;
  std::printf("%s\n%-24s %-40s %-14s %10s\n", model_description(cfg).c_str(), "  layer", "op",
              conv ? "shape (HxWxC)" : "width", "parameters");
  std::printf("%s", format_layer_shapes(conv ? conv_layer_shapes(cfg.model, cfg.loss.type == LossType::BCEWithLogits)
                                             : dense_layer_shapes(cfg))
                        .c_str());
  if (graph) std::printf("\n%s", m.graph.describe().c_str());
  std::int64_t params = 0;
  for (const auto& v : m.graph.values())
    if (v.kind == Graph::ValueKind::Param) params += shape_numel(v.shape);
  // Planned, not allocated: a config too large for this machine can still be summarised.
  const TrainMemory plan = plan_training_memory(cfg, Device::CPU, 0);
  const MemoryReport& r = plan.step;
  std::printf("parameters: %lld\ntraining step at batch %d: arena %.2f MiB for %d values (%.2f MiB without reuse), "
              "parameters %.2f MiB, gradients + optimizer state %.2f MiB; evaluation arena %.2f MiB\n",
              static_cast<long long>(params), cfg.train.batch_size, r.arena_bytes / 1048576.0, r.values_planned,
              r.naive_bytes / 1048576.0, r.param_bytes / 1048576.0, r.state_bytes / 1048576.0,
              plan.eval_arena_bytes / 1048576.0);
}

}  // namespace

void add_inspection_commands(CLI::App& app) {
  auto eo = std::make_shared<EvalOptions>();
  CLI::App* e = app.add_subcommand("eval", "measure a checkpoint on the test set");
  e->footer(
      "The test-set reconstruction error (and the PCA baseline with --pca), the mean squared Frobenius norm of an "
      "encoder layer's Jacobian, the sparse layer's mean activation, and a VAE's test ELBO and importance-weighted "
      "bound on log p(x).");
  e->add_option("--checkpoint", eo->checkpoint, "the checkpoint (.safetensors)")->required()->check(CLI::ExistingFile);
  add_device_option(e, eo->device);
  e->add_flag("--pca", eo->pca, "also fit and score the PCA baseline on the training set");
  e->add_option("--jacobian", eo->jacobian, "the encoder layer whose Jacobian norm to report (code or encoder.N)");
  e->add_option("--samples", eo->samples, "a VAE's importance samples per image (default [vae] samples)")
      ->check(CLI::Range(1, 100000));
  e->callback([e, eo] { eval(e, *eo); });

  auto config = std::make_shared<std::string>();
  auto graph = std::make_shared<bool>(false);
  CLI::App* s = app.add_subcommand("summary", "a config's layers, shapes, parameters and planned memory");
  s->footer("The planned memory of a training step: peak arena, parameters, gradients and optimizer state.");
  s->add_option("--config", *config, "the TOML config file")->required()->check(CLI::ExistingFile);
  s->add_flag("--graph", *graph, "also list every graph node");
  s->callback([config, graph] { summary(*config, *graph); });

  auto cfg_file = std::make_shared<std::string>();
  auto reference = std::make_shared<bool>(false);
  CLI::App* c = app.add_subcommand("config", "print a config as cuae reads it, or every key with its meaning");
  c->footer("--config FILE: the file with every default filled in, as checkpoints store it. --reference: every table "
            "and key, with its default and what it means.");
  CLI::Option* file = c->add_option("--config", *cfg_file, "the TOML config file")->check(CLI::ExistingFile);
  c->add_flag("--reference", *reference, "list every key with its default and meaning")->excludes(file);
  c->callback([c, cfg_file, reference] {
    if (*reference) std::fputs(config_reference().c_str(), stdout);
    else if (!cfg_file->empty()) std::fputs(to_toml(load_config(*cfg_file)).c_str(), stdout);
    else throw CLI::RequiredError("--config FILE or --reference");
  });

  app.add_subcommand("version", "print the version and whether a CUDA device is usable")->callback([] {
    std::printf("cuae %s, CUDA device %s\n", version(),
                cuda_available() ? "available" : ("not available: " + cuda_unavailable_reason()).c_str());
  });
}

}  // namespace cuae::cli
