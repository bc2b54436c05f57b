// A variational autoencoder's Gaussian head: the reparameterized sample z = μ + exp(½·log σ²)·ε
// (ε from the node's Philox stream, drawn again by the backward instead of stored) and the KL term
// of q(z|x) from the standard normal prior, a scalar term whose weight may change between steps
// (a KL warm-up).
#include <cmath>

#include "host/graph/compiler.hpp"
#include "host/graph/nodes/kinds.hpp"

namespace cuae {
namespace detail {
namespace {

struct ReparamAttrs {
  bool sample = true;
};

class ReparamDesc final : public NodeDesc {
 public:
  std::string describe(const Node& n) const override { return n.get<ReparamAttrs>().sample ? "sampled" : "mean"; }
  void forward(Compiler& c, const Node& n) const override {
    Step& s = c.step(n);
    c.read(s, "stats", n.inputs[0]);
    c.write(s, "z", n.outputs[0]);
    s.bind = [&n](const Binder& b) {
      const Shape& zs = b.shape("z");
      kern::Reparameterize a;
      a.stats = b.ptr("stats"), a.z = b.ptr("z");
      a.m = static_cast<int>(zs[0]), a.d = static_cast<int>(zs[1]);
      a.sample = n.get<ReparamAttrs>().sample;
      a.seed = b.seed();
      return b.launch_stepped(&kern::OpTable::reparameterize, a);
    };
  }
  void backward(Compiler& c, const Node& n) const override {
    if (!c.needs_grad(n.inputs[0])) return;
    CUAE_CHECK(n.get<ReparamAttrs>().sample, n.name + ": a training graph must sample (reparameterize with sample = true)");
    Step& s = c.step(n, true);
    c.read_grad(s, "dz", n.outputs[0]);
    c.read(s, "stats", n.inputs[0]);
    c.write_grad(s, "dstats", n.inputs[0]);
    s.bind = [](const Binder& b) {
      const Shape& zs = b.shape("dz");
      kern::ReparameterizeBackward a;
      a.dz = b.ptr("dz"), a.stats = b.ptr("stats");
      a.dstats = b.ptr("dstats"), a.acc = b.acc("dstats");
      a.m = static_cast<int>(zs[0]), a.d = static_cast<int>(zs[1]);
      a.seed = b.seed();
      return b.launch_stepped(&kern::OpTable::reparameterize_backward, a);
    };
  }
};

class GaussianKLDesc final : public NodeDesc {
 public:
  bool term() const override { return true; }
  std::string describe(const Node& n) const override {
    return term_desc(n);
  }
  void forward(Compiler& c, const Node& n) const override {
    Step& s = c.step(n);
    c.read(s, "stats", n.inputs[0]);
    c.write(s, "loss", n.outputs[0]);
    c.write_grad(s, "dstats", n.inputs[0]);
    s.bind = [](const Binder& b) {
      const Shape& ss = b.shape("stats");
      kern::GaussianKL a;
      a.stats = b.ptr("stats"), a.loss = b.ptr("loss");
      a.grad = b.ptr("dstats"), a.acc_grad = b.acc("dstats");
      a.m = static_cast<int>(ss[0]), a.d = static_cast<int>(ss[1] / 2);
      return b.launch_weighted(&kern::OpTable::gaussian_kl, a);
    };
  }
};

const ReparamDesc kReparam;
const GaussianKLDesc kGaussianKL;

// stats [m, 2d]: μ then log σ².
void check_stats(const std::string& nm, const Shape& s) {
  CUAE_CHECK(s.size() == 2 && s[1] % 2 == 0 && s[1] >= 2,
             nm + ": stats " + shape_str(s) + " must be [batch, 2·latent] (μ then log σ²)");
}

}  // namespace
}  // namespace detail

Value Graph::reparameterize(Value stats, bool sample, const std::string& name) {
  const std::string nm = node_name(name, "reparameterize");
  const Shape s = info(stats).shape;
  detail::check_stats(nm, s);
  detail::Node n(&detail::kReparam, nm, {stats.id}, detail::ReparamAttrs{sample});
  return add_node(std::move(n), {{nm + ".out", Shape{s[0], s[1] / 2}}});
}

Value Graph::gaussian_kl(Value stats, float weight, bool objective, const std::string& name) {
  const std::string nm = node_name(name, "gaussian_kl");
  detail::check_stats(nm, info(stats).shape);
  CUAE_CHECK(std::isfinite(weight) && weight >= 0.0f, nm + ": weight must be >= 0, got " + std::to_string(weight));
  detail::Node n(&detail::kGaussianKL, nm, {stats.id});
  n.weight = weight;
  n.objective = objective;
  return add_node(std::move(n), {{nm, Shape{1}}}, true);
}

}  // namespace cuae
