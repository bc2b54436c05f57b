// What an op's descriptor sees while an executor is built: the Compiler that turns a graph into a
// schedule of steps, the Step itself (one kernel-table call, or a short fixed sequence, of one node)
// with named slots for the buffers it reads and writes, and the Binder that resolves those slots
// to memory once the plan is made. Internal header.
//
// A descriptor's forward() (and, training, backward()) adds steps:
//
//   Step& s = c.step(n);
//   c.read(s, "x", n.inputs[0]);
//   c.write(s, "y", n.outputs[0]);
//   s.bind = [](const Binder& b) { kern::Activation a; a.x = b.ptr("x"); ...; return b.launch(a); };
//
// Gradient slots (write_grad) decide overwrite or accumulate here, at plan time: the first step
// that writes a gradient overwrites it, later ones add (a value used twice), so nothing is zeroed
// inside a step. A forward step's gradient slots exist only in the training binding: an evaluation
// launch of the same step gets null there.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cuae/graph.hpp"
#include "host/graph/node.hpp"
#include "kernels/ops.hpp"

namespace cuae {

class Backend;
class Binder;

using Launch = std::function<void()>;

// FNV-1a of a name: the stream a node draws from and the seed a parameter is initialised with
// depend on the name, so adding a layer changes no other layer's.
std::uint64_t name_hash(const std::string& s, std::uint64_t h = 0xcbf29ce484222325ull);

struct Step {
  struct Slot {
    const char* name;
    int buf;            // a buffer of the executor (its root, after planning)
    bool write;
    bool acc = false;   // a gradient slot that accumulates
    bool grad = false;  // a gradient slot of a forward step (null in evaluation launches)
  };
  const detail::Node* node = nullptr;
  bool backward = false;
  std::vector<Slot> slots;
  // Makes the step's launch from its resolved slots (called once per binding).
  std::function<Launch(const Binder&)> bind;
};

// Where a buffer lives: the planned arena, a parameter (the executor's parameter store), a
// parameter's gradient (the training executor's optimizer), or the scalar block of the loss terms.
enum class Where { Arena, Param, Grad, Scalar };

struct Buf {
  std::string name;
  Shape shape;
  std::int64_t numel = 0;
  Where where = Where::Arena;
  std::size_t offset = 0;  // bytes into the arena; floats into the scalar block (Param, Grad: unused)
  bool keep = false;       // live for the whole step (inputs, marked outputs)
};

class Compiler {
 public:
  Compiler(const Graph& graph, bool training, Backend& backend);

  // The schedule of a graph: every value's buffer, gradients when training, the forward steps in
  // graph order, then (training) the backward steps in reverse.
  void compile();

  const Graph& graph() const { return graph_; }
  bool training() const { return training_; }
  Backend& backend() const { return backend_; }
  const Shape& shape(int value) const;

  // ---- for descriptors ----------------------------------------------------------------------
  Step& step(const detail::Node& n, bool backward = false);
  // The most common steps: "x" (inputs[0]) -> "y" (outputs[0]); and a backward "dy" (outputs[0]'s
  // gradient) -> "dx" (inputs[0]'s).
  Step& unary(const detail::Node& n);
  Step& unary_backward(const detail::Node& n);
  // A slot reading or writing the buffer of value (or of a scratch buffer); -1 leaves it absent.
  void read(Step& s, const char* slot, int value);
  void write(Step& s, const char* slot, int value);
  // The gradient of value: read as the step's output gradient (backward steps), or written when
  // the value needs one (training; for a term's forward step, only when the term is an objective).
  void read_grad(Step& s, const char* slot, int value);
  void write_grad(Step& s, const char* slot, int value);
  bool needs_grad(int value) const;
  // A buffer in the arena that lives while the steps using it run (a workspace, a dZ).
  int scratch(const detail::Node& n, const std::string& suffix, const Shape& shape);
  // A convolution pass's workspace, sized by the backend (-1 when it needs none).
  int conv_workspace(const detail::Node& n, const kern::ConvGeom& g, kern::ConvPass pass, const std::string& suffix);

