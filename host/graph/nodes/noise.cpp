// The random regularizers: input corruption (a denoising autoencoder's noise; its output is data,
// no gradient flows through it) and inverted dropout (its backward draws the same mask again).
// Both draw from the node's own Philox stream at the step the executor sets for the launch.
#include <cmath>

#include "host/graph/compiler.hpp"
#include "host/graph/nodes/kinds.hpp"

namespace cuae {
namespace detail {
namespace {

struct CorruptAttrs {
  NoiseType type = NoiseType::Mask;
  float level = 0.0f;  // the corrupted fraction, or σ
};

class CorruptDesc final : public NodeDesc {
 public:
  bool blocks_gradient() const override { return true; }
  std::string describe(const Node& n) const override {
    const auto& a = n.get<CorruptAttrs>();
    return std::string(noise_type_name(a.type)) + " " + num(a.level);
  }
  void forward(Compiler& c, const Node& n) const override {
    Step& s = c.unary(n);
    s.bind = [&n](const Binder& b) {
      const auto& at = n.get<CorruptAttrs>();
      kern::Corrupt a;
      a.x = b.ptr("x"), a.y = b.ptr("y");
      a.count = b.numel("y");
      a.kind = to_kern(at.type);
      a.level = at.level;
      a.lo = 0.0f, a.hi = 1.0f;
      a.seed = b.seed();
      return b.launch_stepped(&kern::OpTable::corrupt, a);
    };
  }
};

struct DropoutAttrs {
  float p = 0.0f;
};

class DropoutDesc final : public NodeDesc {
 public:
  std::string describe(const Node& n) const override { return "p=" + num(n.get<DropoutAttrs>().p); }
  void forward(Compiler& c, const Node& n) const override {
    Step& s = c.unary(n);
    s.bind = [&n](const Binder& b) {
      kern::Dropout a;
      a.x = b.ptr("x"), a.y = b.ptr("y");
      a.count = b.numel("y");
      a.p = n.get<DropoutAttrs>().p;
      a.seed = b.seed();
      return b.launch_stepped(&kern::OpTable::dropout_forward, a);
    };
  }
  void backward(Compiler& c, const Node& n) const override {
    if (!c.needs_grad(n.inputs[0])) return;
    Step& s = c.unary_backward(n);
    s.bind = [&n](const Binder& b) {
      kern::DropoutBackward a;
      a.dy = b.ptr("dy");
      a.dx = b.ptr("dx"), a.acc_dx = b.acc("dx");
      a.count = b.numel("dy");
      a.p = n.get<DropoutAttrs>().p;
      a.seed = b.seed();
      return b.launch_stepped(&kern::OpTable::dropout_backward, a);
    };
  }
};

const CorruptDesc kCorrupt;
const DropoutDesc kDropout;

}  // namespace
}  // namespace detail

Value Graph::corrupt(Value x, NoiseType type, float level, const std::string& name) {
  const std::string nm = node_name(name, "corrupt");
  const Shape xs = info(x).shape;
  if (type == NoiseType::Gaussian)
    CUAE_CHECK(std::isfinite(level) && level >= 0.0f,
               nm + ": the noise's standard deviation must be >= 0, got " + std::to_string(level));
  else
    CUAE_CHECK(level >= 0.0f && level <= 1.0f, nm + ": the corrupted fraction must lie in [0, 1], got " + std::to_string(level));
  detail::Node n(&detail::kCorrupt, nm, {x.id}, detail::CorruptAttrs{type, level});
  return add_node(std::move(n), {{nm + ".out", xs}});
}

Value Graph::dropout(Value x, float p, const std::string& name) {
  const std::string nm = node_name(name, "dropout");
  const Shape xs = info(x).shape;
  CUAE_CHECK(p >= 0.0f && p < 1.0f, nm + ": the drop probability must lie in [0, 1), got " + std::to_string(p));
  detail::Node n(&detail::kDropout, nm, {x.id}, detail::DropoutAttrs{p});
  return add_node(std::move(n), {{nm + ".out", xs}});
}

}  // namespace cuae
