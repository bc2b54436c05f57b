// The convolutional layers over NHWC values: conv2d (filter KRSC) and its transpose (the data
// gradient of the convolution with the same options, output padding restoring the size wanted).
// Each pass's workspace is asked of the backend when the step is added and planned in the arena.
#include "host/graph/compiler.hpp"
#include "host/graph/nodes/kinds.hpp"
#include "kernels/conv_common.hpp"

namespace cuae {
namespace detail {
namespace {

struct ConvAttrs {
  Activation act = Activation::Identity;
  float slope = 0.01f;
  Conv2dOptions o;
  bool transposed = false;
};

std::string i2(int a, int b) { return std::to_string(a) + "x" + std::to_string(b); }

std::string conv_opts_str(const Conv2dOptions& o, bool transposed) {
  std::string s = "stride " + i2(o.stride_h, o.stride_w) + ", pad " + i2(o.pad_h, o.pad_w) + ", dilation " +
                  i2(o.dil_h, o.dil_w);
  if (transposed) s += ", output padding " + i2(o.out_pad_h, o.out_pad_w);
  return s;
}

// The kernel geometry (for a transposed convolution, of the convolution it transposes) from the
// node's input x, filter w and output y shapes.
kern::ConvGeom conv_geom(const Shape& xs, const Shape& ws, const Shape& ys, const ConvAttrs& at) {
  const Shape& big = at.transposed ? ys : xs;    // convolution input
  const Shape& small = at.transposed ? xs : ys;  // convolution output
  kern::ConvGeom g;
  g.n = static_cast<int>(xs[0]);
  g.h = static_cast<int>(big[1]), g.w = static_cast<int>(big[2]), g.c = static_cast<int>(big[3]);
  g.p = static_cast<int>(small[1]), g.q = static_cast<int>(small[2]), g.k = static_cast<int>(small[3]);
  g.r = static_cast<int>(ws[1]), g.s = static_cast<int>(ws[2]);
  g.stride_h = at.o.stride_h, g.stride_w = at.o.stride_w;
  g.pad_h = at.o.pad_h, g.pad_w = at.o.pad_w;
  g.dil_h = at.o.dil_h, g.dil_w = at.o.dil_w;
  return g;
}

kern::ConvGeom node_geom(const Compiler& c, const Node& n) {
  return conv_geom(c.shape(n.inputs[0]), c.shape(n.inputs[1]), c.shape(n.outputs[0]), n.get<ConvAttrs>());
}

kern::ConvGeom bound_geom(const Binder& b, const Node& n) {
  return conv_geom(b.shape("x"), b.shape("w"), b.shape("y"), n.get<ConvAttrs>());
}

class ConvDesc final : public NodeDesc {
 public:
  bool layer(const Node& n, LayerInfo& l) const override {
    const auto& a = n.get<ConvAttrs>();
    l = {a.act, a.slope, false, false, n.inputs[1]};
    return true;
  }
  std::string describe(const Node& n) const override {
    const auto& a = n.get<ConvAttrs>();
    return std::string(activation_name(a.act)) + ", " + conv_opts_str(a.o, a.transposed);
  }

  void forward(Compiler& c, const Node& n) const override {
    const bool t = n.get<ConvAttrs>().transposed;
    Step& s = c.step(n);
    c.read(s, "x", n.inputs[0]);
    c.read(s, "w", n.inputs[1]);
    c.read(s, "b", n.inputs[2]);
    c.write(s, "y", n.outputs[0]);
    c.write(s, "z", n.outputs.size() > 1 ? n.outputs[1] : -1);
    c.write(s, "ws", c.conv_workspace(n, node_geom(c, n), t ? kern::ConvPass::DeconvForward : kern::ConvPass::ConvForward,
                                      ".ws"));
    s.bind = [&n](const Binder& b) {
      const auto& at = n.get<ConvAttrs>();
      // Both argument structs carry the same fields.
      auto fill = [&](auto& a) {
        a.g = bound_geom(b, n);
        a.x = b.ptr("x"), a.w = b.ptr("w"), a.b = b.ptr("b"), a.y = b.ptr("y"), a.z = b.ptr("z");
        a.ws = b.ptr("ws"), a.ws_bytes = b.bytes("ws");
        a.act = to_kern(at.act);
        a.slope = at.slope;
        a.cache = b.new_cache();
      };
      if (at.transposed) {
        kern::DeconvForward a;
        fill(a);
        return b.launch(&kern::OpTable::deconv2d_forward, a);
      }
      kern::ConvForward a;
      fill(a);
      return b.launch(&kern::OpTable::conv2d_forward, a);
    };
  }

