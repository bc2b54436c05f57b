// k-sparse coding: each row keeps its k largest values (ties to the lower column); the kept
// columns are a second output, which the backward reads to pass the gradient through them only.
#include "host/graph/compiler.hpp"
#include "host/graph/nodes/kinds.hpp"

namespace cuae {
namespace detail {
namespace {

struct KSparseAttrs {
  int k = 1;
};

class KSparseDesc final : public NodeDesc {
 public:
  std::string describe(const Node& n) const override { return "k=" + std::to_string(n.get<KSparseAttrs>().k); }
  void forward(Compiler& c, const Node& n) const override {
    Step& s = c.unary(n);
    c.write(s, "index", n.outputs[1]);
    s.bind = [&n](const Binder& b) {
      const Shape& xs = b.shape("x");
      kern::KSparse a;
      a.x = b.ptr("x"), a.y = b.ptr("y"), a.index = b.as<std::int32_t>("index");
      a.m = static_cast<int>(xs[0]), a.n = static_cast<int>(xs[1]), a.k = n.get<KSparseAttrs>().k;
      return b.launch(&kern::OpTable::ksparse_forward, a);
    };
  }
  void backward(Compiler& c, const Node& n) const override {
    if (!c.needs_grad(n.inputs[0])) return;
    Step& s = c.unary_backward(n);
    c.read(s, "index", n.outputs[1]);
    s.bind = [&n](const Binder& b) {
      const Shape& xs = b.shape("dy");  // y has x's shape
      kern::KSparseBackward a;
      a.dy = b.ptr("dy"), a.index = b.as<const std::int32_t>("index");
      a.dx = b.ptr("dx"), a.acc_dx = b.acc("dx");
      a.m = static_cast<int>(xs[0]), a.n = static_cast<int>(xs[1]), a.k = n.get<KSparseAttrs>().k;
      return b.launch(&kern::OpTable::ksparse_backward, a);
    };
  }
};

const KSparseDesc kKSparse;

}  // namespace
}  // namespace detail

Value Graph::ksparse(Value x, int k, const std::string& name) {
  const std::string nm = node_name(name, "ksparse");
  const Shape xs = info(x).shape;
  CUAE_CHECK(xs.size() == 2 && k >= 1 && k <= xs[1],
             nm + ": k = " + std::to_string(k) + " must lie in [1, " + std::to_string(xs.size() == 2 ? xs[1] : 0) +
                 "] for " + shape_str(xs));
  detail::Node n(&detail::kKSparse, nm, {x.id}, detail::KSparseAttrs{k});
  return add_node(std::move(n), {{nm + ".out", xs}, {nm + ".index", Shape{xs[0], k}}});
}

}  // namespace cuae
