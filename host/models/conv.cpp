// The convolutional autoencoder: shape inference from the config and the graph built from it.
//
// One plan (a list of layers with their shapes) serves three users: the config parser (which
// rejects a model whose shapes do not work and derives model.layers from it), `cuae summary`, and
// the graph builder, so the shapes printed are the shapes built.
#include <algorithm>
#include <sstream>

#include "cuae/autoencoder.hpp"
#include "host/models/init.hpp"
#include "kernels/conv_common.hpp"

namespace cuae {

namespace {

struct Layer {
  enum class Kind { Conv, Deconv, MaxPool, AvgPool, Unpool, Upsample, Flatten, Dense, Unflatten, Reparam } kind;
  std::string name;              // parameter prefix / node name
  Shape in, out;                 // [H, W, C] or [D]
  Conv2dOptions conv;            // Conv, Deconv
  Pool2dOptions pool;            // MaxPool, AvgPool
  int kernel = 0;                // Conv, Deconv
  UpsampleMode mode = UpsampleMode::Nearest;
  int pair = -1;                 // Unpool: index of its max pool in the plan
  Activation act = Activation::Identity;
  bool hidden = false;           // a hidden layer's output (dropout applies in training)
  int stage = -1;                // encoder stage whose output this layer ends (model.layers index - 1)
  std::int64_t params = 0;
  std::string what;
};

std::string shape_hwc(const Shape& s) {
  std::string r;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i) r += 'x';
    r += std::to_string(s[i]);
  }
  return r;
}

std::string table(const std::vector<Layer>& done, const Shape& input) {
  std::ostringstream os;
  os << "  input: " << shape_hwc(input) << " (HxWxC)\n";
  for (const auto& l : done) os << "  " << l.name << " " << l.what << ": " << shape_hwc(l.out) << "\n";
  return os.str();
}

std::string conv_what(const char* kind, int kernel, const Conv2dOptions& o, Activation act, bool transposed) {
  std::string s = std::string(kind) + " " + std::to_string(kernel) + "x" + std::to_string(kernel);
  if (o.stride_h != 1) s += "/" + std::to_string(o.stride_h);
  if (o.pad_h) s += " pad " + std::to_string(o.pad_h);
  if (o.dil_h != 1) s += " dilation " + std::to_string(o.dil_h);
  if (transposed && o.out_pad_h) s += " output padding " + std::to_string(o.out_pad_h);
  return s + ", " + activation_name(act);
}

