#include "host/graph/memory_plan.hpp"

#include <algorithm>
#include <vector>

#include "cuae/executor.hpp"
#include "host/graph/planner.hpp"
#include "host/runtime/backend.hpp"

namespace cuae::graph {

namespace {
std::size_t round_up(std::size_t x, std::size_t a) { return (x + a - 1) / a * a; }
}  // namespace

MemoryPlan plan_memory(Compiler& comp) {
  auto& bs = comp.bufs();
  const auto& steps = comp.steps();
  // Lifetimes over step positions, by the memory (root buffer) each slot touches.
  const int end = static_cast<int>(steps.size()) - 1;
  std::vector<int> first(bs.size(), -1), last(bs.size(), -1);
  for (int p = 0; p <= end; ++p) {
    for (const Step::Slot& sl : steps[static_cast<std::size_t>(p)].slots) {
      if (sl.buf < 0) continue;
      const auto ub = static_cast<std::size_t>(comp.root_of(sl.buf));
      if (first[ub] < 0) first[ub] = p;  // read before written: an input
      last[ub] = std::max(last[ub], p);
    }
  }
  MemoryPlan mp;
  std::vector<PlanItem> items;
  std::vector<std::size_t> item_buf;
  for (std::size_t i = 0; i < bs.size(); ++i) {
    Buf& b = bs[i];
    if (b.where == Where::Scalar) {
      b.offset = static_cast<std::size_t>(mp.scalars);
      mp.scalars += static_cast<int>(b.numel);
      continue;
    }
    if (b.where != Where::Arena || comp.root_of(static_cast<int>(i)) != static_cast<int>(i)) continue;
    mp.naive_bytes += round_up(static_cast<std::size_t>(b.numel) * sizeof(float), 256);
    int f = first[i], l = last[i];
    if (f < 0) f = l = 0;  // never touched by a step (e.g. an unused input)
    if (b.keep) f = 0, l = end;
    items.push_back({static_cast<std::size_t>(b.numel) * sizeof(float), f, l});
    item_buf.push_back(i);
  }
  const ArenaPlan ap = plan_arena(items);
  // Checked on every build (quadratic in the values, microseconds for real models): a planner bug
  // must never turn into two live tensors sharing memory.
  CUAE_CHECK(plan_is_valid(items, ap), "internal error: the memory plan overlaps two live buffers");
  for (std::size_t k = 0; k < items.size(); ++k) bs[item_buf[k]].offset = ap.offsets[k];
  mp.arena_bytes = ap.peak;
  mp.values_planned = static_cast<int>(items.size());
  return mp;
}

}  // namespace cuae::graph

namespace cuae {

// Executor::plan, beside the planning it runs (its constructor's plan() in executor.cpp).
MemoryReport Executor::plan(const Graph& graph, const ExecutorOptions& options) {
  Backend be(options.device);  // handles only: the workspace sizes are the backend's to say
  Compiler comp(graph, options.training, be);
  comp.compile();
  const graph::MemoryPlan mp = graph::plan_memory(comp);
  MemoryReport r;
  r.arena_bytes = mp.arena_bytes;
  r.naive_bytes = mp.naive_bytes;
  r.values_planned = mp.values_planned;
  for (const auto& v : graph.values())
    if (v.kind == Graph::ValueKind::Param) r.param_bytes += static_cast<std::size_t>(shape_numel(v.shape)) * sizeof(float);
  // As plan(): gradients and moments (SGD keeps one: its velocity), for every parameter.
  if (options.training) r.state_bytes = r.param_bytes * (options.optimizer.type == OptimizerType::SGD ? 2 : 3);
  return r;
}

}  // namespace cuae
