// The executor's state, shared by its translation units: executor.cpp (compile, plan, bind, the
// step loop, I/O) and executor_scalars.cpp (reading the recorded loss terms back). Internal header.
#pragma once

#include <map>
#include <memory>
#include <vector>

#include "cuae/executor.hpp"
#include "host/graph/compiler.hpp"
#include "host/graph/optimizer.hpp"
#include "host/graph/parameter_store.hpp"
#include "host/runtime/backend.hpp"
#include "host/runtime/input_copy.hpp"

namespace cuae {

inline constexpr std::int64_t kLossRing = 1024;  // steps of losses kept in backend memory before a forced drain

struct Executor::Impl {
  Graph graph;
  ExecutorOptions opt;
  std::shared_ptr<ParameterStore> store;
  Backend* be = nullptr;              // the store's: every executor of a store shares its stream
  std::unique_ptr<Compiler> comp;
  std::unique_ptr<Optimizer> optimizer;  // training
  // CUDA: the graph inputs' overlapped host copies (by value id), made at their first host batch.
  std::map<int, std::unique_ptr<InputCopy>> copies;
  MemoryReport mem;

  char* arena = nullptr;
  float* scalars = nullptr;
  int n_scalars = 0;
  std::vector<int> params;            // the graph's parameters' store entries, in graph order
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
  std::vector<double> term_sums;  // each objective term summed over the steps read, not yet handed out
  std::int64_t term_steps = 0;

  ~Impl() {
    if (!be) return;
    be->synchronize();
    be->free(arena);
    be->free(scalars);
    be->free(step);
    be->free(ring);
  }

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
  // Before a launch sequence that records: reads the ring when it is full.
  void make_room();
  // Reads the ring's unread blocks (synchronises) and appends their losses to `drained`.
  void read_ring();
  // Moves the batches whose copies set_input() started into the inputs, before a step.
  void flush_inputs() {
    for (auto& [id, c] : copies) c->finish(ptr(id));
  }
  // A small stream-ordered write of host values into backend memory (the step block's fields).
  void put(void* dst, const void* src, std::size_t bytes) { be->copy_to_device(dst, src, bytes); }
};

}  // namespace cuae
