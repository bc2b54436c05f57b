#include "cuae/cuae.hpp"

namespace cuae {
// CUAE_VERSION comes from the CMake project version.
const char* version() { return CUAE_VERSION; }
}  // namespace cuae
