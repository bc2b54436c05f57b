// Pooling and resizing over NHWC values: max pooling (keeping the argmax positions as a second
// output), max unpooling (to a max pool's recorded positions), average pooling and up/down-
// sampling. Every backward is a gather (deterministic, no atomics); a max pool's backward is the
// unpooling op itself.
#include "host/graph/compiler.hpp"
#include "host/graph/nodes/kinds.hpp"
#include "kernels/conv_common.hpp"

namespace cuae {
namespace detail {
namespace {

enum class PoolKind { Max, Avg, Unpool, Upsample };

struct PoolAttrs {
  PoolKind kind = PoolKind::Max;
  Pool2dOptions o;  // Max, Avg, Unpool (the pool's)
  UpsampleMode mode = UpsampleMode::Nearest;
};

std::string i2(int a, int b) { return std::to_string(a) + "x" + std::to_string(b); }

std::string pool_opts_str(const Pool2dOptions& o) {
  return "window " + i2(o.window_h, o.window_w) + ", stride " + i2(o.stride_h, o.stride_w) + ", pad " + i2(o.pad_h, o.pad_w);
}

// The kernel geometry from the larger [n,h,w,c] side (a pool's input, an unpool's output, an
// upsampling's input) and the other side [n,p,q,c].
kern::PoolGeom pool_geom(const Shape& big, const Shape& small, const PoolAttrs& at) {
  kern::PoolGeom g;
  g.n = static_cast<int>(big[0]);
  g.h = static_cast<int>(big[1]), g.w = static_cast<int>(big[2]), g.c = static_cast<int>(big[3]);
  g.p = static_cast<int>(small[1]), g.q = static_cast<int>(small[2]);
  if (at.kind != PoolKind::Upsample) {
    g.r = at.o.window_h, g.s = at.o.window_w;
    g.stride_h = at.o.stride_h, g.stride_w = at.o.stride_w;
    g.pad_h = at.o.pad_h, g.pad_w = at.o.pad_w;
  }
  return g;
}

class PoolDesc final : public NodeDesc {
 public:
  std::string describe(const Node& n) const override {
    const auto& a = n.get<PoolAttrs>();
    return a.kind == PoolKind::Upsample ? upsample_mode_name(a.mode) : pool_opts_str(a.o);
  }

  // Slots: x -> y (+ index for a max pool); an unpool reads the pool's index.
  void forward(Compiler& c, const Node& n) const override {
    const PoolKind kind = n.get<PoolAttrs>().kind;
    Step& s = c.unary(n);
    if (kind == PoolKind::Unpool) c.read(s, "index", n.inputs[1]);
    if (kind == PoolKind::Max) c.write(s, "index", n.outputs[1]);
    s.bind = [&n](const Binder& b) -> Launch {
      const auto& at = n.get<PoolAttrs>();
      const bool un = at.kind == PoolKind::Unpool;
      const kern::PoolGeom g = pool_geom(b.shape(un ? "y" : "x"), b.shape(un ? "x" : "y"), at);
      switch (at.kind) {
        case PoolKind::Max: {
          kern::MaxPool a;
          a.g = g, a.x = b.ptr("x"), a.y = b.ptr("y"), a.index = b.as<std::int32_t>("index");
          return b.launch(&kern::OpTable::max_pool_forward, a);
        }
        case PoolKind::Unpool: {
          kern::MaxUnpool a;
          a.g = g, a.x = b.ptr("x"), a.index = b.as<const std::int32_t>("index"), a.y = b.ptr("y");
          return b.launch(&kern::OpTable::max_unpool, a);
        }
        case PoolKind::Avg: {
          kern::AvgPool a;
          a.g = g, a.x = b.ptr("x"), a.y = b.ptr("y"), a.count_include_pad = at.o.count_include_pad;
          return b.launch(&kern::OpTable::avg_pool_forward, a);
        }
        case PoolKind::Upsample: break;
      }
      kern::Upsample a;
      a.g = g, a.x = b.ptr("x"), a.y = b.ptr("y"), a.kind = to_kern(at.mode);
      return b.launch(&kern::OpTable::upsample_forward, a);
    };
  }

