// The executor: autodiff, memory plan, binding, and the step loop.
//
// Compilation turns the user's forward graph into a schedule of "steps" (one kernel-table call
// each). Training appends the derived backward steps in reverse order. Every step lists the
// buffers it reads and writes; liveness over that list places all activations, gradients and
// workspaces in one arena (host/graph/planner). Parameters, their gradients and the optimizer
// moments are flat buffers with identical layouts, weights (decayed) first and biases after, so
// the optimizer is one launch over [0, n) with decay on [0, n_decay).
#include "cuae/executor.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>

#include "host/graph/planner.hpp"
#include "kernels/conv_common.hpp"
#include "kernels/philox.hpp"
#include "host/runtime/backend.hpp"

namespace cuae {

const char* optimizer_name(OptimizerType t) {
  switch (t) {
    case OptimizerType::SGD: return "sgd";
    case OptimizerType::Adam: return "adam";
    case OptimizerType::AdamW: return "adamw";
  }
  return "?";
}

OptimizerType parse_optimizer(const std::string& s) {
  if (s == "sgd") return OptimizerType::SGD;
  if (s == "adam") return OptimizerType::Adam;
  if (s == "adamw") return OptimizerType::AdamW;
  throw Error("unknown optimizer \"" + s + "\" (expected sgd, adam or adamw)");
}

namespace {

constexpr std::size_t kParamAlignFloats = 64;  // 256 B: vector loads and cuBLASLt alignment
constexpr std::int64_t kLossRing = 1024;       // steps of losses buffered before a forced drain

kern::Act to_kern(Activation a) { return static_cast<kern::Act>(static_cast<int>(a)); }
kern::LossKind to_kern(LossType l) { return static_cast<kern::LossKind>(static_cast<int>(l)); }
kern::OptKind to_kern(OptimizerType o) { return static_cast<kern::OptKind>(static_cast<int>(o)); }
kern::NoiseKind to_kern(NoiseType n) { return static_cast<kern::NoiseKind>(static_cast<int>(n)); }
kern::PenaltyKind to_kern(PenaltyType p) { return static_cast<kern::PenaltyKind>(static_cast<int>(p)); }

kern::UpsampleKind to_kern(UpsampleMode m) { return static_cast<kern::UpsampleKind>(static_cast<int>(m)); }

bool is_scalar_op(Graph::OpKind k) {
  return k == Graph::OpKind::Loss || k == Graph::OpKind::ActivityPenalty || k == Graph::OpKind::Contractive ||
         k == Graph::OpKind::GaussianKL;
}

std::size_t round_up(std::size_t x, std::size_t a) { return (x + a - 1) / a * a; }

std::uint64_t fnv1a(const std::string& s, std::uint64_t h) {
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

}  // namespace

struct Executor::Impl {
  // Where a buffer lives.
  enum class Where { Arena, Param, Grad, Scalar };
  struct Buf {
    std::string name;
    Shape shape;
    std::int64_t numel = 0;
    Where where = Where::Arena;
    std::size_t offset = 0;  // bytes into the arena, floats into the flat/scalar buffers
    bool keep = false;       // live for the whole step (inputs, marked outputs)
  };
  enum class StepKind {
    DenseF, DenseB, ActF, ActB, Loss, CorruptF, DropoutF, DropoutB, KSparseF, KSparseB, Penalty, Contractive,
    ConvF, ConvB, DeconvF, DeconvB, MaxPoolF, MaxPoolB, UnpoolF, UnpoolB, AvgPoolF, AvgPoolB, UpsampleF, UpsampleB,
    ReparamF, ReparamB, GaussKL
  };
  struct Step {
    StepKind kind;
    int node = -1;
    std::vector<int> reads, writes;  // buffer indices
    // DenseB/ActB/Loss: which gradient writes accumulate, in `writes` order.
    std::vector<bool> acc;
    int ws = -1;                     // Penalty (KL) / Contractive / convolutions: workspace buffer
  };

  Graph graph;
  ExecutorOptions opt;
  std::unique_ptr<Backend> be;
  std::vector<Buf> bufs;           // graph values first (same index), then gradients and workspaces
  // A reshape's output (and its gradient) is the same memory as its input: root[b] is the buffer
  // that owns b's memory (b itself for every other buffer). Steps refer to roots only.
  std::vector<int> root;
  std::vector<int> grad_of;        // graph value -> gradient buffer, or -1
  std::vector<Step> steps;
  MemoryReport mem;

  char* arena = nullptr;
  float* params = nullptr;
  float* grads = nullptr;
  float* m = nullptr;
  float* v = nullptr;
  float* scalars = nullptr;
  std::int64_t n_param_floats = 0, n_decay = 0;
  int n_scalars = 0;
  std::vector<int> loss_bufs;      // scalar buffers of the loss terms

  std::vector<std::function<void()>> eval_launches, train_launches;
  // One per bound step whose op resolves plans (GEMMs, convolutions): filled by the step's first
  // launch, reused by every later one (kernels/ops.hpp, OpCache). Stable addresses: the launches
  // hold pointers to them.
  std::vector<std::unique_ptr<kern::OpCache>> caches;
  kern::OpCache* new_cache() {
    caches.push_back(std::make_unique<kern::OpCache>());
    return caches.back().get();
  }
  std::int64_t updates = 0;
  // The step number random ops draw with: the update being computed during train_step, the
  // updates so far during forward. Launches read it when they run.
  std::uint64_t rng_step = 0;
  // Weights of the terms whose weight can change between steps (GaussianKL), by node; launches
  // read them when they run.
  std::vector<float> term_weight;

  float* ring = nullptr;           // pinned host: kLossRing × n_scalars
  std::int64_t ring_pending = 0;   // steps copied into the ring, not yet drained
  std::vector<float> drained;      // forced drains land here

  ~Impl() {
    if (!be) return;
    be->synchronize();
    be->free(arena);
    be->free(params);
    be->free(grads);
    be->free(m);
    be->free(v);
    be->free(scalars);
    be->free_host(ring);
  }

  int root_of(int b) const {
    while (b >= 0 && static_cast<std::size_t>(b) < root.size() && root[static_cast<std::size_t>(b)] != b)
      b = root[static_cast<std::size_t>(b)];
    return b;
  }
  float* ptr(int b) const {
    if (b < 0) return nullptr;
    const Buf& x = bufs[static_cast<std::size_t>(root_of(b))];
    switch (x.where) {
      case Where::Arena: return reinterpret_cast<float*>(arena + x.offset);
      case Where::Param: return params + x.offset;
      case Where::Grad: return grads + x.offset;
      case Where::Scalar: return scalars + x.offset;
    }
    return nullptr;
  }

  int add_buf(const std::string& name, const Shape& shape, Where where) {
    bufs.push_back({name, shape, shape_numel(shape), where, 0, false});
    root.push_back(static_cast<int>(bufs.size()) - 1);
    return static_cast<int>(bufs.size()) - 1;
  }

  // Records a gradient write on step s: the first write to a gradient overwrites it, later ones
  // accumulate (a value used twice), so no gradient is ever zeroed inside a step.
  std::vector<bool> grad_written;
  void write_grad(Step& s, int g) {
    g = root_of(g);
    auto ug = static_cast<std::size_t>(g);
    if (ug >= grad_written.size()) grad_written.resize(ug + 1, false);
    s.writes.push_back(g);
    s.acc.push_back(grad_written[ug]);
    grad_written[ug] = true;
  }
  bool has_grad(int g) const {
    g = root_of(g);
    return g >= 0 && static_cast<std::size_t>(g) < grad_written.size() && grad_written[static_cast<std::size_t>(g)];
  }
  // m, n, k of a dense node.
  void dense_dims(const Graph::Node& n, int& m, int& out, int& k) const {
    const auto& ws = graph.values()[static_cast<std::size_t>(n.inputs[1])].shape;
    const auto& xs = graph.values()[static_cast<std::size_t>(n.inputs[0])].shape;
    m = static_cast<int>(xs[0]);
    k = static_cast<int>(xs[1]);
    out = static_cast<int>(n.w_transposed ? ws[1] : ws[0]);
  }

