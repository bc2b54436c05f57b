// cuae::Graph — a model as a graph of ops, built with a small C++ builder.
//
//   cuae::Graph g;
//   auto x  = g.input("x", {256, 784});
//   auto w1 = g.param("enc.0.weight", {30, 784}, cuae::Init::glorot_uniform(784, 30));
//   auto b1 = g.param("enc.0.bias", {30}, cuae::Init::zeros());
//   auto h  = g.dense(x, w1, b1, cuae::Activation::Sigmoid);
//   ...
//   g.loss(logits, x, cuae::LossType::BCEWithLogits, cuae::Reduction::SumPerSample);
//
// Only forward ops are built by hand: the backward pass is derived by the Executor (reverse mode;
// a value used twice accumulates its gradients). Values are 2-D [rows, cols] or, for the
// convolutional ops, 4-D [batch, height, width, channels] (NHWC), row-major float32; parameters are
// 1-D (biases), 2-D (dense weights [out, in]) or 4-D (filters [out channels, height, width, in
// channels]). reshape() turns one into the other without a copy. Every builder call checks shapes and throws cuae::Error naming the op and
// the shapes at fault.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cuae/tensor.hpp"

namespace cuae {

enum class Activation { Identity, ReLU, LeakyReLU, Sigmoid, Tanh, GELU };
enum class LossType { MSE, L1, BCEWithLogits };
// Mean: the loss is averaged over every element (PyTorch's default).
// SumPerSample: summed over each sample's elements and averaged over the batch (per-image loss).
enum class Reduction { Mean, SumPerSample };
// Input corruption of a denoising autoencoder: a fraction set to 0 (masking), additive N(0, σ²),
// or a fraction set to the minimum/maximum (salt and pepper).
enum class NoiseType { Mask, Gaussian, SaltPepper };
// Activity penalties on a hidden layer: λ·Σ|h| per sample, or β·Σ_j KL(ρ‖ρ̂_j) on the batch means.
enum class PenaltyType { L1, KL };
enum class UpsampleMode { Nearest, Bilinear };

// A convolution's stride, zero padding and dilation per axis (height, width), and for a transposed
// convolution its output padding (the extra rows/columns at the bottom/right that make the output
// the size wanted; PyTorch's output_padding, here in [0, stride)).
struct CUAE_API Conv2dOptions {
  int stride_h = 1, stride_w = 1;
  int pad_h = 0, pad_w = 0;
  int dil_h = 1, dil_w = 1;
  int out_pad_h = 0, out_pad_w = 0;
  static Conv2dOptions make(int stride, int pad, int dil = 1, int out_pad = 0) {
    return {stride, stride, pad, pad, dil, dil, out_pad, out_pad};
  }
};
// A pooling window, its stride and zero padding per axis.
struct CUAE_API Pool2dOptions {
  int window_h = 2, window_w = 2;
  int stride_h = 2, stride_w = 2;
  int pad_h = 0, pad_w = 0;
  bool count_include_pad = true;  // average pooling: padded zeros count in the divisor
  static Pool2dOptions make(int window, int stride, int pad = 0) { return {window, window, stride, stride, pad, pad, true}; }
};

// A restricted Boltzmann machine's units (Graph::rbm_cd, Graph::rbm_free_energy): Bernoulli or
// Gaussian (unit variance) visible units, Bernoulli or linear (Gaussian) hidden units, and CD-k's k.
// sample_visible: the Gibbs chain samples the visible units instead of using their means.
struct CUAE_API RbmOptions {
  int k = 1;
  bool gaussian_visible = false;
  bool linear_hidden = false;
  bool sample_visible = false;
};

CUAE_API const char* activation_name(Activation a);
CUAE_API Activation parse_activation(const std::string& s);  // "sigmoid", "relu", ...; throws on unknown
CUAE_API const char* loss_type_name(LossType l);
CUAE_API LossType parse_loss_type(const std::string& s);      // "mse", "l1", "bce"
CUAE_API const char* noise_type_name(NoiseType n);
CUAE_API NoiseType parse_noise_type(const std::string& s);    // "mask", "gaussian", "salt_pepper"
// The activations whose layers the contractive penalty supports (its Jacobian needs the
// derivative from the layer's output): identity, relu, leaky_relu, sigmoid and tanh.
CUAE_API bool contractive_supports(Activation a);
CUAE_API const char* upsample_mode_name(UpsampleMode m);
CUAE_API UpsampleMode parse_upsample_mode(const std::string& s);  // "nearest", "bilinear"

// How a parameter is initialised (deterministically from the executor's seed and its name).
struct CUAE_API Init {
  enum class Kind { Zeros, Constant, Uniform, Normal } kind = Kind::Zeros;
  float a = 0.0f;  // Constant: value; Uniform: U(-a, a); Normal: standard deviation
  static Init zeros() { return {Kind::Zeros, 0.0f}; }
  static Init constant(float v) { return {Kind::Constant, v}; }
  static Init uniform(float bound) { return {Kind::Uniform, bound}; }
  static Init normal(float std) { return {Kind::Normal, std}; }
  // U(-g·√(6/(fan_in+fan_out)), +…): suits sigmoid/tanh/linear layers.
  static Init glorot_uniform(std::int64_t fan_in, std::int64_t fan_out, float gain = 1.0f);
  // U(-√(6/fan_in), +…): suits ReLU-family layers.
  static Init he_uniform(std::int64_t fan_in);
};

// A handle to a value in one graph (an index). Default-constructed = "none".
struct CUAE_API Value {
  int id = -1;
  bool valid() const { return id >= 0; }
};

namespace detail {
struct Node;  // an op of a graph (host/graph/node.hpp; internal)
struct GraphAccess;
}  // namespace detail

class CUAE_API Graph {
 public:
  enum class ValueKind { Input, Param, Activation, Scalar };

