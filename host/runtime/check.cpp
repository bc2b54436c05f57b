// fail_at: the thrower behind CUAE_CHECK (cuae/error.hpp); the CUDA, cuBLAS and cuDNN status
// checks' throwers are in host/runtime/cuda/check.cpp.
#include "cuae/error.hpp"

#include <sstream>

namespace cuae {

void fail_at(const char* file, int line, const std::string& message) {
  std::ostringstream os;
  os << file << ":" << line << ": " << message;
  throw Error(os.str());
}

}  // namespace cuae
