// The executor: a graph compiled into steps (host/graph/compiler.hpp; each op's steps come from its
// descriptor in host/graph/nodes), its memory planned (host/graph/memory_plan.hpp), its steps bound
// to kernel-table calls, the step loop, and I/O.
//
// Parameters live in a ParameterStore shared by a model's executors; a training executor's
// gradients and moments mirror the store's flat segments (host/graph/optimizer.hpp). The scalar
// terms' values live in one small block that a record_scalars launch appends, once per step, to a
// ring of kLossRing blocks in backend memory, read by the host when asked (or when it is full).
// The step block (kern::StepScalars) and the term weights live in backend memory too, so the
// launches of a step never change: on CUDA a training step is captured once as a CUDA graph and
// replayed. Host batches arrive on a copy stream (host/runtime/input_copy.hpp).
#include "cuae/executor.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

#include "host/graph/executor_impl.hpp"
#include "host/graph/memory_plan.hpp"

namespace cuae {


void Executor::Impl::plan() {
  const graph::MemoryPlan mp = graph::plan_memory(*comp);
  mem.arena_bytes = mp.arena_bytes;
  mem.naive_bytes = mp.naive_bytes;
  mem.values_planned = mp.values_planned;
  n_scalars = mp.scalars;
  // Parameters and their gradients: the store's memory and the optimizer's.
  ParameterStore::Impl& S = store->impl();
  const std::vector<int> entry_of = S.attach(graph, opt.seed);  // by graph value; -1: not a parameter
  if (opt.training) optimizer = std::make_unique<Optimizer>(S, entry_of, opt.optimizer);
  fixed.assign(comp->bufs().size(), nullptr);
  for (std::size_t i = 0; i < entry_of.size(); ++i) {
    const int e = entry_of[i], g = comp->grad_of()[i];
    if (e < 0) continue;
    params.push_back(e);
    fixed[i] = S.ptr(e);
    mem.param_bytes += static_cast<std::size_t>(S.entries[static_cast<std::size_t>(e)].span) * sizeof(float);
    if (optimizer && g >= 0) fixed[static_cast<std::size_t>(g)] = optimizer->grad(e);
  }
  // Gradients and the moments (SGD keeps one: its velocity).
  const int copies = opt.optimizer.type == OptimizerType::SGD ? 2 : 3;
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
  if (I.opt.device == Device::CPU) {
    CUAE_CHECK(batch.device() == Device::CPU, "input \"" + name + "\" is a CUDA tensor but the executor runs on the CPU");
    I.be->copy_to_device(I.ptr(id), batch.data(), batch.nbytes());
  } else if (batch.device() == Device::CPU) {
    auto& c = I.copies[id];
    if (!c) c = std::make_unique<InputCopy>(*I.be, batch.nbytes());
    c->start(batch.data());  // overlaps the step in flight; the next step moves it into place
  } else {
    if (auto it = I.copies.find(id); it != I.copies.end()) it->second->cancel();
    I.be->copy_device(I.ptr(id), batch.data(), batch.nbytes());
  }
}

void Executor::wait_inputs_read() {
  for (auto& [id, c] : impl_->copies) c->wait_read();
}

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
  if (auto it = I.copies.find(id); it != I.copies.end()) it->second->cancel();
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
  I.flush_inputs();
  I.make_room();
  for (auto& f : I.eval_launches) f();
  if (I.n_scalars > 0) ++I.recorded;
}

std::vector<float> Executor::evaluate_terms(std::uint64_t random_step) {
  Impl& I = *impl_;
  CUAE_CHECK(I.n_scalars > 0, "evaluate_terms: the graph has no scalar terms");
  I.put(&I.step->rng_step, &random_step, sizeof random_step);
  I.flush_inputs();
  // Every forward launch but the last, which records into the ring (bind() appends it last).
  for (std::size_t i = 0; i + 1 < I.eval_launches.size(); ++i) I.eval_launches[i]();
  return last_terms();
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
  I.flush_inputs();  // outside the captured step, which reads the inputs' fixed addresses
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

Tensor Executor::read(Value v) {
  Impl& I = *impl_;
  CUAE_CHECK(v.id >= 0 && v.id < static_cast<int>(I.graph.values().size()), "read(): invalid value");
  I.flush_inputs();
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
  ParameterStore::Impl& S = impl_->store->impl();
  std::vector<std::pair<std::string, Tensor>> out;
  for (int e : impl_->params) {
    const auto& x = S.entries[static_cast<std::size_t>(e)];
    out.emplace_back(x.name, S.download(x.shape, S.ptr(e)));
  }
  return out;
}

std::vector<std::pair<std::string, Tensor>> Executor::gradients() {
  CUAE_CHECK(impl_->optimizer, "gradients() on an executor built for inference");
  return impl_->optimizer->gradients(impl_->params);
}

std::vector<std::pair<std::string, Tensor>> Executor::optimizer_state() {
  if (!impl_->optimizer) return {};
  return impl_->optimizer->state(impl_->params);
}

void Executor::load(const std::map<std::string, Tensor>& tensors, std::int64_t step) {
  Impl& I = *impl_;
  ParameterStore::Impl& S = I.store->impl();
  for (int e : I.params) {
    const auto& x = S.entries[static_cast<std::size_t>(e)];
    S.upload(tensors, x.name, x.shape, S.ptr(e));
  }
  // Optimizer state is optional: a checkpoint from another optimizer (or a fresh fine-tune)
  // starts the moments at zero.
  if (I.optimizer) I.optimizer->load_state(tensors, I.params);
  I.updates = step;
  I.put(&I.step->updates, &step, sizeof step);  // Adam's t and the random step continue from here
  I.be->synchronize();
}

}  // namespace cuae