std::vector<Layer> plan_conv(const ModelConfig& m, bool logits) {
  CUAE_CHECK(m.input.size() == 3 && m.input[0] > 0 && m.input[1] > 0 && m.input[2] > 0,
             "model.input must be [channels, height, width] with positive entries");
  CUAE_CHECK(!m.encoder.empty(), "a conv model needs at least one [[model.encoder]] block");
  const Shape input{m.input[1], m.input[2], m.input[0]};
  std::vector<Layer> L;
  Shape cur = input;
  auto fail = [&](const std::string& layer, const std::string& why) {
    throw Error("model: " + layer + ": " + why + "\nshapes so far:\n" + table(L, input));
  };
  const Activation out_act = logits ? Activation::Identity : m.output_activation;
  const std::size_t nenc = m.encoder.size();
  std::vector<int> max_pools;
  for (std::size_t i = 0; i < nenc; ++i) {
    const ConvBlockConfig& b = m.encoder[i];
    const std::string nm = "encoder." + std::to_string(i);
    if (b.type != BlockType::Conv) fail(nm, std::string("encoder blocks are type \"conv\", got \"") + config_name(b.type) + "\"");
    if (b.channels <= 0) fail(nm, "channels must be > 0");
    if (b.kernel <= 0 || b.stride <= 0 || b.dilation <= 0) fail(nm, "kernel, stride and dilation must be > 0");
    const bool last = i + 1 == nenc;
    Layer l;
    l.kind = Layer::Kind::Conv;
    l.name = nm;
    l.in = cur;
    l.kernel = b.kernel;
    l.conv = Conv2dOptions::make(b.stride, b.pad(), b.dilation);
    l.act = last && m.code == 0 ? m.code_activation : m.activation;
    l.hidden = !(last && m.code == 0);
    const int p = kern::conv_out_extent(static_cast<int>(cur[0]), b.kernel, b.stride, b.pad(), b.dilation);
    const int q = kern::conv_out_extent(static_cast<int>(cur[1]), b.kernel, b.stride, b.pad(), b.dilation);
    l.what = conv_what("conv", b.kernel, l.conv, l.act, false);
    if (p <= 0 || q <= 0) fail(nm, "a " + l.what + " does not fit " + shape_hwc(cur));
    l.out = Shape{p, q, b.channels};
    l.params = static_cast<std::int64_t>(b.channels) * b.kernel * b.kernel * cur[2] + b.channels;
    cur = l.out;
    L.push_back(l);
    if (b.pool != PoolKind::None) {
      if (b.pool_size < 1) fail(nm, "pool_size must be >= 1");
      Layer pl;
      pl.kind = b.pool == PoolKind::Max ? Layer::Kind::MaxPool : Layer::Kind::AvgPool;
      pl.name = nm + ".pool";
      pl.in = cur;
      pl.pool = Pool2dOptions::make(b.pool_size, b.pool_size);
      pl.what = std::string(config_name(b.pool)) + " pool " + std::to_string(b.pool_size) + "x" + std::to_string(b.pool_size);
      const int pp = kern::pool_out_extent(static_cast<int>(cur[0]), b.pool_size, b.pool_size, 0);
      const int pq = kern::pool_out_extent(static_cast<int>(cur[1]), b.pool_size, b.pool_size, 0);
      if (pp <= 0 || pq <= 0) fail(pl.name, "a " + pl.what + " does not fit " + shape_hwc(cur));
      pl.out = Shape{pp, pq, cur[2]};
      cur = pl.out;
      if (pl.kind == Layer::Kind::MaxPool) max_pools.push_back(static_cast<int>(L.size()));
      L.push_back(pl);
    }
    L.back().stage = static_cast<int>(i);
  }
  const Shape fmap = cur;
  const std::int64_t flat = shape_numel(fmap);
  if (m.code > 0) {
    Layer f;
    f.kind = Layer::Kind::Flatten;
    f.name = "encoder." + std::to_string(nenc) + ".flatten";
    f.in = cur;
    f.out = Shape{flat};
    f.what = "flatten";
    L.push_back(f);
    Layer d;
    d.kind = Layer::Kind::Dense;
    d.name = "encoder." + std::to_string(nenc);
    d.in = f.out;
    const std::int64_t width = m.variational ? 2 * m.code : m.code;
    d.out = Shape{width};
    d.act = m.variational ? Activation::Identity : m.code_activation;
    d.params = flat * width + width;
    d.what = m.variational ? std::string("dense, Gaussian head (mu, log var)") : std::string("dense, ") + activation_name(d.act);
    d.stage = static_cast<int>(nenc);
    L.push_back(d);
    if (m.variational) {
      Layer z;
      z.kind = Layer::Kind::Reparam;
      z.name = "z";
      z.in = d.out;
      z.out = Shape{m.code};
      z.what = "reparameterize";
      z.stage = static_cast<int>(nenc);
      L.back().stage = -1;
      L.push_back(z);
    }
    Layer u;
    u.kind = Layer::Kind::Dense;
    u.name = "decoder.0";
    u.in = Shape{m.code};
    u.out = Shape{flat};
    u.act = m.activation;
    u.hidden = true;
    u.params = flat * m.code + flat;
    u.what = std::string("dense, ") + activation_name(u.act);
    L.push_back(u);
    Layer r;
    r.kind = Layer::Kind::Unflatten;
    r.name = "decoder.0.unflatten";
    r.in = u.out;
    r.out = fmap;
    r.what = "unflatten";
    L.push_back(r);
    cur = fmap;
  }
  int next = m.code > 0 ? 1 : 0;  // decoder layer number
  auto add_deconv_or_conv = [&](bool transposed, int channels, int kernel, int stride, int pad, int dil, int out_pad,
                                Activation act, bool hidden) {
    const std::string nm = "decoder." + std::to_string(next++);
    Layer l;
    l.kind = transposed ? Layer::Kind::Deconv : Layer::Kind::Conv;
    l.name = nm;
    l.in = cur;
    l.kernel = kernel;
    l.conv = Conv2dOptions::make(stride, pad, dil, transposed ? out_pad : 0);
    l.act = act;
    l.hidden = hidden;
    l.what = conv_what(transposed ? "deconv" : "conv", kernel, l.conv, act, transposed);
    if (channels <= 0 || kernel <= 0 || stride <= 0 || dil <= 0 || pad < 0)
      fail(nm, "channels, kernel, stride and dilation must be > 0 and padding >= 0");
    int h, w;
    if (transposed) {
      if (out_pad < 0 || out_pad >= stride) fail(nm, "output_padding must lie in [0, stride)");
      h = kern::deconv_out_extent(static_cast<int>(cur[0]), kernel, stride, pad, dil, out_pad);
      w = kern::deconv_out_extent(static_cast<int>(cur[1]), kernel, stride, pad, dil, out_pad);
      if (h <= 0 || w <= 0 || kern::conv_out_extent(h, kernel, stride, pad, dil) != cur[0] ||
          kern::conv_out_extent(w, kernel, stride, pad, dil) != cur[1])
        fail(nm, "a " + l.what + " cannot map " + shape_hwc(cur) + " to a positive size");
    } else {
      h = kern::conv_out_extent(static_cast<int>(cur[0]), kernel, stride, pad, dil);
      w = kern::conv_out_extent(static_cast<int>(cur[1]), kernel, stride, pad, dil);
      if (h <= 0 || w <= 0) fail(nm, "a " + l.what + " does not fit " + shape_hwc(cur));
    }
    l.out = Shape{h, w, channels};
    l.params = static_cast<std::int64_t>(channels) * kernel * kernel * cur[2] + channels;
    cur = l.out;
    L.push_back(l);
  };
  auto add_unpool = [&](int pool_index) {
    const Layer& pool = L[static_cast<std::size_t>(pool_index)];
    Layer l;
    l.kind = Layer::Kind::Unpool;
    l.name = "decoder." + std::to_string(next) + ".unpool";
    l.in = cur;
    l.pair = pool_index;
    l.what = "max unpool (indices of " + pool.name + ")";
    if (cur != pool.out)
      fail(l.name, "unpooling needs the shape " + shape_hwc(pool.out) + " of " + pool.name + "'s output, got " + shape_hwc(cur));
    l.out = pool.in;
    cur = l.out;
    L.push_back(l);
  };
  auto add_upsample = [&](int h, int w, UpsampleMode mode) {
    Layer l;
    l.kind = Layer::Kind::Upsample;
    l.name = "decoder." + std::to_string(next) + ".upsample";
    l.in = cur;
    l.mode = mode;
    l.out = Shape{h, w, cur[2]};
    l.what = std::string(upsample_mode_name(mode)) + " upsample";
    cur = l.out;
    L.push_back(l);
  };
  if (m.decoder.empty()) {
    // The mirror: undo each encoder block, last first.
    for (std::size_t j = 0; j < nenc; ++j) {
      const std::size_t i = nenc - 1 - j;
      const ConvBlockConfig& b = m.encoder[i];
      // The encoder block's layers in the plan: its conv, then maybe its pool.
      int conv_at = -1, pool_at = -1;
      for (std::size_t t = 0; t < L.size(); ++t) {
        if (L[t].name == "encoder." + std::to_string(i)) conv_at = static_cast<int>(t);
        if (L[t].name == "encoder." + std::to_string(i) + ".pool") pool_at = static_cast<int>(t);
      }
      // Copies: adding layers below may reallocate L.
      const Shape conv_in = L[static_cast<std::size_t>(conv_at)].in, conv_out = L[static_cast<std::size_t>(conv_at)].out;
      if (pool_at >= 0) {
        if (L[static_cast<std::size_t>(pool_at)].kind == Layer::Kind::MaxPool) add_unpool(pool_at);
        else add_upsample(static_cast<int>(conv_out[0]), static_cast<int>(conv_out[1]), UpsampleMode::Nearest);
      }
      const Shape target = conv_in;
      const int out_pad = static_cast<int>(target[0]) -
                          kern::deconv_out_extent(static_cast<int>(cur[0]), b.kernel, b.stride, b.pad(), b.dilation, 0);
      const bool first = i == 0;
      add_deconv_or_conv(true, static_cast<int>(target[2]), b.kernel, b.stride, b.pad(), b.dilation, out_pad,
                         first ? out_act : m.activation, !first);
    }
  } else {
    int unpools = 0;
    for (std::size_t j = 0; j < m.decoder.size(); ++j) {
      const ConvBlockConfig& b = m.decoder[j];
      const bool last = j + 1 == m.decoder.size();
      const std::string nm = "decoder." + std::to_string(next);
      if (b.type == BlockType::Deconv || b.type == BlockType::Conv) {
        // Checked before the layer is listed: the shapes in the message stop where the problem is.
        if (last && b.channels != 0 && b.channels != input[2])
          fail(nm, "the last decoder block must produce the input's " + std::to_string(input[2]) + " channels, not " +
                       std::to_string(b.channels) + " (set channels = " + std::to_string(input[2]) + ", or leave it out)");
        add_deconv_or_conv(b.type == BlockType::Deconv, last ? static_cast<int>(input[2]) : b.channels, b.kernel, b.stride,
                           b.pad(), b.dilation, b.output_padding, last ? out_act : m.activation, !last);
      } else if (b.type == BlockType::Upsample) {
        if (last) fail(nm, "the last decoder block must be a conv or deconv (it produces the image)");
        if (b.scale < 1) fail(nm, "scale must be >= 1");
        add_upsample(static_cast<int>(cur[0]) * b.scale, static_cast<int>(cur[1]) * b.scale, b.mode);
      } else {  // BlockType::Unpool
        if (last) fail(nm, "the last decoder block must be a conv or deconv (it produces the image)");
        ++unpools;
        if (unpools > static_cast<int>(max_pools.size()))
          fail(nm, "unpool block " + std::to_string(unpools) + " has no max pool to pair with (the encoder has " +
                       std::to_string(max_pools.size()) + ")");
        add_unpool(max_pools[max_pools.size() - static_cast<std::size_t>(unpools)]);
      }
    }
  }
  if (cur != input)
    fail("decoder", "the reconstruction is " + shape_hwc(cur) + " but the input is " + shape_hwc(input) +
                        " (adjust the decoder's strides, padding or output_padding)");
  return L;
}

}  // namespace

