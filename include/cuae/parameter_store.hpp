// cuae::ParameterStore — a model's parameters on one device, shared by every executor built on it.
//
// A training executor, the evaluation executor that validates during training and the inference
// executors of other batch sizes or graph modes all read and update the same device memory, in
// stream order on one backend: evaluation after a training step sees that step's update with no
// copy through the host.
//
//   auto store = std::make_shared<cuae::ParameterStore>(cuae::Device::CUDA);
//   cuae::Executor train(train_graph, train_options, store);   // creates the parameters
//   cuae::Executor infer(infer_graph, infer_options, store);   // finds them by name
//
// Parameters are found by name. An executor adds the parameters of its graph that the store does
// not hold yet, as one flat segment (weights that take weight decay first, then the others, each
// 256-byte aligned), initialised from the executor's seed and the parameter's name; a parameter the
// store holds already must have the same shape and decay flag, or the executor's constructor
// throws naming it. Gradients and optimizer moments belong to each training executor (two
// executors may train overlapping parameters with optimizers of their own, as layer-wise
// pretraining does); the optimizer updates a segment the executor trains whole in one launch.
//
// Every executor of a store runs on its device and precision (the first executor's tf32 setting);
// the store lives as long as the last executor built on it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cuae/tensor.hpp"

namespace cuae {

class CUAE_API ParameterStore {
 public:
  explicit ParameterStore(Device device);
  ~ParameterStore();
  ParameterStore(const ParameterStore&) = delete;
  ParameterStore& operator=(const ParameterStore&) = delete;

  Device device() const;
  // Parameter names, in the order they were added.
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const;
  const Shape& shape(const std::string& name) const;
  // Floats held, alignment padding included.
  std::int64_t floats() const;
  // A host copy of one parameter (after the work queued so far), and a write of one (shape and
  // dtype checked; ordered after the work queued so far and before any queued later).
  Tensor read(const std::string& name);
  void write(const std::string& name, const Tensor& value);

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace cuae
