// The reconstruction loss, a scalar term: value and the prediction's gradient in one op, at its
// forward position (the gradient exists only for an objective term, in training launches).
#include "host/graph/compiler.hpp"
#include "host/graph/nodes/kinds.hpp"

namespace cuae {
namespace detail {
namespace {

struct LossAttrs {
  LossType type = LossType::MSE;
  Reduction reduction = Reduction::Mean;
};

class LossDesc final : public NodeDesc {
 public:
  bool term() const override { return true; }

  void forward(Compiler& c, const Node& n) const override {
    Step& s = c.step(n);
    c.read(s, "pred", n.inputs[0]);
    c.read(s, "target", n.inputs[1]);
    c.write(s, "loss", n.outputs[0]);
    c.write_grad(s, "dpred", n.inputs[0]);
    s.bind = [&n](const Binder& b) {
      const auto& at = n.get<LossAttrs>();
      const Shape& ps = b.shape("pred");
      kern::Loss a;
      a.pred = b.ptr("pred"), a.target = b.ptr("target"), a.loss = b.ptr("loss");
      a.grad = b.ptr("dpred"), a.acc_grad = b.acc("dpred");
      a.count = shape_numel(ps);
      a.kind = to_kern(at.type);
      // Mean: over every element; SumPerSample: over the samples of the batch. The term's weight
      // multiplies this scale when the op runs.
      const double denom = at.reduction == Reduction::Mean ? static_cast<double>(a.count) : static_cast<double>(ps[0]);
      a.scale = static_cast<float>(1.0 / denom);
      return b.launch_weighted(&kern::OpTable::loss, a);
    };
  }
};

const LossDesc kLoss;

}  // namespace
}  // namespace detail

Value Graph::loss(Value pred, Value target, LossType type, Reduction reduction, float weight, const std::string& name) {
  const std::string nm = name.empty() ? std::string(loss_type_name(type)) + "_loss" + std::to_string(nodes_.size()) : name;
  const auto& p = info(pred);
  const auto& t = info(target);
  CUAE_CHECK(p.shape == t.shape, nm + ": prediction " + shape_str(p.shape) + " and target " + shape_str(t.shape) +
                                     " differ in shape");
  detail::Node n(&detail::kLoss, nm, {pred.id, target.id}, detail::LossAttrs{type, reduction});
  n.weight = weight;
  return add_node(std::move(n), {{nm, Shape{1}}}, true);
}

}  // namespace cuae
