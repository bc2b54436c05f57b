// The internal form of a graph op, and the interface of the descriptor each op implements.
//
// An op lives in one file of host/graph/nodes/: its attribute struct, its builder method
// (Graph::<op>: argument checks, shape inference, the node and its output values) and its
// descriptor (the steps its forward and backward passes add to an executor, and how each step
// binds to a kernel-table call). The executor knows no op by name: it asks the descriptors.
// Internal header.
#pragma once

#include <any>
#include <memory>
#include <string>
#include <vector>

#include "cuae/graph.hpp"

namespace cuae {

class Compiler;  // host/graph/compiler.hpp

namespace detail {

class NodeDesc;

struct Node {
  Node() = default;
  Node(const NodeDesc* d, std::string nm, std::vector<int> in, std::any a = {})
      : desc(d), name(std::move(nm)), inputs(std::move(in)), attrs(std::move(a)) {}

  const NodeDesc* desc = nullptr;
  std::string name;
  // Value ids; -1 for an absent optional input (a layer without bias). The order is the op's own.
  std::vector<int> inputs;
  // outputs[0] is the value the op computes and the only one a gradient flows back through; the
  // others are by-products its backward (or another op) reads: GELU's pre-activation, the kept
  // indices of k-sparse or max pooling.
  std::vector<int> outputs;
  std::any attrs;           // the op's own attribute struct
  // Scalar terms (losses, penalties): the term's weight (its initial value; an executor can change
  // it between steps) and whether it is part of the training objective (else a metric).
  float weight = 1.0f;
  bool objective = true;

  template <class A>
  const A& get() const {
    return std::any_cast<const A&>(attrs);
  }
};

// The layer that produced a value, for builders that check their input's producer (the KL
// sparsity penalty needs a sigmoid layer, the contractive penalty a dense layer's own weight).
struct LayerInfo {
  Activation act = Activation::Identity;
  float slope = 0.01f;
  bool dense = false;         // a dense layer (then `weight` is its weight's value id)
  bool w_transposed = false;
  int weight = -1;
};

class NodeDesc {
 public:
  virtual ~NodeDesc() = default;
  // A scalar term: its single output is summed into the objective (when the node is an objective
  // term); it writes its inputs' gradients at its forward position and has no backward of its own.
  virtual bool term() const { return false; }
  // A term whose weight scales it (Executor::set_term_weight may change it); false for a term
  // whose gradient is not the derivative of its value (rbm_cd).
  virtual bool weighted() const { return true; }
  // No gradient flows from the output back to the inputs (a corruption's output is data).
  virtual bool blocks_gradient() const { return false; }
  // The output is a second name for the first input's memory (a reshape): no step, no buffer, and
  // the output's gradient is the input's gradient.
  virtual bool alias() const { return false; }
  // The layer behind outputs[0], when the op is a layer with an activation.
  virtual bool layer(const Node&, LayerInfo&) const { return false; }
  // Attributes worth printing after the shapes in Graph::describe(), e.g. "(sigmoid)".
  virtual std::string describe(const Node&) const { return {}; }
  // Adds the steps of the forward pass (and, for a term, of its gradient) to the compiler.
  virtual void forward(Compiler& c, const Node& n) const = 0;
  // Adds the steps of the backward pass; called, training, once outputs[0]'s gradient is complete.
  virtual void backward(Compiler&, const Node&) const {}
};

// The graph's nodes, for the executor (Graph keeps them private).
struct GraphAccess {
  static const std::vector<std::shared_ptr<const Node>>& nodes(const Graph& g) { return g.nodes_; }
};

}  // namespace detail
}  // namespace cuae