  struct ValueInfo {
    std::string name;
    Shape shape;
    ValueKind kind = ValueKind::Activation;
    Init init;              // params only
    bool decay = true;      // params only: L2/decoupled weight decay applies (weights yes, biases no)
    int producer = -1;      // node index, -1 for inputs and params
  };

  Value input(const std::string& name, Shape shape);
  // 1-D [n] or 2-D [out, in]; decay=false for biases (weight decay skips them).
  Value param(const std::string& name, Shape shape, Init init, bool decay = true);
  // y = act(x·Wᵀ + b) with W [out, in]; or y = act(x·W + b) when w_transposed (W [in, out]).
  // b may be Value{} (no bias).
  Value dense(Value x, Value w, Value b, Activation act, bool w_transposed = false, float slope = 0.01f,
              const std::string& name = "");
  Value activation(Value x, Activation act, float slope = 0.01f, const std::string& name = "");
  // A scalar loss term; the training objective is the sum of every loss term in the graph.
  Value loss(Value pred, Value target, LossType type, Reduction reduction, float weight = 1.0f,
             const std::string& name = "");
  // Regularizers. corrupt and dropout draw from the executor's counter-based generator, keyed by
  // its seed, the node's name, the step and the element, so a run repeats exactly. No gradient
  // flows through corrupt (its output is data). dropout is inverted dropout (kept values scaled by
  // 1/(1−p)). Graphs for inference are built without either.
  Value corrupt(Value x, NoiseType type, float level, const std::string& name = "");
  Value dropout(Value x, float p, const std::string& name = "");
  // Keeps the k largest values of each row (ties to the lower column), zero elsewhere; the gradient
  // flows through the kept entries only.
  Value ksparse(Value x, int k, const std::string& name = "");
  // An activity penalty on h, a scalar term: L1: weight·Σ|h| per sample (batch mean); KL:
  // weight·Σ_j KL(rho‖ρ̂_j) with ρ̂ the batch mean of unit j (h must lie in (0, 1): a sigmoid layer).
  // With objective = false the term is computed (and readable) but not trained on.
  Value activity_penalty(Value h, PenaltyType type, float weight, float rho = 0.05f, bool objective = true,
                         const std::string& name = "");
  // weight·‖∂h/∂x‖²_F per sample (batch mean) of the dense layer h = act(x·Wᵀ + b) that produced
  // h (its own, untransposed weight; identity, relu, leaky_relu, sigmoid or tanh).
  Value contractive_penalty(Value h, float weight, bool objective = true, const std::string& name = "");

