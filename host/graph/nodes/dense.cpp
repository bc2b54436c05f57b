// The dense layer: y = act(x·Wᵀ + b) with W [out, in], or y = act(x·W + b) with W [in, out] (a tied
// decoder reusing an encoder's weight). Forward: dense_forward; backward: dense_backward (dZ, then
// dW, dX, db, each written or accumulated as the plan says).
#include "host/graph/compiler.hpp"
#include "host/graph/nodes/kinds.hpp"

namespace cuae {
namespace detail {
namespace {

struct DenseAttrs {
  Activation act = Activation::Identity;
  float slope = 0.01f;
  bool w_transposed = false;
};

// m, n, k of the layer from its slots.
void dense_dims(const Binder& b, const DenseAttrs& at, int& m, int& n, int& k) {
  const Shape& xs = b.shape("x");
  const Shape& ws = b.shape("w");
  m = static_cast<int>(xs[0]);
  k = static_cast<int>(xs[1]);
  n = static_cast<int>(at.w_transposed ? ws[1] : ws[0]);
}

class DenseDesc final : public NodeDesc {
 public:
  bool layer(const Node& n, LayerInfo& l) const override {
    const auto& a = n.get<DenseAttrs>();
    l = {a.act, a.slope, true, a.w_transposed, n.inputs[1]};
    return true;
  }
  std::string describe(const Node& n) const override { return activation_name(n.get<DenseAttrs>().act); }

  void forward(Compiler& c, const Node& n) const override {
    Step& s = c.step(n);
    c.read(s, "x", n.inputs[0]);
    c.read(s, "w", n.inputs[1]);
    c.read(s, "b", n.inputs[2]);
    c.write(s, "y", n.outputs[0]);
    c.write(s, "z", n.outputs.size() > 1 ? n.outputs[1] : -1);
    s.bind = [&n](const Binder& b) {
      const auto& at = n.get<DenseAttrs>();
      kern::DenseForward a;
      dense_dims(b, at, a.m, a.n, a.k);
      a.x = b.ptr("x"), a.w = b.ptr("w"), a.b = b.ptr("b"), a.y = b.ptr("y"), a.z = b.ptr("z");
      a.w_kn = at.w_transposed;
      a.act = to_kern(at.act);
      a.slope = at.slope;
      a.cache = b.new_cache();
      return b.launch(&kern::OpTable::dense_forward, a);
    };
  }

  void backward(Compiler& c, const Node& n) const override {
    Step& s = c.step(n, true);
    c.read_grad(s, "dy", n.outputs[0]);
    c.read(s, "y", n.outputs[0]);
    c.read(s, "x", n.inputs[0]);
    c.read(s, "w", n.inputs[1]);
    c.read(s, "z", n.outputs.size() > 1 ? n.outputs[1] : -1);
    c.write(s, "dz", c.scratch(n, ".dz", c.shape(n.outputs[0])));  // lives only during this step
    c.write_grad(s, "dx", n.inputs[0]);
    c.write_grad(s, "dw", n.inputs[1]);
    c.write_grad(s, "db", n.inputs[2]);
    s.bind = [&n](const Binder& b) {
      const auto& at = n.get<DenseAttrs>();
      kern::DenseBackward a;
      dense_dims(b, at, a.m, a.n, a.k);
      a.dy = b.ptr("dy"), a.y = b.ptr("y"), a.z = b.ptr("z"), a.x = b.ptr("x"), a.w = b.ptr("w");
      a.dz = b.ptr("dz");
      a.dx = b.ptr("dx"), a.acc_dx = b.acc("dx");
      a.dw = b.ptr("dw"), a.acc_dw = b.acc("dw");
      a.db = b.ptr("db"), a.acc_db = b.acc("db");
      a.w_kn = at.w_transposed;
      a.act = to_kern(at.act);
      a.slope = at.slope;
      a.cache = b.new_cache();
      return b.launch(&kern::OpTable::dense_backward, a);
    };
  }
};

const DenseDesc kDense;

}  // namespace
}  // namespace detail

Value Graph::dense(Value x, Value w, Value b, Activation act, bool w_transposed, float slope, const std::string& name) {
  const std::string nm = node_name(name, "dense");
  const auto& xi = info(x);
  const auto& wi = info(w);
  CUAE_CHECK(wi.kind == ValueKind::Param, nm + ": weight \"" + wi.name + "\" is not a parameter");
  CUAE_CHECK(xi.shape.size() == 2 && wi.shape.size() == 2,
             nm + ": x " + shape_str(xi.shape) + " and W " + shape_str(wi.shape) + " must be 2-D");
  const std::int64_t in = w_transposed ? wi.shape[0] : wi.shape[1];
  const std::int64_t out = w_transposed ? wi.shape[1] : wi.shape[0];
  CUAE_CHECK(xi.shape[1] == in, nm + ": x " + shape_str(xi.shape) + " does not match W " + shape_str(wi.shape) +
                                    (w_transposed ? " (transposed, [in, out])" : " ([out, in])"));
  check_bias_and_slope(nm, b, out, act, slope);
  detail::Node n(&detail::kDense, nm, {x.id, w.id, b.id}, detail::DenseAttrs{act, slope, w_transposed});
  return add_layer_node(std::move(n), Shape{xi.shape[0], out}, act);
}

}  // namespace cuae