  // The kernel geometry of a Conv/Deconv node (for a Deconv, of the convolution it transposes) and
  // of a pooling/upsampling node, from the node's input and output shapes.
  kern::ConvGeom conv_geom(const Graph::Node& n) const {
    const auto& vals = graph.values();
    const Shape& xs = vals[static_cast<std::size_t>(n.inputs[0])].shape;
    const Shape& ws = vals[static_cast<std::size_t>(n.inputs[1])].shape;
    const Shape& ys = vals[static_cast<std::size_t>(n.outputs[0])].shape;
    const bool t = n.kind == Graph::OpKind::Deconv;
    const Shape& big = t ? ys : xs;    // convolution input
    const Shape& small = t ? xs : ys;  // convolution output
    kern::ConvGeom g;
    g.n = static_cast<int>(xs[0]);
    g.h = static_cast<int>(big[1]), g.w = static_cast<int>(big[2]), g.c = static_cast<int>(big[3]);
    g.p = static_cast<int>(small[1]), g.q = static_cast<int>(small[2]), g.k = static_cast<int>(small[3]);
    g.r = static_cast<int>(ws[1]), g.s = static_cast<int>(ws[2]);
    g.stride_h = n.conv.stride_h, g.stride_w = n.conv.stride_w;
    g.pad_h = n.conv.pad_h, g.pad_w = n.conv.pad_w;
    g.dil_h = n.conv.dil_h, g.dil_w = n.conv.dil_w;
    return g;
  }
  kern::PoolGeom pool_geom(const Graph::Node& n) const {
    const auto& vals = graph.values();
    // MaxUnpool runs the pool backwards: its output has the pool's input shape.
    const bool un = n.kind == Graph::OpKind::MaxUnpool;
    const Shape& xs = vals[static_cast<std::size_t>(un ? n.outputs[0] : n.inputs[0])].shape;
    const Shape& ys = vals[static_cast<std::size_t>(un ? n.inputs[0] : n.outputs[0])].shape;
    kern::PoolGeom g;
    g.n = static_cast<int>(xs[0]);
    g.h = static_cast<int>(xs[1]), g.w = static_cast<int>(xs[2]), g.c = static_cast<int>(xs[3]);
    g.p = static_cast<int>(ys[1]), g.q = static_cast<int>(ys[2]);
    g.r = n.pool.window_h, g.s = n.pool.window_w;
    g.stride_h = n.pool.stride_h, g.stride_w = n.pool.stride_w;
    g.pad_h = n.pool.pad_h, g.pad_w = n.pool.pad_w;
    return g;
  }
  // A workspace buffer for one convolution pass, sized by the backend (-1 when none is needed).
  int conv_ws(const Graph::Node& n, kern::ConvPass pass, const char* what) {
    std::size_t bytes = 0;
    kern::ConvWorkspace q;
    q.g = conv_geom(n);
    q.pass = pass;
    q.bytes = &bytes;
    be->ops().conv_workspace(be->ctx(), q);
    if (bytes == 0) return -1;
    return add_buf(n.name + what, Shape{static_cast<std::int64_t>((bytes + 3) / 4)}, Where::Arena);
  }

