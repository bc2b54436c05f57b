// The executor's memory plan: every arena buffer of a compiled graph placed by its lifetime over
// the step order (host/graph/planner), and the scalar terms numbered into one small block.
// Internal header.
#pragma once

#include <cstddef>

#include "host/graph/compiler.hpp"

namespace cuae::graph {

struct MemoryPlan {
  std::size_t arena_bytes = 0;  // the arena's peak
  std::size_t naive_bytes = 0;  // one 256-byte aligned buffer per arena value
  int values_planned = 0;
  int scalars = 0;              // floats of the scalar block
};

// Sets the offset of every arena buffer (bytes) and scalar buffer (floats) of the compiler's
// buffers. Checks the plan: two live buffers never share memory.
MemoryPlan plan_memory(Compiler& comp);

}  // namespace cuae::graph
