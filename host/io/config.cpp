#include "cuae/config.hpp"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <toml++/toml.h>

namespace cuae {

namespace {

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// Reads typed keys from one table and remembers which keys exist, so leftovers are reported.
class TableReader {
 public:
  TableReader(const toml::table* t, std::string origin, std::string table)
      : t_(t), origin_(std::move(origin)), table_(std::move(table)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw Error(origin_ + ": [" + table_ + "] " + key + ": " + what);
  }

  template <class T>
  void get(const char* key, T& out) {
    seen_.insert(key);
    if (!t_) return;
    const toml::node* n = t_->get(key);
    if (!n) return;
    if constexpr (std::is_same_v<T, bool>) {
      if (!n->is_boolean()) fail(key, "expected true or false");
      out = n->as_boolean()->get();
    } else if constexpr (std::is_same_v<T, std::string>) {
      if (!n->is_string()) fail(key, "expected a string");
      out = n->as_string()->get();
    } else if constexpr (std::is_floating_point_v<T>) {
      // No setting means anything as inf or nan, and a value beyond the type's range would
      // become one: both are refused here, naming the key, before any use.
      double v = 0.0;
      if (n->is_integer()) v = static_cast<double>(n->as_integer()->get());
      else if (n->is_floating_point()) v = n->as_floating_point()->get();
      else fail(key, "expected a number");
      if (!std::isfinite(v)) fail(key, "expected a finite number, got " + number(v));
      if (std::abs(v) > static_cast<double>(std::numeric_limits<T>::max()))
        fail(key, number(v) + " is beyond the range of a " + (sizeof(T) == 4 ? "32" : "64") + "-bit float");
      out = static_cast<T>(v);
    } else {
      if (!n->is_integer()) fail(key, "expected an integer");
      const auto v = n->as_integer()->get();
      if (v < 0) fail(key, "expected a non-negative integer, got " + std::to_string(v));
      // Checked before narrowing: 4294967297 must not become 1 in a 32-bit field.
      if (static_cast<std::uint64_t>(v) > static_cast<std::uint64_t>(std::numeric_limits<T>::max()))
        fail(key, std::to_string(v) + " is too large (at most " + std::to_string(std::numeric_limits<T>::max()) + ")");
      out = static_cast<T>(v);
    }
  }

  void get_layers(const char* key, std::vector<std::int64_t>& out) {
    seen_.insert(key);
    if (!t_) return;
    const toml::node* n = t_->get(key);
    if (!n) return;
    const toml::array* a = n->as_array();
    if (!a) fail(key, "expected an array of integers such as [784, 1000, 500, 250, 30]");
    out.clear();
    for (const auto& e : *a) {
      if (!e.is_integer()) fail(key, "expected an array of integers");
      const auto v = e.as_integer()->get();
      if (v <= 0) fail(key, "widths must be positive, got " + std::to_string(v));
      if (v > std::numeric_limits<std::int32_t>::max())
        fail(key, "width " + std::to_string(v) + " is too large (at most " +
                      std::to_string(std::numeric_limits<std::int32_t>::max()) + ")");
      out.push_back(v);
    }
  }

  bool has(const char* key) const { return t_ && t_->get(key) != nullptr; }

  // A key read by other means (an array of tables), so finish() does not report it.
  void mark(const char* key) { seen_.insert(key); }

  // An integer that may also be -1 ("automatic", `meaning` says what that is).
  void get_or_auto(const char* key, int& out, const char* meaning) {
    seen_.insert(key);
    if (!t_) return;
    const toml::node* n = t_->get(key);
    if (!n) return;
    if (!n->is_integer()) fail(key, "expected an integer");
    const auto v = n->as_integer()->get();
    if (v < -1 || v > std::numeric_limits<int>::max())
      fail(key, "expected -1 (" + std::string(meaning) + ") or a non-negative integer, got " + std::to_string(v));
    out = static_cast<int>(v);
  }

  void finish() const {
    if (!t_) return;
    for (const auto& [k, v] : *t_)
      if (!seen_.count(std::string(k.str()))) fail(std::string(k.str()), "unknown key");
  }