  // Convolutional layers over NHWC values. conv2d: x [N,H,W,C], filter w [K,R,S,C], bias b [K]
  // (or none) -> act(x ⋆ w + b) [N,P,Q,K] with P = (H + 2·pad − dil·(R−1) − 1)/stride + 1.
  Value conv2d(Value x, Value w, Value b, Activation act, const Conv2dOptions& o = {}, float slope = 0.01f,
               const std::string& name = "");
  // The transposed convolution (deconvolution): x [N,P,Q,K], filter w [K,R,S,C], bias b [C] ->
  // [N,H,W,C] with H = (P−1)·stride − 2·pad + dil·(R−1) + 1 + out_pad (the shape a conv2d with
  // the same options maps back to [N,P,Q,K]).
  Value conv_transpose2d(Value x, Value w, Value b, Activation act, const Conv2dOptions& o = {}, float slope = 0.01f,
                         const std::string& name = "");
  // Max pooling; the argmax positions are kept (a second output) for the backward and for
  // max_unpool2d.
  Value max_pool2d(Value x, const Pool2dOptions& o = {}, const std::string& name = "");
  // Puts x (shaped like the output of the max pool `pooled`) back where that pool found its maxima,
  // zeros elsewhere: the result has the pool's input shape.
  Value max_unpool2d(Value x, Value pooled, const std::string& name = "");
  Value avg_pool2d(Value x, const Pool2dOptions& o = {}, const std::string& name = "");
  // Resizes x [N,H,W,C] to [N,out_h,out_w,C] (PyTorch's interpolate, align_corners = false).
  Value upsample2d(Value x, int out_h, int out_w, UpsampleMode mode, const std::string& name = "");
  // The same values in another shape with the same element count and the same first (batch)
  // dimension, e.g. [N,H,W,C] -> [N,H·W·C] between convolutional and dense layers. No copy: the
  // executor gives both the same memory.
  Value reshape(Value x, Shape shape, const std::string& name = "");

  // Variational autoencoders. stats [m, 2d] holds μ (columns [0, d)) and log σ² ([d, 2d)) of a
  // diagonal Gaussian q(z|x). reparameterize: z = μ + exp(½·log σ²)·ε [m, d], ε drawn from the
  // executor's counter-based generator (seed, node name, step, element), with the gradient flowing
  // to μ and log σ²; with sample = false, z = μ (the posterior mean).
  Value reparameterize(Value stats, bool sample = true, const std::string& name = "");
  // weight · (1/m)·Σ_i KL(q(z|x_i) ‖ N(0, I)), a scalar term (an objective term unless
  // objective = false). Its weight can be changed between steps (Executor::set_term_weight), for
  // a KL warm-up.
  Value gaussian_kl(Value stats, float weight = 1.0f, bool objective = true, const std::string& name = "");

  // Restricted Boltzmann machines (layer-wise pretraining): v [m, nv] visible rows, w [nh, nv] (a
  // dense layer's weight), visible bias b [nv] and hidden bias c [nh], all parameters but v.
  // rbm_cd is a scalar term whose value is the reconstruction error Σ(v − v₁)²/m after one Gibbs
  // step and whose gradient with respect to w, b and c is CD-k's estimate of −∂ log p(v)/∂θ (not
  // the derivative of the value): a training graph with it follows the likelihood. The chain
  // draws from the executor's generator (seed, node name, step). The estimate is written, so no
  // term before it in the graph may write a gradient of w, b or c (a second rbm_cd on them);
  // ops after it add theirs. The term's weight is 1.
  Value rbm_cd(Value v, Value w, Value b, Value c, const RbmOptions& o = {}, const std::string& name = "");
  // The free energy F(v) of each row, [m] (monitoring: no gradient flows through it).
  Value rbm_free_energy(Value v, Value w, Value b, Value c, const RbmOptions& o = {}, const std::string& name = "");

  // Keep this value alive to the end of a step so it can be read back (reconstruction, code, ...).
  void mark_output(Value v);

  const std::vector<ValueInfo>& values() const { return values_; }
  const std::vector<int>& outputs() const { return outputs_; }
  int node_count() const { return static_cast<int>(nodes_.size()); }
  const ValueInfo& info(Value v) const;
  Value find(const std::string& name) const;  // Value{} when absent
  std::string describe() const;               // one line per node with shapes

 private:
  friend struct detail::GraphAccess;
  // The builders (host/graph/nodes/*.cpp) share these. A node's name: the given one, or the op's
  // kind numbered by position.
  std::string node_name(const std::string& given, const char* kind) const;
  int add_value(ValueInfo v);
  // Appends the node with one output value per (name, shape) (kind Scalar for a term's, else
  // Activation) and returns the first.
  Value add_node(detail::Node n, const std::vector<std::pair<std::string, Shape>>& outputs, bool scalar = false);
  // Shared by dense, conv2d and conv_transpose2d: b (if any) must be a [width] parameter, a leaky
  // slope positive; then the node with its output ys (and GELU's pre-activation) is added.
  void check_bias_and_slope(const std::string& nm, Value b, std::int64_t width, Activation act, float slope) const;
  Value add_layer_node(detail::Node n, const Shape& ys, Activation act);
  // The producer of a value (null for inputs and parameters).
  const detail::Node* producer(Value v) const;
  std::vector<ValueInfo> values_;
  std::vector<std::shared_ptr<const detail::Node>> nodes_;  // immutable once added: copies share them
  std::vector<int> outputs_;
};

}  // namespace cuae
