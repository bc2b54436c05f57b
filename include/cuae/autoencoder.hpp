// cuae::Autoencoder — a deep (stacked, symmetric) autoencoder built from a Config, trained on a
// Dataset, saved to and loaded from safetensors checkpoints, and used to encode and reconstruct.
//
//   cuae::Config cfg = cuae::load_config("configs/deep.toml");
//   cuae::Autoencoder ae(cfg, cuae::resolve_device(cfg.train.device));
//   ae.train(cuae::load_fashion_mnist(cfg.data.dir, /*train=*/true));
//   cuae::Tensor codes = ae.encode(test.images);          // [N, 30]
//   ae.save("model.safetensors");
//
// The network: encoder layers layers[0] -> layers[1] -> ... -> layers[L-1] (the code) with
// `activation` on hidden layers and `code_activation` on the code; the decoder mirrors it back to
// layers[0] with `output_activation` on the reconstruction. With loss "bce" the last layer emits
// logits, the loss is BCE-with-logits, and reconstructions are their sigmoid.
// Parameters: encoder.{i}.weight [l_{i+1}, l_i], encoder.{i}.bias, decoder.{j}.weight, decoder.{j}.bias
// (j counts from the code outwards; tied decoders have no weight of their own).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cuae/config.hpp"
#include "cuae/data.hpp"
#include "cuae/executor.hpp"
#include "cuae/graph.hpp"
#include "cuae/images.hpp"