  void compile();
  void derive_backward(const std::vector<bool>& needs_grad);
  void plan();
  void init_params();
  void bind();
  void record_losses();
};

void Executor::Impl::compile() {
  const auto& values = graph.values();
  const auto& nodes = graph.nodes();
  CUAE_CHECK(!nodes.empty(), "the graph has no ops");
  for (const auto& vi : values) {
    const Where w = vi.kind == Graph::ValueKind::Param ? Where::Param
                    : vi.kind == Graph::ValueKind::Scalar ? Where::Scalar
                                                          : Where::Arena;
    add_buf(vi.name, vi.shape, w);
    if (vi.kind == Graph::ValueKind::Input) bufs.back().keep = true;
  }
  for (int o : graph.outputs()) bufs[static_cast<std::size_t>(o)].keep = true;
  grad_of.assign(values.size(), -1);

  // Which values need a gradient: parameters, and anything computed from one.
  std::vector<bool> needs_grad(values.size(), false);
  for (std::size_t i = 0; i < values.size(); ++i) needs_grad[i] = values[i].kind == Graph::ValueKind::Param;
  for (const auto& n : nodes) {
    bool any = false;
    for (int in : n.inputs) any = any || (in >= 0 && needs_grad[static_cast<std::size_t>(in)]);
    // A scalar term ends a path; a corrupted value is data (no gradient flows through it); only a
    // node's first output carries a gradient (the others are GELU's pre-activation or k-sparse's
    // kept indices).
    if (is_scalar_op(n.kind) || n.kind == Graph::OpKind::Corrupt) continue;
    needs_grad[static_cast<std::size_t>(n.outputs[0])] = any;
  }
  // A reshape is a second name for its input's memory, and so is its gradient.
  for (const auto& n : nodes) {
    if (n.kind != Graph::OpKind::Reshape) continue;
    root[static_cast<std::size_t>(n.outputs[0])] = root_of(n.inputs[0]);
  }
  if (opt.training) {
    for (std::size_t i = 0; i < values.size(); ++i)
      if (needs_grad[i])
        grad_of[i] = add_buf("grad(" + values[i].name + ")", values[i].shape,
                             values[i].kind == Graph::ValueKind::Param ? Where::Grad : Where::Arena);
    for (const auto& n : nodes) {
      if (n.kind != Graph::OpKind::Reshape) continue;
      const int gy = grad_of[static_cast<std::size_t>(n.outputs[0])];
      if (gy >= 0) root[static_cast<std::size_t>(gy)] = root_of(grad_of[static_cast<std::size_t>(n.inputs[0])]);
    }
  }
  for (std::size_t i = 0; i < bufs.size(); ++i)
    if (bufs[i].keep) bufs[static_cast<std::size_t>(root_of(static_cast<int>(i)))].keep = true;

  // Forward steps in graph order. A loss step also writes its prediction's gradient (fused).
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    const auto& n = nodes[i];
    Step s;
    s.node = static_cast<int>(i);
    switch (n.kind) {
      case Graph::OpKind::Dense:
        s.kind = StepKind::DenseF;
        for (int in : n.inputs)
          if (in >= 0) s.reads.push_back(in);
        s.writes = n.outputs;
        break;
      case Graph::OpKind::Activation:
        s.kind = StepKind::ActF;
        s.reads = n.inputs;
        s.writes = n.outputs;
        break;
      case Graph::OpKind::Loss:
        s.kind = StepKind::Loss;
        s.reads = n.inputs;
        s.writes = n.outputs;
        s.acc.push_back(false);  // the scalar is always written
        if (n.objective) loss_bufs.push_back(n.outputs[0]);
        if (opt.training && n.objective && grad_of[static_cast<std::size_t>(n.inputs[0])] >= 0)
          write_grad(s, grad_of[static_cast<std::size_t>(n.inputs[0])]);
        break;
      case Graph::OpKind::Corrupt:
      case Graph::OpKind::Dropout:
      case Graph::OpKind::KSparse:
        s.kind = n.kind == Graph::OpKind::Corrupt ? StepKind::CorruptF
                 : n.kind == Graph::OpKind::Dropout ? StepKind::DropoutF
                                                    : StepKind::KSparseF;
        s.reads = n.inputs;
        s.writes = n.outputs;
        break;
      case Graph::OpKind::Conv:
      case Graph::OpKind::Deconv: {
        const bool t = n.kind == Graph::OpKind::Deconv;
        s.kind = t ? StepKind::DeconvF : StepKind::ConvF;
        for (int in : n.inputs)
          if (in >= 0) s.reads.push_back(in);
        s.writes = n.outputs;
        s.ws = conv_ws(n, t ? kern::ConvPass::DeconvForward : kern::ConvPass::ConvForward, ".ws");
        if (s.ws >= 0) s.writes.push_back(s.ws);
        break;
      }
      case Graph::OpKind::MaxPool:
      case Graph::OpKind::AvgPool:
      case Graph::OpKind::Upsample:
      case Graph::OpKind::MaxUnpool:
        s.kind = n.kind == Graph::OpKind::MaxPool   ? StepKind::MaxPoolF
                 : n.kind == Graph::OpKind::AvgPool ? StepKind::AvgPoolF
                 : n.kind == Graph::OpKind::Upsample ? StepKind::UpsampleF
                                                     : StepKind::UnpoolF;
        s.reads = n.inputs;
        s.writes = n.outputs;
        break;
      case Graph::OpKind::Reshape:
        continue;  // no step: the output is the input's memory
      case Graph::OpKind::Reparam:
        s.kind = StepKind::ReparamF;
        s.reads = n.inputs;
        s.writes = n.outputs;
        break;
      case Graph::OpKind::GaussianKL:
        // Like the penalties: value and gradient at the forward position.
        s.kind = StepKind::GaussKL;
        s.reads = n.inputs;
        s.writes = n.outputs;
        s.acc.push_back(false);
        if (n.objective) loss_bufs.push_back(n.outputs[0]);
        if (opt.training && n.objective && grad_of[static_cast<std::size_t>(n.inputs[0])] >= 0)
          write_grad(s, grad_of[static_cast<std::size_t>(n.inputs[0])]);
        break;
      case Graph::OpKind::ActivityPenalty:
      case Graph::OpKind::Contractive: {
        // A penalty writes its scalar, a workspace, and (training, objective) its gradients, all at
        // its forward position: the gradient of h is complete before h's producer runs backward.
        const bool kl = n.kind == Graph::OpKind::ActivityPenalty && n.penalty == PenaltyType::KL;
        s.kind = n.kind == Graph::OpKind::Contractive ? StepKind::Contractive : StepKind::Penalty;
        s.reads = n.inputs;
        s.writes = n.outputs;
        s.acc.push_back(false);
        const auto& hs = values[static_cast<std::size_t>(n.inputs[0])].shape;
        if (kl || s.kind == StepKind::Contractive) {
          s.ws = add_buf(n.name + ".ws", Shape{kl ? hs[1] : 2 * hs[1]}, Where::Arena);
          s.writes.push_back(s.ws);
          s.acc.push_back(false);
        }
        if (n.objective) loss_bufs.push_back(n.outputs[0]);
        if (opt.training && n.objective) {
          for (int in : n.inputs)
            if (grad_of[static_cast<std::size_t>(in)] >= 0) write_grad(s, grad_of[static_cast<std::size_t>(in)]);
        }
        break;
      }
    }
    steps.push_back(std::move(s));
  }
  if (opt.training) {
    CUAE_CHECK(!loss_bufs.empty(), "training needs at least one loss term in the graph");
    derive_backward(needs_grad);
    // A parameter no loss depends on keeps a zero gradient (zeroed once at allocation).
  }
}

// Reverse mode: walk the forward nodes backwards; a node whose output received any gradient
// contribution emits its backward step. All consumers of a value come after its producer in graph
// order, so when the producer is reached its output gradient is complete.
void Executor::Impl::derive_backward(const std::vector<bool>& needs_grad) {
  const auto& nodes = graph.nodes();
  for (int i = static_cast<int>(nodes.size()) - 1; i >= 0; --i) {
    const auto& n = nodes[static_cast<std::size_t>(i)];
    if (is_scalar_op(n.kind) || n.kind == Graph::OpKind::Corrupt) continue;
    const int y = n.outputs[0];
    const int gy = grad_of[static_cast<std::size_t>(y)];
    if (!has_grad(gy)) continue;
    Step s;
    s.node = i;
    if (n.kind == Graph::OpKind::Dense) {
      s.kind = StepKind::DenseB;
      const int x = n.inputs[0], w = n.inputs[1], b = n.inputs[2];
      s.reads = {gy, y, x, w};
      if (n.outputs.size() > 1) s.reads.push_back(n.outputs[1]);
      // dZ workspace: lives only during this step.
      const int dz = add_buf(n.name + ".dz", graph.values()[static_cast<std::size_t>(y)].shape, Where::Arena);
      s.writes.push_back(dz);
      s.acc.push_back(false);
      if (needs_grad[static_cast<std::size_t>(x)]) write_grad(s, grad_of[static_cast<std::size_t>(x)]);
      write_grad(s, grad_of[static_cast<std::size_t>(w)]);
      if (b >= 0) write_grad(s, grad_of[static_cast<std::size_t>(b)]);
    } else if (n.kind == Graph::OpKind::Activation) {
      s.kind = StepKind::ActB;
      const int x = n.inputs[0];
      if (!needs_grad[static_cast<std::size_t>(x)]) continue;
      s.reads = {gy, y};
      write_grad(s, grad_of[static_cast<std::size_t>(x)]);
    } else if (n.kind == Graph::OpKind::Dropout) {
      s.kind = StepKind::DropoutB;  // the mask is drawn again from (seed, step)
      const int x = n.inputs[0];
      if (!needs_grad[static_cast<std::size_t>(x)]) continue;
      s.reads = {gy};
      write_grad(s, grad_of[static_cast<std::size_t>(x)]);
    } else if (n.kind == Graph::OpKind::KSparse) {
      s.kind = StepKind::KSparseB;
      const int x = n.inputs[0];
      if (!needs_grad[static_cast<std::size_t>(x)]) continue;
      s.reads = {gy, n.outputs[1]};
      write_grad(s, grad_of[static_cast<std::size_t>(x)]);
    } else if (n.kind == Graph::OpKind::Conv || n.kind == Graph::OpKind::Deconv) {
      const bool t = n.kind == Graph::OpKind::Deconv;
      s.kind = t ? StepKind::DeconvB : StepKind::ConvB;
      const int x = n.inputs[0], w = n.inputs[1], b = n.inputs[2];
      s.reads = {gy, y, x, w};
      if (n.outputs.size() > 1) s.reads.push_back(n.outputs[1]);
      const int dz = add_buf(n.name + ".dz", graph.values()[static_cast<std::size_t>(y)].shape, Where::Arena);
      s.writes.push_back(dz);
      s.acc.push_back(false);
      s.ws = conv_ws(n, t ? kern::ConvPass::DeconvBackward : kern::ConvPass::ConvBackward, ".bws");
      if (s.ws >= 0) {
        s.writes.push_back(s.ws);
        s.acc.push_back(false);
      }
      if (needs_grad[static_cast<std::size_t>(x)]) write_grad(s, grad_of[static_cast<std::size_t>(x)]);
      write_grad(s, grad_of[static_cast<std::size_t>(w)]);
      if (b >= 0) write_grad(s, grad_of[static_cast<std::size_t>(b)]);
    } else if (n.kind == Graph::OpKind::Reparam) {
      s.kind = StepKind::ReparamB;  // ε is drawn again from (seed, step)
      const int x = n.inputs[0];
      if (!needs_grad[static_cast<std::size_t>(x)]) continue;
      CUAE_CHECK(n.sample, n.name + ": a training graph must sample (reparameterize with sample = true)");
      s.reads = {gy, x};
      write_grad(s, grad_of[static_cast<std::size_t>(x)]);
    } else if (n.kind == Graph::OpKind::MaxPool || n.kind == Graph::OpKind::AvgPool ||
               n.kind == Graph::OpKind::Upsample || n.kind == Graph::OpKind::MaxUnpool) {
      s.kind = n.kind == Graph::OpKind::MaxPool   ? StepKind::MaxPoolB
               : n.kind == Graph::OpKind::AvgPool ? StepKind::AvgPoolB
               : n.kind == Graph::OpKind::Upsample ? StepKind::UpsampleB
                                                   : StepKind::UnpoolB;
      const int x = n.inputs[0];
      if (!needs_grad[static_cast<std::size_t>(x)]) continue;
      s.reads = {gy};
      if (n.kind == Graph::OpKind::MaxPool) s.reads.push_back(n.outputs[1]);
      if (n.kind == Graph::OpKind::MaxUnpool) s.reads.push_back(n.inputs[1]);
      write_grad(s, grad_of[static_cast<std::size_t>(x)]);
    } else {
      continue;
    }
    steps.push_back(std::move(s));
  }
}

void Executor::Impl::plan() {
  // Steps refer to the memory they touch: a reshape's buffers by their root.
  for (Step& st : steps) {
    for (int& b : st.reads) b = root_of(b);
    for (int& b : st.writes) b = root_of(b);
  }
  // Lifetimes over step positions.
  const int end = static_cast<int>(steps.size()) - 1;
  std::vector<int> first(bufs.size(), -1), last(bufs.size(), -1);
  for (int p = 0; p <= end; ++p) {
    const Step& s = steps[static_cast<std::size_t>(p)];
    for (int b : s.writes) {
      auto ub = static_cast<std::size_t>(b);
      if (first[ub] < 0) first[ub] = p;
      last[ub] = std::max(last[ub], p);
    }
    for (int b : s.reads) {
      auto ub = static_cast<std::size_t>(b);
      if (first[ub] < 0) first[ub] = p;  // read before written: an input
      last[ub] = std::max(last[ub], p);
    }
  }
  std::vector<graph::PlanItem> items;
  std::vector<int> item_buf;
  std::size_t param_floats = 0, decay_floats = 0;
  // Parameters: decayed ones first so that decay applies to one prefix of the flat buffer.
  const auto& values = graph.values();
  for (int pass = 0; pass < 2; ++pass) {
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (values[i].kind != Graph::ValueKind::Param || values[i].decay != (pass == 0)) continue;
      bufs[i].offset = param_floats;
      if (grad_of[i] >= 0) bufs[static_cast<std::size_t>(grad_of[i])].offset = param_floats;
      param_floats += round_up(static_cast<std::size_t>(bufs[i].numel), kParamAlignFloats);
    }
    if (pass == 0) decay_floats = param_floats;
  }
  n_param_floats = static_cast<std::int64_t>(param_floats);
  n_decay = static_cast<std::int64_t>(decay_floats);
  for (std::size_t i = 0; i < bufs.size(); ++i) {
    Buf& b = bufs[i];
    if (b.where == Where::Scalar) {
      b.offset = static_cast<std::size_t>(n_scalars);
      n_scalars += static_cast<int>(b.numel);
      continue;
    }
    if (b.where != Where::Arena || root_of(static_cast<int>(i)) != static_cast<int>(i)) continue;
    mem.naive_bytes += round_up(static_cast<std::size_t>(b.numel) * sizeof(float), 256);
    int f = first[i], l = last[i];
    if (f < 0) f = l = 0;  // never touched by a step (e.g. an unused input)
    if (b.keep) f = 0, l = end;
    items.push_back({static_cast<std::size_t>(b.numel) * sizeof(float), f, l});
    item_buf.push_back(static_cast<int>(i));
  }
  const graph::ArenaPlan ap = graph::plan_arena(items);
  // Checked on every build (quadratic in the values, microseconds for real models): a planner bug
  // must never turn into two live tensors sharing memory.
  CUAE_CHECK(graph::plan_is_valid(items, ap), "internal error: the memory plan overlaps two live buffers");
  for (std::size_t k = 0; k < items.size(); ++k) bufs[static_cast<std::size_t>(item_buf[k])].offset = ap.offsets[k];
  mem.arena_bytes = ap.peak;
  mem.values_planned = static_cast<int>(items.size());
  mem.param_bytes = param_floats * sizeof(float);
  const int copies = opt.training ? (opt.optimizer.type == OptimizerType::SGD ? 2 : 3) : 0;
  mem.state_bytes = mem.param_bytes * static_cast<std::size_t>(copies);
}

