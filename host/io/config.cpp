// Reads configs: the keys come from host/io/config_schema.hpp (shared with to_toml, in
// config_toml.cpp); the rules that relate keys to one another are here, each once.
#include "cuae/config.hpp"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <toml++/toml.h>
#include <type_traits>

#include "host/io/config_schema.hpp"

namespace cuae {

namespace {

using config_schema::Spelling;

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
    } else if constexpr (std::is_enum_v<T>) {
      if (!n->is_string()) fail(key, "expected a string");
      try {
        out = Spelling<T>::parse(n->as_string()->get());
      } catch (const Error& e) {
        fail(key, e.what());
      }
    } else if constexpr (std::is_same_v<T, std::vector<std::int64_t>>) {
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
    } else if constexpr (std::is_same_v<T, std::vector<int>>) {
      const toml::array* a = n->as_array();
      if (!a) fail(key, "expected an array of class indices such as [0] or [3, 5]");
      out.clear();
      for (const auto& e : *a) {
        if (!e.is_integer() || e.as_integer()->get() < 0 || e.as_integer()->get() > 65535)
          fail(key, "expected class indices from 0 to 65535");
        out.push_back(static_cast<int>(e.as_integer()->get()));
      }
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
      static_assert(std::is_integral_v<T>, "a config key of a type the reader does not know");
      if (!n->is_integer()) fail(key, "expected an integer");
      const auto v = n->as_integer()->get();
      if (v < 0) fail(key, "expected a non-negative integer, got " + std::to_string(v));
      // Checked before narrowing: 4294967297 must not become 1 in a 32-bit field.
      if (static_cast<std::uint64_t>(v) > static_cast<std::uint64_t>(std::numeric_limits<T>::max()))
        fail(key, std::to_string(v) + " is too large (at most " + std::to_string(std::numeric_limits<T>::max()) + ")");
      out = static_cast<T>(v);
    }
  }

  // Every key of a schema table (config_schema.hpp).
  auto keys() {
    return [this](const char* key, auto& member, const char* /*doc*/) { get(key, member); };
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

void read_blocks(const toml::node* n, const char* list, const std::string& origin, TableReader& r,
                 std::vector<ConvBlockConfig>& out) {
  if (!n) return;
  const toml::array* arr = n->as_array();
  if (!arr || !arr->is_array_of_tables()) r.fail(list, "expected blocks written as [[model." + std::string(list) + "]] tables");
  int i = 0;
  for (const auto& e : *arr) {
    TableReader b(e.as_table(), origin, "model." + std::string(list) + "[" + std::to_string(i++) + "]");
    ConvBlockConfig blk;
    if (std::string(list) == "decoder") blk.type = BlockType::Deconv;
    config_schema::block_keys(blk, b.keys());
    b.get_or_auto("padding", blk.padding, "\"same\" padding");
    b.finish();
    out.push_back(blk);
  }
}

}  // namespace

#define CUAE_CONFIG_NAME(E) \
  const char* config_name(E v) { return Spelling<E>::name(v); }
CUAE_CONFIG_NAME(ModelType)
CUAE_CONFIG_NAME(BlockType)
CUAE_CONFIG_NAME(PoolKind)
CUAE_CONFIG_NAME(Likelihood)
CUAE_CONFIG_NAME(PretrainMethod)
CUAE_CONFIG_NAME(VisibleUnits)
CUAE_CONFIG_NAME(Precision)
CUAE_CONFIG_NAME(DatasetKind)
CUAE_CONFIG_NAME(ImageSpec::Fit)
CUAE_CONFIG_NAME(BadImagePolicy)
#undef CUAE_CONFIG_NAME

const char* sparsity_name(SparsityConfig::Kind k) { return Spelling<SparsityConfig::Kind>::name(k); }

namespace {

// One TABLE.KEY=VALUE override into the parsed file: VALUE is read as a TOML value (1e-3, true,
// [1, 28, 28], "text"), and as a plain string when it is not one (runs/x, fashion-mnist).
void apply_override(toml::table& root, const std::string& set) {
  const auto eq = set.find('=');
  const std::string path = set.substr(0, eq);
  const auto dot = path.find('.');
  if (eq == std::string::npos || dot == std::string::npos || dot == 0 || dot + 1 == path.size() ||
      path.find('.', dot + 1) != std::string::npos)
    throw Error("--set " + set + ": expected TABLE.KEY=VALUE, e.g. optimizer.lr=3e-4");
  const std::string table = path.substr(0, dot), key = path.substr(dot + 1), text = set.substr(eq + 1);
  toml::table parsed;
  try {
    parsed = toml::parse("v = " + text);
  } catch (const toml::parse_error&) {
    parsed = toml::table{{"v", text}};
  }
  if (!root.contains(table)) root.insert(table, toml::table{});
  toml::table* t = root[table].as_table();
  if (!t) throw Error("--set " + set + ": \"" + table + "\" is not a table");
  t->insert_or_assign(key, parsed["v"]);
}

}  // namespace

