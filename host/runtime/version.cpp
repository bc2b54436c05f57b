#include "cuae/cuae.hpp"

namespace cuae {
const char* version() { return "0.1.0"; }
}  // namespace cuae
