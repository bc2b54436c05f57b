// Restricted Boltzmann machines as graph ops, for layer-wise pretraining on the executor:
// rbm_cd, a scalar term (the reconstruction error) that writes CD-k's gradient estimate of its
// weight and biases at its forward position (one kernel-table call: the chain, the statistics and
// the error together), and rbm_free_energy, a forward-only monitor.
#include "host/graph/compiler.hpp"
#include "host/graph/nodes/kinds.hpp"
#include "host/runtime/backend.hpp"

namespace cuae {
namespace detail {
namespace {

kern::RbmUnit visible_of(const RbmOptions& o) { return o.gaussian_visible ? kern::RbmUnit::Gaussian : kern::RbmUnit::Bernoulli; }
kern::RbmUnit hidden_of(const RbmOptions& o) { return o.linear_hidden ? kern::RbmUnit::Gaussian : kern::RbmUnit::Bernoulli; }

std::string describe_units(const RbmOptions& o) {
  return std::string(o.gaussian_visible ? "gaussian" : "bernoulli") + "-" + (o.linear_hidden ? "linear" : "bernoulli");
}

// The slots every RBM op reads: v, w, b, c (inputs 0..3).
void read_rbm(Compiler& c, Step& s, const Node& n) {
  c.read(s, "v", n.inputs[0]);
  c.read(s, "w", n.inputs[1]);
  c.read(s, "b", n.inputs[2]);
  c.read(s, "c", n.inputs[3]);
}

class RbmCdDesc final : public NodeDesc {
 public:
  bool term() const override { return true; }
  bool weighted() const override { return false; }
  std::string describe(const Node& n) const override {
    const auto& o = n.get<RbmOptions>();
    return "cd-" + std::to_string(o.k) + ", " + describe_units(o) + (o.sample_visible ? ", sampled visible" : "");
  }
  void forward(Compiler& c, const Node& n) const override {
    const Shape& vs = c.shape(n.inputs[0]);
    const Shape& ws = c.shape(n.inputs[1]);
    std::size_t floats = 0;
    kern::RbmCDWorkspace q;
    q.m = static_cast<int>(vs[0]), q.nv = static_cast<int>(vs[1]), q.nh = static_cast<int>(ws[0]);
    q.floats = &floats;
    c.backend().ops().rbm_cd_workspace(c.backend().ctx(), q);
    Step& s = c.step(n);
    read_rbm(c, s, n);
    c.write(s, "loss", n.outputs[0]);
    c.write(s, "ws", c.scratch(n, ".ws", Shape{static_cast<std::int64_t>(floats)}));
    c.write_grad(s, "dw", n.inputs[1]);
    c.write_grad(s, "db", n.inputs[2]);
    c.write_grad(s, "dc", n.inputs[3]);
    s.bind = [&n](const Binder& b) {
      // The kernel writes its estimate; it cannot add it to a gradient written before it.
      for (const char* g : {"dw", "db", "dc"})
        CUAE_CHECK(!b.acc(g), n.name + ": a term before it writes a gradient of its weight or biases (a second "
                                       "rbm_cd on the same parameters?); CD's estimate is written, not added");
      const auto& o = n.get<RbmOptions>();
      const Shape& vs = b.shape("v");
      kern::RbmCD a;
      a.v0 = b.ptr("v"), a.w = b.ptr("w"), a.b = b.ptr("b"), a.c = b.ptr("c");
      a.dw = b.ptr("dw"), a.db = b.ptr("db"), a.dc = b.ptr("dc"), a.recon = b.ptr("loss");
      a.ws = b.ptr("ws"), a.ws_floats = static_cast<std::size_t>(b.numel("ws"));
      a.m = static_cast<int>(vs[0]), a.nv = static_cast<int>(vs[1]), a.nh = static_cast<int>(b.shape("w")[0]);
      a.k = o.k;
      a.visible = visible_of(o), a.hidden = hidden_of(o);
      a.sample_visible = o.sample_visible;
      a.seed = b.seed();
      a.cache = b.new_cache();
      return b.launch_stepped(&kern::OpTable::rbm_cd, a);
    };
  }
};

class RbmFreeEnergyDesc final : public NodeDesc {
 public:
  bool blocks_gradient() const override { return true; }
  std::string describe(const Node& n) const override { return describe_units(n.get<RbmOptions>()); }
  void forward(Compiler& c, const Node& n) const override {
    Step& s = c.step(n);
    read_rbm(c, s, n);
    c.write(s, "fe", n.outputs[0]);
    c.write(s, "ws", c.scratch(n, ".ws", Shape{c.shape(n.inputs[0])[0], c.shape(n.inputs[1])[0]}));
    s.bind = [&n](const Binder& b) {
      const auto& o = n.get<RbmOptions>();
      const Shape& vs = b.shape("v");
      kern::RbmFreeEnergy a;
      a.v = b.ptr("v"), a.w = b.ptr("w"), a.b = b.ptr("b"), a.c = b.ptr("c");
      a.fe = b.ptr("fe"), a.ws = b.ptr("ws");
      a.m = static_cast<int>(vs[0]), a.nv = static_cast<int>(vs[1]), a.nh = static_cast<int>(b.shape("w")[0]);
      a.visible = visible_of(o), a.hidden = hidden_of(o);
      a.cache = b.new_cache();
      return b.launch(&kern::OpTable::rbm_free_energy, a);
    };
  }
};

const RbmCdDesc kRbmCd;
const RbmFreeEnergyDesc kRbmFreeEnergy;

}  // namespace
}  // namespace detail

namespace {

// v [m, nv] any value; w [nh, nv], b [nv], c [nh] parameters; k >= 1.
void check_rbm(const Graph& g, const std::string& nm, Value v, Value w, Value b, Value c, const RbmOptions& o) {
  const Shape& vs = g.info(v).shape;
  CUAE_CHECK(vs.size() == 2, nm + ": v " + shape_str(vs) + " must be [batch, visible units]");
  const auto param = [&](Value p, const Shape& want, const char* what) {
    const auto& pi = g.info(p);
    CUAE_CHECK(pi.kind == Graph::ValueKind::Param && pi.shape == want,
               nm + ": " + what + " " + shape_str(pi.shape) + " must be a parameter of shape " + shape_str(want));
  };
  const Shape& wsh = g.info(w).shape;
  CUAE_CHECK(wsh.size() == 2 && wsh[1] == vs[1],
             nm + ": w " + shape_str(wsh) + " must be [hidden units, " + std::to_string(vs[1]) + "]");
  param(w, wsh, "w");
  param(b, Shape{vs[1]}, "b (the visible bias)");
  param(c, Shape{wsh[0]}, "c (the hidden bias)");
  CUAE_CHECK(o.k >= 1, nm + ": CD-k needs k >= 1, got " + std::to_string(o.k));
}

}  // namespace

Value Graph::rbm_cd(Value v, Value w, Value b, Value c, const RbmOptions& o, const std::string& name) {
  const std::string nm = node_name(name, "rbm_cd");
  check_rbm(*this, nm, v, w, b, c, o);
  detail::Node n(&detail::kRbmCd, nm, {v.id, w.id, b.id, c.id}, o);
  return add_node(std::move(n), {{nm, Shape{1}}}, true);
}

Value Graph::rbm_free_energy(Value v, Value w, Value b, Value c, const RbmOptions& o, const std::string& name) {
  const std::string nm = node_name(name, "rbm_free_energy");
  check_rbm(*this, nm, v, w, b, c, o);
  detail::Node n(&detail::kRbmFreeEnergy, nm, {v.id, w.id, b.id, c.id}, o);
  return add_node(std::move(n), {{nm + ".out", Shape{info(v).shape[0]}}});
}

}  // namespace cuae