  void backward(Compiler& c, const Node& n) const override {
    const bool t = n.get<ConvAttrs>().transposed;
    Step& s = c.step(n, true);
    c.read_grad(s, "dy", n.outputs[0]);
    c.read(s, "y", n.outputs[0]);
    c.read(s, "x", n.inputs[0]);
    c.read(s, "w", n.inputs[1]);
    c.read(s, "z", n.outputs.size() > 1 ? n.outputs[1] : -1);
    c.write(s, "dz", c.scratch(n, ".dz", c.shape(n.outputs[0])));
    c.write(s, "ws", c.conv_workspace(n, node_geom(c, n), t ? kern::ConvPass::DeconvBackward : kern::ConvPass::ConvBackward,
                                      ".bws"));
    c.write_grad(s, "dx", n.inputs[0]);
    c.write_grad(s, "dw", n.inputs[1]);
    c.write_grad(s, "db", n.inputs[2]);
    s.bind = [&n](const Binder& b) {
      const auto& at = n.get<ConvAttrs>();
      auto fill = [&](auto& a) {
        a.g = bound_geom(b, n);
        a.dy = b.ptr("dy"), a.y = b.ptr("y"), a.z = b.ptr("z"), a.x = b.ptr("x"), a.w = b.ptr("w");
        a.dz = b.ptr("dz");
        a.ws = b.ptr("ws"), a.ws_bytes = b.bytes("ws");
        a.dx = b.ptr("dx"), a.acc_dx = b.acc("dx");
        a.dw = b.ptr("dw"), a.acc_dw = b.acc("dw");
        a.db = b.ptr("db"), a.acc_db = b.acc("db");
        a.act = to_kern(at.act);
        a.slope = at.slope;
        a.cache = b.new_cache();
      };
      if (at.transposed) {
        kern::DeconvBackward a;
        fill(a);
        return b.launch(&kern::OpTable::deconv2d_backward, a);
      }
      kern::ConvBackward a;
      fill(a);
      return b.launch(&kern::OpTable::conv2d_backward, a);
    };
  }
};

const ConvDesc kConv;

}  // namespace
}  // namespace detail

Value Graph::conv2d(Value x, Value w, Value b, Activation act, const Conv2dOptions& o, float slope, const std::string& name) {
  const std::string nm = node_name(name, "conv");
  const Shape xs = info(x).shape;
  const auto& wi = info(w);
  CUAE_CHECK(wi.kind == ValueKind::Param, nm + ": filter \"" + wi.name + "\" is not a parameter");
  CUAE_CHECK(xs.size() == 4 && wi.shape.size() == 4 && wi.shape[3] == xs[3],
             nm + ": x " + shape_str(xs) + " [N,H,W,C] and filter " + shape_str(wi.shape) +
                 " [K,R,S,C] must be 4-D with the same C");
  CUAE_CHECK(o.stride_h > 0 && o.stride_w > 0 && o.dil_h > 0 && o.dil_w > 0 && o.pad_h >= 0 && o.pad_w >= 0,
             nm + ": " + detail::conv_opts_str(o, false) + ": stride and dilation must be positive, padding >= 0");
  const int p = kern::conv_out_extent(static_cast<int>(xs[1]), static_cast<int>(wi.shape[1]), o.stride_h, o.pad_h, o.dil_h);
  const int q = kern::conv_out_extent(static_cast<int>(xs[2]), static_cast<int>(wi.shape[2]), o.stride_w, o.pad_w, o.dil_w);
  CUAE_CHECK(p > 0 && q > 0, nm + ": a " + detail::i2(static_cast<int>(wi.shape[1]), static_cast<int>(wi.shape[2])) +
                                 " filter (" + detail::conv_opts_str(o, false) + ") does not fit x " + shape_str(xs));
  const std::int64_t k = wi.shape[0];
  check_bias_and_slope(nm, b, k, act, slope);
  detail::ConvAttrs at{act, slope, o, false};
  at.o.out_pad_h = at.o.out_pad_w = 0;
  detail::Node n(&detail::kConv, nm, {x.id, w.id, b.id}, at);
  return add_layer_node(std::move(n), Shape{xs[0], p, q, k}, act);
}

Value Graph::conv_transpose2d(Value x, Value w, Value b, Activation act, const Conv2dOptions& o, float slope,
                              const std::string& name) {
  const std::string nm = node_name(name, "deconv");
  const Shape xs = info(x).shape;
  const auto& wi = info(w);
  CUAE_CHECK(wi.kind == ValueKind::Param, nm + ": filter \"" + wi.name + "\" is not a parameter");
  CUAE_CHECK(xs.size() == 4 && wi.shape.size() == 4 && wi.shape[0] == xs[3],
             nm + ": x " + shape_str(xs) + " [N,P,Q,K] and filter " + shape_str(wi.shape) +
                 " [K,R,S,C] must be 4-D with the same K");
  CUAE_CHECK(o.stride_h > 0 && o.stride_w > 0 && o.dil_h > 0 && o.dil_w > 0 && o.pad_h >= 0 && o.pad_w >= 0,
             nm + ": " + detail::conv_opts_str(o, true) + ": stride and dilation must be positive, padding >= 0");
  // A larger output padding would give an output no convolution with these options maps back to x.
  CUAE_CHECK(o.out_pad_h >= 0 && o.out_pad_h < o.stride_h && o.out_pad_w >= 0 && o.out_pad_w < o.stride_w,
             nm + ": " + detail::conv_opts_str(o, true) + ": output padding must lie in [0, stride)");
  const int r = static_cast<int>(wi.shape[1]), sw = static_cast<int>(wi.shape[2]);
  const int h = kern::deconv_out_extent(static_cast<int>(xs[1]), r, o.stride_h, o.pad_h, o.dil_h, o.out_pad_h);
  const int wd = kern::deconv_out_extent(static_cast<int>(xs[2]), sw, o.stride_w, o.pad_w, o.dil_w, o.out_pad_w);
  CUAE_CHECK(h > 0 && wd > 0 && kern::conv_out_extent(h, r, o.stride_h, o.pad_h, o.dil_h) == xs[1] &&
                 kern::conv_out_extent(wd, sw, o.stride_w, o.pad_w, o.dil_w) == xs[2],
             nm + ": a " + detail::i2(r, sw) + " transposed filter (" + detail::conv_opts_str(o, true) +
                 ") cannot map x " + shape_str(xs) + " to a positive size");
  const std::int64_t c = wi.shape[3];
  check_bias_and_slope(nm, b, c, act, slope);
  detail::Node n(&detail::kConv, nm, {x.id, w.id, b.id}, detail::ConvAttrs{act, slope, o, true});
  return add_layer_node(std::move(n), Shape{xs[0], h, wd, c}, act);
}

}  // namespace cuae