std::vector<LayerShape> conv_layer_shapes(const ModelConfig& model, bool logits) {
  std::vector<LayerShape> out;
  for (const Layer& l : plan_conv(model, logits)) out.push_back({l.name, l.what, l.out, l.params});
  return out;
}

std::vector<std::int64_t> conv_stage_widths(const ModelConfig& model) {
  std::vector<std::int64_t> w{shape_numel(Shape{model.input[0], model.input[1], model.input[2]})};
  for (const Layer& l : plan_conv(model, false))
    if (l.stage >= 0) w.push_back(shape_numel(l.out));
  return w;
}

std::string format_layer_shapes(const std::vector<LayerShape>& layers) {
  std::ostringstream os;
  for (const auto& l : layers) {
    const std::string shape = shape_hwc(l.shape);
    char line[256];
    std::snprintf(line, sizeof line, "  %-22s %-40s %-14s %10lld\n", l.name.c_str(), l.what.c_str(), shape.c_str(),
                  static_cast<long long>(l.params));
    os << line;
  }
  return os.str();
}

DeepAutoencoderGraph build_conv_autoencoder(const Config& config, std::int64_t batch, GraphMode mode, int jacobian_layer) {
  const ModelConfig& model = config.model;
  CUAE_CHECK(batch > 0, "batch size must be positive");
  const bool bce = config.loss.type == LossType::BCEWithLogits;
  CUAE_CHECK(!bce || model.output_activation == Activation::Sigmoid,
             "loss bce needs output_activation sigmoid (the loss takes the logits)");
  const bool train = mode == GraphMode::Train;
  const std::vector<Layer> plan = plan_conv(model, bce);
  const int depth = static_cast<int>(model.layers.size()) - 1;  // encoder stages incl. the code
  const SparsityConfig& sp = config.sparsity;
  const int sparse_layer =
      sp.type == SparsityConfig::Kind::None ? -1 : encoder_layer_index(model, sp.layer, "[sparsity] layer");
  const int contractive_layer =
      config.contractive.weight > 0.0f ? encoder_layer_index(model, config.contractive.layer, "[contractive] layer") : -1;
  CUAE_CHECK(jacobian_layer < depth, "jacobian layer " + std::to_string(jacobian_layer) + " is not an encoder layer");

  DeepAutoencoderGraph m;
  Graph& g = m.graph;
  const std::int64_t C = model.input[0], H = model.input[1], W = model.input[2];
  const bool decode = mode == GraphMode::Decode;
  std::size_t first = 0;  // the plan's first layer to build
  Value h;
  if (decode) {
    CUAE_CHECK(model.code > 0, "decoding from codes needs a dense code layer ([model] code > 0)");
    while (first < plan.size() && plan[first].name != "decoder.0") ++first;
    for (std::size_t t = first; t < plan.size(); ++t)
      CUAE_CHECK(plan[t].kind != Layer::Kind::Unpool,
                 "decoding from codes is not possible for a decoder that unpools with the encoder's indices (" +
                     plan[t].name + ")");
    m.input = g.input("z", {batch, model.code});
    h = m.input;
  } else {
    m.input = g.input("x", {batch, C * H * W});
    h = m.input;
    if (train && config.noise.enabled) h = g.corrupt(h, config.noise.type, config.noise.level, "noise");
    h = g.reshape(h, {batch, H, W, C}, "x.nhwc");
  }
  std::vector<Value> values(plan.size());
  auto to4 = [&](const Shape& s) { return Shape{batch, s[0], s[1], s[2]}; };
  for (std::size_t t = first; t < plan.size(); ++t) {
    const Layer& l = plan[t];
    switch (l.kind) {
      case Layer::Kind::Conv:
      case Layer::Kind::Deconv: {
        const bool tr = l.kind == Layer::Kind::Deconv;
        const std::int64_t cin = l.in[2], cout = l.out[2];
        // Filters are [K, R, S, C]: for a conv K = out, C = in; for a deconv K = in, C = out.
        const Shape ws = tr ? Shape{cin, l.kernel, l.kernel, cout} : Shape{cout, l.kernel, l.kernel, cin};
        const std::int64_t fan_in = static_cast<std::int64_t>(l.kernel) * l.kernel * cin;
        const std::int64_t fan_out = static_cast<std::int64_t>(l.kernel) * l.kernel * cout;
        const Value w = g.param(l.name + ".weight", ws, weight_init(l.act, fan_in, fan_out));
        const Value b = g.param(l.name + ".bias", {cout}, Init::zeros(), /*decay=*/false);
        h = tr ? g.conv_transpose2d(h, w, b, l.act, l.conv, model.leaky_slope, l.name)
               : g.conv2d(h, w, b, l.act, l.conv, model.leaky_slope, l.name);
        break;
      }
      case Layer::Kind::MaxPool: h = g.max_pool2d(h, l.pool, l.name); break;
      case Layer::Kind::AvgPool: h = g.avg_pool2d(h, l.pool, l.name); break;
      case Layer::Kind::Unpool: h = g.max_unpool2d(h, values[static_cast<std::size_t>(l.pair)], l.name); break;
      case Layer::Kind::Upsample:
        h = g.upsample2d(h, static_cast<int>(l.out[0]), static_cast<int>(l.out[1]), l.mode, l.name);
        break;
      case Layer::Kind::Flatten: h = g.reshape(h, {batch, l.out[0]}, l.name); break;
      case Layer::Kind::Unflatten: h = g.reshape(h, to4(l.out), l.name); break;
      case Layer::Kind::Dense: {
        const Value w = g.param(l.name + ".weight", {l.out[0], l.in[0]}, weight_init(l.act, l.in[0], l.out[0]));
        const Value b = g.param(l.name + ".bias", {l.out[0]}, Init::zeros(), /*decay=*/false);
        h = g.dense(h, w, b, l.act, false, model.leaky_slope, l.name);
        break;
      }
      case Layer::Kind::Reparam:
        m.stats = h;
        h = g.reparameterize(m.stats, mode != GraphMode::Infer, "z");
        if (train) m.kl = g.gaussian_kl(m.stats, config.vae.beta, true, "kl");
        if (mode == GraphMode::Sampled) m.kl = g.gaussian_kl(m.stats, 1.0f, false, "kl");
        break;
    }
    values[t] = h;
    if (l.stage >= 0) {
      // The end of an encoder stage: regularizers and the per-layer outputs see it flattened (a
      // reshape costs nothing).
      const bool flat = h.valid() && g.info(h).shape.size() == 2;
      Value f = flat ? h : g.reshape(h, {batch, shape_numel(l.out)}, l.name + ".flat");
      const std::string p = "encoder." + std::to_string(l.stage);
      if (l.stage == contractive_layer || l.stage == jacobian_layer) {
        CUAE_CHECK(l.kind == Layer::Kind::Dense,
                   "the contractive penalty / Jacobian norm needs a dense layer; \"" + p +
                       "\" is convolutional (use the code layer of a model with code > 0)");
        if (train && l.stage == contractive_layer) g.contractive_penalty(h, config.contractive.weight, true, p + ".contractive");
        if (!train && l.stage == jacobian_layer) m.jacobian = g.contractive_penalty(h, 1.0f, false, p + ".jacobian");
      }
      if (l.stage == sparse_layer) {
        switch (sp.type) {
          case SparsityConfig::Kind::KSparse:
            f = g.ksparse(f, sp.k, p + ".ksparse");
            h = flat ? f : g.reshape(f, g.info(h).shape, p + ".ksparse.nhwc");
            values[t] = h;
            break;
          case SparsityConfig::Kind::KL:
            if (train) g.activity_penalty(f, PenaltyType::KL, sp.weight, sp.target, true, p + ".kl_sparsity");
            break;
          case SparsityConfig::Kind::L1:
            if (train) g.activity_penalty(f, PenaltyType::L1, sp.weight, 0.05f, true, p + ".l1_activity");
            break;
          case SparsityConfig::Kind::None: break;
        }
      }
      m.layers.push_back(f);
    }
    // Dropout on hidden layers' outputs in training, after a block's pool when it has one (the
    // pool, and the unpooling paired with it, see the undropped map).
    if (train && model.dropout > 0.0f) {
      const bool pool = l.kind == Layer::Kind::MaxPool || l.kind == Layer::Kind::AvgPool;
      const bool weighted = l.kind == Layer::Kind::Conv || l.kind == Layer::Kind::Deconv || l.kind == Layer::Kind::Dense;
      const bool pooled_next = t + 1 < plan.size() && (plan[t + 1].kind == Layer::Kind::MaxPool ||
                                                       plan[t + 1].kind == Layer::Kind::AvgPool);
      if ((weighted && l.hidden && !pooled_next) || (pool && plan[t - 1].hidden)) {
        h = g.dropout(h, model.dropout, l.name + ".dropout");
        if (!pool) values[t] = h;
      }
    }
  }
  m.code = decode ? m.input : m.layers.back();
  m.output = g.reshape(h, {batch, C * H * W}, "recon.flat");
  m.recon = m.output;
  if (!train && bce) m.recon = g.activation(m.output, Activation::Sigmoid, 0.01f, "recon");
  if (decode) {
    g.mark_output(m.recon);
    return m;
  }
  m.loss = g.loss(m.output, m.input, config.loss.type, config.loss.reduction, vae_loss_weight(config), "loss");
  if (!train) {
    for (Value v : m.layers) g.mark_output(v);
    g.mark_output(m.recon);
    if (m.stats.valid()) g.mark_output(m.stats);
    if (mode == GraphMode::Sampled) g.mark_output(m.output);
  }
  return m;
}

}  // namespace cuae