namespace cuae {

// Reconstruction error of images [N, D] by recon [N, D] (host tensors, values in [0, 1]).
// bce_per_image clamps recon to [1e-7, 1 - 1e-7] so a linear baseline (PCA) can be scored too.
struct CUAE_API ReconMetrics {
  double mse_per_pixel = 0.0;  // mean over images and pixels of (x - x̂)²
  double se_per_image = 0.0;   // mean over images of Σ_pixels (x - x̂)²
  double bce_per_image = 0.0;  // mean over images of Σ_pixels −[x log x̂ + (1−x) log(1−x̂)]
  std::int64_t images = 0;
};
CUAE_API ReconMetrics reconstruction_metrics(const Tensor& images, const Tensor& recon);

// Principal component analysis on the host (covariance by BLAS, eigenvectors by LAPACK).
struct CUAE_API Pca {
  Tensor mean;        // [D]
  Tensor components;  // [k, D], orthonormal rows, largest variance first
  Tensor variances;   // [k] eigenvalues
};
CUAE_API Pca fit_pca(const Tensor& images, int k);
// The codes (x − mean)·componentsᵀ [N, k], the images mean + codes·components [N, D] (not clamped
// to [0, 1]), and the two in turn.
CUAE_API Tensor pca_encode(const Pca& pca, const Tensor& images);
CUAE_API Tensor pca_decode(const Pca& pca, const Tensor& codes);
CUAE_API Tensor pca_reconstruct(const Pca& pca, const Tensor& images);

// The graph of a deep autoencoder for a fixed batch size.
//   Train: the training objective. The input is corrupted when [noise] is on (the loss still
//          compares with the clean input), hidden layers get dropout, the sparsity and contractive
//          penalties are terms of the objective. Nothing is marked as an output.
//   Infer: the model as used after training: no corruption, no dropout, no penalty terms (k-sparse
//          selection stays: it is part of the model). The code, every encoder layer and the
//          reconstruction are outputs; with jacobian_layer >= 0 the mean ‖∂h/∂x‖²_F of that
//          encoder layer is computed as a metric (not an objective term).
//   Sampled: Infer, but a VAE's latent is sampled (z = μ + σ·ε; ε from the executor's step, see
//          Executor::forward_at) and its KL term is computed as a metric: the graph the VAE's
//          bounds are estimated with. stats, code (= z) and output are outputs.
//   Decode: the decoder alone, from an input "z" [batch, code] to the reconstruction (sampling a
//          VAE, interpolating between codes). Not for decoders that unpool with encoder indices.
// For a VAE (model.variational) the code layer is a Gaussian head `stats` [batch, 2·code]
// (μ, then log σ²); Train samples z by reparameterization and adds β·KL(q(z|x) ‖ N(0, I)) (the
// term "kl"); Infer uses z = μ.
enum class GraphMode { Train, Infer, Sampled, Decode };
struct CUAE_API DeepAutoencoderGraph {
  Graph graph;
  Value input;                // "x" [batch, layers[0]]
  Value code;                 // [batch, layers.back()]
  std::vector<Value> layers;  // encoder layer outputs (after k-sparse selection); layers.back() == code
  Value output;               // last layer's output: logits for bce, else the reconstruction
  Value recon;                // the reconstruction (== output unless bce; Infer only)
  Value loss;                 // the reconstruction term
  Value jacobian;             // Infer with jacobian_layer >= 0: batch mean ‖J‖²_F of that layer
  Value stats;                // VAE: the Gaussian head [batch, 2·code] (μ | log σ²)
  Value kl;                   // VAE, Train and Sampled: the KL term (weight beta in Train, 1 in Sampled)
};
CUAE_API DeepAutoencoderGraph build_deep_autoencoder(const Config& config, std::int64_t batch, GraphMode mode,
                                                     int jacobian_layer = -1);
// The convolutional autoencoder (model.type = "conv"): the same interface, with the input and the
// reconstruction as flattened HWC rows [batch, C·H·W] (reshaped to NHWC inside the graph at no
// cost), `layers` the encoder blocks' outputs flattened, and the code [batch, code] (or the last
// block's feature map, flattened, without a dense bottleneck).
CUAE_API DeepAutoencoderGraph build_conv_autoencoder(const Config& config, std::int64_t batch, GraphMode mode,
                                                     int jacobian_layer = -1);
// Either of the two, by model.type.
CUAE_API DeepAutoencoderGraph build_autoencoder(const Config& config, std::int64_t batch, GraphMode mode,
                                                int jacobian_layer = -1);

// Corrupts images [N, D] (host) as a denoising autoencoder's input is corrupted in training, with
// the same counter-based generator, keyed by seed: the same call gives the same images.
CUAE_API Tensor corrupt_images(const Tensor& images, NoiseType type, float level, std::uint64_t seed);

// Bounds on log p(x) of a VAE, per image in nats (means over the images).
struct CUAE_API VaeBounds {
  double elbo = 0.0;       // E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)): the reconstruction term estimated
                           // with the samples, the KL in closed form
  double iw_bound = 0.0;   // log (1/k)·Σ_s p(x, z_s)/q(z_s|x) (Burda et al.): ≥ the ELBO in expectation,
                           // and tighter as k grows
  double recon_nll = 0.0;  // E_q[−log p(x|z)]
  double kl = 0.0;         // KL(q(z|x) ‖ N(0, I))
  int samples = 0;
  std::int64_t images = 0;
  std::vector<double> image_elbo, image_iw_bound;  // per image, in the images' order
};

// The training objective over a set of images: its total (the training loss's quantity) and each
// term by name, weighted as in training, the reconstruction term first ("reconstruction", then
// "kl", "sparsity", "contractive", ...); means per batch.
struct CUAE_API Objective {
  double total = 0.0;
  std::vector<std::pair<std::string, double>> terms;
};

// train() reports through this every [train] log_every steps and at each epoch's end. Training
// stops with cuae::Error when a step's loss is not finite, or when it diverges: the reported loss
// above 1000 times its lowest report so far for 3 reports in a row.
struct CUAE_API TrainProgress {
  int epoch = 0, epochs = 0;           // 1-based epoch
  std::int64_t step = 0;               // step within the epoch (1-based)
  std::int64_t steps_per_epoch = 0;
  std::int64_t global_step = 0;
  double loss = 0.0;                   // mean training loss over the steps since the last report
  double epoch_loss = 0.0;             // mean over the epoch so far (objective incl. penalties)
  Objective epoch_objective;           // at an epoch's end: epoch_loss and its terms, by name
  // Epoch ends with a validation split ([train] validation > 0): the reconstruction loss on the
  // held-out images, whether it is the best so far (the weights are then the best ones), and
  // whether training stops here (patience exhausted).
  double val_loss = -1.0;              // the objective on them (objective()); < 0 when not measured
  bool improved = false;
  bool stopping = false;
  int best_epoch = 0;
  double images_per_sec = 0.0;        // since the last report
  double epoch_images_per_sec = 0.0;  // since the epoch began
  double elapsed_sec = 0.0;
  double eta_sec = 0.0;
  bool epoch_end = false;
  // Write a checkpoint now (save() then holds everything a resumed run needs): at each epoch's
  // end, every [train] checkpoint_every steps, every checkpoint_minutes, and when interrupted.
  bool checkpoint = false;
  // request_stop() was honoured: this is the last report, after the step in flight; train()
  // returns next, and a checkpoint saved now resumes exactly. (A stop requested during an epoch's
  // last report ends the run after it; that report has checkpoint set too. A caller that saves on
  // every checkpoint report is therefore always left with the point where the run stopped.)
  bool interrupted = false;
};

// Greedy layer-wise pretraining ([pretrain]; a deep, untied model with sigmoid hidden layers and
// a sigmoid or linear code): one RBM trained by CD-k (method "rbm", the 2006 recipe: Bernoulli
// or Gaussian visible units for the first layer, Bernoulli hidden units, linear units for a
// linear code; momentum 0.5 then 0.9, L2 decay on the weights) or one denoising autoencoder
// (method "dae") per layer, each on the previous layer's activations. Returns the unrolled
// autoencoder's parameters: encoder.{i}.weight/bias from layer i, decoder.{j}.weight = its
// transpose and decoder.{j}.bias its visible bias (j = depth − 1 − i) — a checkpoint that
// `cuae train --init` (Autoencoder::load_parameters) fine-tunes with the decoder untied.
struct CUAE_API PretrainProgress {
  int layer = 0, layers = 0;           // 0-based layer being trained, of layers
  int epoch = 0, epochs = 0;           // 1-based
  double recon_error = 0.0;            // rbm: mean Σ(v0 − v1)² per sample; dae: the epoch's loss
  double free_energy_train = 0.0;      // rbm: mean free energy of training rows ...
  double free_energy_heldout = 0.0;    // ... and of held-out rows (a growing gap: overfitting)
  double elapsed_sec = 0.0;
};
CUAE_API std::map<std::string, Tensor> pretrain_stack(const Config& config, const Dataset& data, Device device,
                                                      const std::function<void(const PretrainProgress&)>& progress = {});

// Which images of a set of `size` train() uses: the first max_train (all when 0), of which the
// last share `validation` (at least one image when > 0) is held out, never trained on. What a
// baseline or a threshold must be fitted on to see exactly what the model saw, or did not see.
struct CUAE_API TrainSplit {
  std::int64_t train = 0, validation = 0;
};
CUAE_API TrainSplit training_split(const TrainConfig& t, std::int64_t size);

// The memory a training run of `config` needs on `device`, planned without allocating any of it:
// the training step (arena with workspaces, parameters, gradients, optimizer state), the
// evaluation executor's arena, and the training images a CUDA run copies to the device.
struct CUAE_API TrainMemory {
  MemoryReport step;
  std::size_t eval_arena_bytes = 0;
  std::size_t data_bytes = 0;
  std::size_t total() const {
    return step.arena_bytes + step.param_bytes + step.state_bytes + eval_arena_bytes + data_bytes;
  }
  // "about 1.2 GiB (step: arena ..., ...; evaluation ...; training images ...)"
  std::string describe() const;
};
CUAE_API TrainMemory plan_training_memory(const Config& config, Device device, std::int64_t train_images);

class CUAE_API Autoencoder {
 public:
  // Parameters initialised from config.train.seed.
  Autoencoder(const Config& config, Device device);
  // From a checkpoint written by save(): the config comes from its metadata; weights, optimizer
  // state and step are restored. train() then trains config.train.epochs more epochs.
  static Autoencoder load(const std::string& checkpoint_path, Device device);
  // From a checkpoint written by save() during train() (an interrupted or periodic one): load(),
  // and train() then continues that run where it stood, until config.train.epochs epochs are done
  // in all (`epochs`, when > 0, replaces that total): the same data order, random numbers,
  // early-stopping state and running losses, so the losses and parameters are bit-identical to an
  // uninterrupted run's.
  static Autoencoder resume(const std::string& checkpoint_path, Device device, int epochs = 0);
  ~Autoencoder();
  Autoencoder(Autoencoder&&) noexcept;
  Autoencoder& operator=(Autoencoder&&) noexcept;

