// cpu_backend_description(): the CPU backend's threads and GEMM kernels, for start-up lines and
// benchmark headers (a figure means little without them).
#include <cblas.h>
#include <omp.h>

#include <string>

#include "cuae/tensor.hpp"

namespace cuae {

std::string cpu_backend_description() {
  // openblas_get_config(): "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ..."; its first two words.
  std::string config = openblas_get_config();
  const auto second_space = config.find(' ', config.find(' ') + 1);
  if (second_space != std::string::npos) config.resize(second_space);
  const int threads = omp_get_max_threads();
  return std::to_string(threads) + (threads == 1 ? " thread, " : " threads, ") + config + " " +
         openblas_get_corename() + " kernels";
}

}  // namespace cuae