void Executor::Impl::init_params() {
  std::vector<float> host(static_cast<std::size_t>(n_param_floats), 0.0f);
  const auto& values = graph.values();
  for (std::size_t i = 0; i < values.size(); ++i) {
    const auto& vi = values[i];
    if (vi.kind != Graph::ValueKind::Param) continue;
    // Seeded by (seed, name): adding a layer does not change the others' initial values.
    std::mt19937_64 rng(fnv1a(vi.name, 0xcbf29ce484222325ull ^ (opt.seed * 0x9e3779b97f4a7c15ull)));
    float* dst = host.data() + bufs[i].offset;
    const auto n = static_cast<std::size_t>(bufs[i].numel);
    switch (vi.init.kind) {
      case Init::Kind::Zeros: break;
      case Init::Kind::Constant: std::fill(dst, dst + n, vi.init.a); break;
      case Init::Kind::Uniform: {
        std::uniform_real_distribution<float> d(-vi.init.a, vi.init.a);
        for (std::size_t j = 0; j < n; ++j) dst[j] = d(rng);
        break;
      }
      case Init::Kind::Normal: {
        std::normal_distribution<float> d(0.0f, vi.init.a);
        for (std::size_t j = 0; j < n; ++j) dst[j] = d(rng);
        break;
      }
    }
  }
  be->copy_to_device(params, host.data(), host.size() * sizeof(float));
}

