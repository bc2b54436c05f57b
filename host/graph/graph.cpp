#include "cuae/graph.hpp"

#include <cmath>
#include <sstream>

namespace cuae {

namespace {
const char* const kActNames[] = {"identity", "relu", "leaky_relu", "sigmoid", "tanh", "gelu"};
const char* const kLossNames[] = {"mse", "l1", "bce"};
const char* const kNoiseNames[] = {"mask", "gaussian", "salt_pepper"};
}  // namespace

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
  CUAE_CHECK(shape.size() == 2, "input \"" + name + "\" must be 2-D [batch, features], got " + shape_str(shape));
  CUAE_CHECK(!find(name).valid(), "duplicate value name \"" + name + "\"");
  return {add_value({name, std::move(shape), ValueKind::Input, {}, false, -1})};
}

Value Graph::param(const std::string& name, Shape shape, Init init, bool decay) {
  CUAE_CHECK(shape.size() == 1 || shape.size() == 2,
             "parameter \"" + name + "\" must be 1-D or 2-D, got " + shape_str(shape));
  CUAE_CHECK(!find(name).valid(), "duplicate parameter name \"" + name + "\"");
  return {add_value({name, std::move(shape), ValueKind::Param, init, decay, -1})};
}

Value Graph::dense(Value x, Value w, Value b, Activation act, bool w_transposed, float slope, const std::string& name) {
  const std::string nm = name.empty() ? "dense" + std::to_string(nodes_.size()) : name;
  const auto& xi = info(x);
  const auto& wi = info(w);
  CUAE_CHECK(wi.kind == ValueKind::Param, nm + ": weight \"" + wi.name + "\" is not a parameter");
  CUAE_CHECK(xi.shape.size() == 2 && wi.shape.size() == 2,
             nm + ": x " + shape_str(xi.shape) + " and W " + shape_str(wi.shape) + " must be 2-D");
  const std::int64_t in = w_transposed ? wi.shape[0] : wi.shape[1];
  const std::int64_t out = w_transposed ? wi.shape[1] : wi.shape[0];
  CUAE_CHECK(xi.shape[1] == in, nm + ": x " + shape_str(xi.shape) + " does not match W " + shape_str(wi.shape) +
                                    (w_transposed ? " (transposed, [in, out])" : " ([out, in])"));
  if (b.valid()) {
    const auto& bi = info(b);
    CUAE_CHECK(bi.kind == ValueKind::Param && bi.shape == Shape{out},
               nm + ": bias " + shape_str(bi.shape) + " must be a parameter of shape [" + std::to_string(out) + "]");
  }
  CUAE_CHECK(act != Activation::LeakyReLU || slope > 0.0f, nm + ": leaky ReLU slope must be > 0");
  Node n;
  n.kind = OpKind::Dense;
  n.name = nm;
  n.inputs = {x.id, w.id, b.id};
  n.act = act;
  n.slope = slope;
  n.w_transposed = w_transposed;
  const Shape ys{xi.shape[0], out};
  const int node = static_cast<int>(nodes_.size());
  n.outputs.push_back(add_value({nm + ".out", ys, ValueKind::Activation, {}, false, node}));
  // GELU's derivative needs the pre-activation; every other activation's comes from the output.
  if (act == Activation::GELU) n.outputs.push_back(add_value({nm + ".pre", ys, ValueKind::Activation, {}, false, node}));
  nodes_.push_back(std::move(n));
  return {nodes_.back().outputs[0]};
}

Value Graph::activation(Value x, Activation act, float slope, const std::string& name) {
  const std::string nm = name.empty() ? std::string(activation_name(act)) + std::to_string(nodes_.size()) : name;
  const auto xs = info(x).shape;
  CUAE_CHECK(act != Activation::GELU, nm + ": a standalone GELU is not supported; fuse it into a dense layer");
  Node n;
  n.kind = OpKind::Activation;
  n.name = nm;
  n.inputs = {x.id};
  n.act = act;
  n.slope = slope;
  const int node = static_cast<int>(nodes_.size());
  n.outputs.push_back(add_value({nm + ".out", xs, ValueKind::Activation, {}, false, node}));
  nodes_.push_back(std::move(n));
  return {nodes_.back().outputs[0]};
}

