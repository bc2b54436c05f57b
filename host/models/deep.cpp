// The deep (stacked, symmetric) autoencoder's graph.
#include "cuae/autoencoder.hpp"
#include "host/models/init.hpp"

namespace cuae {


DeepAutoencoderGraph build_deep_autoencoder(const Config& config, std::int64_t batch, GraphMode mode,
                                            int jacobian_layer) {
  const ModelConfig& model = config.model;
  const LossConfig& loss = config.loss;
  const auto& L = model.layers;
  CUAE_CHECK(L.size() >= 2, "model.layers needs at least two widths, got " + std::to_string(L.size()));
  CUAE_CHECK(batch > 0, "batch size must be positive");
  const bool bce = loss.type == LossType::BCEWithLogits;
  CUAE_CHECK(!bce || model.output_activation == Activation::Sigmoid,
             "loss bce needs output_activation sigmoid (the loss takes the logits)");
  const bool train = mode == GraphMode::Train;
  const std::size_t depth = L.size() - 1;
  CUAE_CHECK(jacobian_layer < static_cast<int>(depth), "jacobian layer " + std::to_string(jacobian_layer) +
                                                           " is not an encoder layer (0.." + std::to_string(depth - 1) + ")");
  const SparsityConfig& sp = config.sparsity;
  const int sparse_layer =
      sp.type == SparsityConfig::Kind::None ? -1 : encoder_layer_index(model, sp.layer, "[sparsity] layer");
  const int contractive_layer =
      config.contractive.weight > 0.0f ? encoder_layer_index(model, config.contractive.layer, "[contractive] layer") : -1;

  DeepAutoencoderGraph m;
  Graph& g = m.graph;
  const bool decode = mode == GraphMode::Decode;
  m.input = g.input(decode ? "z" : "x", {batch, decode ? L[depth] : L[0]});
  Value h = m.input;
  if (train && config.noise.enabled) h = g.corrupt(h, config.noise.type, config.noise.level, "noise");
  std::vector<Value> enc_w(depth);
  // Dropout on a hidden layer's output, in training only (never on the code or the reconstruction).
  auto maybe_dropout = [&](Value v, const std::string& p) {
    return train && model.dropout > 0.0f ? g.dropout(v, model.dropout, p + ".dropout") : v;
  };
  if (decode) {
    // Only the decoder; a tied decoder still names the encoder weights it reuses.
    if (model.tied_weights)
      for (std::size_t i = 0; i < depth; ++i)
        enc_w[i] = g.param("encoder." + std::to_string(i) + ".weight", {L[i + 1], L[i]}, Init::zeros());
  } else {
  for (std::size_t i = 0; i < depth; ++i) {
    const Activation act = i + 1 == depth ? model.code_activation : model.activation;
    const std::string p = "encoder." + std::to_string(i);
    if (model.variational && i + 1 == depth) {
      // The Gaussian head: μ and log σ² of the code, then z.
      const std::int64_t d = L[i + 1];
      const Value w = g.param(p + ".weight", {2 * d, L[i]}, weight_init(Activation::Identity, L[i], 2 * d));
      const Value b = g.param(p + ".bias", {2 * d}, Init::zeros(), /*decay=*/false);
      m.stats = g.dense(h, w, b, Activation::Identity, false, model.leaky_slope, p);
      h = g.reparameterize(m.stats, mode != GraphMode::Infer, "z");
      if (train) m.kl = g.gaussian_kl(m.stats, config.vae.beta, true, "kl");
      if (mode == GraphMode::Sampled) m.kl = g.gaussian_kl(m.stats, 1.0f, false, "kl");
      m.layers.push_back(h);
      break;
    }
    enc_w[i] = g.param(p + ".weight", {L[i + 1], L[i]}, weight_init(act, L[i], L[i + 1]));
    const Value b = g.param(p + ".bias", {L[i + 1]}, Init::zeros(), /*decay=*/false);
    h = g.dense(h, enc_w[i], b, act, false, model.leaky_slope, p);
    const int li = static_cast<int>(i);
    if (train && li == contractive_layer) g.contractive_penalty(h, config.contractive.weight, true, p + ".contractive");
    if (!train && li == jacobian_layer) m.jacobian = g.contractive_penalty(h, 1.0f, false, p + ".jacobian");
    if (li == sparse_layer) {
      switch (sp.type) {
        case SparsityConfig::Kind::KSparse: h = g.ksparse(h, sp.k, p + ".ksparse"); break;
        case SparsityConfig::Kind::KL:
          if (train) g.activity_penalty(h, PenaltyType::KL, sp.weight, sp.target, true, p + ".kl_sparsity");
          break;
        case SparsityConfig::Kind::L1:
          if (train) g.activity_penalty(h, PenaltyType::L1, sp.weight, 0.05f, true, p + ".l1_activity");
          break;
        case SparsityConfig::Kind::None: break;
      }
    }
    m.layers.push_back(h);
    if (i + 1 < depth) h = maybe_dropout(h, p);
  }
  }
  m.code = h;
  for (std::size_t j = 0; j < depth; ++j) {
    const std::size_t i = depth - 1 - j;  // mirrors encoder layer i: L[i+1] -> L[i]
    Activation act = model.activation;
    if (i == 0) act = bce ? Activation::Identity : model.output_activation;
    const std::string p = "decoder." + std::to_string(j);
    Value w;
    bool transposed = false;
    if (model.tied_weights) {
      w = enc_w[i];  // [L[i+1], L[i]] used as [in, out]
      transposed = true;
    } else {
      w = g.param(p + ".weight", {L[i], L[i + 1]}, weight_init(act, L[i + 1], L[i]));
    }
    const Value b = g.param(p + ".bias", {L[i]}, Init::zeros(), /*decay=*/false);
    h = g.dense(h, w, b, act, transposed, model.leaky_slope, p);
    if (i > 0) h = maybe_dropout(h, p);
  }
  m.output = h;
  m.recon = h;
  if (!train && bce) m.recon = g.activation(h, Activation::Sigmoid, 0.01f, "recon");
  if (decode) {
    g.mark_output(m.recon);
    return m;
  }
  m.loss = g.loss(m.output, m.input, loss.type, loss.reduction, vae_loss_weight(config), "loss");
  if (!train) {
    for (Value v : m.layers) g.mark_output(v);
    g.mark_output(m.recon);
    if (m.stats.valid()) g.mark_output(m.stats);
    if (mode == GraphMode::Sampled) g.mark_output(m.output);
  }
  return m;
}

}  // namespace cuae

namespace cuae {

DeepAutoencoderGraph build_autoencoder(const Config& config, std::int64_t batch, GraphMode mode, int jacobian_layer) {
  if (config.model.type == ModelType::Conv) return build_conv_autoencoder(config, batch, mode, jacobian_layer);
  return build_deep_autoencoder(config, batch, mode, jacobian_layer);
}

}  // namespace cuae
