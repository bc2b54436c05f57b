#include "cuae/graph.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "host/graph/node.hpp"

namespace cuae {

namespace {
const char* const kActNames[] = {"identity", "relu", "leaky_relu", "sigmoid", "tanh", "gelu"};
const char* const kLossNames[] = {"mse", "l1", "bce"};
const char* const kNoiseNames[] = {"mask", "gaussian", "salt_pepper"};
const char* const kUpsampleNames[] = {"nearest", "bilinear"};
}  // namespace

const char* upsample_mode_name(UpsampleMode m) { return kUpsampleNames[static_cast<int>(m)]; }

UpsampleMode parse_upsample_mode(const std::string& s) {
  for (int i = 0; i < 2; ++i)
    if (s == kUpsampleNames[i]) return static_cast<UpsampleMode>(i);
  throw Error("unknown upsampling mode \"" + s + "\" (expected nearest or bilinear)");
}

const char* activation_name(Activation a) { return kActNames[static_cast<int>(a)]; }

Activation parse_activation(const std::string& s) {
  for (int i = 0; i < 6; ++i)
    if (s == kActNames[i]) return static_cast<Activation>(i);
  if (s == "linear" || s == "none") return Activation::Identity;
  throw Error("unknown activation \"" + s + "\" (expected identity, linear, relu, leaky_relu, sigmoid, tanh or gelu)");
}

const char* loss_type_name(LossType l) { return kLossNames[static_cast<int>(l)]; }

LossType parse_loss_type(const std::string& s) {
  for (int i = 0; i < 3; ++i)
    if (s == kLossNames[i]) return static_cast<LossType>(i);
  if (s == "cross_entropy" || s == "bce_with_logits") return LossType::BCEWithLogits;
  throw Error("unknown loss \"" + s + "\" (expected mse, l1 or bce)");
}

const char* noise_type_name(NoiseType n) { return kNoiseNames[static_cast<int>(n)]; }

NoiseType parse_noise_type(const std::string& s) {
  for (int i = 0; i < 3; ++i)
    if (s == kNoiseNames[i]) return static_cast<NoiseType>(i);
  if (s == "masking") return NoiseType::Mask;
  if (s == "salt_and_pepper" || s == "salt-and-pepper") return NoiseType::SaltPepper;
  throw Error("unknown noise \"" + s + "\" (expected mask, gaussian or salt_pepper)");
}

Init Init::glorot_uniform(std::int64_t fan_in, std::int64_t fan_out, float gain) {
  return uniform(gain * std::sqrt(6.0f / static_cast<float>(fan_in + fan_out)));
}

Init Init::he_uniform(std::int64_t fan_in) { return uniform(std::sqrt(6.0f / static_cast<float>(fan_in))); }

int Graph::add_value(ValueInfo v) {
  for (auto d : v.shape)
    CUAE_CHECK(d > 0, "value \"" + v.name + "\" has a non-positive dimension: " + shape_str(v.shape));
  values_.push_back(std::move(v));
  return static_cast<int>(values_.size()) - 1;
}

const Graph::ValueInfo& Graph::info(Value v) const {
  CUAE_CHECK(v.id >= 0 && v.id < static_cast<int>(values_.size()), "invalid value handle " + std::to_string(v.id));
  return values_[static_cast<std::size_t>(v.id)];
}

Value Graph::find(const std::string& name) const {
  for (std::size_t i = 0; i < values_.size(); ++i)
    if (values_[i].name == name) return Value{static_cast<int>(i)};
  return {};
}

Value Graph::input(const std::string& name, Shape shape) {
  CUAE_CHECK(shape.size() == 2 || shape.size() == 4,
             "input \"" + name + "\" must be 2-D [batch, features] or 4-D [batch, height, width, channels], got " +
                 shape_str(shape));
  CUAE_CHECK(!find(name).valid(), "duplicate value name \"" + name + "\"");
  return {add_value({name, std::move(shape), ValueKind::Input, {}, false, -1})};
}

Value Graph::param(const std::string& name, Shape shape, Init init, bool decay) {
  CUAE_CHECK(shape.size() == 1 || shape.size() == 2 || shape.size() == 4,
             "parameter \"" + name + "\" must be 1-D, 2-D or 4-D, got " + shape_str(shape));
  CUAE_CHECK(!find(name).valid(), "duplicate parameter name \"" + name + "\"");
  return {add_value({name, std::move(shape), ValueKind::Param, init, decay, -1})};
}

std::string Graph::node_name(const std::string& given, const char* kind) const {
  return given.empty() ? std::string(kind) + std::to_string(nodes_.size()) : given;
}

Value Graph::add_node(detail::Node n, const std::vector<std::pair<std::string, Shape>>& outputs, bool scalar) {
  const int node = static_cast<int>(nodes_.size());
  for (const auto& [name, shape] : outputs)
    n.outputs.push_back(add_value({name, shape, scalar ? ValueKind::Scalar : ValueKind::Activation, {}, false, node}));
  const int first = n.outputs.front();
  nodes_.push_back(std::make_shared<const detail::Node>(std::move(n)));
  return {first};
}

void Graph::check_bias_and_slope(const std::string& nm, Value b, std::int64_t width, Activation act, float slope) const {
  if (b.valid()) {
    const auto& bi = info(b);
    CUAE_CHECK(bi.kind == ValueKind::Param && bi.shape == Shape{width},
               nm + ": bias " + shape_str(bi.shape) + " must be a parameter of shape [" + std::to_string(width) + "]");
  }
  CUAE_CHECK(act != Activation::LeakyReLU || slope > 0.0f, nm + ": leaky ReLU slope must be > 0");
}

Value Graph::add_layer_node(detail::Node n, const Shape& ys, Activation act) {
  const std::string nm = n.name;
  // GELU's derivative needs the pre-activation; every other activation's comes from the output.
  if (act == Activation::GELU) return add_node(std::move(n), {{nm + ".out", ys}, {nm + ".pre", ys}});
  return add_node(std::move(n), {{nm + ".out", ys}});
}

const detail::Node* Graph::producer(Value v) const {
  const int p = info(v).producer;
  return p >= 0 ? nodes_[static_cast<std::size_t>(p)].get() : nullptr;
}

void Graph::mark_output(Value v) {
  info(v);
  for (int o : outputs_)
    if (o == v.id) return;
  outputs_.push_back(v.id);
}

std::string Graph::describe() const {
  std::ostringstream os;
  for (const auto& n : nodes_) {
    os << n->name << ": ";
    for (std::size_t i = 0; i < n->inputs.size(); ++i) {
      if (n->inputs[i] < 0) continue;
      const auto& v = values_[static_cast<std::size_t>(n->inputs[i])];
      os << (i ? ", " : "") << v.name << " " << shape_str(v.shape);
    }
    const auto& y = values_[static_cast<std::size_t>(n->outputs[0])];
    os << " -> " << y.name << " " << shape_str(y.shape);
    const std::string attrs = n->desc->describe(*n);
    if (!attrs.empty()) os << " (" << attrs << ")";
    os << "\n";
  }
  return os.str();
}

}  // namespace cuae
