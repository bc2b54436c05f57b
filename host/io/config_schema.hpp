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

// The keys of each table, in file order: key(name, member). Keys that need more than a member
// (model.layers vs input, the conv block lists, noise's "none", the older train.tf32) are read and
// written by hand in config.cpp and config_toml.cpp.
template <class M, class F>
void model_keys(M& m, F&& key) {
  key("activation", m.activation);
  key("code_activation", m.code_activation);
  key("output_activation", m.output_activation);
  key("tied_weights", m.tied_weights);
  key("leaky_slope", m.leaky_slope);
  key("dropout", m.dropout);
  key("variational", m.variational);
}

template <class B, class F>
void block_keys(B& b, F&& key) {
  key("type", b.type);
  key("channels", b.channels);
  key("kernel", b.kernel);
  key("stride", b.stride);
  // padding: -1 is allowed ("same"), read by hand
  key("dilation", b.dilation);
  key("output_padding", b.output_padding);
  key("pool", b.pool);
  key("pool_size", b.pool_size);
  key("mode", b.mode);
  key("scale", b.scale);
}

template <class V, class F>
void vae_keys(V& v, F&& key) {
  key("beta", v.beta);
  key("warmup_epochs", v.warmup_epochs);
  key("likelihood", v.likelihood);
  key("sigma", v.sigma);
  key("samples", v.samples);
}

template <class P, class F>
void pretrain_keys(P& p, F&& key) {
  key("method", p.method);
  key("epochs", p.epochs);
  key("batch_size", p.batch_size);
  key("lr", p.lr);
  key("linear_lr_scale", p.linear_lr_scale);
  key("momentum", p.momentum);
  key("initial_momentum", p.initial_momentum);
  key("momentum_switch_epoch", p.momentum_switch_epoch);
  key("weight_decay", p.weight_decay);
  key("k", p.k);
  key("visible", p.visible);
  key("noise", p.noise);
}

template <class S, class F>
void sparsity_keys(S& s, F&& key) {
  key("type", s.type);
  key("layer", s.layer);
  key("target", s.target);
  key("weight", s.weight);
  key("k", s.k);
}

template <class C, class F>
void contractive_keys(C& c, F&& key) {
  key("weight", c.weight);
  key("layer", c.layer);
}

template <class L, class F>
void loss_keys(L& l, F&& key) {
  key("type", l.type);
  key("reduction", l.reduction);
}

template <class O, class F>
void optimizer_keys(O& o, F&& key) {
  key("type", o.type);
  key("lr", o.lr);
  key("beta1", o.beta1);
  key("beta2", o.beta2);
  key("eps", o.eps);
  key("weight_decay", o.weight_decay);
  key("momentum", o.momentum);
  key("nesterov", o.nesterov);
  key("l1", o.l1);
}

template <class T, class F>
void train_keys(T& t, F&& key) {
  key("batch_size", t.batch_size);
  key("epochs", t.epochs);
  key("seed", t.seed);
  key("device", t.device);
  key("precision", t.precision);
  key("cuda_graph", t.cuda_graph);
  key("max_train", t.max_train);
  key("log_every", t.log_every);
  key("validation", t.validation);
  key("patience", t.patience);
  key("checkpoint_every", t.checkpoint_every);
  key("checkpoint_minutes", t.checkpoint_minutes);
}

template <class D, class F>
void data_keys(D& d, F&& key) {
  key("dataset", d.dataset);
  key("dir", d.dir);
  key("train_images", d.train_images);
  key("train_labels", d.train_labels);
  key("test_images", d.test_images);
  key("test_labels", d.test_labels);
  key("train_dir", d.train_dir);
  key("test_dir", d.test_dir);
  key("image_size", d.image_size);
  key("fit", d.fit);
  key("on_error", d.on_error);
  key("stream", d.stream);
  key("threads", d.threads);
  key("prefetch", d.prefetch);
  key("max_test", d.max_test);
}

template <class O, class F>
void output_keys(O& o, F&& key) {
  key("dir", o.dir);
}

}  // namespace cuae::config_schema