void Executor::Impl::bind() {
  const auto& nodes = graph.nodes();
  term_weight.resize(nodes.size());
  for (std::size_t i = 0; i < nodes.size(); ++i) term_weight[i] = nodes[i].weight;
  const kern::OpTable* ops = &be->ops();
  const kern::Context* ctx = &be->ctx();
  const std::uint64_t* step_now = &rng_step;
  // Each random node draws its own stream: the run's seed mixed with a hash of the node's name.
  auto node_seed = [&](const Graph::Node& n) {
    return kern::philox_mix_seed(opt.seed, fnv1a(n.name, 0xcbf29ce484222325ull));
  };
  for (int p = 0; p < static_cast<int>(steps.size()); ++p) {
    const Step& s = steps[static_cast<std::size_t>(p)];
    const auto& n = nodes[static_cast<std::size_t>(s.node)];
    switch (s.kind) {
      case StepKind::DenseF: {
        kern::DenseForward a;
        dense_dims(n, a.m, a.n, a.k);
        a.x = ptr(n.inputs[0]);
        a.w = ptr(n.inputs[1]);
        a.b = ptr(n.inputs[2]);
        a.y = ptr(n.outputs[0]);
        a.z = n.outputs.size() > 1 ? ptr(n.outputs[1]) : nullptr;
        a.w_kn = n.w_transposed;
        a.act = to_kern(n.act);
        a.slope = n.slope;
        a.cache = new_cache();
        auto f = [ops, ctx, a] { ops->dense_forward(*ctx, a); };
        eval_launches.push_back(f);
        train_launches.push_back(f);
        break;
      }
      case StepKind::ActF: {
        kern::Activation a;
        a.x = ptr(n.inputs[0]);
        a.y = ptr(n.outputs[0]);
        a.count = bufs[static_cast<std::size_t>(n.outputs[0])].numel;
        a.act = to_kern(n.act);
        a.slope = n.slope;
        auto f = [ops, ctx, a] { ops->activation_forward(*ctx, a); };
        eval_launches.push_back(f);
        train_launches.push_back(f);
        break;
      }
      case StepKind::Loss: {
        const auto& ps = graph.values()[static_cast<std::size_t>(n.inputs[0])].shape;
        kern::Loss a;
        a.pred = ptr(n.inputs[0]);
        a.target = ptr(n.inputs[1]);
        a.loss = ptr(n.outputs[0]);
        a.count = shape_numel(ps);
        const double denom = n.reduction == Reduction::Mean ? static_cast<double>(a.count) : static_cast<double>(ps[0]);
        a.scale = static_cast<float>(n.weight / denom);
        a.kind = to_kern(n.loss);
        eval_launches.push_back([ops, ctx, a] { ops->loss(*ctx, a); });
        if (s.writes.size() > 1) {
          a.grad = ptr(s.writes[1]);
          a.acc_grad = s.acc[1];
        }
        train_launches.push_back([ops, ctx, a] { ops->loss(*ctx, a); });
        break;
      }
      case StepKind::DenseB: {
        kern::DenseBackward a;
        dense_dims(n, a.m, a.n, a.k);
        a.dy = ptr(s.reads[0]);
        a.y = ptr(n.outputs[0]);
        a.z = n.outputs.size() > 1 ? ptr(n.outputs[1]) : nullptr;
        a.x = ptr(n.inputs[0]);
        a.w = ptr(n.inputs[1]);
        a.dz = ptr(s.writes[0]);
        // writes: dz, [dx], dw, [db] — match them up by buffer identity.
        const int gx = root_of(grad_of[static_cast<std::size_t>(n.inputs[0])]);
        const int gw = root_of(grad_of[static_cast<std::size_t>(n.inputs[1])]);
        const int gb = n.inputs[2] >= 0 ? root_of(grad_of[static_cast<std::size_t>(n.inputs[2])]) : -1;
        for (std::size_t k = 1; k < s.writes.size(); ++k) {
          const int b = s.writes[k];
          if (b == gx) a.dx = ptr(b), a.acc_dx = s.acc[k];
          else if (b == gw) a.dw = ptr(b), a.acc_dw = s.acc[k];
          else if (b == gb) a.db = ptr(b), a.acc_db = s.acc[k];
        }
        a.w_kn = n.w_transposed;
        a.act = to_kern(n.act);
        a.slope = n.slope;
        a.cache = new_cache();
        train_launches.push_back([ops, ctx, a] { ops->dense_backward(*ctx, a); });
        break;
      }
      case StepKind::CorruptF: {
        kern::Corrupt a;
        a.x = ptr(n.inputs[0]);
        a.y = ptr(n.outputs[0]);
        a.count = bufs[static_cast<std::size_t>(n.outputs[0])].numel;
        a.kind = to_kern(n.noise);
        a.level = n.level;
        a.lo = 0.0f;
        a.hi = 1.0f;
        a.seed = node_seed(n);
        auto f = [ops, ctx, a, step_now]() mutable {
          a.step = *step_now;
          ops->corrupt(*ctx, a);
        };
        eval_launches.push_back(f);
        train_launches.push_back(f);
        break;
      }
      case StepKind::DropoutF: {
        kern::Dropout a;
        a.x = ptr(n.inputs[0]);
        a.y = ptr(n.outputs[0]);
        a.count = bufs[static_cast<std::size_t>(n.outputs[0])].numel;
        a.p = n.level;
        a.seed = node_seed(n);
        auto f = [ops, ctx, a, step_now]() mutable {
          a.step = *step_now;
          ops->dropout_forward(*ctx, a);
        };
        eval_launches.push_back(f);
        train_launches.push_back(f);
        break;
      }
      case StepKind::DropoutB: {
        kern::DropoutBackward a;
        a.dy = ptr(s.reads[0]);
        a.dx = ptr(s.writes[0]);
        a.acc_dx = s.acc[0];
        a.count = bufs[static_cast<std::size_t>(n.outputs[0])].numel;
        a.p = n.level;
        a.seed = node_seed(n);
        train_launches.push_back([ops, ctx, a, step_now]() mutable {
          a.step = *step_now;
          ops->dropout_backward(*ctx, a);
        });
        break;
      }
      case StepKind::KSparseF: {
        const auto& xs = bufs[static_cast<std::size_t>(n.inputs[0])].shape;
        kern::KSparse a;
        a.x = ptr(n.inputs[0]);
        a.y = ptr(n.outputs[0]);
        a.index = reinterpret_cast<std::int32_t*>(ptr(n.outputs[1]));
        a.m = static_cast<int>(xs[0]);
        a.n = static_cast<int>(xs[1]);
        a.k = n.k;
        auto f = [ops, ctx, a] { ops->ksparse_forward(*ctx, a); };
        eval_launches.push_back(f);
        train_launches.push_back(f);
        break;
      }
      case StepKind::KSparseB: {
        const auto& xs = bufs[static_cast<std::size_t>(n.inputs[0])].shape;
        kern::KSparseBackward a;
        a.dy = ptr(s.reads[0]);
        a.index = reinterpret_cast<const std::int32_t*>(ptr(s.reads[1]));
        a.dx = ptr(s.writes[0]);
        a.acc_dx = s.acc[0];
        a.m = static_cast<int>(xs[0]);
        a.n = static_cast<int>(xs[1]);
        a.k = n.k;
        train_launches.push_back([ops, ctx, a] { ops->ksparse_backward(*ctx, a); });
        break;
      }
      case StepKind::Penalty: {
        const auto& hs = bufs[static_cast<std::size_t>(n.inputs[0])].shape;
        kern::ActivityPenalty a;
        a.h = ptr(n.inputs[0]);
        a.loss = ptr(n.outputs[0]);
        a.rho_hat = ptr(s.ws);
        a.m = static_cast<int>(hs[0]);
        a.n = static_cast<int>(hs[1]);
        a.kind = to_kern(n.penalty);
        a.weight = n.weight;
        a.rho = n.penalty == PenaltyType::KL ? n.level : 0.05f;
        eval_launches.push_back([ops, ctx, a] { ops->activity_penalty(*ctx, a); });
        const int gh = root_of(grad_of[static_cast<std::size_t>(n.inputs[0])]);
        for (std::size_t k = 0; k < s.writes.size(); ++k)
          if (s.writes[k] == gh && gh >= 0) a.grad = ptr(gh), a.acc_grad = s.acc[k];
        train_launches.push_back([ops, ctx, a] { ops->activity_penalty(*ctx, a); });
        break;
      }
      case StepKind::Contractive: {
        const auto& hs = bufs[static_cast<std::size_t>(n.inputs[0])].shape;
        const auto& ws = bufs[static_cast<std::size_t>(n.inputs[1])].shape;
        kern::ContractivePenalty a;
        a.h = ptr(n.inputs[0]);
        a.w = ptr(n.inputs[1]);
        a.loss = ptr(n.outputs[0]);
        a.ws = ptr(s.ws);
        a.m = static_cast<int>(hs[0]);
        a.n = static_cast<int>(hs[1]);
        a.k = static_cast<int>(ws[1]);
        a.act = to_kern(n.act);
        a.slope = n.slope;
        a.weight = n.weight;
        eval_launches.push_back([ops, ctx, a] { ops->contractive_penalty(*ctx, a); });
        const int gh = root_of(grad_of[static_cast<std::size_t>(n.inputs[0])]);
        const int gw = root_of(grad_of[static_cast<std::size_t>(n.inputs[1])]);
        for (std::size_t k = 0; k < s.writes.size(); ++k) {
          if (s.writes[k] == gh && gh >= 0) a.grad_h = ptr(gh), a.acc_grad_h = s.acc[k];
          if (s.writes[k] == gw && gw >= 0) a.grad_w = ptr(gw), a.acc_grad_w = s.acc[k];
        }
        train_launches.push_back([ops, ctx, a] { ops->contractive_penalty(*ctx, a); });
        break;
      }
      case StepKind::ConvF:
      case StepKind::DeconvF: {
        // Both carry the same fields; one lambda per kind keeps the argument struct typed.
        auto fill = [&](auto& a) {
          a.g = conv_geom(n);
          a.x = ptr(n.inputs[0]);
          a.w = ptr(n.inputs[1]);
          a.b = ptr(n.inputs[2]);
          a.y = ptr(n.outputs[0]);
          a.z = n.outputs.size() > 1 ? ptr(n.outputs[1]) : nullptr;
          a.ws = s.ws >= 0 ? ptr(s.ws) : nullptr;
          a.ws_bytes = s.ws >= 0 ? static_cast<std::size_t>(bufs[static_cast<std::size_t>(s.ws)].numel) * sizeof(float) : 0;
          a.act = to_kern(n.act);
          a.slope = n.slope;
          a.cache = new_cache();
        };
        std::function<void()> f;
        if (s.kind == StepKind::ConvF) {
          kern::ConvForward a;
          fill(a);
          f = [ops, ctx, a] { ops->conv2d_forward(*ctx, a); };
        } else {
          kern::DeconvForward a;
          fill(a);
          f = [ops, ctx, a] { ops->deconv2d_forward(*ctx, a); };
        }
        eval_launches.push_back(f);
        train_launches.push_back(f);
        break;
      }
      case StepKind::ConvB:
      case StepKind::DeconvB: {
        auto fill = [&](auto& a) {
          a.g = conv_geom(n);
          a.dy = ptr(s.reads[0]);
          a.y = ptr(n.outputs[0]);
          a.z = n.outputs.size() > 1 ? ptr(n.outputs[1]) : nullptr;
          a.x = ptr(n.inputs[0]);
          a.w = ptr(n.inputs[1]);
          a.dz = ptr(s.writes[0]);
          a.ws = s.ws >= 0 ? ptr(s.ws) : nullptr;
          a.ws_bytes = s.ws >= 0 ? static_cast<std::size_t>(bufs[static_cast<std::size_t>(s.ws)].numel) * sizeof(float) : 0;
          const int gx = root_of(grad_of[static_cast<std::size_t>(n.inputs[0])]);
          const int gw = root_of(grad_of[static_cast<std::size_t>(n.inputs[1])]);
          const int gb = n.inputs[2] >= 0 ? root_of(grad_of[static_cast<std::size_t>(n.inputs[2])]) : -1;
          for (std::size_t k = 1; k < s.writes.size(); ++k) {
            const int b = s.writes[k];
            if (b == s.ws) continue;
            if (b == gx) a.dx = ptr(b), a.acc_dx = s.acc[k];
            else if (b == gw) a.dw = ptr(b), a.acc_dw = s.acc[k];
            else if (b == gb) a.db = ptr(b), a.acc_db = s.acc[k];
          }
          a.act = to_kern(n.act);
          a.slope = n.slope;
          a.cache = new_cache();
        };
        if (s.kind == StepKind::ConvB) {
          kern::ConvBackward a;
          fill(a);
          train_launches.push_back([ops, ctx, a] { ops->conv2d_backward(*ctx, a); });
        } else {
          kern::DeconvBackward a;
          fill(a);
          train_launches.push_back([ops, ctx, a] { ops->deconv2d_backward(*ctx, a); });
        }
        break;
      }
      case StepKind::MaxPoolF: {
        kern::MaxPool a;
        a.g = pool_geom(n);
        a.x = ptr(n.inputs[0]);
        a.y = ptr(n.outputs[0]);
        a.index = reinterpret_cast<std::int32_t*>(ptr(n.outputs[1]));
        auto f = [ops, ctx, a] { ops->max_pool_forward(*ctx, a); };
        eval_launches.push_back(f);
        train_launches.push_back(f);
        break;
      }
      case StepKind::MaxPoolB: {
        // The pool's backward scatters dy to the recorded positions: the unpooling op.
        kern::MaxUnpool a;
        a.g = pool_geom(n);
        a.x = ptr(s.reads[0]);
        a.index = reinterpret_cast<const std::int32_t*>(ptr(s.reads[1]));
        a.y = ptr(s.writes[0]);
        a.acc = s.acc[0];
        train_launches.push_back([ops, ctx, a] { ops->max_unpool(*ctx, a); });
        break;
      }
      case StepKind::UnpoolF: {
        kern::MaxUnpool a;
        a.g = pool_geom(n);
        a.x = ptr(n.inputs[0]);
        a.index = reinterpret_cast<const std::int32_t*>(ptr(n.inputs[1]));
        a.y = ptr(n.outputs[0]);
        auto f = [ops, ctx, a] { ops->max_unpool(*ctx, a); };
        eval_launches.push_back(f);
        train_launches.push_back(f);
        break;
      }
      case StepKind::UnpoolB: {
        kern::MaxUnpoolBackward a;
        a.g = pool_geom(n);
        a.dy = ptr(s.reads[0]);
        a.index = reinterpret_cast<const std::int32_t*>(ptr(s.reads[1]));
        a.dx = ptr(s.writes[0]);
        a.acc_dx = s.acc[0];
        train_launches.push_back([ops, ctx, a] { ops->max_unpool_backward(*ctx, a); });
        break;
      }
      case StepKind::AvgPoolF: {
        kern::AvgPool a;
        a.g = pool_geom(n);
        a.x = ptr(n.inputs[0]);
        a.y = ptr(n.outputs[0]);
        a.count_include_pad = n.pool.count_include_pad;
        auto f = [ops, ctx, a] { ops->avg_pool_forward(*ctx, a); };
        eval_launches.push_back(f);
        train_launches.push_back(f);
        break;
      }
      case StepKind::AvgPoolB: {
        kern::AvgPoolBackward a;
        a.g = pool_geom(n);
        a.dy = ptr(s.reads[0]);
        a.dx = ptr(s.writes[0]);
        a.acc_dx = s.acc[0];
        a.count_include_pad = n.pool.count_include_pad;
        train_launches.push_back([ops, ctx, a] { ops->avg_pool_backward(*ctx, a); });
        break;
      }
      case StepKind::UpsampleF: {
        kern::Upsample a;
        a.g = pool_geom(n);
        a.x = ptr(n.inputs[0]);
        a.y = ptr(n.outputs[0]);
        a.kind = to_kern(n.upsample);
        auto f = [ops, ctx, a] { ops->upsample_forward(*ctx, a); };
        eval_launches.push_back(f);
        train_launches.push_back(f);
        break;
      }
      case StepKind::UpsampleB: {
        kern::UpsampleBackward a;
        a.g = pool_geom(n);
        a.dy = ptr(s.reads[0]);
        a.dx = ptr(s.writes[0]);
        a.acc_dx = s.acc[0];
        a.kind = to_kern(n.upsample);
        train_launches.push_back([ops, ctx, a] { ops->upsample_backward(*ctx, a); });
        break;
      }
      case StepKind::ReparamF: {
        const auto& zs = bufs[static_cast<std::size_t>(n.outputs[0])].shape;
        kern::Reparameterize a;
        a.stats = ptr(n.inputs[0]);
        a.z = ptr(n.outputs[0]);
        a.m = static_cast<int>(zs[0]);
        a.d = static_cast<int>(zs[1]);
        a.sample = n.sample;
        a.seed = node_seed(n);
        auto f = [ops, ctx, a, step_now]() mutable {
          a.step = *step_now;
          ops->reparameterize(*ctx, a);
        };
        eval_launches.push_back(f);
        train_launches.push_back(f);
        break;
      }
      case StepKind::ReparamB: {
        const auto& zs = bufs[static_cast<std::size_t>(n.outputs[0])].shape;
        kern::ReparameterizeBackward a;
        a.dz = ptr(s.reads[0]);
        a.stats = ptr(n.inputs[0]);
        a.dstats = ptr(s.writes[0]);
        a.acc = s.acc[0];
        a.m = static_cast<int>(zs[0]);
        a.d = static_cast<int>(zs[1]);
        a.seed = node_seed(n);
        train_launches.push_back([ops, ctx, a, step_now]() mutable {
          a.step = *step_now;
          ops->reparameterize_backward(*ctx, a);
        });
        break;
      }
      case StepKind::GaussKL: {
        const auto& ss = bufs[static_cast<std::size_t>(n.inputs[0])].shape;
        kern::GaussianKL a;
        a.stats = ptr(n.inputs[0]);
        a.loss = ptr(n.outputs[0]);
        a.m = static_cast<int>(ss[0]);
        a.d = static_cast<int>(ss[1] / 2);
        const float* w = &term_weight[static_cast<std::size_t>(s.node)];
        eval_launches.push_back([ops, ctx, a, w]() mutable {
          a.weight = *w;
          ops->gaussian_kl(*ctx, a);
        });
        const int gs = root_of(grad_of[static_cast<std::size_t>(n.inputs[0])]);
        for (std::size_t k = 0; k < s.writes.size(); ++k)
          if (s.writes[k] == gs && gs >= 0) a.grad = ptr(gs), a.acc_grad = s.acc[k];
        train_launches.push_back([ops, ctx, a, w]() mutable {
          a.weight = *w;
          ops->gaussian_kl(*ctx, a);
        });
        break;
      }
      case StepKind::ActB: {
        kern::ActivationBackward a;
        a.dy = ptr(s.reads[0]);
        a.y = ptr(s.reads[1]);
        a.dx = ptr(s.writes[0]);
        a.acc_dx = s.acc[0];
        a.count = bufs[static_cast<std::size_t>(n.outputs[0])].numel;
        a.act = to_kern(n.act);
        a.slope = n.slope;
        train_launches.push_back([ops, ctx, a] { ops->activation_backward(*ctx, a); });
        break;
      }
    }
  }
}