  // ---- for the executor -----------------------------------------------------------------------
  std::vector<Buf>& bufs() { return bufs_; }
  const std::vector<Buf>& bufs() const { return bufs_; }
  std::vector<Step>& steps() { return steps_; }
  const std::vector<int>& grad_of() const { return grad_of_; }
  int root_of(int b) const;
  // The scalar outputs of the objective terms, summed into a step's loss.
  const std::vector<int>& loss_bufs() const { return loss_bufs_; }
  // Term nodes in graph order (index = term number; their run-time weights).
  const std::vector<const detail::Node*>& terms() const { return terms_; }

 private:
  int add_buf(const std::string& name, const Shape& shape, Where where);

  const Graph& graph_;
  bool training_;
  Backend& backend_;
  std::vector<Buf> bufs_;           // graph values first (same index), then gradients and scratch
  std::vector<int> root_;           // the buffer owning each buffer's memory (reshape aliases)
  std::vector<int> grad_of_;        // graph value -> gradient buffer, or -1
  std::vector<bool> needs_grad_;
  std::vector<bool> grad_written_;  // by buffer: some step has written this gradient already
  std::vector<Step> steps_;
  std::vector<int> loss_bufs_;
  std::vector<const detail::Node*> terms_;
  const detail::Node* current_ = nullptr;  // the node whose forward() is running
};

// A step's slots resolved to memory, and what its launch may use.
class Binder {
 public:
  struct Env {
    const kern::OpTable* ops;
    const kern::Context* ctx;
    std::uint64_t run_seed;
    kern::StepScalars* step;           // the step block (backend memory)
    const float* term_weights;         // by term number (backend memory, beside the step block)
    std::function<kern::OpCache*()> new_cache;
    std::function<float*(int)> ptr;    // buffer -> memory
  };
  Binder(const Step& s, const Compiler& c, const Env& env, bool training);

  bool has(const char* slot) const;
  float* ptr(const char* slot) const;  // null when the slot is absent (or a gradient, evaluating)
  template <class T>
  T* as(const char* slot) const {
    return reinterpret_cast<T*>(ptr(slot));
  }
  bool acc(const char* slot) const;
  const Shape& shape(const char* slot) const;
  std::int64_t numel(const char* slot) const;
  std::size_t bytes(const char* slot) const;
  bool training() const { return training_; }

  const kern::OpTable& ops() const { return *env_.ops; }
  const kern::Context& ctx() const { return *env_.ctx; }
  kern::OpCache* new_cache() const { return env_.new_cache(); }
  // The node's own random stream: the run's seed mixed with a hash of the node's name.
  std::uint64_t seed() const;
  kern::StepScalars* step_block() const { return env_.step; }
  // The node's run-time weight (a term), in backend memory.
  const float* weight() const;

  // A launch of one kernel-table op with fixed arguments: `launch(&kern::OpTable::loss, a)`.
  template <class A>
  Launch launch(void (*kern::OpTable::*op)(const kern::Context&, const A&), const A& a) const {
    const kern::OpTable* t = env_.ops;
    const kern::Context* c = env_.ctx;
    auto fn = t->*op;
    return [fn, c, a] { fn(*c, a); };
  }
  // The same for a random op: it draws at the step block's rng_step, read when the op runs.
  template <class A>
  Launch launch_stepped(void (*kern::OpTable::*op)(const kern::Context&, const A&), A a) const {
    a.step_at = &env_.step->rng_step;
    return launch(op, a);
  }
  // The same for a scalar term: its weight is read from the term weights when the op runs.
  template <class A>
  Launch launch_weighted(void (*kern::OpTable::*op)(const kern::Context&, const A&), A a) const {
    a.weight_at = weight();
    return launch(op, a);
  }

 private:
  const Step::Slot* find(const char* slot) const;
  const Step& step_;
  const Compiler& c_;
  const Env& env_;
  bool training_;
};

}  // namespace cuae