  // Slots: dy (+ the index) -> dx; the geometry comes from dx and dy, x and y are not read.
  void backward(Compiler& c, const Node& n) const override {
    if (!c.needs_grad(n.inputs[0])) return;
    const PoolKind kind = n.get<PoolAttrs>().kind;
    Step& s = c.unary_backward(n);
    if (kind == PoolKind::Max) c.read(s, "index", n.outputs[1]);
    if (kind == PoolKind::Unpool) c.read(s, "index", n.inputs[1]);
    s.bind = [&n](const Binder& b) -> Launch {
      const auto& at = n.get<PoolAttrs>();
      const bool un = at.kind == PoolKind::Unpool;
      const kern::PoolGeom g = pool_geom(b.shape(un ? "dy" : "dx"), b.shape(un ? "dx" : "dy"), at);
      switch (at.kind) {
        case PoolKind::Max: {
          // The pool's backward scatters dy to the recorded positions: the unpooling op.
          kern::MaxUnpool a;
          a.g = g, a.x = b.ptr("dy"), a.index = b.as<const std::int32_t>("index");
          a.y = b.ptr("dx"), a.acc = b.acc("dx");
          return b.launch(&kern::OpTable::max_unpool, a);
        }
        case PoolKind::Unpool: {
          kern::MaxUnpoolBackward a;
          a.g = g, a.dy = b.ptr("dy"), a.index = b.as<const std::int32_t>("index");
          a.dx = b.ptr("dx"), a.acc_dx = b.acc("dx");
          return b.launch(&kern::OpTable::max_unpool_backward, a);
        }
        case PoolKind::Avg: {
          kern::AvgPoolBackward a;
          a.g = g, a.dy = b.ptr("dy"), a.dx = b.ptr("dx"), a.acc_dx = b.acc("dx");
          a.count_include_pad = at.o.count_include_pad;
          return b.launch(&kern::OpTable::avg_pool_backward, a);
        }
        case PoolKind::Upsample: break;
      }
      kern::UpsampleBackward a;
      a.g = g, a.dy = b.ptr("dy"), a.dx = b.ptr("dx"), a.acc_dx = b.acc("dx"), a.kind = to_kern(at.mode);
      return b.launch(&kern::OpTable::upsample_backward, a);
    };
  }
};

const PoolDesc kPool;

Shape pooled_shape(const std::string& nm, const Shape& xs, const Pool2dOptions& o) {
  CUAE_CHECK(xs.size() == 4, nm + ": x " + shape_str(xs) + " must be 4-D [N,H,W,C]");
  CUAE_CHECK(o.window_h > 0 && o.window_w > 0 && o.stride_h > 0 && o.stride_w > 0 && o.pad_h >= 0 && o.pad_w >= 0 &&
                 2 * o.pad_h <= o.window_h && 2 * o.pad_w <= o.window_w,
             nm + ": " + pool_opts_str(o) + ": window and stride must be positive, padding in [0, window/2]");
  const int p = kern::pool_out_extent(static_cast<int>(xs[1]), o.window_h, o.stride_h, o.pad_h);
  const int q = kern::pool_out_extent(static_cast<int>(xs[2]), o.window_w, o.stride_w, o.pad_w);
  CUAE_CHECK(p > 0 && q > 0, nm + ": a " + pool_opts_str(o) + " pool does not fit x " + shape_str(xs));
  return Shape{xs[0], p, q, xs[3]};
}

}  // namespace
}  // namespace detail

Value Graph::max_pool2d(Value x, const Pool2dOptions& o, const std::string& name) {
  const std::string nm = node_name(name, "maxpool");
  const Shape ys = detail::pooled_shape(nm, info(x).shape, o);
  detail::Node n(&detail::kPool, nm, {x.id}, detail::PoolAttrs{detail::PoolKind::Max, o});
  return add_node(std::move(n), {{nm + ".out", ys}, {nm + ".index", ys}});
}

Value Graph::max_unpool2d(Value x, Value pooled, const std::string& name) {
  const std::string nm = node_name(name, "maxunpool");
  const auto& pi = info(pooled);
  const detail::Node* pool = producer(pooled);
  CUAE_CHECK(pool && pool->desc == &detail::kPool && pool->get<detail::PoolAttrs>().kind == detail::PoolKind::Max &&
                 pool->outputs[0] == pooled.id,
             nm + ": \"" + pi.name + "\" is not the output of a max pool");
  const Shape xs = info(x).shape;
  CUAE_CHECK(xs == pi.shape, nm + ": x " + shape_str(xs) + " must have the shape of the pool's output " + shape_str(pi.shape));
  detail::Node n(&detail::kPool, nm, {x.id, pool->outputs[1]},
                 detail::PoolAttrs{detail::PoolKind::Unpool, pool->get<detail::PoolAttrs>().o});
  const Shape ys = values_[static_cast<std::size_t>(pool->inputs[0])].shape;
  return add_node(std::move(n), {{nm + ".out", ys}});
}

Value Graph::avg_pool2d(Value x, const Pool2dOptions& o, const std::string& name) {
  const std::string nm = node_name(name, "avgpool");
  const Shape ys = detail::pooled_shape(nm, info(x).shape, o);
  detail::Node n(&detail::kPool, nm, {x.id}, detail::PoolAttrs{detail::PoolKind::Avg, o});
  return add_node(std::move(n), {{nm + ".out", ys}});
}

Value Graph::upsample2d(Value x, int out_h, int out_w, UpsampleMode mode, const std::string& name) {
  const std::string nm = node_name(name, "upsample");
  const Shape xs = info(x).shape;
  CUAE_CHECK(xs.size() == 4, nm + ": x " + shape_str(xs) + " must be 4-D [N,H,W,C]");
  CUAE_CHECK(out_h > 0 && out_w > 0, nm + ": the output size " + detail::i2(out_h, out_w) + " must be positive");
  detail::Node n(&detail::kPool, nm, {x.id}, detail::PoolAttrs{detail::PoolKind::Upsample, {}, mode});
  return add_node(std::move(n), {{nm + ".out", Shape{xs[0], out_h, out_w, xs[3]}}});
}

}  // namespace cuae
