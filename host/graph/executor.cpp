// The executor: a graph compiled into steps (host/graph/compiler.hpp; each op's steps come from its
// descriptor in host/graph/nodes), its memory planned, its steps bound to kernel-table calls, and
// the step loop.
//
// Parameters live in a ParameterStore (host/graph/parameter_store.hpp), shared by the executors of
// one model; a training executor's gradients and moments mirror the store's flat segments
// (host/graph/optimizer.hpp), so the update is one launch per segment. Every activation, gradient
// and workspace lives in one arena placed by liveness over the step order (host/graph/planner).
// The scalar terms' values live in one small block that a
// record_scalars launch appends, once per step, to a ring of kLossRing blocks in backend memory;
// the host reads the ring when asked (or when it is full). The step block (kern::StepScalars: the
// random step, Adam's t and bias corrections, the learning rate) and the term weights live in
// backend memory too, so the launches of a step never change: on CUDA a training step is captured
// once as a CUDA graph and replayed.
#include "cuae/executor.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

#include "host/graph/compiler.hpp"
#include "host/graph/optimizer.hpp"
#include "host/graph/parameter_store.hpp"
#include "host/graph/planner.hpp"
#include "host/runtime/backend.hpp"

namespace cuae {

namespace {

constexpr std::int64_t kLossRing = 1024;       // steps of losses kept in backend memory before a forced drain

std::size_t round_up(std::size_t x, std::size_t a) { return (x + a - 1) / a * a; }

}  // namespace

struct Executor::Impl {
  Graph graph;
  ExecutorOptions opt;
  std::shared_ptr<ParameterStore> store;
  Backend* be = nullptr;              // the store's: every executor of a store shares its stream
  std::unique_ptr<Compiler> comp;
  std::unique_ptr<Optimizer> optimizer;  // training
  MemoryReport mem;

  char* arena = nullptr;
  float* scalars = nullptr;
  int n_scalars = 0;
  std::vector<int> entry_of;          // graph value -> its parameter's store entry, or -1
  std::vector<float*> fixed;          // parameter and gradient buffers -> their memory
  // The step block and, after it, the term weights (Compiler::terms order), in backend memory.
  kern::StepScalars* step = nullptr;
  float* weights = nullptr;
  float* ring = nullptr;           // backend memory: kLossRing scalar blocks

  // A forward pass: the forward steps, then the record of its scalars. A training step:
  // step_begin, the forward and backward steps, the optimizer update, the record.
  std::vector<Launch> eval_launches, train_launches;
  std::unique_ptr<Backend::Captured> captured;  // the training step as a CUDA graph
  int eager_steps = 0;
  // One per bound step whose op resolves plans (GEMMs, convolutions): filled by the step's first
  // launch, reused by every later one (kernels/ops.hpp, OpCache). Stable addresses: the launches
  // hold pointers to them.
  std::vector<std::unique_ptr<kern::OpCache>> caches;
  std::int64_t updates = 0;       // the host's count of optimizer updates (the block's `updates`)
  std::int64_t recorded = 0;      // scalar blocks recorded into the ring
  std::int64_t read_upto = 0;     // ... of which the host has read this many
  std::vector<float> drained;     // losses read from the ring, not yet handed out

  ~Impl() {
    if (!be) return;
    be->synchronize();
    be->free(arena);
    be->free(scalars);
    be->free(step);
    be->free(ring);
  }

  std::vector<Buf>& bufs() { return comp->bufs(); }
  const Buf& buf(int b) const { return comp->bufs()[static_cast<std::size_t>(b)]; }
  float* ptr(int b) const {
    if (b < 0) return nullptr;
    const Buf& x = buf(comp->root_of(b));
    switch (x.where) {
      case Where::Arena: return reinterpret_cast<float*>(arena + x.offset);
      case Where::Param:
      case Where::Grad: return fixed[static_cast<std::size_t>(comp->root_of(b))];
      case Where::Scalar: return scalars + x.offset;
    }
    return nullptr;
  }
  // The sum of the objective terms in a copy of the scalar block.
  float loss_of(const float* block) const {
    float sum = 0.0f;
    for (int l : comp->loss_bufs()) sum += block[buf(l).offset];
    return sum;
  }