Config parse_config(const std::string& text, const std::string& origin) { return parse_config(text, origin, {}); }

Config parse_config(const std::string& text, const std::string& origin, const std::vector<std::string>& overrides) {
  toml::table root;
  try {
    root = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << origin << ":" << e.source().begin.line << ":" << e.source().begin.column << ": TOML syntax error: "
       << e.description();
    throw Error(os.str());
  }
  for (const auto& set : overrides) apply_override(root, set);
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
    const bool conv = c.model.type == ModelType::Conv;
    r.get(conv ? "input" : "layers", conv ? c.model.input : c.model.layers);
    if (conv) {
      r.get("code", c.model.code);
      for (const char* list : {"encoder", "decoder"}) {
        r.mark(list);
        read_blocks(root["model"].as_table()->get(list), list, origin, r,
                    std::string(list) == "encoder" ? c.model.encoder : c.model.decoder);
      }
      if (c.model.input.size() != 3) r.fail("input", "expected [channels, height, width], e.g. [1, 28, 28]");
      if (c.model.input[0] != 1 && c.model.input[0] != 3) r.fail("input", "images have 1 or 3 channels");
      if (c.model.encoder.empty()) r.fail("encoder", "a conv model needs at least one [[model.encoder]] block");
    }
    config_schema::model_keys(c.model, r.keys());
    if (conv && c.model.tied_weights)
      r.fail("tied_weights", "is a dense-model option (conv models have their own decoder filters)");
    if (!(c.model.leaky_slope > 0.0f)) r.fail("leaky_slope", "must be > 0");
    if (c.model.variational && c.model.tied_weights)
      r.fail("tied_weights", "a variational model's code layer is a Gaussian head; its decoder has its own weights");
    if (c.model.variational && conv && c.model.code <= 0)
      r.fail("code", "a convolutional VAE needs a dense latent layer: set code, e.g. 32");
    // A VAE's decoder runs alone (sampling, interpolation): it cannot unpool with indices that only
    // the encoder's max pools produce.
    if (c.model.variational && conv) {
      bool max_pool = false, unpool = c.model.decoder.empty();  // a mirrored decoder unpools each max pool
      for (const auto& b : c.model.encoder) max_pool = max_pool || b.pool == PoolKind::Max;
      for (const auto& b : c.model.decoder) unpool = unpool || b.type == BlockType::Unpool;
      if (max_pool && unpool)
        r.fail("encoder", "a VAE's decoder must work without its encoder (sampling, interpolation), but unpooling "
                          "needs the encoder's max-pool indices: use pool = \"avg\" or strided convolutions, or "
                          "[[model.decoder]] blocks without unpool");
    }
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
  auto is_code = [&](int layer) { return layer + 2 == static_cast<int>(c.model.layers.size()); };
  {
    TableReader r(root["vae"].as_table(), origin, "vae");
    config_schema::vae_keys(c.vae, r.keys());
    if (!(c.vae.beta >= 0.0f)) r.fail("beta", "must be >= 0");
    if (!(c.vae.warmup_epochs >= 0.0)) r.fail("warmup_epochs", "must be >= 0");
    if (!(c.vae.sigma > 0.0f)) r.fail("sigma", "must be > 0");
    if (c.vae.samples < 1) r.fail("samples", "must be >= 1");
    r.finish();
    if (root["vae"].as_table() && !c.model.variational)
      throw Error(origin + ": [vae] is given but [model] variational is not true");
  }
  {
    TableReader r(root["pretrain"].as_table(), origin, "pretrain");
    PretrainConfig& p = c.pretrain;
    config_schema::pretrain_keys(p, r.keys());
    if (p.epochs < 1) r.fail("epochs", "must be >= 1");
    if (p.batch_size < 1) r.fail("batch_size", "must be >= 1");
    if (!(p.lr > 0.0f)) r.fail("lr", "must be > 0");
    if (!(p.linear_lr_scale > 0.0f)) r.fail("linear_lr_scale", "must be > 0");
    if (!(p.momentum >= 0.0f && p.momentum < 1.0f)) r.fail("momentum", "must be in [0, 1)");
    if (!(p.initial_momentum >= 0.0f && p.initial_momentum < 1.0f)) r.fail("initial_momentum", "must be in [0, 1)");
    if (!(p.weight_decay >= 0.0f)) r.fail("weight_decay", "must be >= 0");
    if (p.k < 1) r.fail("k", "must be >= 1");
    if (!(p.noise >= 0.0f && p.noise < 1.0f)) r.fail("noise", "must be in [0, 1)");
    r.finish();
  }
  {
    TableReader r(root["noise"].as_table(), origin, "noise");
    std::string type = "none";  // "none", or a noise type
    r.get("type", type);
    r.get("level", c.noise.level);
    c.noise.enabled = type != "none";
    if (c.noise.enabled) {
      try {
        c.noise.type = parse_noise_type(type);
      } catch (const Error& e) {
        r.fail("type", std::string(e.what()) + " (or none)");
      }
    }
    if (c.noise.type == NoiseType::Gaussian) {
      if (!(c.noise.level >= 0.0f)) r.fail("level", "the noise's σ must be >= 0");
    } else if (!(c.noise.level >= 0.0f && c.noise.level <= 1.0f)) {
      r.fail("level", "the corrupted fraction must be in [0, 1]");
    }
    r.finish();
  }
  {
    TableReader r(root["sparsity"].as_table(), origin, "sparsity");
    config_schema::sparsity_keys(c.sparsity, r.keys());
    if (c.sparsity.type != SparsityConfig::Kind::None) {
      const int layer = layer_of(r, c.sparsity.layer);
      if (c.model.variational && is_code(layer))
        r.fail("layer", "a VAE's code is its sampled latent; sparsity applies to hidden layers only");
      const Activation act = act_of(layer);
      const std::int64_t width = c.model.layers[static_cast<std::size_t>(layer) + 1];
      if (c.sparsity.type == SparsityConfig::Kind::KL) {
        if (!(c.sparsity.target > 0.0f && c.sparsity.target < 1.0f)) r.fail("target", "must be in (0, 1)");
        if (act != Activation::Sigmoid)
          r.fail("type", "KL sparsity needs mean activations in (0, 1), but layer \"" + c.sparsity.layer + "\" is " +
                             activation_name(act) + " (use a sigmoid layer, or type = \"l1\" or \"ksparse\")");
      }
      if (c.sparsity.type != SparsityConfig::Kind::KSparse && !(c.sparsity.weight >= 0.0f)) r.fail("weight", "must be >= 0");
      if (c.sparsity.type == SparsityConfig::Kind::KSparse && (c.sparsity.k < 1 || c.sparsity.k > width))
        r.fail("k", "must be in [1, " + std::to_string(width) + "] (the width of layer \"" + c.sparsity.layer + "\"), got " +
                        std::to_string(c.sparsity.k));
    }
    r.finish();
  }
  {
    TableReader r(root["contractive"].as_table(), origin, "contractive");
    config_schema::contractive_keys(c.contractive, r.keys());
    if (!(c.contractive.weight >= 0.0f)) r.fail("weight", "must be >= 0");
    if (c.contractive.weight > 0.0f) {
      const int layer = layer_of(r, c.contractive.layer);
      if (c.model.variational && is_code(layer))
        r.fail("layer", "a VAE's code is its sampled latent; the contractive penalty applies to hidden layers only");
      const Activation act = act_of(layer);
      if (!contractive_supports(act))
        r.fail("layer", "the contractive penalty does not support " + std::string(activation_name(act)) + " layers (\"" +
                            c.contractive.layer + "\")");
      if (c.model.type == ModelType::Conv && !(c.model.code > 0 && is_code(layer)))
        r.fail("layer", "in a conv model the contractive penalty applies to the dense code layer (set [model] code)");
    }
    r.finish();
  }
  {
    TableReader r(root["loss"].as_table(), origin, "loss");
    config_schema::loss_keys(c.loss, r.keys());
    r.finish();
    if (c.model.variational) {
      if (c.loss.reduction != Reduction::SumPerSample) r.fail("reduction", "a VAE's objective is per image: use \"sum\"");
      const bool bern = c.vae.likelihood == Likelihood::Bernoulli;
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
    r.get("type", c.optimizer.type);
    if (c.optimizer.type == OptimizerType::SGD) c.optimizer.momentum = 0.9f;  // SGD's default momentum
    config_schema::optimizer_keys(c.optimizer, r.keys());
    if (!(c.optimizer.l1 >= 0.0f)) r.fail("l1", "must be >= 0");
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
    config_schema::train_keys(c.train, r.keys());
    {
      // The key before `precision`: still read, so older configs and checkpoints load unchanged.
      bool tf32 = false;
      const bool given = r.has("tf32");
      r.get("tf32", tf32);
      if (given) {
        if (r.has("precision") && (c.train.precision == Precision::TF32) != tf32)
          r.fail("tf32", "contradicts precision = \"" + std::string(config_name(c.train.precision)) + "\"; keep only precision");
        c.train.precision = tf32 ? Precision::TF32 : Precision::FP32;
      }
    }
    if (c.train.checkpoint_minutes < 0.0) r.fail("checkpoint_minutes", "must be >= 0");
    if (!(c.train.validation >= 0.0 && c.train.validation < 1.0)) r.fail("validation", "must be a fraction in [0, 1)");
    if (c.train.patience > 0 && c.train.validation <= 0.0)
      r.fail("patience", "early stopping needs a validation split: set [train] validation, e.g. 0.1");
    if (c.train.batch_size <= 0) r.fail("batch_size", "must be > 0");
    if (c.train.epochs < 1) r.fail("epochs", "must be >= 1");
    if (c.train.log_every <= 0) r.fail("log_every", "must be > 0");
    if (c.train.device != "auto" && c.train.device != "cuda" && c.train.device != "cpu")
      r.fail("device", "expected auto, cuda or cpu, got \"" + c.train.device + "\"");
    r.finish();
  }
  {
    TableReader r(root["data"].as_table(), origin, "data");
    config_schema::data_keys(c.data, r.keys());
    const DatasetKind ds = c.data.dataset;
    if (ds == DatasetKind::Idx && (c.data.train_images.empty() || c.data.test_images.empty()))
      r.fail("train_images", "dataset = \"idx\" needs train_images and test_images paths");
    if (ds == DatasetKind::Images && (c.data.train_dir.empty() || c.data.test_dir.empty()))
      r.fail("train_dir", "dataset = \"images\" needs train_dir and test_dir folders");
    if (c.data.stream && ds != DatasetKind::Images) r.fail("stream", "streaming reads image folders (dataset = \"images\")");
    if (!c.data.classes.empty() && c.data.stream) r.fail("classes", "a streamed training set cannot be filtered by class");
    if (!(c.data.contamination >= 0.0 && c.data.contamination < 1.0)) r.fail("contamination", "must be a fraction in [0, 1)");
    if (c.data.contamination > 0.0 && c.data.classes.empty())
      r.fail("contamination", "mixes other classes into the [data] classes: set classes too");
    if (!c.data.image_size.empty() && (c.data.image_size.size() != 3 || (c.data.image_size[0] != 1 && c.data.image_size[0] != 3)))
      r.fail("image_size", "expected [channels, height, width] with 1 or 3 channels");
    if (ds == DatasetKind::Images && c.data.image_size.empty()) {
      if (c.model.type != ModelType::Conv)
        r.fail("image_size", "dataset = \"images\" with a dense model needs image_size = [C, H, W]");
      c.data.image_size = c.model.input;
    }
    if (ds == DatasetKind::Cifar10 && c.data.image_size.empty()) c.data.image_size = {3, 32, 32};
    // The images must be what the model reads.
    if (!c.data.image_size.empty()) {
      const auto& s = c.data.image_size;
      const std::int64_t features = s[0] * s[1] * s[2];
      if (c.model.type == ModelType::Conv && c.model.input != s)
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
    config_schema::output_keys(c.output, r.keys());
    r.finish();
  }
  return c;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw Error(path + ": is a folder, not a config file");
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open config file");
  std::ostringstream ss;
  ss << f.rdbuf();
  return parse_config(ss.str(), overrides.empty() ? path : path + " (with --set)", overrides);
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
    if (!cuda_available())
      throw Error("device = \"cuda\" but no usable CUDA device is present (" + cuda_unavailable_reason() + "; use \"auto\" or \"cpu\")");
    return Device::CUDA;
  }
  if (device == "auto") return cuda_available() ? Device::CUDA : Device::CPU;
  throw Error("unknown device \"" + device + "\" (expected auto, cuda or cpu)");
}

}  // namespace cuae
