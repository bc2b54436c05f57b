// A training executor's optimizer: the gradients and moments of the parameters it trains, and the
// launches of its update. Internal header.
//
// The parameters live in a ParameterStore, in segments; the executor may train all of a segment
// (the usual case: its graph created it) or some of its parameters. Gradients and moments are laid
// out in groups, one per run of parameters that lies contiguous in a segment, with the same layout
// as the run, so each group's update is one optimizer launch over [0, n) with decay on [0, n_decay).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "cuae/executor.hpp"
#include "host/graph/compiler.hpp"
#include "host/graph/parameter_store.hpp"

namespace cuae {

class Optimizer {
 public:
  // entries: the store entries of the parameters trained (any order; -1 entries are skipped).
  Optimizer(ParameterStore::Impl& store, const std::vector<int>& entries, const OptimizerConfig& cfg);
  ~Optimizer();
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  float* grad(int entry) const { return at(grads_, entry); }
  // Adam/AdamW's first moment (null for SGD) and second moment, or SGD's velocity.
  float* m(int entry) const { return at(m_, entry); }
  float* v(int entry) const { return at(v_, entry); }
  // Floats of one of the buffers (gradients, a moment).
  std::int64_t floats() const { return floats_; }
  // Host copies by parameter (store entries, in the order given): the gradients, and the state as
  // checkpoints name it: "opt.m.<name>" (Adam/AdamW), "opt.v.<name>".
  std::vector<std::pair<std::string, Tensor>> gradients(const std::vector<int>& entries) const;
  std::vector<std::pair<std::string, Tensor>> state(const std::vector<int>& entries) const;
  // Loads the state tensors `tensors` holds (a checkpoint of another optimizer, or none: the rest
  // keep their values).
  void load_state(const std::map<std::string, Tensor>& tensors, const std::vector<int>& entries);
  // One update launch per group, reading lr, momentum and the bias corrections from `step`.
  void bind(const Backend& be, const kern::StepScalars* step, std::vector<Launch>& out) const;

 private:
  struct Group {
    int segment = 0;
    std::int64_t seg_offset = 0, offset = 0, n = 0, n_decay = 0;
  };
  float* at(float* buf, int entry) const;
  // The state buffers with their checkpoint prefixes (m absent for SGD).
  std::vector<std::pair<const char*, float*>> state_buffers() const;

  ParameterStore::Impl& store_;
  OptimizerConfig cfg_;
  std::vector<Group> groups_;
  std::map<int, std::int64_t> offset_;  // store entry -> floats into the buffers
  std::int64_t floats_ = 0;
  float* grads_ = nullptr;
  float* m_ = nullptr;
  float* v_ = nullptr;
};

}  // namespace cuae
