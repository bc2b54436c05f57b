// cuae::Config — a training run described in a TOML file (parsed with toml++).
//
// The overview below shows the tables and their main keys. The complete reference — every key,
// its default and meaning — is generated from the schema the parser reads (host/io/config_schema.hpp)
// by config_reference() / `cuae config --reference`; `cuae config --config FILE` prints a file with
// every default filled in.
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
//   A convolutional autoencoder (type = "conv") replaces `layers` with:
//   type = "conv"
//   input = [1, 28, 28]           # channels, height, width of the images (rows are HWC-flattened)
//   code = 30                     # a dense bottleneck of this width after the last encoder block
//                                 # (0: the last block's feature map is the code)
//   [[model.encoder]]             # one table per block: conv -> activation -> optional pool
//   channels = 32                 # output channels
//   kernel = 3, stride = 1, dilation = 1
//   padding = -1                  # -1: dilation·(kernel−1)/2 ("same" size at stride 1)
//   pool = "none"                 # none | max | avg, window = stride = pool_size
//   pool_size = 2
//   [[model.decoder]]             # optional; without it the decoder mirrors the encoder: each
//                                 # pool undone (max: unpooling with the pool's indices, avg:
//                                 # nearest upsampling) and each conv transposed back to its input
//   type = "deconv"               # deconv | conv | upsample | unpool
//   channels, kernel, stride, padding, dilation as above; output_padding = 0 (deconv)
//   mode = "nearest", scale = 2   # upsample: nearest | bilinear, integer factor
//   The last decoder block must be a conv or deconv producing the input's channels; every shape is
//   inferred, and a shape that does not work is an error listing the shape after every layer.
//
//   variational = false           # a VAE: the code layer becomes a Gaussian head (μ and log σ²
//                                 # of the code width each), sampled by reparameterization
//
//   [vae]                         # with [model] variational = true
//   beta = 1.0                    # weight of KL(q(z|x) ‖ N(0, I)) in the objective
//   warmup_epochs = 0.0           # the KL weight rises linearly from 0 to beta over these epochs
//   likelihood = "bernoulli"      # bernoulli (needs [loss] bce) | gaussian (needs [loss] mse):
//                                 # −log p(x|z) per image, in nats
//   sigma = 0.1                   # gaussian: the fixed standard deviation of p(x|z)
//   samples = 100                 # importance samples of `cuae eval`'s bound on log p(x)
//
//   [pretrain]                    # greedy layer-wise pretraining (cuae pretrain), deep models
//   method = "rbm"                # rbm (contrastive divergence) | dae (denoising autoencoders)
//   epochs = 10, batch_size = 100 # per layer
//   lr = 0.1, linear_lr_scale = 0.01, momentum = 0.9, initial_momentum = 0.5,
//   momentum_switch_epoch = 5, weight_decay = 2e-4, k = 1, visible = "bernoulli"   # rbm
//   noise = 0.2                   # dae: masking fraction
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
//   precision = "fp32"            # fp32 | tf32 (CUDA: TF32 tensor cores in the fp32 GEMMs and
//                                 # convolutions, ~1e-3 relative error; the CPU computes fp32).
//                                 # The older key tf32 = true|false is read as tf32|fp32.
//   cuda_graph = true             # CUDA: capture the whole training step once per batch shape and
//                                 # replay it (false: launch every kernel eagerly, for debugging)
//   max_train = 0                 # use only the first N training images (0 = all)
//   log_every = 50                # steps between progress lines
//   validation = 0.0              # fraction of the training images held out (from the end) to
//                                 # validate on after every epoch
//   patience = 0                  # early stopping: stop after this many epochs without a better
//                                 # validation loss and keep the best weights (0 = off)
//   checkpoint_every = 0          # `cuae train`: also write the checkpoint every N steps (it is
//                                 # always written at each epoch's end and when interrupted)
//   checkpoint_minutes = 0.0      # ... and at least every this many minutes (0 = off)
//
//   [data]
//   dataset = "fashion-mnist"     # fashion-mnist | idx | images | cifar10
//   dir = "/usr/share/datasets/fashion-mnist"   # default: $CUAE_FASHION_MNIST_DIR if set
//   train_images = "", train_labels = "", test_images = "", test_labels = ""   # for dataset = "idx"
//                                 # cifar10: dir holds data_batch_1..5.bin and test_batch.bin
//   train_dir = "", test_dir = "" # images: folders of PNG/JPEG files (searched recursively)
//   image_size = [3, 128, 128]    # images: channels, height, width (default: a conv model's input)
//   fit = "crop"                  # images: crop (scale the short side, cut the centre) | resize
//   on_error = "stop"             # images: stop at an unreadable image, or skip it (logged, counted)
//   stream = false                # images: decode on background threads while training, into
//                                 # pinned memory, instead of decoding everything first (for
//                                 # collections larger than memory)
//   threads = 0, prefetch = 4     # images: decoding threads (0: all but one core), batches ahead
//   max_test = 0                  # evaluate on the first N test images only (0 = all)
//
//   [output]
//   dir = "runs/default"          # checkpoint.safetensors, reconstructions.png, metrics.csv
//   images_every = 0              # reconstructions_E.png (a VAE also samples_E.png) every N epochs
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
#include "cuae/images.hpp"

