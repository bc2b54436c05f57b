// When a CPU reference loop is worth OpenMP threads. Below this many elements a parallel region
// costs more (thread wake-up, and on a loaded machine threads spinning against each other) than
// the loop itself.
#pragma once

#include <cstdint>

namespace cuae::kern::cpu {
constexpr std::int64_t kParallelMin = std::int64_t{1} << 15;
}  // namespace cuae::kern::cpu