  const Config& config() const;
  Device device() const;
  std::int64_t step() const;    // optimizer updates so far
  int epochs_done() const;
  std::int64_t parameter_count() const;
  // Memory plan of the training step (after train() started) or of inference.
  MemoryReport memory() const;

  // Trains config.train.epochs epochs on `data` (shuffled each epoch, last partial batch dropped).
  // Before allocating, the run's memory (plan_training_memory) is checked against the device's
  // available memory; a run that cannot fit is refused with the numbers and what to change.
  // The dataset is copied to the device once; batches are gathered there. With [train] validation
  // the last fraction of the images is held out and scored after each epoch; with patience > 0
  // training stops once that many epochs passed without improvement, and the model (weights and
  // optimizer state) is rolled back to the best epoch.
  void train(const Dataset& data, const std::function<void(const TrainProgress&)>& progress = {});
  // Trains on batches decoded on the stream's background threads (an image collection larger than
  // memory): the stream's batch size must be [train] batch_size (a last partial batch is left
  // out); validation images [N, D] (host, may be empty) are scored after every epoch as above.
  void train(ImageStream& stream, const Tensor& validation,
             const std::function<void(const TrainProgress&)>& progress = {});

  Tensor encode(const Tensor& images);       // [N, layers[0]] -> [N, code] (host)
  // The output of one encoder layer ("code" or "encoder.N"), [N, width] (host).
  Tensor activations(const Tensor& images, const std::string& layer);
  // Mean over images of ‖∂h/∂x‖²_F for encoder layer `layer` (h its output, x its input).
  double jacobian_norm(const Tensor& images, const std::string& layer);
  Tensor reconstruct(const Tensor& images);  // [N, layers[0]] -> [N, layers[0]] (host)
  // The decoder applied to codes [N, code] (host): images [N, layers[0]] (sigmoid of the logits
  // with loss bce). Not for decoders that unpool with the encoder's indices.
  Tensor decode(const Tensor& codes);
  // A VAE's samples: z ~ N(0, I) from `seed`, decoded. [n, layers[0]] (host).
  Tensor sample(std::int64_t n, std::uint64_t seed);
  // A VAE's ELBO and importance-weighted bound with `samples` posterior samples per image.
  VaeBounds vae_bounds(const Tensor& images, int samples);
  ReconMetrics evaluate(const Tensor& images);
  // The reconstruction term of the configured loss over `images` (per batch mean), without any
  // regularizer: comparable across models with the same loss.
  double loss(const Tensor& images);
  // The training objective itself over `images` — the reconstruction term plus every regularizer
  // (a VAE's KL, sparsity, contractive), each term named — computed as a training step computes it
  // (input noise, dropout and a VAE's sampling included) but without an update: the figure to set
  // beside the training loss. Whole batches of [train] batch_size (fewer images than one batch are
  // repeated to fill it).
  Objective objective(const Tensor& images);

  // The model's parameters by name (host tensors).
  std::vector<std::pair<std::string, Tensor>> parameters();
  // Replaces every parameter with the tensors of the same name (e.g. a pretrained stack); the
  // optimizer state starts afresh. Every parameter must be present with its shape.
  void load_parameters(const std::map<std::string, Tensor>& tensors);

  // Asks a running train() to stop after the step in flight; it reports once more (interrupted)
  // and returns. Async-signal-safe (one lock-free atomic store): a SIGINT handler may call it.
  void request_stop();
  // True when the last train() returned because of request_stop().
  bool interrupted() const;

  // safetensors: parameters, optimizer state (opt.m.*, opt.v.*), and in __metadata__ the config
  // (TOML), step, epoch, format and, during training, where the run stands ("run": the step within
  // the epoch, running sums, early-stopping state; with patience, the best epoch's tensors under
  // "best."). Written to a temporary file and renamed.
  void save(const std::string& path);

  struct State;
  struct BatchSource;

 private:
  void ensure_trainer();
  void run_training(const BatchSource& src, const Tensor& validation,
                    const std::function<void(const TrainProgress&)>& progress);
  explicit Autoencoder(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};

}  // namespace cuae
