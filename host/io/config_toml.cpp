// to_toml: a Config written back as TOML, every key, through the schema the parser reads
// (host/io/config_schema.hpp), so a key added there is written too.
#include <cstdint>
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
  } else if constexpr (std::is_same_v<T, std::vector<std::int64_t>>) {
    toml::array a;
    for (auto x : v) a.push_back(x);
    return a;
  } else if constexpr (std::is_floating_point_v<T>) {
    return static_cast<double>(v);
  } else {
    static_assert(std::is_integral_v<T>, "a config key of a type the writer does not know");
    return static_cast<std::int64_t>(v);
  }
}

// A schema table's keys into a TOML table.
auto writer(toml::table& t) {
  return [&t](const char* key, const auto& member) { t.insert(key, toml_value(member)); };
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

}  // namespace cuae
