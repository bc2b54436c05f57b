#include "host/graph/optimizer.hpp"

#include <algorithm>

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

Optimizer::Optimizer(ParameterStore::Impl& store, const std::vector<int>& entries, const OptimizerConfig& cfg)
    : store_(store), cfg_(cfg) {
  std::vector<int> order;
  for (int e : entries)
    if (e >= 0) order.push_back(e);
  const auto& E = store.entries;
  const auto key = [&](int e) { return std::pair(E[static_cast<std::size_t>(e)].segment, E[static_cast<std::size_t>(e)].offset); };
  std::sort(order.begin(), order.end(), [&](int a, int b) { return key(a) < key(b); });
  for (int e : order) {
    const auto& x = E[static_cast<std::size_t>(e)];
    const bool joins = !groups_.empty() && groups_.back().segment == x.segment &&
                       groups_.back().seg_offset + groups_.back().n == x.offset;
    if (!joins) {
      Group g;
      g.segment = x.segment;
      g.seg_offset = x.offset;
      g.offset = floats_;
      groups_.push_back(g);
    }
    Group& g = groups_.back();
    offset_[e] = g.offset + (x.offset - g.seg_offset);
    g.n += x.span;
    if (x.decay) g.n_decay += x.span;  // a segment holds its decayed parameters first
    floats_ += x.span;
  }
  Backend& be = store.be;
  const std::size_t bytes = static_cast<std::size_t>(floats_) * sizeof(float);
  // Zeroed: padding, and parameters no step writes a gradient for, keep a zero gradient.
  grads_ = static_cast<float*>(be.alloc(bytes));
  be.memset(grads_, 0, bytes);
  // SGD keeps its velocity in v; Adam/AdamW keep both moments.
  v_ = static_cast<float*>(be.alloc(bytes));
  be.memset(v_, 0, bytes);
  if (cfg.type != OptimizerType::SGD) {
    m_ = static_cast<float*>(be.alloc(bytes));
    be.memset(m_, 0, bytes);
  }
}

Optimizer::~Optimizer() {
  store_.be.synchronize();
  store_.be.free(grads_);
  store_.be.free(m_);
  store_.be.free(v_);
}

float* Optimizer::at(float* buf, int entry) const {
  if (!buf) return nullptr;
  const auto it = offset_.find(entry);
  return it == offset_.end() ? nullptr : buf + it->second;
}

std::vector<std::pair<const char*, float*>> Optimizer::state_buffers() const {
  std::vector<std::pair<const char*, float*>> out;
  if (m_) out.emplace_back("opt.m.", m_);
  out.emplace_back("opt.v.", v_);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Optimizer::gradients(const std::vector<int>& entries) const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (int e : entries) {
    const auto& x = store_.entries[static_cast<std::size_t>(e)];
    out.emplace_back(x.name, store_.download(x.shape, grad(e)));
  }
  return out;
}

std::vector<std::pair<std::string, Tensor>> Optimizer::state(const std::vector<int>& entries) const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& [prefix, buf] : state_buffers())
    for (int e : entries) {
      const auto& x = store_.entries[static_cast<std::size_t>(e)];
      out.emplace_back(prefix + x.name, store_.download(x.shape, at(buf, e)));
    }
  return out;
}

void Optimizer::load_state(const std::map<std::string, Tensor>& tensors, const std::vector<int>& entries) {
  for (const auto& [prefix, buf] : state_buffers())
    for (int e : entries) {
      const auto& x = store_.entries[static_cast<std::size_t>(e)];
      if (tensors.count(prefix + x.name)) store_.upload(tensors, prefix + x.name, x.shape, at(buf, e));
    }
}

void Optimizer::bind(const Backend& be, const kern::StepScalars* step, std::vector<Launch>& out) const {
  const kern::OpTable* ops = &be.ops();
  const kern::Context* ctx = &be.ctx();
  for (const Group& g : groups_) {
    kern::OptimizerStep a;
    a.param = store_.segments[static_cast<std::size_t>(g.segment)].base + g.seg_offset;
    a.grad = grads_ + g.offset;
    a.m = m_ ? m_ + g.offset : nullptr;
    a.v = v_ + g.offset;
    a.n = g.n;
    a.n_decay = g.n_decay;
    a.kind = static_cast<kern::OptKind>(static_cast<int>(cfg_.type));
    a.lr = cfg_.lr, a.beta1 = cfg_.beta1, a.beta2 = cfg_.beta2, a.eps = cfg_.eps;
    a.weight_decay = cfg_.weight_decay, a.l1 = cfg_.l1, a.momentum = cfg_.momentum, a.nesterov = cfg_.nesterov;
    a.at = step;  // the learning rate, momentum and bias corrections of the update being made
    out.push_back([ops, ctx, a] { ops->optimizer_step(*ctx, a); });
  }
}

}  // namespace cuae
