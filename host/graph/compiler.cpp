// The Compiler and Binder of host/graph/compiler.hpp: values to buffers, which values need a
// gradient, the forward and backward steps the descriptors add, and slot resolution.
#include "host/graph/compiler.hpp"

#include <algorithm>
#include <cstring>

#include "host/runtime/backend.hpp"
#include "kernels/philox.hpp"

namespace cuae {

std::uint64_t name_hash(const std::string& s, std::uint64_t h) {
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

Compiler::Compiler(const Graph& graph, bool training, Backend& backend)
    : graph_(graph), training_(training), backend_(backend) {}

int Compiler::add_buf(const std::string& name, const Shape& shape, Where where) {
  bufs_.push_back({name, shape, shape_numel(shape), where, 0, false});
  root_.push_back(static_cast<int>(bufs_.size()) - 1);
  return static_cast<int>(bufs_.size()) - 1;
}

int Compiler::root_of(int b) const {
  while (b >= 0 && static_cast<std::size_t>(b) < root_.size() && root_[static_cast<std::size_t>(b)] != b)
    b = root_[static_cast<std::size_t>(b)];
  return b;
}

const Shape& Compiler::shape(int value) const { return bufs_[static_cast<std::size_t>(value)].shape; }

bool Compiler::needs_grad(int value) const {
  return value >= 0 && static_cast<std::size_t>(value) < needs_grad_.size() && needs_grad_[static_cast<std::size_t>(value)];
}

void Compiler::compile() {
  const auto& values = graph_.values();
  const auto& nodes = detail::GraphAccess::nodes(graph_);
  CUAE_CHECK(!nodes.empty(), "the graph has no ops");
  for (const auto& vi : values) {
    const Where w = vi.kind == Graph::ValueKind::Param ? Where::Param
                    : vi.kind == Graph::ValueKind::Scalar ? Where::Scalar
                                                          : Where::Arena;
    add_buf(vi.name, vi.shape, w);
    if (vi.kind == Graph::ValueKind::Input) bufs_.back().keep = true;
  }
  for (int o : graph_.outputs()) bufs_[static_cast<std::size_t>(o)].keep = true;
  grad_of_.assign(values.size(), -1);

  // Which values need a gradient: parameters, and anything computed from one. A term ends a path
  // and a gradient-blocking op's output is data; only a node's first output carries a gradient.
  needs_grad_.assign(values.size(), false);
  for (std::size_t i = 0; i < values.size(); ++i) needs_grad_[i] = values[i].kind == Graph::ValueKind::Param;
  for (const auto& n : nodes) {
    if (n->desc->term() || n->desc->blocks_gradient()) continue;
    bool any = false;
    for (int in : n->inputs) any = any || needs_grad(in);
    needs_grad_[static_cast<std::size_t>(n->outputs[0])] = any;
  }
  // An alias is a second name for its input's memory, and so is its gradient.
  for (const auto& n : nodes)
    if (n->desc->alias()) root_[static_cast<std::size_t>(n->outputs[0])] = root_of(n->inputs[0]);
  if (training_) {
    for (std::size_t i = 0; i < values.size(); ++i)
      if (needs_grad_[i])
        grad_of_[i] = add_buf("grad(" + values[i].name + ")", values[i].shape,
                              values[i].kind == Graph::ValueKind::Param ? Where::Grad : Where::Arena);
    for (const auto& n : nodes) {
      if (!n->desc->alias()) continue;
      const int gy = grad_of_[static_cast<std::size_t>(n->outputs[0])];
      if (gy >= 0) root_[static_cast<std::size_t>(gy)] = root_of(grad_of_[static_cast<std::size_t>(n->inputs[0])]);
    }
  }
  for (std::size_t i = 0; i < bufs_.size(); ++i)
    if (bufs_[i].keep) bufs_[static_cast<std::size_t>(root_of(static_cast<int>(i)))].keep = true;

  for (const auto& n : nodes) {
    if (!n->desc->term()) continue;
    terms_.push_back(n.get());
    if (n->objective) loss_bufs_.push_back(n->outputs[0]);
  }
  // Forward steps in graph order.
  for (const auto& n : nodes) {
    if (n->desc->alias()) continue;
    current_ = n.get();
    n->desc->forward(*this, *n);
  }
  current_ = nullptr;
  if (!training_) return;
  CUAE_CHECK(!loss_bufs_.empty(), "training needs at least one loss term in the graph");
  // Reverse mode: a node whose output received any gradient contribution adds its backward steps.
  // Every consumer of a value comes after its producer in graph order, so when the producer is
  // reached its output's gradient is complete. (A parameter no loss depends on keeps a zero
  // gradient, zeroed once at allocation.)
  for (auto it = nodes.rbegin(); it != nodes.rend(); ++it) {
    const detail::Node& n = **it;
    if (n.desc->term() || n.desc->blocks_gradient() || n.desc->alias()) continue;
    const int gy = root_of(grad_of_[static_cast<std::size_t>(n.outputs[0])]);
    if (gy < 0 || static_cast<std::size_t>(gy) >= grad_written_.size() || !grad_written_[static_cast<std::size_t>(gy)])
      continue;
    n.desc->backward(*this, n);
  }
}

Step& Compiler::step(const detail::Node& n, bool backward) {
  Step s;
  s.node = &n;
  s.backward = backward;
  steps_.push_back(std::move(s));
  return steps_.back();
}

Step& Compiler::unary(const detail::Node& n) {
  Step& s = step(n);
  read(s, "x", n.inputs[0]);
  write(s, "y", n.outputs[0]);
  return s;
}

Step& Compiler::unary_backward(const detail::Node& n) {
  Step& s = step(n, true);
  read_grad(s, "dy", n.outputs[0]);
  write_grad(s, "dx", n.inputs[0]);
  return s;
}

void Compiler::read(Step& s, const char* slot, int value) { s.slots.push_back({slot, value, false}); }

void Compiler::write(Step& s, const char* slot, int value) { s.slots.push_back({slot, value, true}); }

void Compiler::read_grad(Step& s, const char* slot, int value) {
  s.slots.push_back({slot, value >= 0 ? grad_of_[static_cast<std::size_t>(value)] : -1, false});
}

void Compiler::write_grad(Step& s, const char* slot, int value) {
  int g = -1;
  if (training_ && value >= 0 && (s.backward || s.node->objective)) g = grad_of_[static_cast<std::size_t>(value)];
  if (g < 0) {
    s.slots.push_back({slot, -1, true});
    return;
  }
  const auto r = static_cast<std::size_t>(root_of(g));
  if (r >= grad_written_.size()) grad_written_.resize(r + 1, false);
  s.slots.push_back({slot, g, true, grad_written_[r], !s.backward});
  grad_written_[r] = true;
}

int Compiler::scratch(const detail::Node& n, const std::string& suffix, const Shape& shape) {
  return add_buf(n.name + suffix, shape, Where::Arena);
}

int Compiler::conv_workspace(const detail::Node& n, const kern::ConvGeom& g, kern::ConvPass pass,
                             const std::string& suffix) {
  std::size_t bytes = 0;
  kern::ConvWorkspace q;
  q.g = g;
  q.pass = pass;
  q.bytes = &bytes;
  backend_.ops().conv_workspace(backend_.ctx(), q);
  if (bytes == 0) return -1;
  return add_buf(n.name + suffix, Shape{static_cast<std::int64_t>((bytes + 3) / 4)}, Where::Arena);
}

// ---- Binder ---------------------------------------------------------------------------------------

Binder::Binder(const Step& s, const Compiler& c, const Env& env, bool training)
    : step_(s), c_(c), env_(env), training_(training) {}

const Step::Slot* Binder::find(const char* slot) const {
  for (const auto& sl : step_.slots)
    if (std::strcmp(sl.name, slot) == 0) return &sl;
  return nullptr;
}

bool Binder::has(const char* slot) const { return ptr(slot) != nullptr; }

float* Binder::ptr(const char* slot) const {
  const Step::Slot* s = find(slot);
  if (!s || s->buf < 0 || (s->grad && !training_)) return nullptr;
  return env_.ptr(s->buf);
}

bool Binder::acc(const char* slot) const {
  const Step::Slot* s = find(slot);
  return s && s->acc;
}

const Shape& Binder::shape(const char* slot) const {
  const Step::Slot* s = find(slot);
  CUAE_CHECK(s && s->buf >= 0, std::string("internal error: step of \"") + step_.node->name + "\" has no slot " + slot);
  return c_.bufs()[static_cast<std::size_t>(s->buf)].shape;
}

std::int64_t Binder::numel(const char* slot) const { return shape_numel(shape(slot)); }

std::size_t Binder::bytes(const char* slot) const {
  return has(slot) ? static_cast<std::size_t>(numel(slot)) * sizeof(float) : 0;
}

std::uint64_t Binder::seed() const {
  return kern::philox_mix_seed(env_.run_seed, name_hash(step_.node->name));
}

const float* Binder::weight() const {
  const auto& t = c_.terms();
  for (std::size_t i = 0; i < t.size(); ++i)
    if (t[i] == step_.node) return env_.term_weights + i;
  return nullptr;
}

}  // namespace cuae