void Executor::Impl::record_losses() {
  if (n_scalars == 0) return;
  if (ring_pending == kLossRing) {
    // The ring is full: move it to the host list (a synchronisation between steps, every 1024).
    be->synchronize();
    for (std::int64_t s = 0; s < ring_pending; ++s) {
      float sum = 0.0f;
      for (int l : loss_bufs) sum += ring[s * n_scalars + static_cast<std::int64_t>(bufs[static_cast<std::size_t>(l)].offset)];
      drained.push_back(sum);
    }
    ring_pending = 0;
  }
  be->copy_to_host_async(ring + ring_pending * n_scalars, scalars, static_cast<std::size_t>(n_scalars) * sizeof(float));
  ++ring_pending;
}

Executor::Executor(const Graph& graph, const ExecutorOptions& options) : impl_(std::make_unique<Impl>()) {
  Impl& I = *impl_;
  I.graph = graph;
  I.opt = options;
  I.be = std::make_unique<Backend>(options.device);
  I.be->ctx().tf32 = options.tf32;
  I.compile();
  I.plan();
  Backend& be = *I.be;
  I.arena = static_cast<char*>(be.alloc(I.mem.arena_bytes));
  const std::size_t pbytes = static_cast<std::size_t>(I.n_param_floats) * sizeof(float);
  I.params = static_cast<float*>(be.alloc(pbytes));
  if (options.training) {
    I.grads = static_cast<float*>(be.alloc(pbytes));
    be.memset(I.grads, 0, pbytes);  // padding and unused parameters keep a zero gradient
    // SGD keeps its velocity in v; Adam/AdamW keep both moments.
    I.v = static_cast<float*>(be.alloc(pbytes));
    be.memset(I.v, 0, pbytes);
    if (options.optimizer.type != OptimizerType::SGD) {
      I.m = static_cast<float*>(be.alloc(pbytes));
      be.memset(I.m, 0, pbytes);
    }
  }
  I.scalars = static_cast<float*>(be.alloc(static_cast<std::size_t>(std::max(I.n_scalars, 1)) * sizeof(float)));
  be.memset(I.scalars, 0, static_cast<std::size_t>(std::max(I.n_scalars, 1)) * sizeof(float));
  I.ring = static_cast<float*>(be.alloc_host(static_cast<std::size_t>(kLossRing * std::max(I.n_scalars, 1)) * sizeof(float)));
  I.init_params();
  I.bind();
  be.synchronize();
}

