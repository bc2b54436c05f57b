// The penalties on a hidden layer, scalar terms that write their value and their gradients at
// their forward position (so the gradient of h is complete before h's producer runs backward):
// the activity penalties (L1, KL sparsity on the batch means) and the contractive penalty of a
// dense layer (‖∂h/∂x‖²_F, written through h and the layer's own weight).
#include <cmath>

#include "host/graph/compiler.hpp"
#include "host/graph/nodes/kinds.hpp"

namespace cuae {
namespace detail {
namespace {

struct ActivityAttrs {
  PenaltyType type = PenaltyType::L1;
  float rho = 0.05f;  // KL's target activation
};

class ActivityDesc final : public NodeDesc {
 public:
  bool term() const override { return true; }
  std::string describe(const Node& n) const override {
    const auto& a = n.get<ActivityAttrs>();
    return (a.type == PenaltyType::KL ? "kl, rho=" + std::to_string(a.rho) + ", " : std::string("l1, ")) + term_desc(n);
  }
  void forward(Compiler& c, const Node& n) const override {
    const auto& at = n.get<ActivityAttrs>();
    Step& s = c.step(n);
    c.read(s, "h", n.inputs[0]);
    c.write(s, "loss", n.outputs[0]);
    if (at.type == PenaltyType::KL) c.write(s, "rho_hat", c.scratch(n, ".ws", Shape{c.shape(n.inputs[0])[1]}));
    c.write_grad(s, "dh", n.inputs[0]);
    s.bind = [&n](const Binder& b) {
      const auto& at = n.get<ActivityAttrs>();
      const Shape& hs = b.shape("h");
      kern::ActivityPenalty a;
      a.h = b.ptr("h"), a.loss = b.ptr("loss"), a.rho_hat = b.ptr("rho_hat");
      a.grad = b.ptr("dh"), a.acc_grad = b.acc("dh");
      a.m = static_cast<int>(hs[0]), a.n = static_cast<int>(hs[1]);
      a.kind = to_kern(at.type);
      a.rho = at.type == PenaltyType::KL ? at.rho : 0.05f;
      return b.launch_weighted(&kern::OpTable::activity_penalty, a);
    };
  }
};

class ContractiveDesc final : public NodeDesc {
 public:
  bool term() const override { return true; }
  std::string describe(const Node& n) const override { return term_desc(n); }
  // The layer's activation and slope travel as the node's LayerInfo (attrs).
  void forward(Compiler& c, const Node& n) const override {
    Step& s = c.step(n);
    c.read(s, "h", n.inputs[0]);
    c.read(s, "w", n.inputs[1]);
    c.write(s, "loss", n.outputs[0]);
    c.write(s, "ws", c.scratch(n, ".ws", Shape{2 * c.shape(n.inputs[0])[1]}));
    c.write_grad(s, "dh", n.inputs[0]);
    c.write_grad(s, "dw", n.inputs[1]);
    s.bind = [&n](const Binder& b) {
      const auto& layer = n.get<LayerInfo>();
      const Shape& hs = b.shape("h");
      kern::ContractivePenalty a;
      a.h = b.ptr("h"), a.w = b.ptr("w"), a.loss = b.ptr("loss"), a.ws = b.ptr("ws");
      a.grad_h = b.ptr("dh"), a.acc_grad_h = b.acc("dh");
      a.grad_w = b.ptr("dw"), a.acc_grad_w = b.acc("dw");
      a.m = static_cast<int>(hs[0]), a.n = static_cast<int>(hs[1]), a.k = static_cast<int>(b.shape("w")[1]);
      a.act = to_kern(layer.act);
      a.slope = layer.slope;
      return b.launch_weighted(&kern::OpTable::contractive_penalty, a);
    };
  }
};

const ActivityDesc kActivity;
const ContractiveDesc kContractive;

}  // namespace
}  // namespace detail

Value Graph::activity_penalty(Value h, PenaltyType type, float weight, float rho, bool objective, const std::string& name) {
  const std::string nm = node_name(name, type == PenaltyType::KL ? "kl_sparsity" : "l1_activity");
  const auto& hi = info(h);
  CUAE_CHECK(hi.shape.size() == 2, nm + ": h must be 2-D, got " + shape_str(hi.shape));
  CUAE_CHECK(std::isfinite(weight) && weight >= 0.0f, nm + ": weight must be >= 0, got " + std::to_string(weight));
  if (type == PenaltyType::KL) {
    CUAE_CHECK(rho > 0.0f && rho < 1.0f, nm + ": the target activation rho must lie in (0, 1), got " + std::to_string(rho));
    // ρ̂ is a mean activation in (0, 1): only a logistic layer produces one.
    detail::LayerInfo l;
    const detail::Node* p = producer(h);
    CUAE_CHECK(p && p->outputs[0] == h.id && p->desc->layer(*p, l) && l.act == Activation::Sigmoid,
               nm + ": KL sparsity needs activations in (0, 1), but \"" + hi.name + "\" is not the output of a sigmoid layer");
  }
  detail::Node n(&detail::kActivity, nm, {h.id}, detail::ActivityAttrs{type, rho});
  n.weight = weight;
  n.objective = objective;
  return add_node(std::move(n), {{nm, Shape{1}}}, true);
}

bool contractive_supports(Activation a) {
  return a == Activation::Identity || a == Activation::ReLU || a == Activation::LeakyReLU || a == Activation::Sigmoid ||
         a == Activation::Tanh;
}

Value Graph::contractive_penalty(Value h, float weight, bool objective, const std::string& name) {
  const std::string nm = node_name(name, "contractive");
  const auto& hi = info(h);
  CUAE_CHECK(std::isfinite(weight) && weight >= 0.0f, nm + ": weight must be >= 0, got " + std::to_string(weight));
  detail::LayerInfo l;
  const detail::Node* d = producer(h);
  CUAE_CHECK(d && d->outputs[0] == h.id && d->desc->layer(*d, l) && l.dense,
             nm + ": \"" + hi.name + "\" is not the output of a dense layer");
  CUAE_CHECK(!l.w_transposed, nm + ": layer \"" + d->name + "\" uses a transposed (tied) weight; the contractive penalty "
                              "applies to encoder layers with their own weight");
  CUAE_CHECK(contractive_supports(l.act), nm + ": the contractive penalty does not support " +
                                             std::string(activation_name(l.act)) + " layers (\"" + d->name + "\")");
  detail::Node n(&detail::kContractive, nm, {h.id, l.weight}, l);
  n.weight = weight;
  n.objective = objective;
  return add_node(std::move(n), {{nm, Shape{1}}}, true);
}

}  // namespace cuae
