// cuae::Config — a training run described in a TOML file (parsed with toml++).
//
//   [model]                       # deep (stacked, symmetric) autoencoder
//   layers = [784, 1000, 500, 250, 30]   # input width first, code width last; the decoder mirrors it
//   activation = "sigmoid"        # hidden layers: identity|relu|leaky_relu|sigmoid|tanh|gelu
//   code_activation = "identity"  # the code layer ("identity" = linear code)
//   output_activation = "sigmoid" # the reconstruction; must be "sigmoid" with loss "bce"
//   tied_weights = false          # decoder layer i reuses encoder weight i transposed
//   leaky_slope = 0.01
//   dropout = 0.0                 # inverted dropout on every hidden layer's output during training
//                                 # (not on the code, not on the reconstruction)
//
//   [noise]                       # denoising autoencoder: corrupt the input, reconstruct the clean one
//   type = "none"                 # none | mask | gaussian | salt_pepper
//   level = 0.3                   # mask, salt_pepper: fraction of pixels; gaussian: σ
//
//   [sparsity]                    # sparse autoencoder
//   type = "none"                 # none | kl | l1 | ksparse
//   layer = "code"                # "code" or "encoder.N" (the output of encoder layer N, from 0)
//   target = 0.05                 # kl: target mean activation ρ
//   weight = 0.0                  # kl: β; l1: λ
//   k = 0                         # ksparse: active units kept per sample
//
//   [contractive]                 # contractive autoencoder: λ·‖∂h/∂x‖²_F of one encoder layer
//   weight = 0.0                  # λ (0 = off)
//   layer = "encoder.0"
//
//   [loss]
//   type = "bce"                  # mse | l1 | bce (binary cross-entropy on logits, stable)
//   reduction = "sum"             # "sum": per image, averaged over the batch; "mean": per element
//
//   [optimizer]
//   type = "adam"                 # sgd | adam | adamw
//   lr = 1e-3
//   beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0, momentum = 0.9, nesterov = false
//   l1 = 0.0                      # L1 weight penalty λ₁·Σ|w| (weights only)
//
//   [train]
//   batch_size = 256
//   epochs = 10
//   seed = 1
//   device = "auto"               # auto | cuda | cpu
//   tf32 = false                  # CUDA: TF32 tensor cores for fp32 GEMMs
//   max_train = 0                 # use only the first N training images (0 = all)
//   log_every = 50                # steps between progress lines
//   validation = 0.0              # fraction of the training images held out (from the end) to
//                                 # validate on after every epoch
//   patience = 0                  # early stopping: stop after this many epochs without a better
//                                 # validation loss and keep the best weights (0 = off)
//
//   [data]
//   dataset = "fashion-mnist"     # fashion-mnist | idx
//   dir = "/usr/share/datasets/fashion-mnist"   # default: $CUAE_FASHION_MNIST_DIR if set
//   train_images = "", train_labels = "", test_images = "", test_labels = ""   # for dataset = "idx"
//
//   [output]
//   dir = "runs/default"          # checkpoint.safetensors, reconstructions.png, metrics.csv
//
// Every key is optional except model.layers. An unknown table or key, a value of the wrong type or
// out of range is an error naming the file, the key and what was expected.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cuae/data.hpp"
#include "cuae/executor.hpp"
#include "cuae/graph.hpp"

namespace cuae {

struct CUAE_API ModelConfig {
  std::string type = "deep";
  std::vector<std::int64_t> layers;
  Activation activation = Activation::Sigmoid;
  Activation code_activation = Activation::Identity;
  Activation output_activation = Activation::Sigmoid;
  bool tied_weights = false;
  float leaky_slope = 0.01f;
  float dropout = 0.0f;
};

struct CUAE_API NoiseConfig {
  bool enabled = false;
  NoiseType type = NoiseType::Mask;
  float level = 0.3f;
};

struct CUAE_API SparsityConfig {
  enum class Kind { None, KL, L1, KSparse };
  Kind type = Kind::None;
  std::string layer = "code";
  float target = 0.05f;
  float weight = 0.0f;
  int k = 0;
};
CUAE_API const char* sparsity_name(SparsityConfig::Kind k);

struct CUAE_API ContractiveConfig {
  float weight = 0.0f;
  std::string layer = "encoder.0";
};

struct CUAE_API LossConfig {
  LossType type = LossType::BCEWithLogits;
  Reduction reduction = Reduction::SumPerSample;
};

struct CUAE_API TrainConfig {
  int batch_size = 256;
  int epochs = 10;
  std::uint64_t seed = 1;
  std::string device = "auto";
  bool tf32 = false;
  std::int64_t max_train = 0;
  int log_every = 50;
  double validation = 0.0;
  int patience = 0;
};

struct CUAE_API DataConfig {
  std::string dataset = "fashion-mnist";
  std::string dir = default_fashion_mnist_dir();  // $CUAE_FASHION_MNIST_DIR, else Debian's location
  std::string train_images, train_labels, test_images, test_labels;
};

struct CUAE_API OutputConfig {
  std::string dir = "runs/default";
};

struct CUAE_API Config {
  ModelConfig model;
  NoiseConfig noise;
  SparsityConfig sparsity;
  ContractiveConfig contractive;
  LossConfig loss;
  OptimizerConfig optimizer;
  TrainConfig train;
  DataConfig data;
  OutputConfig output;
};

// Parses TOML text; `origin` (a file name) prefixes every error message.
CUAE_API Config parse_config(const std::string& text, const std::string& origin = "<config>");
CUAE_API Config load_config(const std::string& path);
// The config as TOML (every key written), parseable by parse_config. Stored in checkpoints.
CUAE_API std::string to_toml(const Config& c);
// Resolves train.device: "auto" is CUDA when a GPU is usable, else the CPU.
CUAE_API Device resolve_device(const std::string& device);
// The encoder layer a layer name ("code" or "encoder.N") refers to, in [0, depth); throws naming
// `what` (e.g. "[sparsity] layer") when there is no such layer.
CUAE_API int encoder_layer_index(const ModelConfig& model, const std::string& layer, const std::string& what);

}  // namespace cuae