Value Graph::loss(Value pred, Value target, LossType type, Reduction reduction, float weight, const std::string& name) {
  const std::string nm = name.empty() ? std::string(loss_type_name(type)) + "_loss" + std::to_string(nodes_.size()) : name;
  const auto& p = info(pred);
  const auto& t = info(target);
  CUAE_CHECK(p.shape == t.shape, nm + ": prediction " + shape_str(p.shape) + " and target " + shape_str(t.shape) +
                                     " differ in shape");
  Node n;
  n.kind = OpKind::Loss;
  n.name = nm;
  n.inputs = {pred.id, target.id};
  n.loss = type;
  n.reduction = reduction;
  n.weight = weight;
  const int node = static_cast<int>(nodes_.size());
  n.outputs.push_back(add_value({nm, Shape{1}, ValueKind::Scalar, {}, false, node}));
  nodes_.push_back(std::move(n));
  return {nodes_.back().outputs[0]};
}

namespace {
std::string node_name(const std::string& given, const char* kind, std::size_t index) {
  return given.empty() ? std::string(kind) + std::to_string(index) : given;
}
}  // namespace

Value Graph::corrupt(Value x, NoiseType type, float level, const std::string& name) {
  const std::string nm = node_name(name, "corrupt", nodes_.size());
  const auto xs = info(x).shape;
  if (type == NoiseType::Gaussian)
    CUAE_CHECK(std::isfinite(level) && level >= 0.0f, nm + ": the noise's standard deviation must be >= 0, got " + std::to_string(level));
  else
    CUAE_CHECK(level >= 0.0f && level <= 1.0f, nm + ": the corrupted fraction must lie in [0, 1], got " + std::to_string(level));
  Node n;
  n.kind = OpKind::Corrupt;
  n.name = nm;
  n.inputs = {x.id};
  n.noise = type;
  n.level = level;
  const int node = static_cast<int>(nodes_.size());
  n.outputs.push_back(add_value({nm + ".out", xs, ValueKind::Activation, {}, false, node}));
  nodes_.push_back(std::move(n));
  return {nodes_.back().outputs[0]};
}

Value Graph::dropout(Value x, float p, const std::string& name) {
  const std::string nm = node_name(name, "dropout", nodes_.size());
  const auto xs = info(x).shape;
  CUAE_CHECK(p >= 0.0f && p < 1.0f, nm + ": the drop probability must lie in [0, 1), got " + std::to_string(p));
  Node n;
  n.kind = OpKind::Dropout;
  n.name = nm;
  n.inputs = {x.id};
  n.level = p;
  const int node = static_cast<int>(nodes_.size());
  n.outputs.push_back(add_value({nm + ".out", xs, ValueKind::Activation, {}, false, node}));
  nodes_.push_back(std::move(n));
  return {nodes_.back().outputs[0]};
}

Value Graph::ksparse(Value x, int k, const std::string& name) {
  const std::string nm = node_name(name, "ksparse", nodes_.size());
  const auto xs = info(x).shape;
  CUAE_CHECK(xs.size() == 2 && k >= 1 && k <= xs[1],
             nm + ": k = " + std::to_string(k) + " must lie in [1, " + std::to_string(xs.size() == 2 ? xs[1] : 0) +
                 "] for " + shape_str(xs));
  Node n;
  n.kind = OpKind::KSparse;
  n.name = nm;
  n.inputs = {x.id};
  n.k = k;
  const int node = static_cast<int>(nodes_.size());
  n.outputs.push_back(add_value({nm + ".out", xs, ValueKind::Activation, {}, false, node}));
  n.outputs.push_back(add_value({nm + ".index", Shape{xs[0], k}, ValueKind::Activation, {}, false, node}));
  nodes_.push_back(std::move(n));
  return {nodes_.back().outputs[0]};
}

