// Greedy layer-wise pretraining of a deep autoencoder's encoder (Hinton & Salakhutdinov 2006;
// Vincent et al. 2010): one RBM (contrastive divergence) or one denoising autoencoder per layer,
// each trained on the previous layer's hidden activations, then unrolled into the encoder and a
// mirrored decoder with the transposed weights.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>

#include "cuae/autoencoder.hpp"
#include "cuae/executor.hpp"

namespace cuae {

namespace {

using Clock = std::chrono::steady_clock;

// An index tensor [count] on the device: first, first + 1, ..., clamped to last (a partial batch
// repeats its final row).
Tensor index_range(std::int64_t first, std::int64_t count, std::int64_t last, Device device) {
  Tensor idx({count}, DType::I32);
  auto* p = static_cast<std::int32_t*>(idx.data());
  for (std::int64_t i = 0; i < count; ++i) p[i] = static_cast<std::int32_t>(std::min(first + i, last));
  return device == Device::CPU ? idx : idx.to(device);
}

// One RBM layer over the pretraining store: W [nh, nv] is encoder.{li}.weight, the hidden bias c
// encoder.{li}.bias, the visible bias b decoder.{j}.bias (j the decoder layer that mirrors it), so
// the unrolled stack reads them by name. Three graphs share them: the CD-k term on a batch
// (trained), the free energy of the monitor rows, and the hidden activations of a chunk of rows
// (the next layer's data).
struct RbmLayer {
  std::string w, b, c;
  Graph train, energy, hidden;
  Value fe, h;
};

RbmLayer rbm_layer(std::size_t li, std::size_t j, std::int64_t nv, std::int64_t nh, std::int64_t batch,
                   std::int64_t monitor, std::int64_t chunk, const RbmOptions& o) {
  RbmLayer L;
  L.w = "encoder." + std::to_string(li) + ".weight";
  L.c = "encoder." + std::to_string(li) + ".bias";
  L.b = "decoder." + std::to_string(j) + ".bias";
  const std::string name = "rbm." + std::to_string(li);
  auto params = [&](Graph& g) {
    // Small random weights, as in the 2006 code (0.1·N(0, 1)); biases zero.
    return std::array<Value, 3>{g.param(L.w, {nh, nv}, Init::normal(0.1f)), g.param(L.b, {nv}, Init::zeros(), false),
                                g.param(L.c, {nh}, Init::zeros(), false)};
  };
  {
    auto v = L.train.input("v", {batch, nv});
    auto [w, b, c] = params(L.train);
    L.train.rbm_cd(v, w, b, c, o, name);
  }
  {
    auto v = L.energy.input("v", {monitor, nv});
    auto [w, b, c] = params(L.energy);
    L.fe = L.energy.rbm_free_energy(v, w, b, c, o, name + ".free_energy");
    L.energy.mark_output(L.fe);
  }
  {
    auto v = L.hidden.input("v", {chunk, nv});
    auto [w, b, c] = params(L.hidden);
    (void)b;
    L.h = L.hidden.dense(v, w, c, o.linear_hidden ? Activation::Identity : Activation::Sigmoid, false, 0.01f, name + ".hidden");
    L.hidden.mark_output(L.h);
  }
  return L;
}

// The hidden activations of rows [0, n) of data (device [n, nv]) as a device tensor [n, nh]
// (probabilities for Bernoulli units, means for linear ones): the next layer's training data.
Tensor hidden_activations(Executor& ex, const RbmLayer& L, const Tensor& data, std::int64_t n, std::int64_t chunk,
                          std::int64_t nh, Device device) {
  const std::int64_t chunks = (n + chunk - 1) / chunk;
  const Tensor idx = index_range(0, chunks * chunk, n - 1, device);
  Tensor out({n, nh});
  for (std::int64_t k = 0; k < chunks; ++k) {
    ex.gather_input("v", data, idx, k * chunk);
    ex.forward();
    const Tensor h = ex.read(L.h);
    const std::int64_t rows = std::min(chunk, n - k * chunk);
    std::copy(h.f32(), h.f32() + rows * nh, out.f32() + k * chunk * nh);
  }
  return device == Device::CPU ? out : out.to(device);
}

double mean_of(const std::vector<float>& v) {
  double sum = 0.0;
  for (float x : v) sum += x;
  return v.empty() ? 0.0 : sum / static_cast<double>(v.size());
}

// The stacked denoising autoencoder: each layer a one-hidden-layer denoising autoencoder
// (masking noise, untied, sigmoid reconstruction, cross-entropy) trained with the run's optimizer
// on the previous layer's activations.
std::map<std::string, Tensor> pretrain_dae_stack(const Config& cfg, const Dataset& data, Device device, std::int64_t n,
                                                 const std::function<void(const PretrainProgress&)>& progress) {
  const auto& L = cfg.model.layers;
  const std::size_t depth = L.size() - 1;
  std::map<std::string, Tensor> out;
  Dataset cur = subset(data, 0, n);
  const auto t0 = Clock::now();
  for (std::size_t li = 0; li < depth; ++li) {
    Config c = cfg;
    c.model.layers = {L[li], L[li + 1]};
    c.model.code_activation = li + 1 == depth ? cfg.model.code_activation : cfg.model.activation;
    c.model.output_activation = Activation::Sigmoid;
    c.model.dropout = 0.0f;
    c.loss = {LossType::BCEWithLogits, Reduction::SumPerSample};
    c.noise.enabled = cfg.pretrain.noise > 0.0f;
    c.noise.type = NoiseType::Mask;
    c.noise.level = cfg.pretrain.noise;
    c.sparsity = {};
    c.contractive = {};
    c.train.epochs = cfg.pretrain.epochs;
    c.train.batch_size = cfg.pretrain.batch_size;
    c.train.validation = 0.0;
    c.train.patience = 0;
    c.train.max_train = 0;
    c.train.seed = cfg.train.seed + li;
    Autoencoder ae(c, device);
    ae.train(cur, [&](const TrainProgress& tp) {
      if (!tp.epoch_end || !progress) return;
      PretrainProgress p;
      p.layer = static_cast<int>(li);
      p.layers = static_cast<int>(depth);
      p.epoch = tp.epoch;
      p.epochs = tp.epochs;
      p.recon_error = tp.epoch_loss;
      p.elapsed_sec = std::chrono::duration<double>(Clock::now() - t0).count();
      progress(p);
    });
    std::map<std::string, Tensor> t;
    for (auto& [k, v] : ae.parameters()) t[k] = v;
    const int j = static_cast<int>(depth - 1 - li);
    out["encoder." + std::to_string(li) + ".weight"] = t.at("encoder.0.weight");
    out["encoder." + std::to_string(li) + ".bias"] = t.at("encoder.0.bias");
    out["decoder." + std::to_string(j) + ".weight"] = t.at("decoder.0.weight");
    out["decoder." + std::to_string(j) + ".bias"] = t.at("decoder.0.bias");
    if (li + 1 < depth) {
      Dataset next;
      next.images = ae.activations(cur.images, "code");
      next.rows = 1;
      next.cols = static_cast<int>(L[li + 1]);
      next.name = data.name + " (layer " + std::to_string(li + 1) + ")";
      cur = next;
    }
  }
  return out;
}

}  // namespace

std::map<std::string, Tensor> pretrain_stack(const Config& cfg, const Dataset& data, Device device,
                                             const std::function<void(const PretrainProgress&)>& progress) {
  const ModelConfig& model = cfg.model;
  const PretrainConfig& pc = cfg.pretrain;
  CUAE_CHECK(model.type == ModelType::Deep && !model.variational && !model.tied_weights,
             "pretraining builds a deep (untied, non-variational) autoencoder's encoder: [model] type = \"deep\"");
  const auto& L = model.layers;
  const std::size_t depth = L.size() - 1;
  CUAE_CHECK(data.features() == L[0], "dataset \"" + data.name + "\" has " + std::to_string(data.features()) +
                                          " values per image, model.layers[0] is " + std::to_string(L[0]));
  for (std::size_t i = 0; i < depth; ++i) {
    const Activation act = i + 1 == depth ? model.code_activation : model.activation;
    CUAE_CHECK(act == Activation::Sigmoid || (i + 1 == depth && act == Activation::Identity),
               "pretraining needs sigmoid hidden layers (and a sigmoid or linear code): layer " + std::to_string(i) +
                   " is " + activation_name(act));
  }
  std::int64_t n = data.size();
  if (cfg.train.max_train > 0) n = std::min(n, cfg.train.max_train);
  const std::int64_t held = std::min<std::int64_t>(std::max<std::int64_t>(n / 20, 1), 1000);  // free-energy monitor
  const std::int64_t n_train = n - held;
  const int batch = pc.batch_size;
  CUAE_CHECK(n_train >= batch, "pretraining needs at least one batch of " + std::to_string(batch) + " images");
  const std::int64_t steps = n_train / batch;

  if (pc.method == PretrainMethod::DAE) return pretrain_dae_stack(cfg, data, device, n, progress);
  // Every layer's executors share one store; each layer trains its own three parameters with
  // SGD and the 2006 schedule (momentum initial_momentum for the first momentum_switch_epoch
  // epochs, then momentum; L2 decay on W only).
  auto store = std::make_shared<ParameterStore>(device);
  const std::int64_t chunk = std::min<std::int64_t>(n, 2048);
  // The current layer's input, on the device: the images, then each layer's activations.
  Tensor cur = data.images.rows(0, n);
  if (device != Device::CPU) cur = cur.to(device);
  const Tensor train_rows = index_range(0, held, n_train - 1, device);
  const Tensor held_rows = index_range(n_train, held, n - 1, device);
  Tensor order({n_train}, DType::I32);
  Tensor dev_order = device == Device::CPU ? order : Tensor({n_train}, DType::I32, device);
  std::map<std::string, Tensor> out;
  const auto t0 = Clock::now();
  for (std::size_t li = 0; li < depth; ++li) {
    const std::int64_t nv = L[li], nh = L[li + 1];
    const std::size_t j = depth - 1 - li;
    RbmOptions o;
    o.k = pc.k;
    o.linear_hidden = li + 1 == depth && model.code_activation == Activation::Identity;
    o.gaussian_visible = li == 0 && pc.visible == VisibleUnits::Gaussian;
    const RbmLayer layer = rbm_layer(li, j, nv, nh, batch, held, chunk, o);
    ExecutorOptions eo;
    eo.device = device;
    eo.training = true;
    eo.seed = cfg.train.seed;
    eo.tf32 = cfg.train.precision == Precision::TF32;
    eo.cuda_graph = cfg.train.cuda_graph;
    eo.optimizer.type = OptimizerType::SGD;
    eo.optimizer.lr = o.linear_hidden ? pc.lr * pc.linear_lr_scale : pc.lr;
    eo.optimizer.weight_decay = pc.weight_decay;
    eo.optimizer.momentum = pc.initial_momentum;
    Executor trainer(layer.train, eo, store);
    ExecutorOptions fo = eo;
    fo.training = false;
    Executor energy(layer.energy, fo, store);
    for (int e = 0; e < pc.epochs; ++e) {
      auto* idx = static_cast<std::int32_t*>(order.data());
      std::iota(idx, idx + n_train, 0);
      std::mt19937_64 rng(cfg.train.seed * 1000003ull + li * 1009ull + static_cast<std::uint64_t>(e));
      std::shuffle(idx, idx + n_train, rng);
      if (device != Device::CPU) dev_order.copy_from(order);
      trainer.set_momentum(e < pc.momentum_switch_epoch ? pc.initial_momentum : pc.momentum);
      for (std::int64_t s = 0; s < steps; ++s) {
        trainer.gather_input("v", cur, dev_order, s * batch);
        trainer.train_step();
      }
      // Free energy of training rows against held-out rows: a widening gap is overfitting.
      auto mean_fe = [&](const Tensor& rows) {
        energy.gather_input("v", cur, rows, 0);
        energy.forward();
        return mean_of(energy.read(layer.fe).values());
      };
      PretrainProgress p;
      p.layer = static_cast<int>(li);
      p.layers = static_cast<int>(depth);
      p.epoch = e + 1;
      p.epochs = pc.epochs;
      p.recon_error = mean_of(trainer.drain_losses());
      p.free_energy_train = mean_fe(train_rows);
      p.free_energy_heldout = mean_fe(held_rows);
      p.elapsed_sec = std::chrono::duration<double>(Clock::now() - t0).count();
      if (!std::isfinite(p.recon_error))
        throw Error("pretraining diverged in layer " + std::to_string(li) + " (lower [pretrain] lr?)");
      if (progress) progress(p);
    }
    // Unrolled: encoder layer li, and the decoder layer that mirrors it (its transposed weight
    // and the RBM's visible bias).
    const Tensor w = store->read(layer.w);
    Tensor dec_w({nv, nh});
    for (std::int64_t r = 0; r < nh; ++r)
      for (std::int64_t q = 0; q < nv; ++q) dec_w.f32()[q * nh + r] = w.f32()[r * nv + q];
    out[layer.w] = w;
    out[layer.c] = store->read(layer.c);
    out["decoder." + std::to_string(j) + ".weight"] = dec_w;
    out[layer.b] = store->read(layer.b);
    if (li + 1 < depth) {
      Executor hidden(layer.hidden, fo, store);
      cur = hidden_activations(hidden, layer, cur, n, chunk, nh, device);
    }
  }
  return out;
}

}  // namespace cuae
