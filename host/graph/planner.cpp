#include "host/graph/planner.hpp"

#include <algorithm>
#include <numeric>

namespace cuae::graph {

namespace {
bool lifetimes_overlap(const PlanItem& a, const PlanItem& b) { return a.first <= b.last && b.first <= a.last; }
std::size_t round_up(std::size_t x, std::size_t a) { return (x + a - 1) / a * a; }
}  // namespace

ArenaPlan plan_arena(const std::vector<PlanItem>& items, std::size_t align) {
  ArenaPlan plan;
  plan.offsets.assign(items.size(), 0);
  std::vector<std::size_t> order(items.size());
  std::iota(order.begin(), order.end(), 0);
  // Big buffers first: they are the hardest to fit into holes, and small ones pack around them.
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    if (items[a].bytes != items[b].bytes) return items[a].bytes > items[b].bytes;
    return items[a].first < items[b].first;
  });
  std::vector<std::size_t> placed;
  placed.reserve(items.size());
  std::vector<std::pair<std::size_t, std::size_t>> busy;  // [begin, end) of live neighbours
  for (std::size_t idx : order) {
    const PlanItem& it = items[idx];
    const std::size_t size = round_up(std::max<std::size_t>(it.bytes, 1), align);
    busy.clear();
    for (std::size_t p : placed)
      if (lifetimes_overlap(items[p], it))
        busy.emplace_back(plan.offsets[p], plan.offsets[p] + round_up(std::max<std::size_t>(items[p].bytes, 1), align));
    std::sort(busy.begin(), busy.end());
    // Lowest gap that fits (first fit over intervals sorted by start).
    std::size_t offset = 0;
    for (const auto& [b, e] : busy) {
      if (offset + size <= b) break;
      offset = std::max(offset, e);
    }
    plan.offsets[idx] = offset;
    plan.peak = std::max(plan.peak, offset + size);
    placed.push_back(idx);
  }
  return plan;
}

bool plan_is_valid(const std::vector<PlanItem>& items, const ArenaPlan& plan) {
  if (plan.offsets.size() != items.size()) return false;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (plan.offsets[i] + items[i].bytes > plan.peak) return false;
    for (std::size_t j = i + 1; j < items.size(); ++j) {
      if (!lifetimes_overlap(items[i], items[j]) || items[i].bytes == 0 || items[j].bytes == 0) continue;
      const std::size_t a0 = plan.offsets[i], a1 = a0 + items[i].bytes;
      const std::size_t b0 = plan.offsets[j], b1 = b0 + items[j].bytes;
      if (a0 < b1 && b0 < a1) return false;
    }
  }
  return true;
}

}  // namespace cuae::graph
