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
// a value used twice accumulates its gradients). Values are 2-D [rows, cols] row-major float32;
// parameters may be 1-D. Every builder call checks shapes and throws cuae::Error naming the op and
// the shapes at fault.
#pragma once

#include <cstdint>
#include <string>
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

CUAE_API const char* activation_name(Activation a);
CUAE_API Activation parse_activation(const std::string& s);  // "sigmoid", "relu", ...; throws on unknown
CUAE_API const char* loss_type_name(LossType l);
CUAE_API LossType parse_loss_type(const std::string& s);      // "mse", "l1", "bce"
CUAE_API const char* noise_type_name(NoiseType n);
CUAE_API NoiseType parse_noise_type(const std::string& s);    // "mask", "gaussian", "salt_pepper"

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

class CUAE_API Graph {
 public:
  enum class OpKind { Dense, Activation, Loss, Corrupt, Dropout, KSparse, ActivityPenalty, Contractive };
  enum class ValueKind { Input, Param, Activation, Scalar };

  struct ValueInfo {
    std::string name;
    Shape shape;
    ValueKind kind = ValueKind::Activation;
    Init init;              // params only
    bool decay = true;      // params only: L2/decoupled weight decay applies (weights yes, biases no)
    int producer = -1;      // node index, -1 for inputs and params
  };
  struct Node {
    OpKind kind = OpKind::Dense;
    std::string name;
    // Dense: x, w, b (b may be -1); Activation, Corrupt, Dropout, KSparse, ActivityPenalty: x;
    // Loss: pred, target; Contractive: h, w (the weight of the dense layer that produced h).
    std::vector<int> inputs;
    // Dense: y (+ z when GELU); KSparse: y, index (int32 [rows, k]); Loss and penalties: scalar;
    // every other op: y.
    std::vector<int> outputs;
    Activation act = Activation::Identity;
    float slope = 0.01f;       // leaky ReLU
    bool w_transposed = false; // Dense: W is [in, out] (a tied decoder reusing an encoder weight)
    LossType loss = LossType::MSE;
    Reduction reduction = Reduction::Mean;
    float weight = 1.0f;       // Loss and penalties: multiplies the term and its gradient
    bool objective = true;     // Loss and penalties: part of the training objective (else a metric)
    NoiseType noise = NoiseType::Mask;
    PenaltyType penalty = PenaltyType::L1;
    float level = 0.0f;        // Corrupt: fraction or σ; Dropout: drop probability; KL: target ρ
    int k = 0;                 // KSparse
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
  // Keep this value alive to the end of a step so it can be read back (reconstruction, code, ...).
  void mark_output(Value v);

  const std::vector<ValueInfo>& values() const { return values_; }
  const std::vector<Node>& nodes() const { return nodes_; }
  const std::vector<int>& outputs() const { return outputs_; }
  const ValueInfo& info(Value v) const;
  Value find(const std::string& name) const;  // Value{} when absent
  std::string describe() const;               // one line per node with shapes

 private:
  int add_value(ValueInfo v);
  std::vector<ValueInfo> values_;
  std::vector<Node> nodes_;
  std::vector<int> outputs_;
};

}  // namespace cuae
