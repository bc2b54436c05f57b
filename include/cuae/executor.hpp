// cuae::Executor — plans and runs a Graph on one backend (CPU reference or CUDA).
//
// At construction the executor (1) derives the backward pass when training, (2) places every
// activation, gradient and workspace in one arena by liveness and reports the peak, (3) finds or
// adds its parameters in a ParameterStore (its own, or one shared with other executors of the same
// model) and, training, lays out gradients and optimizer moments beside them so the update is one
// launch per flat segment, and (4) binds every op to its pointers. After that a step is a fixed list of launches: no
// allocation, no host synchronisation and no value passed per step (the step counter, learning
// rate, bias corrections and term weights live in a small block in backend memory that the kernels
// read), so on CUDA the whole step is captured once as a CUDA graph and replayed. Each step's loss
// terms are recorded into a ring in backend memory and read with drain_losses()/last_loss().
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cuae/graph.hpp"
#include "cuae/parameter_store.hpp"
#include "cuae/tensor.hpp"

namespace cuae {

enum class OptimizerType { SGD, Adam, AdamW };
CUAE_API const char* optimizer_name(OptimizerType t);
CUAE_API OptimizerType parse_optimizer(const std::string& s);  // "sgd", "adam", "adamw"

struct CUAE_API OptimizerConfig {
  OptimizerType type = OptimizerType::Adam;
  float lr = 1e-3f;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  float weight_decay = 0.0f;   // SGD/Adam: L2 added to the gradient; AdamW: decoupled
  float l1 = 0.0f;             // L1 weight penalty λ₁·Σ|w| on weights (not biases): λ₁·sign(w) in the gradient
  float momentum = 0.0f;       // SGD (may change between steps: Executor::set_momentum)
  bool nesterov = false;       // SGD
};

struct CUAE_API ExecutorOptions {
  Device device = Device::CPU;
  bool training = false;       // derive backward + optimizer; otherwise forward only
  OptimizerConfig optimizer;
  std::uint64_t seed = 1;      // parameter initialisation and the random ops' streams
  bool tf32 = false;           // CUDA: allow TF32 tensor cores in fp32 GEMMs and convolutions
  // CUDA: train_step() runs the whole step (forward, backward, update, loss record) as one CUDA
  // graph, captured at the second step (the first runs eagerly and resolves every plan) and
  // replayed from then on. false: every launch is enqueued one by one (debugging, profiling).
  bool cuda_graph = true;
};

// Memory plan summary.
struct CUAE_API MemoryReport {
  std::size_t arena_bytes = 0;        // peak of the liveness-planned arena
  std::size_t naive_bytes = 0;        // what one buffer per value would take (same 256 B alignment)
  std::size_t param_bytes = 0;        // parameters (+ gradients + optimizer state when training)
  std::size_t state_bytes = 0;
  int values_planned = 0;
};

class CUAE_API Executor {
 public:
  // With a store, the executor's parameters live there (shared with the store's other executors,
  // which must run on the same device and precision); without one it makes its own.
  Executor(const Graph& graph, const ExecutorOptions& options, std::shared_ptr<ParameterStore> store = nullptr);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // The memory an executor of `graph` would take, planned as the constructor plans it (arena with
  // its workspaces, parameters, gradients and optimizer state), allocating none of it: for
  // estimates before a run (cuae summary, the check before training).
  static MemoryReport plan(const Graph& graph, const ExecutorOptions& options);

  Device device() const;
  const Graph& graph() const;
  const MemoryReport& memory() const;
  const std::shared_ptr<ParameterStore>& store() const;

  // Copies a batch (host or device tensor, same shape as the input) into the input. On CUDA a host
  // batch travels on a copy stream of its own, overlapping the step in flight, and the next
  // forward()/train_step() moves it into place: from pinned memory (Backend-allocated, or an image
  // stream's buffers) the copy engine reads it directly, so keep it unchanged until
  // wait_inputs_read() returns; pageable memory is copied by the host into pinned staging first
  // and may be reused as soon as set_input returns.
  void set_input(const std::string& name, const Tensor& batch);
  // Blocks until every set_input() so far has read its host memory: not until the steps before it
  // have run, so a host buffer can be refilled while the device computes.
  void wait_inputs_read();
  // Fills the input with rows source[index[begin + r]] for each of its rows, on the device: source
  // ([N, features] F32) and index ([M] I32) must live on the executor's device, so a shuffled
  // mini-batch is assembled with no host copy.
  void gather_input(const std::string& name, const Tensor& source, const Tensor& index, std::int64_t begin);

  // Forward pass only (loss terms are computed, no gradients). Random ops draw with the number of
  // updates so far as their step; forward_at draws with the given step instead (e.g. several
  // independent posterior samples of a VAE for the same batch).
  void forward();
  void forward_at(std::uint64_t random_step);
  // A forward pass at random_step that records nothing (the losses drained later are only the
  // training steps'): each objective term's value (term_names() order), e.g. the training
  // objective on held-out images between steps.
  std::vector<float> evaluate_terms(std::uint64_t random_step);
  // Changes the weight of a scalar term (a loss, a penalty or a gaussian_kl term, by node name) from
  // the next step on (a KL warm-up).
  void set_term_weight(const std::string& node, float weight);
  // Forward, backward and one optimizer update. The learning rate may be changed between steps.
  void train_step();
  void set_learning_rate(float lr);
  void set_momentum(float momentum);  // SGD's momentum, from the next step on (a schedule)
  std::int64_t step() const;  // optimizer updates done so far

  // Sum of the loss terms of each step since the last drain, oldest first (synchronises).
  std::vector<float> drain_losses();
  // Sum of the loss terms of the latest forward()/train_step() (synchronises).
  float last_loss();
  // The objective's terms by node name ("loss", "kl", "sparsity", ...), in the order of the two
  // calls below: each term's sum over the training steps read since the last call (their count in
  // *steps; synchronises), and each term's value after the latest forward()/train_step().
  std::vector<std::string> term_names() const;
  std::vector<double> drain_term_sums(std::int64_t* steps = nullptr);
  std::vector<float> last_terms();

  // Host copy of a value kept alive by Graph::mark_output (or any parameter).
  Tensor read(Value v);
  Tensor read(const std::string& name);

  // The graph's parameters by name, as host tensors (checkpoints).
  std::vector<std::pair<std::string, Tensor>> parameters();
  // Gradients of the latest train_step() by parameter name, as host tensors (computed before the
  // update was applied). Training executors only.
  std::vector<std::pair<std::string, Tensor>> gradients();
  // The optimizer's state by parameter: {"opt.m.<param>", ...} and {"opt.v.<param>", ...} for
  // Adam/AdamW's moments, {"opt.v.<param>", ...} for SGD's velocity.
  std::vector<std::pair<std::string, Tensor>> optimizer_state();
  // Loads parameters (into the store: every executor sharing it sees them) and, training, this
  // executor's optimizer state if present; every graph parameter must be present with the same
  // shape, or the error names the first that is not. The update count becomes `step`.
  void load(const std::map<std::string, Tensor>& tensors, std::int64_t step = 0);

  // Blocks until all queued work has run.
  void synchronize();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace cuae