  void plan();
  void allocate();
  void bind();
  // The parameters of the graph, in graph order, with their store entries.
  template <class F>
  void each_param(F f) const {
    const auto& values = graph.values();
    for (std::size_t i = 0; i < values.size(); ++i)
      if (entry_of[i] >= 0) f(values[i].name, static_cast<int>(i), entry_of[i]);
  }
  // Before a launch sequence that records: reads the ring when it is full.
  void make_room();
  // Reads the ring's unread blocks (synchronises) and appends their losses to `drained`.
  void read_ring();
  // A small stream-ordered write of host values into backend memory (the step block's fields).
  void put(void* dst, const void* src, std::size_t bytes) { be->copy_to_device(dst, src, bytes); }
};

void Executor::Impl::plan() {
  auto& bs = bufs();
  const auto& steps = comp->steps();
  // Lifetimes over step positions, by the memory (root buffer) each slot touches.
  const int end = static_cast<int>(steps.size()) - 1;
  std::vector<int> first(bs.size(), -1), last(bs.size(), -1);
  for (int p = 0; p <= end; ++p) {
    for (const Step::Slot& sl : steps[static_cast<std::size_t>(p)].slots) {
      if (sl.buf < 0) continue;
      const auto ub = static_cast<std::size_t>(comp->root_of(sl.buf));
      if (first[ub] < 0) first[ub] = p;  // read before written: an input
      last[ub] = std::max(last[ub], p);
    }
  }
  std::vector<graph::PlanItem> items;
  std::vector<int> item_buf;
  // Parameters and their gradients: the store's memory and the optimizer's.
  entry_of = store->impl().attach(graph, opt.seed);
  if (opt.training) optimizer = std::make_unique<Optimizer>(store->impl(), entry_of, opt.optimizer);
  fixed.assign(bs.size(), nullptr);
  const auto& grad_of = comp->grad_of();
  each_param([&](const std::string&, int i, int e) {
    fixed[static_cast<std::size_t>(i)] = store->impl().ptr(e);
    mem.param_bytes += static_cast<std::size_t>(store->impl().entries[static_cast<std::size_t>(e)].span) * sizeof(float);
    if (optimizer && grad_of[static_cast<std::size_t>(i)] >= 0) fixed[static_cast<std::size_t>(grad_of[static_cast<std::size_t>(i)])] = optimizer->grad(e);
  });
  for (std::size_t i = 0; i < bs.size(); ++i) {
    Buf& b = bs[i];
    if (b.where == Where::Scalar) {
      b.offset = static_cast<std::size_t>(n_scalars);
      n_scalars += static_cast<int>(b.numel);
      continue;
    }
    if (b.where != Where::Arena || comp->root_of(static_cast<int>(i)) != static_cast<int>(i)) continue;
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
  for (std::size_t k = 0; k < items.size(); ++k) bs[static_cast<std::size_t>(item_buf[k])].offset = ap.offsets[k];
  mem.arena_bytes = ap.peak;
  mem.values_planned = static_cast<int>(items.size());
  // Gradients and the moments (SGD keeps one: its velocity).
  const int copies = opt.training ? (opt.optimizer.type == OptimizerType::SGD ? 2 : 3) : 0;
  if (optimizer) mem.state_bytes = static_cast<std::size_t>(optimizer->floats()) * sizeof(float) * static_cast<std::size_t>(copies);
}

void Executor::Impl::allocate() {
  arena = static_cast<char*>(be->alloc(mem.arena_bytes));
  const std::size_t sbytes = static_cast<std::size_t>(std::max(n_scalars, 1)) * sizeof(float);
  scalars = static_cast<float*>(be->alloc(sbytes));
  be->memset(scalars, 0, sbytes);
  ring = static_cast<float*>(be->alloc(static_cast<std::size_t>(kLossRing) * sbytes));
  // The step block, then one weight per term, initialised from the options and the graph.
  const std::size_t nterms = comp->terms().size();
  step = static_cast<kern::StepScalars*>(be->alloc(sizeof(kern::StepScalars) + nterms * sizeof(float)));
  weights = reinterpret_cast<float*>(step + 1);
  kern::StepScalars s;
  s.lr = opt.optimizer.lr;
  s.beta1 = opt.optimizer.beta1;
  s.beta2 = opt.optimizer.beta2;
  s.momentum = opt.optimizer.momentum;
  put(step, &s, sizeof s);
  std::vector<float> w;
  for (const detail::Node* t : comp->terms()) w.push_back(t->weight);
  put(weights, w.data(), w.size() * sizeof(float));
}

void Executor::Impl::bind() {
  const kern::OpTable* ops = &be->ops();
  const kern::Context* ctx = &be->ctx();
  Binder::Env env{ops, ctx, opt.seed, step, weights,
                  [this] { return caches.emplace_back(std::make_unique<kern::OpCache>()).get(); },
                  [this](int b) { return ptr(b); }};
  if (opt.training) {
    kern::StepBegin sb;
    sb.s = step;
    train_launches.push_back([ops, ctx, sb] { ops->step_begin(*ctx, sb); });
  }
  for (const Step& s : comp->steps()) {
    if (opt.training) train_launches.push_back(s.bind(Binder(s, *comp, env, true)));
    if (!s.backward) eval_launches.push_back(s.bind(Binder(s, *comp, env, false)));
  }
  if (optimizer) optimizer->bind(*be, step, train_launches);
  if (n_scalars == 0) return;
  kern::RecordScalars r;
  r.src = scalars, r.ring = ring, r.s = step, r.n = n_scalars, r.capacity = static_cast<int>(kLossRing);
  const Launch record = [ops, ctx, r] { ops->record_scalars(*ctx, r); };
  eval_launches.push_back(record);
  if (opt.training) train_launches.push_back(record);
}

void Executor::Impl::make_room() {
  if (n_scalars > 0 && recorded - read_upto == kLossRing) read_ring();  // every 1024 steps at most
}

void Executor::Impl::read_ring() {
  if (recorded == read_upto) return;
  std::vector<float> host(static_cast<std::size_t>(kLossRing * n_scalars));
  be->copy_to_host(host.data(), ring, host.size() * sizeof(float));
  for (std::int64_t k = read_upto; k < recorded; ++k) drained.push_back(loss_of(host.data() + (k % kLossRing) * n_scalars));
  read_upto = recorded;
}

Executor::Executor(const Graph& graph, const ExecutorOptions& options, std::shared_ptr<ParameterStore> store)
    : impl_(std::make_unique<Impl>()) {
  Impl& I = *impl_;
  I.graph = graph;
  I.opt = options;
  I.store = store ? std::move(store) : std::make_shared<ParameterStore>(options.device);
  CUAE_CHECK(I.store->device() == options.device, std::string("the executor runs on ") + device_name(options.device) +
                                                      " but its parameter store lives on " + device_name(I.store->device()));
  ParameterStore::Impl& S = I.store->impl();
  I.be = &S.be;
  if (S.executors == 0) I.be->ctx().tf32 = options.tf32;
  CUAE_CHECK(I.be->ctx().tf32 == options.tf32, "executors sharing a parameter store share its precision (tf32 is " +
                                                   std::string(I.be->ctx().tf32 ? "on" : "off") + " there)");
  I.comp = std::make_unique<Compiler>(I.graph, options.training, *I.be);
  I.comp->compile();
  I.plan();
  I.allocate();
  I.bind();
  ++S.executors;
  I.be->synchronize();
}

Executor::~Executor() = default;

Device Executor::device() const { return impl_->opt.device; }
const Graph& Executor::graph() const { return impl_->graph; }
const MemoryReport& Executor::memory() const { return impl_->mem; }
std::int64_t Executor::step() const { return impl_->updates; }
const std::shared_ptr<ParameterStore>& Executor::store() const { return impl_->store; }
void Executor::set_learning_rate(float lr) {
  CUAE_CHECK(std::isfinite(lr) && lr >= 0.0f, "set_learning_rate: the learning rate must be finite and >= 0");
  impl_->opt.optimizer.lr = lr;
  impl_->put(&impl_->step->lr, &lr, sizeof lr);
}
void Executor::set_momentum(float momentum) {
  CUAE_CHECK(std::isfinite(momentum) && momentum >= 0.0f && momentum < 1.0f, "set_momentum: the momentum must be in [0, 1)");
  impl_->opt.optimizer.momentum = momentum;
  impl_->put(&impl_->step->momentum, &momentum, sizeof momentum);
}
void Executor::synchronize() { impl_->be->synchronize(); }

static int input_index(const Graph& g, const std::string& name) {
  const Value v = g.find(name);
  CUAE_CHECK(v.valid() && g.info(v).kind == Graph::ValueKind::Input, "the graph has no input named \"" + name + "\"");
  return v.id;
}

void Executor::set_input(const std::string& name, const Tensor& batch) {
  Impl& I = *impl_;
  const int id = input_index(I.graph, name);
  const Buf& b = I.buf(id);
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
  const Buf& b = I.buf(id);
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
  Impl& I = *impl_;
  I.put(&I.step->rng_step, &random_step, sizeof random_step);
  I.make_room();
  for (auto& f : I.eval_launches) f();
  if (I.n_scalars > 0) ++I.recorded;
}

void Executor::set_term_weight(const std::string& node, float weight) {
  Impl& I = *impl_;
  const auto& terms = I.comp->terms();
  for (std::size_t i = 0; i < terms.size(); ++i) {
    if (terms[i]->name != node) continue;
    CUAE_CHECK(terms[i]->desc->weighted(), "set_term_weight(\"" + node + "\"): this term's weight is fixed");
    CUAE_CHECK(std::isfinite(weight) && weight >= 0.0f, "set_term_weight(\"" + node + "\"): weight must be >= 0");
    I.put(I.weights + i, &weight, sizeof weight);
    return;
  }
  throw Error("set_term_weight: the graph has no node \"" + node + "\" that is a loss or penalty term");
}

void Executor::train_step() {
  Impl& I = *impl_;
  CUAE_CHECK(I.opt.training, "train_step() on an executor built for inference (ExecutorOptions::training = false)");
  I.make_room();
  const auto run = [&I] {
    for (auto& f : I.train_launches) f();
  };
  if (I.opt.device != Device::CUDA || !I.opt.cuda_graph) {
    run();
  } else if (I.captured) {
    I.be->replay(*I.captured);
  } else if (I.eager_steps == 0) {
    run();  // the first step resolves every plan (cuBLASLt, cuDNN) outside any capture
    ++I.eager_steps;
  } else {
    I.captured = I.be->capture(run);
    I.be->replay(*I.captured);
  }
  ++I.updates;
  if (I.n_scalars > 0) ++I.recorded;
}

std::vector<float> Executor::drain_losses() {
  Impl& I = *impl_;
  I.read_ring();
  return std::exchange(I.drained, {});
}

float Executor::last_loss() {
  Impl& I = *impl_;
  CUAE_CHECK(!I.comp->loss_bufs().empty(), "the graph has no loss term");
  std::vector<float> host(static_cast<std::size_t>(I.n_scalars));
  I.be->copy_to_host(host.data(), I.scalars, host.size() * sizeof(float));
  return I.loss_of(host.data());
}

Tensor Executor::read(Value v) {
  Impl& I = *impl_;
  CUAE_CHECK(v.id >= 0 && v.id < static_cast<int>(I.graph.values().size()), "read(): invalid value");
  const Buf& b = I.buf(v.id);
  CUAE_CHECK(b.where != Where::Arena || b.keep,
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
  impl_->each_param([&](const std::string& name, int, int) { out.emplace_back(name, impl_->store->read(name)); });
  return out;
}

namespace {
Tensor download(Backend& be, const Shape& shape, const float* src) {
  Tensor t(shape);
  be.copy_to_host(t.data(), src, t.nbytes());
  return t;
}
}  // namespace

std::vector<std::pair<std::string, Tensor>> Executor::gradients() {
  Impl& I = *impl_;
  CUAE_CHECK(I.opt.training, "gradients() on an executor built for inference");
  std::vector<std::pair<std::string, Tensor>> out;
  I.each_param([&](const std::string& name, int i, int e) { out.emplace_back(name, download(*I.be, I.buf(i).shape, I.optimizer->grad(e))); });
  return out;
}

std::vector<std::pair<std::string, Tensor>> Executor::optimizer_state() {
  Impl& I = *impl_;
  std::vector<std::pair<std::string, Tensor>> out;
  if (!I.optimizer) return out;
  for (const char* prefix : {"opt.m.", "opt.v."}) {
    I.each_param([&](const std::string& name, int i, int e) {
      const float* src = prefix[4] == 'm' ? I.optimizer->m(e) : I.optimizer->v(e);
      if (src) out.emplace_back(prefix + name, download(*I.be, I.buf(i).shape, src));
    });
  }
  return out;
}

void Executor::load(const std::map<std::string, Tensor>& tensors, std::int64_t step) {
  Impl& I = *impl_;
  auto put = [&](const std::string& name, const Shape& shape, float* dst) {
    auto it = tensors.find(name);
    CUAE_CHECK(it != tensors.end(), "checkpoint has no tensor \"" + name + "\"");
    CUAE_CHECK(it->second.shape() == shape && it->second.dtype() == DType::F32,
               "checkpoint tensor \"" + name + "\" is " + shape_str(it->second.shape()) + " " +
                   dtype_name(it->second.dtype()) + ", the model expects " + shape_str(shape) + " F32");
    const Tensor host = it->second.device() == Device::CPU ? it->second : it->second.to(Device::CPU);
    I.be->copy_to_device(dst, host.data(), host.nbytes());
  };
  I.each_param([&](const std::string& name, int i, int e) {
    put(name, I.buf(i).shape, I.store->impl().ptr(e));
    if (!I.optimizer) return;
    // Optimizer state is optional: a checkpoint from another optimizer (or a fresh fine-tune)
    // starts the moments at zero.
    for (const char* prefix : {"opt.m.", "opt.v."}) {
      float* dst = prefix[4] == 'm' ? I.optimizer->m(e) : I.optimizer->v(e);
      if (dst && tensors.count(prefix + name)) put(prefix + name, I.buf(i).shape, dst);
    }
  });
  I.updates = step;
  I.put(&I.step->updates, &step, sizeof step);  // Adam's t and the random step continue from here
  I.be->synchronize();
}

}  // namespace cuae
