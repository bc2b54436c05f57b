// A standalone activation y = act(x) (inference outputs such as sigmoid(logits)); GELU is fused into
// the layers only (its backward needs the pre-activation, which only a layer keeps).
#include "host/graph/compiler.hpp"
#include "host/graph/nodes/kinds.hpp"

namespace cuae {
namespace detail {
namespace {

struct ActivationAttrs {
  Activation act = Activation::Identity;
  float slope = 0.01f;
};

class ActivationDesc final : public NodeDesc {
 public:
  bool layer(const Node& n, LayerInfo& l) const override {
    const auto& a = n.get<ActivationAttrs>();
    l = {a.act, a.slope, false, false, -1};
    return true;
  }
  std::string describe(const Node& n) const override { return activation_name(n.get<ActivationAttrs>().act); }

  void forward(Compiler& c, const Node& n) const override {
    Step& s = c.unary(n);
    s.bind = [&n](const Binder& b) {
      const auto& at = n.get<ActivationAttrs>();
      kern::Activation a;
      a.x = b.ptr("x"), a.y = b.ptr("y");
      a.count = b.numel("y");
      a.act = to_kern(at.act);
      a.slope = at.slope;
      return b.launch(&kern::OpTable::activation_forward, a);
    };
  }

  void backward(Compiler& c, const Node& n) const override {
    if (!c.needs_grad(n.inputs[0])) return;
    Step& s = c.unary_backward(n);
    c.read(s, "y", n.outputs[0]);
    s.bind = [&n](const Binder& b) {
      const auto& at = n.get<ActivationAttrs>();
      kern::ActivationBackward a;
      a.dy = b.ptr("dy"), a.y = b.ptr("y");
      a.dx = b.ptr("dx"), a.acc_dx = b.acc("dx");
      a.count = b.numel("y");
      a.act = to_kern(at.act);
      a.slope = at.slope;
      return b.launch(&kern::OpTable::activation_backward, a);
    };
  }
};

const ActivationDesc kActivation;

}  // namespace
}  // namespace detail

Value Graph::activation(Value x, Activation act, float slope, const std::string& name) {
  const std::string nm = name.empty() ? std::string(activation_name(act)) + std::to_string(nodes_.size()) : name;
  const Shape xs = info(x).shape;
  CUAE_CHECK(act != Activation::GELU, nm + ": a standalone GELU is not supported; fuse it into a dense layer");
  detail::Node n(&detail::kActivation, nm, {x.id}, detail::ActivationAttrs{act, slope});
  return add_node(std::move(n), {{nm + ".out", xs}});
}

}  // namespace cuae
