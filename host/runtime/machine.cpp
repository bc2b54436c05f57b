// What the machine offers the engine: the CPU backend's threads and GEMM kernels (for start-up
// lines and benchmark headers: a figure means little without them) and each device's free memory
// (checked before a run allocates).
#include <cblas.h>
#include <omp.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "cuae/tensor.hpp"
#include "host/runtime/cuda_rt.hpp"

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

std::size_t available_memory(Device device) {
  if (device == Device::CUDA) return cuda_available() ? cuda_rt::free_memory() : 0;
  // The kernel's estimate of memory available without swapping.
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line)) {
    unsigned long long kib = 0;
    if (std::sscanf(line.c_str(), "MemAvailable: %llu kB", &kib) == 1) return static_cast<std::size_t>(kib) * 1024;
  }
  return 0;
}

}  // namespace cuae
