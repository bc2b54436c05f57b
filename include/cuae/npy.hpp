// NumPy .npy files: embeddings, codes and reconstructions out to Python, arrays in from it.
//
// Format (version 1.0): the 6 bytes "\x93NUMPY", version bytes 1 0, a 2-byte little-endian header
// length, then a Python dict literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (60000, 32), }
// padded with spaces and ended by '\n' so that the data start 64-byte aligned, then the raw data in
// C (row-major) order.
#pragma once

#include <string>

#include "cuae/error.hpp"
#include "cuae/tensor.hpp"

namespace cuae {

// Writes an F32 or I32 tensor of any rank ([N, D], [N], ...; on the CPU or CUDA, copied to the host) as a
// version 1.0 .npy with descr '<f4' or '<i4'. Atomic like save_safetensors: a failure throws cuae::Error
// naming `path` and leaves any existing file untouched.
CUAE_API void save_npy(const std::string& path, const Tensor& t);

// Reads a .npy (versions 1.0, 2.0 and 3.0) with descr '<f4', '<f8', '|u1', '|i1', '<i4' or '<i8' into
// a float32 CPU tensor of the stored shape; integers and doubles are converted to float32 values
// (uint8 stays 0..255, no scaling). Throws cuae::Error naming the file and the problem for: a
// missing file, a bad magic string or version, a malformed header dict (missing/unknown key, bad
// value), an unsupported descr (big-endian, object, structured ...), fortran_order True, or data
// that are shorter or longer than shape x itemsize.
CUAE_API Tensor load_npy(const std::string& path);

}  // namespace cuae