namespace cuae {

// The settings that take one of a few names are enums, parsed once when the file is read. Each
// enum's config spelling is defined once (config_name, in config.cpp) and serves the parser, the
// messages and to_toml.
enum class ModelType { Deep, Conv };
enum class BlockType { Conv, Deconv, Upsample, Unpool };
enum class PoolKind { None, Max, Avg };
enum class Likelihood { Bernoulli, Gaussian };
enum class PretrainMethod { RBM, DAE };
enum class VisibleUnits { Bernoulli, Gaussian };
enum class Precision { FP32, TF32 };
enum class DatasetKind { FashionMnist, Idx, Images, Cifar10 };
CUAE_API const char* config_name(ModelType v);       // "deep", "conv"
CUAE_API const char* config_name(BlockType v);       // "conv", "deconv", "upsample", "unpool"
CUAE_API const char* config_name(PoolKind v);        // "none", "max", "avg"
CUAE_API const char* config_name(Likelihood v);      // "bernoulli", "gaussian"
CUAE_API const char* config_name(PretrainMethod v);  // "rbm", "dae"
CUAE_API const char* config_name(VisibleUnits v);    // "bernoulli", "gaussian"
CUAE_API const char* config_name(Precision v);       // "fp32", "tf32"
CUAE_API const char* config_name(DatasetKind v);     // "fashion-mnist", "idx", "images", "cifar10"
CUAE_API const char* config_name(ImageSpec::Fit v);  // "crop", "resize"
CUAE_API const char* config_name(BadImagePolicy v);  // "stop", "skip"

// One block of a convolutional autoencoder (see the [[model.encoder]] comment above).
struct CUAE_API ConvBlockConfig {
  BlockType type = BlockType::Conv;  // encoder: conv; decoder: deconv | conv | upsample | unpool
  int channels = 0;
  int kernel = 3;
  int stride = 1;
  int padding = -1;               // -1: dilation·(kernel−1)/2
  int dilation = 1;
  int output_padding = 0;         // deconv
  PoolKind pool = PoolKind::None;  // encoder
  int pool_size = 2;
  UpsampleMode mode = UpsampleMode::Nearest;  // upsample
  int scale = 2;                  // upsample
  int pad() const { return padding >= 0 ? padding : dilation * (kernel - 1) / 2; }
};

struct CUAE_API ModelConfig {
  ModelType type = ModelType::Deep;
  // deep: the widths, input first. conv: derived from the shapes (input C·H·W, the flattened size
  // after each encoder block, then the code), so every per-layer option (sparsity and contractive
  // layers, encode, activations) addresses conv and deep models alike.
  std::vector<std::int64_t> layers;
  std::vector<std::int64_t> input;            // conv: [channels, height, width]
  std::vector<ConvBlockConfig> encoder, decoder;
  std::int64_t code = 0;                      // conv: dense bottleneck width (0 = none)
  bool variational = false;
  Activation activation = Activation::Sigmoid;
  Activation code_activation = Activation::Identity;
  Activation output_activation = Activation::Sigmoid;
  bool tied_weights = false;
  float leaky_slope = 0.01f;
  float dropout = 0.0f;
};

struct CUAE_API VaeConfig {
  float beta = 1.0f;
  double warmup_epochs = 0.0;
  Likelihood likelihood = Likelihood::Bernoulli;
  float sigma = 0.1f;
  int samples = 100;
};

struct CUAE_API PretrainConfig {
  PretrainMethod method = PretrainMethod::RBM;
  int epochs = 10;                 // per layer
  int batch_size = 100;
  float lr = 0.1f;                 // rbm: SGD learning rate
  float linear_lr_scale = 0.01f;   // rbm: the linear code layer's rate relative to lr (2006: 0.001 vs 0.1)
  float momentum = 0.9f;
  float initial_momentum = 0.5f;   // for the first momentum_switch_epoch epochs
  int momentum_switch_epoch = 5;
  float weight_decay = 2e-4f;
  int k = 1;                       // CD-k
  VisibleUnits visible = VisibleUnits::Bernoulli;  // the first layer's visible units
  float noise = 0.2f;              // dae: masking fraction
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
  Precision precision = Precision::FP32;
  bool cuda_graph = true;
  std::int64_t max_train = 0;
  int log_every = 50;
  double validation = 0.0;
  int patience = 0;
  std::int64_t checkpoint_every = 0;  // steps; 0 = at epoch ends only
  double checkpoint_minutes = 0.0;    // 0 = off
};

struct CUAE_API DataConfig {
  DatasetKind dataset = DatasetKind::FashionMnist;
  std::string dir = default_fashion_mnist_dir();  // $CUAE_FASHION_MNIST_DIR, else Debian's location
  std::string train_images, train_labels, test_images, test_labels;
  std::string train_dir, test_dir;
  std::vector<std::int64_t> image_size;
  ImageSpec::Fit fit = ImageSpec::Fit::Crop;
  BadImagePolicy on_error = BadImagePolicy::Stop;
  bool stream = false;
  int threads = 0;
  int prefetch = 4;
  std::int64_t max_test = 0;
  // Train on these classes only (labelled sets; empty: all), e.g. the "normal" class of an
  // anomaly detector; the test set keeps every class. With contamination > 0 that share of the
  // training images is drawn from the other classes (select_classes in cuae/data.hpp).
  std::vector<int> classes;
  double contamination = 0.0;
};

struct CUAE_API OutputConfig {
  std::string dir = "runs/default";
  int images_every = 0;  // cuae train: reconstructions_E.png (and a VAE's samples_E.png) every N epochs (0: off)
};

struct CUAE_API Config {
  ModelConfig model;
  VaeConfig vae;
  PretrainConfig pretrain;
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
// The same with overrides "TABLE.KEY=VALUE" applied over the file before it is checked, so an
// override is held to every rule a value in the file is (e.g. {"optimizer.lr=3e-4",
// "train.batch_size=64", "output.dir=runs/try"}; VALUE is TOML, or a plain string).
CUAE_API Config parse_config(const std::string& text, const std::string& origin, const std::vector<std::string>& overrides);
CUAE_API Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});
// The config as TOML (every key written), parseable by parse_config. Stored in checkpoints.
CUAE_API std::string to_toml(const Config& c);
// Every table and key with its default and a line on what it means, as TOML with comments
// (`cuae config --reference`), from the same schema the parser reads.
CUAE_API std::string config_reference();
// Resolves train.device: "auto" is CUDA when a GPU is usable, else the CPU.
CUAE_API Device resolve_device(const std::string& device);
// The encoder layer a layer name ("code" or "encoder.N") refers to, in [0, depth); throws naming
// `what` (e.g. "[sparsity] layer") when there is no such layer.
CUAE_API int encoder_layer_index(const ModelConfig& model, const std::string& layer, const std::string& what);

// The layers of a convolutional model with their output shapes ([H, W, C] for feature maps, [D]
// for dense layers) and parameter counts, input first, as the model builder will create them.
// Throws cuae::Error naming the first layer whose shape does not work, with the table of shapes so
// far (and the input) in the message.
struct CUAE_API LayerShape {
  std::string name;        // "encoder.0", "encoder.0.pool", "decoder.2", ...
  std::string what;        // "conv 3x3/2 pad 1, relu", "max pool 2x2", ...
  std::vector<std::int64_t> shape;
  std::int64_t params = 0;
};
// logits: the last layer emits logits (loss bce), so its activation is the identity.
CUAE_API std::vector<LayerShape> conv_layer_shapes(const ModelConfig& model, bool logits = false);
// model.layers of a conv model: C·H·W, then the flattened size after each encoder block, then the
// code width when there is a dense bottleneck.
CUAE_API std::vector<std::int64_t> conv_stage_widths(const ModelConfig& model);
CUAE_API std::string format_layer_shapes(const std::vector<LayerShape>& layers);

}  // namespace cuae
