// The parameter store's internals (include/cuae/parameter_store.hpp), for the executor: the shared
// backend, the parameters by name and their segments. Internal header.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "cuae/graph.hpp"
#include "cuae/parameter_store.hpp"
#include "cuae/tensor.hpp"
#include "host/runtime/backend.hpp"

namespace cuae {

struct ParameterStore::Impl {
  explicit Impl(Device device) : be(device) {}
  ~Impl();

  struct Entry {
    std::string name;
    Shape shape;
    std::int64_t numel = 0;
    bool decay = true;
    int segment = 0;
    std::int64_t offset = 0;  // floats into the segment
    std::int64_t span = 0;    // numel rounded up to the alignment: the next entry's offset
  };
  struct Segment {
    float* base = nullptr;
    std::int64_t floats = 0;
  };

  // The entry of each of the graph's values (-1 for a value that is not a parameter), adding the
  // parameters the store lacks as one new segment initialised from (seed, name). Checks the shape
  // and decay flag of those it holds.
  std::vector<int> attach(const Graph& graph, std::uint64_t seed);
  float* ptr(int entry) const { return ptr(entries[static_cast<std::size_t>(entry)]); }
  float* ptr(const Entry& e) const { return segments[static_cast<std::size_t>(e.segment)].base + e.offset; }
  int find(const std::string& name) const;  // -1 when absent
  const Entry& at(const std::string& name) const;  // throws naming it

  // Host copy of `shape` floats at src.
  Tensor download(const Shape& shape, const float* src);
  // value (F32, `shape`, else an error naming `what`) into dst.
  void upload(const std::string& what, const Tensor& value, const Shape& shape, float* dst);
  // A checkpoint's tensor `name` (present, else an error naming it) into dst.
  void upload(const std::map<std::string, Tensor>& tensors, const std::string& name, const Shape& shape, float* dst);

  Backend be;  // every executor of the store runs on it: one stream orders all their work
  std::vector<Entry> entries;
  std::vector<Segment> segments;
  std::map<std::string, int> by_name;
  int executors = 0;  // executors built on the store so far (the first sets the precision)
};

}  // namespace cuae