 private:
  const toml::table* t_;
  std::string origin_, table_;
  std::set<std::string> seen_;
};

template <class F>
auto parse_enum(TableReader& r, const char* key, const std::string& text, F parse) {
  try {
    return parse(text);
  } catch (const Error& e) {
    r.fail(key, e.what());
  }
}

}  // namespace

Config parse_config(const std::string& text, const std::string& origin) {
  toml::table root;
  try {
    root = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << origin << ":" << e.source().begin.line << ":" << e.source().begin.column << ": TOML syntax error: "
       << e.description();
    throw Error(os.str());
  }
  static const std::set<std::string> tables{"model", "vae", "pretrain", "noise", "sparsity", "contractive", "loss",
                                            "optimizer", "train", "data", "output"};
  for (const auto& [k, v] : root) {
    if (!tables.count(std::string(k.str())))
      throw Error(origin + ": unknown table [" + std::string(k.str()) +
                  "] (expected model, vae, pretrain, noise, sparsity, contractive, loss, optimizer, train, data, output)");
    if (!v.is_table()) throw Error(origin + ": \"" + std::string(k.str()) + "\" must be a table");
  }
  Config c;
  {
    TableReader r(root["model"].as_table(), origin, "model");
    r.get("type", c.model.type);
    if (c.model.type != "deep" && c.model.type != "conv")
      r.fail("type", "unknown model type \"" + c.model.type + "\" (expected deep or conv)");
    const bool conv = c.model.type == "conv";
    r.get_layers(conv ? "input" : "layers", conv ? c.model.input : c.model.layers);
    if (conv) {
      r.get("code", c.model.code);
      for (const char* list : {"encoder", "decoder"}) {
        r.mark(list);
        const toml::node* n = root["model"].as_table()->get(list);
        if (!n) continue;
        const toml::array* arr = n->as_array();
        if (!arr || !arr->is_array_of_tables())
          r.fail(list, "expected blocks written as [[model." + std::string(list) + "]] tables");
        auto& out = std::string(list) == "encoder" ? c.model.encoder : c.model.decoder;
        int i = 0;
        for (const auto& e : *arr) {
          TableReader b(e.as_table(), origin, "model." + std::string(list) + "[" + std::to_string(i++) + "]");
          ConvBlockConfig blk;
          if (std::string(list) == "decoder") blk.type = "deconv";
          b.get("type", blk.type);
          b.get("channels", blk.channels);
          b.get("kernel", blk.kernel);
          b.get("stride", blk.stride);
          b.get_or_auto("padding", blk.padding, "\"same\" padding");
          b.get("dilation", blk.dilation);
          b.get("output_padding", blk.output_padding);
          b.get("pool", blk.pool);
          b.get("pool_size", blk.pool_size);
          b.get("mode", blk.mode);
          b.get("scale", blk.scale);
          b.finish();
          out.push_back(blk);
        }
      }
      if (c.model.input.size() != 3) r.fail("input", "expected [channels, height, width], e.g. [1, 28, 28]");
      if (c.model.input[0] != 1 && c.model.input[0] != 3) r.fail("input", "images have 1 or 3 channels");
      if (c.model.encoder.empty()) r.fail("encoder", "a conv model needs at least one [[model.encoder]] block");
      if (c.model.tied_weights) r.fail("tied_weights", "is a dense-model option (conv models have their own decoder filters)");
    }
    std::string act = activation_name(c.model.activation), code = activation_name(c.model.code_activation),
                out = activation_name(c.model.output_activation);
    r.get("activation", act);
    r.get("code_activation", code);
    r.get("output_activation", out);
    c.model.activation = parse_enum(r, "activation", act, parse_activation);
    c.model.code_activation = parse_enum(r, "code_activation", code, parse_activation);
    c.model.output_activation = parse_enum(r, "output_activation", out, parse_activation);
    r.get("tied_weights", c.model.tied_weights);
    r.get("leaky_slope", c.model.leaky_slope);
    if (!(c.model.leaky_slope > 0.0f)) r.fail("leaky_slope", "must be > 0");
    r.get("dropout", c.model.dropout);
    r.get("variational", c.model.variational);
    if (c.model.variational && c.model.tied_weights)
      r.fail("tied_weights", "a variational model's code layer is a Gaussian head; its decoder has its own weights");
    if (c.model.variational && conv && c.model.code <= 0)
      r.fail("code", "a convolutional VAE needs a dense latent layer: set code, e.g. 32");
    if (!(c.model.dropout >= 0.0f && c.model.dropout < 1.0f)) r.fail("dropout", "must be in [0, 1)");
    r.finish();
    if (conv) {
      // Shape inference now, so a model that cannot be built is reported when the file is read.
      try {
        (void)conv_layer_shapes(c.model);
        c.model.layers = conv_stage_widths(c.model);
      } catch (const Error& e) {
        throw Error(origin + ": [model] " + e.what());
      }
    } else if (c.model.layers.size() < 2) {
      r.fail("layers", "needs at least an input and a code width, e.g. [784, 1000, 500, 250, 30]");
    }
  }
  // The layer a regularizer names, and that layer's activation.
  auto layer_of = [&](TableReader& r, const std::string& name) {
    try {
      return encoder_layer_index(c.model, name, "layer");
    } catch (const Error& e) {
      r.fail("layer", e.what());
    }
  };
  auto act_of = [&](int layer) {
    return layer + 2 == static_cast<int>(c.model.layers.size()) ? c.model.code_activation : c.model.activation;
  };
  {
    TableReader r(root["vae"].as_table(), origin, "vae");
    r.get("beta", c.vae.beta);
    r.get("warmup_epochs", c.vae.warmup_epochs);
    r.get("likelihood", c.vae.likelihood);
    r.get("sigma", c.vae.sigma);
    r.get("samples", c.vae.samples);
    if (!(c.vae.beta >= 0.0f && std::isfinite(c.vae.beta))) r.fail("beta", "must be >= 0");
    if (!(c.vae.warmup_epochs >= 0.0)) r.fail("warmup_epochs", "must be >= 0");
    if (c.vae.likelihood != "bernoulli" && c.vae.likelihood != "gaussian")
      r.fail("likelihood", "expected bernoulli or gaussian, got \"" + c.vae.likelihood + "\"");
    if (!(c.vae.sigma > 0.0f && std::isfinite(c.vae.sigma))) r.fail("sigma", "must be > 0");
    if (c.vae.samples < 1) r.fail("samples", "must be >= 1");
    r.finish();
    if (root["vae"].as_table() && !c.model.variational)
      throw Error(origin + ": [vae] is given but [model] variational is not true");
  }
  {
    TableReader r(root["pretrain"].as_table(), origin, "pretrain");
    PretrainConfig& p = c.pretrain;
    r.get("method", p.method);
    r.get("epochs", p.epochs);
    r.get("batch_size", p.batch_size);
    r.get("lr", p.lr);
    r.get("linear_lr_scale", p.linear_lr_scale);
    r.get("momentum", p.momentum);
    r.get("initial_momentum", p.initial_momentum);
    r.get("momentum_switch_epoch", p.momentum_switch_epoch);
    r.get("weight_decay", p.weight_decay);
    r.get("k", p.k);
    r.get("visible", p.visible);
    r.get("noise", p.noise);
    if (p.method != "rbm" && p.method != "dae") r.fail("method", "expected rbm or dae, got \"" + p.method + "\"");
    if (p.epochs < 1) r.fail("epochs", "must be >= 1");
    if (p.batch_size < 1) r.fail("batch_size", "must be >= 1");
    if (!(p.lr > 0.0f)) r.fail("lr", "must be > 0");
    if (!(p.linear_lr_scale > 0.0f)) r.fail("linear_lr_scale", "must be > 0");
    if (!(p.momentum >= 0.0f && p.momentum < 1.0f)) r.fail("momentum", "must be in [0, 1)");
    if (!(p.initial_momentum >= 0.0f && p.initial_momentum < 1.0f)) r.fail("initial_momentum", "must be in [0, 1)");
    if (!(p.weight_decay >= 0.0f)) r.fail("weight_decay", "must be >= 0");
    if (p.k < 1) r.fail("k", "must be >= 1");
    if (p.visible != "bernoulli" && p.visible != "gaussian") r.fail("visible", "expected bernoulli or gaussian");
    if (!(p.noise >= 0.0f && p.noise < 1.0f)) r.fail("noise", "must be in [0, 1)");
    r.finish();
  }
  {
    TableReader r(root["noise"].as_table(), origin, "noise");
    std::string type = "none";
    r.get("type", type);
    r.get("level", c.noise.level);
    c.noise.enabled = type != "none";
    if (c.noise.enabled) c.noise.type = parse_enum(r, "type", type, parse_noise_type);
    if (c.noise.type == NoiseType::Gaussian) {
      if (!(c.noise.level >= 0.0f) || !std::isfinite(c.noise.level)) r.fail("level", "the noise's σ must be >= 0");
    } else if (!(c.noise.level >= 0.0f && c.noise.level <= 1.0f)) {
      r.fail("level", "the corrupted fraction must be in [0, 1]");
    }
    r.finish();
  }
  {
    TableReader r(root["sparsity"].as_table(), origin, "sparsity");
    std::string type = "none";
    r.get("type", type);
    r.get("layer", c.sparsity.layer);
    r.get("target", c.sparsity.target);
    r.get("weight", c.sparsity.weight);
    r.get("k", c.sparsity.k);
    if (type == "none") c.sparsity.type = SparsityConfig::Kind::None;
    else if (type == "kl") c.sparsity.type = SparsityConfig::Kind::KL;
    else if (type == "l1") c.sparsity.type = SparsityConfig::Kind::L1;
    else if (type == "ksparse" || type == "k-sparse") c.sparsity.type = SparsityConfig::Kind::KSparse;
    else r.fail("type", "expected none, kl, l1 or ksparse, got \"" + type + "\"");
    if (c.sparsity.type != SparsityConfig::Kind::None) {
      const int layer = layer_of(r, c.sparsity.layer);
      if (c.model.variational && layer + 2 == static_cast<int>(c.model.layers.size()))
        r.fail("layer", "a VAE's code is its sampled latent; sparsity applies to hidden layers only");
      const Activation act = act_of(layer);
      const std::int64_t width = c.model.layers[static_cast<std::size_t>(layer) + 1];
      if (c.sparsity.type == SparsityConfig::Kind::KL) {
        if (!(c.sparsity.target > 0.0f && c.sparsity.target < 1.0f)) r.fail("target", "must be in (0, 1)");
        if (act != Activation::Sigmoid)
          r.fail("type", "KL sparsity needs mean activations in (0, 1), but layer \"" + c.sparsity.layer + "\" is " +
                             activation_name(act) + " (use a sigmoid layer, or type = \"l1\" or \"ksparse\")");
      }
      if (c.sparsity.type != SparsityConfig::Kind::KSparse && !(c.sparsity.weight >= 0.0f && std::isfinite(c.sparsity.weight)))
        r.fail("weight", "must be >= 0");
      if (c.sparsity.type == SparsityConfig::Kind::KSparse && (c.sparsity.k < 1 || c.sparsity.k > width))
        r.fail("k", "must be in [1, " + std::to_string(width) + "] (the width of layer \"" + c.sparsity.layer + "\"), got " +
                        std::to_string(c.sparsity.k));
    }
    r.finish();
  }
  {
    TableReader r(root["contractive"].as_table(), origin, "contractive");
    r.get("weight", c.contractive.weight);
    r.get("layer", c.contractive.layer);
    if (!(c.contractive.weight >= 0.0f && std::isfinite(c.contractive.weight))) r.fail("weight", "must be >= 0");
    if (c.contractive.weight > 0.0f) {
      const int layer = layer_of(r, c.contractive.layer);
      if (c.model.variational && layer + 2 == static_cast<int>(c.model.layers.size()))
        r.fail("layer", "a VAE's code is its sampled latent; the contractive penalty applies to hidden layers only");
      const Activation act = act_of(layer);
      if (act == Activation::GELU)
        r.fail("layer", "the contractive penalty supports identity, relu, leaky_relu, sigmoid and tanh layers; \"" +
                            c.contractive.layer + "\" is gelu");
      if (c.model.type == "conv" && !(c.model.code > 0 && layer + 2 == static_cast<int>(c.model.layers.size())))
        r.fail("layer", "in a conv model the contractive penalty applies to the dense code layer (set [model] code)");
    }
    r.finish();
  }
  {
    TableReader r(root["loss"].as_table(), origin, "loss");
    std::string type = loss_type_name(c.loss.type), red = c.loss.reduction == Reduction::Mean ? "mean" : "sum";
    r.get("type", type);
    r.get("reduction", red);
    c.loss.type = parse_enum(r, "type", type, parse_loss_type);
    if (red == "mean") c.loss.reduction = Reduction::Mean;
    else if (red == "sum") c.loss.reduction = Reduction::SumPerSample;
    else r.fail("reduction", "expected \"sum\" (per image) or \"mean\" (per element), got \"" + red + "\"");
    r.finish();
    if (c.model.variational) {
      if (c.loss.reduction != Reduction::SumPerSample)
        r.fail("reduction", "a VAE's objective is per image: use \"sum\"");
      const bool bern = c.vae.likelihood == "bernoulli";
      if (bern && c.loss.type != LossType::BCEWithLogits)
        r.fail("type", "[vae] likelihood = \"bernoulli\" is the loss \"bce\"");
      if (!bern && c.loss.type != LossType::MSE) r.fail("type", "[vae] likelihood = \"gaussian\" is the loss \"mse\"");
    }
    if (c.loss.type == LossType::BCEWithLogits && c.model.output_activation != Activation::Sigmoid)
      throw Error(origin + ": [loss] type = \"bce\" needs [model] output_activation = \"sigmoid\" (the loss is "
                           "computed on the logits and the reconstruction is their sigmoid)");
  }
  {
    TableReader r(root["optimizer"].as_table(), origin, "optimizer");
    std::string type = optimizer_name(c.optimizer.type);
    r.get("type", type);
    c.optimizer.type = parse_enum(r, "type", type, parse_optimizer);
    if (c.optimizer.type == OptimizerType::SGD) c.optimizer.momentum = 0.9f;
    r.get("lr", c.optimizer.lr);
    r.get("beta1", c.optimizer.beta1);
    r.get("beta2", c.optimizer.beta2);
    r.get("eps", c.optimizer.eps);
    r.get("weight_decay", c.optimizer.weight_decay);
    r.get("momentum", c.optimizer.momentum);
    r.get("nesterov", c.optimizer.nesterov);
    r.get("l1", c.optimizer.l1);
    if (!(c.optimizer.l1 >= 0.0f && std::isfinite(c.optimizer.l1))) r.fail("l1", "must be >= 0");
    if (!(c.optimizer.lr > 0.0f)) r.fail("lr", "must be > 0");
    if (!(c.optimizer.beta1 >= 0.0f && c.optimizer.beta1 < 1.0f)) r.fail("beta1", "must be in [0, 1)");
    if (!(c.optimizer.beta2 >= 0.0f && c.optimizer.beta2 < 1.0f)) r.fail("beta2", "must be in [0, 1)");
    if (!(c.optimizer.eps > 0.0f)) r.fail("eps", "must be > 0");
    if (!(c.optimizer.weight_decay >= 0.0f)) r.fail("weight_decay", "must be >= 0");
    if (!(c.optimizer.momentum >= 0.0f && c.optimizer.momentum < 1.0f)) r.fail("momentum", "must be in [0, 1)");
    r.finish();
  }
  {
    TableReader r(root["train"].as_table(), origin, "train");
    r.get("batch_size", c.train.batch_size);
    r.get("epochs", c.train.epochs);
    r.get("seed", c.train.seed);
    r.get("device", c.train.device);
    r.get("precision", c.train.precision);
    if (c.train.precision != "fp32" && c.train.precision != "tf32")
      r.fail("precision", "expected fp32 or tf32, got \"" + c.train.precision + "\"");
    {
      // The key before `precision`: still read, so older configs and checkpoints load unchanged.
      bool tf32 = false;
      const bool given = r.has("tf32");
      r.get("tf32", tf32);
      if (given) {
        if (r.has("precision") && (c.train.precision == "tf32") != tf32)
          r.fail("tf32", "contradicts precision = \"" + c.train.precision + "\"; keep only precision");
        c.train.precision = tf32 ? "tf32" : "fp32";
      }
    }
    r.get("cuda_graph", c.train.cuda_graph);
    r.get("max_train", c.train.max_train);
    r.get("log_every", c.train.log_every);
    r.get("validation", c.train.validation);
    r.get("patience", c.train.patience);
    r.get("checkpoint_every", c.train.checkpoint_every);
    r.get("checkpoint_minutes", c.train.checkpoint_minutes);
    if (c.train.checkpoint_minutes < 0.0) r.fail("checkpoint_minutes", "must be >= 0");
    if (!(c.train.validation >= 0.0 && c.train.validation < 1.0)) r.fail("validation", "must be a fraction in [0, 1)");
    if (c.train.patience > 0 && c.train.validation <= 0.0)
      r.fail("patience", "early stopping needs a validation split: set [train] validation, e.g. 0.1");
    if (c.train.batch_size <= 0) r.fail("batch_size", "must be > 0");
    if (c.train.log_every <= 0) r.fail("log_every", "must be > 0");
    if (c.train.device != "auto" && c.train.device != "cuda" && c.train.device != "cpu")
      r.fail("device", "expected auto, cuda or cpu, got \"" + c.train.device + "\"");
    r.finish();
  }
  {
    TableReader r(root["data"].as_table(), origin, "data");
    r.get("dataset", c.data.dataset);
    r.get("dir", c.data.dir);
    r.get("train_images", c.data.train_images);
    r.get("train_labels", c.data.train_labels);
    r.get("test_images", c.data.test_images);
    r.get("test_labels", c.data.test_labels);
    r.get("train_dir", c.data.train_dir);
    r.get("test_dir", c.data.test_dir);
    r.get_layers("image_size", c.data.image_size);
    r.get("fit", c.data.fit);
    r.get("on_error", c.data.on_error);
    r.get("stream", c.data.stream);
    r.get("threads", c.data.threads);
    r.get("prefetch", c.data.prefetch);
    r.get("max_test", c.data.max_test);
    const std::string& ds = c.data.dataset;
    if (ds != "fashion-mnist" && ds != "idx" && ds != "images" && ds != "cifar10")
      r.fail("dataset", "expected fashion-mnist, idx, images or cifar10, got \"" + ds + "\"");
    if (ds == "idx" && (c.data.train_images.empty() || c.data.test_images.empty()))
      r.fail("train_images", "dataset = \"idx\" needs train_images and test_images paths");
    if (ds == "images" && (c.data.train_dir.empty() || c.data.test_dir.empty()))
      r.fail("train_dir", "dataset = \"images\" needs train_dir and test_dir folders");
    if (c.data.fit != "crop" && c.data.fit != "resize") r.fail("fit", "expected crop or resize, got \"" + c.data.fit + "\"");
    if (c.data.on_error != "stop" && c.data.on_error != "skip")
      r.fail("on_error", "expected stop or skip, got \"" + c.data.on_error + "\"");
    if (c.data.stream && ds != "images") r.fail("stream", "streaming reads image folders (dataset = \"images\")");
    if (!c.data.image_size.empty() && (c.data.image_size.size() != 3 || (c.data.image_size[0] != 1 && c.data.image_size[0] != 3)))
      r.fail("image_size", "expected [channels, height, width] with 1 or 3 channels");
    if (ds == "images" && c.data.image_size.empty()) {
      if (c.model.type != "conv") r.fail("image_size", "dataset = \"images\" with a dense model needs image_size = [C, H, W]");
      c.data.image_size = c.model.input;
    }
    if (ds == "cifar10" && c.data.image_size.empty()) c.data.image_size = {3, 32, 32};
    // The images must be what the model reads.
    if (!c.data.image_size.empty()) {
      const auto& s = c.data.image_size;
      const std::int64_t features = s[0] * s[1] * s[2];
      if (c.model.type == "conv" && c.model.input != s)
        r.fail("image_size", "the images [" + std::to_string(s[0]) + ", " + std::to_string(s[1]) + ", " + std::to_string(s[2]) +
                                 "] differ from [model] input");
      if (c.model.layers.front() != features)
        r.fail("image_size", "the images have " + std::to_string(features) + " values, the model's input " +
                                 std::to_string(c.model.layers.front()));
    }
    r.finish();
  }
  {
    TableReader r(root["output"].as_table(), origin, "output");
    r.get("dir", c.output.dir);
    r.finish();
  }
  return c;
}

Config load_config(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open config file");
  std::ostringstream ss;
  ss << f.rdbuf();
  return parse_config(ss.str(), path);
}

std::string to_toml(const Config& c) {
  auto layers = toml::array{};
  for (auto l : c.model.layers) layers.push_back(l);
  auto blocks = [](const std::vector<ConvBlockConfig>& bs) {
    toml::array a;
    for (const auto& b : bs)
      a.push_back(toml::table{{"type", b.type},         {"channels", b.channels}, {"kernel", b.kernel},
                              {"stride", b.stride},     {"padding", b.padding},   {"dilation", b.dilation},
                              {"output_padding", b.output_padding},               {"pool", b.pool},
                              {"pool_size", b.pool_size}, {"mode", b.mode},       {"scale", b.scale}});
    return a;
  };
  auto image_size = toml::array{};
  for (auto v : c.data.image_size) image_size.push_back(v);
  toml::table model{{"type", c.model.type},
                    {"activation", activation_name(c.model.activation)},
                    {"code_activation", activation_name(c.model.code_activation)},
                    {"output_activation", activation_name(c.model.output_activation)},
                    {"tied_weights", c.model.tied_weights},
                    {"leaky_slope", static_cast<double>(c.model.leaky_slope)},
                    {"dropout", static_cast<double>(c.model.dropout)},
                    {"variational", c.model.variational}};
  if (c.model.type == "conv") {
    auto input = toml::array{};
    for (auto v : c.model.input) input.push_back(v);
    model.insert("input", input);
    model.insert("code", c.model.code);
    model.insert("encoder", blocks(c.model.encoder));
    if (!c.model.decoder.empty()) model.insert("decoder", blocks(c.model.decoder));
  } else {
    model.insert("layers", layers);
  }
  toml::table t{
      {"model", model},
      {"noise", toml::table{{"type", c.noise.enabled ? noise_type_name(c.noise.type) : "none"},
                            {"level", static_cast<double>(c.noise.level)}}},
      {"sparsity", toml::table{{"type", sparsity_name(c.sparsity.type)},
                               {"layer", c.sparsity.layer},
                               {"target", static_cast<double>(c.sparsity.target)},
                               {"weight", static_cast<double>(c.sparsity.weight)},
                               {"k", c.sparsity.k}}},
      {"contractive", toml::table{{"weight", static_cast<double>(c.contractive.weight)}, {"layer", c.contractive.layer}}},
      {"loss", toml::table{{"type", loss_type_name(c.loss.type)},
                           {"reduction", c.loss.reduction == Reduction::Mean ? "mean" : "sum"}}},
      {"optimizer", toml::table{{"type", optimizer_name(c.optimizer.type)},
                                {"lr", static_cast<double>(c.optimizer.lr)},
                                {"beta1", static_cast<double>(c.optimizer.beta1)},
                                {"beta2", static_cast<double>(c.optimizer.beta2)},
                                {"eps", static_cast<double>(c.optimizer.eps)},
                                {"weight_decay", static_cast<double>(c.optimizer.weight_decay)},
                                {"momentum", static_cast<double>(c.optimizer.momentum)},
                                {"nesterov", c.optimizer.nesterov},
                                {"l1", static_cast<double>(c.optimizer.l1)}}},
      {"train", toml::table{{"batch_size", c.train.batch_size},
                            {"epochs", c.train.epochs},
                            {"seed", static_cast<std::int64_t>(c.train.seed)},
                            {"device", c.train.device},
                            {"precision", c.train.precision},
                            {"cuda_graph", c.train.cuda_graph},
                            {"max_train", c.train.max_train},
                            {"log_every", c.train.log_every},
                            {"validation", c.train.validation},
                            {"patience", c.train.patience},
                            {"checkpoint_every", c.train.checkpoint_every},
                            {"checkpoint_minutes", c.train.checkpoint_minutes}}},
      {"data", toml::table{{"dataset", c.data.dataset},
                           {"dir", c.data.dir},
                           {"train_images", c.data.train_images},
                           {"train_labels", c.data.train_labels},
                           {"test_images", c.data.test_images},
                           {"test_labels", c.data.test_labels},
                           {"train_dir", c.data.train_dir},
                           {"test_dir", c.data.test_dir},
                           {"image_size", image_size},
                           {"fit", c.data.fit},
                           {"on_error", c.data.on_error},
                           {"stream", c.data.stream},
                           {"threads", c.data.threads},
                           {"prefetch", c.data.prefetch},
                           {"max_test", c.data.max_test}}},
      {"output", toml::table{{"dir", c.output.dir}}},
  };
  t.insert("pretrain", toml::table{{"method", c.pretrain.method},
                                   {"epochs", c.pretrain.epochs},
                                   {"batch_size", c.pretrain.batch_size},
                                   {"lr", static_cast<double>(c.pretrain.lr)},
                                   {"linear_lr_scale", static_cast<double>(c.pretrain.linear_lr_scale)},
                                   {"momentum", static_cast<double>(c.pretrain.momentum)},
                                   {"initial_momentum", static_cast<double>(c.pretrain.initial_momentum)},
                                   {"momentum_switch_epoch", c.pretrain.momentum_switch_epoch},
                                   {"weight_decay", static_cast<double>(c.pretrain.weight_decay)},
                                   {"k", c.pretrain.k},
                                   {"visible", c.pretrain.visible},
                                   {"noise", static_cast<double>(c.pretrain.noise)}});
  if (c.model.variational)
    t.insert("vae", toml::table{{"beta", static_cast<double>(c.vae.beta)},
                                {"warmup_epochs", c.vae.warmup_epochs},
                                {"likelihood", c.vae.likelihood},
                                {"sigma", static_cast<double>(c.vae.sigma)},
                                {"samples", c.vae.samples}});
  std::ostringstream os;
  os << t << "\n";
  return os.str();
}

const char* sparsity_name(SparsityConfig::Kind k) {
  switch (k) {
    case SparsityConfig::Kind::None: return "none";
    case SparsityConfig::Kind::KL: return "kl";
    case SparsityConfig::Kind::L1: return "l1";
    case SparsityConfig::Kind::KSparse: return "ksparse";
  }
  return "?";
}

int encoder_layer_index(const ModelConfig& model, const std::string& layer, const std::string& what) {
  const int depth = static_cast<int>(model.layers.size()) - 1;
  if (layer == "code") return depth - 1;
  const std::string prefix = "encoder.";
  if (layer.rfind(prefix, 0) == 0 && layer.size() > prefix.size() && layer.size() < prefix.size() + 6 &&
      layer.find_first_not_of("0123456789", prefix.size()) == std::string::npos) {
    const int i = std::stoi(layer.substr(prefix.size()));
    if (i < depth) return i;
  }
  throw Error(what + ": no encoder layer \"" + layer + "\" (expected \"code\" or encoder.0 ... encoder." +
              std::to_string(depth - 1) + ")");
}

Device resolve_device(const std::string& device) {
  if (device == "cpu") return Device::CPU;
  if (device == "cuda") {
    if (!cuda_available()) throw Error("device = \"cuda\" but no usable CUDA device is present (use \"auto\" or \"cpu\")");
    return Device::CUDA;
  }
  if (device == "auto") return cuda_available() ? Device::CUDA : Device::CPU;
  throw Error("unknown device \"" + device + "\" (expected auto, cuda or cpu)");
}

}  // namespace cuae
