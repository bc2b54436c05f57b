#include "cuae/graph.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "kernels/conv_common.hpp"

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

void Graph::check_bias_and_slope(const std::string& nm, Value b, std::int64_t width, Activation act, float slope) const {
  if (b.valid()) {
    const auto& bi = info(b);
    CUAE_CHECK(bi.kind == ValueKind::Param && bi.shape == Shape{width},
               nm + ": bias " + shape_str(bi.shape) + " must be a parameter of shape [" + std::to_string(width) + "]");
  }
  CUAE_CHECK(act != Activation::LeakyReLU || slope > 0.0f, nm + ": leaky ReLU slope must be > 0");
}

Value Graph::add_layer_node(Node n, const Shape& ys) {
  const int node = static_cast<int>(nodes_.size());
  n.outputs.push_back(add_value({n.name + ".out", ys, ValueKind::Activation, {}, false, node}));
  // GELU's derivative needs the pre-activation; every other activation's comes from the output.
  if (n.act == Activation::GELU)
    n.outputs.push_back(add_value({n.name + ".pre", ys, ValueKind::Activation, {}, false, node}));
  nodes_.push_back(std::move(n));
  return {nodes_.back().outputs[0]};
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
  check_bias_and_slope(nm, b, out, act, slope);
  Node n;
  n.kind = OpKind::Dense;
  n.name = nm;
  n.inputs = {x.id, w.id, b.id};
  n.act = act;
  n.slope = slope;
  n.w_transposed = w_transposed;
  const Shape ys{xi.shape[0], out};
  return add_layer_node(std::move(n), ys);
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

namespace {
std::string i2(int a, int b) { return std::to_string(a) + "x" + std::to_string(b); }
std::string conv_opts_str(const Conv2dOptions& o, bool transposed) {
  std::string s = "stride " + i2(o.stride_h, o.stride_w) + ", pad " + i2(o.pad_h, o.pad_w) + ", dilation " +
                  i2(o.dil_h, o.dil_w);
  if (transposed) s += ", output padding " + i2(o.out_pad_h, o.out_pad_w);
  return s;
}
std::string pool_opts_str(const Pool2dOptions& o) {
  return "window " + i2(o.window_h, o.window_w) + ", stride " + i2(o.stride_h, o.stride_w) + ", pad " + i2(o.pad_h, o.pad_w);
}
}  // namespace

Value Graph::conv2d(Value x, Value w, Value b, Activation act, const Conv2dOptions& o, float slope, const std::string& name) {
  const std::string nm = node_name(name, "conv", nodes_.size());
  const auto xs = info(x).shape;
  const auto& wi = info(w);
  CUAE_CHECK(wi.kind == ValueKind::Param, nm + ": filter \"" + wi.name + "\" is not a parameter");
  CUAE_CHECK(xs.size() == 4 && wi.shape.size() == 4 && wi.shape[3] == xs[3],
             nm + ": x " + shape_str(xs) + " [N,H,W,C] and filter " + shape_str(wi.shape) +
                 " [K,R,S,C] must be 4-D with the same C");
  CUAE_CHECK(o.stride_h > 0 && o.stride_w > 0 && o.dil_h > 0 && o.dil_w > 0 && o.pad_h >= 0 && o.pad_w >= 0,
             nm + ": " + conv_opts_str(o, false) + ": stride and dilation must be positive, padding >= 0");
  const int p = kern::conv_out_extent(static_cast<int>(xs[1]), static_cast<int>(wi.shape[1]), o.stride_h, o.pad_h, o.dil_h);
  const int q = kern::conv_out_extent(static_cast<int>(xs[2]), static_cast<int>(wi.shape[2]), o.stride_w, o.pad_w, o.dil_w);
  CUAE_CHECK(p > 0 && q > 0, nm + ": a " + i2(static_cast<int>(wi.shape[1]), static_cast<int>(wi.shape[2])) +
                                 " filter (" + conv_opts_str(o, false) + ") does not fit x " + shape_str(xs));
  const std::int64_t k = wi.shape[0];
  check_bias_and_slope(nm, b, k, act, slope);
  Node n;
  n.kind = OpKind::Conv;
  n.name = nm;
  n.inputs = {x.id, w.id, b.id};
  n.act = act;
  n.slope = slope;
  n.conv = o;
  n.conv.out_pad_h = n.conv.out_pad_w = 0;
  const Shape ys{xs[0], p, q, k};
  return add_layer_node(std::move(n), ys);
}

Value Graph::conv_transpose2d(Value x, Value w, Value b, Activation act, const Conv2dOptions& o, float slope,
                              const std::string& name) {
  const std::string nm = node_name(name, "deconv", nodes_.size());
  const auto xs = info(x).shape;
  const auto& wi = info(w);
  CUAE_CHECK(wi.kind == ValueKind::Param, nm + ": filter \"" + wi.name + "\" is not a parameter");
  CUAE_CHECK(xs.size() == 4 && wi.shape.size() == 4 && wi.shape[0] == xs[3],
             nm + ": x " + shape_str(xs) + " [N,P,Q,K] and filter " + shape_str(wi.shape) +
                 " [K,R,S,C] must be 4-D with the same K");
  CUAE_CHECK(o.stride_h > 0 && o.stride_w > 0 && o.dil_h > 0 && o.dil_w > 0 && o.pad_h >= 0 && o.pad_w >= 0,
             nm + ": " + conv_opts_str(o, true) + ": stride and dilation must be positive, padding >= 0");
  // A larger output padding would give an output no convolution with these options maps back to x.
  CUAE_CHECK(o.out_pad_h >= 0 && o.out_pad_h < o.stride_h && o.out_pad_w >= 0 && o.out_pad_w < o.stride_w,
             nm + ": " + conv_opts_str(o, true) + ": output padding must lie in [0, stride)");
  const int r = static_cast<int>(wi.shape[1]), sw = static_cast<int>(wi.shape[2]);
  const int h = kern::deconv_out_extent(static_cast<int>(xs[1]), r, o.stride_h, o.pad_h, o.dil_h, o.out_pad_h);
  const int wd = kern::deconv_out_extent(static_cast<int>(xs[2]), sw, o.stride_w, o.pad_w, o.dil_w, o.out_pad_w);
  CUAE_CHECK(h > 0 && wd > 0 && kern::conv_out_extent(h, r, o.stride_h, o.pad_h, o.dil_h) == xs[1] &&
                 kern::conv_out_extent(wd, sw, o.stride_w, o.pad_w, o.dil_w) == xs[2],
             nm + ": a " + i2(r, sw) + " transposed filter (" + conv_opts_str(o, true) + ") cannot map x " +
                 shape_str(xs) + " to a positive size");
  const std::int64_t c = wi.shape[3];
  check_bias_and_slope(nm, b, c, act, slope);
  Node n;
  n.kind = OpKind::Deconv;
  n.name = nm;
  n.inputs = {x.id, w.id, b.id};
  n.act = act;
  n.slope = slope;
  n.conv = o;
  const Shape ys{xs[0], h, wd, c};
  return add_layer_node(std::move(n), ys);
}

namespace {
Shape pooled_shape(const std::string& nm, const Shape& xs, const Pool2dOptions& o) {
  CUAE_CHECK(xs.size() == 4, nm + ": x " + shape_str(xs) + " must be 4-D [N,H,W,C]");
  CUAE_CHECK(o.window_h > 0 && o.window_w > 0 && o.stride_h > 0 && o.stride_w > 0 && o.pad_h >= 0 && o.pad_w >= 0 &&
                 2 * o.pad_h <= o.window_h && 2 * o.pad_w <= o.window_w,
             nm + ": " + pool_opts_str(o) + ": window and stride must be positive, padding in [0, window/2]");
  const int p = kern::pool_out_extent(static_cast<int>(xs[1]), o.window_h, o.stride_h, o.pad_h);
  const int q = kern::pool_out_extent(static_cast<int>(xs[2]), o.window_w, o.stride_w, o.pad_w);
  CUAE_CHECK(p > 0 && q > 0, nm + ": a " + pool_opts_str(o) + " pool does not fit x " + shape_str(xs));
  return Shape{xs[0], p, q, xs[3]};
}
}  // namespace

Value Graph::max_pool2d(Value x, const Pool2dOptions& o, const std::string& name) {
  const std::string nm = node_name(name, "maxpool", nodes_.size());
  const Shape ys = pooled_shape(nm, info(x).shape, o);
  Node n;
  n.kind = OpKind::MaxPool;
  n.name = nm;
  n.inputs = {x.id};
  n.pool = o;
  const int node = static_cast<int>(nodes_.size());
  n.outputs.push_back(add_value({nm + ".out", ys, ValueKind::Activation, {}, false, node}));
  n.outputs.push_back(add_value({nm + ".index", ys, ValueKind::Activation, {}, false, node}));
  nodes_.push_back(std::move(n));
  return {nodes_.back().outputs[0]};
}

Value Graph::max_unpool2d(Value x, Value pooled, const std::string& name) {
  const std::string nm = node_name(name, "maxunpool", nodes_.size());
  const auto& pi = info(pooled);
  CUAE_CHECK(pi.producer >= 0 && nodes_[static_cast<std::size_t>(pi.producer)].kind == OpKind::MaxPool &&
                 nodes_[static_cast<std::size_t>(pi.producer)].outputs[0] == pooled.id,
             nm + ": \"" + pi.name + "\" is not the output of a max pool");
  const Node& pool = nodes_[static_cast<std::size_t>(pi.producer)];
  const auto xs = info(x).shape;
  CUAE_CHECK(xs == pi.shape, nm + ": x " + shape_str(xs) + " must have the shape of the pool's output " + shape_str(pi.shape));
  Node n;
  n.kind = OpKind::MaxUnpool;
  n.name = nm;
  n.inputs = {x.id, pool.outputs[1]};
  n.pool = pool.pool;
  const Shape ys = values_[static_cast<std::size_t>(pool.inputs[0])].shape;
  const int node = static_cast<int>(nodes_.size());
  n.outputs.push_back(add_value({nm + ".out", ys, ValueKind::Activation, {}, false, node}));
  nodes_.push_back(std::move(n));
  return {nodes_.back().outputs[0]};
}

Value Graph::avg_pool2d(Value x, const Pool2dOptions& o, const std::string& name) {
  const std::string nm = node_name(name, "avgpool", nodes_.size());
  const Shape ys = pooled_shape(nm, info(x).shape, o);
  Node n;
  n.kind = OpKind::AvgPool;
  n.name = nm;
  n.inputs = {x.id};
  n.pool = o;
  const int node = static_cast<int>(nodes_.size());
  n.outputs.push_back(add_value({nm + ".out", ys, ValueKind::Activation, {}, false, node}));
  nodes_.push_back(std::move(n));
  return {nodes_.back().outputs[0]};
}

Value Graph::upsample2d(Value x, int out_h, int out_w, UpsampleMode mode, const std::string& name) {
  const std::string nm = node_name(name, "upsample", nodes_.size());
  const auto xs = info(x).shape;
  CUAE_CHECK(xs.size() == 4, nm + ": x " + shape_str(xs) + " must be 4-D [N,H,W,C]");
  CUAE_CHECK(out_h > 0 && out_w > 0, nm + ": the output size " + i2(out_h, out_w) + " must be positive");
  Node n;
  n.kind = OpKind::Upsample;
  n.name = nm;
  n.inputs = {x.id};
  n.upsample = mode;
  const int node = static_cast<int>(nodes_.size());
  n.outputs.push_back(add_value({nm + ".out", Shape{xs[0], out_h, out_w, xs[3]}, ValueKind::Activation, {}, false, node}));
  nodes_.push_back(std::move(n));
  return {nodes_.back().outputs[0]};
}

Value Graph::reshape(Value x, Shape shape, const std::string& name) {
  const std::string nm = node_name(name, "reshape", nodes_.size());
  const auto& xi = info(x);
  CUAE_CHECK(xi.kind != ValueKind::Scalar, nm + ": a scalar term cannot be reshaped");
  CUAE_CHECK(!shape.empty() && shape[0] == xi.shape[0] && shape_numel(shape) == shape_numel(xi.shape),
             nm + ": cannot reshape " + shape_str(xi.shape) + " to " + shape_str(shape) +
                 " (same batch dimension and element count needed)");
  Node n;
  n.kind = OpKind::Reshape;
  n.name = nm;
  n.inputs = {x.id};
  const int node = static_cast<int>(nodes_.size());
  n.outputs.push_back(add_value({nm + ".out", std::move(shape), ValueKind::Activation, {}, false, node}));
  nodes_.push_back(std::move(n));
  return {nodes_.back().outputs[0]};
}

Value Graph::reparameterize(Value stats, bool sample, const std::string& name) {
  const std::string nm = node_name(name, "reparameterize", nodes_.size());
  const auto s = info(stats).shape;
  CUAE_CHECK(s.size() == 2 && s[1] % 2 == 0 && s[1] >= 2,
             nm + ": stats " + shape_str(s) + " must be [batch, 2·latent] (μ then log σ²)");
  Node n;
  n.kind = OpKind::Reparam;
  n.name = nm;
  n.inputs = {stats.id};
  n.sample = sample;
  const int node = static_cast<int>(nodes_.size());
  n.outputs.push_back(add_value({nm + ".out", Shape{s[0], s[1] / 2}, ValueKind::Activation, {}, false, node}));
  nodes_.push_back(std::move(n));
  return {nodes_.back().outputs[0]};
}

Value Graph::gaussian_kl(Value stats, float weight, bool objective, const std::string& name) {
  const std::string nm = node_name(name, "gaussian_kl", nodes_.size());
  const auto s = info(stats).shape;
  CUAE_CHECK(s.size() == 2 && s[1] % 2 == 0 && s[1] >= 2,
             nm + ": stats " + shape_str(s) + " must be [batch, 2·latent] (μ then log σ²)");
  CUAE_CHECK(std::isfinite(weight) && weight >= 0.0f, nm + ": weight must be >= 0, got " + std::to_string(weight));
  Node n;
  n.kind = OpKind::GaussianKL;
  n.name = nm;
  n.inputs = {stats.id};
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
      case OpKind::Conv:
      case OpKind::Deconv:
        os << " (" << activation_name(n.act) << ", " << conv_opts_str(n.conv, n.kind == OpKind::Deconv) << ")";
        break;
      case OpKind::MaxPool:
      case OpKind::AvgPool:
      case OpKind::MaxUnpool: os << " (" << pool_opts_str(n.pool) << ")"; break;
      case OpKind::Upsample: os << " (" << upsample_mode_name(n.upsample) << ")"; break;
      case OpKind::Reparam: os << (n.sample ? " (sampled)" : " (mean)"); break;
      case OpKind::GaussianKL: os << " (weight " << n.weight << (n.objective ? "" : ", metric") << ")"; break;
      case OpKind::Reshape:
      case OpKind::Loss: break;
    }
    os << "\n";
  }
  return os.str();
}

}  // namespace cuae
