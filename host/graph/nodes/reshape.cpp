// A reshape: the same values under another shape with the same batch dimension and element count.
// No step and no buffer: the executor gives the output (and its gradient) the input's memory.
#include "host/graph/compiler.hpp"

namespace cuae {
namespace detail {
namespace {

class ReshapeDesc final : public NodeDesc {
 public:
  bool alias() const override { return true; }
  void forward(Compiler&, const Node&) const override {}
};

const ReshapeDesc kReshape;

}  // namespace
}  // namespace detail

Value Graph::reshape(Value x, Shape shape, const std::string& name) {
  const std::string nm = node_name(name, "reshape");
  const auto& xi = info(x);
  CUAE_CHECK(xi.kind != ValueKind::Scalar, nm + ": a scalar term cannot be reshaped");
  CUAE_CHECK(!shape.empty() && shape[0] == xi.shape[0] && shape_numel(shape) == shape_numel(xi.shape),
             nm + ": cannot reshape " + shape_str(xi.shape) + " to " + shape_str(shape) +
                 " (same batch dimension and element count needed)");
  detail::Node n(&detail::kReshape, nm, {x.id});
  return add_node(std::move(n), {{nm + ".out", std::move(shape)}});
}

}  // namespace cuae