Value Graph::activity_penalty(Value h, PenaltyType type, float weight, float rho, bool objective, const std::string& name) {
  const std::string nm = node_name(name, type == PenaltyType::KL ? "kl_sparsity" : "l1_activity", nodes_.size());
  const auto& hi = info(h);
  CUAE_CHECK(hi.shape.size() == 2, nm + ": h must be 2-D, got " + shape_str(hi.shape));
  CUAE_CHECK(std::isfinite(weight) && weight >= 0.0f, nm + ": weight must be >= 0, got " + std::to_string(weight));
  if (type == PenaltyType::KL) {
    CUAE_CHECK(rho > 0.0f && rho < 1.0f, nm + ": the target activation rho must lie in (0, 1), got " + std::to_string(rho));
    // ρ̂ is a mean activation in (0, 1): only a logistic layer produces one.
    bool sigmoid = false;
    if (hi.producer >= 0) {
      const Node& p = nodes_[static_cast<std::size_t>(hi.producer)];
      sigmoid = (p.kind == OpKind::Dense || p.kind == OpKind::Activation) && p.act == Activation::Sigmoid;
    }
    CUAE_CHECK(sigmoid, nm + ": KL sparsity needs activations in (0, 1), but \"" + hi.name +
                            "\" is not the output of a sigmoid layer");
  }
  Node n;
  n.kind = OpKind::ActivityPenalty;
  n.name = nm;
  n.inputs = {h.id};
  n.penalty = type;
  n.weight = weight;
  n.level = rho;
  n.objective = objective;
  const int node = static_cast<int>(nodes_.size());
  n.outputs.push_back(add_value({nm, Shape{1}, ValueKind::Scalar, {}, false, node}));
  nodes_.push_back(std::move(n));
  return {nodes_.back().outputs[0]};
}

Value Graph::contractive_penalty(Value h, float weight, bool objective, const std::string& name) {
  const std::string nm = node_name(name, "contractive", nodes_.size());
  const auto& hi = info(h);
  CUAE_CHECK(std::isfinite(weight) && weight >= 0.0f, nm + ": weight must be >= 0, got " + std::to_string(weight));
  CUAE_CHECK(hi.producer >= 0 && nodes_[static_cast<std::size_t>(hi.producer)].kind == OpKind::Dense &&
                 nodes_[static_cast<std::size_t>(hi.producer)].outputs[0] == h.id,
             nm + ": \"" + hi.name + "\" is not the output of a dense layer");
  const Node& d = nodes_[static_cast<std::size_t>(hi.producer)];
  CUAE_CHECK(!d.w_transposed, nm + ": layer \"" + d.name + "\" uses a transposed (tied) weight; the contractive penalty "
                              "applies to encoder layers with their own weight");
  CUAE_CHECK(d.act == Activation::Identity || d.act == Activation::ReLU || d.act == Activation::LeakyReLU ||
                 d.act == Activation::Sigmoid || d.act == Activation::Tanh,
             nm + ": the contractive penalty supports identity, relu, leaky_relu, sigmoid and tanh layers, \"" + d.name +
                 "\" is " + activation_name(d.act));
  Node n;
  n.kind = OpKind::Contractive;
  n.name = nm;
  n.inputs = {h.id, d.inputs[1]};
  n.act = d.act;
  n.slope = d.slope;
  n.weight = weight;
  n.objective = objective;
  const int node = static_cast<int>(nodes_.size());
  n.outputs.push_back(add_value({nm, Shape{1}, ValueKind::Scalar, {}, false, node}));
  nodes_.push_back(std::move(n));
  return {nodes_.back().outputs[0]};
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
    os << n.name << ": ";
    for (std::size_t i = 0; i < n.inputs.size(); ++i) {
      if (n.inputs[i] < 0) continue;
      const auto& v = values_[static_cast<std::size_t>(n.inputs[i])];
      os << (i ? ", " : "") << v.name << " " << shape_str(v.shape);
    }
    os << " -> ";
    const auto& y = values_[static_cast<std::size_t>(n.outputs[0])];
    os << y.name << " " << shape_str(y.shape);
    switch (n.kind) {
      case OpKind::Dense:
      case OpKind::Activation: os << " (" << activation_name(n.act) << ")"; break;
      case OpKind::Corrupt: os << " (" << noise_type_name(n.noise) << " " << n.level << ")"; break;
      case OpKind::Dropout: os << " (p=" << n.level << ")"; break;
      case OpKind::KSparse: os << " (k=" << n.k << ")"; break;
      case OpKind::ActivityPenalty:
        os << " (" << (n.penalty == PenaltyType::KL ? "kl, rho=" + std::to_string(n.level) + ", " : std::string("l1, "))
           << "weight " << n.weight << (n.objective ? "" : ", metric") << ")";
        break;
      case OpKind::Contractive: os << " (weight " << n.weight << (n.objective ? "" : ", metric") << ")"; break;
      case OpKind::Loss: break;
    }
    os << "\n";
  }
  return os.str();
}

}  // namespace cuae