Executor::~Executor() = default;

Device Executor::device() const { return impl_->opt.device; }
const Graph& Executor::graph() const { return impl_->graph; }
const MemoryReport& Executor::memory() const { return impl_->mem; }
std::int64_t Executor::step() const { return impl_->updates; }
void Executor::set_learning_rate(float lr) { impl_->opt.optimizer.lr = lr; }
void Executor::synchronize() { impl_->be->synchronize(); }

static int input_index(const Graph& g, const std::string& name) {
  const Value v = g.find(name);
  CUAE_CHECK(v.valid() && g.info(v).kind == Graph::ValueKind::Input, "the graph has no input named \"" + name + "\"");
  return v.id;
}

void Executor::set_input(const std::string& name, const Tensor& batch) {
  Impl& I = *impl_;
  const int id = input_index(I.graph, name);
  const auto& b = I.bufs[static_cast<std::size_t>(id)];
  CUAE_CHECK(batch.dtype() == DType::F32 && batch.numel() == b.numel,
             "input \"" + name + "\" expects " + shape_str(b.shape) + " F32, got " + shape_str(batch.shape()));
  if (batch.device() == Device::CPU) {
    I.be->copy_to_device(I.ptr(id), batch.data(), batch.nbytes());
    I.be->mark();
  } else {
    CUAE_CHECK(I.opt.device == Device::CUDA, "input \"" + name + "\" is a CUDA tensor but the executor runs on the CPU");
    I.be->copy_device(I.ptr(id), batch.data(), batch.nbytes());
  }
}

void Executor::wait_inputs_read() { impl_->be->wait_mark(); }

void Executor::gather_input(const std::string& name, const Tensor& source, const Tensor& index, std::int64_t begin) {
  Impl& I = *impl_;
  const int id = input_index(I.graph, name);
  const auto& b = I.bufs[static_cast<std::size_t>(id)];
  CUAE_CHECK(source.device() == I.opt.device && index.device() == I.opt.device,
             "gather_input(\"" + name + "\"): source and index must be on the executor's device (" +
                 device_name(I.opt.device) + ")");
  const std::int64_t features = b.numel / b.shape[0];
  CUAE_CHECK(source.dtype() == DType::F32 && source.rank() >= 2 && source.numel() / source.dim(0) == features,
             "gather_input(\"" + name + "\"): source " + shape_str(source.shape()) + " does not have rows of " +
                 std::to_string(features) + " F32 features");
  CUAE_CHECK(index.dtype() == DType::I32 && index.rank() == 1 && begin >= 0 && begin + b.shape[0] <= index.dim(0),
             "gather_input(\"" + name + "\"): rows [" + std::to_string(begin) + ", " + std::to_string(begin + b.shape[0]) +
                 ") are outside the index " + shape_str(index.shape()));
  kern::GatherRows a;
  a.src = source.f32();
  a.index = static_cast<const std::int32_t*>(index.data()) + begin;
  a.dst = I.ptr(id);
  a.rows = b.shape[0];
  a.cols = features;
  I.be->ops().gather_rows(I.be->ctx(), a);
}

