// Lossy image compression with an autoencoder's codes (or PCA's): each code dimension quantised
// uniformly to `bits` bits over a range fitted on the training set's codes, the symbols bit-packed
// and, optionally, deflated with zlib, in a versioned file whose header is checked on read.
//
// The .cuaez file (all integers little-endian):
//   0   8  magic "CUAECODE"
//   8   4  format version (1)
//   12  8  model fingerprint (parameter_fingerprint of the model the codes belong to)
//   20  4  code width k          24  4  bits per dimension b (1..16)
//   28  8  images n              36  4  height   40  4  width   44  4  channels
//   48  4  codec (0: packed, 1: zlib over the packed bits)
//   52  8k the ranges: k floats lo, then k floats hi
//   ..  8  payload bytes P, then P bytes: n·k symbols of b bits, row-major, most significant bit first
//   ..  4  CRC-32 (zlib's) of every byte before it
// A file that is not one (magic), of another version, truncated, with trailing bytes, a field out
// of range or a wrong checksum is refused with the file's name and the fault.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "cuae/error.hpp"
#include "cuae/tensor.hpp"

namespace cuae {

struct CUAE_API Quantizer {
  std::vector<float> lo, hi;  // per dimension
  int bits = 8;
};
// Ranges = each dimension's minimum and maximum over codes [N, k] (host). bits in 1..16.
CUAE_API Quantizer fit_quantizer(const Tensor& codes, int bits);
// Symbols round((z − lo)/(hi − lo)·(2^b − 1)), clamped to [0, 2^b − 1]; row-major [N·k].
CUAE_API std::vector<std::uint16_t> quantize(const Quantizer& q, const Tensor& codes);
// Codes [n, k]: lo + s·(hi − lo)/(2^b − 1).
CUAE_API Tensor dequantize(const Quantizer& q, const std::vector<std::uint16_t>& symbols);

struct CUAE_API CompressedCodes {
  std::uint64_t model = 0;
  Quantizer quantizer;
  std::vector<std::uint16_t> symbols;  // n·k
  std::int64_t images = 0;
  int height = 0, width = 0, channels = 1;
  bool zlib = true;
};
// The file's bytes, and back (origin names the bytes in errors).
CUAE_API std::vector<std::uint8_t> encode_compressed(const CompressedCodes& c);
CUAE_API CompressedCodes decode_compressed(const std::vector<std::uint8_t>& bytes, const std::string& origin);
// Writes the file atomically; returns its size in bytes.
CUAE_API std::size_t write_compressed(const std::string& path, const CompressedCodes& c);
CUAE_API CompressedCodes read_compressed(const std::string& path);

// FNV-1a over the parameters' names, shapes and bytes: which model a file's codes belong to.
CUAE_API std::uint64_t parameter_fingerprint(const std::vector<std::pair<std::string, Tensor>>& parameters);

}  // namespace cuae
