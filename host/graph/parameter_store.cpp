// The parameter store: parameters by name in flat segments on one backend, shared by executors.
#include "host/graph/parameter_store.hpp"

#include <algorithm>
#include <random>

#include "host/graph/compiler.hpp"

namespace cuae {

namespace {
constexpr std::int64_t kAlignFloats = 64;  // 256 B: vector loads and cuBLASLt alignment
}  // namespace

ParameterStore::Impl::~Impl() {
  be.synchronize();
  for (const Segment& s : segments) be.free(s.base);
}

int ParameterStore::Impl::find(const std::string& name) const {
  const auto it = by_name.find(name);
  return it == by_name.end() ? -1 : it->second;
}

const ParameterStore::Impl::Entry& ParameterStore::Impl::at(const std::string& name) const {
  const int e = find(name);
  CUAE_CHECK(e >= 0, "the parameter store has no parameter \"" + name + "\"");
  return entries[static_cast<std::size_t>(e)];
}

std::vector<int> ParameterStore::Impl::attach(const Graph& graph, std::uint64_t seed) {
  const auto& values = graph.values();
  std::vector<int> entry(values.size(), -1);
  std::vector<std::size_t> fresh;
  for (std::size_t i = 0; i < values.size(); ++i) {
    const auto& v = values[i];
    if (v.kind != Graph::ValueKind::Param) continue;
    const int e = find(v.name);
    if (e < 0) {
      fresh.push_back(i);
      continue;
    }
    const Entry& held = entries[static_cast<std::size_t>(e)];
    CUAE_CHECK(held.shape == v.shape && held.decay == v.decay,
               "parameter \"" + v.name + "\" is " + shape_str(v.shape) + (v.decay ? "" : " (no decay)") +
                   " in this graph but " + shape_str(held.shape) + (held.decay ? "" : " (no decay)") +
                   " in the parameter store it shares");
    entry[i] = e;
  }
  if (fresh.empty()) return entry;
  // Weights that take decay first, so the optimizer's decay applies to one prefix of the segment.
  std::stable_partition(fresh.begin(), fresh.end(), [&](std::size_t i) { return values[i].decay; });
  const int seg = static_cast<int>(segments.size());
  std::int64_t floats = 0;
  for (std::size_t i : fresh) {
    Entry e;
    e.name = values[i].name;
    e.shape = values[i].shape;
    e.numel = shape_numel(e.shape);
    e.decay = values[i].decay;
    e.segment = seg;
    e.offset = floats;
    e.span = (e.numel + kAlignFloats - 1) / kAlignFloats * kAlignFloats;
    floats += e.span;
    entry[i] = static_cast<int>(entries.size());
    by_name[e.name] = entry[i];
    entries.push_back(std::move(e));
  }
  // Initial values on the host, then one copy. Each parameter is seeded by (seed, name): adding a
  // layer does not change the others' initial values.
  std::vector<float> host(static_cast<std::size_t>(floats), 0.0f);
  for (std::size_t i : fresh) {
    const auto& v = values[i];
    const Entry& e = entries[static_cast<std::size_t>(entry[i])];
    std::mt19937_64 rng(name_hash(v.name, 0xcbf29ce484222325ull ^ (seed * 0x9e3779b97f4a7c15ull)));
    float* dst = host.data() + e.offset;
    const auto n = static_cast<std::size_t>(e.numel);
    switch (v.init.kind) {
      case Init::Kind::Zeros: break;
      case Init::Kind::Constant: std::fill(dst, dst + n, v.init.a); break;
      case Init::Kind::Uniform: {
        std::uniform_real_distribution<float> d(-v.init.a, v.init.a);
        for (std::size_t j = 0; j < n; ++j) dst[j] = d(rng);
        break;
      }
      case Init::Kind::Normal: {
        std::normal_distribution<float> d(0.0f, v.init.a);
        for (std::size_t j = 0; j < n; ++j) dst[j] = d(rng);
        break;
      }
    }
  }
  Segment s;
  s.floats = floats;
  s.base = static_cast<float*>(be.alloc(static_cast<std::size_t>(floats) * sizeof(float)));
  be.copy_to_device(s.base, host.data(), host.size() * sizeof(float));
  segments.push_back(s);
  return entry;
}

Tensor ParameterStore::Impl::download(const Shape& shape, const float* src) {
  Tensor t(shape);
  be.copy_to_host(t.data(), src, t.nbytes());
  return t;
}

void ParameterStore::Impl::upload(const std::string& what, const Tensor& value, const Shape& shape, float* dst) {
  CUAE_CHECK(value.shape() == shape && value.dtype() == DType::F32,
             what + " is " + shape_str(value.shape()) + " " + dtype_name(value.dtype()) + ", the model expects " +
                 shape_str(shape) + " F32");
  const Tensor host = value.device() == Device::CPU ? value : value.to(Device::CPU);
  be.copy_to_device(dst, host.data(), host.nbytes());
}

void ParameterStore::Impl::upload(const std::map<std::string, Tensor>& tensors, const std::string& name,
                                  const Shape& shape, float* dst) {
  auto it = tensors.find(name);
  CUAE_CHECK(it != tensors.end(), "checkpoint has no tensor \"" + name + "\"");
  upload("checkpoint tensor \"" + name + "\"", it->second, shape, dst);
}

ParameterStore::ParameterStore(Device device) : impl_(std::make_unique<Impl>(device)) {}
ParameterStore::~ParameterStore() = default;

Device ParameterStore::device() const { return impl_->be.device(); }

std::vector<std::string> ParameterStore::names() const {
  std::vector<std::string> out;
  for (const auto& e : impl_->entries) out.push_back(e.name);
  return out;
}

bool ParameterStore::contains(const std::string& name) const { return impl_->find(name) >= 0; }
const Shape& ParameterStore::shape(const std::string& name) const { return impl_->at(name).shape; }

std::int64_t ParameterStore::floats() const {
  std::int64_t n = 0;
  for (const auto& s : impl_->segments) n += s.floats;
  return n;
}

// The entry is looked up once, and an unknown name refused, before any pointer is formed.
Tensor ParameterStore::read(const std::string& name) {
  const Impl::Entry& e = impl_->at(name);
  return impl_->download(e.shape, impl_->ptr(e));
}

void ParameterStore::write(const std::string& name, const Tensor& value) {
  const Impl::Entry& e = impl_->at(name);
  impl_->upload("the tensor written to parameter \"" + name + "\"", value, e.shape, impl_->ptr(e));
}

}  // namespace cuae
