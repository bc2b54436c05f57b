// Checkpoints in the safetensors format (the format of Hugging Face's `safetensors` package), so a
// cuae checkpoint opens in PyTorch/NumPy and back without conversion code.
//
// File layout: an 8-byte little-endian unsigned header length H; H bytes of UTF-8 JSON (this writer
// pads it with spaces so the data start 8-byte aligned); then the raw little-endian tensor data.
// The JSON maps each tensor name to {"dtype": "F32"|"BF16"|"F16", "shape": [d0, d1, ...],
// "data_offsets": [begin, end]} (byte offsets relative to the start of the data section), plus an
// optional "__metadata__" object of string -> string (cuae stores the config and the step there).
//
// Loading parses JSON and copies bytes: it never executes anything from the file (unlike pickle).
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "cuae/error.hpp"
#include "cuae/tensor.hpp"

namespace cuae {

// Writes `tensors` (in the given order, which is also their order in the data section) and
// `metadata` to `path`. Tensors may live on the CPU or on a CUDA device (copied to the host one at
// a time); dtypes F32, BF16 and F16 are stored as such. Names must be unique, non-empty and not
// "__metadata__".
//
// The write is atomic: bytes go to "<path>.tmp.<pid>" in the same directory, which is flushed,
// fsync'ed and renamed over `path`, then the directory is fsync'ed. On any failure the temporary is
// removed, an existing file at `path` is left untouched, and cuae::Error names `path` and the cause.
CUAE_API void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                               const std::map<std::string, std::string>& metadata = {});

// A loaded file: owning CPU tensors by name, the metadata, and the tensor names in the order of
// their data in the file (for files written by save_safetensors: the order given when saving).
struct CUAE_API SafetensorsFile {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> metadata;
  std::vector<std::string> order;

  // The tensor called `name`; throws cuae::Error listing the file's tensors if there is none.
  const Tensor& at(const std::string& name) const;
};

// Reads and validates a whole safetensors file. Throws cuae::Error naming the file and the tensor
// or field at fault when: the file is missing or shorter than 8 bytes; the header length runs past
// the end of the file (or exceeds 100 MB); the header is not valid JSON or not a JSON object; a key
// appears twice; an entry lacks "dtype", "shape" or "data_offsets", has another field, or a field
// has the wrong type; the dtype is unknown or not F32/BF16/F16; data_offsets are reversed, run past
// the data section, overlap another tensor or leave gaps or unclaimed bytes; the byte range differs
// from shape x dtype size; "__metadata__" is not an object of strings.
CUAE_API SafetensorsFile load_safetensors(const std::string& path);

}  // namespace cuae
