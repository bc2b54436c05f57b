// cuae — autoencoders on NVIDIA GPUs. One include for the whole public API.
#pragma once

#include "cuae/analysis.hpp"
#include "cuae/anomaly.hpp"
#include "cuae/autoencoder.hpp"
#include "cuae/compress.hpp"
#include "cuae/config.hpp"
#include "cuae/data.hpp"
#include "cuae/error.hpp"
#include "cuae/executor.hpp"
#include "cuae/figures.hpp"
#include "cuae/images.hpp"
#include "cuae/inpaint.hpp"
#include "cuae/graph.hpp"
#include "cuae/image.hpp"
#include "cuae/npy.hpp"
#include "cuae/probe.hpp"
#include "cuae/safetensors.hpp"
#include "cuae/tensor.hpp"

namespace cuae {
// The library version, e.g. "0.1.0" (CMake project version).
CUAE_API const char* version();
}  // namespace cuae
