// Static memory planning by liveness: every value of a step gets an offset in one arena such that
// two values whose lifetimes overlap never share bytes. Internal header.
#pragma once

#include <cstddef>
#include <vector>

namespace cuae::graph {

// A buffer to place: `bytes` long, live from schedule position `first` to `last` inclusive
// (the op that writes it first to the op that touches it last).
struct PlanItem {
  std::size_t bytes = 0;
  int first = 0;
  int last = 0;
};

struct ArenaPlan {
  std::vector<std::size_t> offsets;  // one per item, aligned
  std::size_t peak = 0;              // arena size needed
};

// Greedy offset assignment: largest buffers first, each at the lowest aligned offset that does not
// collide with an already placed buffer whose lifetime overlaps. Deterministic.
ArenaPlan plan_arena(const std::vector<PlanItem>& items, std::size_t align = 256);

// True when no two items with overlapping lifetimes overlap in memory and all fit under peak.
bool plan_is_valid(const std::vector<PlanItem>& items, const ArenaPlan& plan);

}  // namespace cuae::graph
