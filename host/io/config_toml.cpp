// Configs written out through the schema the parser reads (host/io/config_schema.hpp), so a key
// added there is written and documented too: to_toml (a Config, every key) and config_reference
// (every key with its default and what it means).
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <toml++/toml.h>
#include <type_traits>

#include "cuae/config.hpp"
#include "host/io/config_schema.hpp"

namespace cuae {

namespace {

template <class T>
auto toml_value(const T& v) {
  if constexpr (std::is_same_v<T, bool> || std::is_same_v<T, std::string>) {
    return v;
  } else if constexpr (std::is_enum_v<T>) {
    return std::string(config_schema::Spelling<T>::name(v));
  } else if constexpr (std::is_same_v<T, std::vector<std::int64_t>> || std::is_same_v<T, std::vector<int>>) {
    toml::array a;
    for (auto x : v) a.push_back(static_cast<std::int64_t>(x));
    return a;
  } else if constexpr (std::is_same_v<T, float>) {
    // The double nearest the float's shortest decimal (0.01, not 0.0099999997764825821): it
    // reads back as the same float.
    char buf[32];
    const auto end = std::to_chars(buf, buf + sizeof buf, v).ptr;
    return std::strtod(std::string(buf, end).c_str(), nullptr);
  } else if constexpr (std::is_floating_point_v<T>) {
    return static_cast<double>(v);
  } else {
    static_assert(std::is_integral_v<T>, "a config key of a type the writer does not know");
    return static_cast<std::int64_t>(v);
  }
}

// A schema table's keys into a TOML table.
auto writer(toml::table& t) {
  return [&t](const char* key, const auto& member, const char* /*doc*/) { t.insert(key, toml_value(member)); };
}

toml::array blocks(const std::vector<ConvBlockConfig>& bs) {
  toml::array a;
  for (const auto& b : bs) {
    toml::table t;
    config_schema::block_keys(b, writer(t));
    t.insert("padding", b.padding);
    a.push_back(std::move(t));
  }
  return a;
}

}  // namespace

std::string to_toml(const Config& c) {
  toml::table model;
  model.insert("type", toml_value(c.model.type));
  if (c.model.type == ModelType::Conv) {
    model.insert("input", toml_value(c.model.input));
    model.insert("code", c.model.code);
    model.insert("encoder", blocks(c.model.encoder));
    if (!c.model.decoder.empty()) model.insert("decoder", blocks(c.model.decoder));
  } else {
    model.insert("layers", toml_value(c.model.layers));
  }
  config_schema::model_keys(c.model, writer(model));

  toml::table t;
  t.insert("model", std::move(model));
  toml::table noise{{"type", c.noise.enabled ? noise_type_name(c.noise.type) : "none"},
                    {"level", static_cast<double>(c.noise.level)}};
  t.insert("noise", std::move(noise));
  auto section = [&t](const char* name, auto&& fill) {
    toml::table s;
    fill(writer(s));
    t.insert(name, std::move(s));
  };
  section("sparsity", [&](auto w) { config_schema::sparsity_keys(c.sparsity, w); });
  section("contractive", [&](auto w) { config_schema::contractive_keys(c.contractive, w); });
  section("loss", [&](auto w) { config_schema::loss_keys(c.loss, w); });
  section("optimizer", [&](auto w) { config_schema::optimizer_keys(c.optimizer, w); });
  section("train", [&](auto w) { config_schema::train_keys(c.train, w); });
  section("data", [&](auto w) { config_schema::data_keys(c.data, w); });
  section("output", [&](auto w) { config_schema::output_keys(c.output, w); });
  section("pretrain", [&](auto w) { config_schema::pretrain_keys(c.pretrain, w); });
  if (c.model.variational) section("vae", [&](auto w) { config_schema::vae_keys(c.vae, w); });
  std::ostringstream os;
  os << t << "\n";
  return os.str();
}

namespace {

// "key = value" as TOML writes it, padded, then "# doc".
class Reference {
 public:
  void table(const std::string& name) {
    os_ << (first_ ? "" : "\n") << name << "\n";
    first_ = false;
  }
  template <class T>
  void key(const char* key, const T& value, const char* doc) {
    toml::table one;
    one.insert(key, toml_value(value));
    std::ostringstream line;
    line << one;
    std::string text = line.str();
    if (text.size() < 40) text.resize(40, ' ');
    os_ << text << " # " << doc << "\n";
  }
  auto keys() {
    return [this](const char* k, const auto& member, const char* doc) { key(k, member, doc); };
  }
  std::string str() const { return os_.str(); }

 private:
  std::ostringstream os_;
  bool first_ = true;
};

}  // namespace

std::string config_reference() {
  const Config c;
  Reference r;
  r.table("[model]");
  r.key("type", c.model.type, "deep (stacked, symmetric) | conv");
  r.key("layers", std::vector<std::int64_t>{784, 1000, 500, 250, 30},
        "deep: the widths, input first, code last (required); the decoder mirrors them");
  r.key("input", std::vector<std::int64_t>{1, 28, 28}, "conv: channels, height, width of the images (required)");
  r.key("code", c.model.code, "conv: a dense bottleneck of this width after the last encoder block (0: none)");
  config_schema::model_keys(c.model, r.keys());
  for (const char* list : {"[[model.encoder]]", "[[model.decoder]]"}) {
    r.table(std::string(list) + "   # one table per block; without decoder blocks the decoder mirrors the encoder");
    ConvBlockConfig b;
    if (std::string(list) == "[[model.decoder]]") b.type = BlockType::Deconv;
    config_schema::block_keys(b, r.keys());
    r.key("padding", b.padding, "-1: dilation*(kernel-1)/2 (\"same\" size at stride 1)");
  }
  r.table("[vae]   # with [model] variational = true");
  config_schema::vae_keys(c.vae, r.keys());
  r.table("[pretrain]   # cuae pretrain: greedy layer-wise pretraining of a deep model");
  config_schema::pretrain_keys(c.pretrain, r.keys());
  r.table("[noise]   # a denoising autoencoder: corrupt the input, reconstruct the clean one");
  r.key("type", std::string("none"), "none | mask | gaussian | salt_pepper");
  r.key("level", c.noise.level, "mask, salt_pepper: fraction of pixels; gaussian: sigma");
  r.table("[sparsity]");
  config_schema::sparsity_keys(c.sparsity, r.keys());
  r.table("[contractive]");
  config_schema::contractive_keys(c.contractive, r.keys());
  r.table("[loss]");
  config_schema::loss_keys(c.loss, r.keys());
  r.table("[optimizer]");
  config_schema::optimizer_keys(c.optimizer, r.keys());
  r.table("[train]");
  config_schema::train_keys(c.train, r.keys());
  r.table("[data]");
  config_schema::data_keys(c.data, r.keys());
  r.table("[output]");
  config_schema::output_keys(c.output, r.keys());
  return r.str();
}

}  // namespace cuae
