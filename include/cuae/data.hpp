// Datasets on the host: IDX files (MNIST, Fashion-MNIST and anything else in that format).
//
// IDX layout (big-endian): a 4-byte magic number 0x00 0x00 <type code> <rank>, then <rank> 4-byte
// dimension sizes, then the elements in row-major order. Type codes: 0x08 uint8, 0x09 int8,
// 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64. Files may be gzip-compressed or plain; both
// are read through zlib, which passes plain files through unchanged.
//
// Every reader checks the file completely (magic, type code, dimensions, exact data length, no
// trailing bytes) and throws cuae::Error naming the file and the problem; nothing is returned from
// a file that is not exactly what its header says.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "cuae/error.hpp"
#include "cuae/tensor.hpp"

namespace cuae {

// A labelled (or unlabelled) image set held in host memory.
struct CUAE_API Dataset {
  // [N, rows*cols*channels] float32 on the CPU (channels last: HWC rows). Pixels stored as uint8 are scaled to [0, 1] (value / 255);
  // pixels stored as floating point are kept as stored.
  Tensor images;
  // [N] float32 on the CPU holding the class indices, or a default-constructed Tensor (has_labels()
  // is false) when the set has no labels.
  Tensor labels;
  int rows = 0;
  int cols = 0;
  int channels = 1;
  // Human-readable origin, e.g. "fashion-mnist/train" or "fashion-mnist/train[0:1000]".
  std::string name;

  std::int64_t size() const { return images.rank() >= 1 ? images.dim(0) : 0; }
  std::int64_t features() const { return static_cast<std::int64_t>(rows) * cols * channels; }
  bool has_labels() const { return labels.rank() == 1; }
};

// Reads any IDX file (gzip'd or plain) into a float32 CPU tensor whose shape is the header's
// dimensions. Values are converted exactly as stored (uint8 stays 0..255; no scaling).
// Throws cuae::Error on: missing/unreadable file, wrong magic number (found vs expected shown),
// unsupported type code, rank 0, a corrupt gzip stream, truncated data ("expected N bytes of data,
// found M") or trailing bytes after the data.
CUAE_API Tensor read_idx(const std::string& path);

// Reads an image file (rank 3: [N, rows, cols]) and optionally a label file (rank 1: [N]) into a
// Dataset. labels_path may be empty for an unlabelled set. Throws cuae::Error for anything
// read_idx rejects, an image file that is not rank 3, a label file that is not rank 1, or image and
// label counts that differ (both counts and both file names are given).
CUAE_API Dataset load_idx_dataset(const std::string& images_path, const std::string& labels_path);

// Loads Fashion-MNIST (or MNIST, same file names) from `dir`: train=true reads
// train-images-idx3-ubyte.gz + train-labels-idx1-ubyte.gz (60000 images), train=false the
// t10k-* pair (10000 images); each file may also be present un-gzipped (without ".gz").
// Images are 28x28, scaled to [0, 1]; labels are 0..9. Throws cuae::Error naming the directory and
// the file names tried when a file is missing.
CUAE_API Dataset load_fashion_mnist(const std::string& dir, bool train);

// Where Fashion-MNIST is looked for by default: $CUAE_FASHION_MNIST_DIR when set, otherwise the
// location used by the Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist).
CUAE_API std::string default_fashion_mnist_dir();

// Checks every pixel of images [N, D] (host float32): finite, and within [0, 1] when unit_interval
// (what a BCE loss or a Bernoulli likelihood needs). Throws cuae::Error naming `origin`, the first
// bad image (its row) and value, and how many images are bad.
CUAE_API void check_pixels(const Tensor& images, const std::string& origin, bool unit_interval);

// Samples [begin, begin+count) as a Dataset whose tensors are views sharing the parent's storage
// (kept alive by the views; no copy). Throws cuae::Error if the range is outside [0, size()].
CUAE_API Dataset subset(const Dataset& d, std::int64_t begin, std::int64_t count);

// Splits off the last n_tail samples, e.g. for validation: returns {first size()-n_tail, last
// n_tail}, both views as in subset(). Throws cuae::Error unless 0 <= n_tail <= size().
CUAE_API std::pair<Dataset, Dataset> split_tail(const Dataset& d, std::int64_t n_tail);

// The images of `classes` (in their order in d), and with contamination p > 0 as many images of
// the other classes as make up a share p of the result (round(p·n/(1−p)) for n images of the
// classes), drawn without replacement by `seed` and interleaved at positions drawn by the same
// seed: the anomaly detector's "normal" training set, contaminated on purpose to measure
// robustness. A copy (rows gathered), named e.g. "fashion-mnist/train[classes 0]" or
// "...[classes 0, contamination 0.05]". Throws cuae::Error naming d when it has no labels, when a
// class has no images in it, when p is outside [0, 1), or when too few other images exist.
CUAE_API Dataset select_classes(const Dataset& d, const std::vector<int>& classes, double contamination,
                                std::uint64_t seed);

}  // namespace cuae
