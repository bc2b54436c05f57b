// Greedy layer-wise pretraining of a deep autoencoder's encoder (Hinton & Salakhutdinov 2006;
// Vincent et al. 2010): one RBM (contrastive divergence) or one denoising autoencoder per layer,
// each trained on the previous layer's hidden activations, then unrolled into the encoder and a
// mirrored decoder with the transposed weights.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>

#include "cuae/autoencoder.hpp"
#include "host/runtime/backend.hpp"
#include "kernels/ops.hpp"
#include "kernels/philox.hpp"

namespace cuae {

namespace {

using Clock = std::chrono::steady_clock;

// Device memory owned for the length of one layer's training.
struct DevBuf {
  Backend* be = nullptr;
  float* p = nullptr;
  std::size_t n = 0;
  DevBuf(Backend& b, std::size_t floats) : be(&b), p(static_cast<float*>(b.alloc(floats * sizeof(float)))), n(floats) {}
  ~DevBuf() { be->free(p); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
};

// The hidden activations of `data` [n, nv] (device) through W [nh, nv], c [nh]: the next layer's
// training data (probabilities for Bernoulli units, means for linear ones).
void hidden_activations(Backend& be, const float* data, std::int64_t n, int nv, const float* w, const float* c, int nh,
                        bool linear, float* out) {
  constexpr std::int64_t kChunk = 4096;
  for (std::int64_t r = 0; r < n; r += kChunk) {
    kern::DenseForward a;
    a.x = data + r * nv;
    a.w = w;
    a.b = c;
    a.y = out + r * nh;
    a.m = static_cast<int>(std::min(kChunk, n - r));
    a.n = nh;
    a.k = nv;
    a.act = linear ? kern::Act::Identity : kern::Act::Sigmoid;
    be.ops().dense_forward(be.ctx(), a);
  }
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
  CUAE_CHECK(model.type == "deep" && !model.variational && !model.tied_weights,
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

  if (pc.method == "dae") return pretrain_dae_stack(cfg, data, device, n, progress);
  Backend be(device);
  std::map<std::string, Tensor> out;
  // The current layer's input, on the device: the images, then each layer's activations.
  auto cur = std::make_unique<DevBuf>(be, static_cast<std::size_t>(n * L[0]));
  be.copy_to_device(cur->p, data.images.f32(), static_cast<std::size_t>(n * L[0]) * sizeof(float));
  const auto t0 = Clock::now();
  std::uint64_t global_step = 0;
  for (std::size_t li = 0; li < depth; ++li) {
    const int nv = static_cast<int>(L[li]), nh = static_cast<int>(L[li + 1]);
    const bool linear_hidden = li + 1 == depth && model.code_activation == Activation::Identity;
    const bool gaussian_visible = li == 0 && pc.visible == "gaussian";
    // Parameters [W | b | c] in one flat buffer, W first (decayed), as the optimizer expects.
    const std::size_t nw = static_cast<std::size_t>(nh) * nv, nparam = nw + nv + nh;
    std::vector<float> host(nparam, 0.0f);
    {
      // Small random weights, as in the 2006 code (0.1·N(0, 1)); biases zero.
      std::mt19937_64 rng(cfg.train.seed * 7919ull + li);
      std::normal_distribution<float> normal(0.0f, 0.1f);
      for (std::size_t i = 0; i < nw; ++i) host[i] = normal(rng);
    }
    DevBuf param(be, nparam), grad(be, nparam), vel(be, nparam), batch_buf(be, static_cast<std::size_t>(batch) * nv),
        index(be, static_cast<std::size_t>(n_train)), recon(be, static_cast<std::size_t>(steps)),
        fe(be, static_cast<std::size_t>(held)),
        fe_ws(be, static_cast<std::size_t>(held) * nh);
    be.copy_to_device(param.p, host.data(), nparam * sizeof(float));
    be.memset(vel.p, 0, nparam * sizeof(float));
    float* w = param.p;
    float* b = param.p + nw;
    float* c = param.p + nw + nv;
    std::size_t ws_floats = 0;
    {
      kern::RbmCDWorkspace q;
      q.m = batch;
      q.nv = nv;
      q.nh = nh;
      q.floats = &ws_floats;
      be.ops().rbm_cd_workspace(be.ctx(), q);
    }
    DevBuf ws(be, std::max<std::size_t>(ws_floats, 1));
    // The CD step and the free energy repeat the same GEMMs every call: their plans are resolved
    // once per layer (kernels/ops.hpp, OpCache).
    kern::OpCache cd_cache, fe_cache;
    std::vector<std::int32_t> order(static_cast<std::size_t>(n_train));
    const float lr = linear_hidden ? pc.lr * pc.linear_lr_scale : pc.lr;
    for (int e = 0; e < pc.epochs; ++e) {
      std::iota(order.begin(), order.end(), 0);
      std::mt19937_64 rng(cfg.train.seed * 1000003ull + li * 1009ull + static_cast<std::uint64_t>(e));
      std::shuffle(order.begin(), order.end(), rng);
      be.copy_to_device(index.p, order.data(), order.size() * sizeof(std::int32_t));
      double recon_sum = 0.0;
      for (std::int64_t s = 0; s < steps; ++s) {
        kern::GatherRows g;
        g.src = cur->p;
        g.index = reinterpret_cast<const std::int32_t*>(index.p) + s * batch;
        g.dst = batch_buf.p;
        g.rows = batch;
        g.cols = nv;
        be.ops().gather_rows(be.ctx(), g);
        ++global_step;
        kern::RbmCD a;
        a.v0 = batch_buf.p;
        a.w = w;
        a.b = b;
        a.c = c;
        a.dw = grad.p;
        a.db = grad.p + nw;
        a.dc = grad.p + nw + nv;
        a.recon = recon.p + s;  // one slot per step, read once per epoch: no host sync in a step
        a.ws = ws.p;
        a.ws_floats = ws_floats;
        a.m = batch;
        a.nv = nv;
        a.nh = nh;
        a.k = pc.k;
        a.visible = gaussian_visible ? kern::RbmUnit::Gaussian : kern::RbmUnit::Bernoulli;
        a.hidden = linear_hidden ? kern::RbmUnit::Gaussian : kern::RbmUnit::Bernoulli;
        a.seed = kern::philox_mix_seed(cfg.train.seed, 0x5242'4d00ull + li);
        a.step = global_step;
        a.cache = &cd_cache;
        be.ops().rbm_cd(be.ctx(), a);
        // The 2006 schedule: momentum 0.5 for the first epochs, then 0.9; L2 decay on W only.
        kern::OptimizerStep o;
        o.param = param.p;
        o.grad = grad.p;
        o.v = vel.p;
        o.n = static_cast<std::int64_t>(nparam);
        o.n_decay = static_cast<std::int64_t>(nw);
        o.kind = kern::OptKind::SGD;
        o.lr = lr;
        o.weight_decay = pc.weight_decay;
        o.momentum = e < pc.momentum_switch_epoch ? pc.initial_momentum : pc.momentum;
        o.step = static_cast<std::int64_t>(global_step);
        be.ops().optimizer_step(be.ctx(), o);
      }
      std::vector<float> rs(static_cast<std::size_t>(steps));
      be.copy_to_host(rs.data(), recon.p, rs.size() * sizeof(float));
      for (float r : rs) recon_sum += r;
      // Free energy of training rows against held-out rows: a widening gap is overfitting.
      auto mean_fe = [&](const float* rows) {
        kern::RbmFreeEnergy f;
        f.v = rows;
        f.w = w;
        f.b = b;
        f.c = c;
        f.fe = fe.p;
        f.ws = fe_ws.p;
        f.m = static_cast<int>(held);
        f.nv = nv;
        f.nh = nh;
        f.visible = gaussian_visible ? kern::RbmUnit::Gaussian : kern::RbmUnit::Bernoulli;
        f.hidden = linear_hidden ? kern::RbmUnit::Gaussian : kern::RbmUnit::Bernoulli;
        f.cache = &fe_cache;
        be.ops().rbm_free_energy(be.ctx(), f);
        std::vector<float> v(static_cast<std::size_t>(held));
        be.copy_to_host(v.data(), fe.p, v.size() * sizeof(float));
        double sum = 0.0;
        for (float x : v) sum += x;
        return sum / static_cast<double>(held);
      };
      PretrainProgress p;
      p.layer = static_cast<int>(li);
      p.layers = static_cast<int>(depth);
      p.epoch = e + 1;
      p.epochs = pc.epochs;
      p.recon_error = recon_sum / static_cast<double>(steps);
      p.free_energy_train = mean_fe(cur->p);
      p.free_energy_heldout = mean_fe(cur->p + n_train * nv);
      p.elapsed_sec = std::chrono::duration<double>(Clock::now() - t0).count();
      if (!std::isfinite(p.recon_error))
        throw Error("pretraining diverged in layer " + std::to_string(li) + " (lower [pretrain] lr?)");
      if (progress) progress(p);
    }
    // Unrolled: encoder layer li, and the decoder layer that mirrors it (its transposed weight
    // and the RBM's visible bias).
    be.copy_to_host(host.data(), param.p, nparam * sizeof(float));
    const int j = static_cast<int>(depth - 1 - li);
    Tensor enc_w({nh, nv}), enc_b({nh}), dec_w({nv, nh}), dec_b({nv});
    std::copy(host.begin(), host.begin() + static_cast<std::ptrdiff_t>(nw), enc_w.f32());
    for (int r = 0; r < nh; ++r)
      for (int q = 0; q < nv; ++q) dec_w.f32()[q * nh + r] = host[static_cast<std::size_t>(r) * nv + q];
    std::copy(host.begin() + static_cast<std::ptrdiff_t>(nw), host.begin() + static_cast<std::ptrdiff_t>(nw + nv), dec_b.f32());
    std::copy(host.begin() + static_cast<std::ptrdiff_t>(nw + nv), host.end(), enc_b.f32());
    out["encoder." + std::to_string(li) + ".weight"] = enc_w;
    out["encoder." + std::to_string(li) + ".bias"] = enc_b;
    out["decoder." + std::to_string(j) + ".weight"] = dec_w;
    out["decoder." + std::to_string(j) + ".bias"] = dec_b;
    if (li + 1 < depth) {
      auto next = std::make_unique<DevBuf>(be, static_cast<std::size_t>(n * nh));
      hidden_activations(be, cur->p, n, nv, w, c, nh, linear_hidden, next->p);
      be.synchronize();
      cur = std::move(next);
    }
  }
  return out;
}

}  // namespace cuae