void Executor::forward() { forward_at(static_cast<std::uint64_t>(impl_->updates)); }

void Executor::forward_at(std::uint64_t random_step) {
  impl_->rng_step = random_step;
  for (auto& f : impl_->eval_launches) f();
  impl_->record_losses();
}

void Executor::set_term_weight(const std::string& node, float weight) {
  Impl& I = *impl_;
  const auto& nodes = I.graph.nodes();
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    if (nodes[i].name != node) continue;
    CUAE_CHECK(nodes[i].kind == Graph::OpKind::GaussianKL,
               "set_term_weight(\"" + node + "\"): only a gaussian_kl term's weight can change between steps");
    CUAE_CHECK(std::isfinite(weight) && weight >= 0.0f, "set_term_weight(\"" + node + "\"): weight must be >= 0");
    I.term_weight[i] = weight;
    return;
  }
  throw Error("set_term_weight: the graph has no node \"" + node + "\"");
}

void Executor::train_step() {
  Impl& I = *impl_;
  CUAE_CHECK(I.opt.training, "train_step() on an executor built for inference (ExecutorOptions::training = false)");
  I.rng_step = static_cast<std::uint64_t>(I.updates + 1);
  for (auto& f : I.train_launches) f();
  ++I.updates;
  const OptimizerConfig& o = I.opt.optimizer;
  kern::OptimizerStep a;
  a.param = I.params;
  a.grad = I.grads;
  a.m = I.m;
  a.v = I.v;
  a.n = I.n_param_floats;
  a.n_decay = I.n_decay;
  a.kind = to_kern(o.type);
  a.lr = o.lr;
  a.beta1 = o.beta1;
  a.beta2 = o.beta2;
  a.eps = o.eps;
  a.weight_decay = o.weight_decay;
  a.l1 = o.l1;
  a.momentum = o.momentum;
  a.nesterov = o.nesterov;
  a.step = I.updates;
  I.be->ops().optimizer_step(I.be->ctx(), a);
  I.record_losses();
}

std::vector<float> Executor::drain_losses() {
  Impl& I = *impl_;
  I.be->synchronize();
  std::vector<float> out = std::move(I.drained);
  I.drained.clear();
  for (std::int64_t s = 0; s < I.ring_pending; ++s) {
    float sum = 0.0f;
    for (int l : I.loss_bufs) sum += I.ring[s * I.n_scalars + static_cast<std::int64_t>(I.bufs[static_cast<std::size_t>(l)].offset)];
    out.push_back(sum);
  }
  I.ring_pending = 0;
  return out;
}

float Executor::last_loss() {
  Impl& I = *impl_;
  CUAE_CHECK(!I.loss_bufs.empty(), "the graph has no loss term");
  std::vector<float> host(static_cast<std::size_t>(I.n_scalars));
  I.be->copy_to_host(host.data(), I.scalars, host.size() * sizeof(float));
  float sum = 0.0f;
  for (int l : I.loss_bufs) sum += host[I.bufs[static_cast<std::size_t>(l)].offset];
  return sum;
}

Tensor Executor::read(Value v) {
  Impl& I = *impl_;
  CUAE_CHECK(v.id >= 0 && v.id < static_cast<int>(I.graph.values().size()), "read(): invalid value");
  const auto& b = I.bufs[static_cast<std::size_t>(v.id)];
  CUAE_CHECK(b.where != Impl::Where::Arena || b.keep,
             "value \"" + b.name + "\" is not kept after a step; call Graph::mark_output on it before building the executor");
  Tensor t(b.shape);
  I.be->copy_to_host(t.data(), I.ptr(v.id), t.nbytes());
  return t;
}

Tensor Executor::read(const std::string& name) {
  const Value v = impl_->graph.find(name);
  CUAE_CHECK(v.valid(), "the graph has no value named \"" + name + "\"");
  return read(v);
}

std::vector<std::pair<std::string, Tensor>> Executor::parameters() {
  std::vector<std::pair<std::string, Tensor>> out;
  const auto& values = impl_->graph.values();
  for (std::size_t i = 0; i < values.size(); ++i)
    if (values[i].kind == Graph::ValueKind::Param) out.emplace_back(values[i].name, read(Value{static_cast<int>(i)}));
  return out;
}

std::vector<std::pair<std::string, Tensor>> Executor::gradients() {
  Impl& I = *impl_;
  CUAE_CHECK(I.opt.training, "gradients() on an executor built for inference");
  std::vector<std::pair<std::string, Tensor>> out;
  const auto& values = I.graph.values();
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (values[i].kind != Graph::ValueKind::Param) continue;
    Tensor t(I.bufs[i].shape);
    I.be->copy_to_host(t.data(), I.grads + I.bufs[i].offset, t.nbytes());
    out.emplace_back(values[i].name, t);
  }
  return out;
}

std::vector<std::pair<std::string, Tensor>> Executor::optimizer_state() {
  Impl& I = *impl_;
  std::vector<std::pair<std::string, Tensor>> out;
  if (!I.opt.training) return out;
  const auto& values = I.graph.values();
  for (const auto& [prefix, buf] : {std::pair<const char*, float*>{"opt.m.", I.m}, {"opt.v.", I.v}}) {
    if (!buf) continue;
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (values[i].kind != Graph::ValueKind::Param) continue;
      Tensor t(I.bufs[i].shape);
      I.be->copy_to_host(t.data(), buf + I.bufs[i].offset, t.nbytes());
      out.emplace_back(prefix + values[i].name, t);
    }
  }
  return out;
}

void Executor::load(const std::map<std::string, Tensor>& tensors, std::int64_t step) {
  Impl& I = *impl_;
  const auto& values = I.graph.values();
  auto put = [&](const std::string& name, const Shape& shape, float* dst) {
    auto it = tensors.find(name);
    CUAE_CHECK(it != tensors.end(), "checkpoint has no tensor \"" + name + "\"");
    CUAE_CHECK(it->second.shape() == shape && it->second.dtype() == DType::F32,
               "checkpoint tensor \"" + name + "\" is " + shape_str(it->second.shape()) + " " +
                   dtype_name(it->second.dtype()) + ", the model expects " + shape_str(shape) + " F32");
    const Tensor host = it->second.device() == Device::CPU ? it->second : it->second.to(Device::CPU);
    I.be->copy_to_device(dst, host.data(), host.nbytes());
  };
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (values[i].kind != Graph::ValueKind::Param) continue;
    put(values[i].name, I.bufs[i].shape, I.params + I.bufs[i].offset);
    if (!I.opt.training) continue;
    // Optimizer state is optional: a checkpoint from another optimizer (or a fresh fine-tune)
    // starts the moments at zero.
    if (I.m && tensors.count("opt.m." + values[i].name)) put("opt.m." + values[i].name, I.bufs[i].shape, I.m + I.bufs[i].offset);
    if (I.v && tensors.count("opt.v." + values[i].name)) put("opt.v." + values[i].name, I.bufs[i].shape, I.v + I.bufs[i].offset);
  }
  I.updates = step;
  I.be->synchronize();
}

}  // namespace cuae
