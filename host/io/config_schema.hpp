// The config's schema, defined once and used both to read a file (config.cpp) and to write one
// (config_toml.cpp): each table's keys in file order, bound to the struct members they fill, and
// each enum's spellings. Rules that relate keys to each other stay with the parser. Internal header.
#pragma once

#include <string>
#include <utility>

#include "cuae/config.hpp"
#include "cuae/error.hpp"

namespace cuae::config_schema {

// How an enum is spelled in a config: parse(text) (throws cuae::Error listing the choices) and
// name(value).
template <class E>
struct Spelling;

// Enums whose names this file defines: a table of (value, name), the first name of a value being
// the one written back; later rows are accepted aliases.
template <class E, std::size_t N>
struct Table {
  std::pair<E, const char*> rows[N];
  const char* name(E v) const {
    for (const auto& r : rows)
      if (r.first == v) return r.second;
    return "?";
  }
  E parse(const std::string& s) const {
    std::string choices;
    for (std::size_t i = 0; i < N; ++i) {
      if (s == rows[i].second) return rows[i].first;
      bool first_of_value = true;
      for (std::size_t j = 0; j < i; ++j) first_of_value = first_of_value && rows[j].first != rows[i].first;
      if (first_of_value) choices += std::string(choices.empty() ? "" : ", ") + rows[i].second;
    }
    throw Error("expected one of " + choices + ", got \"" + s + "\"");
  }
};
inline constexpr Table<ModelType, 2> kModelType{{{ModelType::Deep, "deep"}, {ModelType::Conv, "conv"}}};
inline constexpr Table<BlockType, 4> kBlockType{{{BlockType::Conv, "conv"},
                                                 {BlockType::Deconv, "deconv"},
                                                 {BlockType::Upsample, "upsample"},
                                                 {BlockType::Unpool, "unpool"}}};
inline constexpr Table<PoolKind, 3> kPoolKind{{{PoolKind::None, "none"}, {PoolKind::Max, "max"}, {PoolKind::Avg, "avg"}}};
inline constexpr Table<Likelihood, 2> kLikelihood{{{Likelihood::Bernoulli, "bernoulli"}, {Likelihood::Gaussian, "gaussian"}}};
inline constexpr Table<PretrainMethod, 2> kPretrainMethod{{{PretrainMethod::RBM, "rbm"}, {PretrainMethod::DAE, "dae"}}};
inline constexpr Table<VisibleUnits, 2> kVisibleUnits{{{VisibleUnits::Bernoulli, "bernoulli"}, {VisibleUnits::Gaussian, "gaussian"}}};
inline constexpr Table<Precision, 2> kPrecision{{{Precision::FP32, "fp32"}, {Precision::TF32, "tf32"}}};
inline constexpr Table<DatasetKind, 4> kDatasetKind{{{DatasetKind::FashionMnist, "fashion-mnist"},
                                                     {DatasetKind::Idx, "idx"},
                                                     {DatasetKind::Images, "images"},
                                                     {DatasetKind::Cifar10, "cifar10"}}};
inline constexpr Table<ImageSpec::Fit, 2> kFit{{{ImageSpec::Fit::Crop, "crop"}, {ImageSpec::Fit::Resize, "resize"}}};
inline constexpr Table<BadImagePolicy, 2> kOnError{{{BadImagePolicy::Stop, "stop"}, {BadImagePolicy::Skip, "skip"}}};
inline constexpr Table<Reduction, 2> kReduction{{{Reduction::SumPerSample, "sum"}, {Reduction::Mean, "mean"}}};
inline constexpr Table<SparsityConfig::Kind, 5> kSparsity{{{SparsityConfig::Kind::None, "none"},
                                                           {SparsityConfig::Kind::KL, "kl"},
                                                           {SparsityConfig::Kind::L1, "l1"},
                                                           {SparsityConfig::Kind::KSparse, "ksparse"},
                                                           {SparsityConfig::Kind::KSparse, "k-sparse"}}};

#define CUAE_TABLE_SPELLING(E, table)                                      \
  template <>                                                              \
  struct Spelling<E> {                                                     \
    static E parse(const std::string& s) { return table.parse(s); }       \
    static const char* name(E v) { return table.name(v); }                 \
  };
CUAE_TABLE_SPELLING(ModelType, kModelType)
CUAE_TABLE_SPELLING(BlockType, kBlockType)
CUAE_TABLE_SPELLING(PoolKind, kPoolKind)
CUAE_TABLE_SPELLING(Likelihood, kLikelihood)
CUAE_TABLE_SPELLING(PretrainMethod, kPretrainMethod)
CUAE_TABLE_SPELLING(VisibleUnits, kVisibleUnits)
CUAE_TABLE_SPELLING(Precision, kPrecision)
CUAE_TABLE_SPELLING(DatasetKind, kDatasetKind)
CUAE_TABLE_SPELLING(ImageSpec::Fit, kFit)
CUAE_TABLE_SPELLING(BadImagePolicy, kOnError)
CUAE_TABLE_SPELLING(Reduction, kReduction)
CUAE_TABLE_SPELLING(SparsityConfig::Kind, kSparsity)
#undef CUAE_TABLE_SPELLING

// Enums spelled by the graph and executor headers' own name functions.
#define CUAE_FUNCTION_SPELLING(E, parse_fn, name_fn)                    \
  template <>                                                           \
  struct Spelling<E> {                                                  \
    static E parse(const std::string& s) { return parse_fn(s); }       \
    static const char* name(E v) { return name_fn(v); }                 \
  };
CUAE_FUNCTION_SPELLING(Activation, parse_activation, activation_name)
CUAE_FUNCTION_SPELLING(LossType, parse_loss_type, loss_type_name)
CUAE_FUNCTION_SPELLING(OptimizerType, parse_optimizer, optimizer_name)
CUAE_FUNCTION_SPELLING(NoiseType, parse_noise_type, noise_type_name)
CUAE_FUNCTION_SPELLING(UpsampleMode, parse_upsample_mode, upsample_mode_name)
#undef CUAE_FUNCTION_SPELLING

// The keys of each table, in file order: key(name, member, doc). The docs are what
// `cuae config --reference` prints (config_reference()). Keys that need more than a member
// (model.layers vs input, the conv block lists, noise's "none", the older train.tf32) are read and
// written by hand in config.cpp and config_toml.cpp.
template <class M, class F>
void model_keys(M& m, F&& key) {
  key("activation", m.activation, "hidden layers: identity | relu | leaky_relu | sigmoid | tanh | gelu");
  key("code_activation", m.code_activation, "the code layer (\"identity\": a linear code)");
  key("output_activation", m.output_activation, "the reconstruction; \"sigmoid\" with loss bce");
  key("tied_weights", m.tied_weights, "dense models: decoder layer i reuses encoder weight i transposed");
  key("leaky_slope", m.leaky_slope, "leaky_relu's slope below zero");
  key("dropout", m.dropout,
      "inverted dropout on every hidden layer's output in training (not the code or the output)");
  key("variational", m.variational,
      "a VAE: the code layer becomes a Gaussian head (mu, log sigma^2), sampled by reparameterization");
}

template <class B, class F>
void block_keys(B& b, F&& key) {
  key("type", b.type, "encoder: conv; decoder: deconv | conv | upsample | unpool");
  key("channels", b.channels, "output channels (the last decoder block: the input's)");
  key("kernel", b.kernel, "square filter size");
  key("stride", b.stride, "filter stride");
  // padding: -1 is allowed ("same"), read by hand
  key("dilation", b.dilation, "filter dilation");
  key("output_padding", b.output_padding, "deconv: extra rows and columns on the output's far side");
  key("pool", b.pool, "encoder: none | max | avg, window = stride = pool_size");
  key("pool_size", b.pool_size, "pooling window");
  key("mode", b.mode, "upsample: nearest | bilinear");
  key("scale", b.scale, "upsample: integer factor");
}

template <class V, class F>
void vae_keys(V& v, F&& key) {
  key("beta", v.beta, "weight of KL(q(z|x) || N(0, I)) in the objective");
  key("warmup_epochs", v.warmup_epochs, "the KL weight rises linearly from 0 to beta over these epochs");
  key("likelihood", v.likelihood, "bernoulli (loss bce) | gaussian (loss mse): -log p(x|z) per image, in nats");
  key("sigma", v.sigma, "gaussian: the fixed standard deviation of p(x|z)");
  key("samples", v.samples, "importance samples of cuae eval's bound on log p(x)");
}

template <class P, class F>
void pretrain_keys(P& p, F&& key) {
  key("method", p.method, "rbm (contrastive divergence) | dae (denoising autoencoders)");
  key("epochs", p.epochs, "epochs per layer");
  key("batch_size", p.batch_size, "batch per layer");
  key("lr", p.lr, "rbm: SGD learning rate");
  key("linear_lr_scale", p.linear_lr_scale, "rbm: the linear code layer's rate relative to lr");
  key("momentum", p.momentum, "rbm: momentum after the switch epoch");
  key("initial_momentum", p.initial_momentum, "rbm: momentum for the first momentum_switch_epoch epochs");
  key("momentum_switch_epoch", p.momentum_switch_epoch, "rbm: the epoch the momentum switches");
  key("weight_decay", p.weight_decay, "rbm: L2 weight decay");
  key("k", p.k, "rbm: Gibbs steps of CD-k");
  key("visible", p.visible, "rbm: the first layer's visible units, bernoulli | gaussian");
  key("noise", p.noise, "dae: masking fraction");
}

template <class S, class F>
void sparsity_keys(S& s, F&& key) {
  key("type", s.type, "none | kl | l1 | ksparse");
  key("layer", s.layer, "\"code\" or \"encoder.N\" (the output of encoder layer N, from 0)");
  key("target", s.target, "kl: target mean activation rho");
  key("weight", s.weight, "kl: beta; l1: lambda");
  key("k", s.k, "ksparse: active units kept per sample");
}

template <class C, class F>
void contractive_keys(C& c, F&& key) {
  key("weight", c.weight, "lambda of lambda*||dh/dx||_F^2 (0: off)");
  key("layer", c.layer, "the encoder layer penalised");
}

template <class L, class F>
void loss_keys(L& l, F&& key) {
  key("type", l.type, "mse | l1 | bce (binary cross-entropy on logits)");
  key("reduction", l.reduction, "sum (per image, averaged over the batch) | mean (per element)");
}

template <class O, class F>
void optimizer_keys(O& o, F&& key) {
  key("type", o.type, "sgd | adam | adamw");
  key("lr", o.lr, "learning rate");
  key("beta1", o.beta1, "Adam's first-moment decay");
  key("beta2", o.beta2, "Adam's second-moment decay");
  key("eps", o.eps, "Adam's denominator epsilon");
  key("weight_decay", o.weight_decay, "L2 (sgd, adam) or decoupled (adamw) weight decay");
  key("momentum", o.momentum, "sgd: momentum (0.9 by default for sgd)");
  key("nesterov", o.nesterov, "sgd: Nesterov momentum");
  key("l1", o.l1, "L1 weight penalty lambda_1*sum|w| (weights only)");
}

template <class T, class F>
void train_keys(T& t, F&& key) {
  key("batch_size", t.batch_size, "examples per step");
  key("epochs", t.epochs, "epochs to train");
  key("seed", t.seed, "initialisation, data order and noise");
  key("device", t.device, "auto | cuda | cpu");
  key("precision", t.precision, "fp32 | tf32 (CUDA: TF32 tensor cores; the CPU computes fp32)");
  key("cuda_graph", t.cuda_graph, "CUDA: capture the whole step once per batch shape and replay it");
  key("max_train", t.max_train, "use only the first N training images (0: all)");
  key("log_every", t.log_every, "steps between progress lines");
  key("validation", t.validation,
      "fraction of the training images held out (from the end), scored after every epoch");
  key("patience", t.patience, "early stopping: epochs without a better validation loss (0: off)");
  key("checkpoint_every", t.checkpoint_every,
      "cuae train: also write the checkpoint every N steps (always at epoch ends and when interrupted)");
  key("checkpoint_minutes", t.checkpoint_minutes, "... and at least every this many minutes (0: off)");
}

template <class D, class F>
void data_keys(D& d, F&& key) {
  key("dataset", d.dataset, "fashion-mnist | idx | images | cifar10");
  key("dir", d.dir, "fashion-mnist and cifar10: the folder of the files");
  key("train_images", d.train_images, "idx: the training images file");
  key("train_labels", d.train_labels, "idx: the training labels file (optional)");
  key("test_images", d.test_images, "idx: the test images file");
  key("test_labels", d.test_labels, "idx: the test labels file (optional)");
  key("train_dir", d.train_dir, "images: the folder of training PNG/JPEG files (searched recursively)");
  key("test_dir", d.test_dir, "images: the folder of test images");
  key("image_size", d.image_size, "images: [channels, height, width] (default: a conv model's input)");
  key("fit", d.fit, "images: crop (scale the short side, cut the centre) | resize");
  key("on_error", d.on_error, "images: stop at an unreadable image, or skip it (logged, counted)");
  key("stream", d.stream, "images: decode training batches on background threads instead of loading them all");
  key("threads", d.threads, "images: decoding threads (0: all but one core)");
  key("prefetch", d.prefetch, "images: batches decoded ahead");
  key("max_test", d.max_test, "evaluate on the first N test images only (0: all)");
  key("classes", d.classes, "train on these classes only, e.g. [0] for an anomaly detector's normal class (empty: all)");
  key("contamination", d.contamination, "with classes: this share of the training images comes from the other classes");
}

template <class O, class F>
void output_keys(O& o, F&& key) {
  key("dir", o.dir, "the run's folder: checkpoint.safetensors, reconstructions.png, metrics.csv");
  key("images_every", o.images_every,
      "cuae train: reconstructions_E.png (and a VAE's samples_E.png) every N epochs (0: only at the end)");
}

}  // namespace cuae::config_schema
